"""The Generate tab: pick a model, set the prompt and size, see the memory plan, and watch it run.

A generation is a job owned by the server (core.jobs): Generate queues it and this page follows
it; Add to queue lets it wait its turn. One job runs at a time, in a worker process the app
supervises (a kernel OOM kill fails the job, not the app). The page draws its job's live
progress (stage, step i of n, the active expert, seconds per step, ETA for the whole job, a bar)
from a timer, so a reloaded page or a second tab re-attaches to the running job; closing the
page does not stop it, only Cancel does (wan_ui.queue_panel: the queue list and the jobs API).

The API (``gradio_client``)::

    client = Client("http://127.0.0.1:7860/", download_files=False)
    html, video, result = client.predict(
        "/models/Wan2.2-TI2V-5B-Diffusers", "A red fox in the snow", "", 1280, 704, 121, 50,
        5.0, None, 42, None, None, "auto", "auto", "auto", "auto", api_name="/generate")   # queues, waits
    result["success"], result["output_path"], result["seconds_per_step"]
    client.predict(api_name="/cancel")     # from another client: "Cancelling after the current step…"
    job = client.predict(model="/models/...", prompt="A red fox", api_name="/enqueue")   # see queue_panel

torch and diffusers are imported by the worker process (core.jobs.worker), never by the app.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import queue
import random
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr

from core.check.report import ModelReport
from core.choices import OFFLOADS, PRECISIONS
from core.errors import explain
from wan_ui import common, queue_panel
from wan_ui.form_defaults import (
    FIELDS,
    QUICK,
    START,
    clip_words,
    missing_words,
    model_defaults,
    quick_test,
    to_fill,
)
from wan_ui.gpu_choice import INFO as GPU_INFO
from wan_ui.gpu_choice import gpu_control
from wan_ui.lora_picker import build_lora_picker, lora_values
from wan_ui.lora_picker import wire as wire_loras
from wan_ui.progress_view import STAGE_LABELS, ProgressView, stage_of  # noqa: F401 - re-exported
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

CANCELLING = queue_panel.CANCELLING
NOTHING_TO_CANCEL = queue_panel.NOTHING_TO_CANCEL
PRECISION_CHOICES = list(PRECISIONS)
_OFFLOAD_LABELS = {"none": "none: everything on the GPU", "sequential": "sequential (slow, least GPU memory)",
                  "disk": "disk (too little RAM; slowest)"}
OFFLOAD_CHOICES = [(_OFFLOAD_LABELS.get(word, word), word) for word in OFFLOADS]
SWITCH_CHOICES = ["auto", "on", "off"]
GALLERY_MAX = 24
SELF_TEST = {"prompt": "Self-test: a short clip from a tiny random-weight model", "width": 64, "height": 64,
             "frames": 9, "steps": 4, "guidance": 5.0, "seed": 42}

# --- jobs: a generation is a job owned by the server (core.jobs, wan_ui.queue_panel) ---------------


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
    loras: tuple[list[str], Any, Any] = ([], None, None)   # files, strength, low-noise strength (wan_ui.lora_picker)
    flow_shift: float | None = None  # the scheduler's shift; None: the model's


def cancel_generation() -> str:
    """Cancel the running job after its current step; the sentence to show."""
    return queue_panel.cancel_followed(None)


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


def unload(path: str | None = None) -> None:
    """A model folder changed (e.g. after Fix): the worker loads it afresh for the next job."""
    queue_panel.runner().forget_model()


def submit(req: Request) -> tuple[int | None, list[str]]:
    """Check the form's request and queue it as a job: (job id, []) or (None, the sentences)."""
    if not req.path:
        return None, ["Choose a model first. Pick one in the list, or type the path of a model folder."]
    try:
        os.stat(req.path)
        report = common.inspect_cached(req.path)
    except Exception as exc:  # noqa: BLE001
        err = explain(exc)
        return None, [f"{err.message} {err.remedy}".strip()]
    values = {"prompt": req.prompt, "negative_prompt": req.negative_prompt or None, "num_frames": req.num_frames,
              "width": req.width, "height": req.height, "num_inference_steps": req.steps,
              "guidance_scale": req.guidance, "guidance_scale_2": req.guidance_2 if report.experts >= 2 else None,
              "seed": req.seed, "image": req.image, "last_image": req.last_image,
              **task_values(report.task, req.inputs)}
    if req.loras[0]:          # FILE:STRENGTH[@expert] per LoRA, each expert at its strength (wan_ui.lora_picker)
        values["loras"] = lora_values(report, *req.loras)
    if req.flow_shift is not None:
        values["flow_shift"] = req.flow_shift
    return queue_panel.runner().submit(req.path, values, req.overrides, gpus=_ranks(req, report, values),
                                       report=report)


