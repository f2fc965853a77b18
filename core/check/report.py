"""What Model Check says about a model: frozen dataclasses every later stage reads.

Usage::

    from core.check.detect import inspect
    report = inspect("/models/Wan2.2-TI2V-5B-Diffusers")
    print(report.summary_str)
    for f in report.findings:
        print(f.severity, f.code, f.message, "->", f.remedy)
    report.to_dict()   # the JSON that `python -m core check --json` prints
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from core.check.codes import Code, as_code


class ArchitectureType(str, Enum):
    """What kind of model a report describes (the values are stable strings)."""

    WAN_T2V = "wan_t2v"
    WAN_I2V = "wan_i2v"
    WAN_TI2V = "wan_ti2v"
    WAN_FLF2V = "wan_flf2v"
    WAN_VACE = "wan_vace"
    WAN_S2V = "wan_s2v"
    WAN_ANIMATE = "wan_animate"
    STABLE_DIFFUSION = "stable_diffusion"
    STABLE_DIFFUSION_XL = "stable_diffusion_xl"
    STABLE_DIFFUSION_3 = "stable_diffusion_3"
    FLUX = "flux"
    DIFFUSERS_OTHER = "diffusers_other"
    UNKNOWN = "unknown"

    @property
    def is_wan(self) -> bool:
        return self.value.startswith("wan_")


class Layout(str, Enum):
    DIFFUSERS = "diffusers"
    WAN_ORIGINAL = "wan_original"
    SINGLE_FILE = "single_file"
    GGUF = "gguf"                # a GGUF transformer file (city96, QuantStack)
    UNKNOWN = "unknown"


class Severity(str, Enum):
    ERROR = "error"      # it will not load as it is
    WARNING = "warning"  # it may load, but something is off
    INFO = "info"        # worth knowing


@dataclass(frozen=True)
class Finding:
    """One problem or remark: a stable ``code`` for tools, a sentence and a remedy for people.

    ``code`` is a :class:`~core.check.codes.Code` (a plain string that is one's value becomes it).
    """

    severity: Severity
    code: Code
    message: str
    remedy: str = ""
    path: str | None = None  # the file or folder it is about, relative to the model root

    def __post_init__(self) -> None:
        object.__setattr__(self, "code", as_code(self.code))

    def to_dict(self) -> dict[str, Any]:
        return {"severity": self.severity.value, "code": str(self.code), "message": self.message,
                "remedy": self.remedy, "path": self.path}


@dataclass(frozen=True)
class ComponentReport:
    """One part of a model (transformer, VAE, text encoder ...), as found on disk."""

    name: str
    class_name: str | None = None
    library: str | None = None
    folder: str = ""
    files: tuple[str, ...] = ()
    size_bytes: int = 0
    dtype: str | None = None          # the dtype holding most parameters, from headers
    parameters: int | None = None     # from safetensors headers; None when only .pth/.bin
    present: bool = True
    complete: bool = True
    config: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "class_name": self.class_name, "library": self.library,
                "folder": self.folder, "files": list(self.files), "size_bytes": self.size_bytes,
                "dtype": self.dtype, "parameters": self.parameters, "present": self.present,
                "complete": self.complete}


@dataclass(frozen=True)
class ModelReport:
    """Everything Model Check learned about one model (or a folder of several: ``models``)."""

    path: str
    layout: Layout = Layout.UNKNOWN
    architecture_type: ArchitectureType = ArchitectureType.UNKNOWN
    wan_version: str | None = None
    task: str | None = None               # t2v, i2v, ti2v, flf2v, vace, s2v, animate
    size_class: str | None = None         # "1.3B", "5B", "14B"
    pipeline_class: str | None = None
    experts: int = 0
    boundary_ratio: float | None = None
    expand_timesteps: bool | None = None
    vae_kind: str | None = None           # "wan2.1" (z 16) or "wan2.2" (z 48)
    vae_z_dim: int | None = None
    components: tuple[ComponentReport, ...] = ()
    parameters: int | None = None
    registry_id: str | None = None
    custom_code: bool = False             # model_index.json names code that would run
    part: str | None = None               # a lone file that is one part: "transformer", "vae", "text_encoder"
    findings: tuple[Finding, ...] = ()
    models: tuple[ModelReport, ...] = ()  # for a folder that holds several models
    bytes_read: int = 0
    lora: Any = None                      # a LoRA file: core.check.lora.LoraInfo (not a model, used with one)
    quantization: dict[str, Any] | None = field(default=None, compare=False)   # core.check.quantization

    @property
    def is_wan(self) -> bool:
        return self.architecture_type.is_wan

    @property
    def is_wan_part(self) -> bool:
        """A lone Wan VAE or text-encoder file: Wan, but no model to plan or load on its own."""
        return self.part in ("vae", "text_encoder") and not self.is_wan

    @property
    def is_collection(self) -> bool:
        return bool(self.models)

    @property
    def errors(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity is Severity.ERROR)

    @property
    def loadable(self) -> bool:
        """Complete and consistent: a known model type with no error finding and no custom code to run."""
        if self.models:
            return all(m.loadable for m in self.models) and not self.errors
        return (self.architecture_type is not ArchitectureType.UNKNOWN and not self.errors and not self.custom_code
                and self.part is None)

    @property
    def usable(self) -> bool:
        """What `check` exits 0 for: a loadable model, an intact LoRA in a format we load, or a folder of such."""
        if self.models:
            return all(m.usable for m in self.models) and not self.errors
        if self.lora is not None:
            return self.lora.usable and not self.errors
        return self.loadable

    @property
    def weights_bytes_bf16(self) -> int | None:
        """Memory for the weights at bf16 (2 bytes a parameter)."""
        return None if self.parameters is None else 2 * self.parameters

    def component(self, name: str) -> ComponentReport | None:
        return next((c for c in self.components if c.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        """The stable JSON shape of `python -m core check --json`."""
        return {
            "path": self.path,
            "is_wan": self.is_wan or self.is_wan_part or (self.lora is not None and self.lora.is_wan),
            "part": self.part,
            "architecture_type": self.architecture_type.value,
            "wan_version": self.wan_version,
            "layout": self.layout.value,
            "task": self.task,
            "size_class": self.size_class,
            "pipeline_class": self.pipeline_class,
            "experts": self.experts,
            "boundary_ratio": self.boundary_ratio,
            "expand_timesteps": self.expand_timesteps,
            "vae_kind": self.vae_kind,
            "vae_z_dim": self.vae_z_dim,
            "parameters": self.parameters,
            "weights_bytes_bf16": self.weights_bytes_bf16,
            "registry_id": self.registry_id,
            "custom_code": self.custom_code,
            "loadable": self.loadable,
            "components": [c.to_dict() for c in self.components],
            "findings": [f.to_dict() for f in self.findings],
            "models": [m.to_dict() for m in self.models],
            "bytes_read": self.bytes_read,
            "lora": self.lora.to_dict() if self.lora is not None else None,
            "quantization": self.quantization,
        }
