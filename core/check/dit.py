"""What a Wan DiT is, read from its tensor names and shapes (or, failing that, its config).

Usage::

    facts = dit_facts(tensors, config)
    facts.task, facts.size_class, facts.in_channels, facts.out_channels
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from core.check import signals
from core.check.safetensors_header import TensorInfo

# One tensor per block in either naming (original: modulation; diffusers: scale_shift_table).
_BLOCK = re.compile(r"^blocks\.(\d+)\.(?:modulation|scale_shift_table)$", re.MULTILINE)


@dataclass(frozen=True)
class DitFacts:
    dim: int | None = None
    in_channels: int | None = None
    out_channels: int | None = None
    num_layers: int | None = None
    text_dim: int | None = None
    features: frozenset[str] = frozenset()
    prefix: str = ""          # e.g. "model.diffusion_model." in ComfyUI files
    from_headers: bool = False

    @property
    def is_wan(self) -> bool:
        return "wan_dit" in self.features

    @property
    def size_class(self) -> str | None:
        return signals.SIZE_CLASS_BY_DIM.get(self.dim or 0)

    @property
    def task(self) -> str | None:
        for rule, task in signals.TASK_RULES:
            if rule.startswith("in_channels="):
                if self.in_channels == int(rule.split("=")[1]):
                    return task
            elif rule in self.features:
                return task
        return None

    @property
    def shape_key(self) -> tuple[Any, ...]:
        """What two experts of one model must share."""
        return (self.dim, self.in_channels, self.out_channels, self.num_layers, self.text_dim, self.features)


def find_prefix(names: Mapping[str, Any]) -> str | None:
    """The prefix before ``patch_embedding.weight`` ("" for plain names), or None if absent."""
    target = signals.PATCH_EMBEDDING
    for name in names:
        if name.endswith(target):
            prefix = name[: -len(target)]
            if prefix == "" or prefix.endswith("."):
                return prefix
    return None


def dit_facts_from_tensors(tensors: Mapping[str, TensorInfo]) -> DitFacts | None:
    """Facts from header tensors, or None when these are not a DiT's tensors."""
    prefix = find_prefix(tensors)
    if prefix is None:
        return None
    # One newline-joined string makes each signal a single substring search.
    names = tensors if not prefix else (n[len(prefix):] for n in tensors if n.startswith(prefix))
    blob = "\n" + "\n".join(names)
    features = {feat for orig, diff, feat in signals.WAN_DIT_FEATURES if orig in blob or diff in blob}
    if "\nblocks.0.self_attn." in blob or "\nblocks.0.attn1." in blob:
        features.add("wan_dit")
    patch = tensors[prefix + signals.PATCH_EMBEDDING].shape
    out = next((tensors[prefix + h].shape[0] // 4 for h in signals.OUTPUT_HEADS if prefix + h in tensors), None)
    text = next((tensors[prefix + t].shape for t in signals.TEXT_EMBEDDINGS if prefix + t in tensors), None)
    layers = set(_BLOCK.findall(blob))
    return DitFacts(
        dim=patch[0] if patch else None, in_channels=patch[1] if len(patch) > 1 else None,
        out_channels=out, num_layers=len(layers) or None,
        text_dim=text[1] if text and len(text) > 1 else None,
        features=frozenset(features), prefix=prefix, from_headers=True)


def dit_facts_from_config(config: Mapping[str, Any]) -> DitFacts | None:
    """Facts from a diffusers transformer config or an original Wan ``config.json``."""
    cls = str(config.get("_class_name") or "")
    features: set[str] = set()
    if "Wan" in cls or config.get("model_type") in {"t2v", "i2v", "ti2v", "flf2v", "vace", "s2v", "animate"}:
        features.add("wan_dit")
    if "num_attention_heads" in config:  # diffusers
        dim = _int(config.get("num_attention_heads")) * _int(config.get("attention_head_dim"), 128)
        in_ch, out_ch = _int(config.get("in_channels")), _int(config.get("out_channels"))
        if config.get("image_dim"):
            features.add("image_branch")
        if config.get("pos_embed_seq_len"):
            features.add("flf2v")
    elif "dim" in config:  # original Wan
        dim = _int(config.get("dim"))
        in_ch, out_ch = _int(config.get("in_dim")), _int(config.get("out_dim"))
        # The original config cannot tell Wan2.1 I2V (CLIP branch) from Wan2.2 I2V; headers can.
        if config.get("model_type") == "flf2v":
            features.add("flf2v")
    else:
        return None
    if "VACE" in cls or config.get("vace_layers") or config.get("model_type") == "vace":
        features.add("vace")
    if "Animate" in cls or config.get("model_type") == "animate":
        features.add("animate")
    if config.get("model_type") == "s2v":
        features.add("s2v")
    return DitFacts(dim=dim or None, in_channels=in_ch or None, out_channels=out_ch or None,
                    num_layers=_int(config.get("num_layers")) or None,
                    text_dim=_int(config.get("text_dim")) or None, features=frozenset(features))


def _int(value: Any, default: int = 0) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def dit_facts(tensors: Mapping[str, TensorInfo], config: Mapping[str, Any]) -> DitFacts | None:
    """Prefer what the headers say; fall back to the config when there are no headers."""
    return dit_facts_from_tensors(tensors) if tensors else dit_facts_from_config(config)


def wan_version(task: str | None, size_class: str | None, experts: int, image_branch: bool,
                has_boundary: bool = False, name: str = "") -> str | None:
    """The Wan version these facts settle, by the rules in ``signals.VERSION_RULES``."""
    named_22 = any(mark in name.lower() for mark in signals.WAN22_NAME_MARKS)
    facts = {"task": task, "size_class": size_class, "experts": experts, "image_branch": image_branch,
             "has_boundary": has_boundary, "named_22": named_22}
    for rule, version in signals.VERSION_RULES:
        if all(facts.get(k) == v for k, v in rule.items()):
            return version
    return None


def vae_z_dim_from_tensors(tensors: Mapping[str, TensorInfo]) -> tuple[str | None, int | None]:
    """(kind, z_dim) of a Wan VAE from its original-name tensors, or (None, None)."""
    if not any(n.endswith(signals.WAN_VAE_MARK) for n in tensors):
        return None, None
    kind = "wan2.2" if any(n.endswith(signals.WAN22_VAE_MARK) for n in tensors) else "wan2.1"
    conv2 = next((t.shape for n, t in tensors.items()
                  if n.endswith("conv2.weight") and not n.startswith(("encoder", "decoder"))), None)
    z = conv2[0] if conv2 else {"wan2.1": 16, "wan2.2": 48}[kind]
    return kind, z
