"""Load a Wan model with its memory plan, and generate video with live progress.

One way through: inspect -> plan -> load -> generate. The plan a person is shown is the
object that is applied (``wrapper.plan is plan``)::

    from core.check.detect import inspect
    from core.run.generation import GenerationConfig, request_for, resolve
    from core.run.hardware import probe
    from core.run.load import load
    from core.run.optimize import plan_for

    report = inspect("/models/Wan2.2-TI2V-5B-Diffusers")
    config = GenerationConfig(prompt="A red fox in the snow", width=480, height=320, num_frames=17)
    settings, errors = resolve(config, report)
    plan = plan_for(report, probe(), request_for(settings, {"offload": "model"}))
    wrapper = load(report, plan, progress=lambda event: print(f"{event.percent:5.1f}% {event.message}"))
    result = wrapper.generate(config, plan=plan)
    print(result.success, result.output_path)

The seed guide's names work on top of it (they plan at the model's default size)::

    wrapper = WanPipelineLoader().load_wan_pipeline("/models/Wan2.2-TI2V-5B-Diffusers",
                                                    progress_callback=lambda m, p: print(f"{p:5.1f}% {m}"))

Progress goes out as :class:`~core.progress.ProgressEvent` (or ``(message, percent)`` to a
seed-style callback). torch and diffusers are imported here, inside the functions that need them.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import json
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from core import __version__
from core.check.components import WEIGHTLESS
from core.check.detect import inspect
from core.check.report import ModelReport
from core.errors import WanError, explain, is_memory_failure
from core.monitor import GENERATION, LOAD, track
from core.progress import AnyCallback, Progress
from core.run.generation import GenerationConfig, GenerationResult, ResolvedSettings, default_request, request_for, resolve
from core.run.hardware import HardwareInfo
from core.run.loadable import ensure_loadable
from core.run.memory_failure import out_of_memory_error
from core.run.optimize import Choice, OptimizationPlan, OptimizationRequest, check_request_fits, plan_for
from core.units import format_bytes

# Fewer allocator gaps on the GPU (the caching allocator reserved 1.3-1.4x its peaks in our
# calibration runs); set before torch first touches CUDA, and only if the user has not.
os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")

ProgressCallback = AnyCallback   # (event) or the seed's (message, percent); see core.progress
TORCH_DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
# A generation's own 0-100: where each stage lands (the caller may map it onto a wider job).
ENCODE_AT, DENOISE, DECODE_AT, WRITE = 2.0, (5.0, 90.0), 91.0, (97.0, 100.0)
EXPERTS = ("high-noise", "low-noise")


def _progress(progress: AnyCallback, progress_callback: AnyCallback = None) -> Progress:
    """One Progress from the new ``progress=`` or the old ``progress_callback=`` argument."""
    return Progress(progress if progress is not None else progress_callback)


def _torch_dtype(name: str) -> Any:
    import torch
    return getattr(torch, TORCH_DTYPES[name])


def _is_out_of_memory(exc: BaseException) -> bool:
    # Every wording: CUDA OOM, the CPU allocator, MemoryError, bad_alloc, "failed to map segment".
    return is_memory_failure(exc)


_gb = format_bytes


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60}m {seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class _Cancelled(Exception):
    """Raised from the step callback to stop the pipeline before its VAE decode."""


@dataclass
class _StepClock:
    """The denoising loop's step callback: a "denoise" event per step (expert, s/step, ETA), and Cancel."""

    steps: int
    boundary_timestep: float | None
    progress: Progress                  # the denoising span: 0-100 over the steps
    cancel: threading.Event | None
    start: float = 0.0
    last: float = 0.0
    done: int = 0
    ram_peak: float = 0.0
    guard: Any = None                   # core.run.guard.FiniteGuard: one finite check per step
    segments: int = 1                   # Animate denoises its segments one after the other
    segment: int = 1
    label: str = ""                     # e.g. "Calibrating MagCache · "

    def __call__(self, pipe: Any, i: int, t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        now = time.perf_counter()
        if self.segments > 1 and i == 0 and self.done > 0:
            self.segment = min(self.segments, self.segment + 1)
        self.done = (self.segment - 1) * self.steps + i + 1
        total = self.steps * self.segments
        per_step = (now - self.start) / self.done
        expert = None
        if self.boundary_timestep is not None:
            expert = EXPERTS[0] if float(t) >= self.boundary_timestep else EXPERTS[1]
        if self.guard is not None:
            self.guard.check_step(self.done, kwargs.get("latents"), expert)
        eta = per_step * (total - self.done)
        said = f" · {expert} expert" if expert else ""
        where = self.label + (f"Segment {self.segment} of {self.segments} · " if self.segments > 1 else "")
        self.progress.emit("denoise", f"{where}Step {i + 1}/{self.steps}{said} · {per_step:.2f} s/step · "
                           f"ETA {_duration(eta)}", 100 * self.done / total, step=i + 1,
                           steps=self.steps, expert=expert, seconds_per_step=per_step, eta_seconds=eta)
        self.ram_peak = max(self.ram_peak, _rss_mb())
        self.last = now
        if self.cancel is not None and self.cancel.is_set() and self.done < total:
            pipe._interrupt = True
            raise _Cancelled()
        return kwargs


def _rss_mb() -> float:
    import psutil
    return psutil.Process().memory_info().rss / 2**20


class WanPipelineWrapper:
    """A loaded Wan pipeline, its memory plan and the Model Check report it was loaded from.

    ``plan`` is the plan in force: the one it was loaded with, until a generation for another
    size (or the retry after running out of memory) replaces it with another plan object.
    """

    def __init__(self, pipeline: Any, plan: OptimizationPlan, report: ModelReport, load_seconds: float,
                 hardware: HardwareInfo | None = None) -> None:
        self.pipeline = pipeline
        self.plan = plan
        self.report = report
        self.load_seconds = load_seconds
        self.hardware = hardware if hardware is not None else plan.hardware
        self._lock = threading.Lock()
        self._placed: tuple[str, bool] | None = None  # placement hooks in force (applied once)
        self._task_pipes: dict[str, Any] = {}          # from_pipe pipelines of other tasks (core.run.tasks)
        self._guard_calls: list[Any] = []
        self._loras: Any = None                        # core.run.lora.LoraState: the LoRAs on the pipeline now
        self.offload_folder: Any = None                # core.run.disk_offload.OffloadFolder: weights on disk

    # --- the memory plan ---------------------------------------------------------------

    def can_apply(self, plan: OptimizationPlan) -> bool:
        """Whether ``plan`` can run on this loaded pipeline (same number formats, not another spread
        over GPUs); when not, the model must be loaded again with it."""
        current = self.plan
        return (plan.precision.value == current.precision.value
                and plan.vae_precision.value == current.vae_precision.value
                and plan.device == current.device
                and (plan.placement.value == "disk_offload") == (current.placement.value == "disk_offload")
                and (plan.placement.value == "balanced") == (current.placement.value == "balanced")
                and (plan.placement.value != "balanced" or plan.device_map == current.device_map))

    def _apply_plan(self, plan: OptimizationPlan) -> None:
        """Place the components as the plan says (on a fresh pipeline or after removing hooks)."""
        pipe = self.pipeline
        placement = plan.placement.value
        if plan.device == "cuda" and (placement, plan.text_encoder_on_cpu.value) != self._placed:
            excluded = ["text_encoder"] if plan.text_encoder_on_cpu.value else []
            if placement == "all_on_device":
                for name, module in pipe.components.items():
                    if hasattr(module, "to") and name not in excluded and hasattr(module, "parameters"):
                        module.to("cuda")
            elif placement == "model_offload":
                pipe._exclude_from_cpu_offload = list(getattr(pipe, "_exclude_from_cpu_offload", [])) + excluded
                pipe.enable_model_cpu_offload()
            elif placement == "sequential_offload":
                pipe._exclude_from_cpu_offload = list(getattr(pipe, "_exclude_from_cpu_offload", [])) + excluded
                pipe.enable_sequential_cpu_offload()
            elif placement == "group_offload":
                self._group_offload(plan, excluded)
            elif placement == "disk_offload":   # the rest was written to disk as it loaded (_load_components)
                from core.run.disk_offload import offloaded
                for name, module in pipe.components.items():
                    if not offloaded(name) and hasattr(module, "to") and hasattr(module, "parameters"):
                        module.to("cuda")
            self._placed = (placement, plan.text_encoder_on_cpu.value)
        vae = getattr(pipe, "vae", None)
        if vae is not None:
            (vae.enable_tiling if plan.vae_tiling.value else vae.disable_tiling)()
            (vae.enable_slicing if plan.vae_slicing.value else vae.disable_slicing)()
        # attention kernel, step caches, compile: set for each run by core.run.speed_run
        self.plan = plan

    def _group_offload(self, plan: OptimizationPlan, excluded: list[str]) -> None:
        import torch
        from diffusers.hooks import apply_group_offloading
        onload, offload = torch.device("cuda"), torch.device("cpu")
        for name, module in self.pipeline.components.items():
            if name in excluded or not isinstance(module, torch.nn.Module):
                continue
            if name.startswith("transformer"):
                module.enable_group_offload(onload_device=onload, offload_device=offload,
                                            offload_type=plan.group_offload_type or "block_level",
                                            num_blocks_per_group=1, use_stream=True)
            elif name == "vae":
                module.to(onload)
            else:
                apply_group_offloading(module, onload_device=onload, offload_device=offload,
                                       offload_type="block_level", num_blocks_per_group=1)

    def _reset_placement(self) -> None:
        """Undo offload hooks and move everything back to the CPU (before a stronger plan)."""
        pipe = self.pipeline
        if hasattr(pipe, "remove_all_hooks"):
            pipe.remove_all_hooks()
        pipe.to("cpu")
        self._placed = None
        _free_memory()

    # --- generation --------------------------------------------------------------------

    def generate(self, config: GenerationConfig, plan: OptimizationPlan | None = None, progress: AnyCallback = None,
                 cancel: threading.Event | None = None, *, progress_callback: AnyCallback = None
                 ) -> GenerationResult:
        """Generate one video and write it as an MP4; never raises for a problem a person can act on.

        ``plan``: the plan made for this request (the one shown); None runs with ``self.plan``
        when it was made for this size, frames and steps, else with a plan made now for them.
        ``progress`` gets ProgressEvents ("encode", "denoise" per step, "decode", "write",
        "done"), or ``(message, percent)`` for a seed-style callback (``progress_callback=``
        is the seed's name for it). ``cancel`` (a threading.Event) stops after the current
        step and writes nothing. Problems are in ``result.errors``; ``result.output_path`` is
        the MP4. Every call, failed or cancelled ones included, is recorded in the
        performance history (core.monitor).
        """
        plan, progress = _seed_positional(plan, progress)
        with _recorded_generation(self, config) as op:
            result = self._generate_video(config, plan, _progress(progress, progress_callback), cancel)
            result = _record_result(op, result)
        return result

    def _generate_video(self, config: GenerationConfig, plan: OptimizationPlan | None, progress: Progress,
                        cancel: threading.Event | None) -> GenerationResult:
        frames, result = self._frames(config, plan, progress, cancel)
        if not result.success:
            if config.output_path:                   # a claimed automatic name is free again
                from core.run.output_claim import release
                release(Path(config.output_path))
            return result
        from core.run.video import write_mp4
        output_path = Path(config.output_path) if config.output_path else _default_output(
            result.metadata["prompt"], result.metadata["seed"])
        start = time.perf_counter()
        writing = progress.span(*WRITE)
        try:
            write_mp4(frames, output_path, result.fps, result.metadata,
                      progress_callback=lambda message, percent: writing.emit("write", message, percent))
        except WanError as err:
            return result.with_error(f"{err.message} {err.remedy}".strip())
        seconds = dict(result.seconds, write=time.perf_counter() - start)
        seconds["total"] = seconds["total"] + seconds["write"]
        progress.emit("done", f"Done: {output_path}", 100)
        return replace(result, output_path=str(output_path), seconds=seconds)

    def generate_frames(self, config: GenerationConfig, plan: OptimizationPlan | None = None,
                        progress: AnyCallback = None, cancel: threading.Event | None = None, *,
                        progress_callback: AnyCallback = None) -> tuple[Any, GenerationResult]:
        """Generate the frames ([F, H, W, 3] floats in 0..1) without writing a file: (frames, result).

        Arguments as :meth:`generate`. Validation, the memory plan for this request, progress,
        cancel and the one retry with a stronger plan after running out of memory all happen
        here. Every call is recorded in the performance history (core.monitor).
        """
        plan, progress = _seed_positional(plan, progress)
        with _recorded_generation(self, config) as op:
            frames, result = self._frames(config, plan, _progress(progress, progress_callback), cancel)
            result = _record_result(op, result)
        return frames, result

    def _frames(self, config: GenerationConfig, plan: OptimizationPlan | None, progress: Progress,
                cancel: threading.Event | None) -> tuple[Any, GenerationResult]:
        settings, errors = resolve(config, self.report)
        if errors:
            return None, GenerationResult(success=False, errors=errors)
        if not self._lock.acquire(blocking=False):
            return None, GenerationResult(success=False, errors=[
                "A generation is already running with this model; wait for it to finish or cancel it."])
        try:
            return self._generate_frames(settings, plan, progress, cancel)
        finally:
            self._lock.release()

    def _generate_frames(self, s: ResolvedSettings, plan: OptimizationPlan | None, progress: Progress,
                         cancel: threading.Event | None) -> tuple[Any, GenerationResult]:
        warnings: list[str] = []
        plan = self._plan_for_settings(s, plan)
        if not plan.fits:
            return None, GenerationResult(success=False, plan=plan.to_dict(), errors=[
                plan.refusal or "This request does not fit this machine."])
        if s.loras and plan.placement.value == "disk_offload":
            return None, GenerationResult(success=False, plan=plan.to_dict(), errors=[
                "LoRAs cannot be applied while the model's weights are offloaded to disk (diffusers would write the "
                "adapters beside stale block files). Generate without the LoRAs, or free RAM (or use a smaller "
                "GGUF model) so that the plan keeps the weights in memory."])
        self._use(plan)
        from core.run.lora import apply_loras, should_fuse
        try:   # exactly this run's LoRAs, per expert; the last run's come off first (core.run.lora)
            self._loras = apply_loras(self.pipeline, s.loras, self._loras, fuse=should_fuse(plan))
            warnings.extend(self._loras.notes)
        except WanError as err:
            return None, GenerationResult(success=False, errors=[str(err)], plan=plan.to_dict())
        from core.run.guard import NonFiniteStep
        non_finite: dict[str, Any] | None = None
        for attempt in (1, 2):
            try:
                frames, result = self._render(s, progress, cancel, warnings)
                if non_finite is not None:  # the failed attempt, its cause and the retry, for the history
                    result = replace(result, metadata={**result.metadata, "non_finite": non_finite})
                return frames, result
            except NonFiniteStep as failure:
                from core.run.nonfinite import respond
                outcome = respond(self, s, failure, self._guard_calls, attempt, progress, warnings)
                if outcome.result is not None:
                    return None, outcome.result
                non_finite = outcome.note
                continue
            except _Cancelled:
                return None, GenerationResult(success=False, cancelled=True, warnings=warnings,
                                              plan=self.plan.to_dict(),
                                              errors=["Cancelled; no video was written."])
            except Exception as exc:  # noqa: BLE001 - every failure becomes a sentence
                if not _is_out_of_memory(exc):
                    err = explain(exc)
                    return None, GenerationResult(success=False, errors=[f"{err.message} {err.remedy}".strip()],
                                                  warnings=warnings, metadata={"details": err.details})
                _free_memory()
                stronger = self._stronger_plan() if attempt == 1 else None
                if stronger is None:
                    placement = self.plan.placement.value.replace("_", " ")
                    said = out_of_memory_error(self.plan, exc=exc).message.split(": ", 1)[-1]
                    return None, GenerationResult(success=False, warnings=warnings, plan=self.plan.to_dict(), errors=[
                        f"Out of memory at {s.width}x{s.height} with {s.num_frames} frames"
                        f"{' even with ' + placement if placement else ''}: {said} "
                        f"Try {_smaller(s)}, or close other programs."])
                warnings.append(f"Ran out of memory with {self.plan.placement.value.replace('_', ' ')}; "
                                f"retried with {stronger.placement.value.replace('_', ' ')}.")
                progress.emit("plan", warnings[-1], 0)
                self._use(stronger)             # a new plan object replaces the one in force
        raise AssertionError("unreachable")

    def reload(self, plan: OptimizationPlan) -> None:
        """Load the model again from its folder with ``plan`` (another precision; drops every hook)."""
        self.pipeline = None
        self._placed = None
        self.release_offload_folder()
        _free_memory()
        fresh = _load(self.report, plan, Progress(None), False, refuse_unfit=True)
        self.pipeline, self._placed, self.plan = fresh.pipeline, fresh._placed, fresh.plan
        self.offload_folder, fresh.offload_folder = fresh.offload_folder, None

    def release_offload_folder(self) -> None:
        """Delete the weights this pipeline wrote to disk (``offload: disk``); it cannot run after this."""
        if self.offload_folder is not None:
            self.offload_folder.remove()
            self.offload_folder = None

    def __del__(self) -> None:
        if hasattr(self, "offload_folder"):    # absent when __init__ failed
            self.release_offload_folder()

    def _plan_for_settings(self, s: ResolvedSettings, plan: OptimizationPlan | None) -> OptimizationPlan:
        """The plan this request runs with: the one given, else the plan in force when it was made
        for this request, else a new plan for it (the only place a generation plans)."""
        if plan is None:
            plan = self.plan
            wanted = request_for(s, plan.request.overrides)
            if s.enable_optimizations and plan.request != wanted:
                plan = plan_for(self.report, self._hardware(), wanted)
        if s.force_chunked_processing and not (plan.vae_tiling.value and plan.vae_slicing.value):
            plan = replace(plan, vae_tiling=Choice(True, "VAE decoded in tiles (you asked for chunked processing)."),
                           vae_slicing=Choice(True, "VAE decoded one video at a time (you asked for chunked "
                                                    "processing)."))
        return plan

    def _use(self, plan: OptimizationPlan) -> None:
        """Put ``plan`` in force (its placement, tiling, attention) unless it already is."""
        if plan is self.plan and self._placed is not None:
            return
        if (plan.placement.value == "disk_offload") != (self.offload_folder is not None):
            self.reload(plan)   # weights written to disk cannot come back into the modules, nor go there later
            self._apply_plan(plan)
            return
        if self._placed is not None and (plan.placement.value, plan.text_encoder_on_cpu.value) != self._placed:
            self._reset_placement()
        self._apply_plan(plan)

    def _hardware(self) -> HardwareInfo:
        """The machine the plans are made for (probed only when no plan carried it)."""
        if self.hardware is None:
            from core.run.hardware import probe
            self.hardware = probe(use_torch=True)
        return self.hardware

    def _stronger_plan(self) -> OptimizationPlan | None:
        from core.run.optimize import stronger_plan
        return stronger_plan(self.plan, self.report, self._hardware())

    def _render(self, s: ResolvedSettings, progress: Progress, cancel: threading.Event | None,
                warnings: list[str]) -> tuple[Any, GenerationResult]:
        import torch

        from core.run.tasks import encode_steps, pipeline_kwargs, segments, takes_num_frames, task_pipeline
        pipe = task_pipeline(self.pipeline, s, self._task_pipes)   # e.g. TI2V + image: from_pipe, no second load
        start = time.perf_counter()
        cuda = torch.cuda.is_available() and self.plan.device == "cuda"
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        boundary = None
        if getattr(pipe.config, "boundary_ratio", None) is not None and getattr(pipe, "transformer_2", None) is not None:
            boundary = pipe.config.boundary_ratio * pipe.scheduler.config.num_train_timesteps
        from core.run.guard import FiniteGuard
        guard = FiniteGuard(pipe, s.num_inference_steps)
        self._guard_calls = guard.calls    # the failing step's transformer calls, for the cause finder
        clock = _StepClock(s.num_inference_steps, boundary, progress.span(*DENOISE), cancel, guard=guard)
        kwargs: dict[str, Any] = dict(
            prompt=s.prompt, negative_prompt=s.negative_prompt, height=s.height, width=s.width,
            num_frames=s.num_frames, num_inference_steps=s.num_inference_steps, guidance_scale=s.guidance_scale,
            generator=torch.Generator(device="cpu").manual_seed(s.seed), output_type="np",
            callback_on_step_end=clock)
        if s.guidance_scale_2 is not None and getattr(pipe, "transformer_2", None) is not None:
            kwargs["guidance_scale_2"] = s.guidance_scale_2
        kwargs.update(pipeline_kwargs(pipe, s, lambda message, done: progress.emit("inputs", message, ENCODE_AT * done)))
        clock.segments = segments(pipe, kwargs)     # Animate: "Segment 2 of 3 · Step 4/20"
        if not takes_num_frames(pipe):   # video-to-video and Animate: the (cut) input video sets the length
            del kwargs["num_frames"]
        if self.plan.text_encoder_on_cpu.value and cuda:
            kwargs.update(self._encode_on_cpu(s))
        pipe.set_progress_bar_config(disable=True)
        stages = _StageTimer(progress)
        clock.start = time.perf_counter()

        def encoded() -> None:  # denoising starts when the prompt is encoded
            clock.start = time.perf_counter()

        from core.run.decode_progress import decode_progress
        from core.run.scheduler_shift import shifted_scheduler
        from core.run.speed_run import speed_run
        with stages.wrap(pipe, "encode_prompt", "encode", "Encoding the prompt", ENCODE_AT, after=encoded), \
                decode_progress(pipe.vae, progress.span(DECODE_AT, WRITE[0])), \
                stages.wrap(pipe.vae, "decode", "decode", "Decoding the video (VAE)", DECODE_AT), guard.watching(), \
                contextlib.ExitStack() as inputs, \
                speed_run(pipe, self.plan.speed, s.num_inference_steps, self.report, warnings) as speed, \
                shifted_scheduler(pipe, s.flow_shift) as shift_note:   # a distill LoRA's shift, this run only
            if shift_note:
                warnings.append(shift_note)
            for method, message in encode_steps(pipe, kwargs):   # "Encoding reference images ..."
                inputs.enter_context(stages.wrap(pipe, method, "inputs", message, ENCODE_AT, after=encoded))
            clock.label = "Calibrating MagCache · " if speed.calibrating else ""
            frames = pipe(**kwargs).frames[0]
        speed.observe(frames, s.seed, s.prompt)    # how far a preset's frames move (Performance tab)
        guard.check_frames(frames)        # before anything is written
        seconds = dict(stages.seconds, denoise=max(0.0, (clock.last or clock.start) - clock.start),
                       total=time.perf_counter() - start)
        metadata = {
            "app": f"Wan Compat {__version__}", "model": self.report.registry_id or Path(self.report.path).name,
            "model_path": self.report.path, "pipeline": type(pipe).__name__, **s.to_metadata(),
            "plan": self.plan.to_dict(), "gpus": getattr(self.plan.request, "ranks", 1),   # --gpus N: N ranks
            "speed": speed.summary(),        # preset, cache, transformer calls (core.run.speed_run)
            "loras": self._loras.to_metadata() if self._loras else [],   # file, strength, size, fingerprint
        }
        from core.run.lora import lora_label
        plan_dict = {**self.plan.to_dict(), **({"loras": lora_label(self._loras)} if lora_label(self._loras) else {})}
        return frames, GenerationResult(
            success=True, frames=int(frames.shape[0]), width=s.width, height=s.height, fps=s.fps, seconds=seconds,
            seconds_per_step=seconds["denoise"] / max(1, clock.done), peak_ram_mb=max(clock.ram_peak, _rss_mb()),
            peak_vram_mb=torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
            plan=plan_dict, metadata=metadata, warnings=warnings)

    def _encode_on_cpu(self, s: ResolvedSettings) -> dict[str, Any]:
        """Run the text encoder on the CPU and hand the embeddings to the GPU pipeline."""
        import torch
        pipe = self.pipeline
        positive, negative = pipe.encode_prompt(prompt=s.prompt, negative_prompt=s.negative_prompt,
                                                do_classifier_free_guidance=s.guidance_scale > 1.0,
                                                device=torch.device("cpu"))
        dtype = pipe.transformer.dtype
        out = {"prompt": None, "negative_prompt": None, "prompt_embeds": positive.to("cuda", dtype)}
        if negative is not None:
            out["negative_prompt_embeds"] = negative.to("cuda", dtype)
        return out


class _StageTimer:
    """Times a pipeline method (encode_prompt, vae.decode) and announces its stage, without changing it."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.seconds: dict[str, float] = {}

    def wrap(self, owner: Any, method: str, stage: str, message: str, percent: float,
             after: Callable[[], None] | None = None) -> Any:
        timer = self

        class _Wrapped:
            def __enter__(self) -> None:
                self.own = vars(owner).get(method)
                original = getattr(owner, method)

                def timed(*args: Any, **kwargs: Any) -> Any:
                    timer.progress.emit(stage, message, percent)
                    t0 = time.perf_counter()
                    try:
                        return original(*args, **kwargs)
                    finally:
                        timer.seconds[stage] = timer.seconds.get(stage, 0.0) + time.perf_counter() - t0
                        if after is not None:
                            after()
                setattr(owner, method, timed)

            def __exit__(self, *exc: Any) -> None:
                if self.own is not None:
                    setattr(owner, method, self.own)  # the instance's own attribute, as it was
                else:
                    delattr(owner, method)  # back to the class's method

        return _Wrapped()


def _seed_positional(plan: Any, progress: AnyCallback) -> tuple[OptimizationPlan | None, AnyCallback]:
    """The seed's ``generate(config, progress_callback)``: a callable in the plan's place is the callback."""
    if plan is not None and not isinstance(plan, OptimizationPlan) and callable(plan) and progress is None:
        return None, plan
    return plan, progress


def _default_output(prompt: str, seed: int, outputs_dir: Path | None = None) -> Path:
    from core.config import current
    from core.run.video import default_output_path
    return default_output_path(Path(outputs_dir or current().outputs_dir), prompt, seed)


def _smaller(s: ResolvedSettings) -> str:
    fewer = max(1, (s.num_frames - 1) // 2 // 4 * 4 + 1)
    return f"{fewer} frames or a smaller size such as {max(16, s.width // 2 // 16 * 16)}x{max(16, s.height // 2 // 16 * 16)}"


def _recorded_generation(wrapper: WanPipelineWrapper, config: GenerationConfig) -> Any:
    """core.monitor's ``track`` for one generation, with what is known before it runs."""
    return track(GENERATION, report=wrapper.report, plan=wrapper.plan, hardware=wrapper.hardware,
                 width=config.width, height=config.height, frames=config.num_frames,
                 steps=config.num_inference_steps)


def _record_result(op: Any, result: GenerationResult) -> GenerationResult:
    """Give the monitor a generation's own stage timings; a failure or cancel is success False.

    Returns the result with the one peak RAM both report: the larger of the monitor's samples
    and the run's own (per step), so the result card and the Performance tab say the same."""
    sampled = op.ram_peak_mb() if hasattr(op, "ram_peak_mb") else None
    if sampled is not None or result.peak_ram_mb is not None:
        result = replace(result, peak_ram_mb=max(x for x in (sampled, result.peak_ram_mb) if x is not None))
        op.set(memory_peak_mb=result.peak_ram_mb)
    if result.peak_vram_mb is not None:
        op.set(gpu_memory_peak_mb=result.peak_vram_mb)
    meta = result.metadata
    op.set(stage_seconds=result.seconds, seconds_per_step=result.seconds_per_step, cancelled=result.cancelled,
           error="; ".join(result.errors)[:500] or None)
    if result.plan:
        op.set(plan=result.plan)
    if meta.get("non_finite"):
        op.set(non_finite=meta["non_finite"])
    if meta.get("speed"):
        op.set(speed=meta["speed"])
    if meta.get("loras"):      # file, strength, expert, size, fingerprint of each LoRA (core.run.lora)
        op.set(loras=meta["loras"])
    if result.width and result.height:
        op.set(width=result.width, height=result.height, frames=meta.get("num_frames") or result.frames)
    if meta.get("num_inference_steps"):
        op.set(steps=meta["num_inference_steps"])
    op.success = result.success
    return result


def _free_memory() -> None:
    gc.collect()
    try:
        import torch
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # noqa: BLE001 - freeing memory is best effort
        pass


def plan_for_load(report: ModelReport, hardware: HardwareInfo | None = None,
                  request: OptimizationRequest | None = None, overrides: dict[str, Any] | None = None,
                  apply_optimizations: bool = True) -> OptimizationPlan:
    """The plan a load without a plan uses: for ``request``, else at the model's default size.

    ``overrides`` (the optimization_config) are added to the request's. Raises WanError when
    the plan does not fit (unless ``apply_optimizations`` is False: then everything goes on
    the device, as asked). ``hardware`` defaults to :func:`~core.run.hardware.probe` with torch.

    >>> plan = plan_for_load(report, hardware, request_for(settings, {"offload": "model"}))  # doctest: +SKIP
    >>> wrapper = load(report, plan)                                                          # doctest: +SKIP
    """
    extra = dict(overrides or {})
    if not apply_optimizations:
        extra["placement"] = "none"
    request = (replace(request, overrides={**request.overrides, **extra}) if request is not None
               else default_request(report, extra))
    if hardware is None:
        import torch  # noqa: F401 - so that probe() can ask torch about CUDA

        from core.run.hardware import probe
        hardware = probe(use_torch=True)
    plan = plan_for(report, hardware, request)
    if apply_optimizations:
        check_request_fits(plan)
    return plan


def load(report: ModelReport, plan: OptimizationPlan, progress: AnyCallback = None,
         trust_remote_code: bool = False) -> WanPipelineWrapper:
    """Load the checked model with exactly ``plan`` (``wrapper.plan is plan``); no planning here.

    Refuses (before reading any weight) a model that cannot be loaded (see
    :mod:`core.run.loadable`) and a plan that does not fit (WanError with the plan's refusal
    and remedy). ``progress`` gets "check" and "load" ProgressEvents (0-100), or ``(message,
    percent)``. Every call, failed ones included, is recorded in the performance history.

    >>> wrapper = load(inspect(path), plan, progress=lambda e: print(e.percent, e.message))  # doctest: +SKIP
    >>> wrapper.plan is plan                                                                  # doctest: +SKIP
    True
    """
    with track(LOAD, model=Path(report.path).name) as op:
        wrapper = _load(report, plan, Progress(progress), trust_remote_code, refuse_unfit=True)
        op.set(report=wrapper.report, plan=wrapper.plan, hardware=wrapper.hardware,
               stage_seconds={"total": wrapper.load_seconds})
    return wrapper


def _load(report: ModelReport, plan: OptimizationPlan, progress: Progress, trust_remote_code: bool,
          refuse_unfit: bool) -> WanPipelineWrapper:
    start = time.perf_counter()
    progress.emit("check", "Checking that the model can be loaded", 0)
    ensure_loadable(report, trust_remote_code)
    if refuse_unfit:
        check_request_fits(plan)
    if trust_remote_code and not report.custom_code:
        progress.emit("check", "trust_remote_code is not needed for Wan models and was ignored", 1)
    where = plan.placement.value.replace("_", " ")
    progress.emit("load", f"Loading the model: {where}, {plan.precision.value}", 2)
    if plan.device == "cuda":
        _require_cuda()
    from core.run.pipelines import PipelineManager
    pipeline_class = PipelineManager().select_pipeline_class(report)
    disk = _offload_folder(report, plan)
    try:
        if plan.placement.value == "balanced":
            pipe = WanPipelineLoader._load_balanced(report, pipeline_class, plan, progress)
        else:
            pipe = WanPipelineLoader._load_components(report, pipeline_class, plan, progress, disk)
    except BaseException as exc:
        if disk is not None:
            disk.remove()
        if not isinstance(exc, Exception):
            raise
        if not Path(report.path).exists():   # else Hugging Face says "Repo id must be in the form ..."
            raise WanError(f"The model folder {report.path} disappeared while it was loading (moved, renamed "
                           "or deleted).", "Put it back, or choose the model again, then load it again.",
                           str(exc)) from exc
        raise
    wrapper = WanPipelineWrapper(pipe, plan, report, 0.0)
    wrapper.offload_folder = disk
    progress.emit("load", f"Applying the memory plan: {where}, {plan.precision.value}", 97)
    wrapper._apply_plan(plan)
    wrapper.load_seconds = time.perf_counter() - start
    progress.emit("load", f"Loaded in {wrapper.load_seconds:.1f} s", 100)
    return wrapper


def _offload_folder(report: ModelReport, plan: OptimizationPlan) -> Any:
    """A fresh folder under config.yaml's offload_dir for a disk-offload plan (None otherwise)."""
    if plan.placement.value != "disk_offload":
        return None
    from core.run.disk_offload import OffloadFolder, offload_root
    root = offload_root()
    try:
        return OffloadFolder.create(root, Path(report.path).name)
    except OSError as exc:
        raise WanError(f"The memory plan writes the weights to disk, but the offload folder {root} cannot be "
                       f"created or written: {exc.strerror or exc}.",
                       "Set offload_dir in config.yaml to a folder on a disk with free space that you may write.",
                       str(exc)) from exc


def _write_to_disk(module: Any, name: str, plan: OptimizationPlan, disk: Any, progress: Progress,
                   percent: float) -> None:
    """Write one loaded component into the offload folder now, so RAM never holds two of them."""
    from core.run.disk_offload import offload_to_disk
    progress.emit("load", f"Writing {name} to disk (offload folder {disk.path})", percent)
    try:
        offload_to_disk(module, name, plan.device, disk, plan.group_offload_type)
    except Exception as exc:  # noqa: BLE001 - OSError, or safetensors' own error for a full disk
        from core.atomic import free_bytes
        said = getattr(exc, "strerror", None) or str(exc).splitlines()[0][:200]
        raise WanError(f"Writing {name} to the offload folder {disk.path.parent} failed: {said} (the disk has "
                       f"{_gb(free_bytes(disk.path))} free).",
                       "Free disk space there, or set offload_dir in config.yaml to a folder on a larger disk.",
                       str(exc)) from exc


def _moves_at_once(plan: OptimizationPlan, name: str) -> bool:
    """All on the GPU: each component goes to it as soon as it is loaded, so RAM holds one at a time
    (both A14B experts never sit in RAM together); the plan's RAM estimate counts on it."""
    return (plan.device == "cuda" and plan.placement.value == "all_on_device" and name not in WEIGHTLESS
            and not (name == "text_encoder" and plan.text_encoder_on_cpu.value))


def _require_cuda() -> None:
    """A plan for the GPU needs a torch that can use it (the plan may come from NVML alone)."""
    import torch
    if not torch.cuda.is_available():
        raise WanError("The memory plan puts the model on the GPU, but this PyTorch cannot use the GPU.",
                       "Run `python -m core doctor`: it says which PyTorch build your driver needs.")


class WanPipelineLoader:
    """Loads Wan models component by component, with a memory plan for this machine (seed names)."""

    def load_wan_pipeline(self, model_path: str | os.PathLike[str], trust_remote_code: bool = False,
                          apply_optimizations: bool = True, optimization_config: dict[str, Any] | None = None,
                          progress_callback: ProgressCallback = None, *,
                          request: OptimizationRequest | None = None,
                          hardware: HardwareInfo | None = None) -> WanPipelineWrapper:
        """inspect -> plan (for ``request``, else the model's defaults) -> :func:`load`.

        Raises ValueError ("... not a Wan architecture ...") for other models, and WanError
        with a plain message and remedy for anything else that stops loading. Every call,
        failed ones included, is recorded in the performance history (core.monitor).
        """
        progress = Progress(progress_callback)
        with track(LOAD, model=Path(str(model_path)).name) as op:
            progress.emit("check", "Checking the model", 0)
            try:
                report = inspect(model_path)
            except OSError as exc:
                raise explain(exc) from exc
            ensure_loadable(report, trust_remote_code)
            plan = plan_for_load(report, hardware, request, optimization_config, apply_optimizations)
            wrapper = _load(report, plan, progress, trust_remote_code, refuse_unfit=False)
            op.set(report=wrapper.report, plan=wrapper.plan, hardware=wrapper.hardware,
                   stage_seconds={"total": wrapper.load_seconds})
        return wrapper

    @staticmethod
    def _load_components(report: ModelReport, pipeline_class: str, plan: OptimizationPlan,
                         progress: Progress, disk: Any = None) -> Any:
        """Load each component from its folder (one "load" event each), then the pipeline.

        With ``disk`` (an OffloadFolder) each offloaded component is written there as soon as it is loaded."""
        import diffusers
        import transformers
        # Our progress messages replace the libraries' own bars and notices.
        diffusers.utils.logging.disable_progress_bar()
        transformers.utils.logging.disable_progress_bar()
        transformers.utils.logging.set_verbosity_error()
        folder = Path(report.path)
        index = json.loads((folder / "model_index.json").read_text())
        names = [k for k, v in index.items() if not k.startswith("_") and isinstance(v, list) and v[0]]
        total = sum(c.size_bytes for c in report.components) or 1
        done = 0
        loaded: dict[str, Any] = {}
        for name in names:
            library, class_name = index[name]
            comp = report.component(name)
            size = comp.size_bytes if comp else 0
            progress.emit("load", f"Loading {name} ({class_name}, {_gb(size)})", 3 + 90 * done / total)
            t0 = time.perf_counter()
            try:
                cls = getattr(importlib.import_module(library), class_name)
                kwargs: dict[str, Any] = {}
                if name not in WEIGHTLESS:
                    precision = plan.vae_precision.value if name == "vae" else plan.precision.value
                    kwargs["torch_dtype"] = _torch_dtype(precision)
                from core.run.quantized import load_quantized_transformer, quantized_file
                found = quantized_file(folder / name) if name.startswith("transformer") else None
                if found is not None:   # GGUF / fp8 kept quantized, with the folder's own config
                    loaded[name] = load_quantized_transformer(found, plan.precision.value)
                else:
                    loaded[name] = cls.from_pretrained(folder / name, **kwargs)
                if _moves_at_once(plan, name) and hasattr(loaded[name], "to"):   # one part in RAM at a time
                    loaded[name].to("cuda")
            except Exception as exc:  # noqa: BLE001 - named and explained below
                raise _load_error(name, class_name, folder / name, exc) from exc
            from core.run.disk_offload import offloaded
            if disk is not None and offloaded(name):
                _write_to_disk(loaded[name], name, plan, disk, progress, 3 + 90 * (done + size / 2) / total)
            done += size
            progress.emit("load", f"Loaded {name} in {time.perf_counter() - t0:.1f} s", 3 + 90 * done / total)
        cls = getattr(diffusers, pipeline_class)
        return cls.from_pretrained(folder, **loaded)

    @staticmethod
    def _load_balanced(report: ModelReport, pipeline_class: str, plan: OptimizationPlan, progress: Progress) -> Any:
        """Several GPUs: diffusers spreads whole components over them (one event, no per-part progress)."""
        import diffusers
        gpus = sorted(plan.max_memory_mb or {})
        progress.emit("load", f"Loading all components across {len(gpus)} GPUs (device_map balanced)", 5)
        max_memory = {gpu: f"{mb}MiB" for gpu, mb in (plan.max_memory_mb or {}).items()}
        return getattr(diffusers, pipeline_class).from_pretrained(
            report.path, torch_dtype=_torch_dtype(plan.precision.value), device_map="balanced", max_memory=max_memory)


# The two ways diffusers and torch word a weight that does not fit the model built from config.json.
_SHAPE_MISMATCH = re.compile(r"(?P<tensor>[\w.]+) expected shape torch\.Size\(\[(?P<wanted>[^\]]*)\]\), "
                             r"but got torch\.Size\(\[(?P<held>[^\]]*)\]\)")
_SIZE_MISMATCH = re.compile(r"size mismatch for (?P<tensor>[\w.]+): copying a param with shape torch\.Size\("
                            r"\[(?P<held>[^\]]*)\]\) from checkpoint, the shape in current model is "
                            r"torch\.Size\(\[(?P<wanted>[^\]]*)\]\)")


def _load_error(name: str, class_name: str, folder: Path, exc: BaseException) -> WanError:
    """A loading failure as a sentence that names the component and, where known, the file."""
    if _is_out_of_memory(exc):
        return WanError(f"Ran out of memory while loading the {name}.",
                        "Close other programs, or choose a stronger offload setting.", str(exc))
    text = str(exc)
    weights = sorted(p.name for p in folder.glob("*.safetensors")) if folder.is_dir() else []
    named = [w for w in weights if w in text] or (weights if len(weights) == 1 else [])
    where = f"{name}/{named[0]}" if named else f"{name}/"
    mismatch = _SHAPE_MISMATCH.search(text) or _SIZE_MISMATCH.search(text)
    if mismatch or "size mismatch" in text:
        detail = (f": {mismatch['tensor']} is [{mismatch['held']}] in the weights but "
                  f"[{mismatch['wanted']}] by the config" if mismatch else "")
        message = f"The {name} weights in {where} do not fit {name}/config.json ({class_name}){detail}."
        remedy = f"Download {name}/ again; its config.json and weights come from different models."
    else:
        said = text.splitlines()[0][:200] if text else type(exc).__name__
        message = f"Loading the {name} ({class_name}) from {where} failed: {said}"
        remedy = f"Download {name}/ again, or run `python -m core check` on the model folder."
    return WanError(message, remedy, explain(exc).details)
