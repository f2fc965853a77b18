"""Which diffusers pipeline class a model needs, whether this install has it, and loading it.

Usage (the seed guide's names)::

    from core.check.detect import ArchitectureDetector
    from core.run.pipelines import PipelineManager
    arch = ArchitectureDetector().detect_model_architecture(path)
    manager = PipelineManager()
    pipeline_class = manager.select_pipeline_class(arch.signature)      # "WanPipeline"
    result = manager.load_custom_pipeline(path, pipeline_class)
    if result.success:
        pipe = result.pipeline
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass, field
from typing import Any

from core.check.report import ModelReport
from core.errors import WanError, explain

# Components each pipeline needs to run (beyond these, model_index.json may list more).
REQUIRED_COMPONENTS: dict[str, tuple[str, ...]] = {
    "WanPipeline": ("transformer", "vae", "text_encoder", "tokenizer", "scheduler"),
    "WanImageToVideoPipeline": ("transformer", "vae", "text_encoder", "tokenizer", "scheduler"),
    "WanVACEPipeline": ("transformer", "vae", "text_encoder", "tokenizer", "scheduler"),
    "WanAnimatePipeline": ("transformer", "vae", "text_encoder", "tokenizer", "scheduler", "image_encoder"),
    "StableDiffusionPipeline": ("unet", "vae", "text_encoder", "tokenizer", "scheduler"),
    "StableDiffusionXLPipeline": ("unet", "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "scheduler"),
    "StableDiffusion3Pipeline": ("transformer", "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "scheduler"),
    "FluxPipeline": ("transformer", "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "scheduler"),
}
# The first diffusers release with each Wan pipeline (the registry holds the same per model).
MIN_DIFFUSERS: dict[str, str] = {"WanPipeline": "0.33.0", "WanImageToVideoPipeline": "0.33.0",
                                 "WanVACEPipeline": "0.34.0", "WanAnimatePipeline": "0.36.0"}
WAN22_MIN_DIFFUSERS = "0.35.0"  # transformer_2 and boundary_ratio


def _report_of(signature_or_report: Any) -> ModelReport:
    return signature_or_report if isinstance(signature_or_report, ModelReport) else signature_or_report.report


def _version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def installed_diffusers() -> str | None:
    """The installed diffusers version, read without importing it."""
    try:
        return importlib.metadata.version("diffusers")
    except importlib.metadata.PackageNotFoundError:
        return None


@dataclass
class PipelineLoadResult:
    success: bool
    pipeline: Any = None
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class PipelineManager:
    """Maps a detected model to its diffusers pipeline and checks it can be loaded here."""

    def select_pipeline_class(self, signature: Any) -> str:
        """The pipeline class name for a signature (or a ModelReport); raises WanError when it cannot run here.

        Checks that diffusers is installed and new enough for this model and that the
        components the pipeline needs are present.
        """
        report = _report_of(signature)
        name = report.pipeline_class
        if not name:
            if report.task == "s2v":
                raise WanError("diffusers has no pipeline for Wan2.2 speech-to-video (S2V).",
                               "Run it with the generate.py script of the Wan2.2 repository.")
            raise WanError("This is not a model diffusers knows how to load.",
                           "Run `python -m core check PATH` to see what it is.")
        version = installed_diffusers()
        if version is None:
            raise WanError("diffusers is not installed.", "Run ./launch.sh (or launch.bat) to install it.")
        needed = MIN_DIFFUSERS.get(name, "0")
        if report.wan_version == "2.2" and _version_tuple(WAN22_MIN_DIFFUSERS) > _version_tuple(needed):
            needed = WAN22_MIN_DIFFUSERS
        if _version_tuple(version) < _version_tuple(needed):
            raise WanError(f"{name} needs diffusers {needed} or newer; this install has {version}.",
                           f"Upgrade diffusers: pip install -U \"diffusers>={needed}\".")
        present = {c.name for c in report.components if c.present}
        missing = [c for c in REQUIRED_COMPONENTS.get(name, ()) if c not in present]
        missing += [c.name for c in report.components if not c.present and c.name not in missing]
        if missing:
            raise WanError(f"{name} needs {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} "
                           "missing from this model folder.",
                           "Download the missing folders again, or run `python -m core check PATH` for details.")
        return name

    def load_custom_pipeline(self, model_path: str, pipeline_class: str, trust_remote_code: bool = False,
                             **kwargs: Any) -> PipelineLoadResult:
        """Load ``model_path`` with ``pipeline_class`` (plain diffusers, no memory plan).

        ``trust_remote_code`` is honoured only for a model whose model_index.json names
        custom code; Wan models need none.
        """
        from core.check.detect import inspect
        result = PipelineLoadResult(success=False)
        try:
            report = inspect(model_path)
        except OSError as exc:
            result.errors.append(explain(exc).message)
            return result
        if report.custom_code and not trust_remote_code:
            result.errors.append("model_index.json names custom pipeline code, which would run Python code from "
                                 "the model folder; it was not loaded. Pass trust_remote_code=True only if you "
                                 "trust where the model came from.")
            return result
        if trust_remote_code and not report.custom_code:
            result.warnings.append("trust_remote_code is not needed for this model (diffusers has its pipeline) "
                                   "and was ignored.")
        try:
            import diffusers
            cls = getattr(diffusers, pipeline_class, None)
            if cls is None:
                result.errors.append(f"This diffusers ({diffusers.__version__}) has no {pipeline_class}; "
                                     "upgrade diffusers.")
                return result
            extra = {"trust_remote_code": True} if (trust_remote_code and report.custom_code) else {}
            result.pipeline = cls.from_pretrained(model_path, **extra, **kwargs)
            result.success = True
        except Exception as exc:  # noqa: BLE001 - reported as a sentence, with details kept
            err = explain(exc)
            result.errors.append(f"{err.message} {err.remedy}".strip())
        return result
