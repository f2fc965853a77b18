"""Load a Wan model with its memory plan, and generate video with live progress.

Usage::

    from core.run.load import WanPipelineLoader, GenerationConfig
    wrapper = WanPipelineLoader().load_wan_pipeline("/models/Wan2.2-TI2V-5B-Diffusers",
                                                    progress_callback=lambda m, p: print(f"{p:5.1f}% {m}"))
    result = wrapper.generate(GenerationConfig(prompt="A red fox in the snow", num_frames=33))
    print(result.success, result.output_path)

torch and diffusers are imported here, inside the functions that need them.
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import re
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

from core import __version__
from core.check.components import WEIGHTLESS
from core.check.detect import inspect
from core.errors import WanError, explain
from core.units import format_bytes
from core.run.generation import GenerationConfig, GenerationResult, ResolvedSettings, resolve
from core.monitor import GENERATION, LOAD, track
from core.check.report import Layout, ModelReport, Severity

# Fewer allocator gaps on the GPU (the caching allocator reserved 1.3-1.4x its peaks in our
# calibration runs); set before torch first touches CUDA, and only if the user has not.
os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")

ProgressCallback = Callable[[str, float], None]
TORCH_DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


def _quiet(progress: ProgressCallback | None) -> ProgressCallback:
    return progress or (lambda message, percent: None)


def _torch_dtype(name: str) -> Any:
    import torch
    return getattr(torch, TORCH_DTYPES[name])


def _is_out_of_memory(exc: BaseException) -> bool:
    text = str(exc).lower()
    return type(exc).__name__ == "OutOfMemoryError" or "out of memory" in text or isinstance(exc, MemoryError)


_gb = format_bytes


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60}m {seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class _Cancelled(Exception):
    """Raised from the step callback to stop the pipeline before its VAE decode."""


@dataclass
class _StepClock:
    """Progress of the denoising loop: step times, the active expert, an ETA."""

    steps: int
    boundary_timestep: float | None
    progress: ProgressCallback
    cancel: threading.Event | None
    start: float = 0.0
    last: float = 0.0
    done: int = 0
    ram_peak: float = 0.0

    def __call__(self, pipe: Any, i: int, t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        now = time.perf_counter()
        self.done = i + 1
        per_step = (now - self.start) / self.done
        expert = ""
        if self.boundary_timestep is not None:
            expert = " · high-noise expert" if float(t) >= self.boundary_timestep else " · low-noise expert"
        eta = per_step * (self.steps - self.done)
        self.progress(f"Step {self.done}/{self.steps}{expert} · {per_step:.2f} s/step · ETA {_duration(eta)}",
                      5 + 85 * self.done / self.steps)
        self.ram_peak = max(self.ram_peak, _rss_mb())
        self.last = now
        if self.cancel is not None and self.cancel.is_set() and self.done < self.steps:
            pipe._interrupt = True
            raise _Cancelled()
        return kwargs


def _rss_mb() -> float:
    import psutil
    return psutil.Process().memory_info().rss / 2**20


class WanPipelineWrapper:
    """A loaded Wan pipeline, its memory plan and the Model Check report it was loaded from."""

    def __init__(self, pipeline: Any, plan: Any, report: ModelReport, load_seconds: float,
                 hardware: Any = None) -> None:
        self.pipeline = pipeline
        self.plan = plan
        self.report = report
        self.load_seconds = load_seconds
        self.hardware = hardware
        self._lock = threading.Lock()
        self._placed: tuple[str, bool] | None = None  # placement hooks in force (applied once)

    # --- the memory plan ---------------------------------------------------------------

    def _apply_plan(self, plan: Any) -> None:
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
            self._placed = (placement, plan.text_encoder_on_cpu.value)
        vae = getattr(pipe, "vae", None)
        if vae is not None:
            (vae.enable_tiling if plan.vae_tiling.value else vae.disable_tiling)()
            (vae.enable_slicing if plan.vae_slicing.value else vae.disable_slicing)()
        backend = plan.attention_backend.value
        if backend and backend != "native":
            for name in ("transformer", "transformer_2"):
                module = getattr(pipe, name, None)
                if module is not None and hasattr(module, "set_attention_backend"):
                    module.set_attention_backend(backend)
        self.plan = plan

    def _group_offload(self, plan: Any, excluded: list[str]) -> None:
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

    def generate(self, config: GenerationConfig, progress_callback: ProgressCallback | None = None,
                 cancel: threading.Event | None = None) -> GenerationResult:
        """Generate one video and write it as an MP4; never raises for a problem a person can act on.

        ``cancel`` (a threading.Event) stops after the current step and writes nothing.
        Problems are in ``result.errors``; ``result.output_path`` is the MP4. Every call,
        failed or cancelled ones included, is recorded in the performance history (core.monitor).
        """
        with _recorded_generation(self, config) as op:
            result = self._generate_video(config, progress_callback, cancel)
            _record_result(op, result)
        return result

    def _generate_video(self, config: GenerationConfig, progress_callback: ProgressCallback | None,
                        cancel: threading.Event | None) -> GenerationResult:
        progress = _quiet(progress_callback)
        frames, result = self._frames(config, progress, cancel)
        if not result.success:
            return result
        from core.run.video import write_mp4
        output_path = Path(config.output_path) if config.output_path else _default_output(
            result.metadata["prompt"], result.metadata["seed"])
        start = time.perf_counter()
        try:
            write_mp4(frames, output_path, result.fps, result.metadata,
                      progress_callback=lambda m, p: progress(m, 97 + 3 * p / 100))
        except WanError as err:
            return result.with_error(f"{err.message} {err.remedy}".strip())
        seconds = dict(result.seconds, write=time.perf_counter() - start)
        seconds["total"] = seconds["total"] + seconds["write"]
        progress(f"Done: {output_path}", 100)
        return replace(result, output_path=str(output_path), seconds=seconds)

    def generate_frames(self, config: GenerationConfig, progress_callback: ProgressCallback | None = None,
                        cancel: threading.Event | None = None) -> tuple[Any, GenerationResult]:
        """Generate the frames ([F, H, W, 3] floats in 0..1) without writing a file: (frames, result).

        Validation, the memory plan for this request, progress, cancel and the one retry
        with a stronger plan after running out of memory all happen here. Every call is
        recorded in the performance history (core.monitor).
        """
        with _recorded_generation(self, config) as op:
            frames, result = self._frames(config, progress_callback, cancel)
            _record_result(op, result)
        return frames, result

    def _frames(self, config: GenerationConfig, progress_callback: ProgressCallback | None,
                cancel: threading.Event | None) -> tuple[Any, GenerationResult]:
        progress = _quiet(progress_callback)
        settings, errors = resolve(config, self.report)
        if errors:
            return None, GenerationResult(success=False, errors=errors)
        if not self._lock.acquire(blocking=False):
            return None, GenerationResult(success=False, errors=[
                "A generation is already running with this model; wait for it to finish or cancel it."])
        try:
            return self._generate_frames(settings, progress, cancel)
        finally:
            self._lock.release()

    def _generate_frames(self, s: ResolvedSettings, progress: ProgressCallback,
                         cancel: threading.Event | None) -> tuple[Any, GenerationResult]:
        warnings: list[str] = []
        plan = self._plan_for_settings(s)
        if plan is not None and not plan.fits:
            return None, GenerationResult(success=False, plan=plan.to_dict(), errors=[
                plan.refusal or "This request does not fit this machine."])
        for attempt in (1, 2):
            try:
                return self._render(s, progress, cancel, warnings)
            except _Cancelled:
                return None, GenerationResult(success=False, cancelled=True, warnings=warnings,
                                              plan=self.plan.to_dict() if self.plan else {},
                                              errors=["Cancelled; no video was written."])
            except Exception as exc:  # noqa: BLE001 - every failure becomes a sentence
                if not _is_out_of_memory(exc):
                    err = explain(exc)
                    return None, GenerationResult(success=False, errors=[f"{err.message} {err.remedy}".strip()],
                                                  warnings=warnings, metadata={"details": err.details})
                _free_memory()
                stronger = self._stronger_plan() if attempt == 1 else None
                if stronger is None:
                    placement = self.plan.placement.value.replace("_", " ") if self.plan else ""
                    return None, GenerationResult(success=False, warnings=warnings, errors=[
                        f"Out of memory at {s.width}x{s.height} with {s.num_frames} frames"
                        f"{' even with ' + placement if placement else ''}. "
                        f"Try {_smaller(s)}, or close other programs that use the GPU."])
                warnings.append(f"Ran out of GPU memory with {self.plan.placement.value.replace('_', ' ')}; "
                                f"retried with {stronger.placement.value.replace('_', ' ')}.")
                progress(warnings[-1], 0)
                self._reset_placement()
                self._apply_plan(stronger)
        raise AssertionError("unreachable")

    def _plan_for_settings(self, s: ResolvedSettings) -> Any:
        """Re-plan for this request's size (the load-time plan assumed the model's defaults)."""
        if self.plan is None or not s.enable_optimizations:
            return self.plan
        from core.run.optimize import OptimizationRequest, plan_for
        request = OptimizationRequest(width=s.width, height=s.height, num_frames=s.num_frames,
                                      num_inference_steps=s.num_inference_steps, guidance=s.guidance_scale > 1,
                                      overrides=dict(self.plan.request.overrides))
        plan = plan_for(self.report, self.hardware, request)
        if s.force_chunked_processing:
            from core.run.optimize import Choice
            plan = replace(plan, vae_tiling=Choice(True, "VAE decoded in tiles (you asked for chunked processing)."),
                           vae_slicing=Choice(True, "VAE decoded one video at a time (you asked for chunked processing)."))
        if plan.fits:
            if self._placed is not None and plan.placement.value != self._placed[0]:
                self._reset_placement()
            self._apply_plan(plan)
        return plan

    def _stronger_plan(self) -> Any:
        if self.plan is None or self.hardware is None:
            return None
        from core.run.optimize import stronger_plan
        return stronger_plan(self.plan, self.report, self.hardware)

    def _render(self, s: ResolvedSettings, progress: ProgressCallback, cancel: threading.Event | None,
                warnings: list[str]) -> tuple[Any, GenerationResult]:
        import torch
        pipe = self.pipeline
        start = time.perf_counter()
        cuda = torch.cuda.is_available() and self.plan is not None and self.plan.device == "cuda"
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        boundary = None
        if getattr(pipe.config, "boundary_ratio", None) is not None and getattr(pipe, "transformer_2", None) is not None:
            boundary = pipe.config.boundary_ratio * pipe.scheduler.config.num_train_timesteps
        clock = _StepClock(s.num_inference_steps, boundary, progress, cancel)
        kwargs: dict[str, Any] = dict(
            prompt=s.prompt, negative_prompt=s.negative_prompt, height=s.height, width=s.width,
            num_frames=s.num_frames, num_inference_steps=s.num_inference_steps, guidance_scale=s.guidance_scale,
            generator=torch.Generator(device="cpu").manual_seed(s.seed), output_type="np",
            callback_on_step_end=clock)
        if s.guidance_scale_2 is not None and getattr(pipe, "transformer_2", None) is not None:
            kwargs["guidance_scale_2"] = s.guidance_scale_2
        if s.image is not None:
            kwargs["image"] = _load_image(s.image, s.width, s.height)
        if s.last_image is not None:
            kwargs["last_image"] = _load_image(s.last_image, s.width, s.height)
        if self.plan is not None and self.plan.text_encoder_on_cpu.value and cuda:
            kwargs.update(self._encode_on_cpu(s))
        pipe.set_progress_bar_config(disable=True)
        stages = _StageTimer(progress)
        clock.start = time.perf_counter()

        def encoded() -> None:  # denoising starts when the prompt is encoded
            clock.start = time.perf_counter()

        with stages.wrap(pipe, "encode_prompt", "encode", "Encoding the prompt", 2, after=encoded), \
                stages.wrap(pipe.vae, "decode", "decode", "Decoding the video (VAE)", 91):
            frames = pipe(**kwargs).frames[0]
        seconds = dict(stages.seconds, denoise=max(0.0, (clock.last or clock.start) - clock.start),
                       total=time.perf_counter() - start)
        metadata = {
            "app": f"Wan Compat {__version__}", "model": self.report.registry_id or Path(self.report.path).name,
            "model_path": self.report.path, "pipeline": type(pipe).__name__, **s.to_metadata(),
            "plan": self.plan.to_dict() if self.plan is not None else None,
        }
        return frames, GenerationResult(
            success=True, frames=int(frames.shape[0]), width=s.width, height=s.height, fps=s.fps, seconds=seconds,
            seconds_per_step=seconds["denoise"] / max(1, clock.done), peak_ram_mb=max(clock.ram_peak, _rss_mb()),
            peak_vram_mb=torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
            plan=self.plan.to_dict() if self.plan is not None else {}, metadata=metadata, warnings=warnings)

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
    """Times a pipeline method (encode_prompt, vae.decode) and announces it, without changing it."""

    def __init__(self, progress: ProgressCallback) -> None:
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
                    timer.progress(message, percent)
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


def _load_image(image: Any, width: int, height: int) -> Any:
    """A PIL image from a path or an image, resized to the video size."""
    from PIL import Image
    if isinstance(image, (str, os.PathLike)):
        try:
            image = Image.open(image)
            image.load()
        except (OSError, ValueError) as exc:
            raise WanError(f"The image {image} cannot be read: {exc}.", "Use a PNG or JPEG file.") from exc
    return image.convert("RGB").resize((width, height))


def _default_output(prompt: str, seed: int) -> Path:
    from core.config import load_config
    from core.run.video import default_output_path
    return default_output_path(Path(load_config().outputs_dir), prompt, seed)


def _smaller(s: ResolvedSettings) -> str:
    fewer = max(1, (s.num_frames - 1) // 2 // 4 * 4 + 1)
    return f"{fewer} frames or a smaller size such as {max(16, s.width // 2 // 16 * 16)}x{max(16, s.height // 2 // 16 * 16)}"


def _recorded_generation(wrapper: WanPipelineWrapper, config: GenerationConfig) -> Any:
    """core.monitor's ``track`` for one generation, with what is known before it runs."""
    return track(GENERATION, report=wrapper.report, plan=wrapper.plan, hardware=wrapper.hardware,
                 width=config.width, height=config.height, frames=config.num_frames,
                 steps=config.num_inference_steps)


