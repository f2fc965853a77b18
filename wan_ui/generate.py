"""The Generate tab: pick a model, set the prompt and size, see the memory plan, and watch it run.

A generation runs in a worker thread; :func:`generate` is a generator that turns the worker's
progress events (:class:`~core.progress.ProgressEvent`) into live updates (stage, step i of n, the active
expert, seconds per step, ETA, a bar). One click is one job: check, plan, load (when another
model is loaded) and generate, with one percent that never goes backwards. One generation runs at a time in the whole app
(a lock); a second request is told so at once. Cancel stops after the current step.

The API (``gradio_client``)::

    client = Client("http://127.0.0.1:7860/", download_files=False)
    html, video, result = client.predict(
        "/models/Wan2.2-TI2V-5B-Diffusers", "A red fox in the snow", "", 1280, 704, 121, 50,
        5.0, None, 42, None, None, "auto", "auto", "auto", "auto", api_name="/generate")
    result["success"], result["output_path"], result["seconds_per_step"]
    client.predict(api_name="/cancel")     # from another client: "Cancelling after the current step…"

torch and diffusers are imported by ``core.run.load`` in the worker, on the first generation.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import random
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr

from core.check.report import ModelReport
from core.choices import OFFLOADS, PRECISIONS
from core.errors import WanError, explain
from core.progress import Progress, ProgressEvent
from core.run.optimize import OptimizationPlan

if TYPE_CHECKING:  # core.run.load is imported in the worker, on the first generation
    from core.run.load import WanPipelineWrapper
from wan_ui import common
from wan_ui.gpu_choice import INFO as GPU_INFO
from wan_ui.gpu_choice import gpu_control
from wan_ui.render import (
    render_model_info,
    render_notice,
    render_plan,
    render_progress,
    render_result,
    render_sentences,
)
from wan_ui.speed_choice import speed_knobs, speed_overrides, speed_radio
from wan_ui.task_inputs import build_task_inputs, show_for_model, task_values

log = logging.getLogger(__name__)

BUSY = ("A video is already being generated; only one runs at a time. Wait for it to finish, "
        "or press Cancel on the page that started it.")
CANCELLING = "Cancelling after the current step…"
NOTHING_TO_CANCEL = "Nothing is being generated."
PRECISION_CHOICES = list(PRECISIONS)
_OFFLOAD_LABELS = {"none": "none: everything on the GPU", "sequential": "sequential (slowest, least memory)"}
OFFLOAD_CHOICES = [(_OFFLOAD_LABELS.get(word, word), word) for word in OFFLOADS]
SWITCH_CHOICES = ["auto", "on", "off"]
GALLERY_MAX = 24
SELF_TEST = {"prompt": "Self-test: a short clip from a tiny random-weight model", "width": 64, "height": 64,
             "frames": 9, "steps": 4, "guidance": 5.0, "seed": 42}

# --- live progress --------------------------------------------------------------------------

#: The panel's headline for each ProgressEvent stage.
STAGE_LABELS = {"build": "Building the demo model", "check": "Checking the model", "plan": "Memory plan",
                "load": "Loading the model", "encode": "Encoding the prompt", "denoise": "Denoising",
                "decode": "Decoding the video (VAE)", "write": "Writing the MP4", "done": "Done",
                "fix": "Applying the fix", "convert": "Converting"}
#: A new part of the job: the step facts of an earlier denoising no longer apply.
_FRESH_STAGES = ("build", "check", "plan", "load")
LOAD_SHARE = 30.0               # of one Generate click's percent, when the model must be loaded first


@dataclass
class ProgressView:
    """What the progress panel shows; ``update`` reads one ProgressEvent (or a plain message)."""

    stage: str = "Starting"
    percent: float = 0.0
    state: str = "running"              # running, cancelling, done, failed, cancelled
    step: int | None = None
    steps: int | None = None
    expert: str = ""
    seconds_per_step: str = ""
    eta: str = ""
    elapsed: float | None = None
    log: list[str] = field(default_factory=list)
    phase: str = ""

    def update(self, event: ProgressEvent | str, percent: float | None = None, phase: str = "") -> None:
        """Show one event: its stage, percent and, while denoising, its step numbers.

        ``update(message, percent, phase)`` still takes a plain message from a job that sends
        no events; its stage is then the phase.
        """
        if not isinstance(event, ProgressEvent):
            self._plain(str(event), float(percent or 0.0), phase)
            return
        self.log.append(event.message)
        del self.log[:-50]
        self.percent = event.percent
        if event.step is not None:
            self.step, self.steps = event.step, event.steps
            self.expert = f"{event.expert} expert" if event.expert else ""
            self.seconds_per_step = "" if event.seconds_per_step is None else f"{event.seconds_per_step:.2f}"
            self.eta = "" if event.eta_seconds is None else _duration(event.eta_seconds)
        elif event.stage in _FRESH_STAGES:
            self.step = self.steps = None
            self.expert = self.seconds_per_step = self.eta = ""
        self.stage = STAGE_LABELS.get(event.stage, event.stage.capitalize())

    def _plain(self, message: str, percent: float, phase: str) -> None:
        self.log.append(message)
        del self.log[:-50]
        self.percent = percent
        if phase and phase != self.phase:
            self.phase = phase
            self.step = self.steps = None
            self.expert = self.seconds_per_step = self.eta = ""
        self.stage = stage_of(message, phase)


def _duration(seconds: float) -> str:
    """An ETA as people read it: "45s", "7m 55s"."""
    whole = max(0, int(round(seconds)))
    return f"{whole // 60}m {whole % 60:02d}s" if whole >= 60 else f"{whole}s"


def stage_of(message: str, phase: str = "") -> str:
    """A short stage name for a progress message."""
    for prefix, stage in (("Loading", "Loading the model"), ("Loaded", "Loading the model"),
                          ("Checking", "Checking the model"), ("Applying the memory plan", "Loading the model"),
                          ("Encoding the prompt", "Encoding the prompt"), ("Decoding", "Decoding the video (VAE)"),
                          ("Encoding video", "Writing the MP4"), ("Finishing video", "Writing the MP4"),
                          ("Saving video", "Writing the MP4"), ("Saved video", "Writing the MP4"),
                          ("Done", "Done"), ("Ran out of", "Retrying with less memory"),
                          ("Building the demo", "Building the demo model"), ("wan", "Building the demo model")):
        if message.startswith(prefix):
            return stage
    return phase or "Working"


# --- one generation at a time ---------------------------------------------------------------

_DONE = object()
_WAKE = object()                    # Cancel was pressed: show "cancelling" now, not at the next step
_RUN_LOCK = threading.Lock()
_CURRENT: _Job | None = None
_LOADED: tuple[tuple[Any, ...], WanPipelineWrapper] | None = None   # (key, wrapper): the last model loaded
_EVER_LOADED: list[tuple[Any, ...]] = []


@dataclass
class _Job:
    """One Generate click: its Cancel, its queue of ProgressEvents for the page, its result."""

    cancel: threading.Event = field(default_factory=threading.Event)
    events: queue.Queue[Any] = field(default_factory=queue.Queue)
    result: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    progress: Progress = field(init=False)       # the whole job's percent, never going backwards

    def __post_init__(self) -> None:
        self.progress = Progress(lambda event: self.events.put(event))


@dataclass(frozen=True)
class Request:
    """Everything the Generate form holds."""

    path: str
    prompt: str
    negative_prompt: str = ""
    width: int | None = None
    height: int | None = None
    num_frames: int | None = None
    steps: int | None = None
    guidance: float | None = None
    guidance_2: float | None = None
    seed: int | None = None
    image: str | None = None
    last_image: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, Any] = field(default_factory=dict)   # the other task inputs (wan_ui.task_inputs)
    gpus: str | None = None          # "1".."N" or "auto" (wan_ui.gpu_choice); None: one GPU


def is_busy() -> bool:
    return _RUN_LOCK.locked()


def cancel_generation() -> str:
    """Ask the running generation to stop after its current step; the sentence to show."""
    job = _CURRENT
    if job is None or not _RUN_LOCK.locked():
        return NOTHING_TO_CANCEL
    job.cancel.set()
    job.events.put(_WAKE)           # the progress panel says "cancelling" at once
    return CANCELLING


def _int(value: Any) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(round(float(value)))
    except (TypeError, ValueError):
        return None


def _float(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _image_path(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, dict):
        return value.get("path")
    return str(value)


def _model_key(report: ModelReport) -> tuple[Any, ...]:
    """Which model is loaded: its folder and when its model_index.json last changed."""
    try:
        stamp = (Path(report.path) / "model_index.json").stat().st_mtime_ns
    except OSError:
        stamp = None
    return (os.path.abspath(report.path), stamp)


def _loaded_for(report: ModelReport, plan: OptimizationPlan) -> WanPipelineWrapper | None:
    """The model already loaded, when it is this one and ``plan`` can run on it; else None."""
    if _LOADED is not None and _LOADED[0] == _model_key(report) and _LOADED[1].can_apply(plan):
        return _LOADED[1]
    return None


def _load(report: ModelReport, plan: OptimizationPlan, progress: Progress) -> WanPipelineWrapper:
    """Load ``report``'s model with exactly ``plan`` (core.run.load.load), forgetting the last one first."""
    global _LOADED
    key = _model_key(report)
    first = _LOADED is None and not _EVER_LOADED
    _LOADED = None                      # let the previous model's memory go first
    if first:
        progress.emit("load", "Loading the model (the first time this also starts PyTorch: a few seconds more)", 0)
    from core.run.load import load
    wrapper = load(report, plan, progress=progress)
    _LOADED = (key, wrapper)
    _EVER_LOADED.append(key)
    return wrapper


