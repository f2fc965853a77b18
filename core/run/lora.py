"""LoRAs on a loaded Wan pipeline, per expert, through diffusers' own calls.

Each LoRA is read with safetensors, its keys given the ``diffusion_model.`` prefix diffusers
needs when a ComfyUI file lacks it (core.check.lora.normalise_names, the same mapping the
prediction uses), and loaded with ``pipe.load_lora_weights(state, adapter_name=...,
load_into_transformer_2=...)`` into the expert(s) core.check.lora_match.targets_for names.
Strengths are set on each transformer separately (``transformer.set_adapters``): the
pipeline's ``set_adapters`` switches off, on every expert, the adapters it is not given, so
a LoRA meant for one expert could silently vanish from the other. After setting them, each
expert's active adapters are read back and compared with what was asked.

LoRAs go on before any fp8 / layerwise casting (diffusers cannot load them onto float8
storage); a run with other LoRAs first takes the old ones off (unfused first, when fused), so
a LoRA never stays on by accident.

Usage::

    from core.run.lora import apply_loras
    state = apply_loras(pipe, [LoraChoice("style.safetensors", 0.8, "low")], previous=())
    state.adapters       # per LoRA: adapter name, components, strength
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.check.lora import normalise_names
from core.check.lora_match import LoraChoice, fingerprint, read_lora, targets_for
from core.errors import WanError

COMPONENTS = ("transformer", "transformer_2")


@dataclass(frozen=True)
class LoadedLora:
    """One LoRA on the pipeline: its adapter name, the components it is in, its strength."""

    choice: LoraChoice
    adapter: str
    components: tuple[str, ...]
    size_bytes: int = 0
    fingerprint: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """What the MP4's metadata and the history record about it."""
        return {"file": Path(self.choice.path).name, "path": self.choice.path, "strength": self.choice.strength,
                "expert": self.choice.expert, "components": list(self.components), "size_bytes": self.size_bytes,
                "fingerprint": self.fingerprint}


@dataclass(frozen=True)
class LoraState:
    """The LoRAs a pipeline carries now (``choices`` as asked, in order), and whether they are fused."""

    choices: tuple[LoraChoice, ...] = ()
    adapters: tuple[LoadedLora, ...] = ()
    fused: tuple[str, ...] = ()          # components whose weights have the LoRAs merged in
    notes: tuple[str, ...] = field(default=(), compare=False)

    def to_metadata(self) -> list[dict[str, Any]]:
        return [a.to_dict() for a in self.adapters]


def adapter_name(index: int, choice: LoraChoice) -> str:
    """A peft adapter name for the ``index``-th LoRA (letters, digits and _ only: peft keys modules by it).

    >>> adapter_name(0, LoraChoice("/x/Wan2.2-Lightning_T2V-A14B-4steps-lora_HIGH_fp16.safetensors", 1.0, "high"))
    'lora0_Wan2_2_Lightning_T2V_A14B_4steps_lora_HIGH_fp16_high'
    """
    stem = re.sub(r"[^A-Za-z0-9_]", "_", Path(choice.path).stem)[:60]
    return f"lora{index}_{stem}" + (f"_{choice.expert}" if choice.expert else "")


def has_layerwise_casting(pipe: Any) -> bool:
    """Whether a transformer stores its weights in fp8 (layerwise casting hooks): LoRAs cannot go on then."""
    for name in COMPONENTS:
        model = getattr(pipe, name, None)
        registry = getattr(model, "_diffusers_hook", None)
        if registry is not None and "layerwise_casting" in getattr(registry, "hooks", {}):
            return True
    return False


