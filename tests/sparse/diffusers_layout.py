"""Full-size ``-Diffusers`` folders and Hugging Face cache entries with sparse weights.

Every file a real Wan ``-Diffusers`` repository has is written: ``model_index.json``,
each component's config, tokenizer files and the safetensors shards with their index.
Tensor names and shapes come from diffusers' and transformers' own classes built inside
``accelerate.init_empty_weights()`` (no memory, well under a second each), and the shards
are split the way ``save_pretrained(max_shard_size="5GB")`` splits them: for the Wan2.2
T2V-A14B repository the 24 transformer shards, 3 text-encoder shards and the VAE come out
byte for byte the size of the published files. Data is a sparse hole (see ``writer.py``),
so a 126 GB folder takes a few MB of disk.

Usage::

    from tests.sparse.specs import BY_KEY
    folder = write_diffusers_layout(BY_KEY["wan22_t2v_a14b"], tmp_path / "Wan2.2-T2V-A14B-Diffusers")
    repo = write_hf_cache_layout(BY_KEY["wan22_ti2v_5b"], tmp_path / "hub")   # models--Wan-AI--...
    folders = write_full_size_tree(tmp_path / "models")                       # every diffusers repo

Per-repository facts that the specs do not carry (dtypes, diffusers version, scheduler
shift) are in ``REPO_FACTS``; where they are inferred rather than seen, it says so.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import os
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from tests.sparse.specs import SPECS, ModelSpec
from tests.sparse.writer import tensor_bytes, write_sparse_safetensors

MAX_SHARD_BYTES = 5 * 10**9  # save_pretrained's max_shard_size="5GB" (decimal)
SAFETENSORS_METADATA = {"format": "pt"}

TensorTable = tuple[tuple[str, tuple[int, ...]], ...]  # (name, shape) in state-dict order


# --------------------------------------------------------------------------------------
# Facts per repository
# --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RepoFacts:
    """What a ``-Diffusers`` repository stores beyond the model's shapes."""

    diffusers_version: str             # ``_diffusers_version`` it was saved with
    text_encoder_dtype: str            # safetensors dtype of text_encoder/ (F32: 5 shards, BF16: 3)
    transformer_dtype: str = "F32"
    flow_shift: float = 3.0            # scheduler, as diffusers' conversion script sets it
    clip_tokenizer_in_processor: bool = False  # image_processor/ also holds CLIP tokenizer files

    @property
    def legacy(self) -> bool:
        """Saved before diffusers 0.35: no ``boundary_ratio``/``transformer_2`` keys, old VAE config."""
        return tuple(int(p) for p in self.diffusers_version.split(".")[:2]) < (0, 35)


# Seen in published file lists (sizes, shard counts): Wan2.2 T2V-A14B (every shard size),
# I2V-A14B, TI2V-5B, Wan2.1 T2V-1.3B, I2V-14B-480P, FLF2V, VACE-1.3B (shard counts; a
# 5-shard text encoder is F32, a 3-shard one BF16). Inferred: Wan2.1 T2V-14B and I2V-720P
# (as their siblings), VACE-14B (as VACE-1.3B), Animate (text encoder as Wan2.2, transformer
# F32 as the conversion script's default), and the 0.34/0.36 diffusers versions.
REPO_FACTS: Mapping[str, RepoFacts] = {
    "wan22_t2v_a14b": RepoFacts("0.35.0.dev0", "BF16"),
    "wan22_i2v_a14b": RepoFacts("0.35.0.dev0", "BF16"),
    "wan22_ti2v_5b": RepoFacts("0.35.0.dev0", "BF16", flow_shift=5.0),
    "wan21_t2v_1_3b": RepoFacts("0.33.0.dev0", "F32"),
    "wan21_t2v_14b": RepoFacts("0.33.0.dev0", "F32"),
    "wan21_i2v_14b_480p": RepoFacts("0.33.0.dev0", "F32"),
    "wan21_i2v_14b_720p": RepoFacts("0.33.0.dev0", "F32"),
    "wan21_flf2v_14b": RepoFacts("0.34.0.dev0", "F32", flow_shift=16.0, clip_tokenizer_in_processor=True),
    "wan21_vace_1_3b": RepoFacts("0.34.0.dev0", "BF16"),
    "wan21_vace_14b": RepoFacts("0.34.0.dev0", "BF16"),
    "wan22_animate_14b": RepoFacts("0.36.0.dev0", "BF16", flow_shift=5.0),
}