def unload(path: str | None = None) -> None:
    """Forget the loaded model (all, or the one at ``path``), e.g. after Fix changed its folder."""
    global _LOADED
    if _LOADED is not None and (path is None or _LOADED[0][0] == os.path.abspath(path)):
        _LOADED = None


def _fail(message: str, remedy: str = "", details: str = "") -> dict[str, Any]:
    return {"success": False, "errors": [f"{message} {remedy}".strip()], "details": details}


def _refused(problem: Exception) -> dict[str, Any]:
    """core.run.loadable's refusal as the result the page shows."""
    if isinstance(problem, WanError):
        return _fail(problem.message, problem.remedy, problem.details)
    return _fail(str(problem), "Choose a Wan 2.1 or 2.2 model; Model Check tells what a folder holds.")


def _run(job: _Job, req: Request) -> dict[str, Any]:
    """The worker: check, plan, load (0-30 %, when needed), generate (the rest), record.

    The plan made here for this request is the one loaded and applied. Returns the result
    as plain JSON values.
    """
    from core.run.generation import GenerationConfig, request_for, resolve
    from core.run.loadable import refusal
    from core.run.video import default_output_path

    ctx = common.context()
    path = req.path
    if not path:
        return _fail("Choose a model first.", "Pick one in the list, or type the path of a model folder.")
    progress = job.progress
    progress.emit("check", "Checking the model", 0)
    try:
        os.stat(path)
        report = common.inspect_cached(path)
    except Exception as exc:  # noqa: BLE001
        err = explain(exc)
        return _fail(err.message, err.remedy, err.details)
    problem = refusal(report)
    if problem is not None:
        return _refused(problem)
    config = GenerationConfig(
        prompt=req.prompt, negative_prompt=req.negative_prompt or None, num_frames=req.num_frames,
        width=req.width, height=req.height, num_inference_steps=req.steps, guidance_scale=req.guidance,
        guidance_scale_2=req.guidance_2 if report.experts >= 2 else None, seed=req.seed,
        image=req.image, last_image=req.last_image, **task_values(report.task, req.inputs))
    settings, errors = resolve(config, report)
    if errors or settings is None:
        return {"success": False, "errors": errors}
    from core.run.output_rules import outputs_dir_problem
    where = outputs_dir_problem(ctx.outputs_dir, (report.path,))   # before loading (issue 13 §2)
    if where:
        return {"success": False, "errors": [where]}
    if req.gpus and req.gpus != "1":          # several GPUs: the CLI's path (core.run.parallel), rank 0's progress
        from wan_ui.gpu_choice import ranks_for
        n = ranks_for(req.gpus, report, request_for(settings, req.overrides), common.hardware())
        if n > 1:
            return _run_parallel(job, report, settings, config, req, n)
    plan = common.plan(report, request_for(settings, req.overrides))
    if plan is None or not plan.fits:
        return _fail(plan.refusal if plan and plan.refusal else "This request does not fit this computer.",
                     plan.remedy if plan and plan.remedy else
                     "Choose a smaller size or fewer frames, or a stronger offload setting.")
    wrapper = _loaded_for(report, plan)
    generating = progress
    if wrapper is None:
        try:
            wrapper = _load(report, plan, progress.span(0, LOAD_SHARE))
        except ValueError as exc:
            return _fail(str(exc), "")
        except Exception as exc:  # noqa: BLE001 - WanError and anything else become a sentence
            err = explain(exc)
            return _fail(err.message, err.remedy, err.details)
        generating = progress.span(LOAD_SHARE, 100)
    else:
        progress.emit("load", "Using the model already loaded", 0)
    if job.cancel.is_set():
        return {"success": False, "cancelled": True, "errors": ["Cancelled; no video was written."]}
    output = default_output_path(ctx.outputs_dir, settings.prompt, settings.seed)
    from dataclasses import replace
    result = wrapper.generate(replace(config, output_path=str(output)), plan=plan, progress=generating,
                              cancel=job.cancel)
    common.remember(path)
    out = {
        "success": result.success, "cancelled": result.cancelled, "output_path": result.output_path,
        "frames": result.frames, "width": result.width, "height": result.height, "fps": result.fps,
        "seconds": {k: round(v, 3) for k, v in result.seconds.items()},
        "seconds_per_step": result.seconds_per_step, "peak_ram_mb": result.peak_ram_mb,
        "peak_vram_mb": result.peak_vram_mb, "errors": list(result.errors), "warnings": list(result.warnings),
        "model_path": report.path, "settings": _settings_of(result.metadata, req),
        "details": str(result.metadata.get("details", "")) if not result.success else "",
        "non_finite": result.metadata.get("non_finite"),   # a step that went NaN: cause and retry
    }
    return out                      # core.run.load recorded the run in the performance history


