"""The worker process: runs the app's generation jobs through core.run, one at a time, as the CLI does.

The app starts it (:mod:`core.jobs.supervisor`) with ``python -m core.jobs.worker``; a kernel
OOM kill or a crash here ends this process, never the app. Commands come as JSON lines on
stdin; events and results go back as JSON lines on the file descriptor named by
``WAN_COMPAT_WORKER_FD``::

    -> {"op": "run", "job": 7, "model": "/models/Wan2.1-T2V-1.3B-Diffusers", "config": {...GenerationConfig...},
        "overrides": {"offload": "model"}, "outputs_dir": "/home/me/outputs", "gpus": 1}
    <- {"type": "event", "job": 7, "event": {...ProgressEvent.to_dict()...}}
    <- {"type": "result", "job": 7, "result": {"success": true, "output_path": "...", ...}}
    -> {"op": "cancel"}      stops the running job after its current step
    -> {"op": "unload"}      forgets the loaded model (e.g. a fix changed its folder)
    -> {"op": "quit"}        (or stdin closed): exit

The model stays loaded between jobs that use the same model and a plan it can run.
"""

from __future__ import annotations

import json
import os
import queue
import sys
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from core.errors import WanError, explain
from core.jobs.eta import WholeJobEta
from core.progress import Progress, ProgressEvent

FD_ENV = "WAN_COMPAT_WORKER_FD"
PARENT_ENV = "WAN_COMPAT_WORKER_PARENT"   # the app's PID
LOAD_SHARE = 30.0          # of a job's percent, when the model must be loaded first
SETTINGS_KEYS = ("prompt", "negative_prompt", "num_frames", "width", "height", "num_inference_steps",
                 "guidance_scale", "guidance_scale_2", "seed", "fps", "model_path", "model")


def failure(message: str, remedy: str = "", details: str = "", **extra: Any) -> dict[str, Any]:
    """A failed job's result: one sentence (with its remedy) in ``errors``."""
    return {"success": False, "errors": [f"{message} {remedy}".strip()], "details": details, **extra}


class Session:
    """What the worker keeps between jobs: the loaded model, and how long its decodes took."""

    def __init__(self) -> None:
        self.loaded: tuple[tuple[Any, ...], Any] | None = None    # (model key, WanPipelineWrapper)
        self.ever_loaded = False

    @staticmethod
    def key(report: Any) -> tuple[Any, ...]:
        """Which model: its folder and when its model_index.json last changed."""
        try:
            stamp = (Path(report.path) / "model_index.json").stat().st_mtime_ns
        except OSError:
            stamp = None
        return (os.path.abspath(report.path), stamp)

    def wrapper_for(self, report: Any, plan: Any) -> Any:
        """The model already loaded when it is this one and can run ``plan``; else None."""
        if self.loaded is not None and self.loaded[0] == self.key(report) and self.loaded[1].can_apply(plan):
            return self.loaded[1]
        return None

    def load(self, report: Any, plan: Any, progress: Progress) -> Any:
        from core.run.load import load
        self.loaded = None                        # the previous model's memory goes first
        if not self.ever_loaded:
            progress.emit("load", "Loading the model (the first time this also starts PyTorch: a few seconds more)", 0)
        wrapper = load(report, plan, progress=progress)
        self.loaded, self.ever_loaded = (self.key(report), wrapper), True
        return wrapper

    def unload(self) -> None:
        """Forget the loaded model and give its memory back."""
        self.loaded = None
        import gc
        gc.collect()
        if "torch" in sys.modules:
            import torch
            if torch.cuda.is_available():
                torch.cuda.empty_cache()


