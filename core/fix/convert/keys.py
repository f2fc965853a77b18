"""Key mappings and configs for converting original Wan checkpoints to diffusers, as data.

``core.fix.convert`` reads these tables; nothing here imports torch, diffusers or transformers.
Where diffusers has its own converter (the Wan DiT and the Wan2.1 VAE,
``diffusers.loaders.single_file_utils``) it is used instead and nothing is repeated here;
these tables cover what diffusers cannot convert: the Wan2.2 VAE (z_dim 48) and Wan's own
T5 encoder (to transformers' ``UMT5EncoderModel``).

Usage::

    from core.fix.convert.keys import T5_TO_UMT5, VAE22_TO_DIFFUSERS, rename
    rename("blocks.3.ffn.gate.0.weight", T5_TO_UMT5)
    # 'encoder.block.3.layer.1.DenseReluDense.wi_0.weight'
    rename("decoder.upsamples.1.upsamples.3.resample.1.weight", VAE22_TO_DIFFUSERS)
    # 'decoder.up_blocks.1.upsampler.resample.1.weight'
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from core.check.signals import WAN22_LATENTS_MEAN, WAN22_LATENTS_STD

Shapes = Mapping[str, tuple[int, ...]]


@dataclass(frozen=True)
class RenameTable:
    """``first``: the first matching (pattern, replacement) renames the stem of a name;
    ``then``: every (pattern, replacement) is applied afterwards, in order."""

    first: tuple[tuple[str, str], ...]
    then: tuple[tuple[str, str], ...] = ()


def rename(name: str, table: RenameTable) -> str | None:
    """The new name of ``name``, or None when no ``first`` rule matches (an unknown tensor)."""
    for pattern, repl in table.first:
        new, n = re.subn(pattern, repl, name)
        if n:
            for p, r in table.then:
                new = re.sub(p, r, new)
            return new
    return None


# --------------------------------------------------------------------------- T5 encoder

# Wan's T5 (wan/modules/t5.py, T5Encoder with shared_pos=False) -> transformers UMT5EncoderModel.
# T5FeedForward computes fc2(fc1(x) * gate(x)) with gate = Sequential(Linear, GELU(tanh));
# UMT5's gated-gelu computes wo(gelu(wi_0(x)) * wi_1(x)): so gate.0 is wi_0 and fc1 is wi_1
# (checked numerically against a forward pass of Wan's T5 in tests/test_convert.py).
T5_TO_UMT5 = RenameTable(first=(
    (r"^token_embedding\.weight$", "shared.weight"),
    (r"^blocks\.(\d+)\.norm1\.weight$", r"encoder.block.\1.layer.0.layer_norm.weight"),
    (r"^blocks\.(\d+)\.attn\.([qkvo])\.weight$", r"encoder.block.\1.layer.0.SelfAttention.\2.weight"),
    (r"^blocks\.(\d+)\.pos_embedding\.embedding\.weight$",
     r"encoder.block.\1.layer.0.SelfAttention.relative_attention_bias.weight"),
    (r"^blocks\.(\d+)\.norm2\.weight$", r"encoder.block.\1.layer.1.layer_norm.weight"),
    (r"^blocks\.(\d+)\.ffn\.gate\.0\.weight$", r"encoder.block.\1.layer.1.DenseReluDense.wi_0.weight"),
    (r"^blocks\.(\d+)\.ffn\.fc1\.weight$", r"encoder.block.\1.layer.1.DenseReluDense.wi_1.weight"),
    (r"^blocks\.(\d+)\.ffn\.fc2\.weight$", r"encoder.block.\1.layer.1.DenseReluDense.wo.weight"),
    (r"^norm\.weight$", "encoder.final_layer_norm.weight"),
))

# A text encoder already in transformers' naming (ComfyUI's umt5_xxl_*.safetensors): kept,
# except the embedding, which UMT5EncoderModel ties to ``shared.weight``.
UMT5_IDENTITY = RenameTable(first=(
    (r"^encoder\.embed_tokens\.weight$", "shared.weight"),
    (r"^(shared\.weight|encoder\..*)$", r"\1"),
))

# Marks that tell the two namings apart.
WAN_T5_MARK = "blocks.0.ffn.gate.0.weight"
UMT5_MARK = "encoder.block.0.layer.1.DenseReluDense.wi_0.weight"


def umt5_config(shapes: Shapes, original: bool) -> dict[str, Any]:
    """``UMT5Config`` keyword arguments read from the encoder's tensor shapes.

    ``original``: Wan's names (``token_embedding``, ``blocks.N``) rather than transformers'.
    """
    if original:
        emb, q, ffn, bias = ("token_embedding.weight", "blocks.0.attn.q.weight", "blocks.0.ffn.fc1.weight",
                             "blocks.0.pos_embedding.embedding.weight")
        layers = _count(shapes, r"^blocks\.(\d+)\.")
    else:
        emb = "shared.weight" if "shared.weight" in shapes else "encoder.embed_tokens.weight"
        q, ffn, bias = ("encoder.block.0.layer.0.SelfAttention.q.weight", "encoder.block.0.layer.1.DenseReluDense.wi_1.weight",
                        "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight")
        layers = _count(shapes, r"^encoder\.block\.(\d+)\.")
    vocab, d_model = shapes[emb]
    buckets, heads = shapes[bias]
    return dict(
        vocab_size=vocab, d_model=d_model, d_kv=shapes[q][0] // heads, d_ff=shapes[ffn][0],
        num_layers=layers, num_decoder_layers=layers, num_heads=heads,
        relative_attention_num_buckets=buckets, relative_attention_max_distance=128,
        feed_forward_proj="gated-gelu", layer_norm_epsilon=1e-6, tie_word_embeddings=False,
        pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
    )


# --------------------------------------------------------------------------- Wan2.2 VAE

# Wan2.2's VAE (wan/modules/vae2_2.py) nests its stages: encoder.downsamples.i.downsamples.j
# (j < num_res_blocks: residual blocks, then the resample) and decoder.upsamples.i.upsamples.j
# (j <= num_res_blocks: residual blocks, then the resample). diffusers' AutoencoderKLWan with
# is_residual=True names them down_blocks.i.resnets.j / .downsampler and up_blocks.i.resnets.j
# / .upsampler. This mirrors convert_vae_22 in diffusers' scripts/convert_wan_to_diffusers.py.
VAE22_TO_DIFFUSERS = RenameTable(
    first=(
        (r"^conv1\.", "quant_conv."),
        (r"^conv2\.", "post_quant_conv."),
        (r"^(encoder|decoder)\.conv1\.", r"\1.conv_in."),
        (r"^(encoder|decoder)\.head\.0\.", r"\1.norm_out."),
        (r"^(encoder|decoder)\.head\.2\.", r"\1.conv_out."),
        (r"^(encoder|decoder)\.middle\.0\.", r"\1.mid_block.resnets.0."),
        (r"^(encoder|decoder)\.middle\.1\.", r"\1.mid_block.attentions.0."),
        (r"^(encoder|decoder)\.middle\.2\.", r"\1.mid_block.resnets.1."),
        (r"^encoder\.downsamples\.(\d+)\.downsamples\.\d+\.(resample|time_conv)\.", r"encoder.down_blocks.\1.downsampler.\2."),
        (r"^encoder\.downsamples\.(\d+)\.downsamples\.(\d+)\.", r"encoder.down_blocks.\1.resnets.\2."),
        (r"^decoder\.upsamples\.(\d+)\.upsamples\.\d+\.(resample|time_conv)\.", r"decoder.up_blocks.\1.upsampler.\2."),
        (r"^decoder\.upsamples\.(\d+)\.upsamples\.(\d+)\.", r"decoder.up_blocks.\1.resnets.\2."),
    ),
    then=(
        (r"\.residual\.0\.", ".norm1."),
        (r"\.residual\.2\.", ".conv1."),
        (r"\.residual\.3\.", ".norm2."),
        (r"\.residual\.6\.", ".conv2."),
        (r"\.shortcut\.", ".conv_shortcut."),
    ),
)

# Marks of the two Wan VAEs (original names).
WAN_VAE_MARK = "decoder.middle.0.residual.0.gamma"
WAN22_VAE_MARK = "decoder.upsamples.0.upsamples.0.residual.2.weight"

_VAE_STRUCTURE = dict(dim_mult=[1, 2, 4, 4], num_res_blocks=2, temperal_downsample=[False, True, True])


def vae21_config(shapes: Shapes) -> dict[str, Any]:
    """``AutoencoderKLWan`` arguments for a Wan2.1 VAE (the library's latent statistics are Wan2.1's)."""
    return dict(base_dim=shapes["encoder.conv1.weight"][0], z_dim=shapes["conv2.weight"][0], **_VAE_STRUCTURE)


def vae22_config(shapes: Shapes) -> dict[str, Any]:
    """``AutoencoderKLWan`` arguments for a Wan2.2 VAE: residual, 2x2 patchified RGB, 16x spatial."""
    in_channels = shapes["encoder.conv1.weight"][1]
    z_dim = shapes["conv2.weight"][0]
    config: dict[str, Any] = dict(
        base_dim=shapes["encoder.conv1.weight"][0],
        decoder_base_dim=shapes["decoder.conv1.weight"][0] // _VAE_STRUCTURE["dim_mult"][-1],
        z_dim=z_dim, is_residual=True, in_channels=in_channels, out_channels=shapes["decoder.head.2.weight"][0],
        patch_size=math.isqrt(in_channels // 3), scale_factor_temporal=4, scale_factor_spatial=16,
        **_VAE_STRUCTURE)
    if z_dim == len(WAN22_LATENTS_MEAN):
        config.update(latents_mean=list(WAN22_LATENTS_MEAN), latents_std=list(WAN22_LATENTS_STD))
    return config


# --------------------------------------------------------------------------- Wan DiT

# Tensors of ComfyUI files that are not weights: the fp8 marker and an embedded tokenizer.
IGNORED_TENSORS = ("scaled_fp8", "spiece_model")

# Marks of a DiT checkpoint in original names, and of one already in diffusers names.
DIT_MARK = "patch_embedding.weight"
DIT_DIFFUSERS_MARK = "blocks.0.attn1.to_q.weight"
COMFY_PREFIXES = ("model.diffusion_model.", "diffusion_model.", "model.")
HEAD_DIM = 128  # every published Wan DiT; used only when a config does not give num_heads


def transformer_config(shapes: Shapes, original: Mapping[str, Any] | None) -> dict[str, Any]:
    """``WanTransformer3DModel`` (or ``WanVACETransformer3DModel``) arguments for an original DiT.

    Widths come from the tensor shapes (original key names); ``original`` (the Wan
    ``config.json``, absent for single files) gives ``num_heads``, ``eps`` and ``vace_layers``.
    Raises ValueError with a sentence when the heads cannot be known.
    """
    original = dict(original or {})
    dim, in_channels, *patch = shapes["patch_embedding.weight"]
    heads = original.get("num_heads")
    if not isinstance(heads, int) or heads <= 0:
        if dim % HEAD_DIM:
            raise ValueError(f"The transformer is {dim} wide, which is not a multiple of 128 heads' width, "
                             "and it has no config.json that gives num_heads.")
        heads = dim // HEAD_DIM
    if dim % heads:
        raise ValueError(f"config.json gives num_heads {heads}, which does not divide the width {dim}.")
    config: dict[str, Any] = dict(
        patch_size=list(patch), num_attention_heads=heads, attention_head_dim=dim // heads,
        in_channels=in_channels, out_channels=shapes["head.head.weight"][0] // math.prod(patch),
        text_dim=shapes["text_embedding.0.weight"][1], freq_dim=shapes["time_embedding.0.weight"][1],
        ffn_dim=shapes["blocks.0.ffn.0.weight"][0], num_layers=_count(shapes, r"^blocks\.(\d+)\."),
        cross_attn_norm="blocks.0.norm3.weight" in shapes, qk_norm="rms_norm_across_heads",
        eps=float(original.get("eps", 1e-6)), image_dim=None, added_kv_proj_dim=None,
        rope_max_seq_len=1024, pos_embed_seq_len=None)
    if "img_emb.proj.1.weight" in shapes:
        config.update(image_dim=shapes["img_emb.proj.1.weight"][1], added_kv_proj_dim=dim)
    if "img_emb.emb_pos" in shapes:
        config["pos_embed_seq_len"] = shapes["img_emb.emb_pos"][1]
    if "vace_patch_embedding.weight" in shapes:
        layers = original.get("vace_layers")
        n = _count(shapes, r"^vace_blocks\.(\d+)\.")
        if not isinstance(layers, list) or len(layers) != n:
            step = config["num_layers"] // n if n else 1
            layers = list(range(0, config["num_layers"], step))[:n]
        config.update(vace_layers=layers, vace_in_channels=shapes["vace_patch_embedding.weight"][1])
    return config


# --------------------------------------------------------------------------- scheduler, tokenizer

def scheduler_config(shift: float) -> dict[str, Any]:
    """``UniPCMultistepScheduler`` arguments for Wan's flow matching with ``flow_shift`` = ``shift``."""
    return dict(num_train_timesteps=1000, prediction_type="flow_prediction", use_flow_sigmas=True,
                flow_shift=float(shift), solver_order=2, solver_type="bh2", lower_order_final=True)


TOKENIZER_CLASS = "T5TokenizerFast"
TOKENIZER_MAX_FILE = 256 * 2**20   # a tokenizer folder holds only small files; larger ones are not copied
TOKENIZER_NEEDS_ONE_OF = ("tokenizer.json", "spiece.model")


def _count(shapes: Shapes, pattern: str) -> int:
    rx = re.compile(pattern)
    return len({m.group(1) for m in map(rx.match, shapes) if m})
