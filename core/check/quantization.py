"""How a transformer's weights are stored: GGUF blocks, fp8, fp8 with ComfyUI's scales, or plain.

Model Check reads this from headers only (GGUF header, safetensors header) and reports it as
``check --json``'s ``"quantization"`` object; the memory plan sizes weights from it. Usage::

    from core.check.quantization import read_gguf, gguf_quantization, fp8_quantization

    header = read_gguf(src, entry, tensors, findings)        # findings: bad magic, cut short, ...
    gguf_quantization(header)   # {"format": "gguf", "types": {"F32": 727, "Q4_K": 298}, "bits_per_weight": 4.9, ...}
    fp8_quantization(tensors)   # {"format": "fp8_scaled", "types": {"F8_E4M3": 400, ...}, ...} or None

Findings made here: a .gguf that is not GGUF (an HTML page, a zip, zeros), one cut short,
one whose header is damaged, quantization types the installed diffusers cannot run, and an
fp8 "scaled" file whose scales are missing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from core.check.codes import Code
from core.check.components import PartReading, cut_short, unreadable
from core.check.dit import find_prefix
from core.check.filesource import FileEntry, FileSource, display_name
from core.check.gguf_header import GGML_TYPES, GGUFError, GGUFHeader, parse_gguf_header, quant_types_of, supported_types
from core.check.report import ComponentReport, Finding, Severity
from core.check.safetensors_header import DTYPE_BITS, TensorInfo

ERROR, WARNING = Severity.ERROR, Severity.WARNING
FP8_DTYPES = ("F8_E4M3", "F8_E5M2")
SCALE_SUFFIX = ".scale_weight"
SCALED_MARK = "scaled_fp8"        # ComfyUI's marker tensor in *_fp8_scaled files
_GGUF_CODES = {"empty": Code.FILE_TRUNCATED, "too_short": Code.FILE_TRUNCATED, "bad_magic": Code.NOT_A_MODEL,
               "bad_version": Code.HEADER_BAD_SHAPE, "bad_header": Code.HEADER_BAD_SHAPE}
SMALLER_QUANTS = "Q8_0, Q6_K, Q5_K_M, Q4_K_M or Q3_K_M"


def read_gguf(src: FileSource, entry: FileEntry, into: dict[str, TensorInfo],
              findings: list[Finding]) -> GGUFHeader | None:
    """Read one .gguf file's header into ``into`` (original tensor names, torch-order shapes);
    report a file that is not GGUF, is cut short or holds types diffusers cannot run."""
    shown = display_name(entry.path)
    try:
        header = parse_gguf_header(src, entry.path, entry.size)
    except GGUFError as exc:
        remedy = ("Delete it and download the .gguf file again (from its model page's Files tab, not the web page)."
                  if exc.reason == "bad_magic" else "Delete this file and download it again.")
        findings.append(Finding(ERROR, _GGUF_CODES[exc.reason], f"{shown} {exc}.", remedy, entry.path))
        return None
    except OSError as exc:
        findings.append(unreadable(entry, exc))
        return None
    if entry.size < header.expected_file_size:
        findings.append(cut_short(entry, header.expected_file_size))
    unsupported = [t for t in quant_types_of(header) if t not in supported_types()]
    unsupported += [f"type {t}" for t in header.unknown_types]
    if unsupported:
        findings.append(Finding(
            ERROR, Code.QUANT_UNSUPPORTED,
            f"{shown} stores weights as {', '.join(unsupported)}, which the installed diffusers cannot load "
            f"(it runs {', '.join(sorted(supported_types() - {'F32', 'F16'}))}).",
            f"Download a GGUF of another quantization ({SMALLER_QUANTS}), or upgrade diffusers.", entry.path))
    into.update(header.tensor_infos())
    return header


def gguf_quantization(header: GGUFHeader) -> dict[str, Any]:
    """``{"format": "gguf", "types": {type: tensors}, "bits_per_weight", "weights_bytes", "parameters"}``."""
    return {"format": "gguf", "types": header.type_counts, "bits_per_weight": header.bits_per_weight,
            "weights_bytes": header.data_bytes, "parameters": header.parameters}


def fp8_quantization(tensors: Mapping[str, TensorInfo]) -> dict[str, Any] | None:
    """``{"format": "fp8" | "fp8_scaled", "types", "bits_per_weight", "weights_bytes", "parameters",
    "scales"}`` for a safetensors transformer holding fp8 weights; None when it holds none."""
    fp8 = [n for n, t in tensors.items() if t.dtype in FP8_DTYPES and not n.endswith(SCALED_MARK)]
    if not fp8:
        return None
    scales = sum(1 for n in tensors if n.endswith(SCALE_SUFFIX))
    scaled = scales > 0 or any(n.endswith(SCALED_MARK) for n in tensors)
    counts: dict[str, int] = {}
    params = bits = 0
    for name, t in tensors.items():
        if name.endswith((SCALE_SUFFIX, SCALED_MARK)):
            continue
        counts[t.dtype] = counts.get(t.dtype, 0) + 1
        params += t.numel
        bits += t.numel * DTYPE_BITS.get(t.dtype, 16)
    return {"format": "fp8_scaled" if scaled else "fp8", "types": dict(sorted(counts.items())),
            "bits_per_weight": round(bits / params, 3) if params else None,
            "weights_bytes": sum(t.end - t.start for t in tensors.values()), "parameters": params,
            "scales": scales}


def fp8_findings(tensors: Mapping[str, TensorInfo], path: str, name_says_scaled: bool) -> list[Finding]:
    """An fp8 "scaled" file must carry a ``scale_weight`` beside each fp8 matrix: without them every
    weight is off by its scale (a NaN or noise video)."""
    quant = fp8_quantization(tensors)
    if quant is None:
        return []
    scaled = quant["format"] == "fp8_scaled" or name_says_scaled
    if not scaled:
        return []
    matrices = [n for n, t in tensors.items() if t.dtype in FP8_DTYPES and len(t.shape) == 2 and n.endswith(".weight")]
    missing = [n for n in matrices if n[: -len(".weight")] + SCALE_SUFFIX not in tensors]
    if not missing:
        return []
    return [Finding(ERROR, Code.FP8_SCALES_MISSING,
                    f"{display_name(path)} is an fp8 \"scaled\" file, but {len(missing)} of its {len(matrices)} fp8 "
                    f"weight matrices have no scale_weight (e.g. {missing[0]}); loaded so, every such weight is off by "
                    "its scale and the video is noise or black.",
                    "Download the file again, or use the model's fp8_e4m3fn (unscaled), fp16 or bf16 file.", path)]


def gguf_not_wan(header: GGUFHeader, path: str) -> Finding:
    """A GGUF file of another kind: a language model (llama, qwen, t5encoder ...) or another image model."""
    arch = header.architecture or "unnamed"
    example = next(iter(header.tensors), "none")
    return Finding(ERROR, Code.NOT_WAN,
                   f"{display_name(path)} is a GGUF file of another model (general.architecture \"{arch}\", "
                   f"{len(header.tensors):,} tensors such as {example[:60]}), not a Wan video transformer.",
                   "Use a Wan transformer GGUF (general.architecture \"wan\", e.g. city96's or QuantStack's "
                   "Wan2.x ...-Q4_K_M.gguf); text encoders and VAEs are used as .safetensors files.", path)


_GGML_NAMES = frozenset(name for name, _, _ in GGML_TYPES.values()) - set(DTYPE_BITS)


def quantization_of(tensors: Mapping[str, TensorInfo]) -> dict[str, Any] | None:
    """The quantization object of a transformer's tensors as Model Check read them (GGUF types or fp8)."""
    if any(t.dtype in _GGML_NAMES for t in tensors.values()):
        counts: dict[str, int] = {}
        for t in tensors.values():
            counts[t.dtype] = counts.get(t.dtype, 0) + 1
        params = sum(t.numel for t in tensors.values())
        size = sum(t.end - t.start for t in tensors.values())
        return {"format": "gguf", "types": dict(sorted(counts.items())),
                "bits_per_weight": round(8 * size / params, 3) if params else None, "weights_bytes": size,
                "parameters": params}
    return fp8_quantization(tensors)