def repo_facts(spec: ModelSpec) -> RepoFacts:
    """The facts for ``spec``; a spec missing from the table gets its version's usual ones."""
    if spec.key in REPO_FACTS:
        return REPO_FACTS[spec.key]
    if spec.wan_version == "2.2":
        return RepoFacts("0.35.0.dev0", "BF16", flow_shift=5.0 if spec.vae == "wan2.2" else 3.0)
    return RepoFacts("0.33.0.dev0", "F32")


def repo_name(spec: ModelSpec) -> str:
    """``Wan2.2-T2V-A14B-Diffusers`` for ``Wan-AI/Wan2.2-T2V-A14B-Diffusers``."""
    if not spec.diffusers_id:
        raise ValueError(f"{spec.key} has no diffusers repository")
    return spec.diffusers_id.split("/")[-1]


# --------------------------------------------------------------------------------------
# Component configs
# --------------------------------------------------------------------------------------

UMT5_XXL = {  # google/umt5-xxl, the text encoder of every Wan model
    "d_model": 4096, "d_ff": 10240, "d_kv": 64, "num_heads": 64, "num_layers": 24,
    "num_decoder_layers": 24, "vocab_size": 256384, "feed_forward_proj": "gated-gelu",
    "dense_act_fn": "gelu_new", "relative_attention_num_buckets": 32,
    "relative_attention_max_distance": 128, "scalable_attention": True,
    "tie_word_embeddings": False, "layer_norm_epsilon": 1e-6, "dropout_rate": 0.1,
    "pad_token_id": 0, "eos_token_id": 1, "decoder_start_token_id": 0,
    "tokenizer_class": "T5Tokenizer",
}

CLIP_VIT_H_14 = {  # laion/CLIP-ViT-H-14-laion2B-s32B-b79K, vision tower (Wan2.1 I2V/FLF2V, Animate)
    "hidden_size": 1280, "intermediate_size": 5120, "num_hidden_layers": 32,
    "num_attention_heads": 16, "image_size": 224, "patch_size": 14, "projection_dim": 1024,
    "hidden_act": "gelu", "layer_norm_eps": 1e-5, "num_channels": 3,
}

CLIP_IMAGE_PROCESSOR = {
    "crop_size": {"height": 224, "width": 224}, "do_center_crop": True, "do_convert_rgb": True,
    "do_normalize": True, "do_rescale": True, "do_resize": True,
    "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_processor_type": "CLIPImageProcessor",
    "image_std": [0.26862954, 0.26130258, 0.27577711], "resample": 3,
    "rescale_factor": 0.00392156862745098, "size": {"shortest_edge": 224},
}

# Wan2.2 VAE (z 48), as diffusers' conversion script writes it.
WAN22_VAE: Mapping[str, Any] = {
    "base_dim": 160, "decoder_base_dim": 256, "z_dim": 48, "is_residual": True,
    "in_channels": 12, "out_channels": 12, "patch_size": 2, "scale_factor_temporal": 4,
    "scale_factor_spatial": 16,
    "latents_mean": [
        -0.2289, -0.0052, -0.1323, -0.2339, -0.2799, 0.0174, 0.1838, 0.1557, -0.1382, 0.0542,
        0.2813, 0.0891, 0.1570, -0.0098, 0.0375, -0.1825, -0.2246, -0.1207, -0.0698, 0.5109,
        0.2665, -0.2108, -0.2158, 0.2502, -0.2055, -0.0322, 0.1109, 0.1567, -0.0729, 0.0899,
        -0.2799, -0.1230, -0.0313, -0.1649, 0.0117, 0.0723, -0.2839, -0.2083, -0.0520, 0.3748,
        0.0152, 0.1957, 0.1433, -0.2944, 0.3573, -0.0548, -0.1681, -0.0667],
    "latents_std": [
        0.4765, 1.0364, 0.4514, 1.1677, 0.5313, 0.4990, 0.4818, 0.5013, 0.8158, 1.0344,
        0.5894, 1.0901, 0.6885, 0.6165, 0.8454, 0.4978, 0.5759, 0.3523, 0.7135, 0.6804,
        0.5833, 1.4146, 0.8986, 0.5659, 0.7069, 0.5338, 0.4889, 0.4917, 0.4069, 0.4999,
        0.6866, 0.4093, 0.5709, 0.6065, 0.6415, 0.4944, 0.5726, 1.2042, 0.5458, 1.6887,
        0.3971, 1.0600, 0.3943, 0.5537, 0.5444, 0.4089, 0.7468, 0.7744],
}

