"""The performance monitor: real loads and generations recorded, statistics, regressions, storage."""

from __future__ import annotations

import json
import os
import random
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from core import config as app_config
from core.config import AppConfig, load_config
from core.monitor import (
    SCHEMA_VERSION,
    OperationMetrics,
    PerformanceMonitor,
    effectiveness,
    find_regressions,
    get_performance_monitor,
    model_fingerprint,
)
from tests.conftest import REPO, run_cli

MB = 2**20


@pytest.fixture()
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh history database, also the app-wide monitor's (what core.run.load records into)."""
    path = tmp_path / "data" / "history.db"
    monkeypatch.setenv("WAN_COMPAT_HISTORY_DB", str(path))       # for the CLI in child processes
    monkeypatch.delenv("WAN_COMPAT_MONITOR", raising=False)
    with process_config(load_config()):                           # this process, with the override
        yield path


@contextmanager
def process_config(cfg: AppConfig) -> Iterator[AppConfig]:
    """Make ``cfg`` this process's configuration (core.config.use) for the block."""
    previous = app_config.use(cfg)
    try:
        yield cfg
    finally:
        app_config.use(previous)


def sampler_threads(settle: float = 0.0) -> list[threading.Thread]:
    """The monitors' sampling threads, after waiting up to ``settle`` s for finishing ones to end."""
    deadline = time.time() + settle
    while True:
        threads = [t for t in threading.enumerate() if t.name == "wan-compat-monitor"]
        if not threads or time.time() >= deadline:
            return threads
        time.sleep(0.01)


def timed(monitor: PerformanceMonitor, seconds: float, operation_type: str = "generation",
          **context: object) -> OperationMetrics:
    """One real operation that takes ``seconds`` (a sleep)."""
    with monitor.track(operation_type, **context) as op:
        time.sleep(seconds)
    assert op.metrics is not None
    return op.metrics


# --- real operations on the demo models ----------------------------------------------------

