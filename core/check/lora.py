"""What a LoRA file is, from its safetensors header alone (tensor names, shapes, metadata).

Formats, by tensor names (see WAN_FACTS.md, "LoRA files"):

- ``comfyui``: Wan's own module names, ``[diffusion_model.]blocks.N.self_attn.q`` with
  ``.lora_down/.lora_up.weight`` or ``.lora_A/.lora_B.weight``, ``.alpha``, ``.diff``, ``.diff_b``
  (ComfyUI, Kijai, lightx2v, ai-toolkit);
- ``diffusers``: peft names on diffusers modules, ``transformer.blocks.N.attn1.to_q.lora_A.weight``;
- ``musubi``: flattened kohya names, ``lora_unet_blocks_N_self_attn_q.lora_down.weight`` + ``.alpha``;
- ``lycoris``: LoHa / LoKr tensors (``hada_w1_a``, ``lokr_w1`` ...), which diffusers does not load for Wan;
- ``unknown``: a LoRA, but not one for Wan (SDXL, Flux ...) or with no layer we can name.

The widths tell the base: 1536 (Wan 1.3B), 3072 (Wan2.2 TI2V-5B), 5120 (Wan 14B and each A14B expert).

Usage::

    from core.check.lora import lora_from_header
    from core.check.safetensors_header import read_header
    info = lora_from_header(read_header(path), "Wan2.2-Lightning_T2V-A14B-4steps-lora_HIGH_fp16.safetensors")
    info.format, info.base, info.expert, info.distill_steps   # ('comfyui', 'wan-14b', 'high', 4)
"""

from __future__ import annotations

import posixpath
import re
import struct
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from core.check.codes import Code
from core.check.lora_registry import DISTILL_LORAS, distill_entry, distill_steps
from core.check.report import ComponentReport, Finding, Layout, ModelReport, Severity
from core.check.safetensors_header import SafetensorsHeader, TensorInfo

BASES: Mapping[int, str] = {1536: "wan-1.3b", 3072: "wan-5b", 5120: "wan-14b"}
BASE_NAMES: Mapping[str, str] = {"wan-1.3b": "Wan 1.3B", "wan-5b": "Wan2.2 TI2V-5B", "wan-14b": "Wan 14B"}
FORMAT_NAMES: Mapping[str, str] = {"comfyui": "ComfyUI/Kijai", "diffusers": "diffusers/peft", "musubi": "musubi/kohya",
                                   "lycoris": "LyCORIS", "unknown": "unknown"}

# "<module>.<part>[.weight|.bias]": the parts a LoRA file stores per layer it changes.
_PART = re.compile(r"^(?P<module>.+?)\.(?P<part>lora_down|lora_up|lora_A|lora_B|alpha|diff|diff_b|diff_m|dora_scale|"
                   r"lora_magnitude_vector|hada_w1_a|hada_w1_b|hada_w2_a|hada_w2_b|hada_t1|hada_t2|"
                   r"lokr_w1|lokr_w1_a|lokr_w1_b|lokr_w2|lokr_w2_a|lokr_w2_b|lokr_t2)(?:\.(?:weight|bias))?$")
_LORA_PARTS = frozenset({"lora_down", "lora_up", "lora_A", "lora_B", "hada_w1_a", "hada_w1_b", "lokr_w1",
                         "lokr_w1_a", "lokr_w2", "lokr_w2_a"})
_DOWN = frozenset({"lora_down", "lora_A"})
_UP = frozenset({"lora_up", "lora_B"})
_COMFY_PREFIXES = ("model.diffusion_model.", "diffusion_model.")
# Wan module names, original (ComfyUI) and diffusers; attention layers give the width.
_WAN_ORIGINAL = re.compile(r"^(blocks\.\d+\.(self_attn|cross_attn)\.(q|k|v|o|k_img|v_img|norm_q|norm_k|norm_k_img)|"
                           r"blocks\.\d+\.(ffn\.[02]|norm[123]|modulation)|head\.head|time_projection\.1|"
                           r"(text|time)_embedding\.[02]|img_emb\.proj\.[0-4]|patch_embedding)$")
