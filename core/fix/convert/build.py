"""What each converted component becomes: its tensor names, shapes, dtypes and config.

Usage (inside :mod:`core.fix.convert.write`, before any weight is written)::

    from core.fix.convert.build import plan_component

    comp, model = plan_component(part, source.specs)   # a Component, and its class on ``meta``
    [(o.name, o.src, o.dtype, o.shape) for o in comp.outputs]

The DiT's names come from diffusers' own ``convert_wan_transformer_to_diffusers`` and the
Wan2.1 VAE's from ``convert_wan_vae_to_diffusers``, each run once on ``meta`` tensors of the
checkpoint's names and shapes, so that the tensors themselves can be streamed; the Wan2.2 VAE
and Wan's T5 encoder use our tables in :mod:`core.fix.convert.keys`. ComfyUI's fp8 "scaled"
weights become bf16. The result is checked against the diffusers / transformers class built on
the ``meta`` device: a name missing, unexpected or of the wrong shape stops the conversion.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from core.check.safetensors_header import DTYPE_BYTES
from core.errors import WanError
from core.fix.convert.keys import (
    COMFY_PREFIXES,
    DIT_MARK,
    IGNORED_TENSORS,
    T5_TO_UMT5,
    UMT5_IDENTITY,
    VAE22_TO_DIFFUSERS,
    WAN22_VAE_MARK,
    WAN_T5_MARK,
    WAN_VAE_MARK,
    RenameTable,
    rename,
    transformer_config,
    umt5_config,
    vae21_config,
    vae22_config,
)
from core.fix.convert.read import FP8_DTYPES, Part, torch_dtype

# The library of each output: diffusers for the DiT and VAE, transformers for the text encoder.
DIFFUSERS_LIB, TRANSFORMERS_LIB = "diffusers", "transformers"


@dataclass(frozen=True)
class OutTensor:
    """One output tensor: its name, dtype and shape, and how to make it from the source."""

    name: str
    src: str
    dtype: str
    shape: tuple[int, ...]
    view: tuple[tuple[int, ...], tuple[int, ...], int] | None = None   # as_strided of the source tensor
    scale: str | None = None                                          # a ComfyUI fp8 scale to multiply by

    @property
    def nbytes(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return int(n * DTYPE_BYTES[self.dtype])


@dataclass(frozen=True)
class Component:
    folder: str
    library: str
    class_name: str
    config: dict[str, Any]
    outputs: tuple[OutTensor, ...]


def strip_prefix(specs: Mapping[str, tuple[str, tuple[int, ...]]], mark: str) -> str:
    for prefix in ("", *COMFY_PREFIXES, "first_stage_model.", "vae."):
        if prefix + mark in specs:
            return prefix
    return ""


def _fp8_plan(specs: Mapping[str, tuple[str, tuple[int, ...]]], prefix: str
              ) -> tuple[dict[str, tuple[str, tuple[int, ...]]], dict[str, str]]:
    """Names without ``prefix`` -> (dtype, shape), leaving out ComfyUI's fp8 scales; and
    plain weight name -> the source name of its ``scale_weight``."""
    plain: dict[str, tuple[str, tuple[int, ...]]] = {}
    scales: dict[str, str] = {}
    for name, spec in specs.items():
        if not name.startswith(prefix) or name.endswith(IGNORED_TENSORS):
            continue
        short = name[len(prefix):]
        if short.endswith(".scale_weight"):
            scales[short[: -len(".scale_weight")] + ".weight"] = name
        else:
            plain[short] = spec
    return plain, scales


def _out_dtype(dtype: str) -> str:
    return "BF16" if dtype in FP8_DTYPES else dtype


def _traced(converter: Callable[[dict[str, Any]], dict[str, Any]],
            plain: Mapping[str, tuple[str, tuple[int, ...]]]) -> dict[str, tuple[str, Any]]:
    """Run a diffusers converter on meta tensors: new name -> (old name, as_strided view or None).

    Renamed tensors come back as the very same objects; split or reshaped ones as views of
    them, whose shape, stride and offset are replayed on the real tensor.
    """
    import torch
    meta = {k: torch.empty(shape, dtype=torch_dtype(dtype), device="meta") for k, (dtype, shape) in plain.items()}
    by_id = {id(t): k for k, t in meta.items()}
    converted = converter(dict(meta))
    traced: dict[str, tuple[str, Any]] = {}
    for new, t in converted.items():
        if id(t) in by_id:
            traced[new] = (by_id[id(t)], None)
        elif getattr(t, "_base", None) is not None and id(t._base) in by_id:
            traced[new] = (by_id[id(t._base)], (tuple(t.shape), tuple(t.stride()), t.storage_offset()))
        else:
            raise WanError(f"diffusers' converter computes {new} in a way that cannot be streamed.",
                           "Report this model; download its -Diffusers version meanwhile.")
    return traced


def _renamed(table: RenameTable, plain: Mapping[str, tuple[str, tuple[int, ...]]], what: str) -> dict[str, tuple[str, Any]]:
    out: dict[str, tuple[str, Any]] = {}
    unknown = []
    for name in plain:
        new = rename(name, table)
        if new is None:
            unknown.append(name)
        elif new in out:   # e.g. both shared.weight and encoder.embed_tokens.weight: the same tied tensor
            continue
        else:
            out[new] = (name, None)
    if unknown:
        raise WanError(f"The {what} has tensors this tool does not know: {', '.join(unknown[:3])}"
                       f"{' ...' if len(unknown) > 3 else ''}.", "Check that the file is the right part of a Wan model.")
    return out


def plan_component(part: Part, specs: Mapping[str, tuple[str, tuple[int, ...]]]) -> tuple[Component, Any]:
    """Names, shapes and config of one converted component, checked against its class (built on
    the meta device, and returned)."""
    if part.kind == "dit":
        from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers
        prefix = strip_prefix(specs, DIT_MARK)
        plain, scales = _fp8_plan(specs, prefix)
        try:
            config = transformer_config({k: s for k, (_, s) in plain.items()}, part.config)
        except (KeyError, ValueError) as exc:
            raise WanError(f"{part.label}: {exc if isinstance(exc, ValueError) else f'{exc} is missing'}",
                           "Check that the file is a whole Wan transformer.") from None
        mapping = _traced(convert_wan_transformer_to_diffusers, plain)
        vace = "vace_layers" in config
        library, cls = DIFFUSERS_LIB, "WanVACETransformer3DModel" if vace else "WanTransformer3DModel"
    elif part.kind == "vae":
        prefix = strip_prefix(specs, WAN_VAE_MARK)
        plain, scales = _fp8_plan(specs, prefix)
        shapes = {k: s for k, (_, s) in plain.items()}
        if WAN22_VAE_MARK in plain:
            config, mapping = vae22_config(shapes), _renamed(VAE22_TO_DIFFUSERS, plain, "Wan2.2 VAE")
        else:
            from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers
            config, mapping = vae21_config(shapes), _traced(convert_wan_vae_to_diffusers, plain)
        library, cls = DIFFUSERS_LIB, "AutoencoderKLWan"
    else:
        prefix = ""
        plain, scales = _fp8_plan(specs, prefix)
        original = WAN_T5_MARK in plain
        shapes = {k: s for k, (_, s) in plain.items()}
        config = umt5_config(shapes, original)
        mapping = _renamed(T5_TO_UMT5 if original else UMT5_IDENTITY, plain, "text encoder")
        library, cls = TRANSFORMERS_LIB, "UMT5EncoderModel"
    outputs = []
    for new, (old, view) in mapping.items():
        dtype, shape = plain[old]
        outputs.append(OutTensor(new, prefix + old, _out_dtype(dtype), tuple(view[0]) if view else shape,
                            view, scales.get(old)))
    comp = Component(part.role, library, cls, config, tuple(outputs))
    return comp, _check_against_class(comp, part.label)


def _empty_model(comp: Component) -> Any:
    """The component's class built on the meta device: names, shapes and config, no memory."""
    import torch
    if comp.library == TRANSFORMERS_LIB:
        import transformers
        config = transformers.UMT5Config(**comp.config)
        with torch.device("meta"):
            return getattr(transformers, comp.class_name)(config)
    import diffusers
    with torch.device("meta"):
        return getattr(diffusers, comp.class_name)(**comp.config)


def _check_against_class(comp: Component, label: str) -> Any:
    model = _empty_model(comp)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    tied = set(getattr(model, "_tied_weights_keys", None) or ())
    mine = {o.name: o.shape for o in comp.outputs}
    missing = [k for k in expected if k not in mine and k not in tied]
    extra = [k for k in mine if k not in expected]
    wrong = [k for k in mine if k in expected and mine[k] != expected[k]]
    if missing or extra or wrong:
        detail = (f"{len(missing)} missing (e.g. {missing[0]})" if missing else "") + \
                 (f"{'; ' if missing else ''}{len(extra)} unexpected (e.g. {extra[0]})" if extra else "") + \
                 (f"{'; ' if missing or extra else ''}{len(wrong)} of the wrong shape (e.g. {wrong[0]} "
                  f"{mine[wrong[0]]} instead of {expected[wrong[0]]})" if wrong else "")
        raise WanError(f"{label} does not convert into a complete {comp.class_name}: {detail}.",
                       "The file is damaged, incomplete or not the part it was named as; download it again.")
    return model