def _ranks(req: Request, report: ModelReport, values: dict[str, Any]) -> int | None:
    """How many ranks the GPUs choice asks for this request (None: one GPU)."""
    if not req.gpus or req.gpus == "1" or report.is_collection or not report.is_wan:
        return None
    from core.run.generation import GenerationConfig, request_for, resolve
    from wan_ui.gpu_choice import ranks_for
    settings, _ = resolve(GenerationConfig(**{k: v for k, v in values.items() if v is not None}), report)
    if settings is None:
        return None
    n = ranks_for(req.gpus, report, request_for(settings, req.overrides), common.hardware())
    return n if n > 1 else None


def _follow(job_id: int) -> Iterator[tuple[Any, Any, Any]]:
    """Yield (progress HTML, video, result) as the job goes; the last one has its result."""
    runner = queue_panel.runner()
    seq = 0
    while True:
        job = runner.store.get(job_id)
        if job is None:
            result = {"success": False, "errors": [f"Job {job_id} was removed from the queue."]}
            yield render_result(result), None, result
            return
        html = queue_panel.job_panel(job)
        if job.finished:
            yield html, job.output_path if job.state == "done" else None, queue_panel.job_result(job)
            return
        yield html, gr.skip(), gr.skip()
        seq, _, _ = runner.events_since(job_id, seq, timeout=0.5)


def _request(path: str, prompt: str, negative_prompt: str, width: Any, height: Any, frames: Any, steps: Any,
             guidance: Any, guidance_2: Any, seed: Any, image: Any, last_image: Any, precision: str,
             offload: str, vae_tiling: str, text_encoder_on_cpu: str, video: Any = None, mask: Any = None,
             reference_images: Any = None, pose_video: Any = None, face_video: Any = None,
             background_video: Any = None, mask_video: Any = None, strength: Any = None,
             conditioning_scale: Any = None, mode: Any = None,
             segment_frame_length: Any = None, gpus: Any = None, speed: Any = None, cache: Any = None,
             cache_threshold: Any = None, cache_threshold_2: Any = None, attention: Any = None,
             compile_blocks: Any = None, lora_files: Any = None, lora_strength: Any = None,
             lora_strength_low: Any = None, flow_shift: Any = None) -> Request:
    """The form's values (in the Generate button's order) as one Request."""
    task_inputs = {"video": video, "mask": mask, "reference_images": reference_images, "pose_video": pose_video,
                   "face_video": face_video, "background_video": background_video, "mask_video": mask_video,
                   "strength": strength, "conditioning_scale": conditioning_scale, "mode": mode,
                   "segment_frame_length": segment_frame_length}
    from wan_ui.model_check import clean_path
    return Request(path=clean_path(path), prompt=prompt or "", negative_prompt=negative_prompt or "",
                   width=_int(width), height=_int(height), num_frames=_int(frames), steps=_int(steps),
                   guidance=_float(guidance), guidance_2=_float(guidance_2), seed=_int(seed),
                   image=_image_path(image), last_image=_image_path(last_image),
                   overrides={**common.overrides_from(precision, offload, vae_tiling, text_encoder_on_cpu),
                              **speed_overrides(speed, cache, cache_threshold, cache_threshold_2, attention,
                                                compile_blocks)},
                   inputs=task_inputs, gpus=str(gpus) if gpus not in (None, "") else None,
                   loras=(list(lora_files or []), lora_strength, lora_strength_low), flow_shift=_float(flow_shift))