_WAN_DIFFUSERS = re.compile(r"^transformer\.(blocks\.\d+\.(attn[12]\.(to_q|to_k|to_v|to_out\.0|add_k_proj|add_v_proj)|"
                            r"ffn\.net\.(0\.proj|2)|norm[123])|proj_out|patch_embedding|condition_embedder\..+)$")
_WAN_MUSUBI = re.compile(r"^lora_unet_(blocks_\d+_(self_attn|cross_attn)_(q|k|v|o|k_img|v_img)|blocks_\d+_ffn_[02]|"
                         r"head_head|time_projection_1|(text|time)_embedding_[02]|img_emb_proj_[0-4])$")
_ATTENTION = re.compile(r"(self_attn|cross_attn)[._](q|k|v|o)$|attn[12]\.(to_q|to_k|to_v|to_out\.0)$")
_IMAGE_LAYERS = re.compile(r"k_img|v_img|add_k_proj|add_v_proj|img_emb|image_embedder")
_BLOCK = re.compile(r"blocks[._](\d+)[._]")
# Other families' LoRAs, by the module names they use.
_OTHER_FAMILIES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("Flux", re.compile(r"double_blocks|single_blocks|single_transformer_blocks")),
    ("Stable Diffusion / SDXL", re.compile(r"down_blocks|up_blocks|mid_block|input_blocks|output_blocks|lora_te\d?_|"
                                           r"text_model|lora_unet_(down|up|mid|input|output)")),
    ("another diffusion transformer (SD3, HunyuanVideo, LTX, CogVideoX ...)", re.compile(r"transformer_blocks")),
)
_METADATA_KEYS = ("modelspec.architecture", "modelspec.title", "modelspec.description", "ss_base_model_version",
                  "ss_sd_model_name", "ss_output_name", "ss_dit_name", "base_model", "format", "ss_network_module",
                  "ss_training_comment", "name")
MAX_ALPHA_OFFSET = 1 << 20  # an alpha scalar is read only when it sits in the first MiB of tensor data


@dataclass(frozen=True)
class LoraInfo:
    """A LoRA file as its header describes it; ``findings`` say what is wrong with it on its own."""

    format: str                        # comfyui | diffusers | musubi | lycoris | unknown
    base: str | None                   # wan-1.3b | wan-5b | wan-14b | None
    task: str | None                   # t2v | i2v | None
    expert: str | None                 # high | low | None (Wan2.2 A14B)
    rank: int | None
    alpha: float | None
    modules: int                       # layers it changes
    distill_steps: int | None
    width: int | None = None           # the model width its attention layers are made for
    blocks: int = 0                    # transformer blocks it touches
    family: str | None = None          # another family's name (Flux, SDXL ...) when it is not for Wan
    kind: str | None = None            # lycoris: "LoHa" or "LoKr"
    registry_id: str | None = None     # a known distillation LoRA (core.check.lora_registry)
    findings: tuple[Finding, ...] = ()
    module_names: tuple[str, ...] = field(default=(), compare=False, repr=False)

    @property
    def is_wan(self) -> bool:
        return self.format in ("comfyui", "diffusers", "musubi") or (self.format == "lycoris" and self.family is None)

    @property
    def usable(self) -> bool:
        """A Wan LoRA in a format diffusers loads, with nothing wrong in the file itself."""
        return self.format in ("comfyui", "diffusers", "musubi") and not any(
            f.severity is Severity.ERROR for f in self.findings)

    @property
    def summary(self) -> str:
        """'ComfyUI/Kijai LoRA for Wan 14B, high-noise expert, rank 64, 400 layers, 4-step distillation'."""
        if not self.is_wan:
            return f"{FORMAT_NAMES[self.format]} LoRA" + (f" for {self.family}" if self.family else "")
        parts = [f"{FORMAT_NAMES[self.format]} {self.kind or ''} LoRA".replace("  ", " ")
                 + f" for {BASE_NAMES.get(self.base or '', f'a width of {self.width}' if self.width else 'Wan')}"]
        if self.task:
            parts.append(self.task.upper())
        if self.expert:
            parts.append(f"{self.expert}-noise expert")
        if self.rank:
            parts.append(f"rank {self.rank}")
        parts.append(f"{self.modules} layer{'s' if self.modules != 1 else ''}")
        if self.distill_steps:
            parts.append(f"{self.distill_steps}-step distillation")
        return ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """The ``"lora"`` object of ``python -m core check --json``."""
        return {"format": self.format, "base": self.base, "task": self.task, "expert": self.expert,
                "rank": self.rank, "alpha": self.alpha, "modules": self.modules,
                "distill_steps": self.distill_steps, "width": self.width, "blocks": self.blocks,
                "family": self.family, "registry_id": self.registry_id}