# Keys of a VAE config saved before diffusers 0.35 (the Wan2.1 repositories).
_LEGACY_VAE_KEYS = ("attn_scales", "base_dim", "dim_mult", "dropout", "latents_mean",
                    "latents_std", "num_res_blocks", "temperal_downsample", "z_dim")

# Sizes of the tokenizer files of google/umt5-xxl and of the CLIP tokenizer files
# (written as sparse placeholders: the checks judge tokenizers by presence).
_UMT5_SPIECE_BYTES = 4_548_313
_UMT5_TOKENIZER_JSON_BYTES = 16_837_459
_CLIP_TOKENIZER_FILES = {"vocab.json": 862_328, "merges.txt": 524_619, "tokenizer.json": 2_224_003}


def transformer_class(spec: ModelSpec) -> str:
    """The diffusers class of ``spec``'s transformer."""
    if spec.task == "vace":
        return "WanVACETransformer3DModel"
    if spec.task == "animate":
        return "WanAnimateTransformer3DModel"
    return "WanTransformer3DModel"


def transformer_init(spec: ModelSpec) -> dict[str, Any]:
    """Constructor arguments of ``spec``'s transformer (the published ``config.json`` values)."""
    cfg: dict[str, Any] = {
        "added_kv_proj_dim": spec.dim if spec.image_branch else None,
        "attention_head_dim": 128, "cross_attn_norm": True, "eps": 1e-06,
        "ffn_dim": spec.ffn_dim, "freq_dim": 256, "in_channels": spec.in_channels,
        "num_attention_heads": spec.heads, "num_layers": spec.num_layers,
        "out_channels": spec.out_channels, "patch_size": [1, 2, 2],
        "qk_norm": "rms_norm_across_heads", "text_dim": 4096, "rope_max_seq_len": 1024,
        "image_dim": 1280 if spec.image_branch else None,
        "pos_embed_seq_len": 257 * 2 if spec.flf2v else None,
    }
    if spec.task == "vace":
        cfg.update(vace_layers=list(spec.vace_layers), vace_in_channels=96)
    if spec.task == "animate":
        cfg.update(motion_encoder_size=512, motion_style_dim=512, motion_dim=20, motion_encoder_dim=512,
                   face_encoder_hidden_dim=1024, face_encoder_num_heads=4, inject_face_latents_blocks=5)
    return cfg


def vae_init(spec: ModelSpec) -> dict[str, Any]:
    """Constructor arguments of ``spec``'s AutoencoderKLWan (empty: the Wan2.1 VAE defaults)."""
    return dict(WAN22_VAE) if spec.vae == "wan2.2" else {}


# --------------------------------------------------------------------------------------
# Shape tables (built once per class and config)
# --------------------------------------------------------------------------------------

def _key(config: Mapping[str, Any]) -> str:
    return json.dumps(config, sort_keys=True)


@functools.cache
def _diffusers_model(class_name: str, config_key: str) -> tuple[TensorTable, str]:
    """State-dict table and ``config.json`` text of a diffusers model built on the meta device."""
    import diffusers
    from accelerate import init_empty_weights

    with init_empty_weights(include_buffers=True):  # buffers on meta too: 3x faster
        model = getattr(diffusers, class_name).from_config(json.loads(config_key))
    table = tuple((name, tuple(t.shape)) for name, t in model.state_dict().items())
    return table, model.to_json_string()


