"""The tensors a component's class builds from its config: names and shapes, without torch.

diffusers and transformers fill any weight a checkpoint lacks with random numbers (a noise
video) and drop any it does not expect, so Model Check compares a component's header
tensors with what its class will ask for. These tables mirror the classes' ``__init__``
(diffusers 0.42, transformers 5); ``tests/test_expected_tensors.py`` compares them with the
classes built on the ``meta`` device for the demo and the full-size configs.

Usage::

    from core.check.expected import expected_tensors, compare
    want = expected_tensors("WanTransformer3DModel", config)   # {name: shape}, or None (no table)
    problem = compare(want, header_tensors)                    # None, or a sentence

A config value a table needs that is not a whole number raises :class:`BadConfig`, whose
message names the key.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from functools import lru_cache
from operator import attrgetter
from types import MappingProxyType
from typing import Any

Shape = tuple[int, ...]
Table = dict[str, Shape]


class BadConfig(ValueError):
    """A config value the class needs is missing or not a whole number (``key`` names it)."""

    def __init__(self, key: str, value: Any, what: str = "a positive whole number") -> None:
        super().__init__(f"sets {key} to {str(value)[:40]}, but it must be {what}")
        self.key = key


MAX_SIZE = 2**24     # a width, a vocabulary, a sequence length
MAX_COUNT = 1024     # layers, blocks: tables loop over these


def _int(config: Mapping[str, Any], key: str, default: Any = None, *, zero: bool = False,
         most: int = MAX_SIZE) -> int:
    value = config.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not (0 if zero else 1) <= value <= most:
        raise BadConfig(key, value, f"a whole number from {0 if zero else 1} to {most:,}")
    return value


def _number(config: Mapping[str, Any], key: str, default: float, *, strict: bool = False) -> None:
    """A number in [0, 1); ``strict``: a float (transformers' configs refuse ``0`` for ``0.0``)."""
    value = config.get(key, default)
    kinds = (float,) if strict else (int, float)
    if not isinstance(value, kinds) or isinstance(value, bool) or not 0 <= value < 1:
        raise BadConfig(key, value, "a decimal number from 0 to 1" if strict else "a number from 0 to 1")


def _opt_int(config: Mapping[str, Any], key: str) -> int | None:
    return None if config.get(key) is None else _int(config, key)


def _ints(config: Mapping[str, Any], key: str, default: list[Any]) -> list[int]:
    value = config.get(key, default)
    if not isinstance(value, list) or not 0 < len(value) <= 16:
        raise BadConfig(key, value, "a list of whole numbers")
    return [_int({key: v}, key, most=MAX_COUNT) for v in value]


def _linear(out: dict[str, Shape], name: str, fan_in: int, fan_out: int, bias: bool = True) -> None:
    out[f"{name}.weight"] = (fan_out, fan_in)
    if bias:
        out[f"{name}.bias"] = (fan_out,)


def _norm(out: dict[str, Shape], name: str, dim: int, bias: bool = True) -> None:
    out[f"{name}.weight"] = (dim,)
    if bias:
        out[f"{name}.bias"] = (dim,)


# --------------------------------------------------------------------------- Wan transformer

def wan_transformer(config: Mapping[str, Any]) -> Table:
    """``WanTransformer3DModel``'s parameters (diffusers.models.transformers.transformer_wan)."""
    heads, head_dim = _int(config, "num_attention_heads", 40), _int(config, "attention_head_dim", 128)
    inner = heads * head_dim
    in_ch = _int(config, "in_channels", 16)
    out_ch = config.get("out_channels", 16) or in_ch
    out_ch = _int({"out_channels": out_ch}, "out_channels")
    patch = _ints(config, "patch_size", [1, 2, 2])
    text_dim, freq_dim = _int(config, "text_dim", 4096), _int(config, "freq_dim", 256)
    ffn, layers = _int(config, "ffn_dim", 13824), _int(config, "num_layers", 40, zero=True, most=MAX_COUNT)
    _int(config, "rope_max_seq_len", 1024)
    _number(config, "eps", 1e-6)
    if config.get("qk_norm", "rms_norm_across_heads") not in (None, "rms_norm_across_heads"):
        raise BadConfig("qk_norm", config.get("qk_norm"), '"rms_norm_across_heads" or null')
    image_dim, added_kv = _opt_int(config, "image_dim"), _opt_int(config, "added_kv_proj_dim")
    pos_len = _opt_int(config, "pos_embed_seq_len")
    t: Table = {"patch_embedding.weight": (inner, in_ch, *patch), "patch_embedding.bias": (inner,)}
    ce = "condition_embedder"
    _linear(t, f"{ce}.time_embedder.linear_1", freq_dim, inner)
    _linear(t, f"{ce}.time_embedder.linear_2", inner, inner)
    _linear(t, f"{ce}.time_proj", inner, inner * 6)
    _linear(t, f"{ce}.text_embedder.linear_1", text_dim, inner)
    _linear(t, f"{ce}.text_embedder.linear_2", inner, inner)
    if image_dim is not None:
        ie = f"{ce}.image_embedder"
        _norm(t, f"{ie}.norm1", image_dim)
        _linear(t, f"{ie}.ff.net.0.proj", image_dim, image_dim)
        _linear(t, f"{ie}.ff.net.2", image_dim, inner)
        _norm(t, f"{ie}.norm2", inner)
        if pos_len is not None:
            t[f"{ie}.pos_embed"] = (1, pos_len, image_dim)
    for i in range(layers):
        b = f"blocks.{i}"
        for attn in ("attn1", "attn2"):
            for proj in ("to_q", "to_k", "to_v", "to_out.0"):
                _linear(t, f"{b}.{attn}.{proj}", inner, inner)
            _norm(t, f"{b}.{attn}.norm_q", inner, bias=False)
            _norm(t, f"{b}.{attn}.norm_k", inner, bias=False)
        if added_kv is not None:
            _linear(t, f"{b}.attn2.add_k_proj", added_kv, inner)
            _linear(t, f"{b}.attn2.add_v_proj", added_kv, inner)
            _norm(t, f"{b}.attn2.norm_added_k", inner, bias=False)
        if config.get("cross_attn_norm", True):
            _norm(t, f"{b}.norm2", inner)
        _linear(t, f"{b}.ffn.net.0.proj", inner, ffn)
        _linear(t, f"{b}.ffn.net.2", ffn, inner)
        t[f"{b}.scale_shift_table"] = (1, 6, inner)
    _linear(t, "proj_out", inner, out_ch * math.prod(patch))
    t["scale_shift_table"] = (1, 2, inner)
    return t


# --------------------------------------------------------------------------- Wan VAE

def _conv3d(out: Table, name: str, cin: int, cout: int, k: Shape = (3, 3, 3)) -> None:
    out[f"{name}.weight"] = (cout, cin, *k)
    out[f"{name}.bias"] = (cout,)


def _resblock(out: Table, name: str, cin: int, cout: int) -> None:
    out[f"{name}.norm1.gamma"] = (cin, 1, 1, 1)
    _conv3d(out, f"{name}.conv1", cin, cout)
    out[f"{name}.norm2.gamma"] = (cout, 1, 1, 1)
    _conv3d(out, f"{name}.conv2", cout, cout)
    if cin != cout:
        _conv3d(out, f"{name}.conv_shortcut", cin, cout, (1, 1, 1))


def _attention(out: Table, name: str, dim: int) -> None:
    out[f"{name}.norm.gamma"] = (dim, 1, 1)
    out[f"{name}.to_qkv.weight"], out[f"{name}.to_qkv.bias"] = (dim * 3, dim, 1, 1), (dim * 3,)
    out[f"{name}.proj.weight"], out[f"{name}.proj.bias"] = (dim, dim, 1, 1), (dim,)


def _resample(out: Table, name: str, dim: int, mode: str, up_out: int | None = None) -> None:
    cout = (up_out or dim // 2) if mode.startswith("up") else dim
    out[f"{name}.resample.1.weight"], out[f"{name}.resample.1.bias"] = (cout, dim, 3, 3), (cout,)
    if mode == "upsample3d":
        _conv3d(out, f"{name}.time_conv", dim, dim * 2, (3, 1, 1))
    elif mode == "downsample3d":
        _conv3d(out, f"{name}.time_conv", dim, dim, (3, 1, 1))


def _mid(out: Table, name: str, dim: int) -> None:
    _attention(out, f"{name}.attentions.0", dim)
    _resblock(out, f"{name}.resnets.0", dim, dim)
    _resblock(out, f"{name}.resnets.1", dim, dim)


def wan_vae(config: Mapping[str, Any]) -> Table:
    """``AutoencoderKLWan``'s parameters (diffusers.models.autoencoders.autoencoder_kl_wan)."""
    base = _int(config, "base_dim", 96)
    dec_base = _int(config, "decoder_base_dim", base) if config.get("decoder_base_dim") is not None else base
    z = _int(config, "z_dim", 16)
    mult = _ints(config, "dim_mult", [1, 2, 4, 4])
    blocks = _int(config, "num_res_blocks", 2, zero=True, most=MAX_COUNT)
    _number(config, "dropout", 0.0)
    scales = config.get("attn_scales", [])
    if not isinstance(scales, list) or not all(isinstance(x, (int, float)) for x in scales):
        raise BadConfig("attn_scales", scales, "a list of numbers")
    down = config.get("temperal_downsample", [False, True, True])
    if not isinstance(down, list) or len(down) < len(mult) - 1:
        raise BadConfig("temperal_downsample", down)
    residual = bool(config.get("is_residual", False))
    in_ch, out_ch = _int(config, "in_channels", 3), _int(config, "out_channels", 3)
    t: Table = {}
    # encoder
    dims = [base * u for u in [1, *mult]]
    _conv3d(t, "encoder.conv_in", in_ch, dims[0])
    n, scale = 0, 1.0
    for i, (cin, cout) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
        last = i == len(mult) - 1
        if residual:
            b = f"encoder.down_blocks.{i}"
            for j in range(blocks):
                _resblock(t, f"{b}.resnets.{j}", cin if j == 0 else cout, cout)
            if not last:
                _resample(t, f"{b}.downsampler", cout, "downsample3d" if down[i] else "downsample2d")
            continue
        for _ in range(blocks):
            _resblock(t, f"encoder.down_blocks.{n}", cin, cout)
            n += 1
            if scale in scales:
                _attention(t, f"encoder.down_blocks.{n}", cout)
                n += 1
            cin = cout
        if not last:
            _resample(t, f"encoder.down_blocks.{n}", cout, "downsample3d" if down[i] else "downsample2d")
            n += 1
            scale /= 2.0
    _mid(t, "encoder.mid_block", dims[-1])
    t["encoder.norm_out.gamma"] = (dims[-1], 1, 1, 1)
    _conv3d(t, "encoder.conv_out", dims[-1], z * 2)
    _conv3d(t, "quant_conv", z * 2, z * 2, (1, 1, 1))
    _conv3d(t, "post_quant_conv", z, z, (1, 1, 1))
    # decoder
    up = list(down)[::-1]
    dims = [dec_base * u for u in [mult[-1], *mult[::-1]]]
    _conv3d(t, "decoder.conv_in", z, dims[0])
    _mid(t, "decoder.mid_block", dims[0])
    for i, (cin, cout) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
        if i > 0 and not residual:
            cin //= 2
        up_flag = i != len(mult) - 1
        mode = ("upsample3d" if up[i] else "upsample2d") if up_flag else None
        b = f"decoder.up_blocks.{i}"
        for j in range(blocks + 1):
            _resblock(t, f"{b}.resnets.{j}", cin if j == 0 else cout, cout)
        if mode and residual:
            _resample(t, f"{b}.upsampler", cout, mode, up_out=cout)
        elif mode:
            _resample(t, f"{b}.upsamplers.0", cout, mode)
    t["decoder.norm_out.gamma"] = (dims[-1], 1, 1, 1)
    _conv3d(t, "decoder.conv_out", dims[-1], out_ch)
    return t


# --------------------------------------------------------------------------- UMT5 text encoder

def umt5_encoder(config: Mapping[str, Any]) -> Table:
    """``UMT5EncoderModel``'s saved parameters (transformers; the tied ``encoder.embed_tokens``
    is not saved, and may be)."""
    d, kv, heads = _int(config, "d_model", 512), _int(config, "d_kv", 64), _int(config, "num_heads", 6)
    ff, vocab = _int(config, "d_ff", 1024), _int(config, "vocab_size", 250112)
    layers = _int(config, "num_layers", 8, most=MAX_COUNT)
    _number(config, "layer_norm_epsilon", 1e-6, strict=True)
    _number(config, "dropout_rate", 0.1, strict=True)
    buckets = _int(config, "relative_attention_num_buckets", 32)
    gated = str(config.get("feed_forward_proj", "gated-gelu")).startswith("gated")
    t: Table = {"shared.weight": (vocab, d), "encoder.final_layer_norm.weight": (d,)}
    for i in range(layers):
        b = f"encoder.block.{i}.layer"
        for proj in "qkv":
            t[f"{b}.0.SelfAttention.{proj}.weight"] = (heads * kv, d)
        t[f"{b}.0.SelfAttention.o.weight"] = (d, heads * kv)
        t[f"{b}.0.SelfAttention.relative_attention_bias.weight"] = (buckets, heads)
        t[f"{b}.0.layer_norm.weight"] = (d,)
        for wi in (("wi_0", "wi_1") if gated else ("wi",)):
            t[f"{b}.1.DenseReluDense.{wi}.weight"] = (ff, d)
        t[f"{b}.1.DenseReluDense.wo.weight"] = (d, ff)
        t[f"{b}.1.layer_norm.weight"] = (d,)
    return t


# dtypes the safetensors library reads but torch cannot copy into a model's weights
UNLOADABLE_DTYPES = frozenset({"F4", "F6_E2M3", "F6_E3M2", "F8_E8M0", "C64"})

# Optional tensors a checkpoint may carry that the class ties or ignores.
OPTIONAL: dict[str, frozenset[str]] = {"UMT5EncoderModel": frozenset({"encoder.embed_tokens.weight"})}

TABLES: dict[str, Callable[[Mapping[str, Any]], Table]] = {
    "WanTransformer3DModel": wan_transformer,
    "AutoencoderKLWan": wan_vae,
    "UMT5EncoderModel": umt5_encoder,
}


def expected_tensors(class_name: str | None, config: Mapping[str, Any]) -> Table | None:
    """{name: shape} that ``class_name`` builds from ``config``; None when there is no table.

    Raises :class:`BadConfig` when a value the table needs is not a whole number.
    """
    if (class_name or "") not in TABLES:
        return None
    try:
        key = json.dumps(config, sort_keys=True)
    except (TypeError, ValueError):  # not JSON (never from a file): build it afresh
        return TABLES[class_name or ""](config)
    return _cached_table(class_name or "", key)


@lru_cache(maxsize=64)
def _cached_table(class_name: str, config_json: str) -> Table:
    """One table per (class, config): the experts of A14B and repeated checks share it.

    The returned mapping is read-only, so the cached table cannot be changed by a caller.
    """
    return MappingProxyType(TABLES[class_name](json.loads(config_json)))


def compare(expected: Table, found: Mapping[str, Any], class_name: str = "") -> str | None:
    """A sentence saying how ``found`` ({name: TensorInfo or shape}) differs, or None when it fits.

    >>> compare({"a": (2,)}, {"a": (2,), "b": (1,)})
    '1 tensor the class does not have (b)'
    """
    optional = OPTIONAL.get(class_name, frozenset())
    if _fits_exactly(expected, found):
        return None
    missing = [n for n in expected if n not in found]
    unexpected = [n for n in found if n not in expected and n not in optional]
    wrong = [n for n, shape in expected.items() if n in found and tuple(_shape(found[n])) != shape]
    if found.get("encoder.embed_tokens.weight") is not None and "shared.weight" in expected and \
            tuple(_shape(found["encoder.embed_tokens.weight"])) != expected["shared.weight"]:
        wrong.append("encoder.embed_tokens.weight")
    odd = [n for n, info in found.items() if getattr(info, "dtype", None) in UNLOADABLE_DTYPES]
    parts = []
    if odd:
        parts.append(f"{_count(len(odd))} stored as {found[odd[0]].dtype}, which torch cannot load ({_some(odd)})")
    if missing:
        parts.append(f"{_count(len(missing))} missing ({_some(missing)})")
    if unexpected:
        parts.append(f"{_count(len(unexpected))} the class does not have ({_some(unexpected)})")
    if wrong:
        first = wrong[0]
        held = ", ".join(map(str, _shape(found[first])))
        wanted = ", ".join(map(str, expected.get(first, expected.get("shared.weight", ()))))
        parts.append(f"{_count(len(wrong))} of the wrong shape ({_some(wrong)}; {first} is [{held}] in the weights "
                     f"but [{wanted}] by the config)")
    return "; ".join(parts) or None


def _shape(value: Any) -> tuple[int, ...]:
    return tuple(getattr(value, "shape", value))


def _fits_exactly(expected: Table, found: Mapping[str, Any]) -> bool:
    """The common case, a healthy component, decided with C-level passes (thousands of tensors per check)."""
    if len(found) != len(expected):
        return False
    try:
        held = list(map(found.__getitem__, expected))
    except KeyError:  # a name differs: the full comparison says which
        return False
    if held and isinstance(held[0], tuple) and hasattr(held[0], "dtype"):  # TensorInfo
        return (list(map(_SHAPE_OF, held)) == list(expected.values())
                and not set(map(_DTYPE_OF, held)) & UNLOADABLE_DTYPES)
    return list(map(_shape, held)) == list(expected.values())


_SHAPE_OF = attrgetter("shape")
_DTYPE_OF = attrgetter("dtype")


def _count(n: int) -> str:
    return f"{n:,} tensor{'s' if n != 1 else ''}"


def _some(names: list[str]) -> str:
    return ", ".join(names[:3]) + (f" and {len(names) - 3:,} more" if len(names) > 3 else "")