def run_job(command: dict[str, Any], session: Session, cancel: threading.Event, progress: Progress,
            eta: WholeJobEta | None = None) -> dict[str, Any]:
    """Check, plan, load when needed (0-30 %), generate (the rest); the result as JSON values.

    ``eta`` learns the checked request (to estimate the decode and write ahead of time).
    """
    from core.check.detect import inspect
    from core.run.generation import GenerationConfig, request_for, resolve
    from core.run.load import plan_for_load
    from core.run.loadable import refusal
    from core.run.video import default_output_path

    path = str(command.get("model") or "")
    overrides = dict(command.get("overrides") or {})
    progress.emit("check", "Checking the model", 0)
    try:
        os.stat(path)
        report = inspect(path)
    except OSError as exc:
        err = explain(exc)
        return failure(err.message, err.remedy, err.details)
    problem = refusal(report)
    if problem is not None:
        if isinstance(problem, WanError):
            return failure(problem.message, problem.remedy, problem.details)
        return failure(str(problem), "Choose a Wan 2.1 or 2.2 model; Model Check tells what a folder holds.")
    config = GenerationConfig(**command.get("config") or {})
    settings, errors = resolve(config, report)
    if errors or settings is None:
        return {"success": False, "errors": errors}
    if eta is not None:
        eta.prepare(report, settings)
    outputs_dir = Path(command.get("outputs_dir") or _outputs_dir())
    gpus = int(command.get("gpus") or 1)
    if gpus > 1:
        return _run_parallel(report, settings, config, overrides, gpus, outputs_dir, session, cancel, progress)
    try:
        plan = plan_for_load(report, request=request_for(settings, overrides))
    except WanError as err:
        return failure(err.message, err.remedy, err.details)
    wrapper = session.wrapper_for(report, plan)
    generating = progress
    if wrapper is None:
        try:
            wrapper = session.load(report, plan, progress.span(0, LOAD_SHARE))
        except ValueError as exc:
            return failure(str(exc))
        except Exception as exc:  # noqa: BLE001 - WanError and anything else become a sentence
            err = explain(exc)
            return failure(err.message, err.remedy, err.details)
        generating = progress.span(LOAD_SHARE, 100)
    else:
        progress.emit("load", "Using the model already loaded", 0)
    if cancel.is_set():
        return {"success": False, "cancelled": True, "errors": ["Cancelled; no video was written."]}
    output = config.output_path or str(default_output_path(outputs_dir, settings.prompt, settings.seed))
    result = wrapper.generate(replace(config, output_path=output), plan=plan, progress=generating, cancel=cancel)
    return {
        "success": result.success, "cancelled": result.cancelled, "output_path": result.output_path,
        "frames": result.frames, "width": result.width, "height": result.height, "fps": result.fps,
        "seconds": {k: round(v, 3) for k, v in result.seconds.items()},
        "seconds_per_step": result.seconds_per_step, "peak_ram_mb": result.peak_ram_mb,
        "peak_vram_mb": result.peak_vram_mb, "errors": list(result.errors), "warnings": list(result.warnings),
        "model_path": report.path, "settings": settings_of(result.metadata, path, overrides),
        "details": str(result.metadata.get("details", "")) if not result.success else "",
        "non_finite": result.metadata.get("non_finite"),   # a step that went NaN: cause and retry
    }