@functools.cache
def _transformers_model(class_name: str, config_key: str) -> tuple[TensorTable, Mapping[str, Any]]:
    """State-dict table (tied copies dropped, as save_pretrained does) and config of a transformers model."""
    import transformers
    from accelerate import init_empty_weights

    model_cls = getattr(transformers, class_name)
    config = model_cls.config_class(**json.loads(config_key))
    with init_empty_weights(include_buffers=True):  # buffers on meta too: 3x faster
        model = model_cls(config)
    kept = {name for name, _ in model.named_parameters()}  # first name of each shared parameter
    tied = {name for name, _ in model.named_parameters(remove_duplicate=False)} - kept
    tied |= set(getattr(model, "_tied_weights_keys", None) or ())  # dict (v5) or list (v4) of copies
    table = tuple((name, tuple(t.shape)) for name, t in model.state_dict().items() if name not in tied)
    return table, MappingProxyType(config.to_dict())


# Order of the parameters of one attention module when the published repositories were
# saved (norms first); today's WanAttention registers them later. The order decides where
# save_pretrained cuts shards, so keeping it reproduces the published shard sizes.
_SAVED_ATTN_ORDER = {"norm_q": 0, "norm_k": 1, "to_q": 2, "to_k": 3, "to_v": 4,
                     "add_k_proj": 5, "add_v_proj": 6, "to_out": 7, "norm_added_k": 8}


def _attention_of(name: str) -> str | None:
    """``blocks.3.attn2`` for ``blocks.3.attn2.to_k.weight``; None outside attention modules."""
    parts = name.split(".")
    for i, part in enumerate(parts[:-1]):
        if part in ("attn1", "attn2"):
            return ".".join(parts[: i + 1])
    return None


def _saved_order(table: TensorTable) -> TensorTable:
    """Reorder each attention module's tensors to the order of the published files."""
    out: list[tuple[str, tuple[int, ...]]] = []
    for module, items in itertools.groupby(table, key=lambda item: _attention_of(item[0])):
        group = list(items)
        if module is not None:
            group.sort(key=lambda item: _SAVED_ATTN_ORDER.get(item[0][len(module) + 1:].split(".")[0], 99))
        out.extend(group)
    return tuple(out)


def transformer_table(spec: ModelSpec) -> TensorTable:
    """Names and shapes of ``spec``'s transformer, in the published state-dict order."""
    table, _ = _diffusers_model(transformer_class(spec), _key(transformer_init(spec)))
    return _saved_order(table)


def vae_table(spec: ModelSpec) -> TensorTable:
    return _diffusers_model("AutoencoderKLWan", _key(vae_init(spec)))[0]


def text_encoder_table() -> TensorTable:
    return _transformers_model("UMT5EncoderModel", _key(UMT5_XXL))[0]


def image_encoder_table() -> TensorTable:
    return _transformers_model("CLIPVisionModel", _key(CLIP_VIT_H_14))[0]


# --------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------

