"""Conversion of small original-layout checkpoints, and of named single files, into diffusers folders.

The checkpoints are written here with the original key names (``tests.sparse.original_keys``)
at tiny widths and real random values. Each converted part must compute what the original
weights compute: the transformer and the Wan2.1 VAE against diffusers' own
``from_single_file``; the T5 encoder against a forward pass of Wan's T5 written below from
its key list; the Wan2.2 VAE by the structure of the full-size key list and a round trip.
Then the folder must pass Model Check, load with the loader and generate.

The builders (``write_tiny_original``, ...) are shared with ``test_convert_crash.py``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from core.check.detect import inspect  # noqa: E402
from core.errors import WanError  # noqa: E402
from core.fix.convert import plan_assembly, plan_conversion  # noqa: E402
from core.fix.convert.keys import T5_TO_UMT5, VAE22_TO_DIFFUSERS, rename  # noqa: E402
from tests.sparse.original_keys import umt5_original_keys, wan21_vae_keys, wan22_vae_keys, wan_dit_keys  # noqa: E402
from tests.sparse.original_layout import T5_PTH, VAE_PTH, original_config  # noqa: E402
from tests.sparse.specs import ModelSpec  # noqa: E402

DIM, HEADS, FFN, LAYERS, TEXT_DIM = 24, 2, 32, 2, 32
T5_HEADS, T5_DKV, T5_FFN, T5_LAYERS, T5_BUCKETS = 4, 8, 64, 2, 32
TINY = {
    "a14b": ModelSpec("tiny_a14b", None, None, "2.2", "t2v", DIM, FFN, LAYERS, 16, 16, experts=2,
                      boundary_ratio=0.875),
    "ti2v": ModelSpec("tiny_ti2v", None, None, "2.2", "ti2v", DIM, FFN, LAYERS, 48, 48, vae="wan2.2",
                      expand_timesteps=True),
    "t2v21": ModelSpec("tiny_t2v21", None, None, "2.1", "t2v", DIM, FFN, LAYERS, 16, 16),
}


# --------------------------------------------------------------------------- builders

def _randn(shape: tuple[int, ...], gen: torch.Generator, scale: float = 0.3) -> torch.Tensor:
    return torch.randn(shape, generator=gen) * scale


def tiny_dit(spec: ModelSpec, seed: int) -> dict[str, torch.Tensor]:
    """An original-name Wan DiT of ``spec`` (one expert), text width TEXT_DIM, random values."""
    gen = torch.Generator().manual_seed(seed)
    keys = wan_dit_keys(spec, "F32")
    keys["text_embedding.0.weight"] = ("F32", (spec.dim, TEXT_DIM))
    return {k: _randn(shape, gen) for k, (_, shape) in keys.items()}


def tiny_dit_config(spec: ModelSpec, heads: int = HEADS) -> dict[str, Any]:
    return {**original_config(spec), "num_heads": heads}


def _inverse(table_fn, full_keys: dict[str, Any]) -> dict[str, str]:
    """diffusers name -> original name, from a forward mapping over the full-size key list."""
    return {table_fn(k): k for k in full_keys}


def _wan21_forward_names() -> dict[str, str]:
    """Original Wan2.1 VAE name -> diffusers name, from diffusers' own converter (names only)."""
    from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers
    meta = {k: torch.empty(s, device="meta") for k, (_, s) in wan21_vae_keys().items()}
    ids = {id(t): k for k, t in meta.items()}
    return {ids[id(t)]: new for new, t in convert_wan_vae_to_diffusers(dict(meta)).items()}


def tiny_vae_model(kind: str, seed: int) -> Any:
    """A tiny diffusers AutoencoderKLWan (the real dim_mult and blocks) with random values everywhere."""
    from core.demo import _build_vae
    vae = _build_vae("2.2" if kind == "wan2.2" else "2.1", seed)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in vae.parameters():
            p.copy_(_randn(tuple(p.shape), gen, 0.2) + (1.0 if p.ndim and p.shape[-1] == 1 else 0.0))
    return vae.eval()


def tiny_vae_original(vae: Any, kind: str) -> dict[str, torch.Tensor]:
    """The same weights under the original names (the inverse of the name mapping)."""
    sd = vae.state_dict()
    if kind == "wan2.2":
        inverse = _inverse(lambda k: rename(k, VAE22_TO_DIFFUSERS), wan22_vae_keys())
    else:
        inverse = {new: old for old, new in _wan21_forward_names().items()}
    assert set(inverse) == set(sd), set(inverse) ^ set(sd)
    return {inverse[k]: v.clone() for k, v in sd.items()}


