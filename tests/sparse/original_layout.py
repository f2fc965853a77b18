"""Full-size sparse copies of the ORIGINAL Wan-AI repositories and of ComfyUI single files.

Real safetensors headers with the original tensor names (``original_keys``); the data is a
sparse hole, so a 126 GB Wan2.2-T2V-A14B folder takes a few MB of disk. The ``.pth`` files
(VAE, umT5, CLIP) are not valid pickles: they are truncated files of realistic size whose
first bytes are a zip local-file header (``PK\\x03\\x04``), like ``torch.save`` output. The
detector judges them by name and size only and must never unpickle them.

Usage::

    write_original_layout(BY_KEY["wan22_t2v_a14b"], tmp_path / "Wan2.2-T2V-A14B")
    write_single_file(spec, tmp_path / "wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors",
                      prefix="model.diffusion_model.", dtype="F8_E4M3", expert="high")
    write_vae_single_file("wan2.1", tmp_path / "wan_2.1_vae.safetensors")
    write_umt5_single_file(tmp_path / "umt5_xxl_fp8_e4m3fn_scaled.safetensors", "F8_E4M3")
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Literal

from tests.sparse.original_keys import (
    TensorDict,
    umt5_original_keys,
    umt5_transformers_keys,
    wan21_vae_keys,
    wan22_vae_keys,
    wan_dit_keys,
)
from tests.sparse.specs import ModelSpec
from tests.sparse.writer import tensor_bytes, write_sharded, write_sparse_safetensors

# The official DiT weights are float32 (a 14B expert is 57.2 GB in 6 shards; Wan2.2-T2V-A14B
# totals about 126 GB with the 11.4 GB umT5); S2V and Animate were published in bfloat16.
ORIGINAL_DIT_DTYPE: dict[str, str] = {"s2v": "BF16", "animate": "BF16"}
DEFAULT_DIT_DTYPE = "F32"
SHARD_BYTES = 10 * 10**9          # save_pretrained(max_shard_size="10GB")

T5_PTH = "models_t5_umt5-xxl-enc-bf16.pth"
CLIP_PTH = "models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth"
CLIP_PTH_BYTES = 4_772_303_340    # about 4.77 GB (fp16 open-clip XLM-R ViT-H/14); approximate
VAE_PTH = {"wan2.1": "Wan2.1_VAE.pth", "wan2.2": "Wan2.2_VAE.pth"}
WAV2VEC_DIR = "wav2vec2-large-xlsr-53-english"
WAV2VEC_BYTES = 1_262_069_143     # about 315 M float32 parameters; approximate

_DIFFUSERS_VERSION = {"2.1": "0.30.0", "2.2": "0.33.0"}
_MODELSCOPE_TASK = {"t2v": "text-to-video-synthesis", "vace": "text-to-video-synthesis",
                    "s2v": "speech-to-video-synthesis"}


# ----------------------------------------------------------------------------- small writers

def write_sparse_pth(path: str | os.PathLike[str], size: int) -> int:
    """Write a fake ``torch.save`` zip of ``size`` bytes: a stored-entry header, then a hole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    name = f"{path.stem}/data.pkl".encode()
    header = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 0, 0, 0x21, 0, 0, 0, len(name), 0) + name
    with open(path, "wb") as fh:
        fh.write(header)
        fh.truncate(size)
    return size


def pth_size(tensors: TensorDict) -> int:
    """Approximate size of ``torch.save(state_dict)``: the data plus zip/pickle overhead per tensor."""
    return sum(tensor_bytes(d, s) for d, s in tensors.values()) + 256 * len(tensors) + 4096


