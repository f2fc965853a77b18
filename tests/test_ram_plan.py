"""The memory plan counts quantized weights as stored and the RAM a load takes; refusals name a GGUF that fits.

Full-size sparse folders: the published -Diffusers layouts (tests/sparse) with their transformers
replaced the way ``fix --assemble`` keeps a GGUF file (config.json + the .gguf, header only on disk).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from core.check.detect import inspect
from core.run.hardware import HardwareInfo
from core.run.optimize import OptimizationRequest, plan_for
from tests.quantized_files import write_sparse_gguf
from tests.sparse.diffusers_layout import write_diffusers_layout
from tests.sparse.specs import BY_KEY
from tests.test_gguf_check import q4_k_m
from tests.test_optimize import RTX_4090, machine

GIB = 1024.0


def _gguf_folder(key: str, root: Path) -> Path:
    """The -Diffusers layout of ``key`` with each expert a Q4_K_M GGUF beside its config.json."""
    folder = write_diffusers_layout(BY_KEY[key], root / key)
    for sub in ("transformer", "transformer_2")[: BY_KEY[key].experts]:
        config = json.loads((folder / sub / "config.json").read_text())
        shutil.rmtree(folder / sub)
        (folder / sub).mkdir()
        (folder / sub / "config.json").write_text(json.dumps(config))
        write_sparse_gguf(folder / sub / f"{key}-{sub}-Q4_K_M.gguf", q4_k_m(key))
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ram")
    return {"a14b_gguf": _gguf_folder("wan22_t2v_a14b", root),
            "a14b": write_diffusers_layout(BY_KEY["wan22_t2v_a14b"], root / "bf16"),
            "ti2v_gguf": _gguf_folder("wan22_ti2v_5b", root)}


def test_gguf_weights_are_counted_as_stored(folders: dict[str, Path]) -> None:
    report = inspect(folders["a14b_gguf"])
    assert report.loadable and report.quantization["format"] == "gguf", [f.message for f in report.errors]
    plan = plan_for(report, machine(RTX_4090, ram_gb=64), OptimizationRequest(832, 480, 81, 40))
    expert = plan.estimate.weights_mb["transformer"]
    file_mb = report.component("transformer").size_bytes / 2**20
    assert abs(expert - file_mb) / file_mb < 0.01 and expert < 0.4 * 2 * 14.29e9 / 2**20   # not bf16's 27 GB
    # model offload keeps both experts in RAM; loading maps one GGUF file on top of the weights
    assert plan.estimate.load_ram_mb >= sum(plan.estimate.weights_mb.values()) + file_mb
    assert plan.fits, plan.refusal


def _with_disk(hardware: HardwareInfo, free_gb: float) -> HardwareInfo:
    return replace(hardware, offload_free_mb=int(free_gb * GIB))


def test_a_request_that_cannot_fit_ram_is_refused_with_a_gguf_that_fits(folders: dict[str, Path]) -> None:
    bf16 = inspect(folders["a14b"])
    plan = plan_for(bf16, _with_disk(machine(RTX_4090, ram_gb=48), 40), OptimizationRequest(832, 480, 81, 40))
    assert not plan.fits and "of RAM" in plan.refusal
    # offloading to disk would fit RAM, but the offload folder's disk has 40 GB for about 64 GB of weights
    assert "Offloading the weights to disk would fit" in plan.refusal and "40 GB free" in plan.refusal, plan.refusal
    assert "set offload_dir in config.yaml" in plan.remedy, plan.remedy
    assert "GGUF of the transformer each that fits in RAM" in plan.remedy and "Q4_K_M" in plan.remedy, plan.remedy
    quantized = plan_for(inspect(folders["a14b_gguf"]), machine(RTX_4090, ram_gb=48),
                         OptimizationRequest(832, 480, 81, 40))
    assert quantized.fits, quantized.refusal
    assert quantized.estimate.peak_ram_mb < 0.6 * sum(plan.estimate.weights_mb.values())


def test_cpu_plans_say_the_ram_while_loading(folders: dict[str, Path]) -> None:
    report = inspect(folders["ti2v_gguf"])
    plan = plan_for(report, machine(ram_gb=32), OptimizationRequest(704, 1280, 121, 50))
    e = plan.estimate
    assert e.load_ram_mb <= e.peak_ram_mb and e.to_dict()["load_ram_mb"] == round(e.load_ram_mb, 1)
    assert e.weights_mb["transformer"] < 4 * GIB          # the Q4_K_M file, whatever the fp32 plan


def test_doctor_gives_no_green_ram_tick_when_a_model_in_the_folder_does_not_fit(folders: dict[str, Path]) -> None:
    from core.doctor import check_models_ram, check_ram
    models = folders["a14b"].parent          # the bf16 A14B and two GGUF folders
    small = _with_disk(machine(RTX_4090, ram_gb=48), 40)
    ram = check_models_ram(check_ram(small), models, small)
    assert ram.status == "warning" and "(bf16)" in ram.summary and "A14B" in ram.summary and "of RAM" in ram.summary
    assert "Q4_K_M" in ram.remedy
    # with room on the disk it runs, offloaded to disk: still no green tick, as it is the slowest way
    roomy = _with_disk(machine(RTX_4090, ram_gb=48), 500)
    ram = check_models_ram(check_ram(roomy), models, roomy)
    assert ram.status == "warning" and "offloading its weights to disk" in ram.summary, ram.summary
    assert "Q4_K_M" in ram.remedy, ram.remedy
    big = machine(RTX_4090, ram_gb=256)
    assert check_models_ram(check_ram(big), models, big).status == "ok"
