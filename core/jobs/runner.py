"""The queue's runner: one job at a time, in a supervised worker process, with live progress for followers.

The app holds one runner (:func:`get_runner`). Jobs are queued in the history database
(core.jobs.store), so the queue survives a restart; the runner takes them in order, hands
each to the worker (core.jobs.supervisor), records its progress and its end. A page that
follows a job reads the events as they come (:meth:`JobRunner.events_since`); a page that
was reloaded, or another tab, follows the same job again. Only Cancel stops a job.

Usage::

    from core.jobs.runner import get_runner

    runner = get_runner()                     # started: interrupted jobs marked, the queue resumed
    job_id, errors = runner.submit("/models/Wan2.1-T2V-1.3B-Diffusers", {"prompt": "a fox", "num_frames": 17})
    seq, events, job = runner.events_since(job_id, 0, timeout=1.0)   # new ProgressEvents and the job now
    runner.cancel(job_id)                     # "Cancelling after the current step…"

A worker the kernel kills (the OOM killer's SIGKILL) fails its job with one sentence that
says so and what would fit (core.run.memory_failure); the app goes on, and the next job gets
a new worker.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from core.jobs.store import Job, JobStore, this_process
from core.jobs.submit import check_request
from core.jobs.supervisor import WorkerProcess
from core.progress import ProgressEvent

log = logging.getLogger(__name__)

CANCELLING = "Cancelling after the current step…"
CANCELLED_QUEUED = "Cancelled; it had not started."
NOTHING_TO_CANCEL = "Nothing is being generated."
NO_SUCH_JOB = "There is no job {id}: see the list of jobs (/jobs, or python -m core jobs)."
SAVE_EVERY_S = 0.25           # a running job's progress is written to the database at most this often
KEEP_EVENTS = 400             # per job, for pages that follow it


class _Live:
    """A running job's events as they came, numbered, for followers."""

    def __init__(self) -> None:
        self.events: deque[tuple[int, ProgressEvent]] = deque(maxlen=KEEP_EVENTS)
        self.seq = 0
        self.ended = False