def split_name(name: str) -> tuple[str, str] | None:
    """``'a.b.lora_down.weight'`` -> ``('a.b', 'lora_down')``; None for a name that is no LoRA part."""
    m = _PART.match(name)
    return (m.group("module"), m.group("part")) if m else None


def looks_like_lora(names: Iterable[str]) -> bool:
    """Whether tensor names are a LoRA's (low-rank pairs, LoHa or LoKr factors), not a model's."""
    return any((sp := split_name(n)) is not None and sp[1] in _LORA_PARTS for n in names)


def normalise_names(names: Iterable[str]) -> dict[str, str]:
    """The key each tensor is given to diffusers under: Wan-named keys without a prefix get ``diffusion_model.``.

    diffusers converts ComfyUI keys only when they start with ``diffusion_model.``; the same
    keys without it (or with ComfyUI's ``model.diffusion_model.``) would be refused. The
    loader (core.run.lora) and the prediction (core.check.lora_match) both use this mapping.

    >>> normalise_names(["blocks.0.self_attn.q.lora_down.weight"])
    {'blocks.0.self_attn.q.lora_down.weight': 'diffusion_model.blocks.0.self_attn.q.lora_down.weight'}
    """
    names = list(names)
    modules = [(n, split_name(n)) for n in names]
    plain = [sp[0] for _, sp in modules if sp is not None]
    bare = bool(plain) and all(_WAN_ORIGINAL.match(m) for m in plain)
    out = {}
    for n in names:
        if n.startswith("model.diffusion_model."):
            out[n] = n[len("model."):]
        elif bare:
            out[n] = "diffusion_model." + n
        else:
            out[n] = n
    return out


def lora_from_header(header: SafetensorsHeader, file_name: str,
                     read_bytes: Callable[[TensorInfo], bytes | None] | None = None) -> LoraInfo:
    """Describe the LoRA whose header is ``header`` (``file_name``: its name, for the expert and steps).

    ``read_bytes(tensor)`` may return one small tensor's bytes (the ``.alpha`` scalar); without it,
    or when the alpha lies far into the file, alpha comes from the metadata or stays None.
    """
    tensors = header.tensors
    parts: dict[str, dict[str, TensorInfo]] = {}
    for name, info in tensors.items():
        sp = split_name(name)
        if sp is not None:
            module = _strip_comfy_prefix(sp[0])
            parts.setdefault(module, {})[sp[1]] = info
    texts = [file_name] + _metadata_texts(header.metadata)
    fmt, family, kind = _format(parts)
    width = _width(parts) if fmt != "unknown" else None
    base = BASES.get(width or 0)
    blocks = len({int(m.group(1)) for mod in parts if (m := _BLOCK.search(mod + "."))})
    rank = _rank(parts)
    entry = distill_entry(file_name)
    steps = distill_steps(texts) if fmt != "unknown" else None
    info = LoraInfo(
        format=fmt, base=base, task=_task(parts, texts, fmt), expert=_expert(header.metadata, file_name),
        rank=rank, alpha=_alpha(header, parts, read_bytes), modules=len(parts), distill_steps=steps,
        width=width, blocks=blocks, family=family, kind=kind,
        registry_id=entry.id if entry is not None and fmt != "unknown" else None,
        module_names=tuple(sorted(parts)))
    return _with_findings(info)