def generate(*form: Any, **named: Any) -> Iterator[tuple[Any, Any, Any]]:
    """API ``/generate``: queue the form's request as a job and follow it to its end.

    Yields (progress HTML, video path, result dict). The arguments are the form's, in order:
    path, prompt, negative_prompt, width, height, frames, steps, guidance, guidance_2, seed,
    image, last_image, precision, offload, vae_tiling, text_encoder_on_cpu, then the task inputs
    of wan_ui.task_inputs (files as paths), ``gpus`` ("1".."N" or "auto"), and the speed preset
    and its knobs (wan_ui.speed_choice). A request that cannot run ends at once with its sentences.
    """
    job_id, errors = submit(_request(*form, **named))
    if job_id is None:
        result = {"success": False, "errors": errors}
        yield render_result(result), None, result
        return
    yield from _follow(job_id)


# The API shows (and gradio_client fills by default) the form's own names: those of _request.
generate.__signature__ = inspect.signature(_request).replace(  # type: ignore[attr-defined]
    return_annotation=Iterator[tuple[Any, Any, Any]])


def start_generation(state: Any, *form: Any) -> tuple[Any, Any, str]:
    """The Generate button: queue the request and follow it on this page (state, progress panel, note)."""
    job_id, errors = submit(_request(*form))
    if job_id is None:
        return queue_panel.refused(state), render_sentences("The video could not be made.", errors), ""
    state = queue_panel.follow(state, job_id)
    job = queue_panel.runner().store.get(job_id)
    return state, queue_panel.job_panel(job), ""


def add_to_queue(state: Any, *form: Any) -> tuple[Any, Any, str]:
    """Add to queue: the request waits its turn; this page keeps following what it follows."""
    job_id, errors = submit(_request(*form))
    if job_id is None:
        return queue_panel.refused(state), render_sentences("This request cannot be queued.", errors), ""
    runner = queue_panel.runner()
    ahead = sum(1 for j in runner.store.list() if j.state in ("queued", "running") and j.id != job_id)
    current = runner.store.get(state.job) if state is not None and state.job is not None else None
    note = f"Added to the queue as job {job_id} ({ahead} ahead of it)."
    if current is None or current.finished:
        return queue_panel.follow(state, job_id), gr.skip(), note     # drawn on the next tick
    state, progress = queue_panel.clear_refusal(state)                # an earlier refusal goes
    return state, progress, note


def self_test(state: Any = None) -> Iterator[tuple[Any, Any]]:
    """Build the smallest demo model (no download) and queue a short clip with it (API ``/self_test``)."""
    from core.progress import ProgressEvent
    ctx = common.context()
    events: queue.Queue[Any] = queue.Queue()
    view = ProgressView()
    built: dict[str, Any] = {}

    def build() -> None:
        try:
            from core.demo import write_demo_model
            built["folder"] = write_demo_model(common.DEMO_MODEL, ctx.demo_dir, progress_callback=lambda message, pct:
                                               events.put(ProgressEvent("build", message, pct)))
        except Exception as exc:  # noqa: BLE001 - said on the page
            built["error"] = explain(exc)
        finally:
            events.put(None)

    threading.Thread(target=build, name="wan-compat-demo", daemon=True).start()
    view.update(ProgressEvent("build", "Building the demo model (tiny random weights, nothing is downloaded)", 0))
    while (event := events.get()) is not None:
        view.update(event)
        yield render_progress(view), state
    if "error" in built:
        err = built["error"]
        yield render_sentences(err.message, [err.remedy] if err.remedy else []), state
        return
    common.forget(str(ctx.demo_dir))
    job_id, errors = submit(Request(path=str(built["folder"]), prompt=SELF_TEST["prompt"], width=SELF_TEST["width"],
                                    height=SELF_TEST["height"], num_frames=SELF_TEST["frames"],
                                    steps=SELF_TEST["steps"], guidance=SELF_TEST["guidance"], seed=SELF_TEST["seed"]))
    if job_id is None:
        yield render_sentences("The self-test could not start.", errors), state
        return
    state = queue_panel.follow(state, job_id)
    yield queue_panel.job_panel(queue_panel.runner().store.get(job_id)), state


# --- the form -------------------------------------------------------------------------------

def select_model(path: str, current: dict[str, Any] | None = None,
                 filled: dict[str, Any] | None = None) -> tuple[Any, ...]:
    """A model was chosen: its info line and the form's defaults (size presets, frames, steps, guidance).

    ``current``/``filled``: the form's values now and those it was last filled with; a field the
    person changed (the two differ) keeps its value (wan_ui.form_defaults.untouched). Without
    them every field takes the model's default.
    """
    return _model_fields(path, current, filled)[0]