def _record_result(op: Any, result: GenerationResult) -> None:
    """Give the monitor a generation's own stage timings; a failure or cancel is success False."""
    meta = result.metadata
    op.set(stage_seconds=result.seconds, seconds_per_step=result.seconds_per_step, cancelled=result.cancelled,
           error="; ".join(result.errors)[:500] or None)
    if result.plan:
        op.set(plan=result.plan)
    if result.width and result.height:
        op.set(width=result.width, height=result.height, frames=meta.get("num_frames") or result.frames)
    if meta.get("num_inference_steps"):
        op.set(steps=meta["num_inference_steps"])
    op.success = result.success


def _free_memory() -> None:
    gc.collect()
    try:
        import torch
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # noqa: BLE001 - freeing memory is best effort
        pass


class WanPipelineLoader:
    """Loads Wan models component by component, with a memory plan for this machine."""

    def load_wan_pipeline(self, model_path: str | os.PathLike[str], trust_remote_code: bool = False,
                          apply_optimizations: bool = True, optimization_config: dict[str, Any] | None = None,
                          progress_callback: ProgressCallback | None = None) -> WanPipelineWrapper:
        """Load a diffusers-layout Wan model and apply the memory plan.

        Raises ValueError ("... not a Wan architecture ...") for other models, and WanError
        with a plain message and remedy for anything else that stops loading. Every call,
        failed ones included, is recorded in the performance history (core.monitor).
        """
        with track(LOAD, model=Path(str(model_path)).name) as op:
            wrapper = self._load(model_path, trust_remote_code, apply_optimizations, optimization_config,
                                 progress_callback)
            op.set(report=wrapper.report, plan=wrapper.plan, hardware=wrapper.hardware,
                   stage_seconds={"total": wrapper.load_seconds})
        return wrapper

    def _load(self, model_path: str | os.PathLike[str], trust_remote_code: bool, apply_optimizations: bool,
              optimization_config: dict[str, Any] | None, progress_callback: ProgressCallback | None
              ) -> WanPipelineWrapper:
        progress = _quiet(progress_callback)
        start = time.perf_counter()
        progress("Checking the model", 0)
        try:
            report = inspect(model_path)
        except OSError as exc:
            raise explain(exc) from exc
        errors_found = [f for f in report.findings if f.severity is Severity.ERROR]
        if not report.is_wan and report.architecture_type.value == "unknown" and errors_found:
            raise ValueError(f"{report.path} is not a Wan architecture model: {errors_found[0].message} "
                             f"{errors_found[0].remedy}".strip())
        if not report.is_wan:
            raise ValueError(f"{report.path} is not a Wan architecture model "
                             f"(detected: {report.architecture_type.value}); load it with diffusers' "
                             "DiffusionPipeline.from_pretrained instead.")
        if report.layout is not Layout.DIFFUSERS:
            raise WanError(f"This Wan model is in the {report.layout.value.replace('_', ' ')} layout, which diffusers "
                           "cannot load directly.",
                           "Convert it to the diffusers layout with Fix (`python -m core fix PATH`), or download "
                           "the -Diffusers version of the model.")
        errors = [f for f in report.findings if f.severity is Severity.ERROR]
        if errors:
            first = errors[0]
            raise WanError(f"The model cannot be loaded: {first.message}"
                           + (f" ({len(errors) - 1} more problem(s); see `python -m core check`.)" if len(errors) > 1 else ""),
                           first.remedy, "\n".join(f"{f.code}: {f.message}" for f in errors))
        if report.custom_code and not trust_remote_code:
            raise WanError("model_index.json names Python code from outside diffusers and transformers; "
                           "it was not loaded, and nothing was run.",
                           "Wan models need no custom code: repair model_index.json with Fix, or pass "
                           "trust_remote_code=True only if you trust where the model came from.")
        if trust_remote_code and not report.custom_code:
            progress("trust_remote_code is not needed for Wan models and was ignored", 1)
        from core.run.pipelines import PipelineManager
        pipeline_class = PipelineManager().select_pipeline_class(report)
        hardware, plan = self._plan(report, apply_optimizations, optimization_config or {})
        if plan is not None and plan.placement.value == "balanced":
            pipe = self._load_balanced(report, pipeline_class, plan, progress)
        else:
            pipe = self._load_components(report, pipeline_class, plan, progress)
        wrapper = WanPipelineWrapper(pipe, plan, report, 0.0, hardware)
        if plan is not None:
            progress(f"Applying the memory plan: {plan.placement.value.replace('_', ' ')}, {plan.precision.value}", 97)
            wrapper._apply_plan(plan)
        wrapper.load_seconds = time.perf_counter() - start
        progress(f"Loaded in {wrapper.load_seconds:.1f} s", 100)
        return wrapper

    @staticmethod
    def _plan(report: ModelReport, apply: bool, overrides: dict[str, Any]) -> tuple[Any, Any]:
        from core.run.generation import defaults_for
        from core.run.hardware import probe
        from core.run.optimize import OptimizationRequest, check_request_fits, plan_for
        import torch  # noqa: F401 - so that probe() can ask torch about CUDA
        hardware = probe(use_torch=True)
        entry = defaults_for(report)
        width, height = entry.default_size if entry else (832, 480)
        request = OptimizationRequest(width=width, height=height, num_frames=entry.frames if entry else 81,
                                      num_inference_steps=entry.steps if entry else 50,
                                      overrides=overrides if apply else {**overrides, "placement": "none"})
        plan = plan_for(report, hardware, request)
        if apply:
            check_request_fits(plan)
        return hardware, plan

    @staticmethod
    def _load_components(report: ModelReport, pipeline_class: str, plan: Any,
                         progress: ProgressCallback) -> Any:
        """Load each component from its folder (one progress message each), then the pipeline."""
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
            progress(f"Loading {name} ({class_name}, {_gb(size)})", 3 + 90 * done / total)
            t0 = time.perf_counter()
            try:
                cls = getattr(importlib.import_module(library), class_name)
                kwargs: dict[str, Any] = {}
                if name not in WEIGHTLESS and plan is not None:
                    precision = plan.vae_precision.value if name == "vae" else plan.precision.value
                    kwargs["torch_dtype"] = _torch_dtype(precision)
                loaded[name] = cls.from_pretrained(folder / name, **kwargs)
            except Exception as exc:  # noqa: BLE001 - named and explained below
                raise _load_error(name, class_name, folder / name, exc) from exc
            done += size
            progress(f"Loaded {name} in {time.perf_counter() - t0:.1f} s", 3 + 90 * done / total)
        cls = getattr(diffusers, pipeline_class)
        return cls.from_pretrained(folder, **loaded)

    @staticmethod
    def _load_balanced(report: ModelReport, pipeline_class: str, plan: Any, progress: ProgressCallback) -> Any:
        """Several GPUs: diffusers spreads whole components over them (one message, no per-part progress)."""
        import diffusers
        gpus = sorted(plan.max_memory_mb)
        progress(f"Loading all components across {len(gpus)} GPUs (device_map balanced)", 5)
        max_memory = {gpu: f"{mb}MiB" for gpu, mb in plan.max_memory_mb.items()}
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
        message = f"Loading the {name} ({class_name}) from {where} failed: {text.splitlines()[0][:200] if text else type(exc).__name__}"
        remedy = f"Download {name}/ again, or run `python -m core check` on the model folder."
    return WanError(message, remedy, explain(exc).details)