def _strip_comfy_prefix(module: str) -> str:
    for prefix in _COMFY_PREFIXES:
        if module.startswith(prefix):
            return module[len(prefix):]
    return module


def _format(parts: Mapping[str, Mapping[str, TensorInfo]]) -> tuple[str, str | None, str | None]:
    """(format, other family or None, LyCORIS kind or None) from the module names and parts."""
    all_parts = {p for ps in parts.values() for p in ps}
    modules = list(parts)
    family = next((name for name, pattern in _OTHER_FAMILIES if any(pattern.search(m) for m in modules)), None)
    if any(p.startswith(("hada_", "lokr_")) for p in all_parts):
        kind = "LoHa" if any(p.startswith("hada_") for p in all_parts) else "LoKr"
        return "lycoris", family, kind
    if family is not None:
        return "unknown", family, None
    counts = Counter("musubi" if _WAN_MUSUBI.match(m) else "diffusers" if _WAN_DIFFUSERS.match(m)
                     else "comfyui" if _WAN_ORIGINAL.match(m) else "unknown" for m in modules)
    known = [(n, f) for f, n in counts.items() if f != "unknown"]
    return (max(known)[1] if known else "unknown"), None, None


def _width(parts: Mapping[str, Mapping[str, TensorInfo]]) -> int | None:
    """The model width: attention layers' input (down) and output (up) sizes, the most common one."""
    widths: Counter[int] = Counter()
    for module, ps in parts.items():
        if not _ATTENTION.search(module):
            continue
        for part, info in ps.items():
            if len(info.shape) != 2:
                continue
            if part in _DOWN or part == "hada_w1_b":
                widths[info.shape[1]] += 1
            elif part in _UP or part == "hada_w1_a":
                widths[info.shape[0]] += 1
            elif part == "diff":
                widths.update(info.shape)
    return widths.most_common(1)[0][0] if widths else None


def _rank(parts: Mapping[str, Mapping[str, TensorInfo]]) -> int | None:
    ranks = Counter(info.shape[0] for ps in parts.values() for part, info in ps.items()
                    if part in _DOWN and len(info.shape) >= 2)
    if not ranks:
        ranks = Counter(info.shape[1] for ps in parts.values() for part, info in ps.items()
                        if part == "hada_w1_a" and len(info.shape) == 2)
    return ranks.most_common(1)[0][0] if ranks else None


def _metadata_texts(metadata: Mapping[str, str]) -> list[str]:
    return [str(metadata[k])[:500] for k in _METADATA_KEYS if k in metadata]


def _task(parts: Mapping[str, Any], texts: list[str], fmt: str) -> str | None:
    """i2v when it changes image-attention layers; else what the metadata, then the file name, says."""
    if fmt == "unknown":
        return None
    if any(_IMAGE_LAYERS.search(m) for m in parts):
        return "i2v"
    for text in texts[1:] + texts[:1]:        # metadata first, the file name last
        words = set(re.split(r"[^a-z0-9]+", text.lower()))
        low = text.lower()
        if "ti2v" in low:
            continue
        if "i2v" in words or re.search(r"(?<![a-z])i2v", low):
            return "i2v"
        if "t2v" in words or re.search(r"(?<![a-z])t2v", low):
            return "t2v"
    return None


def _expert(metadata: Mapping[str, str], file_name: str) -> str | None:
    """high | low for a Wan2.2 A14B expert's LoRA: from the metadata, then the file name."""
    for text in _metadata_texts(metadata) + [file_name]:
        words = re.split(r"[^a-z0-9]+", text.lower())
        joined = " ".join(words)
        high = "high" in words or "highnoise" in words or "high noise" in joined
        low = "low" in words or "lownoise" in words or "low noise" in joined
        if high != low:
            return "high" if high else "low"
    return None


