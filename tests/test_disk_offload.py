"""Offloading the weights to disk (``offload: disk``): for computers whose RAM cannot hold the model.

The plans are made on full-size sparse folders (the published -Diffusers layouts, headers only);
the loads and generations are real, on the demo models and on the CPU, where diffusers' group
offloading reads each block back from the files it wrote (the same code path as on a GPU, with
the CPU as the device the blocks are read onto).
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from core import config
from core.check.detect import inspect
from core.errors import WanError
from core.run.disk_offload import OffloadFolder, remove_stale
from core.run.hardware import HardwareInfo
from core.run.optimize import OptimizationRequest, plan_for
from core.run.ram_limit import PROCESS
from tests.conftest import run_cli
from tests.sparse.diffusers_layout import write_diffusers_layout
from tests.sparse.specs import BY_KEY
from tests.test_optimize import RTX_4090, machine

torch = pytest.importorskip("torch")

GIB = 1024


@pytest.fixture(scope="module")
def sparse(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("sparse_disk")
    return {key: write_diffusers_layout(BY_KEY[key], root / key) for key in ("wan22_t2v_a14b", "wan22_ti2v_5b")}


@pytest.fixture()
def offload_dir(tmp_path: Path) -> Path:
    """config.yaml's offload_dir, for this test only."""
    folder = tmp_path / "offload"
    previous = config.use(replace(config.current(), offload_dir=folder))
    yield folder
    config.use(previous)


def _disk(hardware: HardwareInfo, free_gb: float) -> HardwareInfo:
    return replace(hardware, offload_free_mb=int(free_gb * GIB))


def test_a14b_on_a_48_gb_computer_is_offloaded_to_disk_with_its_numbers(sparse: dict[str, Path]) -> None:
    report = inspect(sparse["wan22_t2v_a14b"])
    plan = plan_for(report, _disk(machine(RTX_4090, ram_gb=48), 500), OptimizationRequest(832, 480, 81, 40))
    assert plan.fits and plan.placement.value == "disk_offload", plan.refusal
    e, weights = plan.estimate, plan.estimate.weights_mb
    written = weights["transformer"] + weights["transformer_2"] + weights["text_encoder"]
    assert abs(e.disk_mb - written) < 1 and "vae" in weights            # the VAE stays whole, on the GPU
    assert e.peak_ram_mb < 0.6 * sum(weights.values())                  # one expert in RAM at a time, never both
    assert e.peak_ram_mb <= plan.usable_ram_mb
    reason = plan.placement.reason
    assert "would not fit in RAM" in reason and "500 GB free" in reason and "a block at a time" in reason, reason
    assert any(n.startswith("Faster than offloading to disk") and "Q4_K_M" in n for n in plan.notes), plan.notes
    # with RAM enough for model offload, the disk is not used
    assert plan_for(report, _disk(machine(RTX_4090, ram_gb=128), 500),
                    OptimizationRequest(832, 480, 81, 40)).placement.value != "disk_offload"


def test_cpu_prefers_bf16_in_ram_then_the_disk(sparse: dict[str, Path]) -> None:
    report = inspect(sparse["wan22_ti2v_5b"])
    request = OptimizationRequest(640, 352, 17, 20)
    in_ram = plan_for(report, _disk(machine(ram_gb=32), 500), request)         # fp32 does not fit, bf16 does
    assert (in_ram.fits, in_ram.precision.value, in_ram.placement.value) == (True, "bf16", "all_on_device")
    small = plan_for(report, _disk(machine(ram_gb=24), 500), request)         # bf16 does not fit either
    assert small.fits and small.placement.value == "disk_offload", small.refusal
    # RAM holds the largest part (the text encoder) while it is written, not the whole model
    assert small.estimate.peak_ram_mb < 0.7 * in_ram.estimate.peak_ram_mb
    assert small.estimate.peak_ram_mb <= small.usable_ram_mb
    assert "read back into RAM a block at a time" in small.placement.reason


def test_disk_offload_is_not_offered_where_it_cannot_help(sparse: dict[str, Path]) -> None:
    report = inspect(sparse["wan22_t2v_a14b"])
    request = OptimizationRequest(832, 480, 81, 40)
    # ulimit -v counts the address space diffusers keeps for every weight written to disk
    capped = replace(_disk(machine(RTX_4090, ram_gb=128), 500), ram_usable_mb=40 * GIB, ram_limit_mb=40 * GIB,
                     ram_limit_source=PROCESS)
    plan = plan_for(report, capped, request)
    assert not plan.fits and "ulimit -v" in plan.refusal, plan.refusal
    # a retry after running out of GPU memory never moves to the disk: it saves RAM, not GPU memory
    from core.run.optimize import stronger_plan
    roomy = _disk(machine(RTX_4090, ram_gb=128), 500)
    plan = plan_for(report, roomy, replace(request, overrides={"offload": "sequential"}))
    assert stronger_plan(plan, report, roomy) is None