def tiny_t5(vocab: int, seed: int) -> dict[str, torch.Tensor]:
    """Wan's T5 encoder names (``umt5_original_keys``) at tiny widths, bfloat16 like the real file."""
    gen = torch.Generator().manual_seed(seed)
    inner = T5_HEADS * T5_DKV
    shapes = {"token_embedding.weight": (vocab, TEXT_DIM), "norm.weight": (TEXT_DIM,)}
    for n in range(T5_LAYERS):
        b = f"blocks.{n}"
        shapes.update({f"{b}.norm1.weight": (TEXT_DIM,), f"{b}.norm2.weight": (TEXT_DIM,),
                       f"{b}.attn.q.weight": (inner, TEXT_DIM), f"{b}.attn.k.weight": (inner, TEXT_DIM),
                       f"{b}.attn.v.weight": (inner, TEXT_DIM), f"{b}.attn.o.weight": (TEXT_DIM, inner),
                       f"{b}.ffn.gate.0.weight": (T5_FFN, TEXT_DIM), f"{b}.ffn.fc1.weight": (T5_FFN, TEXT_DIM),
                       f"{b}.ffn.fc2.weight": (TEXT_DIM, T5_FFN),
                       f"{b}.pos_embedding.embedding.weight": (T5_BUCKETS, T5_HEADS)})
    names = set(umt5_original_keys())
    assert set(shapes) == {k for k in names if not k.startswith("blocks.") or int(k.split(".")[1]) < T5_LAYERS}
    return {k: (_randn(s, gen, 0.5) + (1.0 if "norm" in k else 0.0)).to(torch.bfloat16) for k, s in shapes.items()}


def write_tokenizer(folder: Path) -> int:
    """The demo's offline T5 tokenizer saved as ``google/umt5-xxl/``; returns its vocabulary size."""
    from core.demo import _build_tokenizer
    tok = _build_tokenizer()
    tok.save_pretrained(folder)
    return len(tok)


def save_shards(folder: Path, tensors: dict[str, torch.Tensor], shards: int = 2) -> None:
    """``diffusion_pytorch_model-0000i-of-0000n.safetensors`` + index, as the official repositories."""
    from safetensors.torch import save_file
    folder.mkdir(parents=True, exist_ok=True)
    names = list(tensors)
    per = math.ceil(len(names) / shards)
    weight_map = {}
    for i in range(shards):
        file = f"diffusion_pytorch_model-{i + 1:05d}-of-{shards:05d}.safetensors"
        part = {k: tensors[k].contiguous() for k in names[i * per:(i + 1) * per]}
        save_file(part, folder / file)
        weight_map.update({k: file for k in part})
    (folder / "diffusion_pytorch_model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": 0}, "weight_map": weight_map}))


def write_tiny_original(key: str, root: Path, seed: int = 0) -> dict[str, Any]:
    """Write a tiny original Wan-AI folder (``TINY[key]``) at ``root``; returns its weights for references."""
    spec = TINY[key]
    root.mkdir(parents=True, exist_ok=True)
    vocab = write_tokenizer(root / "google" / "umt5-xxl")
    weights: dict[str, Any] = {}
    dirs = ["high_noise_model", "low_noise_model"] if spec.experts == 2 else [""]
    for i, d in enumerate(dirs):
        dit = tiny_dit(spec, seed + 10 + i)
        save_shards(root / d if d else root, dit)
        ((root / d if d else root) / "config.json").write_text(json.dumps(tiny_dit_config(spec)))
        weights[d or "dit"] = dit
    vae_model = tiny_vae_model(spec.vae, seed + 20)
    weights["vae_model"] = vae_model
    weights["vae"] = tiny_vae_original(vae_model, spec.vae)
    torch.save(weights["vae"], root / VAE_PTH[spec.vae])
    weights["t5"] = tiny_t5(vocab, seed + 30)
    torch.save(weights["t5"], root / T5_PTH)
    (root / "configuration.json").write_text(json.dumps({"framework": "Pytorch", "task": "text-to-video-synthesis"}))
    return weights