def _model_fields(path: str, current: dict[str, Any] | None = None, filled: dict[str, Any] | None = None,
                  size: str | None = None) -> tuple[tuple[Any, ...], dict[str, Any] | None, int | None]:
    """select_model's outputs, the values now filled in (None: the model was not read) and its fps."""
    from wan_ui.model_check import clean_path
    target = clean_path(path)
    keep = (gr.skip(),) * 10
    if not target:
        return (render_model_info(None), *keep), None, None
    try:
        os.stat(target)
        report = common.inspect_cached(target)
    except Exception as exc:  # noqa: BLE001
        err = explain(exc)
        return (render_sentences(err.message, [err.remedy] if err.remedy else []), *keep), None, None
    if report.is_collection:
        return (render_notice(f"This folder holds {len(report.models)} models; choose one of them in the list.",
                              "unknown", "?"), *keep), None, None
    plan = None
    try:
        plan = common.default_plan(report)
    except Exception as exc:  # noqa: BLE001
        log.warning("No plan for %s: %s", target, exc)
    info = render_model_info(report, common.fit_badge(report, plan))
    d = model_defaults(report, common.defaults(report))
    fill = to_fill(d, current, filled, size)
    now = {**(current or {}), **fill}
    from core.run.generation import IMAGE_TASKS, OPTIONAL_IMAGE_TASKS
    two = report.experts >= 2
    image_task = report.task in IMAGE_TASKS | OPTIONAL_IMAGE_TASKS
    image_label = "Starting image" + (" (optional)" if report.task in OPTIONAL_IMAGE_TASKS else "")

    def value(name: str) -> Any:
        return fill[name] if name in fill else gr.skip()

    fields = (info,
              gr.update(choices=d.size_choices(),
                        value=QUICK if size == QUICK else d.size_value(now.get("width"), now.get("height"))),
              value("width"), value("height"),
              gr.update(**({"value": fill["frames"]} if "frames" in fill else {}),
                        info=clip_words(now.get("frames"), d.fps)),
              value("steps"),
              gr.update(**({"value": fill["guidance"]} if "guidance" in fill else {}),
                        label="Guidance (high-noise expert)" if two else "Guidance"),
              gr.update(**({"value": fill["guidance_2"]} if "guidance_2" in fill else {}), visible=two),
              gr.update(visible=image_task, label=image_label),
              gr.update(visible=report.task == "flf2v"),
              gr.update(visible=image_task))
    return fields, {**(filled or {}), **fill}, d.fps


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