def _write_sparse_blob(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fh.truncate(size)


def _write_json(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


# ----------------------------------------------------------------------------- original repository

def original_dit_dtype(spec: ModelSpec) -> str:
    """The dtype of the official DiT safetensors for ``spec``."""
    return ORIGINAL_DIT_DTYPE.get(spec.task, DEFAULT_DIT_DTYPE)


def original_config(spec: ModelSpec) -> dict[str, object]:
    """The DiT ``config.json`` as ``save_pretrained`` wrote it in the official repositories.

    WanModel lists patch_size, cross_attn_norm, qk_norm, text_dim and window_size in
    ``ignore_for_config``, so (like the real files) they are absent.
    """
    cfg: dict[str, object] = {
        "_class_name": "WanModel",
        "_diffusers_version": _DIFFUSERS_VERSION.get(spec.wan_version, "0.33.0"),
        "model_type": spec.task, "text_len": 512, "in_dim": spec.in_channels, "dim": spec.dim,
        "ffn_dim": spec.ffn_dim, "freq_dim": 256, "out_dim": spec.out_channels, "num_heads": spec.heads,
        "num_layers": spec.num_layers, "eps": 1e-06,
    }
    if spec.task == "vace":
        cfg.update(_class_name="VaceWanModel", vace_layers=list(spec.vace_layers), vace_in_dim=96)
    elif spec.task == "s2v":
        cfg.update(_class_name="WanModel_S2V", cond_dim=16, audio_dim=1024, num_audio_token=4,
                   enable_adain=True, adain_mode="attn_norm",
                   audio_inject_layers=[0, 4, 8, 12, 16, 20, 24, 27, 30, 33, 36, 39], zero_init=True,
                   zero_timestep=True, enable_motioner=False, add_last_motion=True, enable_tsm=False,
                   trainable_token_pos_emb=False, motion_token_num=1024, enable_framepack=True,
                   framepack_drop_mode="padd")
    elif spec.task == "animate":
        cfg.pop("model_type")
        cfg.update(_class_name="WanAnimateModel", patch_size=[1, 2, 2], text_dim=4096, window_size=[-1, -1],
                   qk_norm=True, cross_attn_norm=True, motion_encoder_dim=512, use_context_parallel=False,
                   use_img_emb=True)
    return cfg


def _write_dit(spec: ModelSpec, folder: Path) -> list[str]:
    _write_json(folder / "config.json", original_config(spec))
    tensors = wan_dit_keys(spec, original_dit_dtype(spec))
    return write_sharded(folder, "diffusion_pytorch_model", tensors, max_shard_bytes=SHARD_BYTES)


def _write_umt5_tokenizer(folder: Path) -> None:
    _write_json(folder / "tokenizer_config.json", {
        "tokenizer_class": "T5Tokenizer", "model_max_length": 1000000000000000019884624838656,
        "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>", "extra_ids": 300,
        "sp_model_kwargs": {}, "legacy": True})
    _write_json(folder / "special_tokens_map.json", {"eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"})
    _write_sparse_blob(folder / "spiece.model", 4_548_313)
    _write_sparse_blob(folder / "tokenizer.json", 16_837_417)


def _write_xlmr_tokenizer(folder: Path) -> None:
    _write_json(folder / "tokenizer_config.json", {
        "tokenizer_class": "XLMRobertaTokenizer", "model_max_length": 512, "bos_token": "<s>",
        "eos_token": "</s>", "sep_token": "</s>", "cls_token": "<s>", "unk_token": "<unk>",
        "pad_token": "<pad>", "mask_token": "<mask>"})
    _write_json(folder / "special_tokens_map.json", {
        "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "sep_token": "</s>",
        "pad_token": "<pad>", "cls_token": "<s>", "mask_token": "<mask>"})
    _write_sparse_blob(folder / "sentencepiece.bpe.model", 5_069_051)
    _write_sparse_blob(folder / "tokenizer.json", 17_082_734)


def _write_wav2vec(folder: Path) -> None:
    _write_json(folder / "config.json", {
        "architectures": ["Wav2Vec2ForCTC"], "model_type": "wav2vec2", "hidden_size": 1024,
        "num_hidden_layers": 24, "num_attention_heads": 16, "intermediate_size": 4096, "vocab_size": 33,
        "feat_extract_norm": "layer", "do_stable_layer_norm": True})
    _write_json(folder / "preprocessor_config.json", {
        "feature_extractor_type": "Wav2Vec2FeatureExtractor", "feature_size": 1, "sampling_rate": 16000,
        "padding_value": 0.0, "do_normalize": True, "return_attention_mask": True})
    (folder / "vocab.json").write_text(json.dumps({"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4}))
    write_sparse_pth(folder / "pytorch_model.bin", WAV2VEC_BYTES)


def write_original_layout(spec: ModelSpec, root: str | os.PathLike[str]) -> Path:
    """Write the official Wan-AI repository of ``spec`` into ``root`` (created) and return it.

    Two-expert models get ``high_noise_model/`` and ``low_noise_model/``; the others keep the
    DiT at the top level (10 GB shards, e.g. 6 for a float32 14B model, 3 for TI2V-5B, one
    ``diffusion_pytorch_model.safetensors`` for 1.3B). Then the VAE ``.pth``, the umT5 ``.pth``
    with its ``google/umt5-xxl/`` tokenizer, the CLIP ``.pth`` and ``xlm-roberta-large/`` for
    models with the CLIP branch, ``wav2vec2-large-xlsr-53-english/`` for S2V,
    ``configuration.json`` (ModelScope) and ``README.md``.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    if spec.experts == 2:
        for sub in ("high_noise_model", "low_noise_model"):
            _write_dit(spec, root / sub)
    else:
        _write_dit(spec, root)
    vae_keys = wan21_vae_keys() if spec.vae == "wan2.1" else wan22_vae_keys()
    write_sparse_pth(root / VAE_PTH[spec.vae], pth_size(vae_keys))
    write_sparse_pth(root / T5_PTH, pth_size(umt5_original_keys("BF16")))
    _write_umt5_tokenizer(root / "google" / "umt5-xxl")
    if spec.image_branch:
        write_sparse_pth(root / CLIP_PTH, CLIP_PTH_BYTES)
        _write_xlmr_tokenizer(root / "xlm-roberta-large")
    if spec.task == "s2v":
        _write_wav2vec(root / WAV2VEC_DIR)
    task = _MODELSCOPE_TASK.get(spec.task, "image-to-video-synthesis")
    (root / "configuration.json").write_text(json.dumps({"framework": "Pytorch", "task": task}))
    name = spec.original_id or spec.key
    (root / "README.md").write_text(f"---\nlicense: apache-2.0\n---\n# {name.split('/')[-1]}\n\n"
                                    f"Sparse full-size test copy of {name} (headers only, no weights).\n")
    return root


# ----------------------------------------------------------------------------- ComfyUI-style single files

_NOT_QUANTIZED = ("motion_encoder.", "face_encoder.", "casual_audio_encoder.", "trainable_cond_mask",
                  "shared.", "token_embedding", "relative_attention_bias", "pos_embedding")


def _quantizable(name: str, shape: tuple[int, ...]) -> bool:
    """Linear weights (2-D ``.weight``) are fp8 in "scaled" files; embeddings and norms are not."""
    return name.endswith(".weight") and len(shape) == 2 and not any(p in name for p in _NOT_QUANTIZED)


def _cast(tensors: TensorDict, dtype: str, scaled: bool, other_dtype: str = "F16") -> TensorDict:
    """Recast to ``dtype``; for fp8, Linear weights only (plus ``scale_weight`` and ``scaled_fp8`` when scaled)."""
    if not dtype.startswith("F8"):
        return {k: (dtype, s) for k, (_, s) in tensors.items()}
    out: TensorDict = {}
    for name, (_, shape) in tensors.items():
        if _quantizable(name, shape):
            out[name] = (dtype, shape)
            if scaled:
                out[name[: -len(".weight")] + ".scale_weight"] = ("F32", ())
        else:
            out[name] = (other_dtype, shape)
    if scaled:
        out["scaled_fp8"] = (dtype, (0,))
    return out


def write_single_file(spec: ModelSpec, path: str | os.PathLike[str], *, prefix: str = "",
                      dtype: str = "BF16", expert: Literal["high", "low"] | None = None,
                      scaled: bool | None = None) -> Path:
    """One transformer (one expert) as a single ``.safetensors`` with original key names.

    ``prefix`` (e.g. ``"model.diffusion_model."``) goes in front of every name. With
    ``dtype="F8_E4M3"`` the file is ComfyUI "fp8_scaled" (``scale_weight`` per Linear and a
    ``scaled_fp8`` marker) unless ``scaled=False``; other tensors are F16. High and low-noise
    experts have identical names and shapes, so ``expert`` is only checked against ``spec``.
    """
    if expert is not None and (spec.experts != 2 or expert not in ("high", "low")):
        raise ValueError(f"{spec.key} has {spec.experts} expert(s); expert={expert!r} does not apply")
    tensors = _cast(wan_dit_keys(spec, "BF16"), dtype, scaled if scaled is not None else dtype.startswith("F8"))
    path = Path(path)
    write_sparse_safetensors(path, {prefix + k: v for k, v in tensors.items()})
    return path


def write_vae_single_file(kind: Literal["wan2.1", "wan2.2"], path: str | os.PathLike[str],
                          dtype: str = "BF16") -> Path:
    """``wan_2.1_vae.safetensors`` / ``wan2.2_vae.safetensors``: the original VAE names in one file."""
    keys = {"wan2.1": wan21_vae_keys, "wan2.2": wan22_vae_keys}[kind](dtype)
    path = Path(path)
    write_sparse_safetensors(path, keys)
    return path


def write_umt5_single_file(path: str | os.PathLike[str], dtype: str = "BF16") -> Path:
    """ComfyUI's umT5-XXL encoder file (transformers-style names, e.g. ``umt5_xxl_fp8_e4m3fn_scaled``).

    ``dtype="F8_E4M3"`` writes the scaled variant: fp8 Linear weights with ``scale_weight``,
    the embedding and norms in F16, and a ``scaled_fp8`` marker (about 6.7 GB).
    """
    keys = _cast(umt5_transformers_keys(dtype if not dtype.startswith("F8") else "F16"), dtype,
                 scaled=dtype.startswith("F8"))
    path = Path(path)
    write_sparse_safetensors(path, keys)
    return path