def tree_hash(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------- references

def diffusers_transformer_config(spec: ModelSpec) -> dict[str, Any]:
    """The diffusers config the converted DiT must have, written by hand from the widths."""
    return dict(patch_size=[1, 2, 2], num_attention_heads=HEADS, attention_head_dim=DIM // HEADS,
                in_channels=spec.in_channels, out_channels=spec.out_channels, text_dim=TEXT_DIM, freq_dim=256,
                ffn_dim=FFN, num_layers=LAYERS, cross_attn_norm=True, qk_norm="rms_norm_across_heads", eps=1e-6,
                image_dim=None, added_kv_proj_dim=None, rope_max_seq_len=1024)


def reference_transformer(spec: ModelSpec, state: dict[str, torch.Tensor], tmp: Path) -> Any:
    """diffusers' own conversion: ``from_single_file`` with a local config, never the hub."""
    from diffusers import WanTransformer3DModel
    cfg = tmp / "ref_transformer" / "transformer"
    cfg.mkdir(parents=True, exist_ok=True)
    (cfg / "config.json").write_text(json.dumps({"_class_name": "WanTransformer3DModel",
                                                 **diffusers_transformer_config(spec)}))
    return WanTransformer3DModel.from_single_file({k: v.clone() for k, v in state.items()},
                                                  config=str(cfg.parent), subfolder="transformer").eval()


def reference_vae21(state: dict[str, torch.Tensor], vae_model: Any, tmp: Path) -> Any:
    from diffusers import AutoencoderKLWan
    cfg = tmp / "ref_vae" / "vae"
    cfg.mkdir(parents=True, exist_ok=True)
    (cfg / "config.json").write_text(json.dumps(dict(vae_model.config)))
    return AutoencoderKLWan.from_single_file({k: v.clone() for k, v in state.items()},
                                             config=str(cfg.parent), subfolder="vae").eval()


def _rms(x: torch.Tensor, w: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w.float()


def _bucket(rel: torch.Tensor, num_buckets: int = T5_BUCKETS, max_dist: int = 128) -> torch.Tensor:
    """Wan's T5RelativeEmbedding._relative_position_bucket, bidirectional."""
    num_buckets //= 2
    buckets = (rel > 0).long() * num_buckets
    rel = rel.abs()
    max_exact = num_buckets // 2
    large = max_exact + (torch.log(rel.float() / max_exact) / math.log(max_dist / max_exact)
                         * (num_buckets - max_exact)).long()
    large = torch.minimum(large, torch.full_like(large, num_buckets - 1))
    return buckets + torch.where(rel < max_exact, rel, large)


def wan_t5_forward(sd: dict[str, torch.Tensor], ids: torch.Tensor) -> torch.Tensor:
    """Wan's T5Encoder (wan/modules/t5.py, shared_pos=False) in float32, from its key list.

    Per block: x += o(attn(norm1(x)) + relative bias); x += fc2(fc1(h) * gelu_tanh(gate(h))),
    h = norm2(x); then the final norm. T5 attention has no 1/sqrt(d) scaling.
    """
    f = {k: v.float() for k, v in sd.items()}
    x = f["token_embedding.weight"][ids]
    b, n = ids.shape
    rel = torch.arange(n)[None, :] - torch.arange(n)[:, None]
    for i in range(T5_LAYERS):
        p = f"blocks.{i}."
        h = _rms(x, f[p + "norm1.weight"])
        q, k, v = (torch.nn.functional.linear(h, f[p + f"attn.{c}.weight"]).view(b, n, T5_HEADS, T5_DKV) for c in "qkv")
        bias = f[p + "pos_embedding.embedding.weight"][_bucket(rel)].permute(2, 0, 1)[None]
        attn = (torch.einsum("binc,bjnc->bnij", q, k) + bias).softmax(-1)
        out = torch.einsum("bnij,bjnc->binc", attn, v).reshape(b, n, -1)
        x = x + torch.nn.functional.linear(out, f[p + "attn.o.weight"])
        h = _rms(x, f[p + "norm2.weight"])
        gate = torch.nn.functional.gelu(torch.nn.functional.linear(h, f[p + "ffn.gate.0.weight"]), approximate="tanh")
        x = x + torch.nn.functional.linear(torch.nn.functional.linear(h, f[p + "ffn.fc1.weight"]) * gate,
                                           f[p + "ffn.fc2.weight"])
    return _rms(x, f["norm.weight"])


def _dit_inputs(spec: ModelSpec) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(7)
    return dict(hidden_states=torch.randn(1, spec.in_channels, 2, 4, 4, generator=gen),
                timestep=torch.tensor([500.0]), encoder_hidden_states=torch.randn(1, 6, TEXT_DIM, generator=gen),
                return_dict=False)


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max())


# --------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def a14b(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], Path, dict[str, str]]:
    """A tiny Wan2.2 T2V-A14B original folder (two experts, Wan2.1 VAE), converted once."""
    root = tmp_path_factory.mktemp("a14b") / "Wan2.2-T2V-A14B"
    weights = write_tiny_original("a14b", root)
    before = tree_hash(root)
    plan = plan_conversion(inspect(root))
    assert plan.refusal is None, plan.refusal
    out = plan.execute()
    return root, weights, out, before


@pytest.fixture(scope="module")
def ti2v(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], Path]:
    root = tmp_path_factory.mktemp("ti2v") / "Wan2.2-TI2V-5B"
    weights = write_tiny_original("ti2v", root)
    out = plan_conversion(inspect(root)).execute()
    return root, weights, out


# --------------------------------------------------------------------------- the A14B conversion

