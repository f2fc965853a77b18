"""Generation jobs (issue 12 §1, issue 20 item 2): the queue in the SQLite history database, the
supervised worker process, a worker killed by SIGKILL, interrupted jobs, and ``python -m core jobs``.

Real parts only: the demo models, a real worker process (``python -m core.jobs.worker``), real
SQLite, real signals.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.jobs.runner import JobRunner
from core.jobs.store import JobStore
from core.jobs.worker import LOAD_SHARE

SMALL = {"prompt": "a red fox in the snow", "width": 64, "height": 64, "num_frames": 9, "num_inference_steps": 2}


def _wait(runner: JobRunner, job_id: int, timeout: float = 120.0) -> tuple[list, object]:
    """Follow a job as a page does, until it ends: (its events, the job)."""
    events, seq = [], 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seq, fresh, job = runner.events_since(job_id, seq, timeout=1.0)
        events += fresh
        if job is not None and job.finished:
            return events, job
    raise AssertionError(f"job {job_id} did not finish within {timeout} s")


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("jobs")


@pytest.fixture(scope="module")
def runner(home: Path):
    db = home / "data" / "history.db"
    r = JobRunner(JobStore(db), home / "outputs", worker_env={"WAN_COMPAT_HISTORY_DB": str(db)})
    r.start()
    yield r
    r.stop()


# --- the table --------------------------------------------------------------------------------

def test_the_queue_is_kept_in_the_history_database(tmp_path: Path) -> None:
    from core.monitor import PerformanceMonitor
    db = tmp_path / "history.db"
    monitor = PerformanceMonitor(db)                            # the monitor's own table first
    monitor.start_operation("op-1", "load")
    monitor.end_operation("op-1", success=True)
    monitor.close()
    store = JobStore(db)
    ids = [store.add("/models/m", {"prompt": f"p{n}"}, label=f"job {n}") for n in range(4)]
    assert [j.id for j in store.list()] == ids and all(j.state == "queued" for j in store.list())
    assert store.move(ids[2], -1) and [j.id for j in store.list()] == [ids[0], ids[2], ids[1], ids[3]]
    assert not store.move(ids[0], -1)                        # already first
    assert store.remove(ids[3]) and store.get(ids[3]) is None
    assert store.request_cancel(ids[1]) == "queued" and store.get(ids[1]).state == "cancelled"
    first = store.claim_next("me")
    assert first.id == ids[0] and first.state == "running"
    assert store.requeue(ids[1]) and [j.id for j in store.list() if j.state == "queued"] == [ids[2], ids[1]]
    store.close()
    tables = subprocess.run([sys.executable, "-c", "import sqlite3,sys; print(sorted(r[0] for r in sqlite3.connect("
                             "sys.argv[1]).execute(\"select name from sqlite_master where type='table'\")))", str(db)],
                            capture_output=True, text=True, check=True).stdout
    assert "'jobs'" in tables and "'operations'" in tables        # one file, not a second database


def test_a_job_whose_app_died_is_interrupted_and_can_be_requeued(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "history.db")
    job_id = store.add("/models/m", {"prompt": "x"})
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    assert store.claim_next(f"{dead.pid}:1.00").id == job_id      # "running", owned by a process now gone
    alive = store.add("/models/m", {"prompt": "y"})
    from core.jobs.store import this_process
    assert store.claim_next(this_process()).id == alive
    assert store.recover() == [job_id]
    job = store.get(job_id)
    assert job.state == "interrupted" and "Re-queue" in job.error and store.get(alive).state == "running"
    assert store.requeue(job_id) and store.get(job_id).state == "queued" and store.get(job_id).error is None


# --- the worker ---------------------------------------------------------------------------------

def test_jobs_run_in_order_in_the_worker_and_keep_the_model_loaded(runner: JobRunner, demo_models_dir: Path,
                                                                   home: Path) -> None:
    model = str(demo_models_dir / "wan21_t2v")
    ids = []
    for seed in (1, 2, 3):
        job_id, errors = runner.submit(model, {**SMALL, "seed": seed})
        assert errors == [] and job_id is not None
        ids.append(job_id)
    assert runner.worker.pid is None or runner.worker.pid != os.getpid()
    runs = [_wait(runner, job_id) for job_id in ids]
    for _events, job in runs:
        assert job.state == "done", job.error
        assert Path(job.output_path).is_file() and Path(job.output_path).parent == home / "outputs"
        assert job.to_api() == {"id": job.id, "state": "done", "percent": 100.0, "message": "Done",
                                "output_path": job.output_path, "error": None}
    started = [job.started_at for _, job in runs]
    assert started == sorted(started)                                  # in the order queued
    first, second = runs[0][0], runs[1][0]
    assert any(e.stage == "load" and e.message.startswith("Loading transformer") for e in first)
    percents = [e.percent for e in first]                # one job, one percent that never goes back
    assert percents == sorted(percents) and percents[-1] == 100
    assert max(e.percent for e in first if e.stage == "load") <= LOAD_SHARE
    assert min(e.percent for e in first if e.stage == "encode") >= LOAD_SHARE
    assert [e.step for e in first if e.stage == "denoise"] == [1, 2]
    assert any(e.message == "Using the model already loaded" for e in second)
    assert not any(e.message.startswith("Loading transformer") for e in second)
    decode = [e for e in second if e.stage == "decode"]
    assert len({e.percent for e in decode}) >= 3                       # the decode moves on its own
    denoise = [e for e in second if e.stage == "denoise"]
    # the second job's ETA covers the decode and write after the steps (learnt from the first)
    assert denoise[-1].eta_seconds > 0.5 * runs[0][1].result["seconds"]["decode"]


def test_the_enqueue_api_takes_every_generation_setting_by_name() -> None:
    import inspect

    from core.jobs.submit import config_fields
    from wan_ui.queue_panel import api_enqueue
    names = list(inspect.signature(api_enqueue).parameters)
    assert names[:2] == ["model", "prompt"] and set(names) == {"model", *config_fields(), "precision", "offload"}


def test_a_request_is_checked_before_it_is_queued(runner: JobRunner, demo_models_dir: Path, tmp_path: Path) -> None:
    model = str(demo_models_dir / "wan21_t2v")
    job_id, errors = runner.submit(model, {**SMALL, "num_frames": 10})
    assert job_id is None and "4k+1" in errors[0] and "9 or 13" in errors[0]
    _, errors = runner.submit(model, {**SMALL, "num_inference_step": 2})
    assert errors == ["`num_inference_step` is not a generation setting. Did you mean `num_inference_steps`?"]
    _, errors = runner.submit(str(tmp_path / "nowhere"), SMALL)
    assert "nowhere" in errors[0]


def test_cancel_stops_only_the_job_asked(runner: JobRunner, demo_models_dir: Path) -> None:
    model = str(demo_models_dir / "wan21_t2v")
    long_id, _ = runner.submit(model, {**SMALL, "num_inference_steps": 2000})
    queued_id, _ = runner.submit(model, {**SMALL, "seed": 9})
    seq, deadline = 0, time.monotonic() + 60
    while time.monotonic() < deadline:
        seq, fresh, _ = runner.events_since(long_id, seq, timeout=1.0)
        if any(e.stage == "denoise" for e in fresh):
            break
    assert runner.cancel(queued_id) == "Cancelled; it had not started."
    assert runner.cancel(long_id) == "Cancelling after the current step…"
    _, job = _wait(runner, long_id)
    assert job.state == "cancelled" and job.output_path is None and job.message == "Cancelled"
    assert runner.store.get(queued_id).state == "cancelled"
    assert runner.cancel(12345).startswith("There is no job 12345")


def test_a_worker_killed_by_the_kernel_is_a_memory_failure_and_the_app_goes_on(runner: JobRunner,
                                                                               demo_models_dir: Path) -> None:
    model = str(demo_models_dir / "wan21_t2v")
    doomed, _ = runner.submit(model, {**SMALL, "width": 128, "height": 128, "num_inference_steps": 2000})
    after, _ = runner.submit(model, {**SMALL, "seed": 5})
    seq, deadline = 0, time.monotonic() + 60
    while time.monotonic() < deadline:
        seq, fresh, _ = runner.events_since(doomed, seq, timeout=1.0)
        if any(e.stage == "denoise" for e in fresh):
            break
    pid = runner.worker.pid
    os.kill(pid, signal.SIGKILL)                   # what the kernel's OOM killer does
    _, job = _wait(runner, doomed)
    assert job.state == "failed"
    assert job.error.startswith("The generation was killed by the system (SIGKILL), most likely because it ran "
                                "out of memory: it needs about"), job.error
    assert "of RAM" in job.error
    _, next_job = _wait(runner, after)             # a new worker for the next job
    assert next_job.state == "done" and runner.worker.pid not in (None, pid)


def test_a_job_list_that_cannot_be_read_is_a_sentence(tmp_path: Path) -> None:
    from core.jobs.listing import list_jobs
    (tmp_path / "history.db").write_text("not a database")
    text, code = list_jobs(False, JobStore(tmp_path / "history.db"))
    assert code == 2 and text.startswith(f"The job list in {tmp_path / 'history.db'} cannot be read (")
    assert "history_db" in text and "Traceback" not in text


def test_the_cli_lists_the_jobs_as_the_api_does(runner: JobRunner, home: Path) -> None:
    env_db = str(runner.store.db_path)
    out = subprocess.run([sys.executable, "-m", "core", "jobs", "--json"], capture_output=True, text=True,
                         env={**os.environ, "WAN_COMPAT_HISTORY_DB": env_db}, timeout=60)
    assert out.returncode == 0, out.stderr
    listed = json.loads(out.stdout)
    assert listed == [job.to_api() for job in runner.store.list()]
    assert {"done", "failed", "cancelled"} <= {j["state"] for j in listed}
    text = subprocess.run([sys.executable, "-m", "core", "jobs"], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "WAN_COMPAT_HISTORY_DB": env_db}).stdout
    assert "killed by the system (SIGKILL)" in text and "a red fox in the snow · 64x64 · 9 frames" in text