def apply_loras(pipe: Any, wanted: Sequence[LoraChoice], previous: LoraState | None = None,
                fuse: bool = False) -> LoraState:
    """Make the pipeline carry exactly ``wanted`` (in order, at their strengths); returns the new state.

    Nothing changes when ``wanted`` equals what is on already. Otherwise the old LoRAs come off
    first. Raises WanError with a sentence (and leaves no LoRA on) when one cannot be loaded.
    ``fuse``: merge them into the weights (faster steps) when nothing else needs them unfused.
    """
    previous = previous or LoraState()
    wanted = tuple(wanted)
    if wanted == previous.choices:
        return previous
    remove_loras(pipe, previous)
    if not wanted:
        return LoraState()
    if has_layerwise_casting(pipe):
        raise WanError("LoRAs must be loaded before the model's weights are cast to fp8, and this model is already "
                       "stored in fp8.", "Load the model again (the LoRAs then go on first), or choose bf16.")
    two = getattr(pipe, "transformer_2", None) is not None
    loaded: list[LoadedLora] = []
    notes: list[str] = []
    try:
        for component in COMPONENTS:
            _fp8_layers_compute_in_their_dtype(getattr(pipe, component, None))
        for index, choice in enumerate(wanted):
            loaded.append(_load_one(pipe, index, choice, two))
        _set_strengths(pipe, loaded)
        fused: tuple[str, ...] = ()
        if fuse and not _plain_weights(pipe, loaded):
            notes.append("The LoRAs stay as adapters (not fused): the transformer is stored quantized (GGUF or "
                         "fp8), and merging them would change its stored weights.")
        elif fuse:
            fused = _fuse(pipe, loaded)
    except WanError:
        remove_loras(pipe, LoraState(wanted, tuple(loaded)))
        raise
    except Exception as exc:  # noqa: BLE001 - diffusers/peft: size mismatch, bad keys, out of memory
        remove_loras(pipe, LoraState(wanted, tuple(loaded)))
        name = Path(wanted[len(loaded)].path).name if len(loaded) < len(wanted) else "the LoRAs"
        raise WanError(f"{name} could not be put on the model ({type(exc).__name__}: {str(exc)[:300]}); no LoRA "
                       "is on now.", "Run `python -m core check MODEL --lora FILE`: it says why a LoRA does not fit.",
                       repr(exc)) from exc
    return LoraState(wanted, tuple(loaded), fused, tuple(notes))


def _load_one(pipe: Any, index: int, choice: LoraChoice, two: bool) -> LoadedLora:
    from safetensors.torch import load_file
    info, problems, _ = read_lora(choice.path)
    if problems or info is None or not info.usable:
        found = (problems or list(info.findings if info else []))
        said = found[0].message if found else f"{Path(choice.path).name} is not a LoRA this tool can load."
        raise WanError(said, found[0].remedy if found else "")
    components = targets_for(choice, info, two)
    state = load_file(choice.path)
    renamed = normalise_names(state)
    state = {renamed[k]: v for k, v in state.items()}
    name = adapter_name(index, choice)
    for component in components:
        pipe.load_lora_weights(dict(state), adapter_name=name, load_into_transformer_2=component == "transformer_2")
    import os
    return LoadedLora(choice, name, components, os.path.getsize(choice.path), fingerprint(choice.path))


def _set_strengths(pipe: Any, loaded: Sequence[LoadedLora]) -> None:
    """Each expert's adapters at their strengths, set on that expert alone, then read back."""
    for component in COMPONENTS:
        model = getattr(pipe, component, None)
        mine = [a for a in loaded if component in a.components]
        if model is None or not mine:
            continue
        model.set_adapters([a.adapter for a in mine], [a.choice.strength for a in mine])
    for component in COMPONENTS:
        model = getattr(pipe, component, None)
        expected = sorted(a.adapter for a in loaded if component in a.components)
        if model is None or not expected:
            continue
        active = sorted(_active_adapters(model))
        if active != expected:
            raise WanError(f"The LoRAs on the {component} are {active or 'none'} after setting them, not {expected} "
                           "as asked.", "Report this; the LoRAs were taken off so none stays on by accident.")


def _active_adapters(model: Any) -> list[str]:
    from peft.tuners.tuners_utils import BaseTunerLayer
    for module in model.modules():
        if isinstance(module, BaseTunerLayer):
            active = module.active_adapters
            return list(active) if isinstance(active, (list, tuple)) else [active]
    return []