def _run_parallel(job: _Job, report: ModelReport, settings: Any, config: Any, req: Request, n: int) -> dict[str, Any]:
    """One generation over ``n`` ranks, as ``generate --gpus N`` runs it; Cancel stops every rank."""
    from dataclasses import replace

    from core.run import parallel
    from core.run.generation import request_for
    from core.run.video import default_output_path
    hardware = common.hardware()
    problem = parallel.cannot_split(report) or parallel.split_problem(
        report, settings.width, settings.height, settings.num_frames, n, parallel.visible_for_split(hardware))
    if not problem:                # every rank loads the model into this computer's RAM
        gpu = hardware.gpus[0].index if hardware.gpus else None
        plan = parallel.rank_plan(report, hardware, request_for(settings, req.overrides), n, gpu)
        problem = parallel.ram_problem(plan, n)
    if problem:
        return _fail(problem.replace("--gpus ", "GPUs ").replace("Use GPUs", "Choose"), "")
    unload()                       # the GPUs are the ranks' now
    output = str(default_output_path(common.context().outputs_dir, settings.prompt, settings.seed))
    outcome = parallel.run_parallel(report, parallel.config_kwargs(replace(config, output_path=output)),
                                    req.overrides, n, progress=job.progress, output_path=output, cancel=job.cancel)
    r = outcome.result
    common.remember(req.path)
    return {"success": outcome.exit_code == 0, "cancelled": outcome.exit_code == 130,
            "output_path": outcome.output_path, "gpus": n, "sharded": r.get("sharded") or [],
            "seconds_per_step": r.get("seconds_per_step"), "peak_vram_mb": r.get("peak_vram_mb"),
            "peak_ram_mb": r.get("peak_ram_mb"), "errors": [outcome.message] if outcome.exit_code else [],
            "warnings": list(r.get("warnings") or []), "model_path": report.path,
            "settings": {"model_path": req.path, "overrides": dict(req.overrides), "gpus": n}}


