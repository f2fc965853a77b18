"""The original-layout test helpers give the real names, shapes and sizes of the Wan-AI files.

Checked against diffusers itself: its converters from original names (``single_file_utils``)
must produce exactly the state dicts of the diffusers classes built under
``init_empty_weights`` (no memory), and parameter counts must match the published sizes.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections import Counter
from pathlib import Path

import pytest

from core.check.safetensors_header import read_header
from tests.sparse.original_keys import (
    param_count,
    umt5_original_keys,
    umt5_transformers_keys,
    wan21_vae_keys,
    wan22_vae_keys,
    wan_dit_keys,
)
from tests.sparse.original_layout import (
    CLIP_PTH,
    T5_PTH,
    original_dit_dtype,
    write_original_layout,
    write_single_file,
    write_umt5_single_file,
    write_vae_single_file,
)
from tests.sparse.specs import BY_KEY, SPECS, ModelSpec

torch = pytest.importorskip("torch")
GB = 10**9


def _meta(tensors: dict[str, tuple[str, tuple[int, ...]]], prefix: str = "") -> dict[str, object]:
    return {prefix + k: torch.empty(shape, device="meta") for k, (_, shape) in tensors.items()}


def _shapes(state_dict: dict[str, object]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state_dict.items()}


def _head(path: Path, n: int = 4) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(n)


def _disk_bytes(root: Path) -> int | None:
    """Bytes really allocated under ``root`` (None where the OS does not say, e.g. Windows)."""
    files = [p for p in root.rglob("*") if p.is_file()]
    if not files or not hasattr(files[0].stat(), "st_blocks"):
        return None
    return sum(p.stat().st_blocks * 512 for p in files)


# ----------------------------------------------------------------------------- parameter counts

@pytest.mark.parametrize("key, expected", [
    ("wan21_t2v_14b", 14.29e9), ("wan22_t2v_a14b", 14.29e9), ("wan22_ti2v_5b", 5.0e9),
    ("wan21_t2v_1_3b", 1.42e9),
])
def test_dit_parameter_counts_match_published(key: str, expected: float) -> None:
    assert param_count(wan_dit_keys(BY_KEY[key])) == pytest.approx(expected, rel=0.01)


def test_expert_and_variant_tensor_counts() -> None:
    assert len(wan_dit_keys(BY_KEY["wan22_t2v_a14b"])) == 1095
    assert len(wan_dit_keys(BY_KEY["wan22_ti2v_5b"])) == 825
    assert len(wan_dit_keys(BY_KEY["wan22_s2v_14b"])) == 1260       # the released S2V index
    flf = wan_dit_keys(BY_KEY["wan21_flf2v_14b"])
    assert flf["img_emb.emb_pos"][1] == (1, 514, 1280)
    assert flf["patch_embedding.weight"][1] == (5120, 36, 1, 2, 2)
    assert wan_dit_keys(BY_KEY["wan22_ti2v_5b"])["head.head.weight"][1] == (48 * 4, 3072)


def test_s2v_extras_are_the_released_groups() -> None:
    s2v = wan_dit_keys(BY_KEY["wan22_s2v_14b"])
    base = wan_dit_keys(BY_KEY["wan21_t2v_14b"])
    assert set(base) <= set(s2v)
    extra = Counter(k.split(".")[0] for k in set(s2v) - set(base))
    assert extra == {"audio_injector": 144, "casual_audio_encoder": 12, "frame_packer": 6,
                     "cond_encoder": 2, "trainable_cond_mask": 1}
    assert s2v["casual_audio_encoder.encoder.conv1_local.conv.weight"][1] == (5120, 1024, 3)
    assert s2v["audio_injector.injector_adain_layers.11.linear.weight"][1] == (10240, 5120)


def test_vae_and_text_encoder_parameter_counts() -> None:
    assert param_count(wan21_vae_keys()) == pytest.approx(127e6, rel=0.01)
    assert param_count(wan22_vae_keys()) == pytest.approx(705e6, rel=0.01)
    assert wan21_vae_keys()["conv1.weight"][1] == (32, 32, 1, 1, 1)
    assert "decoder.upsamples.0.upsamples.0.residual.2.weight" in wan22_vae_keys()
    assert "decoder.middle.0.residual.0.gamma" in wan22_vae_keys()
    t5 = umt5_original_keys()
    assert param_count(t5) == pytest.approx(5.68e9, rel=0.01)
    assert t5["token_embedding.weight"][1] == (256384, 4096)
    assert t5["blocks.23.pos_embedding.embedding.weight"][1] == (32, 64)
    hf = umt5_transformers_keys()
    assert len(hf) == len(t5) and param_count(hf) == param_count(t5)


# ----------------------------------------------------------------------------- VAE conversion

def _vae22_to_diffusers(name: str) -> str:
    """Original Wan2.2 VAE name -> AutoencoderKLWan (z48) name."""
    fixed = {"conv1.": "quant_conv.", "conv2.": "post_quant_conv.", "encoder.conv1.": "encoder.conv_in.",
             "decoder.conv1.": "decoder.conv_in.", "encoder.head.0.": "encoder.norm_out.",
             "encoder.head.2.": "encoder.conv_out.", "decoder.head.0.": "decoder.norm_out.",
             "decoder.head.2.": "decoder.conv_out."}
    for old, new in fixed.items():
        if name.startswith(old):
            return new + name[len(old):]
    sub = {".residual.0.": ".norm1.", ".residual.2.": ".conv1.", ".residual.3.": ".norm2.",
           ".residual.6.": ".conv2.", ".shortcut.": ".conv_shortcut."}
    m = re.match(r"(encoder|decoder)\.middle\.(\d)\.(.*)", name)
    if m:
        part, i, rest = m.groups()
        head = f"{part}.mid_block.attentions.0" if i == "1" else f"{part}.mid_block.resnets.{int(i) // 2}"
        name = f"{head}.{rest}"
    m = re.match(r"encoder\.downsamples\.(\d)\.downsamples\.(\d)\.(.*)", name)
    if m:
        i, j, rest = m.groups()
        name = f"encoder.down_blocks.{i}." + (f"resnets.{j}." if j != "2" else "downsampler.") + rest
    m = re.match(r"decoder\.upsamples\.(\d)\.upsamples\.(\d)\.(.*)", name)
    if m:
        i, j, rest = m.groups()
        name = f"decoder.up_blocks.{i}." + (f"resnets.{j}." if j != "3" else "upsampler.") + rest
    for old, new in sub.items():
        name = name.replace(old, new)
    return name


def test_wan21_vae_converts_exactly_to_diffusers() -> None:
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKLWan
    from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers

    with init_empty_weights():
        vae = AutoencoderKLWan()          # z_dim 16, base_dim 96
    ref = _shapes(vae.state_dict())
    assert _shapes(convert_wan_vae_to_diffusers(_meta(wan21_vae_keys()))) == ref
    assert len(ref) == len(wan21_vae_keys()) and sum(map(math.prod, ref.values())) == param_count(wan21_vae_keys())


def test_wan22_vae_matches_diffusers_z48() -> None:
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKLWan

    with init_empty_weights():
        vae = AutoencoderKLWan(base_dim=160, decoder_base_dim=256, z_dim=48, is_residual=True, patch_size=2,
                               scale_factor_spatial=16, in_channels=12, out_channels=12)
    ref = _shapes(vae.state_dict())
    mine = wan22_vae_keys()
    assert len(ref) == len(mine)
    assert sum(map(math.prod, ref.values())) == param_count(mine)
    assert Counter(ref.values()) == Counter(shape for _, shape in mine.values())
    assert {_vae22_to_diffusers(k): shape for k, (_, shape) in mine.items()} == ref


# ----------------------------------------------------------------------------- DiT conversion

def _diffusers_transformer(spec: ModelSpec) -> dict[str, tuple[int, ...]]:
    from accelerate import init_empty_weights
    from diffusers import WanAnimateTransformer3DModel, WanTransformer3DModel, WanVACETransformer3DModel

    cfg: dict[str, object] = dict(
        patch_size=(1, 2, 2), num_attention_heads=spec.heads, attention_head_dim=128,
        in_channels=spec.in_channels, out_channels=spec.out_channels, text_dim=4096, freq_dim=256,
        ffn_dim=spec.ffn_dim, num_layers=spec.num_layers, cross_attn_norm=True, eps=1e-6)
    if spec.image_branch:
        cfg.update(image_dim=1280, added_kv_proj_dim=spec.dim)
    if spec.flf2v:
        cfg.update(pos_embed_seq_len=514)
    with init_empty_weights():
        if spec.task == "animate":
            model = WanAnimateTransformer3DModel(**cfg)
        elif spec.vace_layers:
            model = WanVACETransformer3DModel(**cfg, qk_norm="rms_norm_across_heads",
                                              vace_layers=list(spec.vace_layers), vace_in_channels=96)
        else:
            model = WanTransformer3DModel(**cfg, qk_norm="rms_norm_across_heads")
    return _shapes(model.state_dict())


@pytest.mark.parametrize("key", ["wan21_t2v_1_3b", "wan21_i2v_14b_480p", "wan22_ti2v_5b", "wan22_i2v_a14b",
                                 "wan21_flf2v_14b", "wan21_vace_1_3b", "wan21_vace_14b",
                                 "wan22_animate_14b"])
def test_dit_converts_exactly_to_diffusers(key: str) -> None:
    from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers

    spec = BY_KEY[key]
    converted = _shapes(convert_wan_transformer_to_diffusers(_meta(wan_dit_keys(spec))))
    if spec.flf2v:   # single_file_utils leaves this one to the conversion script's name
        converted["condition_embedder.image_embedder.pos_embed"] = converted.pop("img_emb.emb_pos")
    if spec.task == "animate":   # LIA blur kernels are buffers diffusers drops
        kernels = [k for k in converted if k.endswith(".kernel")]
        assert len(kernels) == 14
        for k in kernels:
            del converted[k]
    assert converted == _diffusers_transformer(spec)


def test_prefixed_names_convert_like_plain_ones() -> None:
    from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers

    spec = BY_KEY["wan21_t2v_1_3b"]
    plain = _shapes(convert_wan_transformer_to_diffusers(_meta(wan_dit_keys(spec))))
    prefixed = _shapes(convert_wan_transformer_to_diffusers(_meta(wan_dit_keys(spec), "model.diffusion_model.")))
    assert prefixed == plain


# ----------------------------------------------------------------------------- layouts on disk

def _check_dit_folder(folder: Path, spec: ModelSpec, n_shards: int) -> None:
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["_class_name"] == "WanModel" and cfg["dim"] == spec.dim and cfg["in_dim"] == spec.in_channels
    assert cfg["num_layers"] == spec.num_layers and cfg["model_type"] == spec.task and cfg["freq_dim"] == 256
    expected = wan_dit_keys(spec, original_dit_dtype(spec))
    if n_shards == 1:
        shards = [folder / "diffusion_pytorch_model.safetensors"]
        assert not (folder / "diffusion_pytorch_model.safetensors.index.json").exists()
    else:
        index = json.loads((folder / "diffusion_pytorch_model.safetensors.index.json").read_text())
        names = sorted(set(index["weight_map"].values()))
        stem = "diffusion_pytorch_model"
        assert names == [f"{stem}-{i:05d}-of-{n_shards:05d}.safetensors" for i in range(1, n_shards + 1)]
        assert set(index["weight_map"]) == set(expected)
        shards = [folder / n for n in names]
    seen: dict[str, tuple[str, tuple[int, ...]]] = {}
    for shard in shards:
        header = read_header(shard)
        assert shard.stat().st_size == header.expected_file_size
        seen.update({k: (t.dtype, t.shape) for k, t in header.tensors.items()})
    assert seen == expected


def test_original_a14b_layout(tmp_path: Path) -> None:
    spec = BY_KEY["wan22_t2v_a14b"]
    root = write_original_layout(spec, tmp_path / "Wan2.2-T2V-A14B")
    for expert in ("high_noise_model", "low_noise_model"):
        _check_dit_folder(root / expert, spec, 6)
    assert not (root / "config.json").exists()
    vae = root / "Wan2.1_VAE.pth"
    assert _head(vae) == b"PK\x03\x04"
    assert vae.stat().st_size == pytest.approx(508e6, rel=0.01)
    assert (root / T5_PTH).stat().st_size == pytest.approx(11.36 * GB, rel=0.01)
    assert (root / "google/umt5-xxl/tokenizer_config.json").is_file()
    assert (root / "google/umt5-xxl/spiece.model").stat().st_size > 4_000_000
    assert json.loads((root / "configuration.json").read_text())["framework"] == "Pytorch"
    assert (root / "README.md").is_file() and not (root / CLIP_PTH).exists()
    total = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    assert total == pytest.approx(126 * GB, rel=0.02)
    disk = _disk_bytes(root)
    assert disk is None or disk < 20 * 2**20


@pytest.mark.parametrize("key, shards, vae, vae_bytes", [
    ("wan22_ti2v_5b", 3, "Wan2.2_VAE.pth", 2.82e9),
    ("wan21_t2v_1_3b", 1, "Wan2.1_VAE.pth", 508e6),
    ("wan21_t2v_14b", 6, "Wan2.1_VAE.pth", 508e6),
    ("wan21_i2v_14b_480p", 7, "Wan2.1_VAE.pth", 508e6),
])
def test_original_single_model_layouts(tmp_path: Path, key: str, shards: int, vae: str, vae_bytes: float) -> None:
    spec = BY_KEY[key]
    root = write_original_layout(spec, tmp_path / key)
    _check_dit_folder(root, spec, shards)
    assert (root / vae).stat().st_size == pytest.approx(vae_bytes, rel=0.01)
    assert _head(root / vae) == b"PK\x03\x04"
    assert not (root / "high_noise_model").exists()
    if spec.image_branch:
        assert (root / CLIP_PTH).stat().st_size == pytest.approx(4.77 * GB, rel=0.01)
        assert (root / "xlm-roberta-large/tokenizer_config.json").is_file()
    else:
        assert not (root / CLIP_PTH).exists()
    disk = _disk_bytes(root)
    assert disk is None or disk < 20 * 2**20


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.key)
def test_every_registry_model_writes_a_consistent_layout(tmp_path: Path, spec: ModelSpec) -> None:
    root = write_original_layout(spec, tmp_path / spec.key)
    dit_dirs = [root / "high_noise_model", root / "low_noise_model"] if spec.experts == 2 else [root]
    for folder in dit_dirs:
        cfg = json.loads((folder / "config.json").read_text())
        assert cfg["dim"] == spec.dim and cfg["num_heads"] == spec.heads
        headers = [read_header(p) for p in sorted(folder.glob("diffusion_pytorch_model*.safetensors"))]
        assert sum(h.parameters for h in headers) == param_count(wan_dit_keys(spec))
        assert {h.dominant_dtype for h in headers} == {original_dit_dtype(spec)}


# ----------------------------------------------------------------------------- single files

def test_single_file_fp8_scaled_with_prefix(tmp_path: Path) -> None:
    spec = BY_KEY["wan22_t2v_a14b"]
    path = write_single_file(spec, tmp_path / "wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors",
                             prefix="model.diffusion_model.", dtype="F8_E4M3", expert="high")
    header = read_header(path)
    names = set(header.tensors)
    assert all(n.startswith("model.diffusion_model.") for n in names)
    assert "model.diffusion_model.scaled_fp8" in names
    assert header.tensors["model.diffusion_model.blocks.0.self_attn.q.weight"].dtype == "F8_E4M3"
    assert header.tensors["model.diffusion_model.blocks.0.self_attn.q.scale_weight"].dtype == "F32"
    assert header.tensors["model.diffusion_model.head.modulation"].dtype == "F16"
    originals = {n for n in names if not n.endswith((".scale_weight", "scaled_fp8"))}
    assert {n.removeprefix("model.diffusion_model.") for n in originals} == set(wan_dit_keys(spec))
    assert path.stat().st_size == pytest.approx(14.3 * GB, rel=0.02)

    from safetensors import safe_open  # the real library accepts the header (scalars, empty marker)
    with safe_open(str(path), framework="pt") as fh:
        assert len(list(fh.keys())) == len(names)


def test_single_file_plain_and_expert_check(tmp_path: Path) -> None:
    spec = BY_KEY["wan22_ti2v_5b"]
    path = write_single_file(spec, tmp_path / "wan2.2_ti2v_5B_fp16.safetensors", dtype="F16")
    header = read_header(path)
    assert set(header.tensors) == set(wan_dit_keys(spec)) and header.dominant_dtype == "F16"
    assert path.stat().st_size == pytest.approx(10.0 * GB, rel=0.01)
    with pytest.raises(ValueError):
        write_single_file(spec, tmp_path / "x.safetensors", expert="high")


@pytest.mark.parametrize("kind, size", [("wan2.1", 254e6), ("wan2.2", 1.41e9)])
def test_vae_single_files(tmp_path: Path, kind: str, size: float) -> None:
    path = write_vae_single_file(kind, tmp_path / f"{kind}_vae.safetensors")
    header = read_header(path)
    assert set(header.tensors) == set(wan21_vae_keys() if kind == "wan2.1" else wan22_vae_keys())
    assert path.stat().st_size == pytest.approx(size, rel=0.01)


def test_umt5_single_files(tmp_path: Path) -> None:
    fp8 = read_header(write_umt5_single_file(tmp_path / "umt5_xxl_fp8_e4m3fn_scaled.safetensors", "F8_E4M3"))
    assert "scaled_fp8" in fp8.tensors
    assert fp8.tensors["encoder.block.0.layer.0.SelfAttention.q.weight"].dtype == "F8_E4M3"
    assert fp8.tensors["shared.weight"].dtype == "F16"
    assert "encoder.block.23.layer.1.DenseReluDense.wi_1.weight" in fp8.tensors
    assert fp8.expected_file_size == pytest.approx(6.74 * GB, rel=0.01)
    fp16 = read_header(write_umt5_single_file(tmp_path / "umt5_xxl_fp16.safetensors", "F16"))
    assert set(fp16.tensors) == set(umt5_transformers_keys())
    assert fp16.expected_file_size == pytest.approx(11.37 * GB, rel=0.01)
    assert os.path.getsize(tmp_path / "umt5_xxl_fp16.safetensors") == fp16.expected_file_size