def _write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def _write_placeholder(path: Path, size: int) -> None:
    """A file of ``size`` bytes that takes no disk (content is never read by the checks)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fh.truncate(size)


def write_weights(folder: Path, stem: str, table: TensorTable, dtype: str,
                  max_shard_bytes: int = MAX_SHARD_BYTES) -> list[str]:
    """Write ``table`` as ``save_pretrained`` would: one file, or shards plus an index.

    Shards are cut in state-dict order at ``max_shard_bytes`` (huggingface_hub's rule), each
    file lists its tensors sorted by name with ``{"format": "pt"}`` metadata (as the
    safetensors library writes them), so file sizes match real ones to the byte.
    Returns the file names.
    """
    shards: list[list[tuple[str, tuple[int, ...]]]] = [[]]
    size = 0
    for name, shape in table:
        n = tensor_bytes(dtype, shape)
        if shards[-1] and size + n > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append((name, shape))
        size += n
    folder.mkdir(parents=True, exist_ok=True)
    if len(shards) == 1:
        names = [f"{stem}.safetensors"]
    else:
        names = [f"{stem}-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    weight_map: dict[str, str] = {}
    for file_name, shard in zip(names, shards):
        tensors = {name: (dtype, shape) for name, shape in sorted(shard)}
        write_sparse_safetensors(folder / file_name, tensors, metadata=SAFETENSORS_METADATA)
        weight_map.update({name: file_name for name, _ in shard})
    if len(shards) > 1:
        total = sum(tensor_bytes(dtype, shape) for _, shape in table)
        _write_json(folder / f"{stem}.safetensors.index.json",
                    {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))})
    return names


def _diffusers_config(text: str, version: str, keep: Iterable[str] | None = None) -> dict[str, Any]:
    config = json.loads(text)
    config["_diffusers_version"] = version
    if keep is not None:
        wanted = {"_class_name", "_diffusers_version", *keep}
        config = {k: v for k, v in config.items() if k in wanted}
    return config


# Keys of the published text_encoder/ and image_encoder/ config.json files (transformers 5
# adds generic ones such as id2label that those files do not have).
_UMT5_CONFIG_KEYS = (
    "classifier_dropout", "d_ff", "d_kv", "d_model", "decoder_start_token_id", "dense_act_fn",
    "dropout_rate", "eos_token_id", "feed_forward_proj", "initializer_factor", "is_encoder_decoder",
    "is_gated_act", "layer_norm_epsilon", "model_type", "num_decoder_layers", "num_heads", "num_layers",
    "pad_token_id", "relative_attention_max_distance", "relative_attention_num_buckets",
    "scalable_attention", "tie_word_embeddings", "tokenizer_class", "transformers_version",
    "use_cache", "vocab_size")
_CLIP_VISION_CONFIG_KEYS = (
    "attention_dropout", "hidden_act", "hidden_size", "image_size", "initializer_factor",
    "initializer_range", "intermediate_size", "layer_norm_eps", "model_type", "num_attention_heads",
    "num_channels", "num_hidden_layers", "patch_size", "projection_dim", "transformers_version")


def _transformers_config(config: Mapping[str, Any], keys: Iterable[str], architecture: str, dtype: str,
                         **extra: Any) -> dict[str, Any]:
    """A transformers ``config.json`` as the published repositories have it."""
    out = {k: config[k] for k in keys if k in config}
    out.update(extra)
    out["architectures"] = [architecture]
    out["torch_dtype"] = {"F32": "float32", "BF16": "bfloat16", "F16": "float16"}[dtype]
    return out


def model_index(spec: ModelSpec) -> dict[str, Any]:
    """The ``model_index.json`` of ``spec``'s ``-Diffusers`` repository."""
    facts = repo_facts(spec)
    index: dict[str, Any] = {
        "_class_name": spec.pipeline_class,
        "_diffusers_version": facts.diffusers_version,
        "scheduler": ["diffusers", "UniPCMultistepScheduler"],
        "text_encoder": ["transformers", "UMT5EncoderModel"],
        "tokenizer": ["transformers", "T5TokenizerFast"],
        "transformer": ["diffusers", transformer_class(spec)],
        "vae": ["diffusers", "AutoencoderKLWan"],
    }
    clip = spec.image_branch
    if clip:
        index["image_encoder"] = ["transformers", "CLIPVisionModel"]
        index["image_processor"] = ["transformers", "CLIPImageProcessor"]
    if not facts.legacy and spec.task != "animate":
        # Saved by a diffusers that knows Wan2.2: the optional slots appear, null when absent.
        index["boundary_ratio"] = spec.boundary_ratio
        index["transformer_2"] = ["diffusers", transformer_class(spec)] if spec.experts > 1 else [None, None]
        if spec.pipeline_class in ("WanPipeline", "WanImageToVideoPipeline"):
            index["expand_timesteps"] = spec.expand_timesteps
        if spec.pipeline_class == "WanImageToVideoPipeline" and not clip:
            index["image_encoder"] = [None, None]
            index["image_processor"] = [None, None]
    return index


@functools.cache
def _scheduler_json(flow_shift: float) -> str:
    from diffusers import UniPCMultistepScheduler

    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True,
                                        num_train_timesteps=1000, flow_shift=flow_shift)
    return scheduler.to_json_string()


def _scheduler_config(facts: RepoFacts) -> dict[str, Any]:
    return _diffusers_config(_scheduler_json(facts.flow_shift), facts.diffusers_version)


