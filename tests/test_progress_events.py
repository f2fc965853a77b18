"""ProgressEvents from a real load and generation (issue 9 §2), on the demo models, on the CPU."""

from __future__ import annotations

from itertools import groupby
from pathlib import Path

import pytest

from core.check.detect import inspect
from core.progress import Progress, ProgressEvent
from core.run.generation import GenerationConfig, request_for, resolve
from core.run.hardware import probe
from core.run.load import WanPipelineLoader, load
from core.run.optimize import plan_for

torch = pytest.importorskip("torch")


def test_one_job_of_load_and_generate_sends_its_stages_in_order(demo_models_dir: Path, tmp_path: Path) -> None:
    report = inspect(demo_models_dir / "wan22_t2v_a14b")
    config = GenerationConfig(prompt="waves on a beach", width=32, height=32, num_frames=5, num_inference_steps=6,
                              output_path=str(tmp_path / "waves.mp4"))
    settings, errors = resolve(config, report)
    assert not errors and settings is not None
    plan = plan_for(report, probe(), request_for(settings))
    events: list[ProgressEvent] = []
    job = Progress(events.append)                       # one job: load 0-30, generate 30-100
    wrapper = load(report, plan, progress=job.span(0, 30))
    result = wrapper.generate(config, plan=plan, progress=job.span(30, 100))
    assert result.success, result.errors

    stages = [stage for stage, _ in groupby(e.stage for e in events)]
    assert stages == ["check", "load", "encode", "denoise", "decode", "write", "done"], stages
    percents = [e.percent for e in events]
    assert percents == sorted(percents) and percents[-1] == 100
    assert max(e.percent for e in events if e.stage == "load") <= 30 < events[-1].percent

    steps = [e for e in events if e.stage == "denoise"]
    assert [e.step for e in steps] == list(range(1, 7)) and {e.steps for e in steps} == {6}
    assert all(e.seconds_per_step and e.seconds_per_step > 0 and e.eta_seconds is not None for e in steps)
    assert steps[-1].eta_seconds == 0
    experts = [e.expert for e in steps]
    assert set(experts) == {"high-noise", "low-noise"}             # the A14B demo switches experts
    assert experts == sorted(experts, key=["high-noise", "low-noise"].index)   # high first, then low
    assert "high-noise expert" in steps[0].message                 # the words people read stay


def test_a_seed_style_callback_still_gets_message_and_percent(demo_models_dir: Path, tmp_path: Path) -> None:
    calls: list[tuple[str, float]] = []
    wrapper = WanPipelineLoader().load_wan_pipeline(demo_models_dir / "wan21_t2v",
                                                    progress_callback=lambda m, p: calls.append((m, p)))
    assert calls[0] == ("Checking the model", 0) and calls[-1][1] == 100
    assert all(isinstance(m, str) and isinstance(p, float) for m, p in calls)
    config = GenerationConfig(prompt="rain", width=32, height=32, num_frames=5, num_inference_steps=2,
                              output_path=str(tmp_path / "rain.mp4"))
    for kwargs in ({"progress_callback": lambda m, p: calls.append((m, p))},
                   {"progress": lambda m, p: calls.append((m, p))}):
        calls.clear()
        assert wrapper.generate(config, **kwargs).success
        assert [m[:8] for m, _ in calls if m.startswith("Step ")] == ["Step 1/2", "Step 2/2"]
        assert [p for _, p in calls] == sorted(p for _, p in calls) and calls[-1][1] == 100
    calls.clear()
    assert wrapper.generate(config, lambda m, p: calls.append((m, p))).success   # the seed's positional form
    assert any(m.startswith("Step 1/2") for m, _ in calls)