def apply_size(size: str, path: str = "") -> tuple[Any, Any, Any, Any]:
    """A size preset was chosen: (width, height, frames, steps); the Quick test also sets frames and steps."""
    if size == QUICK:
        from wan_ui.model_check import clean_path
        try:
            quick = quick_test(common.inspect_cached(clean_path(path)))
        except Exception:  # noqa: BLE001 - the model cannot be read now: the form stays as it is
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        return quick.width, quick.height, quick.frames, quick.steps
    m = re.match(r"^\s*(\d+)\s*[x×]\s*(\d+)\s*$", size or "")
    if not m:
        return gr.skip(), gr.skip(), gr.skip(), gr.skip()
    return int(m.group(1)), int(m.group(2)), gr.skip(), gr.skip()


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
                width = gr.Number(label="Width", value=START["width"], precision=0, minimum=16, scale=1,
                                  elem_id="wc-gen-width")
                height = gr.Number(label="Height", value=START["height"], precision=0, minimum=16, scale=1,
                                   elem_id="wc-gen-height")
            with gr.Row():
                frames = gr.Number(label="Frames", value=START["frames"], precision=0, minimum=1, step=4,
                                   info=clip_words(START["frames"], 16), elem_id="wc-gen-frames")
                steps = gr.Number(label="Steps", value=START["steps"], precision=0, minimum=1, elem_id="wc-gen-steps")
                guidance = gr.Number(label="Guidance", value=START["guidance"], minimum=0, step=0.5,
                                     elem_id="wc-gen-guidance")
                guidance_2 = gr.Number(label="Guidance (low-noise expert)", value=START["guidance_2"], minimum=0,
                                       step=0.5, visible=False, elem_id="wc-gen-guidance-2")
            with gr.Row(equal_height=False):
                seed = gr.Number(label="Seed", value=42, precision=0, minimum=0, scale=4, elem_id="wc-gen-seed")
                with gr.Column(scale=1, min_width=150, elem_classes=["wc-dice-col"]):
                    dice = gr.Button("Random seed", size="sm", elem_id="wc-gen-seed-dice")
            speed = speed_radio()
            loras = build_lora_picker()      # files, verdicts, strength per expert, distill preset
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
                # enabled once a model and a prompt are there (form_ready); the note says what is missing
                go = gr.Button("Generate", variant="primary", scale=3, interactive=False, elem_id="wc-gen-go")
                add = gr.Button("Add to queue", variant="secondary", scale=2, interactive=False,
                                elem_id="wc-gen-add")
                stop = gr.Button("Cancel", variant="stop", scale=1, interactive=False, elem_id="wc-gen-cancel")
                test = gr.Button("Self-test", variant="secondary", scale=1, elem_id="wc-gen-self-test")
                api_generate = gr.Button("Generate and wait (API)", visible=False)   # /generate: queue, follow
            ready_note = gr.Markdown(missing_words("", ""), elem_id="wc-gen-ready-note", elem_classes=["wc-note"])
            cancel_note = gr.Markdown("", elem_id="wc-gen-cancel-note", elem_classes=["wc-note"])
            progress = gr.HTML("", elem_id="wc-gen-progress", js_on_load=None)
            video = gr.Video(label="Video", interactive=False, elem_id="wc-gen-video", height=360)
            with gr.Row():
                reuse = gr.Button("Reuse these settings", size="sm", elem_id="wc-gen-reuse")
            with gr.Accordion("Settings of this video", open=False, elem_id="wc-gen-settings-fold"):
                result = gr.JSON(value={}, show_label=False, elem_id="wc-gen-result")
            jobs = queue_panel.build_queue_panel()     # the queue, this page's job, its timer
            gallery_paths = gr.State([])
            gallery = gr.Gallery(label="Earlier videos (from the outputs folder)", columns=4, height=240,
                                 allow_preview=False, object_fit="cover", elem_id="wc-gen-gallery",
                                 interactive=False)

    form = [path, prompt, negative, width, height, frames, steps, guidance, guidance_2, seed, image, last_image,
            precision, offload, tiling, te_cpu, *task_inputs.values(), gpus, speed, *knobs, *loras.inputs]
    model_fields = [info, size, width, height, frames, steps, guidance, guidance_2, image, last_image, image_row]
    plan_inputs = [path, width, height, frames, steps, guidance, precision, offload, tiling, te_cpu, speed, *knobs]

    selected = gr.State("")         # the model the form was last filled for
    filled = gr.State(dict(START))  # the values it was last filled with: a field still holding one is untouched
    fps = gr.State(16)              # the chosen model's frame rate (the clip's length beside the frames)
    page = jobs["state"]
    chosen = dict(fn=select_new_model, inputs=[path, selected, filled, page, size, width, height, frames, steps,
                                               guidance, guidance_2],
                  outputs=[*model_fields, selected, filled, fps, page, progress], api_visibility="private")
    refresh.click(picker_update, inputs=picker, outputs=picker, api_visibility="private")
    picker.input(lambda p: p or gr.skip(), inputs=picker, outputs=path, api_visibility="private").then(
        **chosen).then(
        show_for_model, inputs=[path, task_inputs.mode], outputs=task_inputs.model_outputs(),
        api_visibility="private").then(update_plan, inputs=plan_inputs, outputs=plan_html, api_visibility="private")
    gr.on([path.submit, path.blur], **chosen).then(
        show_for_model, inputs=[path, task_inputs.mode], outputs=task_inputs.model_outputs(),
        api_visibility="private").then(update_plan, inputs=plan_inputs, outputs=plan_html,
                                         api_visibility="private")
    gr.on([path.change, prompt.change], form_ready, inputs=[path, prompt], outputs=[go, add, ready_note],
          api_visibility="private", queue=False, show_progress="hidden", trigger_mode="always_last")
    frames.change(lambda n, rate: gr.update(info=clip_words(n, rate)), inputs=[frames, fps], outputs=frames,
                  api_visibility="private", queue=False, show_progress="hidden", trigger_mode="always_last")
    size.input(apply_size, inputs=[size, path], outputs=[width, height, frames, steps], api_visibility="private").then(
        update_plan, inputs=plan_inputs, outputs=plan_html, api_visibility="private")
    gr.on([width.input, height.input, frames.input, steps.input, guidance.input, precision.input,
           offload.input, tiling.input, te_cpu.input, speed.input, *(k.input for k in knobs)], update_plan,
          inputs=plan_inputs, outputs=plan_html,
          api_name="plan", show_progress="hidden", trigger_mode="always_last")
    dice.click(roll_seed, outputs=seed, api_visibility="private")
    wire_loras(loras, path, steps, guidance, guidance_2)
    plan_html.change(update_gpus, inputs=[path, width, height, frames, gpus], outputs=gpus,
                     api_visibility="private", queue=False)          # the counts that split this model and size
    gr.on([width.input, height.input], lambda: None, outputs=size, api_visibility="private", queue=False)

    go.click(start_generation, inputs=[page, *form], outputs=[page, progress, cancel_note], api_visibility="private",
             show_progress="hidden")
    add.click(add_to_queue, inputs=[page, *form], outputs=[page, progress, cancel_note], api_visibility="private",
              show_progress="hidden")
    api_generate.click(generate, inputs=form, outputs=[progress, video, result], api_name="generate",
                       concurrency_limit=None, concurrency_id="follow", show_progress="hidden")
    test_event = test.click(self_test, inputs=page, outputs=[progress, page], api_name="self_test",
                            show_progress="hidden")
    test_event.then(picker_update, inputs=picker, outputs=picker, api_visibility="private")
    jobs["timer"].tick(queue_panel.tick, inputs=page, outputs=[page, progress, video, result, jobs["html"], stop],
                       api_visibility="private", show_progress="hidden", concurrency_limit=None,
                       concurrency_id="follow")
    jobs["html"].click(queue_panel.on_row_action, inputs=page, outputs=[page, jobs["html"], jobs["note"]],
                       api_visibility="private", show_progress="hidden")
    stop.click(_cancel_clicked, inputs=page, outputs=cancel_note, api_name="cancel", queue=False)
    stop.click(queue_panel.show_cancelling, inputs=page, outputs=[page, progress], api_visibility="private",
               show_progress="hidden")                  # the panel says "cancelling" at once
    stop.click(None, js=queue_panel.CANCELLING_JS, api_visibility="private")   # even before the server answers
    queue_panel.register_api()
    # a job ended (the timer put its result here): the gallery, and app.py's Performance tab, catch up
    gen_event = result.change(refresh_gallery, outputs=[gallery, gallery_paths], api_visibility="private")
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