def test_a14b_plan_names_every_step(a14b: Any, tmp_path: Path) -> None:
    root = a14b[0]
    plan = plan_conversion(inspect(root), tmp_path / "out")
    text = "\n".join(plan.describe())
    assert "high_noise_model/ (2 shards" in text and "to transformer/ (WanTransformer3DModel), the high-noise expert" in text
    assert "low_noise_model/" in text and "transformer_2/" in text
    assert "Wan2.1_VAE.pth" in text and T5_PTH in text and "UMT5EncoderModel" in text
    assert "flow_shift 12" in text and "boundary_ratio 0.875" in text
    assert plan.fits_disk and plan.bytes_needed > 0 and plan.bytes_free > plan.bytes_needed
    assert plan.to_dict()["target"] == str(tmp_path / "out") and not (tmp_path / "out").exists()


def test_a14b_folder_passes_model_check_and_source_is_untouched(a14b: Any) -> None:
    root, _, out, before = a14b
    assert tree_hash(root) == before
    assert out == root.with_name("Wan2.2-T2V-A14B-diffusers")
    report = inspect(out)
    source = inspect(root)
    assert report.loadable, [f.message for f in report.errors]
    assert report.layout.value == "diffusers" and report.experts == 2 and report.task == "t2v"
    assert report.pipeline_class == "WanPipeline" and report.boundary_ratio == 0.875
    assert report.registry_id == source.registry_id
    index = json.loads((out / "model_index.json").read_text())
    assert index["transformer_2"] == ["diffusers", "WanTransformer3DModel"] and index["expand_timesteps"] is False
    assert index["tokenizer"] == ["transformers", "T5TokenizerFast"]
    sched = json.loads((out / "scheduler" / "scheduler_config.json").read_text())
    assert sched["_class_name"] == "UniPCMultistepScheduler" and sched["flow_shift"] == 12.0
    assert sched["prediction_type"] == "flow_prediction" and sched["use_flow_sigmas"] is True
    tok = json.loads((out / "tokenizer" / "tokenizer_config.json").read_text())
    assert tok["tokenizer_class"] == "T5TokenizerFast"
    assert not list(out.parent.glob(".*partial*"))


@pytest.mark.parametrize("expert, folder", [("high_noise_model", "transformer"), ("low_noise_model", "transformer_2")])
def test_a14b_experts_match_diffusers_from_single_file(a14b: Any, tmp_path: Path, expert: str, folder: str) -> None:
    from diffusers import WanTransformer3DModel
    _, weights, out, _ = a14b
    spec = TINY["a14b"]
    ref = reference_transformer(spec, weights[expert], tmp_path)
    mine = WanTransformer3DModel.from_pretrained(out / folder).eval()
    assert {k: v.shape for k, v in mine.state_dict().items()} == {k: v.shape for k, v in ref.state_dict().items()}
    assert all(torch.equal(v, ref.state_dict()[k]) for k, v in mine.state_dict().items())
    cfg = json.loads((out / folder / "config.json").read_text())
    assert {k: cfg[k] for k in diffusers_transformer_config(spec)} == {
        k: v for k, v in diffusers_transformer_config(spec).items()}
    with torch.no_grad():
        diff = _max_diff(mine(**_dit_inputs(spec))[0], ref(**_dit_inputs(spec))[0])
    print(f"{folder}: max |converted - from_single_file| = {diff:.3g}")
    assert diff == 0.0


def test_a14b_experts_stay_apart(a14b: Any) -> None:
    """high_noise_model -> transformer, low_noise_model -> transformer_2, not the other way round."""
    from safetensors import safe_open
    _, weights, out, _ = a14b
    with safe_open(str(out / "transformer" / "diffusion_pytorch_model.safetensors"), "pt") as fh:
        assert torch.equal(fh.get_tensor("proj_out.weight"), weights["high_noise_model"]["head.head.weight"])
    with safe_open(str(out / "transformer_2" / "diffusion_pytorch_model.safetensors"), "pt") as fh:
        assert torch.equal(fh.get_tensor("proj_out.weight"), weights["low_noise_model"]["head.head.weight"])


def test_wan21_vae_matches_diffusers_from_single_file(a14b: Any, tmp_path: Path) -> None:
    from diffusers import AutoencoderKLWan
    _, weights, out, _ = a14b
    ref = reference_vae21(weights["vae"], weights["vae_model"], tmp_path)
    mine = AutoencoderKLWan.from_pretrained(out / "vae").eval()
    assert mine.config.z_dim == 16 and mine.config.base_dim == ref.config.base_dim
    gen = torch.Generator().manual_seed(3)
    z = torch.randn(1, 16, 2, 4, 4, generator=gen)
    video = torch.rand(1, 3, 5, 32, 32, generator=gen) * 2 - 1
    with torch.no_grad():
        d_dec = _max_diff(mine.decode(z).sample, ref.decode(z).sample)
        d_enc = _max_diff(mine.encode(video).latent_dist.mean, ref.encode(video).latent_dist.mean)
    print(f"Wan2.1 VAE: decode max diff {d_dec:.3g}, encode {d_enc:.3g}")
    assert d_dec == 0.0 and d_enc == 0.0


