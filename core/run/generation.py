"""What a person asks for (GenerationConfig), checked and completed before any work.

Unset fields take the registry defaults of the detected model; every violation becomes
one sentence with the nearest valid values.

Usage::

    config = GenerationConfig(prompt="A red fox in the snow", num_frames=33, width=832, height=480)
    settings, errors = resolve(config, report)
    if errors:
        print("\\n".join(errors))
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from core.check.registry import ModelRequirements, get_compatibility_registry
from core.check.report import ModelReport
from core.run.input_memory import input_load
from core.run.lora import resolve_loras
from core.run.optimize import OptimizationRequest

IMAGE_TASKS = frozenset({"i2v", "flf2v", "animate"})   # an image is required
OPTIONAL_IMAGE_TASKS = frozenset({"ti2v"})              # an image is optional
FALLBACK = {"size": (832, 480), "frames": 81, "fps": 16, "steps": 50, "guidance": 5.0}


@dataclass(frozen=True)
class GenerationConfig:
    """One generation request, in the seed guide's names. ``None`` means the model's default.

    >>> GenerationConfig(prompt="A beautiful sunset over mountains", num_frames=16, width=1280, height=720)
    GenerationConfig(prompt='A beautiful sunset over mountains', ...)
    """

    prompt: str = ""
    negative_prompt: str | None = None
    num_frames: int | None = None
    width: int | None = None
    height: int | None = None
    num_inference_steps: int | None = None
    guidance_scale: float | None = None
    guidance_scale_2: float | None = None
    seed: int | None = None
    fps: int | None = None
    image: Any = None              # a path or a PIL image (image-to-video, TI2V)
    last_image: Any = None         # FLF2V: the last frame
    # Task inputs, in diffusers' argument names (core.run.tasks says which task takes which):
    video: Any = None              # video-to-video source, or VACE control video (path, frames folder, PIL list)
    mask: Any = None               # VACE: white = generate, black = keep
    reference_images: Any = None   # VACE: a list of images (paths or PIL)
    conditioning_scale: float | None = None   # VACE
    strength: float | None = None  # video-to-video: (0, 1], how much changes
    pose_video: Any = None         # Animate
    face_video: Any = None         # Animate
    background_video: Any = None   # Animate, replace mode
    mask_video: Any = None         # Animate, replace mode
    mode: str | None = None        # Animate: "animate" or "replace"
    segment_frame_length: int | None = None   # Animate
    enable_optimizations: bool = True
    force_chunked_processing: bool = False   # decode the VAE in tiles and slices
    output_path: str | None = None
    loras: tuple[Any, ...] = ()    # LoraChoice(path, strength, expert) or "FILE[:STRENGTH][@high|@low]" (core.run.lora)
    flow_shift: float | None = None   # the scheduler's shift; None: the model's (distill LoRAs give theirs)


@dataclass(frozen=True)
class ResolvedSettings:
    """A GenerationConfig with every value filled in and checked."""

    prompt: str
    negative_prompt: str
    num_frames: int
    width: int
    height: int
    num_inference_steps: int
    guidance_scale: float
    guidance_scale_2: float | None
    seed: int
    fps: int
    image: Any
    last_image: Any
    enable_optimizations: bool
    force_chunked_processing: bool
    output_path: str | None
    video: Any = None
    mask: Any = None
    reference_images: Any = None
    conditioning_scale: float | None = None
    strength: float | None = None
    pose_video: Any = None
    face_video: Any = None
    background_video: Any = None
    mask_video: Any = None
    mode: str | None = None
    segment_frame_length: int | None = None
    inputs: dict[str, Any] = field(default_factory=dict)   # field -> InputInfo (core.run.inputs), checked
    notes: tuple[str, ...] = ()                             # e.g. the size taken from the image
    task: str | None = None                                 # the model's task (what its inputs add to memory)
    loras: tuple[Any, ...] = ()                             # LoraChoice each, checked (core.run.lora)
    flow_shift: float | None = None                         # None: the scheduler's own

    def to_metadata(self) -> dict[str, Any]:
        """The JSON-able settings (images by their source, not their pixels)."""
        from core.run.tasks import INPUTS, describe
        data = {k: v for k, v in asdict(self).items() if k not in ("inputs", "notes", "task", "loras")}
        data["loras"] = [c.to_dict() for c in self.loras]
        for key in INPUTS:
            value = data[key]
            data[key] = None if value is None else (str(value) if isinstance(value, (str, Path)) else "<in memory>")
        data["inputs"] = describe(self.inputs)
        return data


def defaults_for(report: ModelReport) -> ModelRequirements | None:
    """The registry entry whose defaults apply: the report's own, else the closest of its kind."""
    registry = get_compatibility_registry()
    entry = registry.get(report.registry_id) if report.registry_id else None
    if entry is not None:
        return entry
    candidates = [e for e in registry.entries if e.task == report.task and e.layout == "diffusers"]
    same_version = [e for e in candidates if e.wan_version == report.wan_version]
    return (same_version or candidates or [None])[0]


