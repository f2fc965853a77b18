"""LoRA files in every format Wan users download, with their real key names, built for tests.

Key names (WAN_FACTS.md, "LoRA files"): ComfyUI / Kijai / lightx2v
``diffusion_model.blocks.N.{self_attn,cross_attn}.{q,k,v,o}`` and ``.ffn.{0,2}`` with
``.lora_down/.lora_up.weight`` + ``.alpha`` (lightx2v adds ``.diff_b`` and ``norm*.diff``), the same
without the prefix, ai-toolkit's ``.lora_A/.lora_B``; diffusers/peft
``transformer.blocks.N.attn1.to_q.lora_A.weight``; musubi ``lora_unet_blocks_N_self_attn_q.lora_down.weight``;
LyCORIS LoHa ``.hada_w1_a``; and other families (SDXL, Flux) for the refusals.

``lora_tensors`` gives {name: shape}; ``write_lora`` writes real random weights (small widths,
loaded by diffusers in the tests) or, with ``sparse=True``, only the header at full size (the
real widths: 5120 for 14B, rank 64, 40 blocks) for header-only checks.

Usage::

    write_lora(tmp / "style.safetensors", "comfyui", dim=24, ffn=32, blocks=2)          # the demo's widths
    write_lora(tmp / "lightning_HIGH.safetensors", "comfyui", dim=5120, ffn=13824, blocks=40, rank=64, sparse=True)
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from tests.sparse.writer import write_sparse_safetensors

FORMATS = ("comfyui", "comfyui_bare", "aitoolkit", "lightx2v", "diffusers", "musubi")
_ORIG = {"self_attn": "attn1", "cross_attn": "attn2"}
_PROJ = {"q": "to_q", "k": "to_k", "v": "to_v", "o": "to_out.0", "k_img": "add_k_proj", "v_img": "add_v_proj"}


def _layers(dim: int, ffn: int, blocks: int, i2v: bool) -> list[tuple[int, str, str, int, int]]:
    """(block, attention or 'ffn', projection, in, out) for every layer a Wan LoRA changes."""
    out = []
    for i in range(blocks):
        for attn in ("self_attn", "cross_attn"):
            projs = ["q", "k", "v", "o"] + (["k_img", "v_img"] if i2v and attn == "cross_attn" else [])
            out += [(i, attn, p, dim, dim) for p in projs]
        out += [(i, "ffn", "0", dim, ffn), (i, "ffn", "2", ffn, dim)]
    return out


def lora_tensors(fmt: str, dim: int, ffn: int, blocks: int, rank: int = 4, i2v: bool = False,
                 skip_ffn: bool = False) -> dict[str, tuple[int, ...]]:
    """{tensor name: shape} of a LoRA in ``fmt`` for a Wan transformer of these widths."""
    t: dict[str, tuple[int, ...]] = {}
    for i, attn, p, n_in, n_out in _layers(dim, ffn, blocks, i2v):
        if attn == "ffn" and skip_ffn:
            continue
        orig = f"blocks.{i}.ffn.{p}" if attn == "ffn" else f"blocks.{i}.{attn}.{p}"
        if fmt in ("comfyui", "comfyui_bare", "lightx2v", "aitoolkit"):
            prefix = "" if fmt == "comfyui_bare" else "diffusion_model."
            down, up = ("lora_A", "lora_B") if fmt in ("aitoolkit", "comfyui_bare") else ("lora_down", "lora_up")
            t[f"{prefix}{orig}.{down}.weight"] = (rank, n_in)
            t[f"{prefix}{orig}.{up}.weight"] = (n_out, rank)
            if fmt in ("comfyui", "lightx2v"):
                t[f"{prefix}{orig}.alpha"] = ()
            if fmt == "lightx2v":
                t[f"{prefix}{orig}.diff_b"] = (n_out,)
        elif fmt == "diffusers":
            module = f"blocks.{i}.ffn.net.{'0.proj' if p == '0' else '2'}" if attn == "ffn" else \
                f"blocks.{i}.{_ORIG[attn]}.{_PROJ[p]}"
            t[f"transformer.{module}.lora_A.weight"] = (rank, n_in)
            t[f"transformer.{module}.lora_B.weight"] = (n_out, rank)
        elif fmt == "musubi":
            flat = "lora_unet_" + orig.replace(".", "_")
            t[f"{flat}.lora_down.weight"] = (rank, n_in)
            t[f"{flat}.lora_up.weight"] = (n_out, rank)
            t[f"{flat}.alpha"] = ()
        elif fmt == "loha":
            key = f"diffusion_model.{orig}"
            t.update({f"{key}.hada_w1_a": (n_out, rank), f"{key}.hada_w1_b": (rank, n_in),
                      f"{key}.hada_w2_a": (n_out, rank), f"{key}.hada_w2_b": (rank, n_in), f"{key}.alpha": ()})
        else:
            raise ValueError(fmt)
    if fmt == "lightx2v":   # norm adjustments diffusers drops (with an info message)
        for i in range(blocks):
            t[f"diffusion_model.blocks.{i}.norm3.diff"] = (dim,)
    return t


def other_family_tensors(family: str, rank: int = 4) -> dict[str, tuple[int, ...]]:
    """A few tensors of an SDXL (kohya) or Flux (diffusers) LoRA, with their real names."""
    if family == "sdxl":
        names = ["lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q",
                 "lora_unet_mid_block_attentions_0_proj_in", "lora_te1_text_model_encoder_layers_0_self_attn_q_proj"]
        t: dict[str, tuple[int, ...]] = {}
        for n in names:
            t.update({f"{n}.lora_down.weight": (rank, 640), f"{n}.lora_up.weight": (640, rank), f"{n}.alpha": ()})
        return t
    names = ["transformer.single_transformer_blocks.0.attn.to_q", "transformer.transformer_blocks.0.attn.to_k"]
    t = {}
    for n in names:
        t.update({f"{n}.lora_A.weight": (rank, 3072), f"{n}.lora_B.weight": (3072, rank)})
    return t


def write_lora(path: str | Path, fmt: str, dim: int, ffn: int, blocks: int, rank: int = 4, i2v: bool = False,
               sparse: bool = False, metadata: Mapping[str, str] | None = None, seed: int = 0,
               skip_ffn: bool = False, tensors: Mapping[str, tuple[int, ...]] | None = None) -> Path:
    """Write a LoRA file; real random weights (alpha = rank), or only its header at full size."""
    shapes = dict(tensors) if tensors is not None else lora_tensors(fmt, dim, ffn, blocks, rank, i2v, skip_ffn)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if sparse:
        write_sparse_safetensors(path, {n: ("BF16", s) for n, s in shapes.items()}, metadata)
        return path
    import torch
    from safetensors.torch import save_file
    gen = torch.Generator().manual_seed(seed)
    data = {}
    for name, shape in shapes.items():
        if name.endswith(".alpha"):
            data[name] = torch.tensor(float(rank))
        else:
            data[name] = torch.randn(shape, generator=gen) * 0.05
    save_file(data, str(path), metadata=dict(metadata) if metadata else None)
    return path


# --- every format and mismatch case, loaded for real: the prediction against what peft attaches -------------

DEMO_WIDTHS = (24, 32, 2)          # core.demo's transformer: inner width, ffn width, blocks


def prediction_cases(demo_dir: Path, out: Path) -> list[tuple[str, str, str]]:
    """(demo model, LoRA file, --lora text) for each format and mismatch case, files written into ``out``."""
    dim, ffn, blocks = DEMO_WIDTHS
    cases = []
    for fmt in FORMATS:
        for i2v in (False, True):
            path = write_lora(out / f"{fmt}_{'i2v' if i2v else 't2v'}.safetensors", fmt, dim, ffn, blocks, i2v=i2v)
            for model in ("wan21_t2v", "wan21_i2v", "wan22_ti2v_5b"):
                cases.append((model, str(path), str(path)))
            for expert in ("", "@high", "@low"):
                cases.append(("wan22_t2v_a14b", str(path), f"{path}:0.7{expert}"))
    bare_alpha = write_lora(out / "bare_with_alpha.safetensors", "", 0, 0, 0, tensors={
        k.removeprefix("diffusion_model."): v for k, v in lora_tensors("comfyui", dim, ffn, blocks).items()})
    wide = write_lora(out / "wider_model.safetensors", "comfyui", 48, 64, blocks)
    no_ffn = write_lora(out / "musubi_no_ffn.safetensors", "musubi", dim, ffn, blocks, skip_ffn=True)
    extra_blocks = write_lora(out / "more_blocks.safetensors", "comfyui", dim, ffn, 4)
    high = write_lora(out / "style_HIGH.safetensors", "comfyui", dim, ffn, blocks)
    for path, text in ((bare_alpha, None), (wide, None), (no_ffn, None), (extra_blocks, None), (high, "@low")):
        for model in ("wan21_t2v", "wan22_t2v_a14b"):
            cases.append((model, str(path), str(path) + (text or "")))
    return [(str(demo_dir / m), p, t) for m, p, t in cases]


def attached(model, adapter: str) -> int:
    """Modules peft put ``adapter`` on."""
    from peft.tuners.tuners_utils import BaseTunerLayer
    return sum(1 for m in model.modules() if isinstance(m, BaseTunerLayer) and adapter in getattr(m, "lora_A", {}))


def compare_case(pipes: dict, model_dir: str, text: str) -> tuple[bool, str]:
    """Predict one LoRA on one model, load it for real (core.run.lora), compare; (exact, description).

    Exact: the same experts, and per expert the predicted applied + zero-padded layers equal the
    modules peft attached; a predicted refusal is exact when the load fails and leaves nothing on.
    """
    from diffusers import DiffusionPipeline

    from core.check.detect import inspect
    from core.check.lora_match import match_loras, parse_lora
    from core.errors import WanError
    from core.run.lora import apply_loras, remove_loras
    pipe = pipes.get(model_dir)
    if pipe is None:
        pipe = pipes[model_dir] = DiffusionPipeline.from_pretrained(model_dir)
    choice = parse_lora(text)
    [match] = match_loras(inspect(model_dir), [choice])
    try:
        state = apply_loras(pipe, [choice])
    except WanError as err:
        leftover = sum(attached(getattr(pipe, c), a) for c in ("transformer", "transformer_2")
                       if getattr(pipe, c, None) is not None for a in getattr(getattr(pipe, c), "peft_config", {}))
        return (not match.ok and leftover == 0), f"refused: {err.message[:80]} / predicted ok={match.ok}"
    try:
        [loaded] = state.adapters
        real = {c: attached(getattr(pipe, c), loaded.adapter) for c in loaded.components}
        predicted = {c: (match.applied or 0) + match.padded for c in match.targets}
        return (match.ok and real == predicted), f"predicted {predicted}, peft {real}"
    finally:
        remove_loras(pipe, state)