def read_quantized_folder(src: FileSource, name: str, class_name: str | None, library: str | None,
                          config: dict[str, Any]) -> PartReading | None:
    """A transformer folder that holds one quantized single file (``fix --assemble`` keeps GGUF and fp8
    files as they are): its header read, or None for an ordinary diffusers folder."""
    base = name + "/"
    here = [e for e in src.files if e.path.startswith(base) and "/" not in e.path[len(base):]]
    ggufs = [e for e in here if e.path.lower().endswith(".gguf")]
    findings: list[Finding] = []
    tensors: dict[str, TensorInfo] = {}
    if ggufs:
        header = read_gguf(src, ggufs[0], tensors, findings)
        dtype = header.dominant_dtype if header else None
    else:
        single = [e for e in here if e.path.endswith(".safetensors")
                  and not e.path[len(base):].startswith("diffusion_pytorch_model")]
        if len(single) != 1:
            return None
        from core.check.components import read_safetensors
        header = read_safetensors(src, single[0], tensors, findings)
        if header is None or find_prefix(tensors) is None or fp8_quantization(tensors) is None:
            return None
        findings += fp8_findings(tensors, single[0].path, False)
        dtype = header.dominant_dtype
    comp = ComponentReport(name=name, class_name=class_name, library=library, folder=name,
                           files=tuple(e.path for e in src.files if e.path.startswith(base)),
                           size_bytes=sum(e.size for e in src.files if e.path.startswith(base)), dtype=dtype,
                           parameters=header.parameters if header is not None else None,
                           complete=not any(f.severity is ERROR for f in findings), config=config)
    return PartReading(comp, tensors, findings)