def settings_of(metadata: dict[str, Any], model: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """What "reuse these settings" needs: the video's settings, the model path, the Advanced choices."""
    out = {k: metadata.get(k) for k in SETTINGS_KEYS if k in metadata}
    out.setdefault("model_path", model)
    out["overrides"] = dict(overrides)
    plan = metadata.get("plan") or {}
    if plan:
        out["plan"] = {k: (plan.get(k) or {}).get("value") for k in
                       ("precision", "placement", "vae_tiling", "text_encoder_on_cpu")}
    return out


def _run_parallel(report: Any, settings: Any, config: Any, overrides: dict[str, Any], n: int, outputs_dir: Path,
                  session: Session, cancel: threading.Event, progress: Progress) -> dict[str, Any]:
    """One job over ``n`` ranks, as ``generate --gpus N`` runs it; Cancel stops every rank."""
    from core.run import parallel
    from core.run.generation import request_for
    from core.run.hardware import probe
    from core.run.video import default_output_path
    hardware = probe(use_torch=False)
    problem = parallel.cannot_split(report) or parallel.split_problem(
        report, settings.width, settings.height, settings.num_frames, n, parallel.visible_for_split(hardware))
    if not problem:                # every rank loads the model into this computer's RAM
        gpu = hardware.gpus[0].index if hardware.gpus else None
        problem = parallel.ram_problem(parallel.rank_plan(report, hardware, request_for(settings, overrides), n, gpu),
                                       n)
    if problem:
        return failure(problem.replace("--gpus ", "GPUs ").replace("Use GPUs", "Choose"))
    session.unload()               # the GPUs are the ranks' now
    output = str(default_output_path(outputs_dir, settings.prompt, settings.seed))
    outcome = parallel.run_parallel(report, parallel.config_kwargs(replace(config, output_path=output)), overrides,
                                    n, progress=progress, output_path=output, cancel=cancel)
    r = outcome.result
    return {"success": outcome.exit_code == 0, "cancelled": outcome.exit_code == 130,
            "output_path": outcome.output_path, "gpus": n, "sharded": r.get("sharded") or [],
            "seconds_per_step": r.get("seconds_per_step"), "peak_vram_mb": r.get("peak_vram_mb"),
            "peak_ram_mb": r.get("peak_ram_mb"), "errors": [outcome.message] if outcome.exit_code else [],
            "warnings": list(r.get("warnings") or []), "model_path": report.path,
            "settings": {"model_path": report.path, "overrides": dict(overrides), "gpus": n}}


def _stop_with_parent() -> None:
    """Linux: the kernel sends SIGTERM here when the app dies (even by SIGKILL), so no orphan goes on."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))     # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    parent = os.environ.get(PARENT_ENV, "")
    if parent.isdigit() and os.getppid() != int(parent):     # the app died before the line above
        os.kill(os.getpid(), signal.SIGTERM)


def _outputs_dir() -> Path:
    from core.config import current
    return Path(current().outputs_dir)


# --- the process ---------------------------------------------------------------------------

def main() -> int:
    """Serve commands until told to quit or stdin closes."""
    from core.config import ConfigError, init
    from core.run import stop_signals
    try:
        init(None)                # WAN_COMPAT_CONFIG and WAN_COMPAT_HISTORY_DB, as the app set them
    except ConfigError as exc:
        print(f"The worker cannot read the settings: {exc}", file=sys.stderr)
    stop_signals.install()        # SIGTERM: ffmpeg stopped and the partial video removed
    _stop_with_parent()
    out = os.fdopen(int(os.environ[FD_ENV]), "w", buffering=1, encoding="utf-8")
    write_lock = threading.Lock()

    def send(message: dict[str, Any]) -> None:
        with write_lock:
            out.write(json.dumps(message, default=str) + "\n")
            out.flush()

    commands: queue.Queue[dict[str, Any] | None] = queue.Queue()
    cancel = threading.Event()

    def read() -> None:           # Cancel must be heard while a job runs
        for line in sys.stdin:
            try:
                message = json.loads(line)
            except json.JSONDecodeError:
                continue
            if message.get("op") == "cancel":
                cancel.set()
            else:
                commands.put(message)
        cancel.set()              # the app has gone: stop the job, then quit
        commands.put(None)

    threading.Thread(target=read, name="wan-compat-worker-commands", daemon=True).start()
    try:
        return _serve(commands, cancel, send)
    except stop_signals.Stopped as stop:    # the app died or stopped us: the job's files are cleaned up
        return stop.exit_code


def _serve(commands: queue.Queue[dict[str, Any] | None], cancel: threading.Event,
           send: Callable[[dict[str, Any]], None]) -> int:
    """The command loop: run jobs until told to quit."""
    session = Session()
    send({"type": "ready", "pid": os.getpid()})
    while True:
        command = commands.get()
        if command is None or command.get("op") == "quit":
            return 0
        if command.get("op") == "unload":
            session.unload()
            continue
        if command.get("op") != "run":
            continue
        cancel.clear()
        job = command.get("job")
        eta = WholeJobEta()

        def relay(event: ProgressEvent, job: Any = job, eta: WholeJobEta = eta) -> None:
            send({"type": "event", "job": job, "event": eta.adjust(event).to_dict()})

        try:
            result = run_job(command, session, cancel, Progress(relay), eta)
        except Exception as exc:  # noqa: BLE001 - the job fails with a sentence; the worker goes on
            err = explain(exc)
            result = failure(err.message, err.remedy, err.details)
        eta.learn(result)
        send({"type": "result", "job": job, "result": result})


if __name__ == "__main__":
    sys.exit(main())