def default_request(report: ModelReport, overrides: Mapping[str, Any] | None = None) -> OptimizationRequest:
    """What a plan is made for when no size is asked: the model's default size, frames and steps.

    >>> default_request(report, {"offload": "model"}).num_frames    # doctest: +SKIP
    121
    """
    entry = defaults_for(report)
    width, height = entry.default_size if entry else FALLBACK["size"]
    return OptimizationRequest(width=width, height=height, num_frames=entry.frames if entry else FALLBACK["frames"],
                               num_inference_steps=entry.steps if entry else FALLBACK["steps"],
                               overrides=dict(overrides or {}))


def request_for(settings: ResolvedSettings, overrides: Mapping[str, Any] | None = None) -> OptimizationRequest:
    """The OptimizationRequest a checked request is planned for (``overrides``: the optimization_config).

    >>> settings, _ = resolve(GenerationConfig(prompt="a fox", width=480, height=320, num_frames=17), report)
    >>> plan = plan_for(report, probe(), request_for(settings, {"offload": "model"}))   # doctest: +SKIP
    """
    return OptimizationRequest(width=settings.width, height=settings.height, num_frames=settings.num_frames,
                               num_inference_steps=settings.num_inference_steps,
                               guidance=settings.guidance_scale > 1, overrides=dict(overrides or {}),
                               inputs=input_load(settings.task, settings) or None)


def size_multiple(report: ModelReport) -> int:
    """Sizes must be multiples of 16, or 32 with the Wan2.2 VAE (TI2V-5B)."""
    return 32 if report.vae_kind == "wan2.2" or report.task == "ti2v" else 16


