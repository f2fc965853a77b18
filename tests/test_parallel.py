"""`generate --gpus N`: real torch.distributed ranks over gloo on the CPU (WAN_COMPAT_PARALLEL_BACKEND=gloo).

Every 2-rank run is started at once (one module fixture) so that their imports overlap;
each test then judges one of them as a user would: exit code, the printed lines, the MP4.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO

SIZE, FRAMES, STEPS = "64x64", "5", "3"


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(REPO), PYTHONIOENCODING="utf-8", HF_HUB_OFFLINE="1",
                WAN_COMPAT_PARALLEL_BACKEND="gloo", TMPDIR=str(tmp), **extra)


def _start(model: Path, out: Path, tmp: Path, steps: str = STEPS, **extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "core", "generate", str(model), "--prompt", "a red fox in the snow",
           "--size", SIZE, "--frames", FRAMES, "--steps", steps, "--seed", "7", "--out", str(out), "--gpus", "2"]
    return subprocess.Popen(cmd, cwd=REPO, env=_env(tmp, **extra), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


def _frames(path: Path) -> np.ndarray:
    import imageio.v3 as iio
    return iio.imread(path)


_ONE: dict[str, np.ndarray] = {}


def _one_gpu_mp4(model: Path, out: Path) -> np.ndarray:
    """The same request in this process, as `--gpus 1` runs it (the in-process path); once per model."""
    if str(model) in _ONE:
        return _ONE[str(model)]
    from core.check.detect import inspect
    from core.run.generation import GenerationConfig, request_for, resolve
    from core.run.load import load, plan_for_load
    w, h = (int(v) for v in SIZE.split("x"))
    config = GenerationConfig(prompt="a red fox in the snow", width=w, height=h, num_frames=int(FRAMES),
                              num_inference_steps=int(STEPS), seed=7, output_path=str(out))
    report = inspect(model)
    settings, errors = resolve(config, report)
    assert not errors
    wrapper = load(report, plan_for_load(report, request=request_for(settings, {})))
    result = wrapper.generate(config)
    assert result.success, result.errors
    _ONE[str(model)] = _frames(out)
    return _ONE[str(model)]


def _rank_processes(tmp: Path) -> list[int]:
    """PIDs of ranks of runs started by this module (their job folder is under ``tmp``)."""
    import psutil
    pids = []
    for proc in psutil.process_iter(["cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if "core.run.rank" in cmd and str(tmp) in cmd:
            pids.append(proc.pid)
    return pids


@pytest.fixture(scope="module")
def runs(demo_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple]:
    """All 2-rank runs, started together: {name: (model folder, out path, tmp, CompletedProcess-like)}."""
    from core.demo import build_demo_pipeline
    tmp = tmp_path_factory.mktemp("gpus")
    saved = tmp / "saved_ti2v"   # one expert, written by diffusers' own save_pretrained (Wan2.2 VAE, TI2V)
    build_demo_pipeline("wan22_ti2v_5b").save_pretrained(saved)
    models = {"a14b": demo_models_dir / "wan22_t2v_a14b", "saved": saved,
              "killed": demo_models_dir / "wan22_t2v_a14b", "fsdp": demo_models_dir / "wan22_t2v_a14b"}
    hooks = {"killed": {"WAN_COMPAT_PARALLEL_DIE_AT": "1:2"}, "fsdp": {"WAN_COMPAT_PARALLEL_FSDP": "1"}}
    started = {}
    for name, model in models.items():
        out = tmp / f"{name}.mp4"
        extra = hooks.get(name, {})
        started[name] = (model, out, _start(model, out, tmp, **extra), time.monotonic())
    done = {}
    for name, (model, out, proc, t0) in started.items():
        stdout, stderr = proc.communicate(timeout=300)
        done[name] = (model, out, tmp, proc.returncode, stdout, stderr, time.monotonic() - t0)
    return done


@pytest.mark.parametrize("name, experts", [("a14b", ["transformer", "transformer_2"]), ("saved", ["transformer"])])
def test_two_ranks_give_the_frames_of_one(runs: dict, name: str, experts: list[str]) -> None:
    model, out, tmp, code, stdout, stderr, _ = runs[name]
    assert code == 0, stderr[-2000:]
    assert stdout.strip().splitlines()[-1] == str(out)
    said = ", ".join(f"{e} 2 ways" for e in experts)
    assert f"Ran on 2 ranks (gloo): the video's tokens split over them (Ulysses): {said}." in stderr
    two = _frames(out)
    one = _one_gpu_mp4(model, tmp / f"{name}-one.mp4")
    assert two.shape == one.shape == (int(FRAMES), 64, 64, 3)
    assert np.array_equal(one, two)
    assert out.with_suffix(".json").is_file()


def test_fsdp2_with_ulysses_gives_the_frames_of_one(runs: dict) -> None:
    """Both A14B experts sharded 2 ways (FSDP2, forced by the test hook) and the tokens split 2 ways."""
    model, out, tmp, code, stdout, stderr, _ = runs["fsdp"]
    assert code == 0, stderr[-2000:]
    assert "Weights sharded 2 ways (FSDP2): transformer, transformer_2." in stderr
    assert "FSDP2 shards the transformer blocks 2 ways, so each GPU holds 1/2 of every expert" in stderr
    two = _frames(out).astype(np.int16)
    one = _one_gpu_mp4(model, tmp / "fsdp-one.mp4").astype(np.int16)
    assert two.shape == one.shape == (int(FRAMES), 64, 64, 3)
    assert np.abs(one - two).max() <= 1     # float frames within 1e-5: at most one 8-bit level apart
    import json

    from core.monitor import get_performance_monitor
    assert json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))["gpus"] == 2
    labels = [op.plan_label for op in get_performance_monitor().operations("generation")]
    assert any(label.endswith("2 GPUs (Ulysses + FSDP2)") for label in labels), labels   # Performance tab
    assert any("GPUs" not in label for label in labels)            # the one-process run, told apart


def test_a_rank_that_dies_stops_the_run_cleanly(runs: dict) -> None:
    _, out, tmp, code, stdout, stderr, seconds = runs["killed"]
    assert code == 1
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("Rank 1 of 2 stopped unexpectedly (killed by SIGKILL) after step"), stderr[-2000:]
    assert "no video was written" in last
    assert "Traceback" not in stderr
    assert not out.exists() and not out.with_suffix(".json").exists()
    assert stdout.strip() == ""
    assert seconds < 240
    assert _rank_processes(tmp) == []


def test_a_split_that_cannot_work_is_refused_before_launching(demo_models_dir: Path, tmp_path: Path) -> None:
    from core.run.parallel import split_problem
    model = demo_models_dir / "wan21_t2v"
    base = [sys.executable, "-m", "core", "generate", str(model), "--prompt", "x", "--steps", "2"]
    heads = subprocess.run([*base, "--size", "64x64", "--frames", "5", "--gpus", "3"], cwd=REPO,
                           env=_env(tmp_path), text=True, capture_output=True, timeout=120)
    assert heads.returncode == 2
    assert heads.stderr.strip().splitlines()[-1] == (
        "--gpus 3 cannot split this model: its 2 attention heads do not divide by 3 and the 32 latent tokens "
        "of 64x64 with 5 frames do not divide by 3. Use --gpus 1 or 2.")
    # 48x48 with 1 frame: 1 latent frame of 3x3 tokens, which 2 ranks cannot share evenly.
    tokens = subprocess.run([*base, "--size", "48x48", "--frames", "1", "--gpus", "2"], cwd=REPO,
                            env=_env(tmp_path), text=True, capture_output=True, timeout=120)
    assert tokens.returncode == 2
    assert "the 9 latent tokens of 48x48 with 1 frames do not divide by 2. Use --gpus 1." in tokens.stderr
    assert not list(tmp_path.glob("wan_compat_gpus_*"))     # nothing was launched
    from core.check.detect import inspect
    assert split_problem(inspect(model), 64, 64, 5, 2) is None


def test_cancel_stops_every_rank(demo_models_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "cancelled.mp4"
    proc = _start(demo_models_dir / "wan21_t2v", out, tmp_path, steps="400")
    seen: list[str] = []
    reader = threading.Thread(target=lambda: seen.extend(iter(lambda: proc.stderr.read(64), "")), daemon=True)
    reader.start()
    deadline = time.monotonic() + 180
    while "Step 2/400" not in "".join(seen) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    assert "Step 2/400" in "".join(seen)
    assert _rank_processes(tmp_path)
    os.kill(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=30) == 130
    reader.join(timeout=5)
    assert "Cancelled; every rank was stopped and no video was written." in "".join(seen)
    assert not out.exists()
    time.sleep(0.5)
    assert _rank_processes(tmp_path) == []


def test_the_plan_knows_the_split(demo_models_dir: Path) -> None:
    from core.check.detect import inspect
    from core.run.generation import GenerationConfig, request_for, resolve
    from core.run.hardware import GpuInfo, HardwareInfo
    from core.run.optimize import plan_for
    from core.run.parallel import one_gpu_hardware, split_memory
    report = inspect(demo_models_dir / "wan22_t2v_a14b")
    gpu = GpuInfo(0, "RTX 4090", 24564, 24000, (8, 9), True)
    hardware = HardwareInfo(gpus=[gpu, GpuInfo(1, "RTX 4090", 24564, 24000, (8, 9), True)], ram_total_mb=64000,
                            ram_free_mb=60000, cpu_count=16)
    settings, _ = resolve(GenerationConfig(prompt="x", width=832, height=480, num_frames=81), report)
    plan = plan_for(report, one_gpu_hardware(hardware, 0), request_for(settings, {}))
    assert plan.placement.value != "balanced"          # a rank plans for its own GPU only
    one, two, four = (split_memory(plan, n) for n in (1, 2, 4))
    acts = plan.estimate.activations_mb
    assert one.stage_vram_mb["denoise"] - two.stage_vram_mb["denoise"] == pytest.approx(acts / 2)
    assert one.stage_vram_mb["denoise"] - four.stage_vram_mb["denoise"] == pytest.approx(acts * 3 / 4)
    assert "split 2 ways (Ulysses)" in two.line() and "every GPU holds the whole model" in two.line()