def _cancel_clicked(page: Any = None) -> str:
    """Cancel (API ``/cancel``): this page's job, else the running one; the sentence shown beside the
    buttons, e.g. "Cancelling after the current step…"; the progress panel says so at once too."""
    return queue_panel.cancel_followed(page)


def select_new_model(path: str, selected: str, filled: dict[str, Any], page: Any, size: str | None,
                     *values: Any) -> tuple[Any, ...]:
    """A model was chosen (the list, or the path box's Enter or blur): the form's defaults go only into
    the fields the person has not changed (``values``: width, height, frames, steps, guidance,
    guidance_2 now), and the Quick test (``size``) stays the Quick test at this model's smallest size;
    a refusal still on the page ("Choose a model first") goes. Nothing changes when the form was
    already filled for this path (a blur after Enter, say).

    Returns select_model's outputs, then the path filled for, the values filled in, the model's fps,
    the page's state and its progress panel.
    """
    from wan_ui.model_check import clean_path
    target = clean_path(path)
    if target and target == selected:
        return (*(gr.skip(),) * 11, selected, filled, gr.skip(), page, gr.skip())
    fields, now, rate = _model_fields(path, dict(zip(FIELDS, values)), filled or dict(START), size)
    page, progress = queue_panel.clear_refusal(page)
    return (*fields, target, filled if now is None else now, gr.skip() if rate is None else rate, page, progress)


def form_ready(path: str, prompt: str) -> tuple[Any, Any, str]:
    """Generate and Add to queue are enabled once a model and a prompt are there; the note says what is missing."""
    missing = missing_words(path, prompt)
    return gr.update(interactive=not missing), gr.update(interactive=not missing), missing


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