def _nearest_multiples(value: int, multiple: int) -> str:
    low = max(multiple, value // multiple * multiple)
    high = low + multiple
    return f"{low} or {high}" if low != value else str(low)


def resolve(config: GenerationConfig, report: ModelReport, *, inputs_required: bool = True
            ) -> tuple[ResolvedSettings | None, list[str]]:
    """Fill unset fields from the model's defaults and check everything; (settings, errors).

    ``inputs_required=False`` leaves out "this model needs a pose video" and the like (for a
    memory plan shown before the inputs are chosen).
    """
    from core.run import tasks
    entry = defaults_for(report)
    default_w, default_h = entry.default_size if entry else FALLBACK["size"]
    errors: list[str] = []
    prompt = (config.prompt or "").strip()
    if not prompt:
        errors.append("The prompt is empty: describe the video you want, e.g. \"A red fox running through snow\".")
    inputs, input_errors = tasks.check_inputs(config, report, required=inputs_required)   # files probed, nothing loaded
    multiple = size_multiple(report)
    notes: list[str] = []
    if config.width is None and config.height is None and "image" in inputs and report.task in tasks.IMAGE_SIZED_TASKS:
        default_w, default_h = tasks.image_size(inputs["image"], (default_w, default_h), multiple)
        notes.append(f"Size {default_w}x{default_h}: the starting image's aspect ratio at the model's pixel area.")
    width = config.width if config.width is not None else default_w
    height = config.height if config.height is not None else default_h
    for name, value in (("width", width), ("height", height)):
        if not isinstance(value, int) or value < multiple:
            errors.append(f"The {name} must be a whole number of at least {multiple} pixels, not {value!r}.")
        elif value % multiple:
            errors.append(f"The {name} must be a multiple of {multiple} for this model: "
                          f"use {_nearest_multiples(value, multiple)} instead of {value}.")
    frames = config.num_frames if config.num_frames is not None else tasks.default_frames(
        inputs, entry.frames if entry else FALLBACK["frames"])
    if not isinstance(frames, int) or frames < 1:
        errors.append(f"The number of frames must be a whole number of at least 1, not {frames!r}.")
    elif (frames - 1) % 4:
        low = (frames - 1) // 4 * 4 + 1
        errors.append(f"The number of frames must be 4k+1 (1, 5, 9, ... 81): use {low} or {low + 4} instead of {frames}.")
    steps = config.num_inference_steps if config.num_inference_steps is not None else (
        entry.steps if entry else FALLBACK["steps"])
    if not isinstance(steps, int) or steps < 1:
        errors.append(f"The number of steps must be a whole number of at least 1, not {steps!r}.")
    guidance = config.guidance_scale if config.guidance_scale is not None else (
        entry.guidance if entry else FALLBACK["guidance"])
    guidance_2 = config.guidance_scale_2
    if guidance_2 is None and report.experts >= 2:
        guidance_2 = entry.guidance_2 if entry and entry.guidance_2 is not None else guidance
    for name, value in (("guidance", guidance), ("guidance for the second expert", guidance_2)):
        if value is not None and (not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0):
            errors.append(f"The {name} must be a number of 0 or more, not {value!r}.")
    fps = config.fps if config.fps is not None else (entry.fps if entry else FALLBACK["fps"])
    if not isinstance(fps, int) or not 1 <= fps <= 120:
        errors.append(f"The frame rate must be a whole number from 1 to 120, not {fps!r}.")
    errors += input_errors
    if isinstance(frames, int) and frames >= 1:
        errors += tasks.frame_problems(inputs, frames)
    problem = _output_problem(config.output_path, report.path)   # before loading: core.run.output_rules
    if problem:
        errors.append(problem)
    seed = config.seed if config.seed is not None else 42
    if not isinstance(seed, int) or not 0 <= seed < 2**63:
        errors.append(f"The seed must be a whole number from 0 to {2**63 - 1}, not {seed!r}.")
    loras, lora_errors = resolve_loras(config.loras)   # strengths, files, the same LoRA twice
    errors += lora_errors
    shift = config.flow_shift
    if shift is not None and (not isinstance(shift, (int, float)) or not math.isfinite(shift) or shift <= 0):
        errors.append(f"The scheduler shift must be a number above 0 (e.g. 5), not {shift!r}.")
    if errors:
        return None, errors
    return ResolvedSettings(
        prompt=prompt, negative_prompt=config.negative_prompt or "", num_frames=frames, width=width,
        height=height, num_inference_steps=steps, guidance_scale=float(guidance),
        guidance_scale_2=None if guidance_2 is None else float(guidance_2), seed=seed, fps=fps,
        image=config.image, last_image=config.last_image, enable_optimizations=config.enable_optimizations,
        force_chunked_processing=config.force_chunked_processing, output_path=config.output_path,
        **{name: getattr(config, name) for name in (*tasks.INPUTS, *tasks.OPTIONS) if name not in ("image", "last_image")},
        inputs=inputs, notes=tuple(notes), task=report.task, loras=loras,
        flow_shift=None if shift is None else float(shift)), []


def _output_problem(output: str | None, model: str) -> str | None:
    """Why the MP4 cannot be written at ``output`` (or, when None, into the outputs folder), or None;
    checked before minutes of work."""
    from core.run.output_rules import output_problem, outputs_dir_problem
    if not output:
        from core.config import current
        return outputs_dir_problem(current().outputs_dir, (model,))
    problem = output_problem(output, (model,))
    if problem:
        return problem
    path = Path(output)
    if path.is_dir():
        return f"The output {path} is a folder: give a file name ending in .mp4."
    folder = path.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        return f"The output folder for {path} cannot be created: {folder} is a file."
    if not os.access(folder, os.W_OK):
        return f"The output {path} cannot be written: {folder} is not writable for you."
    return None


@dataclass(frozen=True)
class GenerationResult:
    """What a generation produced (or why it did not)."""

    success: bool
    output_path: str | None = None
    frames: int = 0
    width: int = 0
    height: int = 0
    fps: int = 0
    seconds: dict[str, float] = field(default_factory=dict)   # per stage: encode, denoise, decode, write, total
    seconds_per_step: float | None = None
    peak_ram_mb: float | None = None
    peak_vram_mb: float | None = None
    plan: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    cancelled: bool = False

    @property
    def memory_peak_mb(self) -> float | None:
        """The seed guide's name: GPU peak where a GPU was used, else the process's RAM peak."""
        return self.peak_vram_mb if self.peak_vram_mb is not None else self.peak_ram_mb

    def with_error(self, message: str) -> GenerationResult:
        return replace(self, success=False, errors=[*self.errors, message])