def test_loads_and_generations_record_themselves_and_read_back_after_reopening(
        demo_models_dir: Path, db: Path, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from core.check.detect import inspect
    from core.run.generation import GenerationConfig
    from core.run.load import WanPipelineLoader

    folder = demo_models_dir / "wan21_t2v"
    wrapper = WanPipelineLoader().load_wan_pipeline(folder)
    small = dict(prompt="a red fox in the snow", width=32, height=32, num_frames=5, num_inference_steps=2, seed=3)
    frames, result = wrapper.generate_frames(GenerationConfig(**small))
    assert result.success, result.errors
    video = wrapper.generate(GenerationConfig(**small, output_path=str(tmp_path / "fox.mp4")))
    assert video.success, video.errors
    _, empty = wrapper.generate_frames(GenerationConfig(**{**small, "prompt": ""}))
    cancel = threading.Event()
    cancel.set()
    _, cancelled = wrapper.generate_frames(GenerationConfig(**small), cancel=cancel)
    assert cancelled.cancelled
    with pytest.raises(Exception):  # noqa: B017 - whichever error: the point is that the failed load is recorded
        WanPipelineLoader().load_wan_pipeline(tmp_path / "no such model")
    get_performance_monitor().close()

    ops = PerformanceMonitor(db).operations()     # a new monitor: what is on disk
    assert [(o.operation_type, o.success) for o in ops] == [
        ("load", True), ("generation", True), ("generation", True), ("generation", False), ("generation", False),
        ("load", False)]
    load, gen, gen_video, failed, stopped, failed_load = ops
    fingerprint = model_fingerprint(inspect(folder))
    assert load.model == "wan21_t2v" and load.model_fingerprint == fingerprint
    assert load.plan["device"] in ("cpu", "cuda") and load.plan["precision"] in ("fp32", "bf16", "fp16")
    assert "CPUs" in load.hardware and load.duration >= wrapper.load_seconds
    assert load.versions["app"] and load.versions["diffusers"] and load.versions["torch"]
    assert load.memory_peak_mb >= load.memory_start_mb > 0

    assert (gen.model_fingerprint, gen.size, gen.frames, gen.steps) == (fingerprint, "32x32", 5, 2)
    assert gen.seconds_per_step == pytest.approx(result.seconds_per_step)
    assert gen.stage_seconds == pytest.approx(result.seconds)
    assert {"encode", "denoise", "decode", "total"} <= set(gen.stage_seconds)
    assert gen.duration >= result.seconds["total"] and gen.memory_peak_mb >= gen.memory_start_mb > 0
    assert gen.memory_peak_mb == result.peak_ram_mb           # one measurement: the card and the history agree
    assert gen.cpu_percent is not None
    if gen.plan["device"] == "cpu":
        assert gen.gpu_memory_peak_mb is None
    else:                                                  # torch's peak, as the generation saw it
        assert gen.gpu_memory_peak_mb == result.peak_vram_mb
    assert gen.plan == load.plan and gen.hardware == load.hardware
    assert "write" in gen_video.stage_seconds          # generate(): one record, with the MP4 writing
    assert "prompt" in failed.error and not failed.cancelled
    assert stopped.cancelled and stopped.error.startswith("Cancelled")
    assert failed_load.model == "no such model" and "Not found" in failed_load.error


def test_a_broken_monitor_never_breaks_a_generation(demo_models_dir: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("torch")
    from core.run.generation import GenerationConfig
    from core.run.load import WanPipelineLoader
    blocker = tmp_path / "a file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("WAN_COMPAT_HISTORY_DB", str(blocker / "history.db"))   # cannot be created
    with process_config(load_config()):
        wrapper = WanPipelineLoader().load_wan_pipeline(demo_models_dir / "wan21_t2v")
        _, result = wrapper.generate_frames(GenerationConfig(prompt="a fox", width=32, height=32, num_frames=5,
                                                             num_inference_steps=2))
        assert result.success
        assert any("cannot be used" in w for w in get_performance_monitor().warnings)


# --- what one operation measures -------------------------------------------------------------

def test_summary_numbers_match_known_durations(db: Path) -> None:
    monitor = PerformanceMonitor(db)
    sleeps = [0.02, 0.04, 0.06, 0.08, 0.10]
    for seconds in sleeps:
        with monitor.track("generation", model="m", width=32, height=32, frames=5, steps=4) as op:
            time.sleep(seconds)
            op.set(seconds_per_step=seconds / 4)
        assert seconds <= op.metrics.duration < seconds + 0.05
    with monitor.track("load", model="m"):
        time.sleep(0.01)
    with pytest.raises(RuntimeError):
        with monitor.track("generation", model="m"):
            raise RuntimeError("boom")

    durations = sorted(o.duration for o in monitor.operations("generation") if o.success)
    summary = monitor.get_performance_summary(operation_type="generation")
    stats = summary["duration_stats"]
    assert (summary["operations"], summary["succeeded"], summary["failed"]) == (6, 5, 1)
    assert stats["count"] == 5
    assert stats["median"] == pytest.approx(np.median(durations)) and stats["median"] == pytest.approx(0.06, abs=0.03)
    assert stats["mean"] == pytest.approx(np.mean(durations))
    assert stats["p95"] == pytest.approx(np.percentile(durations, 95))
    assert (stats["min"], stats["max"]) == (durations[0], durations[-1])
    steps = summary["seconds_per_step_stats"]
    assert steps["median"] == pytest.approx(0.015) and steps["p95"] == pytest.approx(np.percentile([s / 4 for s in sleeps], 95))
    assert summary["memory_stats"]["count"] == 5
    everything = monitor.get_performance_summary()
    assert set(everything["by_type"]) == {"generation", "load"} and everything["operations"] == 7
    assert monitor.get_performance_summary(model="other")["operations"] == 0
    assert monitor.get_performance_summary(since=time.time() + 60)["duration_stats"]["count"] == 0


def test_memory_peak_is_sampled_in_the_background_and_the_thread_stops(db: Path) -> None:
    monitor = PerformanceMonitor(db, sample_interval=0.02)
    assert not sampler_threads(settle=2)        # those of earlier tests have ended
    monitor.start_operation("op-1", "generation")
    monitor.start_operation("op-2", "load")                 # two open operations, one thread
    assert len(sampler_threads()) == 1
    block = b"\x01" * (80 * MB)                             # written, so it is resident
    time.sleep(0.3)
    del block
    first = monitor.end_operation("op-1", success=True)
    second = monitor.end_operation("op-2", success=False, error="stopped")
    assert first.memory_peak_mb - first.memory_start_mb > 60
    assert second.memory_peak_mb - second.memory_start_mb > 60 and not second.success
    assert not sampler_threads(settle=2)
    with pytest.raises(KeyError):
        monitor.end_operation("op-1", success=True)


def test_switched_off_records_nothing(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WAN_COMPAT_MONITOR", "off")
    off = load_config()                     # the override is applied when the config is loaded
    monkeypatch.delenv("WAN_COMPAT_MONITOR")
    assert off.record_history is False and load_config().record_history is True
    metrics = timed(get_performance_monitor(off), 0.01)
    assert metrics.duration >= 0.01 and metrics.memory_peak_mb is None
    monitor = PerformanceMonitor(db)
    monitor.enabled = False
    timed(monitor, 0.01)
    assert not db.exists() and not sampler_threads(settle=2)
    monitor.enabled = True
    timed(monitor, 0.01)
    assert len(monitor.operations()) == 1


def test_a_failing_store_is_only_a_warning(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monitor = PerformanceMonitor(db)

    def broken(metrics: OperationMetrics) -> None:
        raise RuntimeError("disk on fire")
    monkeypatch.setattr(monitor, "_store", broken)
    with monitor.track("generation") as op:
        value = 42
    assert value == 42 and op.metrics is None
    assert any("disk on fire" in w for w in monitor.warnings)


# --- regressions -----------------------------------------------------------------------------

BASE = OperationMetrics(operation_id="x", operation_type="generation", started_at=0.0, duration=1.0, success=True,
                        seconds_per_step=0.1, memory_peak_mb=1000.0, model="wan21_t2v", model_fingerprint="f1",
                        width=832, height=480, frames=33, steps=10,
                        plan={"device": "cuda", "precision": "bf16", "placement": "model_offload", "vae_tiling": False},
                        hardware="16 CPUs, 125 GB RAM, 1x NVIDIA H100 (80 GB)",
                        versions={"torch": "2.12.0", "diffusers": "0.41.0", "driver": "550.54"})


def runs(durations: list[float], start: int = 0, **changes: object) -> list[OperationMetrics]:
    """Comparable runs with these durations (seconds per step scales with them)."""
    return [replace(BASE, operation_id=f"r{start + i}", started_at=float(start + i), duration=d,
                    seconds_per_step=d / 10, **changes) for i, d in enumerate(durations)]


JITTER = [1.00, 1.03, 0.98, 1.02, 0.97, 1.01, 0.99, 1.04]


def test_a_clearly_slower_comparable_run_is_found_with_what_changed() -> None:
    history = runs(JITTER) + runs([1.52, 1.48, 1.55], start=8,
                                  versions={"torch": "2.13.0", "diffusers": "0.41.0", "driver": "560.94"})
    alerts = find_regressions(history)
    assert {a.metric_name for a in alerts} == {"duration", "seconds_per_step"}
    alert = next(a for a in alerts if a.metric_name == "duration")
    assert alert.baseline == pytest.approx(np.median(JITTER)) and alert.current == pytest.approx(1.52)
    assert alert.change_percent == pytest.approx(100 * (1.52 - np.median(JITTER)) / np.median(JITTER))
    assert (alert.baseline_runs, alert.current_runs) == (8, 3)
    assert alert.confidence == 1.0 and alert.confidence_label == "high"
    assert alert.what_changed == {"torch": ("2.12.0", "2.13.0"), "driver": ("550.54", "560.94")}
    assert "torch 2.12.0 -> 2.13.0" in alert.message and "832x480" in alert.message


def test_a_plan_detail_change_is_named() -> None:
    history = runs(JITTER) + runs([1.5, 1.6, 1.5], start=8, plan={**BASE.plan, "vae_tiling": True})
    (alert, *_), = [[a for a in find_regressions(history) if a.metric_name == "duration"]]
    assert alert.what_changed == {"plan.vae_tiling": (False, True)}


def test_memory_growth_is_a_regression_too() -> None:
    history = runs(JITTER) + [replace(o, memory_peak_mb=1400.0) for o in runs([1.0, 1.0, 1.0], start=8)]
    assert [a.metric_name for a in find_regressions(history)] == ["memory_peak_mb"]


@pytest.mark.parametrize("recent", [
    pytest.param([1.05, 0.96, 1.03], id="jitter"),
    pytest.param([1.0, 0.99, 3.0], id="one noisy run"),
    pytest.param([3.0], id="too few recent runs"),
])
def test_no_alert_from_jitter_or_one_noisy_run(recent: list[float]) -> None:
    assert find_regressions(runs(JITTER) + runs(recent, start=8)) == []


def test_a_noisy_baseline_needs_a_larger_change() -> None:
    noisy = [1.0, 1.4, 0.7, 1.3, 0.8, 1.2, 0.9, 1.1]
    assert find_regressions(runs(noisy) + runs([1.3, 1.35, 1.3], start=8)) == []     # inside the noise
    assert find_regressions(runs(noisy) + runs([2.5, 2.6, 2.4], start=8))


@pytest.mark.parametrize("changes", [
    pytest.param({"width": 1280, "height": 720}, id="size"),
    pytest.param({"frames": 81}, id="frames"),
    pytest.param({"steps": 40}, id="steps"),
    pytest.param({"model_fingerprint": "f2"}, id="model files"),
    pytest.param({"plan": {**BASE.plan, "placement": "sequential_offload"}}, id="plan"),
    pytest.param({"hardware": "16 CPUs, 125 GB RAM, 1x NVIDIA RTX 4090 (24 GB)"}, id="hardware"),
])
def test_slower_runs_that_are_not_comparable_raise_no_alert(changes: dict) -> None:
    assert find_regressions(runs(JITTER) + runs([2.0, 2.1, 2.2], start=8, **changes)) == []


def test_failed_runs_are_not_compared() -> None:
    history = runs(JITTER) + runs([5.0, 5.0, 5.0], start=8, success=False)
    assert find_regressions(history) == []


def test_a_regression_from_real_timings_in_the_database(db: Path) -> None:
    monitor = PerformanceMonitor(db)
    context = dict(model="demo", model_fingerprint="abc", width=32, height=32, frames=5, steps=2, plan="cpu fp32",
                   hardware="test machine")
    for _ in range(4):
        timed(monitor, 0.01, versions={"diffusers": "0.41.0"}, **context)
    timed(monitor, 0.08, versions={"diffusers": "0.41.0"}, **{**context, "width": 64})  # another size: not compared
    assert monitor.detect_performance_regressions() == []
    for _ in range(3):
        timed(monitor, 0.08, versions={"diffusers": "0.42.1"}, **context)
    alerts = [a for a in monitor.detect_performance_regressions() if a.metric_name == "duration"]
    assert len(alerts) == 1
    assert alerts[0].change_percent > 200 and alerts[0].baseline_runs == 4 and alerts[0].current_runs == 3
    assert alerts[0].what_changed == {"diffusers": ("0.41.0", "0.42.1")}


def test_optimization_effectiveness_compares_plans_for_the_same_work() -> None:
    offload = {**BASE.plan, "placement": "group_offload"}
    history = (runs([1.0, 1.1, 0.9]) + [replace(o, memory_peak_mb=600.0) for o in runs([2.0, 2.2], 3, plan=offload)]
               + runs([9.0], 5, width=1280, height=720))                      # another size: only one plan
    rows = effectiveness(history)
    assert [(r["plan"], r["runs"]) for r in rows] == [("cuda bf16, model offload", 3), ("cuda bf16, group offload", 2)]
    assert rows[0]["time_vs_fastest"] == 1.0 and rows[1]["time_vs_fastest"] == pytest.approx(2.1)
    assert (rows[0]["median_memory_peak_mb"], rows[1]["median_memory_peak_mb"]) == (1000.0, 600.0)


# --- storage ---------------------------------------------------------------------------------

def test_schema_version_and_wal_mode(db: Path) -> None:
    timed(PerformanceMonitor(db), 0.0)
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        conn.execute("UPDATE schema_version SET version = 99")      # as a newer app would leave it
    monitor = PerformanceMonitor(db)
    timed(monitor, 0.0)
    assert len(monitor.operations()) == 2 and any("newer" in w for w in monitor.warnings)


def test_reading_a_missing_database_creates_nothing(db: Path) -> None:
    assert PerformanceMonitor(db).get_performance_summary()["operations"] == 0
    assert not db.exists()


WRITER = """
import os, sys, time
sys.path.insert(0, sys.argv[1])
from core.monitor import PerformanceMonitor
monitor = PerformanceMonitor(sys.argv[2])
while not os.path.exists(sys.argv[3]):
    time.sleep(0.002)
for i in range(int(sys.argv[5])):
    with monitor.track("generation", model=sys.argv[4], frames=i) as op:
        op.set(seconds_per_step=0.001 * i)
print("warnings:", monitor.warnings)
"""


def test_two_processes_writing_at_once_lose_nothing(db: Path, tmp_path: Path) -> None:
    go, n = tmp_path / "go", 60
    env = {k: v for k, v in os.environ.items() if k != "WAN_COMPAT_MONITOR"}
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(REPO), str(db), str(go), name, str(n)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for name in ("first", "second")]
    time.sleep(0.3)            # both started and waiting
    go.touch()
    outputs = [p.communicate(timeout=60) for p in procs]
    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode == 0, err
        assert "warnings: []" in out, (out, err)
    ops = PerformanceMonitor(db).operations()
    assert len(ops) == 2 * n and len({o.operation_id for o in ops}) == 2 * n
    spans = []
    for name in ("first", "second"):
        mine = [o for o in ops if o.model == name]
        assert sorted(o.frames for o in mine) == list(range(n))
        spans.append((mine[0].started_at, mine[-1].started_at))
    assert max(s[0] for s in spans) < min(s[1] for s in spans)       # they really wrote at the same time


def test_a_database_of_random_bytes_is_moved_aside_and_a_new_one_started(db: Path) -> None:
    db.parent.mkdir(parents=True)
    garbage = random.Random(4).randbytes(8192)
    db.write_bytes(garbage)
    monitor = PerformanceMonitor(db)
    timed(monitor, 0.01)
    aside = list(db.parent.glob("history.db.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == garbage
    assert any("moved to" in w and aside[0].name in w for w in monitor.warnings)
    assert len(PerformanceMonitor(db).operations()) == 1


def test_a_database_damaged_while_in_use_is_recovered_from(db: Path) -> None:
    monitor = PerformanceMonitor(db)
    for _ in range(3):
        timed(monitor, 0.0)
    with sqlite3.connect(db) as conn:             # fold the WAL in, so the damage hits the tables
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(db.read_bytes())
    data[100:] = random.Random(5).randbytes(len(data) - 100)
    db.write_bytes(bytes(data))
    timed(monitor, 0.0)                             # the app keeps working
    assert list(db.parent.glob("history.db.corrupt-*"))
    assert len(PerformanceMonitor(db).operations()) == 1


# --- the command line --------------------------------------------------------------------------

def test_perf_command_json_shape_and_exit_codes(db: Path, tmp_path: Path) -> None:
    assert run_cli("perf").returncode == 0                    # no history yet: says so, creates nothing
    assert not db.exists()
    monitor = PerformanceMonitor(db)
    context = dict(model="demo", model_fingerprint="abc", width=32, height=32, frames=5, steps=2,
                   hardware="test machine")
    for seconds in (0.01, 0.01, 0.01, 0.06, 0.06, 0.06):
        timed(monitor, seconds, plan="no offload", **context)
    timed(monitor, 0.02, plan="group offload", **context)
    proc = run_cli("perf", "--json", "--csv", str(tmp_path / "history.csv"))
    assert proc.returncode == 1, proc.stderr                  # 1: a regression was found
    out = json.loads(proc.stdout)
    assert set(out) == {"summary", "alerts", "effectiveness"}
    assert out["summary"]["duration_stats"]["count"] == 7
    assert set(out["summary"]["duration_stats"]) == {"count", "mean", "median", "p95", "min", "max"}
    alert = next(a for a in out["alerts"] if a["metric_name"] == "duration")
    assert {"baseline", "current", "change_percent", "baseline_runs", "current_runs", "confidence",
            "what_changed", "message"} <= set(alert)
    assert [r["plan"] for r in out["effectiveness"]] == ["group offload", "no offload"]
    lines = (tmp_path / "history.csv").read_text().splitlines()
    assert len(lines) == 8 and lines[0].startswith("started,operation_type")

    text = run_cli("perf")
    assert "Regressions (" in text.stdout and "Optimization effectiveness" in text.stdout

    bad = run_cli("perf", "--csv", str(tmp_path / "missing" / "folder" / "x.csv"))
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.strip().count("\n") == 0 and "Cannot write the CSV file" in bad.stderr