def _write_tokenizer(folder: Path) -> None:
    extra = [f"<extra_id_{i}>" for i in range(300)]
    _write_json(folder / "special_tokens_map.json", {
        "additional_special_tokens": extra, "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"})
    _write_json(folder / "tokenizer_config.json", {
        "additional_special_tokens": extra, "clean_up_tokenization_spaces": True, "eos_token": "</s>",
        "extra_ids": 300, "legacy": True, "model_max_length": 1000000000000000019884624838656,
        "pad_token": "<pad>", "sp_model_kwargs": {}, "spaces_between_special_tokens": False,
        "tokenizer_class": "T5Tokenizer", "unk_token": "<unk>"})
    _write_placeholder(folder / "spiece.model", _UMT5_SPIECE_BYTES)
    _write_placeholder(folder / "tokenizer.json", _UMT5_TOKENIZER_JSON_BYTES)


def _write_image_components(root: Path, facts: RepoFacts) -> None:
    table, config = _transformers_model("CLIPVisionModel", _key(CLIP_VIT_H_14))
    _write_json(root / "image_encoder" / "config.json",
                _transformers_config(config, _CLIP_VISION_CONFIG_KEYS, "CLIPVisionModel", "BF16"))
    write_weights(root / "image_encoder", "model", table, "BF16")
    processor = dict(CLIP_IMAGE_PROCESSOR)
    if facts.clip_tokenizer_in_processor:  # saved through AutoProcessor: a whole CLIPProcessor
        processor["processor_class"] = "CLIPProcessor"
        for name, size in _CLIP_TOKENIZER_FILES.items():
            _write_placeholder(root / "image_processor" / name, size)
        special = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
                   "pad_token": "<|endoftext|>", "unk_token": "<|endoftext|>"}
        _write_json(root / "image_processor" / "special_tokens_map.json", special)
        _write_json(root / "image_processor" / "tokenizer_config.json",
                    {**special, "model_max_length": 77, "processor_class": "CLIPProcessor",
                     "tokenizer_class": "CLIPTokenizer"})
    _write_json(root / "image_processor" / "preprocessor_config.json", processor)


def _write_repo_files(root: Path, spec: ModelSpec) -> None:
    tag = "text-to-video" if spec.task in ("t2v", "vace") else "image-to-video"
    (root / "README.md").write_text(
        f"---\nlicense: apache-2.0\nlibrary_name: diffusers\npipeline_tag: {tag}\n---\n"
        f"# {repo_name(spec)}\n\nSparse test copy: real names, shapes and sizes; no weights.\n")
    (root / ".gitattributes").write_text("".join(
        f"{pattern} filter=lfs diff=lfs merge=lfs -text\n"
        for pattern in ("*.bin", "*.model", "*.pt", "*.pth", "*.safetensors", "tokenizer.json")))


def write_diffusers_layout(spec: ModelSpec, root: Path) -> Path:
    """Write ``spec``'s ``-Diffusers`` repository, full size and sparse, into the folder ``root``.

    ``root`` is the model folder itself (created if missing); returns it. Raises ValueError
    for a model without a diffusers repository (S2V).
    """
    repo_name(spec)  # raises for a model without a diffusers repository
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    facts = repo_facts(spec)
    _write_repo_files(root, spec)
    _write_json(root / "model_index.json", model_index(spec))
    _write_json(root / "scheduler" / "scheduler_config.json", _scheduler_config(facts))

    te_table, te_config = _transformers_model("UMT5EncoderModel", _key(UMT5_XXL))
    _write_json(root / "text_encoder" / "config.json",
                _transformers_config(te_config, _UMT5_CONFIG_KEYS, "UMT5EncoderModel", facts.text_encoder_dtype,
                                     _name_or_path="google/umt5-xxl", tie_word_embeddings=False))
    write_weights(root / "text_encoder", "model", te_table, facts.text_encoder_dtype)
    _write_tokenizer(root / "tokenizer")

    tr_raw, tr_text = _diffusers_model(transformer_class(spec), _key(transformer_init(spec)))
    tr_table = _saved_order(tr_raw)
    for sub in ("transformer", "transformer_2")[: spec.experts]:
        _write_json(root / sub / "config.json", _diffusers_config(tr_text, facts.diffusers_version))
        write_weights(root / sub, "diffusion_pytorch_model", tr_table, facts.transformer_dtype)

    vae_tab, vae_text = _diffusers_model("AutoencoderKLWan", _key(vae_init(spec)))
    keep = _LEGACY_VAE_KEYS if facts.legacy else None
    _write_json(root / "vae" / "config.json", _diffusers_config(vae_text, facts.diffusers_version, keep))
    write_weights(root / "vae", "diffusion_pytorch_model", vae_tab, "F32")

    if spec.image_branch:
        _write_image_components(root, facts)
    return root