def test_t5_matches_a_forward_pass_of_wans_t5(a14b: Any) -> None:
    from transformers import UMT5EncoderModel
    _, weights, out, _ = a14b
    model = UMT5EncoderModel.from_pretrained(out / "text_encoder", dtype=torch.float32).eval()
    ids = torch.tensor([[5, 17, 3, 42, 8, 1], [9, 2, 60, 33, 7, 1]])
    with torch.no_grad():
        mine = model(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state
    ref = wan_t5_forward(weights["t5"], ids)
    diff = _max_diff(mine, ref)
    print(f"T5: max |UMT5EncoderModel - Wan T5 reference| = {diff:.3g} (output scale {float(ref.abs().max()):.3g})")
    assert diff < 1e-4
    # The gate/fc1 assignment matters: swapping wi_0 and wi_1 gives another result.
    with torch.no_grad():
        for blk in model.encoder.block:
            ff = blk.layer[1].DenseReluDense
            ff.wi_0.weight, ff.wi_1.weight = ff.wi_1.weight, ff.wi_0.weight
        swapped = model(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state
    assert _max_diff(swapped, ref) > 1e-2


def test_t5_rename_table_covers_the_full_size_key_list() -> None:
    from accelerate import init_empty_weights
    from transformers import UMT5Config, UMT5EncoderModel

    from core.fix.convert.keys import umt5_config
    full = umt5_original_keys()
    cfg = umt5_config({k: s for k, (_, s) in full.items()}, original=True)
    with init_empty_weights():
        model = UMT5EncoderModel(UMT5Config(**cfg))
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items() if k != "encoder.embed_tokens.weight"}
    assert {rename(k, T5_TO_UMT5): s for k, (_, s) in full.items()} == expected


def test_a14b_generates_with_the_loader(a14b: Any) -> None:
    from core.run.generation import GenerationConfig
    from core.run.load import WanPipelineLoader
    out = a14b[2]
    wrapper = WanPipelineLoader().load_wan_pipeline(out)
    assert type(wrapper.pipeline).__name__ == "WanPipeline" and wrapper.pipeline.transformer_2 is not None
    frames, result = wrapper.generate_frames(GenerationConfig(prompt="x", width=32, height=32, num_frames=5,
                                                              num_inference_steps=2))
    assert result.success, result.errors
    assert tuple(frames.shape) == (5, 32, 32, 3)


# --------------------------------------------------------------------------- TI2V-5B with the Wan2.2 VAE

def test_ti2v_converts_with_the_wan22_vae(ti2v: Any) -> None:
    from diffusers import AutoencoderKLWan
    _, weights, out = ti2v
    report = inspect(out)
    assert report.loadable and report.task == "ti2v" and report.vae_z_dim == 48 and report.expand_timesteps is True
    index = json.loads((out / "model_index.json").read_text())
    assert index["transformer_2"] == [None, None] and index["boundary_ratio"] is None
    mine = AutoencoderKLWan.from_pretrained(out / "vae").eval()
    ref = weights["vae_model"]
    public = lambda cfg: {k: v for k, v in dict(cfg).items() if not k.startswith("_")}  # noqa: E731
    assert public(mine.config) == public(ref.config)
    gen = torch.Generator().manual_seed(4)
    z = torch.randn(1, 48, 2, 2, 2, generator=gen)
    video = torch.rand(1, 3, 5, 32, 32, generator=gen) * 2 - 1
    with torch.no_grad():
        d_dec = _max_diff(mine.decode(z).sample, ref.decode(z).sample)
        d_enc = _max_diff(mine.encode(video).latent_dist.mean, ref.encode(video).latent_dist.mean)
    print(f"Wan2.2 VAE round trip: decode max diff {d_dec:.3g}, encode {d_enc:.3g}")
    assert d_dec == 0.0 and d_enc == 0.0


def test_wan22_vae_mapping_matches_diffusers_z48_at_full_size() -> None:
    """Every original key of the full-size Wan2.2 VAE maps, onto exactly the z48 state dict's shapes."""
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKLWan

    from core.fix.convert.keys import vae22_config
    full = wan22_vae_keys()
    shapes = {k: s for k, (_, s) in full.items()}
    with init_empty_weights():
        vae = AutoencoderKLWan(**vae22_config(shapes))
    expected = {k: tuple(v.shape) for k, v in vae.state_dict().items()}
    mapped = {rename(k, VAE22_TO_DIFFUSERS): s for k, s in shapes.items()}
    assert None not in mapped and len(mapped) == len(full) == len(expected)
    assert mapped == expected
    assert vae.config.base_dim == 160 and vae.config.decoder_base_dim == 256 and vae.config.patch_size == 2


def test_ti2v_transformer_matches_and_generates(ti2v: Any, tmp_path: Path) -> None:
    from diffusers import WanTransformer3DModel

    from core.run.generation import GenerationConfig
    from core.run.load import WanPipelineLoader
    _, weights, out = ti2v
    spec = TINY["ti2v"]
    ref = reference_transformer(spec, weights["dit"], tmp_path)
    mine = WanTransformer3DModel.from_pretrained(out / "transformer").eval()
    with torch.no_grad():
        diff = _max_diff(mine(**_dit_inputs(spec))[0], ref(**_dit_inputs(spec))[0])
    print(f"TI2V transformer: max diff {diff:.3g}")
    assert diff == 0.0
    frames, result = WanPipelineLoader().load_wan_pipeline(out).generate_frames(
        GenerationConfig(prompt="x", width=32, height=32, num_frames=5, num_inference_steps=2))
    assert result.success, result.errors


def test_wan21_vace_converts_to_the_vace_transformer(tmp_path: Path) -> None:
    from diffusers import WanVACETransformer3DModel
    spec = ModelSpec("tiny_vace", None, None, "2.1", "vace", DIM, FFN, LAYERS, 16, 16, vace_layers=(0,),
                     pipeline_class="WanVACEPipeline")
    root = tmp_path / "Wan2.1-VACE-1.3B"
    vocab = write_tokenizer(root / "google" / "umt5-xxl")
    dit = tiny_dit(spec, 1)
    save_shards(root, dit)
    (root / "config.json").write_text(json.dumps(tiny_dit_config(spec)))
    torch.save(tiny_vae_original(tiny_vae_model("wan2.1", 2), "wan2.1"), root / VAE_PTH["wan2.1"])
    torch.save(tiny_t5(vocab, 3), root / T5_PTH)
    out = plan_conversion(inspect(root)).execute()
    report = inspect(out)
    assert report.loadable and report.pipeline_class == "WanVACEPipeline" and report.task == "vace"
    cfg = tmp_path / "ref" / "transformer"
    cfg.mkdir(parents=True)
    (cfg / "config.json").write_text(json.dumps({"_class_name": "WanVACETransformer3DModel",
                                                 **diffusers_transformer_config(spec), "vace_layers": [0],
                                                 "vace_in_channels": 96}))
    ref = WanVACETransformer3DModel.from_single_file(dict(dit), config=str(cfg.parent), subfolder="transformer")
    mine = WanVACETransformer3DModel.from_pretrained(out / "transformer")
    assert mine.state_dict().keys() == ref.state_dict().keys()
    assert all(torch.equal(v, ref.state_dict()[k]) for k, v in mine.state_dict().items())


# --------------------------------------------------------------------------- single files

def _save_single(path: Path, tensors: dict[str, torch.Tensor], prefix: str = "") -> Path:
    from safetensors.torch import save_file
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({prefix + k: v.contiguous() for k, v in tensors.items()}, path)
    return path


def _umt5_file(path: Path, vocab: int) -> tuple[Path, Any]:
    """ComfyUI's umt5_xxl file: transformers' names, no separate embed_tokens; tiny widths."""
    from transformers import UMT5Config, UMT5EncoderModel
    torch.manual_seed(0)
    model = UMT5EncoderModel(UMT5Config(vocab_size=vocab, d_model=TEXT_DIM, d_kv=T5_DKV, d_ff=T5_FFN,
                                        num_layers=T5_LAYERS, num_heads=T5_HEADS, feed_forward_proj="gated-gelu"))
    state = {k: v for k, v in model.state_dict().items() if k != "encoder.embed_tokens.weight"}
    return _save_single(path, state), model


@pytest.mark.parametrize("prefix", ["", "model.diffusion_model."])
def test_assembly_of_comfyui_files_loads_and_generates(tmp_path: Path, prefix: str) -> None:
    from diffusers import WanTransformer3DModel
    from transformers import UMT5EncoderModel

    from core.run.generation import GenerationConfig
    from core.run.load import WanPipelineLoader
    spec = ModelSpec("tiny_single", None, None, "2.2", "t2v", 256, FFN, LAYERS, 16, 16, experts=2)
    high, low = tiny_dit(spec, 1), tiny_dit(spec, 2)   # width 256: 2 heads of 128, as the files carry no config
    files = tmp_path / "ComfyUI" / "models"
    t_high = _save_single(files / "diffusion_models" / "wan2.2_t2v_high_noise_14B_fp16.safetensors", high, prefix)
    t_low = _save_single(files / "diffusion_models" / "wan2.2_t2v_low_noise_14B_fp16.safetensors", low, prefix)
    vae_model = tiny_vae_model("wan2.1", 5)
    vae = _save_single(files / "vae" / "wan_2.1_vae.safetensors", tiny_vae_original(vae_model, "wan2.1"))
    tok_dir = tmp_path / "umt5-tokenizer"
    vocab = write_tokenizer(tok_dir)
    te, te_model = _umt5_file(files / "text_encoders" / "umt5_xxl_fp16.safetensors", vocab)
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in (t_high, t_low, vae, te)}

    out = tmp_path / "assembled"
    plan = plan_assembly(transformer=t_high, transformer_2=t_low, vae=vae, text_encoder=te, tokenizer=tok_dir, out=out)
    assert plan.refusal is None, plan.refusal
    plan.execute()
    assert {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in before} == before
    report = inspect(out)
    assert report.loadable and report.experts == 2 and report.boundary_ratio == 0.875, report.errors
    mine = WanTransformer3DModel.from_pretrained(out / "transformer")
    assert torch.equal(mine.state_dict()["proj_out.weight"], high["head.head.weight"])
    assert torch.equal(WanTransformer3DModel.from_pretrained(out / "transformer_2").state_dict()["proj_out.weight"],
                       low["head.head.weight"])
    loaded_te = UMT5EncoderModel.from_pretrained(out / "text_encoder")
    assert all(torch.equal(v, te_model.state_dict()[k]) for k, v in loaded_te.state_dict().items())
    frames, result = WanPipelineLoader().load_wan_pipeline(out).generate_frames(
        GenerationConfig(prompt="x", width=32, height=32, num_frames=5, num_inference_steps=2))
    assert result.success, result.errors


