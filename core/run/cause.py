"""Why a step went NaN: a damaged weight (by file and tensor), else the first layer that went non-finite.

Called once a :class:`~core.run.guard.NonFiniteStep` stopped a run. First every loaded
parameter is checked; a non-finite one is looked up in its component's safetensors files
(the index's ``weight_map`` or the headers) and read back from the file, so that "the file is
damaged" is only said when the file itself holds the NaN. Otherwise the failing step's
transformer call is run again with a forward hook on every module, and the first module whose
output is non-finite is named and explained: fp16 overflow (checked by running that module again
in fp32), an attention kernel, a hook that is not ours (an extension or a cache), a LoRA's scale.

Usage::

    cause = find_cause(pipe, report, plan, failure, guard.calls)
    print(cause.sentence, cause.remedy, cause.retry)

torch is imported lazily, inside the functions that need it.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from core.check.report import ModelReport
from core.run.disk_offload import ON_DISK
from core.run.guard import NonFiniteStep, TransformerCall

WEIGHTED = ("transformer", "transformer_2", "text_encoder", "vae", "image_encoder")
FP16_MAX = 65504.0
_PARTS = {"attn1": "self-attention", "attn2": "cross-attention", "ffn": "feed-forward", "norm1": "first norm",
          "norm2": "second norm", "norm3": "third norm", "proj_out": "output projection",
          "patch_embedding": "patch embedding", "condition_embedder": "condition embedder",
          "norm_out": "output norm"}


@dataclass(frozen=True)
class Cause:
    """Where a non-finite run started and what it means.

    ``kind``: ``damaged_file`` | ``weight_overflow`` | ``fp16_overflow`` | ``attention_kernel`` |
    ``hook`` | ``cache_hook`` | ``lora`` | ``vae`` | ``unknown``. ``retry`` says whether a safer
    plan can help (never for a damaged file or a LoRA).
    """

    kind: str
    sentence: str
    remedy: str
    retry: bool
    component: str | None = None
    module: str | None = None
    file: str | None = None
    tensor: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def find_cause(pipe: Any, report: ModelReport, precision: str, attention: str,
               failure: NonFiniteStep, calls: list[TransformerCall]) -> Cause:
    """The cause of ``failure`` (see the module's docstring); never raises."""
    try:
        damaged = scan_parameters(pipe, report, precision)
        if damaged is not None:
            return damaged
        if failure.where == "frames":
            vae = getattr(getattr(pipe, "vae", None), "dtype", None)
            name = str(vae).replace("torch.", "") if vae is not None else "its precision"
            return Cause("vae", f"The VAE decode turned finite latents into {failure.kind} (VAE in {name}).",
                         "Run the VAE in fp32 (vae_precision fp32).", True, component="vae")
        return locate(pipe, precision, attention, failure, calls)
    except Exception as exc:  # noqa: BLE001 - the diagnosis must never hide the failure itself
        return Cause("unknown", f"The cause could not be found ({type(exc).__name__}: {exc}).",
                     "Try precision bf16 (fp32 on GPUs without bf16).", True)


# --------------------------------------------------------------------------- damaged weights


def scan_parameters(pipe: Any, report: ModelReport, precision: str) -> Cause | None:
    """The first loaded parameter holding NaN or Inf, named by file and tensor; None when all are finite."""
    import torch
    for component in WEIGHTED:
        module = getattr(pipe, component, None)
        if not isinstance(module, torch.nn.Module) or getattr(module, ON_DISK, False):
            continue    # offloaded to disk: its parameters are placeholders, the values are in the offload files
        for name, param in module.named_parameters():
            if param.device.type == "meta" or param.numel() == 0:
                continue
            if bool(torch.isfinite(param.detach().sum(dtype=torch.float32))):
                continue
            if bool(torch.isfinite(param.detach()).all()):
                continue  # only the float32 sum overflowed
            return _damaged(report, component, name, param, precision)
    return None


def _damaged(report: ModelReport, component: str, name: str, param: Any, precision: str) -> Cause:
    import torch
    kind = "NaN" if bool(torch.isnan(param).any()) else "Inf"
    folder = Path(report.path) / component
    file = weight_file(folder, name)
    where = f"{component}/{file}" if file else f"{component}/"
    stored = _stored_tensor(folder / file, name) if file else None
    if stored is not None and bool(torch.isfinite(stored).all()):
        biggest = float(stored.float().abs().max())
        return Cause("weight_overflow", f"The weight {name} in {where} holds values up to {biggest:.3g}, beyond "
                     f"{precision}'s range: loaded in {precision} it becomes {kind}.",
                     "Run in bf16 (fp32 on GPUs without bf16).", True, component, name, where, name)
    return Cause("damaged_file", f"{where}, tensor {name} holds {kind}: the file is damaged.",
                 f"Download {where} again (the model's Hugging Face repository, same path), then run "
                 "`python -m core check --deep` on the folder.", False, component, name, where, name)


def weight_file(folder: Path, tensor: str) -> str | None:
    """The safetensors file in ``folder`` that holds ``tensor``: from the index's weight_map, else the headers."""
    for index in sorted(folder.glob("*.safetensors.index.json")):
        try:
            found = json.loads(index.read_text()).get("weight_map", {}).get(tensor)
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(found, str) and "/" not in found and "\\" not in found:
            return found
    from core.check.safetensors_header import HeaderError, read_header
    files = sorted(folder.glob("*.safetensors"))
    for file in files:
        try:
            if tensor in read_header(file).tensors:
                return file.name
        except (OSError, HeaderError):
            continue
    return files[0].name if len(files) == 1 else None


def _stored_tensor(path: Path, tensor: str) -> Any:
    """The tensor as stored in the file (its own dtype), or None when it cannot be read."""
    try:
        from safetensors import safe_open
        with safe_open(str(path), framework="pt") as handle:
            return handle.get_tensor(tensor) if tensor in handle.keys() else None
    except Exception:  # noqa: BLE001 - unreadable: treated as damaged
        return None


# --------------------------------------------------------------------------- the first bad layer


class _Found(Exception):
    """Raised from a forward hook to stop the re-run at the first non-finite output."""


@dataclass
class _First:
    name: str
    module: Any
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    inputs_finite: bool


def locate(pipe: Any, precision: str, attention: str, failure: NonFiniteStep,
           calls: list[TransformerCall]) -> Cause:
    """Run the failing step's transformer calls again with hooks; explain the first non-finite module."""
    for call in calls:
        root = getattr(pipe, call.component)
        foreign = {n for n, m in root.named_modules() if m._forward_hooks or m._forward_pre_hooks}
        first = _first_non_finite(root, call)
        if first is None:
            continue
        return _explain(first, call.component, root, foreign, precision, attention, failure)
    if not calls:
        return Cause("unknown", f"{failure.sentence} The transformer's inputs were not kept, so the layer "
                     "could not be found.", "Try precision bf16 (fp32 on GPUs without bf16).", True)
    return Cause("unknown", f"{failure.sentence} Run again, the transformer's output is finite: the "
                 "scheduler step or a nondeterministic kernel made it non-finite.",
                 "Try precision bf16 (fp32 on GPUs without bf16) and native attention.", True)


def _first_non_finite(root: Any, call: TransformerCall) -> _First | None:
    import torch
    found: list[_First] = []

    def hook(name: str) -> Any:
        def check(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> None:
            if not found and not _finite(output):
                found.append(_First(name, module, args, kwargs, _finite((args, kwargs))))
                raise _Found()
        return check

    handles = [m.register_forward_hook(hook(n), with_kwargs=True) for n, m in root.named_modules() if n]
    try:
        with torch.no_grad():
            root(*call.args, **call.kwargs)
    except _Found:
        pass
    finally:
        for handle in handles:
            handle.remove()
    return found[0] if found else None


def _tensors(value: Any) -> list[Any]:
    import torch
    if isinstance(value, torch.Tensor):
        return [value] if value.is_floating_point() else []
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in _tensors(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _tensors(v)]
    sample = getattr(value, "sample", None)
    return _tensors(sample) if sample is not None else []


def _finite(value: Any) -> bool:
    import torch
    return all(bool(torch.isfinite(t).all()) for t in _tensors(value))


def describe(name: str) -> str:
    """A module's name for people: ``blocks.0.ffn.net.2`` -> "block 0's feed-forward (blocks.0.ffn.net.2)"."""
    match = re.match(r"blocks\.(\d+)\.(\w+)", name)
    if match:
        part = _PARTS.get(match[2], match[2])
        return f"block {match[1]}'s {part} ({name})"
    top = name.split(".")[0]
    return f"the {_PARTS.get(top, top)} ({name})"


def _explain(first: _First, component: str, root: Any, foreign: set[str], precision: str, attention: str,
             failure: NonFiniteStep) -> Cause:
    name = first.name
    where = describe(name)
    lineage = [".".join(name.split(".")[:i]) for i in range(len(name.split(".")), 0, -1)]
    step = failure.sentence
    produced = f"{where} in the {component} produced {failure.kind}"
    lora = next((n for n in lineage if hasattr(root.get_submodule(n), "lora_A")), None)
    if lora is not None:
        scaling = getattr(root.get_submodule(lora), "scaling", {}) or {}
        scales = ", ".join(f"{name!r} at scale {value:g}" for name, value in scaling.items()) or "scale unknown"
        return Cause("lora", f"{step} {produced}: the LoRA on {lora} ({scales}) pushed it out of range.",
                     "Lower the LoRA's strength or remove it; it was not dropped for you.", False, component, name)
    hooked = next((n for n in lineage if n in foreign), None)
    if hooked is not None and first.inputs_finite:
        registry = getattr(root.get_submodule(hooked), "_diffusers_hook", None)
        cache = registry is not None and any(
            "cache" in str(k) or "broadcast" in str(k) for k in getattr(registry, "hooks", {}))
        kind, what = ("cache_hook", "a cache hook") if cache else (
            "hook", "a forward hook that is not part of diffusers (an extension, a patched kernel or a cache)")
        return Cause(kind, f"{step} {produced} from finite inputs; {what} is on {hooked}.",
                     "Run without it: the model is loaded again, without hooks and with native attention.",
                     True, component, name)
    if not first.inputs_finite:
        parent = name.rsplit(".", 1)[0] if "." in name else name
        return Cause("unknown", f"{step} The values went non-finite between the layers of "
                     f"{describe(parent)} in the {component}, before {where}.",
                     "Try precision bf16 (fp32 on GPUs without bf16).", True, component, name)
    overflow = _fp32_peak(first) if _half(first) else None
    if overflow is not None:
        return Cause("fp16_overflow", f"{step} fp16 overflowed in {where} of the {component}: run in fp32 its "
                     f"output reaches {overflow:.3g}, beyond fp16's largest value {FP16_MAX:g}.",
                     "Run in bf16 (fp32 on GPUs without bf16).", True, component, name)
    is_attention = "Attention" in type(first.module).__name__ or name.split(".")[-1].startswith("attn")
    if is_attention:
        return Cause("attention_kernel", f"{step} {produced} from finite inputs: the attention kernel "
                     f"({attention}) misbehaves on this machine.", "Use native attention.", True, component, name)
    return Cause("unknown", f"{step} {produced} from finite inputs ({precision}).",
                 "Try precision bf16 (fp32 on GPUs without bf16).", True, component, name)


def _half(first: _First) -> bool:
    import torch
    params = list(first.module.parameters())
    dtypes = {p.dtype for p in params} | {t.dtype for t in _tensors((first.args, first.kwargs))}
    return torch.float16 in dtypes


def _fp32_peak(first: _First) -> float | None:
    """Run the module again in fp32 on fp32 copies of its inputs: its largest output if finite, else None."""
    import torch

    def up(value: Any) -> Any:
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            return value.float()
        if isinstance(value, tuple):
            return tuple(up(v) for v in value)
        if isinstance(value, list):
            return [up(v) for v in value]
        if isinstance(value, dict):
            return {k: up(v) for k, v in value.items()}
        return value

    module = copy.deepcopy(first.module).float()
    module._forward_hooks.clear()
    with torch.no_grad():
        output = module(*up(first.args), **up(first.kwargs))
    tensors = _tensors(output)
    if not tensors or not all(bool(torch.isfinite(t).all()) for t in tensors):
        return None
    return max(float(t.abs().max()) for t in tensors)