def _fp8_layers_compute_in_their_dtype(model: Any) -> None:
    """Give each fp8-stored layer (core.run.quantized's Fp8Linear) the dtype it computes in.

    peft stores a LoRA in its base layer's weight dtype unless the layer names a ``compute_dtype``
    (its rule for quantized layers): without it, the LoRA would be rounded to fp8 and every step
    would fail with "mul_cpu_reduced_float ... Float8_e4m3fn".
    """
    if model is None:
        return
    import torch
    fp8 = (torch.float8_e4m3fn, torch.float8_e5m2)
    counts: dict[Any, int] = {}
    for p in model.parameters():       # the dtype most of the other weights are in: the one it computes in
        if p.is_floating_point() and p.dtype not in fp8:
            counts[p.dtype] = counts.get(p.dtype, 0) + p.numel()
    compute = max(counts, key=counts.__getitem__) if counts else None
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if isinstance(weight, torch.Tensor) and weight.dtype in fp8 and not hasattr(module, "compute_dtype"):
            module.compute_dtype = compute or torch.bfloat16


def _plain_weights(pipe: Any, loaded: Sequence[LoadedLora]) -> bool:
    """Whether every layer the LoRAs sit on keeps a plain float weight (no GGUF, no fp8): only those fuse."""
    import torch
    from peft.tuners.tuners_utils import BaseTunerLayer
    plain = (torch.float32, torch.bfloat16, torch.float16)
    for component in {c for a in loaded for c in a.components}:
        for module in getattr(pipe, component).modules():
            if isinstance(module, BaseTunerLayer):
                weight = module.get_base_layer().weight
                if type(weight) not in (torch.Tensor, torch.nn.Parameter) or weight.dtype not in plain:
                    return False
    return True


def _fuse(pipe: Any, loaded: Sequence[LoadedLora]) -> tuple[str, ...]:
    components = tuple(c for c in COMPONENTS if any(c in a.components for a in loaded))
    pipe.fuse_lora(components=list(components), lora_scale=1.0)
    return components


def remove_loras(pipe: Any, state: LoraState | None) -> None:
    """Take every LoRA of ``state`` off the pipeline (unfused first when fused)."""
    if state is None or not (state.adapters or state.fused):
        return
    if state.fused:
        pipe.unfuse_lora(components=list(state.fused))
    present = set()
    for component in COMPONENTS:
        model = getattr(pipe, component, None)
        if model is not None and getattr(model, "peft_config", None):
            present.update(model.peft_config)
    names = [a.adapter for a in state.adapters if a.adapter in present]
    if names and present <= set(names):    # only ours: the layers go back to plain ones (no empty wrappers)
        pipe.unload_lora_weights()
    elif names:                            # someone else's adapters stay
        pipe.delete_adapters(names)


def should_fuse(plan: Any) -> bool:
    """Fuse only where it pays and nothing needs the LoRAs apart: on the GPU, bf16/fp16/fp32 weights kept
    as they are (no fp8 storage, no GGUF), and no offload hooks that move the weights."""
    precision = getattr(getattr(plan, "precision", None), "value", "")
    placement = getattr(getattr(plan, "placement", None), "value", "")
    return (getattr(plan, "device", "cpu") == "cuda" and precision in ("bf16", "fp16", "fp32")
            and placement in ("all_on_device", "none"))


def lora_label(state: LoraState | None) -> str | None:
    """How a run's LoRAs appear in its plan label (Performance tab): 'Lightning_HIGH 1@high, style 0.8'."""
    if state is None or not state.adapters:
        return None
    return ", ".join(f"{Path(a.choice.path).stem[:40]} {a.choice.strength:g}"
                     + (f"@{a.choice.expert}" if a.choice.expert else "") for a in state.adapters)


def resolve_loras(loras: Sequence[Any]) -> tuple[tuple[LoraChoice, ...], list[str]]:
    """GenerationConfig.loras (LoraChoice, or "FILE[:STRENGTH][@high|@low]" text) checked before any work:
    (choices, sentences) for strengths that are not numbers, missing files, the same LoRA twice."""
    from core.check.lora_match import duplicate_problems, parse_lora
    choices: list[LoraChoice] = []
    errors: list[str] = []
    for item in loras or ():
        if isinstance(item, LoraChoice):
            choice = item
        else:
            try:
                choice = parse_lora(str(item))
            except ValueError as exc:
                errors.append(str(exc))
                continue
        if not isinstance(choice.strength, (int, float)) or choice.strength != choice.strength:
            errors.append(f"The strength of the LoRA {Path(choice.path).name} is not a number: {choice.strength!r}.")
        elif not Path(choice.path).is_file():
            errors.append(f"The LoRA file {choice.path} does not exist; check the path.")
        choices.append(choice)
    return tuple(choices), errors + duplicate_problems(choices)