# --------------------------------------------------------------------------------------
# Hugging Face cache and whole trees
# --------------------------------------------------------------------------------------

_LFS_SUFFIXES = (".safetensors", ".model", ".bin", ".pth")
_LFS_NAMES = ("tokenizer.json",)


def commit_hash(spec: ModelSpec) -> str:
    """A stable, fake 40-hex commit id for ``spec``'s repository."""
    return hashlib.sha1(f"commit:{spec.diffusers_id}".encode()).hexdigest()


def _blob_name(repo_id: str, rel: str, path: Path) -> str:
    """Blob name as the hub names it: git's sha1 for small files, a sha256 for LFS files.

    LFS blobs would be the sha256 of the content; hashing 100 GB of holes is pointless, so a
    stable fake one is made from the repository, path and size.
    """
    if rel.endswith(_LFS_SUFFIXES) or Path(rel).name in _LFS_NAMES:
        return hashlib.sha256(f"{repo_id}/{rel}:{path.stat().st_size}".encode()).hexdigest()
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def write_hf_cache_layout(spec: ModelSpec, cache_root: Path) -> Path:
    """Write ``spec``'s repository as huggingface_hub caches it under ``cache_root``.

    ``models--Wan-AI--<name>/blobs/<hash>`` hold the files (identical small files share a
    blob), ``snapshots/<commit>/<path>`` are relative symlinks into ``blobs``, and
    ``refs/main`` holds the commit. An existing entry is replaced. Returns the
    ``models--...`` folder.
    """
    repo_id = spec.diffusers_id
    if not repo_id:
        raise ValueError(f"{spec.key} has no diffusers repository")
    repo = Path(cache_root) / ("models--" + repo_id.replace("/", "--"))
    if repo.exists():
        shutil.rmtree(repo)
    commit = commit_hash(spec)
    snapshot = repo / "snapshots" / commit
    write_diffusers_layout(spec, snapshot)
    blobs = repo / "blobs"
    blobs.mkdir(parents=True)
    for path in sorted(p for p in snapshot.rglob("*") if p.is_file() and not p.is_symlink()):
        rel = path.relative_to(snapshot).as_posix()
        blob = blobs / _blob_name(repo_id, rel, path)
        if blob.exists():
            path.unlink()
        else:
            os.replace(path, blob)
        path.symlink_to(os.path.relpath(blob, path.parent))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return repo


def write_full_size_tree(root: Path, keys: Iterable[str] | None = None) -> dict[str, Path]:
    """Write the diffusers repository of every spec that has one (or of ``keys``) under ``root``.

    Each goes to ``root/<repository name>``; returns ``{spec key: folder}``.
    """
    wanted = set(keys) if keys is not None else None
    out: dict[str, Path] = {}
    for spec in SPECS:
        if spec.diffusers_id and (wanted is None or spec.key in wanted):
            out[spec.key] = write_diffusers_layout(spec, Path(root) / repo_name(spec))
    if wanted is not None and wanted - set(out):
        raise KeyError(f"no diffusers layout for: {', '.join(sorted(wanted - set(out)))}")
    return out


def apparent_size(folder: Path) -> int:
    """Sum of the apparent sizes of the regular files under ``folder`` (symlinks followed)."""
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


def disk_usage(folder: Path) -> int:
    """Bytes actually allocated on disk for the files under ``folder`` (symlinks not followed)."""
    return sum(p.lstat().st_blocks * 512 for p in Path(folder).rglob("*") if p.is_file() and not p.is_symlink())


__all__ = [
    "REPO_FACTS", "RepoFacts", "apparent_size", "commit_hash", "disk_usage", "image_encoder_table",
    "model_index", "repo_facts", "repo_name", "text_encoder_table", "transformer_class",
    "transformer_init", "transformer_table", "vae_init", "vae_table", "write_diffusers_layout",
    "write_full_size_tree", "write_hf_cache_layout", "write_weights",
]