def _frames(wrapper) -> torch.Tensor:
    from core.run.generation import GenerationConfig
    frames, result = wrapper.generate_frames(GenerationConfig(prompt="a red kite", width=64, height=64, num_frames=5,
                                                              num_inference_steps=2, seed=7))
    assert result.success, result.errors
    return torch.as_tensor(frames)


def test_offloaded_to_disk_it_generates_the_same_frames_and_deletes_its_files(demo_models_dir: Path,
                                                                               offload_dir: Path) -> None:
    from core.run.load import WanPipelineLoader
    folder = demo_models_dir / "wan22_t2v_a14b"            # two experts and a text encoder to write
    plain = WanPipelineLoader().load_wan_pipeline(folder)
    reference = _frames(plain)
    weights_mb = sum(p.numel() * p.element_size() for n in ("transformer", "transformer_2", "text_encoder")
                     for p in getattr(plain.pipeline, n).parameters()) / 2**20
    del plain
    (offload_dir / "other-model-4194303-0badc0de" / "transformer").mkdir(parents=True)   # a dead process's folder
    mine = offload_dir / f"mine-{os.getpid()}-0123abcd"
    mine.mkdir()
    events: list[str] = []
    wrapper = WanPipelineLoader().load_wan_pipeline(folder, optimization_config={"offload": "disk"},
                                                    progress_callback=lambda e: events.append(e.message))
    assert wrapper.plan.placement.value == "disk_offload"
    written = wrapper.offload_folder.path
    assert written.parent == offload_dir and written.name.startswith(f"wan22_t2v_a14b-{os.getpid()}-")
    assert sorted(p.name for p in written.iterdir()) == ["text_encoder", "transformer", "transformer_2"]
    assert wrapper.offload_folder.size_mb() >= weights_mb      # every weight written (and buffers, headers)
    assert any(m.startswith("Writing transformer_2 to disk") for m in events), events
    assert not (offload_dir / "other-model-4194303-0badc0de").exists() and mine.exists()   # only the dead one
    assert float((_frames(wrapper) - reference).abs().max()) == 0.0
    from core.run.generation import GenerationConfig
    from tests.lora_files import DEMO_WIDTHS, write_lora
    lora = write_lora(offload_dir.parent / "style.safetensors", "diffusers", *DEMO_WIDTHS)
    _, refused = wrapper.generate_frames(GenerationConfig(prompt="a red kite", width=64, height=64, num_frames=5,
                                                          num_inference_steps=2, loras=(str(lora),)))
    assert not refused.success and "LoRAs cannot be applied while" in refused.errors[0], refused.errors
    weight = wrapper.pipeline.transformer.blocks[0].ffn.net[0].proj.weight
    assert weight.untyped_storage().nbytes() == weight.numel() * 4   # a placeholder: the values live on disk
    del wrapper, weight
    gc.collect()
    assert not written.exists()


def test_the_offload_folder_must_be_writable(demo_models_dir: Path, offload_dir: Path) -> None:
    from core.run.load import WanPipelineLoader
    offload_dir.parent.mkdir(parents=True, exist_ok=True)
    offload_dir.write_text("a file where the folder should be")
    with pytest.raises(WanError) as info:
        WanPipelineLoader().load_wan_pipeline(demo_models_dir / "wan21_t2v", optimization_config={"offload": "disk"})
    assert "cannot be created or written" in info.value.message and "offload_dir" in info.value.remedy


def test_stale_folders_of_ended_processes_are_removed(tmp_path: Path) -> None:
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = tmp_path / f"Wan2.1-T2V-1.3B-{ended.stdout.strip()}-00ff00ff"
    (dead / "transformer").mkdir(parents=True)
    (dead / "transformer" / "group_1.safetensors").write_bytes(b"stale")
    alive = OffloadFolder.create(tmp_path, "Wan2.1 T2V/1.3B")
    unrelated = tmp_path / "keep-me"
    unrelated.mkdir()
    assert remove_stale(tmp_path) == [] and not dead.exists()       # create() already removed it
    assert alive.path.exists() and unrelated.exists() and "/" not in alive.path.name
    alive.remove()
    assert not alive.path.exists()


def test_generate_command_with_offload_disk(demo_models_dir: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from core.run.video import read_video_info
    offload = tmp_path / "offload"
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"offload_dir: {offload}\noutputs_dir: {tmp_path / 'outputs'}\n")
    monkeypatch.setenv("WAN_COMPAT_CONFIG", str(cfg))
    out = tmp_path / "disk.mp4"
    result = run_cli("generate", str(demo_models_dir / "wan21_t2v"), "--prompt", "a lighthouse", "--size", "64x64",
                     "--frames", "5", "--steps", "2", "--offload", "disk", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert read_video_info(out).frames == 5 and "Traceback" not in result.stderr
    assert "Placement: Offload to disk (offload=disk, your setting)" in result.stderr, result.stderr
    assert str(offload) in result.stderr
    assert offload.is_dir() and list(offload.iterdir()) == []        # written while it ran, deleted at the end