def _settings_of(metadata: dict[str, Any], req: Request) -> dict[str, Any]:
    """What "reuse these settings" needs (the model path and the form's Advanced choices too)."""
    keep = ("prompt", "negative_prompt", "num_frames", "width", "height", "num_inference_steps",
            "guidance_scale", "guidance_scale_2", "seed", "fps", "model_path", "model")
    out = {k: metadata.get(k) for k in keep if k in metadata}
    out.setdefault("model_path", req.path)
    out["overrides"] = dict(req.overrides)
    plan = metadata.get("plan") or {}
    if plan:
        out["plan"] = {k: (plan.get(k) or {}).get("value") for k in
                       ("precision", "placement", "vae_tiling", "text_encoder_on_cpu")}
    return out


def _start(req: Request, prepare: Callable[[_Job], Request] | None = None) -> _Job | None:
    """Start the worker, or None when another generation holds the lock."""
    global _CURRENT
    if not _RUN_LOCK.acquire(blocking=False):
        return None
    job = _Job()
    _CURRENT = job

    def work() -> None:
        try:
            request = prepare(job) if prepare is not None else req
            job.result = _run(job, request)
        except Exception as exc:  # noqa: BLE001 - the worker never dies silently
            err = explain(exc)
            log.warning("Generation failed", exc_info=exc)
            job.result = _fail(err.message, err.remedy, err.details)
        finally:
            _RUN_LOCK.release()
            job.events.put(_DONE)

    threading.Thread(target=work, name="wan-compat-generate", daemon=True).start()
    return job


def _stream(job: _Job) -> Iterator[tuple[Any, Any, Any]]:
    """Yield (progress HTML, video, result) as the worker reports; the last one has the result."""
    view = ProgressView()
    finished = False
    try:
        while not finished:
            try:
                item = job.events.get(timeout=0.5)
            except queue.Empty:
                view.elapsed = time.monotonic() - job.started
                if job.cancel.is_set():
                    view.state, view.stage = "cancelling", CANCELLING
                yield render_progress(view), gr.skip(), gr.skip()
                continue
            batch = [item]
            while True:                      # coalesce a burst of messages into one update
                try:
                    batch.append(job.events.get_nowait())
                except queue.Empty:
                    break
            for entry in batch:
                if entry is _DONE:
                    finished = True
                    continue
                if entry is _WAKE:
                    continue
                view.update(entry)
            view.elapsed = time.monotonic() - job.started
            if job.cancel.is_set() and not finished:
                view.state, view.stage = "cancelling", CANCELLING
            if not finished:
                yield render_progress(view), gr.skip(), gr.skip()
    finally:
        if not finished:                     # the page went away: stop the worker after this step
            job.cancel.set()
    result = job.result
    if result.get("cancelled"):
        view.state, view.stage = "cancelled", "Cancelled"
    elif result.get("success"):
        view.state, view.stage, view.percent = "done", "Done", 100.0
    else:
        view.state, view.stage = "failed", "Stopped"
    progress_html = render_progress(view) + render_result(result)
    yield progress_html, result.get("output_path") if result.get("success") else None, result


def generate(path: str, prompt: str, negative_prompt: str, width: Any, height: Any, frames: Any, steps: Any,
             guidance: Any, guidance_2: Any, seed: Any, image: Any, last_image: Any, precision: str,
             offload: str, vae_tiling: str, text_encoder_on_cpu: str, video: Any = None, mask: Any = None,
             reference_images: Any = None, pose_video: Any = None, face_video: Any = None,
             background_video: Any = None, mask_video: Any = None, strength: Any = None,
             conditioning_scale: Any = None, mode: Any = None,
             segment_frame_length: Any = None, gpus: Any = None, speed: Any = None, cache: Any = None,
             cache_threshold: Any = None, cache_threshold_2: Any = None, attention: Any = None,
             compile_blocks: Any = None) -> Iterator[tuple[Any, Any, Any]]:
    """The Generate button (API ``/generate``): yields (progress HTML, video path, result dict).

    The task inputs after ``text_encoder_on_cpu`` (files as paths) are those of wan_ui.task_inputs;
    ``gpus`` ("1".."N" or "auto") spreads the run over several GPUs (wan_ui.gpu_choice); the speed
    preset and its knobs come last (wan_ui.speed_choice).
    """
    task_inputs = {"video": video, "mask": mask, "reference_images": reference_images, "pose_video": pose_video,
                   "face_video": face_video, "background_video": background_video, "mask_video": mask_video,
                   "strength": strength, "conditioning_scale": conditioning_scale, "mode": mode,
                   "segment_frame_length": segment_frame_length}
    from wan_ui.model_check import clean_path
    req = Request(path=clean_path(path), prompt=prompt or "", negative_prompt=negative_prompt or "",
                  width=_int(width), height=_int(height), num_frames=_int(frames), steps=_int(steps),
                  guidance=_float(guidance), guidance_2=_float(guidance_2), seed=_int(seed),
                  image=_image_path(image), last_image=_image_path(last_image),
                  overrides={**common.overrides_from(precision, offload, vae_tiling, text_encoder_on_cpu),
                             **speed_overrides(speed, cache, cache_threshold, cache_threshold_2, attention,
                                               compile_blocks)},
                  inputs=task_inputs, gpus=str(gpus) if gpus not in (None, "") else None)
    job = _start(req)
    if job is None:
        gr.Warning(BUSY)
        yield render_notice(BUSY, "unknown", "Busy"), gr.skip(), {"success": False, "busy": True, "errors": [BUSY]}
        return
    yield from _stream(job)


