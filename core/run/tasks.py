"""Which inputs each Wan task takes, their checks, the default size from an image, and the
diffusers pipeline and arguments one request runs with.

The GenerationConfig fields carry diffusers' argument names (``image``, ``video``,
``pose_video``, ...). Checks run before any model is loaded (:func:`check_inputs`); the files
are decoded when the generation starts (:func:`pipeline_kwargs`).

Usage::

    from core.run.tasks import check_inputs, task_pipeline, pipeline_kwargs

    infos, errors = check_inputs(config, report)          # {field: InputInfo}, [sentences]
    pipe = task_pipeline(loaded_pipe, settings, cache)    # WanImageToVideoPipeline.from_pipe(...) for TI2V + image
    kwargs = pipeline_kwargs(pipe, settings, progress)    # decoded inputs, trimmed to the frame count

What happens to inputs (also in README, "Generating"): an image or video of another size is
resized to the output size (diffusers' own resize; VACE's control video and mask here,
the same way); a video longer than the frame count is cut to its first frames; a shorter one
is refused with the largest frame count it allows.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from core.errors import WanError
from core.run.inputs import InputInfo, probe, read_image, read_video

TASK_NAMES = {"t2v": "text-to-video", "i2v": "image-to-video", "ti2v": "TI2V", "flf2v": "first-and-last-frame",
              "vace": "VACE", "animate": "Animate", "s2v": "speech-to-video"}


@dataclass(frozen=True)
class InputSpec:
    """One task input: its GenerationConfig field (= diffusers argument), kind, words and CLI flag."""

    name: str
    kind: str          # "image", "images" (a list), "video"
    label: str
    flag: str
    takers: str        # the models that take it, for the refusal sentence


INPUTS: dict[str, InputSpec] = {s.name: s for s in (
    InputSpec("image", "image", "starting image", "--image",
              "image-to-video, TI2V-5B, FLF2V and Animate models"),
    InputSpec("last_image", "image", "last image", "--last-image", "FLF2V and Wan2.1 I2V models"),
    InputSpec("video", "video", "video", "--video", "text-to-video models (video-to-video) and VACE models"),
    InputSpec("mask", "video", "mask video", "--mask", "VACE models (Wan2.1-VACE, Wan2.2 VACE-Fun)"),
    InputSpec("reference_images", "images", "reference image", "--reference",
              "VACE models (Wan2.1-VACE, Wan2.2 VACE-Fun)"),
    InputSpec("pose_video", "video", "pose video", "--pose-video", "Animate models (Wan2.2-Animate-14B)"),
    InputSpec("face_video", "video", "face video", "--face-video", "Animate models (Wan2.2-Animate-14B)"),
    InputSpec("background_video", "video", "background video", "--background-video",
              "Animate models (Wan2.2-Animate-14B) in replace mode"),
    InputSpec("mask_video", "video", "mask video", "--mask-video",
              "Animate models (Wan2.2-Animate-14B) in replace mode"),
)}
# Numbers and choices that only some tasks take: field -> (tasks, flag, who takes it).
OPTIONS: dict[str, tuple[frozenset[str], str, str]] = {
    "strength": (frozenset({"t2v"}), "--strength", "video-to-video with a text-to-video model"),
    "conditioning_scale": (frozenset({"vace"}), "--conditioning-scale", "VACE models"),
    "mode": (frozenset({"animate"}), "--mode", "Animate models"),
    "segment_frame_length": (frozenset({"animate"}), "--segment-frame-length", "Animate models"),
}
TASK_INPUTS: dict[str, tuple[str, ...]] = {
    "t2v": ("video",),
    "ti2v": ("image",),
    "i2v": ("image", "last_image"),
    "flf2v": ("image", "last_image"),
    "vace": ("video", "mask", "reference_images"),
    "animate": ("image", "pose_video", "face_video", "background_video", "mask_video"),
    "s2v": (),
}
REQUIRED: dict[str, tuple[str, ...]] = {"i2v": ("image",), "flf2v": ("image",),
                                        "animate": ("image", "pose_video", "face_video")}
IMAGE_SIZED_TASKS = frozenset({"i2v", "ti2v", "flf2v", "animate"})   # default size from the image's aspect
ANIMATE_MODES = ("animate", "replace")


def form_fields(task: str | None, mode: str | None = None) -> tuple[str, ...]:
    """The inputs and options a form shows for ``task`` (no torch): files first, then numbers.

    Animate's background and mask videos only in "replace" ``mode``; strength goes with
    video-to-video (a T2V model's ``video``).

    >>> form_fields("animate", "animate")
    ('image', 'pose_video', 'face_video', 'mode', 'segment_frame_length')
    >>> form_fields("t2v")
    ('video', 'strength')
    """
    task = task or "t2v"
    files = TASK_INPUTS.get(task, ())
    if task == "animate" and (mode or "animate") != "replace":
        files = tuple(f for f in files if f not in ("background_video", "mask_video"))
    return (*files, *(name for name, (tasks, _, _) in OPTIONS.items() if task in tasks))


def check_one(field: str, value: Any) -> tuple[InputInfo | None, list[str]]:
    """Probe one input (a path, PIL image or list) as :func:`check_inputs` does: (info, sentences).

    >>> check_one("pose_video", "notes.mp4")     # doctest: +SKIP
    (None, ['notes.mp4 is not a readable video: it is damaged, cut short, or not a video at all. Use ...'])
    """
    spec = INPUTS[field]
    kind = "image" if spec.kind == "images" else spec.kind
    first: InputInfo | None = None
    errors: list[str] = []
    for item in _paths(value, spec.kind):
        try:
            info = probe(item, kind)
        except WanError as err:
            errors.append(f"The {spec.label} {err.message[0].lower()}{err.message[1:]} {err.remedy}".strip()
                          if not _names_itself(err.message) else f"{err.message} {err.remedy}".strip())
            continue
        first = first or info
    return first, errors


def _value(config: Any, name: str) -> Any:
    return getattr(config, name, None)


def _paths(value: Any, kind: str) -> list[Any]:
    """A list input (reference images) as its items; anything else as itself."""
    if kind == "images" and isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def check_inputs(config: Any, report: Any, required: bool = True) -> tuple[dict[str, InputInfo], list[str]]:
    """Every input problem of ``config`` for ``report``'s task, as sentences; files are probed.

    ``required=False``: inputs the task needs may be missing (a plan made before they are chosen).

    >>> infos, errors = check_inputs(GenerationConfig(prompt="x", pose_video="p.mp4"), t2v_report)  # doctest: +SKIP
    >>> errors
    ['This text-to-video model takes no pose video (--pose-video): only Animate models (Wan2.2-Animate-14B) do.']
    """
    task = report.task or "t2v"
    name = TASK_NAMES.get(task, task)
    errors: list[str] = []
    taken = TASK_INPUTS.get(task, ())
    for field, spec in INPUTS.items():
        if _value(config, field) is not None and field not in taken:
            what = spec.label.removeprefix("starting ")
            errors.append(f"This {name} model takes no {what} ({spec.flag}): only {spec.takers} do; "
                          "remove it or choose such a model.")
    for field, (tasks, flag, takers) in OPTIONS.items():
        if _value(config, field) is not None and task not in tasks:
            errors.append(f"This {name} model takes no {flag}: only {takers} do.")
    for field in REQUIRED.get(task, ()) if required else ():
        if _value(config, field) is None:
            spec = INPUTS[field]
            errors.append(f"This {name} model needs a {spec.label}: give it with {spec.flag}.")
    errors += _option_problems(config, task)
    infos: dict[str, InputInfo] = {}
    for field in taken:
        value = _value(config, field)
        if value is None:
            continue
        spec = INPUTS[field]
        for i, item in enumerate(_paths(value, spec.kind)):
            info, problems = check_one(field, [item] if spec.kind == "images" else item)
            errors += problems
            if info is not None:
                infos[field if i == 0 else f"{field}[{i}]"] = info
    return infos, errors


def _names_itself(message: str) -> bool:
    return not message.startswith(("The file", "A video", "The image must"))


def _option_problems(config: Any, task: str) -> list[str]:
    errors = []
    strength = _value(config, "strength")
    if strength is not None and (not isinstance(strength, (int, float)) or not math.isfinite(strength)
                                 or not 0 < strength <= 1):
        errors.append(f"The strength must be more than 0 and at most 1 (how much of the video changes), "
                      f"not {strength!r}.")
    scale = _value(config, "conditioning_scale")
    if scale is not None and (not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale < 0):
        errors.append(f"The conditioning scale must be a number of 0 or more, not {scale!r}.")
    segment = _value(config, "segment_frame_length")
    if segment is not None and (not isinstance(segment, int) or segment < 1):
        errors.append(f"The segment length must be a whole number of frames of at least 1, not {segment!r}.")
    if task == "vace" and _value(config, "mask") is not None and _value(config, "video") is None:
        errors.append("A VACE mask (--mask) marks what to change in a control video: give the video with --video.")
    if task == "t2v" and _value(config, "strength") is not None and _value(config, "video") is None:
        errors.append("--strength says how much of a video to change: give the video with --video.")
    if task == "animate":
        mode = _value(config, "mode") or "animate"
        if mode not in ANIMATE_MODES:
            errors.append(f"The Animate mode must be \"animate\" or \"replace\", not {mode!r}.")
        elif mode == "replace":
            for field in ("background_video", "mask_video"):
                if _value(config, field) is None:
                    spec = INPUTS[field]
                    errors.append(f"Replace mode needs a {spec.label}: give it with {spec.flag}, "
                                  "or use --mode animate.")
    return errors


def frame_source(infos: Mapping[str, InputInfo]) -> tuple[str, InputInfo] | None:
    """The input whose length sets the video's (the control, source or pose video), if any."""
    for field in ("video", "pose_video"):
        if field in infos:
            return field, infos[field]
    return None


def default_frames(infos: Mapping[str, InputInfo], model_default: int) -> int:
    """The frame count when none is asked: the model's, or less when the input video is shorter (4k+1)."""
    source = frame_source(infos)
    if source is None:
        return model_default
    return max(1, min(model_default, (source[1].frames - 1) // 4 * 4 + 1))


def frame_problems(infos: Mapping[str, InputInfo], frames: int) -> list[str]:
    """Videos shorter than the frame count are refused (longer ones are cut to their first frames)."""
    errors = []
    for field, info in infos.items():
        if info.kind != "video" or info.frames >= frames:
            continue
        spec = INPUTS[field.split("[")[0]]
        most = (info.frames - 1) // 4 * 4 + 1
        errors.append(f"The {spec.label} {info.path or ''} has {info.frames} frames, fewer than the {frames} "
                      f"asked: ask for {most} frames or fewer (--frames {most}), or give a longer video."
                      .replace("  ", " "))
    return errors


def image_size(image: InputInfo, default: tuple[int, int], multiple: int) -> tuple[int, int]:
    """The image's aspect ratio at the model's pixel area (``default`` w x h), rounded to ``multiple``.

    >>> image_size(InputInfo(None, "image", 1000, 1000, 1), (1280, 704), 32)
    (960, 960)
    """
    area = default[0] * default[1]
    aspect = image.width / image.height
    width = max(multiple, round(math.sqrt(area * aspect) / multiple) * multiple)
    height = max(multiple, round(math.sqrt(area / aspect) / multiple) * multiple)
    return width, height


# --------------------------------------------------------------------------- running

def pipeline_class_for(pipe: Any, settings: Any) -> str:
    """The diffusers class this request runs with: the loaded one, or the one built from it."""
    loaded = type(pipe).__name__
    if loaded == "WanPipeline" and getattr(settings, "image", None) is not None:
        return "WanImageToVideoPipeline"    # TI2V-5B from an image (expand_timesteps path)
    if loaded == "WanPipeline" and getattr(settings, "video", None) is not None:
        return "WanVideoToVideoPipeline"
    return loaded


def task_pipeline(pipe: Any, settings: Any, cache: dict[str, Any]) -> Any:
    """``pipe``, or the task's pipeline built from it with ``from_pipe`` (same modules, no second load).

    ``cache`` keeps one per class, so that every image run after the first reuses it.
    """
    name = pipeline_class_for(pipe, settings)
    if name == type(pipe).__name__:
        return pipe
    if cache.get("_base") is not pipe:   # the model was loaded again: build from the new one
        cache.clear()
        cache["_base"] = pipe
    if name not in cache:
        import diffusers
        cache[name] = getattr(diffusers, name).from_pipe(pipe)
    return cache[name]


Emit = Callable[[str, float], None]


def pipeline_kwargs(pipe: Any, settings: Any, emit: Emit | None = None) -> dict[str, Any]:
    """The task's diffusers arguments with every input decoded (videos cut to the frame count).

    ``emit(message, fraction)`` reports reading ("Reading pose video: 45/81 frames").
    Removes ``num_frames`` from nothing: the caller drops it for pipelines that take none
    (see :func:`takes_num_frames`).
    """
    frames = settings.num_frames
    out: dict[str, Any] = {}
    say = emit or (lambda message, fraction: None)
    for field, spec in INPUTS.items():
        value = getattr(settings, field, None)
        if value is None:
            continue
        if spec.kind == "image":
            out[field] = read_image(value)
        elif spec.kind == "images":
            say(f"Reading {spec.label}s", 0.0)
            out[field] = [read_image(v) for v in _paths(value, "images")]
        else:
            label = "control video" if field == "video" and type(pipe).__name__ == "WanVACEPipeline" else spec.label

            def progress(done: int, total: int, label: str = label) -> None:
                say(f"Reading {label}: {done}/{total} frames", done / max(1, total))
            out[field] = read_video(value, limit=frames, progress=progress)
    if type(pipe).__name__ == "WanVACEPipeline":
        for field in ("video", "mask"):
            if field in out:
                out[field] = _resized(out[field], settings.width, settings.height)
    for field in OPTIONS:
        value = getattr(settings, field, None)
        if value is not None:
            out[field] = value
    if type(pipe).__name__ == "WanAnimatePipeline":
        out.setdefault("mode", "animate")
    return out


def encode_steps(pipe: Any, kwargs: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The pipeline's slow input encodings to announce: (its method, the progress message).

    >>> encode_steps(vace_pipe, {"reference_images": [ref], "video": frames})   # doctest: +SKIP
    [('prepare_video_latents', 'Encoding reference images and the control video')]
    """
    name = type(pipe).__name__
    if name == "WanVACEPipeline":
        refs = kwargs.get("reference_images")
        return [("prepare_video_latents", f"Encoding reference images ({len(refs)}) and the control video"
                 if refs else "Encoding the control video")]
    if name == "WanVideoToVideoPipeline":
        return [("prepare_latents", "Encoding the source video")]
    if name == "WanAnimatePipeline":
        return [("prepare_reference_image_latents", "Encoding the character image")]
    return []


def segments(pipe: Any, kwargs: Mapping[str, Any]) -> int:
    """How many segments the pipeline denoises one after the other (Animate), else 1."""
    if type(pipe).__name__ != "WanAnimatePipeline" or not kwargs.get("pose_video"):
        return 1
    from core.run.input_memory import animate_segment_length, animate_segments
    length = animate_segment_length(kwargs.get("segment_frame_length") or 77)
    return animate_segments(len(kwargs["pose_video"]), length)


def takes_num_frames(pipe: Any) -> bool:
    """WanVideoToVideoPipeline and WanAnimatePipeline take their length from the input video."""
    return type(pipe).__name__ not in ("WanVideoToVideoPipeline", "WanAnimatePipeline")


def _resized(frames: list[Any], width: int, height: int) -> list[Any]:
    from PIL import Image
    return [f if f.size == (width, height) else f.resize((width, height), Image.LANCZOS) for f in frames]


def describe(infos: Mapping[str, InputInfo]) -> dict[str, Any]:
    """The inputs for the JSON beside the MP4: path, kind, size, frames, sha256 each."""
    return {field: info.to_dict() for field, info in infos.items()}