def test_assembly_dequantises_comfyui_fp8_scaled_files(tmp_path: Path) -> None:
    """``*_fp8_scaled`` files: fp8 Linear weights with a ``scale_weight`` each become bfloat16 weight x scale."""
    from diffusers import WanTransformer3DModel
    spec = ModelSpec("tiny_single", None, None, "2.1", "t2v", 256, FFN, LAYERS, 16, 16)
    plain = tiny_dit(spec, 3)
    fp8: dict[str, Any] = {"scaled_fp8": torch.zeros(0, dtype=torch.float8_e4m3fn)}
    for k, v in plain.items():
        if k.endswith(".weight") and v.ndim == 2 and "embedding" not in k:
            scale = v.abs().max() / 448
            fp8[k] = (v / scale).to(torch.float8_e4m3fn)
            fp8[k[: -len("weight")] + "scale_weight"] = scale.reshape(())
        else:
            fp8[k] = v.to(torch.float16)
    dit = _save_single(tmp_path / "wan2.1_t2v_1.3B_fp8_scaled.safetensors", fp8, "model.diffusion_model.")
    vae = _save_single(tmp_path / "wan_2.1_vae.safetensors", tiny_vae_original(tiny_vae_model("wan2.1", 5), "wan2.1"))
    te, _ = _umt5_file(tmp_path / "umt5_xxl_fp8_e4m3fn_scaled.safetensors", write_tokenizer(tmp_path / "tok"))
    plan = plan_assembly(transformer=dit, vae=vae, text_encoder=te, tokenizer=tmp_path / "tok", out=tmp_path / "out")
    assert plan.refusal is None, plan.refusal
    out = plan.execute()
    assert inspect(out).loadable
    from safetensors.torch import load_file
    state = load_file(out / "transformer" / "diffusion_pytorch_model.safetensors")
    WanTransformer3DModel.from_pretrained(out / "transformer")
    q = "blocks.1.attn1.to_q.weight"
    expected = (fp8["blocks.1.self_attn.q.weight"].float() * fp8["blocks.1.self_attn.q.scale_weight"]).to(torch.bfloat16)
    assert state[q].dtype == torch.bfloat16 and torch.equal(state[q], expected)
    assert _max_diff(state[q], plain["blocks.1.self_attn.q.weight"]) < 0.1   # fp8 is coarse, but the scale is applied
    assert state["scale_shift_table"].dtype == torch.float16