def self_test() -> Iterator[tuple[Any, Any, Any]]:
    """Build the smallest demo model (no download) and generate a short clip with it (API ``/self_test``)."""
    ctx = common.context()

    def prepare(job: _Job) -> Request:
        from core.demo import write_demo_model
        building = job.progress.span(0, 10)
        building.emit("build", "Building the demo model (tiny random weights, nothing is downloaded)", 0)
        folder = write_demo_model(common.DEMO_MODEL, ctx.demo_dir,
                                  progress_callback=lambda message, percent: building.emit("build", message, percent))
        job.progress = job.progress.span(10, 100)      # the generation's share of the self-test
        common.forget(str(ctx.demo_dir))
        return Request(path=str(folder), prompt=SELF_TEST["prompt"], width=SELF_TEST["width"],
                       height=SELF_TEST["height"], num_frames=SELF_TEST["frames"], steps=SELF_TEST["steps"],
                       guidance=SELF_TEST["guidance"], seed=SELF_TEST["seed"])

    job = _start(Request(path="", prompt=""), prepare)
    if job is None:
        gr.Warning(BUSY)
        yield render_notice(BUSY, "unknown", "Busy"), gr.skip(), {"success": False, "busy": True, "errors": [BUSY]}
        return
    yield from _stream(job)


# --- the form -------------------------------------------------------------------------------

