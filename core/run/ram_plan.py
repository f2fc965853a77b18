"""System RAM while a model loads: weights as stored (GGUF blocks, fp8), what a load maps and copies,
and what would fit instead. Pure arithmetic on the Model Check report; the memory plan
(:mod:`core.run.memory_estimate`, :mod:`core.run.optimize`) reads it.

Usage::

    from core.run.ram_plan import storage, load_transient_mb, smaller_quant_words

    stored, files = storage(report)          # {"transformer": 3050.2}, {"transformer": FileFacts(...)}
    load_transient_mb(files, "bf16")         # MiB mapped and copied at the worst moment of a load
    smaller_quant_words(report.parameters)   # "a Q4_K_M GGUF (about 3.0 GB of weights) or Q3_K_M (...)"

What a load holds in RAM, measured on this machine (``bench/quantized.py``, peak RSS):

- a ``.safetensors`` component loaded in its own dtype (bf16 file, bf16 plan) is memory-mapped
  and the weights *are* the file's pages: no copy, the peak is the weights;
- loaded in another dtype (a bf16 file in fp32 on the CPU) every shard is mapped while its cast
  copy is made: the weights plus the largest shard;
- a GGUF file is mapped and its blocks copied (diffusers' ``load_gguf_checkpoint``), an fp8 file
  likewise (each tensor read out of the mapped file): the weights plus the file.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.check.gguf_header import GGML_TYPES
from core.check.report import ModelReport

MIB = 2**20
_PRECISION_OF_FILE = {"BF16": "bf16", "F16": "fp16", "F32": "fp32"}
_FP8 = ("F8_E4M3", "F8_E5M2")
_GGUF_TYPES = frozenset(name for name, _, _ in GGML_TYPES.values()) - {"F32", "F16", "BF16", "F64"}
_WEIGHT_SUFFIXES = (".safetensors", ".gguf", ".bin", ".pth", ".pt", ".ckpt")
#: Stored bits per weight of the GGUF quantizations people download for Wan (city96 / QuantStack,
#: measured on the 14B files: matrices in the type, norms and modulation in F32).
QUANT_BITS = (("Q8_0", 8.5), ("Q6_K", 6.6), ("Q5_K_M", 5.7), ("Q4_K_M", 4.9), ("Q3_K_M", 3.9))


@dataclass(frozen=True)
class FileFacts:
    """How one component is stored: its kind ("gguf", "fp8" or "plain"), dtype, size and largest file."""

    kind: str
    dtype: str | None
    size_mb: float
    largest_file_mb: float


def storage_kind(dtype: str | None) -> str:
    if dtype in _FP8:
        return "fp8"
    if dtype in _GGUF_TYPES:
        return "gguf"
    return "plain"


def storage(report: ModelReport) -> tuple[dict[str, float], dict[str, FileFacts]]:
    """(MiB in memory of each quantized component, whatever the plan's precision; each component's
    storage facts)."""
    stored: dict[str, float] = {}
    files: dict[str, FileFacts] = {}
    for comp in report.components:
        if not comp.present or not comp.size_bytes:
            continue
        weights = [f for f in comp.files if f.lower().endswith(_WEIGHT_SUFFIXES)] or list(comp.files)
        size = comp.size_bytes / MIB
        kind = storage_kind(comp.dtype)
        files[comp.name] = FileFacts(kind, comp.dtype, size, size / max(1, len(weights)))
        if kind != "plain":
            stored[comp.name] = size
    return stored, files


def load_transient_mb(files: dict[str, FileFacts], precision: str, vae_precision: str = "fp32",
                      names: tuple[str, ...] | None = None) -> float:
    """The most RAM a load holds on top of the loaded weights at one moment (MiB): the mapped file of
    a GGUF / fp8 component, or the shard being cast when the file's dtype is not the plan's."""
    worst = 0.0
    for name, f in files.items():
        if names is not None and name not in names:
            continue
        if f.kind != "plain":
            worst = max(worst, f.size_mb)
        elif _PRECISION_OF_FILE.get(f.dtype or "") != (vae_precision if name == "vae" else precision):
            worst = max(worst, f.largest_file_mb)
    return worst


def quant_weights_gb(parameters: int, bits: float) -> float:
    return parameters * bits / 8 / 1e9


def smaller_quant_words(transformer_parameters: int | None, budget_mb: float | None = None) -> str:
    """The GGUF quantizations of this transformer with their weight sizes, those under ``budget_mb`` first."""
    if not transformer_parameters:
        return ""
    sizes = [(name, quant_weights_gb(transformer_parameters, bits)) for name, bits in QUANT_BITS]
    if budget_mb is not None:
        sizes = [(n, gb) for n, gb in sizes if gb * 1e9 / MIB <= budget_mb]
    return ", ".join(f"{n} (about {gb:.1f} GB of weights)" for n, gb in sizes[:3])