def test_assembly_refusals_are_sentences(tmp_path: Path) -> None:
    spec = ModelSpec("tiny_single", None, None, "2.1", "t2v", 256, FFN, LAYERS, 16, 16)
    dit = _save_single(tmp_path / "dit.safetensors", tiny_dit(spec, 1))
    vae22 = _save_single(tmp_path / "wan2.2_vae.safetensors", tiny_vae_original(tiny_vae_model("wan2.2", 1), "wan2.2"))
    te, _ = _umt5_file(tmp_path / "umt5.safetensors", 300)
    write_tokenizer(tmp_path / "google" / "umt5-xxl")   # found beside the text encoder
    plan = plan_assembly(transformer=dit, vae=vae22, text_encoder=te, out=tmp_path / "o")
    assert plan.refusal and "needs the Wan2.1 VAE" in plan.refusal and "z_dim 48" in plan.refusal
    plan = plan_assembly(transformer=dit, vae=dit, text_encoder=te, out=tmp_path / "o")
    assert plan.refusal == f"The file given as --vae is not a Wan VAE: {dit.name}."
    plan = plan_assembly(transformer=dit, vae=vae22, text_encoder=dit, out=tmp_path / "o")
    assert plan.refusal == f"The file given as --text-encoder is not the umT5 text encoder: {dit.name}."
    plan = plan_assembly(transformer=tmp_path / "missing.safetensors", vae=dit, text_encoder=te, out=tmp_path / "o")
    assert "does not exist" in (plan.refusal or "")
    with pytest.raises(WanError):
        plan.execute()