def _size_label(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def select_model(path: str) -> tuple[Any, ...]:
    """A model was chosen: its info line and the form's defaults (size presets, frames, steps, guidance)."""
    from wan_ui.model_check import clean_path
    target = clean_path(path)
    keep = (gr.skip(),) * 10
    if not target:
        return (render_model_info(None), *keep)
    try:
        os.stat(target)
        report = common.inspect_cached(target)
    except Exception as exc:  # noqa: BLE001
        err = explain(exc)
        return (render_sentences(err.message, [err.remedy] if err.remedy else []), *keep)
    if report.is_collection:
        return (render_notice(f"This folder holds {len(report.models)} models; choose one of them in the list.",
                              "unknown", "?"), *keep)
    plan = None
    try:
        plan = common.default_plan(report)
    except Exception as exc:  # noqa: BLE001
        log.warning("No plan for %s: %s", target, exc)
    info = render_model_info(report, common.fit_badge(report, plan))
    entry = common.defaults(report)
    from core.run.generation import FALLBACK, IMAGE_TASKS, OPTIONAL_IMAGE_TASKS
    default = entry.default_size if entry else FALLBACK["size"]
    sizes = list(dict.fromkeys([_size_label(default)] + [_size_label(s) for s in (entry.sizes if entry else ())]))
    two = report.experts >= 2
    image_task = report.task in IMAGE_TASKS | OPTIONAL_IMAGE_TASKS
    image_label = "Starting image" + (" (optional)" if report.task in OPTIONAL_IMAGE_TASKS else "")
    guidance = entry.guidance if entry else FALLBACK["guidance"]
    guidance_2 = (entry.guidance_2 if entry and entry.guidance_2 is not None else guidance)
    return (info,
            gr.update(choices=sizes, value=_size_label(default)),
            default[0], default[1],
            entry.frames if entry else FALLBACK["frames"],
            entry.steps if entry else FALLBACK["steps"],
            gr.update(value=guidance, label="Guidance (high-noise expert)" if two else "Guidance"),
            gr.update(value=guidance_2, visible=two),
            gr.update(visible=image_task, label=image_label),
            gr.update(visible=report.task == "flf2v"),
            gr.update(visible=image_task))


def update_plan(path: str, width: Any, height: Any, frames: Any, steps: Any, guidance: Any, precision: str,
                offload: str, vae_tiling: str, text_encoder_on_cpu: str, *speed: Any) -> str:
    """The memory plan for the form as it stands (shown before the run)."""
    from wan_ui.model_check import clean_path
    target = clean_path(path)
    if not target:
        return render_plan(None)
    try:
        report = common.inspect_cached(target)
        if report.is_collection or not report.is_wan:
            return render_plan(None)
        # The same checks Generate makes first (the prompt and the image are not the plan's business)
        from core.run.generation import GenerationConfig, request_for, resolve
        config = GenerationConfig(prompt="(the plan)", num_frames=_int(frames), width=_int(width),
                                  height=_int(height), num_inference_steps=_int(steps),
                                  guidance_scale=_float(guidance))
        settings, problems = resolve(config, report, inputs_required=False)
        if problems or settings is None:
            return render_sentences("Generate would refuse these settings", problems,
                                    badge="✗ Check these settings", tone="bad")
        request = request_for(settings, {**common.overrides_from(precision, offload, vae_tiling, text_encoder_on_cpu),
                                         **speed_overrides(*speed)})      # speed: preset and knobs
        return render_plan(common.plan(report, request), title="Memory plan for this computer", fold=True)
    except Exception as exc:  # noqa: BLE001 - the plan is advice; never break the form
        err = explain(exc)
        return render_sentences("The memory plan could not be worked out.", [err.message], err.details,
                                badge="?", tone="unknown")


def picker_update(selected: str | None = None) -> Any:
    """The model picker's choices (models folder, demo models, recent paths), with fit badges."""
    choices = [(c.label, c.path) for c in common.model_choices()]
    paths = [p for _, p in choices]
    value = selected if selected in paths else None
    return gr.update(choices=choices, value=value)


def gallery_items() -> tuple[list[tuple[str, str]], list[str]]:
    """Earlier outputs, newest first: (gallery value, paths)."""
    folder = common.context().outputs_dir
    try:
        videos = sorted((p for p in folder.glob("*.mp4") if p.is_file()),
                        key=lambda p: p.stat().st_mtime, reverse=True)[:GALLERY_MAX]
    except OSError:
        videos = []
    items = []
    for video in videos:
        caption = video.stem
        try:
            meta = json.loads(video.with_suffix(".json").read_text(encoding="utf-8"))
            caption = f"{meta.get('prompt', '')[:60]} · {meta.get('width')}x{meta.get('height')} · seed {meta.get('seed')}"
        except (OSError, ValueError, AttributeError):
            pass
        items.append((str(video), caption))
    return items, [p for p, _ in items]


def refresh_gallery() -> tuple[Any, list[str]]:
    items, paths = gallery_items()
    return gr.update(value=items or None), paths


def show_earlier(paths: list[str], evt: gr.SelectData) -> tuple[Any, Any, Any]:
    """A gallery item was chosen: show it with its settings."""
    try:
        video = Path(paths[evt.index])
    except (IndexError, TypeError):
        return gr.skip(), gr.skip(), gr.skip()
    try:
        meta = json.loads(video.with_suffix(".json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        meta = {}
    keep = ("prompt", "negative_prompt", "num_frames", "width", "height", "num_inference_steps",
            "guidance_scale", "guidance_scale_2", "seed", "fps", "model_path", "model")
    settings = {k: meta.get(k) for k in keep if k in meta}
    result = {"success": True, "output_path": str(video), "width": meta.get("width"), "height": meta.get("height"),
              "frames": meta.get("num_frames"), "fps": meta.get("fps"), "settings": settings}
    return str(video), result, render_result(result)


def reuse_settings(result: dict | None) -> tuple[Any, ...]:
    """Put a video's settings back into the form (model, prompt, size, frames, steps, guidance, seed)."""
    s = (result or {}).get("settings") or {}
    if not s:
        gr.Info("There are no settings to reuse yet: generate a video or pick one from the gallery.")
        return (gr.skip(),) * 10

    def value(key: str) -> Any:
        return s[key] if s.get(key) is not None else gr.skip()

    return (value("model_path"), value("prompt"), value("negative_prompt"), value("width"), value("height"),
            value("num_frames"), value("num_inference_steps"), value("guidance_scale"), value("guidance_scale_2"),
            value("seed"))


def roll_seed() -> int:
    return random.randrange(0, 2**31)


def apply_size(size: str) -> tuple[Any, Any]:
    m = re.match(r"^\s*(\d+)\s*[x×]\s*(\d+)\s*$", size or "")
    if not m:
        return gr.skip(), gr.skip()
    return int(m.group(1)), int(m.group(2))


# --- layout ---------------------------------------------------------------------------------

@dataclass
class GenerateTab:
    """The components other tabs and app.py wire to."""

    path: Any
    picker: Any
    gallery: Any
    gallery_paths: Any
    generate_event: Any
    self_test_event: Any
    result: Any

    def load_outputs(self) -> list[Any]:
        """What :func:`on_load` fills when the page opens."""
        return [self.picker, self.gallery, self.gallery_paths]


def build_generate_tab() -> GenerateTab:
    """Add the Generate controls to the current Blocks/Tab context."""
    with gr.Row(equal_height=False):
        with gr.Column(scale=5, min_width=420):
            picker = gr.Dropdown(label="Model", choices=[], value=None, elem_id="wc-gen-model",
                                 info="Wan models in your models folder and ones you used lately, "
                                      "with whether each fits this computer.")
            with gr.Row(equal_height=True):
                path = gr.Textbox(label="Model folder", show_label=False, container=False, scale=6,
                                  placeholder="…or type the path of a model folder and press Enter",
                                  max_lines=1, elem_id="wc-gen-path")
                refresh = gr.Button("↻ Rescan the models folder", scale=0, min_width=220, size="sm",
                                    elem_id="wc-gen-refresh")
            info = gr.HTML(render_model_info(None), elem_id="wc-gen-info", js_on_load=None)
            prompt = gr.Textbox(label="Prompt", lines=3, elem_id="wc-gen-prompt",
                                placeholder="What the video shows, e.g. A red fox running through fresh snow, "
                                            "morning light")
            negative = gr.Textbox(label="Negative prompt", lines=1, elem_id="wc-gen-negative",
                                  placeholder="What to keep out (optional), e.g. blurry, text, watermark")
            task_inputs = build_task_inputs()      # exactly the inputs the model's task takes
            image, last_image = task_inputs.slots["image"].box, task_inputs.slots["last_image"].box
            image_row = task_inputs.slots["image"].group
            with gr.Row():
                size = gr.Dropdown(label="Size preset", choices=[], value=None, scale=2, elem_id="wc-gen-size")
                width = gr.Number(label="Width", value=832, precision=0, minimum=16, scale=1, elem_id="wc-gen-width")
                height = gr.Number(label="Height", value=480, precision=0, minimum=16, scale=1,
                                   elem_id="wc-gen-height")
            with gr.Row():
                frames = gr.Number(label="Frames (4k+1)", value=81, precision=0, minimum=1, step=4,
                                   elem_id="wc-gen-frames")
                steps = gr.Number(label="Steps", value=50, precision=0, minimum=1, elem_id="wc-gen-steps")
                guidance = gr.Number(label="Guidance", value=5.0, minimum=0, step=0.5, elem_id="wc-gen-guidance")
                guidance_2 = gr.Number(label="Guidance (low-noise expert)", value=3.0, minimum=0, step=0.5,
                                       visible=False, elem_id="wc-gen-guidance-2")
            with gr.Row(equal_height=False):
                seed = gr.Number(label="Seed", value=42, precision=0, minimum=0, scale=4, elem_id="wc-gen-seed")
                with gr.Column(scale=1, min_width=150, elem_classes=["wc-dice-col"]):
                    dice = gr.Button("Random seed", size="sm", elem_id="wc-gen-seed-dice")
            speed = speed_radio()
            with gr.Accordion("Advanced: memory plan settings", open=False, elem_id="wc-gen-advanced"):
                with gr.Row():
                    precision = gr.Dropdown(label="Precision", choices=PRECISION_CHOICES, value="auto",
                                            elem_id="wc-gen-precision")
                    offload = gr.Dropdown(label="Offload", choices=OFFLOAD_CHOICES, value="auto",
                                          elem_id="wc-gen-offload")
                with gr.Row():
                    tiling = gr.Radio(label="VAE tiling", choices=SWITCH_CHOICES, value="auto",
                                      elem_id="wc-gen-tiling")
                    te_cpu = gr.Radio(label="Text encoder on the CPU", choices=SWITCH_CHOICES, value="auto",
                                      elem_id="wc-gen-te-cpu")
                gpus = gr.Dropdown(label="GPUs", info=GPU_INFO, elem_id="wc-gen-gpus",
                                   **gpu_control(common.hardware()))   # shown only with several GPUs
                knobs = speed_knobs()        # step cache, thresholds, attention, compile (wan_ui.speed_choice)
            # the memory plan's headline; its reasons are in a closed fold
            plan_html = gr.HTML(render_plan(None), elem_id="wc-gen-plan", js_on_load=None)
        with gr.Column(scale=4, min_width=360):
            # The buttons head this column, on the first screen however long the form gets, with the
            # progress panel right under them.
            with gr.Row(elem_classes=["wc-gen-buttons"]):
                go = gr.Button("Generate", variant="primary", scale=3, elem_id="wc-gen-go")
                stop = gr.Button("Cancel", variant="stop", scale=1, interactive=False, elem_id="wc-gen-cancel")
                test = gr.Button("Self-test", variant="secondary", scale=1, elem_id="wc-gen-self-test")
            cancel_note = gr.Markdown("", elem_id="wc-gen-cancel-note", elem_classes=["wc-note"])
            progress = gr.HTML("", elem_id="wc-gen-progress", js_on_load=None)
            video = gr.Video(label="Video", interactive=False, elem_id="wc-gen-video", height=360)
            with gr.Row():
                reuse = gr.Button("Reuse these settings", size="sm", elem_id="wc-gen-reuse")
            with gr.Accordion("Settings of this video", open=False, elem_id="wc-gen-settings-fold"):
                result = gr.JSON(value={}, show_label=False, elem_id="wc-gen-result")
            gallery_paths = gr.State([])
            gallery = gr.Gallery(label="Earlier videos (from the outputs folder)", columns=4, height=240,
                                 allow_preview=False, object_fit="cover", elem_id="wc-gen-gallery",
                                 interactive=False)

    form = [path, prompt, negative, width, height, frames, steps, guidance, guidance_2, seed, image, last_image,
            precision, offload, tiling, te_cpu, *task_inputs.values(), gpus, speed, *knobs]
    model_fields = [info, size, width, height, frames, steps, guidance, guidance_2, image, last_image, image_row]
    plan_inputs = [path, width, height, frames, steps, guidance, precision, offload, tiling, te_cpu, speed, *knobs]

    selected = gr.State("")         # the model the form was last filled for
    refresh.click(picker_update, inputs=picker, outputs=picker, api_visibility="private")
    picker.input(lambda p: p or gr.skip(), inputs=picker, outputs=path, api_visibility="private").then(
        select_new_model, inputs=[path, selected], outputs=[*model_fields, selected],
        api_visibility="private").then(
        show_for_model, inputs=[path, task_inputs.mode], outputs=task_inputs.model_outputs(),
        api_visibility="private").then(update_plan, inputs=plan_inputs, outputs=plan_html, api_visibility="private")
    gr.on([path.submit, path.blur], select_new_model, inputs=[path, selected], outputs=[*model_fields, selected],
          api_visibility="private").then(
        show_for_model, inputs=[path, task_inputs.mode], outputs=task_inputs.model_outputs(),
        api_visibility="private").then(update_plan, inputs=plan_inputs, outputs=plan_html,
                                         api_visibility="private")
    size.input(apply_size, inputs=size, outputs=[width, height], api_visibility="private").then(
        update_plan, inputs=plan_inputs, outputs=plan_html, api_visibility="private")
    gr.on([width.input, height.input, frames.input, steps.input, guidance.input, precision.input,
           offload.input, tiling.input, te_cpu.input, speed.input, *(k.input for k in knobs)], update_plan,
          inputs=plan_inputs, outputs=plan_html,
          api_name="plan", show_progress="hidden", trigger_mode="always_last")
    dice.click(roll_seed, outputs=seed, api_visibility="private")
    plan_html.change(update_gpus, inputs=[path, width, height, frames, gpus], outputs=gpus,
                     api_visibility="private", queue=False)          # the counts that split this model and size
    gr.on([width.input, height.input], lambda: None, outputs=size, api_visibility="private", queue=False)

    def running() -> tuple[Any, Any, Any, Any]:
        return gr.update(interactive=False), gr.update(interactive=True), gr.update(interactive=False), ""

    def idle() -> tuple[Any, Any, Any, Any]:
        return gr.update(interactive=True), gr.update(interactive=False), gr.update(interactive=True), ""

    buttons = [go, stop, test, cancel_note]
    gen_event = go.click(running, outputs=buttons, api_visibility="private", queue=False).then(
        generate, inputs=form, outputs=[progress, video, result], api_name="generate",
        concurrency_limit=2, concurrency_id="generate", show_progress="hidden")
    gen_event.then(idle, outputs=buttons, api_visibility="private", queue=False).then(
        refresh_gallery, outputs=[gallery, gallery_paths], api_visibility="private")
    test_event = test.click(running, outputs=buttons, api_visibility="private", queue=False).then(
        self_test, outputs=[progress, video, result], api_name="self_test", concurrency_limit=2,
        concurrency_id="generate", show_progress="hidden")
    test_event.then(idle, outputs=buttons, api_visibility="private", queue=False).then(
        refresh_gallery, outputs=[gallery, gallery_paths], api_visibility="private").then(
        picker_update, inputs=picker, outputs=picker, api_visibility="private")
    stop.click(_cancel_clicked, outputs=cancel_note, api_name="cancel", queue=False)
    reuse.click(reuse_settings, inputs=result,
                outputs=[path, prompt, negative, width, height, frames, steps, guidance, guidance_2, seed],
                api_visibility="private").then(
        select_model_keep_form, inputs=path, outputs=[info, guidance_2, image, last_image, image_row, selected],
        api_visibility="private").then(update_plan, inputs=plan_inputs, outputs=plan_html,
                                       api_visibility="private")
    gallery.select(show_earlier, inputs=gallery_paths, outputs=[video, result, progress], api_visibility="private")
    return GenerateTab(path=path, picker=picker, gallery=gallery, gallery_paths=gallery_paths,
                       generate_event=gen_event, self_test_event=test_event, result=result)


def update_gpus(path: str, width: Any, height: Any, frames: Any, current: str | None) -> Any:
    """The GPUs control for the chosen model and size (wan_ui.gpu_choice)."""
    report = None
    if path:
        try:
            report = common.inspect_cached(path)
        except Exception:  # noqa: BLE001 - no model yet: every count
            report = None
    return gr.update(**gpu_control(common.hardware(), report, _int(width), _int(height), _int(frames), current))


def _cancel_clicked() -> str:
    """Cancel (API ``/cancel``): the sentence shown beside the buttons, e.g. "Cancelling after the current
    step…"; the progress panel says so at once too."""
    return cancel_generation()


def select_new_model(path: str, selected: str) -> tuple[Any, ...]:
    """select_model, unless the form was already filled for this path (a blur after Enter, say):
    then the person's changes to size, frames and steps stay."""
    from wan_ui.model_check import clean_path
    target = clean_path(path)
    if target and target == selected:
        return (*(gr.skip(),) * 11, selected)
    return (*select_model(path), target)


def select_model_keep_form(path: str) -> tuple[Any, ...]:
    """Like select_model, but only the info line and which inputs show (the form keeps its values)."""
    from wan_ui.model_check import clean_path
    out = select_model(path)
    info, guidance_2, image, last_image, image_row = out[0], out[7], out[8], out[9], out[10]
    if isinstance(guidance_2, dict):
        guidance_2 = gr.update(visible=guidance_2.get("visible"))
    return info, guidance_2, image, last_image, image_row, clean_path(path)


def on_load() -> tuple[Any, Any, list[str]]:
    """When the page opens: the model picker and the gallery."""
    items, paths = gallery_items()
    return picker_update(), gr.update(value=items or None), paths