def _alpha(header: SafetensorsHeader, parts: Mapping[str, Mapping[str, TensorInfo]],
           read_bytes: Callable[[TensorInfo], bytes | None] | None) -> float | None:
    meta = header.metadata.get("ss_network_alpha")
    if meta is not None:
        try:
            return float(meta)
        except ValueError:
            pass
    alphas = [ps["alpha"] for ps in parts.values() if "alpha" in ps and ps["alpha"].numel == 1]
    if not alphas or read_bytes is None:
        return None
    first = min(alphas, key=lambda t: t.start)
    if first.end > MAX_ALPHA_OFFSET:
        return None
    raw = read_bytes(first)
    return _scalar(raw, first.dtype) if raw else None


def _scalar(raw: bytes, dtype: str) -> float | None:
    """One number of ``dtype`` from its little-endian bytes."""
    try:
        if dtype == "F32":
            return float(struct.unpack("<f", raw[:4])[0])
        if dtype == "F16":
            return float(struct.unpack("<e", raw[:2])[0])
        if dtype == "BF16":
            return float(struct.unpack("<f", b"\0\0" + raw[:2])[0])
        if dtype == "F64":
            return float(struct.unpack("<d", raw[:8])[0])
    except struct.error:
        return None
    return None


def _with_findings(info: LoraInfo) -> LoraInfo:
    """The file's own verdict: a Wan LoRA we load (info), or why not (error)."""
    error, infol = Severity.ERROR, Severity.INFO
    if info.format == "lycoris":
        found = Finding(error, Code.LORA_UNSUPPORTED,
                        f"This is a LyCORIS {info.kind} file, not a plain LoRA: diffusers cannot load "
                        f"{info.kind} weights into a Wan model.",
                        "Use a plain LoRA version of it (lora_down/lora_up), or convert it to one in the tool "
                        "that made it.")
    elif info.family is not None:
        found = Finding(error, Code.LORA_OTHER_FAMILY,
                        f"This LoRA is for {info.family}, not for Wan: its layers do not exist in a Wan model.",
                        "Use a LoRA made for Wan 2.1 / 2.2.")
    elif info.format == "unknown":
        found = Finding(error, Code.LORA_UNSUPPORTED,
                        f"This LoRA's {info.modules} layers have names that match no Wan layer, so nothing of it "
                        "could be applied.", "Use a LoRA made for Wan 2.1 / 2.2 (ComfyUI, diffusers or musubi format).")
    else:
        where = f" (no published Wan model has the width {info.width})" if info.width and not info.base else ""
        steps = ""
        if info.distill_steps:
            entry = next((e for e in DISTILL_LORAS if e.id == info.registry_id), None)
            steps = (f" It is a {info.distill_steps}-step distillation LoRA: use {info.distill_steps} steps, "
                     f"guidance {entry.guidance if entry else 1.0:g}"
                     + (f", shift {entry.shift:g}" if entry else "") + ".")
        found = Finding(infol, Code.LORA_FILE,
                        f"This is a LoRA, not a model: {info.summary}{where}.{steps}",
                        "Use it with a model: `python -m core check MODEL --lora FILE` says how it fits, "
                        "`python -m core generate MODEL --lora FILE ...` uses it.")
    return replace(info, findings=(found,))



def lora_report(shown: str, file_path: str, size: int, header: SafetensorsHeader, file_findings: Iterable[Finding],
                read_bytes: Callable[[TensorInfo], bytes | None] | None = None) -> ModelReport:
    """Model Check's report on a LoRA file: not a model (``loadable`` false), with its ``lora`` facts.

    ``file_findings``: what reading the file found (cut short, extra bytes); alpha is read only from an
    intact file.
    """
    file_findings = tuple(file_findings)
    info = lora_from_header(header, posixpath.basename(file_path), None if file_findings else read_bytes)
    component = ComponentReport(name="lora", folder="", files=(file_path,), size_bytes=size,
                                dtype=header.dominant_dtype, parameters=header.parameters,
                                complete=not any(f.severity is Severity.ERROR for f in file_findings))
    return ModelReport(path=shown, layout=Layout.SINGLE_FILE, components=(component,), parameters=header.parameters,
                       findings=file_findings + info.findings, lora=info)