def test_single_transformer_file_points_to_assembly(tmp_path: Path) -> None:
    spec = ModelSpec("tiny_single", None, None, "2.1", "t2v", 256, FFN, LAYERS, 16, 16)
    dit = _save_single(tmp_path / "wan2.1_t2v_1.3B_fp16.safetensors", tiny_dit(spec, 1))
    plan = plan_conversion(inspect(dit))
    assert plan.refusal and "--assemble" in plan.refusal and "--vae" in plan.refusal


# --------------------------------------------------------------------------- refusals

def test_wan21_t2v_converts_and_missing_tokenizer_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "Wan2.1-T2V-1.3B"
    write_tiny_original("t2v21", root)
    out = plan_conversion(inspect(root)).execute()
    assert inspect(out).loadable and json.loads((out / "scheduler/scheduler_config.json").read_text())["flow_shift"] == 5.0
    import shutil
    shutil.rmtree(root / "google")
    plan = plan_conversion(inspect(root), tmp_path / "again")
    assert plan.refusal and "google/umt5-xxl/" in plan.refusal
    assert plan.steps == () and not plan.fits_disk


def test_existing_target_and_diffusers_source_are_refused(a14b: Any) -> None:
    root, _, out, _ = a14b
    plan = plan_conversion(inspect(root))
    assert plan.refusal and "already exists" in plan.refusal
    with pytest.raises(WanError, match="already exists"):
        plan.execute()
    assert "already in the diffusers layout" in (plan_conversion(inspect(out)).refusal or "")
    assert "outside the model folder" in (plan_conversion(inspect(root), root / "converted").refusal or "")


def test_a14b_with_one_expert_missing_is_refused(a14b: Any, tmp_path: Path) -> None:
    import shutil
    root = a14b[0]
    copy = tmp_path / "Wan2.2-T2V-A14B"
    shutil.copytree(root, copy, ignore=shutil.ignore_patterns("low_noise_model"))
    plan = plan_conversion(inspect(copy))
    assert plan.refusal and "low_noise_model/ is missing" in plan.refusal


def test_not_enough_disk_is_refused_with_the_numbers(a14b: Any, tmp_path: Path) -> None:
    root = a14b[0]
    small = tmp_path / "small"
    small.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a 1 MB tmpfs needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode(errors='replace').strip()}")
    try:
        plan = plan_conversion(inspect(root), small / "out")
        assert not plan.fits_disk and plan.bytes_free <= 2**20 < plan.bytes_needed
        assert plan.refusal and f"{plan.bytes_needed:,} bytes" in plan.refusal and f"{plan.bytes_free:,} bytes" in plan.refusal
        with pytest.raises(WanError):
            plan.execute()
        assert list(small.iterdir()) == []
    finally:
        subprocess.run(["umount", str(small)], check=False)


# --------------------------------------------------------------------------- the never-unpickled .pth

class _Evil:
    marker = ""

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("how", ["torch_save", "raw_pickle"])
def test_a_pth_that_would_run_code_is_never_executed(tmp_path: Path, how: str) -> None:
    import pickle
    root = tmp_path / "Wan2.1-T2V-1.3B"
    write_tiny_original("t2v21", root)
    marker = tmp_path / "PWNED"
    evil = _Evil()
    evil.marker = str(marker)
    payload = {"token_embedding.weight": torch.zeros(2, 2), "x": evil}
    if how == "torch_save":
        torch.save(payload, root / T5_PTH)
    else:
        (root / T5_PTH).write_bytes(pickle.dumps(payload))
    # The payload is live: plain unpickling (in another process) runs it.
    probe = _Evil()
    probe.marker = str(tmp_path / "probe-ran")
    subprocess.run([sys.executable, "-c", "import pickle, sys; pickle.loads(sys.stdin.buffer.read())"],
                   input=pickle.dumps(probe), check=True, timeout=30)
    assert (tmp_path / "probe-ran").exists()
    plan = plan_conversion(inspect(root), tmp_path / "out")
    assert plan.refusal is None
    with pytest.raises(WanError) as info:
        plan.execute()
    assert T5_PTH in info.value.message and ("run code" in info.value.message or "not a PyTorch" in info.value.message)
    assert not marker.exists()
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.partial-*"))
