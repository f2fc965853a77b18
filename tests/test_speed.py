"""Speed presets (issue 14): the plan's choices per machine, bad settings ignored with reasons, and real
runs on demo models with diffusers' cache hooks: transformer passes skipped (counted by a forward hook on
the last block), frames finite, the preset in the history, MagCache calibrated once and reused."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from core.check.detect import inspect
from core.check.report import ModelReport
from core.monitor import get_performance_monitor, history_db_path
from core.monitor.context import model_fingerprint
from core.run.generation import GenerationConfig, request_for, resolve
from core.run.hardware import GpuInfo, HardwareInfo
from core.run.optimize import OptimizationRequest, plan_for

ALL_KERNELS = {"flash_attn": True, "sageattention": True, "triton": True, "compiler": "/usr/bin/cc"}
STEPS = 12


def gpu_machine(cc: tuple[int, int] = (8, 9), kernels: dict | None = None) -> HardwareInfo:
    gpu = GpuInfo(index=0, name="NVIDIA GeForce RTX 4090", total_mb=24564, free_mb=24000, compute_capability=cc,
                  bf16_supported=cc >= (8, 0))
    return HardwareInfo(gpus=[gpu], ram_total_mb=131072, ram_free_mb=120000, cpu_count=16,
                        kernels=ALL_KERNELS if kernels is None else kernels)


CPU = HardwareInfo(gpus=[], ram_total_mb=131072, ram_free_mb=120000, cpu_count=16)


def request(steps: int = 40, **overrides: object) -> OptimizationRequest:
    return OptimizationRequest(width=832, height=480, num_frames=81, num_inference_steps=steps, overrides=overrides)


@pytest.fixture(scope="module")
def a14b(demo_models_dir: Path) -> ModelReport:
    return inspect(demo_models_dir / "wan22_t2v_a14b")


# --- the plan ---------------------------------------------------------------------------------

def test_auto_on_a_gpu_with_every_kernel_takes_sage_compile_and_caches_both_experts(a14b: ModelReport) -> None:
    plan = plan_for(a14b, gpu_machine(), request(speed="auto"))
    speed = plan.speed
    assert speed.preset.value == "auto"
    assert plan.attention_backend.value == "sage" and "installed" in plan.attention_backend.reason
    assert speed.compile.value is True and "triton" in speed.compile.reason
    assert set(speed.caches) == {"transformer", "transformer_2"}
    assert all(c.kind == "magcache" and c.threshold == 0.12 for c in speed.caches.values())
    assert "both experts" in speed.cache.reason and "E012K2R02" in speed.cache.reason
    lines = "\n".join(plan.summary_lines())
    assert "Speed: Auto" in lines and "Step cache: MagCache" in lines and "Compile: On" in lines
    assert plan.to_dict()["speed"]["value"] == "auto"


def test_auto_takes_only_what_the_machine_runs(a14b: ModelReport) -> None:
    bare = plan_for(a14b, gpu_machine(kernels={}), request(speed="auto"))
    assert bare.attention_backend.value == "native" and "sage, flash cannot run here" in bare.attention_backend.reason
    assert bare.speed.compile.value is False and "triton" in bare.speed.compile.reason
    no_compiler = plan_for(a14b, gpu_machine(kernels={"triton": True}), request(speed="fast"))
    assert no_compiler.speed.compile.value is False and "C compiler" in no_compiler.speed.compile.reason
    turing = plan_for(a14b, gpu_machine(cc=(7, 5)), request(speed="auto"))    # RTX 20: flash/sage need 8.0
    assert turing.attention_backend.value == "native"
    balanced = plan_for(a14b, gpu_machine(), request(speed="balanced"))
    assert balanced.attention_backend.value == "flash" and balanced.speed.compile.value is False
    cpu = plan_for(a14b, CPU, request(speed="auto"))
    assert cpu.attention_backend.value == "native" and cpu.speed.compile.value is False
    assert "CPU" in cpu.speed.compile.reason
    quality = plan_for(a14b, gpu_machine(), request())
    assert quality.speed.preset.value == "quality" and quality.speed.cache.value == "none"
    assert quality.attention_backend.value == "native" and quality.speed.compile.value is False


def test_bad_overrides_are_ignored_with_reasons(a14b: ModelReport) -> None:
    plan = plan_for(a14b, gpu_machine(kernels={}), request(speed="turbo", attention_backend="flash", compile=True,
                                                           cache="magcache", cache_threshold=5))
    notes = "\n".join(plan.notes)
    assert "Ignored speed=turbo" in notes
    assert "Ignored attention_backend=flash: the flash-attn package is not installed" in notes
    assert "Ignored compile=true: torch.compile needs triton" in notes
    assert "Ignored cache_threshold=5: a cache threshold must be above 0 and at most 0.5" in notes
    assert plan.attention_backend.value == "native" and plan.speed.compile.value is False
    assert plan.speed.caches["transformer"].threshold == 0.12        # the preset's value instead
    assert plan.fits
    cpu = plan_for(a14b, CPU, request(attention_backend="sage", compile="yes", cache="fbcache",
                                      cache_threshold="abc"))
    notes = "\n".join(cpu.notes)
    assert "Ignored attention_backend=sage: that attention kernel needs an NVIDIA GPU" in notes
    assert "Ignored compile=yes" in notes and "Ignored cache_threshold=abc" in notes
    assert cpu.speed.cache.value == "fbcache"


def test_thresholds_per_expert_and_other_caches(a14b: ModelReport) -> None:
    plan = plan_for(a14b, CPU, request(cache="fbcache", cache_threshold=0.08, cache_threshold_2=0.04))
    caches = plan.speed.caches
    assert (caches["transformer"].threshold, caches["transformer_2"].threshold) == (0.08, 0.04)
    assert "high-noise expert 0.08" in plan.speed.cache.reason and "low-noise expert 0.04" in plan.speed.cache.reason
    taylor = plan_for(a14b, CPU, request(cache="taylorseer", cache_threshold=0.1))
    assert taylor.speed.caches["transformer"].cache_interval == 5
    assert any("TaylorSeer has no threshold" in n for n in taylor.notes)


def test_short_distilled_runs_turn_the_cache_off_and_say_so(a14b: ModelReport) -> None:
    four = plan_for(a14b, CPU, request(steps=4, speed="fast"))
    assert four.speed.cache.value == "none" and not four.speed.caches
    assert "a 4-step run" in four.speed.cache.reason and "every step is computed" in four.speed.cache.reason
    lora = plan_for(a14b, CPU, request(steps=20, speed="fast",
                                       loras=["/loras/Wan2.2-Lightning_T2V-A14B-4steps-lora_HIGH_fp16.safetensors"]))
    assert lora.speed.cache.value == "none"
    assert "Wan2.2-Lightning_T2V-A14B-4steps-lora_HIGH_fp16.safetensors" in lora.speed.cache.reason


# --- real runs on the demo A14B (both experts) -------------------------------------------------

def _forget_calibration(report: ModelReport) -> None:
    path = history_db_path()
    if path.exists():
        with contextlib.closing(sqlite3.connect(path)) as conn, contextlib.suppress(sqlite3.OperationalError):
            conn.execute("DELETE FROM magcache_calibrations WHERE model_fingerprint = ?", (model_fingerprint(report),))
            conn.commit()


def _run(wrapper: object, report: ModelReport, overrides: dict) -> tuple[np.ndarray, object, object]:
    config = GenerationConfig(prompt="a red fox in the snow", width=64, height=64, num_frames=5,
                              num_inference_steps=STEPS, guidance_scale=5.0, seed=7)
    settings, errors = resolve(config, report)
    assert not errors
    plan = plan_for(report, wrapper.hardware, request_for(settings, overrides))
    frames, result = wrapper.generate_frames(config, plan=plan)
    assert result.success, result.errors
    return frames, result, plan


@pytest.fixture(scope="module")
def a14b_wrapper(a14b: ModelReport) -> object:
    from core.run.hardware import probe
    from core.run.load import load
    return load(a14b, plan_for(a14b, probe(use_torch=True), request(steps=STEPS)))


def test_magcache_calibrates_once_stores_it_and_then_skips_transformer_passes(a14b: ModelReport,
                                                                              a14b_wrapper: object) -> None:
    from core.run.magcache_calibration import stored_for
    _forget_calibration(a14b)
    quality, q_result, _ = _run(a14b_wrapper, a14b, {"speed": "quality"})
    assert q_result.metadata["speed"]["transformer_calls"] == q_result.metadata["speed"]["forward_calls"] == 2 * STEPS

    first, result, plan = _run(a14b_wrapper, a14b, {"speed": "fast"})
    assert "no MagCache calibration yet, so this run calibrates it" in plan.speed.cache.reason
    speed = result.metadata["speed"]
    assert speed["calibrating"] == speed["calibrated"] == ["transformer", "transformer_2"]
    assert speed["transformer_calls"] == 2 * STEPS                 # a calibration run computes every step
    assert any("MagCache calibrated for this model" in w for w in result.warnings)
    stored = stored_for(a14b)
    high, low = speed["caches"]["transformer"]["steps"], speed["caches"]["transformer_2"]["steps"]
    assert high + low == STEPS and high > 0 and low > 0
    assert (stored["transformer"].steps, stored["transformer_2"].steps) == (high, low)
    assert len(stored["transformer"].ratios) == high and all(np.isfinite(stored["transformer"].ratios))

    second, result, plan = _run(a14b_wrapper, a14b, {"speed": "fast"})
    assert "calibrated for this model (high-noise expert at" in plan.speed.cache.reason
    speed = result.metadata["speed"]
    assert not speed["calibrating"] and speed["forward_calls"] == 2 * STEPS
    assert speed["transformer_calls"] < 0.7 * speed["forward_calls"], speed     # passes skipped, both experts
    assert np.isfinite(second).all() and second.shape == quality.shape
    assert np.isfinite(first).all()

    ops = get_performance_monitor().operations("generation", model=model_fingerprint(a14b))
    last = ops[-1]
    assert last.plan.get("speed") == "fast" and "speed fast" in last.plan_label
    assert last.context["speed"]["transformer_calls"] == speed["transformer_calls"]

    # the Performance tab compares the presets of these otherwise equal runs
    from wan_ui.performance import speed_rows
    rows = {r[4]: r for r in speed_rows(ops)}
    assert {"quality", "fast"} <= set(rows)
    assert rows["quality"][8] == f"{2 * STEPS} of {2 * STEPS}" and rows["quality"][7] == "1.00x"
    assert rows["fast"][8] == f"{speed['transformer_calls']} of {2 * STEPS}" and rows["fast"][5] == 2
    assert isinstance(rows["fast"][9], float) and rows["fast"][9] > 10       # frames moved, but not far


def test_first_block_cache_and_taylorseer_skip_passes_with_finite_frames(a14b: ModelReport,
                                                                         a14b_wrapper: object) -> None:
    for kind in ("fbcache", "taylorseer"):
        frames, result, plan = _run(a14b_wrapper, a14b, {"cache": kind, "cache_threshold": 0.2 if kind == "fbcache"
                                                         else None})
        speed = result.metadata["speed"]
        assert speed["cache"] == kind and np.isfinite(frames).all()
        assert speed["transformer_calls"] < speed["forward_calls"] == 2 * STEPS, (kind, speed)
    # the model is left plain: a quality run afterwards computes every pass
    _, result, _ = _run(a14b_wrapper, a14b, {})
    assert result.metadata["speed"]["transformer_calls"] == 2 * STEPS


def test_cli_generate_with_speed_flags_ignores_what_cannot_run(demo_models_dir: Path, tmp_path: Path) -> None:
    import json

    from tests.conftest import run_cli
    out = tmp_path / "fox.mp4"
    done = run_cli("generate", str(demo_models_dir / "wan21_t2v"), "--prompt", "a fox", "--size", "64x64",
                   "--frames", "5", "--steps", "10", "--speed", "balanced", "--cache", "taylorseer",
                   "--attention", "sage", "--compile", "--cache-threshold", "9", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "Ignored attention_backend=sage: that attention kernel needs an NVIDIA GPU" in done.stderr
    assert "Ignored compile=true: compiling targets the GPU" in done.stderr
    assert "Ignored cache_threshold=9: TaylorSeer has no threshold" in done.stderr
    speed = json.loads(out.with_suffix(".json").read_text())["speed"]
    assert speed["preset"] == "balanced" and speed["cache"] == "taylorseer"
    assert speed["transformer_calls"] < speed["forward_calls"] == 20


def test_doctor_reports_kernels_with_install_lines_for_this_torch_and_cuda() -> None:
    from core.doctor import run_doctor
    from core.run.kernel_checks import check_kernels
    from core.run.speed import Kernels
    facts = {"ok": True, "version": "2.13.0+cu130", "cuda_version": "13.0",
             "devices": [{"name": "NVIDIA GeForce RTX 4090", "compute_capability": [8, 9]}]}
    checks = {c.name: c for c in check_kernels(gpu_machine(), facts, Kernels(triton=True, compiler="/usr/bin/cc"))}
    assert list(checks) == ["flash-attn", "sageattention", "triton", "compile"]
    assert all(c.status == "ok" for c in checks.values())          # optional: never an error
    flash = checks["flash-attn"]
    assert "not installed" in flash.summary and "FlashAttention 2" in flash.summary
    assert "-m pip install flash-attn==" in flash.remedy and "--no-build-isolation" in flash.remedy
    assert "torch 2.13.0 with CUDA 13.0" in flash.remedy
    assert "-m pip install sageattention==1.0.6" in checks["sageattention"].remedy
    assert "about 2x FlashAttention 2" in checks["sageattention"].summary
    assert checks["triton"].summary.startswith("triton installed")
    assert "available" in checks["compile"].summary and "10-30% faster" in checks["compile"].summary
    no_compiler = {c.name: c for c in check_kernels(gpu_machine(), facts, Kernels(triton=True))}
    assert "C compiler" in no_compiler["compile"].summary and no_compiler["compile"].remedy
    turing = {"ok": True, "version": "2.13.0+cu126", "cuda_version": "12.6",
              "devices": [{"name": "RTX 2080 Ti", "compute_capability": [7, 5]}]}
    old = {c.name: c for c in check_kernels(gpu_machine(cc=(7, 5)), turing, Kernels())}
    assert "compute capability 8.0" in old["sageattention"].summary and not old["sageattention"].remedy
    # this machine (no GPU): the doctor lists the four, each saying it needs an NVIDIA GPU
    report = run_doctor(hardware=CPU).to_dict()
    kernels = {c["name"]: c for c in report["checks"] if c["name"] in checks}
    assert set(kernels) == set(checks) and "NVIDIA GPU" in kernels["flash-attn"]["summary"]


# --- the Generate tab ----------------------------------------------------------------------------

def test_the_generate_tab_plans_and_runs_with_the_speed_controls(app_config, demo_models_dir: Path) -> None:
    import json

    from wan_ui.generate import generate, update_plan
    from wan_ui.speed_choice import speed_overrides
    assert speed_overrides("quality", "auto", None, None, "auto", "auto") == {}       # as before presets
    assert speed_overrides("auto", "auto", None, None, "auto", "auto") == {"speed": "auto"}
    assert speed_overrides("fast", "fbcache", 0.1, None, "sage", "off") == {
        "speed": "fast", "cache": "fbcache", "cache_threshold": 0.1, "attention_backend": "sage", "compile": False}
    model = demo_models_dir / "wan22_t2v_a14b"
    html = update_plan(str(model), 64, 64, 5, STEPS, 5.0, "auto", "auto", "auto", "auto",
                       "fast", "auto", None, None, "sage", "on")
    assert "Speed: Fast" in html and "Step cache: MagCache" in html
    assert "Ignored attention_backend=sage" in html and "Ignored compile=true" in html
    *_, (_, video, result) = list(generate(str(model), "a red fox in the snow", "", 64, 64, 5, STEPS, 5.0, None, 7,
                                           None, None, "auto", "auto", "auto", "auto", speed="balanced",
                                           cache="fbcache", cache_threshold=0.2))
    assert result["success"], result
    speed = json.loads(Path(video).with_suffix(".json").read_text(encoding="utf-8"))["speed"]
    assert speed["preset"] == "balanced" and speed["cache"] == "fbcache"
    assert speed["caches"]["transformer"]["threshold"] == 0.2
    assert speed["transformer_calls"] < speed["forward_calls"]


def test_a_step_that_goes_nan_with_a_cache_is_retried_without_it(demo_models_dir: Path, tmp_path: Path) -> None:
    from core.run.generation import GenerationConfig
    from core.run.load import WanPipelineLoader
    wrapper = WanPipelineLoader().load_wan_pipeline(demo_models_dir / "wan21_t2v",
                                                    optimization_config={"speed": "balanced", "cache": "fbcache"})
    calls = []

    def bad_kernel(module, args, output):      # NaN from the third call (step 2) on
        calls.append(1)
        return output * float("nan") if len(calls) > 2 else output

    wrapper.pipeline.transformer.blocks[0].attn1.register_forward_hook(bad_kernel)
    result = wrapper.generate(GenerationConfig(prompt="a fox", width=64, height=64, num_frames=5,
                                               num_inference_steps=10, seed=1, output_path=str(tmp_path / "x.mp4")))
    assert result.success, result.errors
    said = " ".join(result.warnings)
    assert "without the step cache (was fbcache)" in said, said
    assert result.metadata["speed"]["cache"] == "none"
    assert result.metadata["speed"]["transformer_calls"] == result.metadata["speed"]["forward_calls"] == 20


def test_bench_gpu_mode_arguments_on_a_machine_without_a_gpu(capsys: pytest.CaptureFixture[str]) -> None:
    import importlib.util

    import torch
    spec = importlib.util.spec_from_file_location("bench_speed", Path(__file__).parent.parent / "bench" / "speed.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    args = bench.parse_args(["--gpu"])
    assert (args.steps, args.size, args.presets) == (10, (1280, 704, 121), "quality,balanced,fast,auto")
    assert args.backends.split(",")[:2] == ["native", "_native_cudnn"]
    cpu = bench.parse_args([])
    assert (cpu.steps, cpu.size, cpu.gpu) == (20, (128, 128, 17), False)
    for bad in (["--presets", "turbo"], ["--size", "100x64x5"], ["--steps", "0"], ["--layers", "2"]):
        with pytest.raises(SystemExit) as stop:
            bench.parse_args(bad)
        assert stop.value.code == 2
    assert "unknown preset turbo" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert bench.main(["--gpu"]) == 2
        assert "--gpu needs an NVIDIA GPU" in capsys.readouterr().err