class JobRunner:
    """Runs the jobs of one JobStore, one at a time, each in the worker process."""

    def __init__(self, store: JobStore | None = None, outputs_dir: str | Path | None = None,
                 worker_env: dict[str, str] | None = None) -> None:
        self.store = store or JobStore()
        self.outputs_dir = Path(outputs_dir) if outputs_dir else None
        self.owner = this_process()
        self.worker = WorkerProcess(worker_env)
        self._cond = threading.Condition()
        self._live: dict[int, _Live] = {}
        self._running: int | None = None
        self._cancelled: set[int] = set()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None

    # --- life ----------------------------------------------------------------------------------

    def start(self) -> list[int]:
        """Mark jobs whose app died as interrupted, then run the queue; the interrupted ids."""
        interrupted = self.store.recover()
        if self._thread is None or not self._thread.is_alive():
            self._stopping.clear()
            self._halt.clear()
            self._thread = threading.Thread(target=self._loop, name="wan-compat-jobs", daemon=True)
            self._thread.start()
        return interrupted

    def stop(self) -> None:
        """Stop the worker; a job it was running is marked interrupted (re-queue runs it again)."""
        self._stopping.set()          # no new job is taken
        self.worker.stop()            # before the loop's thread ends: the worker's death signal is tied to it
        self._halt.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=15)

    @property
    def running_job(self) -> int | None:
        return self._running

    # --- what people do ------------------------------------------------------------------------

    def submit(self, model: str, values: dict[str, Any], overrides: dict[str, Any] | None = None,
               gpus: int | None = None, report: Any = None) -> tuple[int | None, list[str]]:
        """Check and queue one generation; (job id, []) or (None, the sentences that refuse it)."""
        checked = check_request(model, values, report)
        if checked.errors:
            return None, checked.errors
        job_id = self.store.add(str(Path(model).expanduser().absolute()), checked.config, overrides,
                                label=checked.label, gpus=gpus, outputs_dir=str(self.outputs_dir or "") or None)
        self._own_inputs(job_id)
        self.notify()
        return job_id, []

    def _own_inputs(self, job_id: int) -> None:
        """The job's own copies of its input files (the originals may move while it waits)."""
        from core.run.generation import GenerationConfig
        from core.run.job_inputs import snapshot_inputs
        from core.run.parallel import config_kwargs
        job = self.store.get(job_id)
        if job is None:
            return
        config = GenerationConfig(**job.request.get("config", {}))
        copied = snapshot_inputs(config, self.store.jobs_dir / str(job_id))
        if copied != config:
            fields = {k: v for k, v in config_kwargs(copied).items() if k in job.request["config"] or v is not None}
            self.store.set_request(job_id, {**job.request, "config": fields})

    def cancel(self, job_id: int | str | None = None) -> str:
        """Cancel a job (None: the running one); the sentence to show."""
        if job_id is None or job_id == "":
            job_id = self._running
            if job_id is None:
                return NOTHING_TO_CANCEL
        state = self.store.request_cancel(job_id)
        if state is None:
            return NO_SUCH_JOB.format(id=job_id)
        if state == "queued":
            self.notify()
            return CANCELLED_QUEUED
        if state != "running":
            return f"Job {job_id} is {state} already."
        if int(job_id) == self._running:
            self._cancelled.add(int(job_id))
            self.worker.cancel()
            self.notify()
        return CANCELLING

    def requeue(self, job_id: int | str) -> bool:
        done = self.store.requeue(int(job_id))
        self.notify()
        return done

    def remove(self, job_id: int | str) -> bool:
        done = self.store.remove(int(job_id))
        self.notify()
        return done

    def move(self, job_id: int | str, offset: int) -> bool:
        done = self.store.move(int(job_id), offset)
        self.notify()
        return done

    def forget_model(self) -> None:
        """A model folder changed (a fix): the worker loads it afresh next time."""
        if self._running is None:
            self.worker.unload()

    def notify(self) -> None:
        """Something changed: wake the runner and everyone following a job."""
        self._wake.set()
        with self._cond:
            self._cond.notify_all()

    def cancelling(self, job_id: int) -> bool:
        return job_id in self._cancelled

    def events_since(self, job_id: int, seq: int, timeout: float = 1.0
                     ) -> tuple[int, list[ProgressEvent], Job | None]:
        """The job's events after number ``seq`` (waiting up to ``timeout`` for one), the new number,
        and the job as it is now. Events are kept while this app runs the job; a job run before a
        restart has only its record."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                live = self._live.get(job_id)
                fresh = [e for n, e in live.events if n > seq] if live is not None else []
                if fresh or time.monotonic() >= deadline or (live is not None and live.ended):
                    seq = live.seq if live is not None else seq
                    break
                self._cond.wait(timeout=max(0.0, deadline - time.monotonic()))
        return seq, fresh, self.store.get(job_id)

    # --- the loop ------------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._halt.is_set():
            try:
                job = None if self._stopping.is_set() else self.store.claim_next(self.owner)
            except Exception:  # noqa: BLE001 - a busy or vanished database: try again shortly
                log.warning("The job queue could not be read", exc_info=True)
                job = None
            if job is None:
                self._wake.wait(timeout=1.0)        # also picks up jobs queued by another process
                self._wake.clear()
                continue
            try:
                self._run(job)
            except Exception:  # noqa: BLE001 - the runner never dies; the job fails with a sentence
                log.warning("Job %s failed in the runner", job.id, exc_info=True)
                self.store.finish(job.id, "failed", error="The job could not be run: see the app's log.",
                                  message="Failed")
            finally:
                with self._cond:
                    if job.id in self._live:
                        self._live[job.id].ended = True
                    self._running = None
                    self._cancelled.discard(job.id)
                    self._cond.notify_all()

    def _run(self, job: Job) -> None:
        live = _Live()
        with self._cond:
            self._live = {k: v for k, v in self._live.items() if k == job.id or len(self._live) < 8}
            self._live[job.id] = live
            self._running = job.id
        saved = [0.0, ""]

        def on_event(event: ProgressEvent) -> None:
            with self._cond:
                live.seq += 1
                live.events.append((live.seq, event))
                self._cond.notify_all()
            now = time.monotonic()
            if now - saved[0] >= SAVE_EVERY_S or event.stage != saved[1]:
                saved[0], saved[1] = now, event.stage
                if self.store.progress(job.id, event.to_dict()) and job.id not in self._cancelled:
                    self._cancelled.add(job.id)      # Cancel pressed in another app on this database
                    self.worker.cancel()

        request = job.request
        command = {"op": "run", "job": job.id, "model": job.model, "config": request.get("config") or {},
                   "overrides": request.get("overrides") or {}, "gpus": request.get("gpus"),
                   "outputs_dir": request.get("outputs_dir") or (str(self.outputs_dir) if self.outputs_dir else None)}
        outcome = self.worker.run(command, on_event)
        if outcome.result is None or self._stopping.is_set():
            if self._stopping.is_set():
                self.store.finish(job.id, "interrupted", message="Interrupted",
                                  error="The app stopped while this job was running; no video was written. "
                                        "Press Re-queue to run it again.")
            else:
                self.store.finish(job.id, "failed", message="Failed", error=died_sentence(job, outcome.returncode),
                                  result={"success": False, "errors": [died_sentence(job, outcome.returncode)]})
            return
        result = outcome.result
        if result.get("cancelled"):
            self.store.finish(job.id, "cancelled", message="Cancelled", result=result)
        elif result.get("success"):
            self.store.finish(job.id, "done", message="Done", output_path=result.get("output_path"), result=result)
        else:
            error = " ".join(result.get("errors") or []) or "The generation failed."
            self.store.finish(job.id, "failed", message="Failed", error=error, result=result)


def died_sentence(job: Job, returncode: int | None) -> str:
    """Why the worker ended during ``job``: SIGKILL is the kernel's OOM killer's way (memory, with what
    would fit); anything else is said as it is."""
    from core.run.memory_failure import killed_by_system
    if returncode in (-signal.SIGKILL, 128 + signal.SIGKILL):
        plan, report = _plan_of(job)
        err = killed_by_system(returncode, plan, report)
        return f"{err.message} {err.remedy}".strip()
    how = (f"signal {signal.Signals(-returncode).name}" if returncode is not None and returncode < 0
           and -returncode in {s.value for s in signal.Signals} else f"exit code {returncode}")
    return (f"The generation's worker process stopped unexpectedly ({how}); no video was written. "
            "The app's terminal shows what it printed; press Re-queue to try again.")


def _plan_of(job: Job) -> tuple[Any, Any]:
    """The plan the job ran with, made again here (the worker that made it is gone); (None, None) if not."""
    try:
        from core.check.detect import inspect
        from core.run.generation import GenerationConfig, request_for, resolve
        from core.run.hardware import probe
        from core.run.optimize import plan_for
        report = inspect(job.model)
        settings, _ = resolve(GenerationConfig(**job.request.get("config", {})), report)
        if settings is None:
            return None, report
        return plan_for(report, probe(use_torch=False), request_for(settings, job.request.get("overrides"))), report
    except Exception:  # noqa: BLE001 - the sentence is still said, without the numbers
        return None, None


_RUNNER: JobRunner | None = None
_RUNNER_LOCK = threading.Lock()


def get_runner(outputs_dir: str | Path | None = None, db_path: str | Path | None = None) -> JobRunner:
    """This process's runner (started on first use) for the history database of config.yaml."""
    global _RUNNER
    with _RUNNER_LOCK:
        wanted = Path(db_path) if db_path else None
        if _RUNNER is not None and wanted is not None and _RUNNER.store.db_path != wanted:
            _RUNNER.stop()
            _RUNNER = None
        if _RUNNER is None:
            runner = JobRunner(JobStore(db_path), outputs_dir, worker_env=_settings_env())
            runner.start()
            _RUNNER = runner
        elif outputs_dir is not None:
            _RUNNER.outputs_dir = Path(outputs_dir)
        return _RUNNER


def _settings_env() -> dict[str, str]:
    """The worker reads the app's settings: the same config.yaml and history database."""
    from core.config import ENV_VAR, HISTORY_DB_ENV, MONITOR_ENV, current
    config = current()
    env = {HISTORY_DB_ENV: str(config.history_db)}
    if config.source is not None:
        env[ENV_VAR] = str(config.source)
    if not config.record_history:
        env[MONITOR_ENV] = "off"
    return env


def stop_runner() -> None:
    """Stop this process's runner (the app's shutdown)."""
    global _RUNNER
    with _RUNNER_LOCK:
        if _RUNNER is not None:
            _RUNNER.stop()
            _RUNNER = None
