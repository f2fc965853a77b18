"""Peak memory of converting an original-layout Wan checkpoint, against its largest tensor and its size.

Writes a real (not sparse) original Wan-AI folder: the Wan2.1 T2V-1.3B DiT at full size in
bfloat16 (about 2.8 GB in 1 GB shards), the full-size Wan2.1 VAE as ``Wan2.1_VAE.pth``
(0.5 GB) and Wan's T5 encoder as ``models_t5_umt5-xxl-enc-bf16.pth`` at full width with
``--t5-layers`` blocks (its 2.1 GB token embedding is the largest tensor), plus a tokenizer.
The tensors hold constant values: every byte is written and then read back by the
conversion. It then converts the folder with ``core.fix.convert`` in a child process and
reports that process's peak resident memory (``VmHWM``: anonymous memory plus the file
pages it has mapped) against the largest tensor and the model. The checkpoint is written
by another child, so that no large parent is counted (``ru_maxrss`` of a child includes
the RSS of the process it was forked from).

    .venv/bin/python bench/convert.py [--t5-layers 2] [--dir /tmp] [--keep] [--json]

Needs about 2.2x the model size free on disk (source + converted copy). With --json the
last line is ``{"peak_rss_mb": x, "largest_tensor_mb": x, "model_mb": x}``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.sparse.original_keys import wan21_vae_keys, wan_dit_keys  # noqa: E402
from tests.sparse.original_layout import T5_PTH, original_config  # noqa: E402
from tests.sparse.specs import BY_KEY  # noqa: E402
from tests.sparse.writer import split_into_shards  # noqa: E402

MB = 2**20
SHARD_BYTES = 10**9
_DTYPES = {"BF16": "bfloat16", "F32": "float32", "F16": "float16"}

# The conversion, run in a child so that its peak RSS is its own. It prints its RSS after
# the imports (the floor any conversion pays) and the seconds taken.
_CHILD = r"""
import json, sys, time, psutil
import torch, diffusers, transformers
from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers
from core.fix.convert import plan_conversion
from core.check.detect import inspect
base = psutil.Process().memory_info().rss
t0 = time.perf_counter()
plan = plan_conversion(inspect(sys.argv[1]), sys.argv[2])
if plan.refusal:
    sys.exit(plan.refusal)
plan.execute()
seconds = time.perf_counter() - t0
hwm = next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"rss_after_imports": base, "peak_rss": hwm, "seconds": seconds}))
"""


def _tensor(shape: tuple[int, ...], dtype: str, value: float = 0.02):
    import torch
    return torch.full(shape, value, dtype=getattr(torch, _DTYPES[dtype]))


def _nbytes(shape: tuple[int, ...], dtype: str) -> int:
    return math.prod(shape) * (4 if dtype == "F32" else 2)


def write_checkpoint(root: Path, t5_layers: int) -> tuple[int, int]:
    """Write the original folder; returns (bytes of tensor data, bytes of the largest tensor)."""
    import torch
    from safetensors.torch import save_file

    from core.demo import _build_tokenizer
    spec = BY_KEY["wan21_t2v_1_3b"]
    root.mkdir(parents=True)
    # DiT: 1 GB shards, written one at a time.
    dit = wan_dit_keys(spec, "BF16")
    shards = split_into_shards(dit, SHARD_BYTES)
    sizes = [_nbytes(shape, dtype) for dtype, shape in dit.values()]
    total, largest = sum(sizes), max(sizes)
    weight_map = {}
    for i, shard in enumerate(shards, 1):
        file = f"diffusion_pytorch_model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file({k: _tensor(s, d) for k, (d, s) in shard.items()}, root / file)
        weight_map.update({k: file for k in shard})
    (root / "diffusion_pytorch_model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}))
    (root / "config.json").write_text(json.dumps({**original_config(spec), "_class_name": "WanModel"}))
    # VAE (float32, as published).
    vae = {k: _tensor(s, d, 1.0 if k.endswith("gamma") else 0.01) for k, (d, s) in wan21_vae_keys().items()}
    torch.save(vae, root / "Wan2.1_VAE.pth")
    total += sum(t.numel() * t.element_size() for t in vae.values())
    largest = max([largest] + [t.numel() * t.element_size() for t in vae.values()])
    del vae
    # T5: full width, t5_layers blocks (the real one has 24).
    vocab, d, ffn, heads = 256384, 4096, 10240, 64
    t5 = {"token_embedding.weight": (vocab, d)}
    for n in range(t5_layers):
        b = f"blocks.{n}"
        t5.update({f"{b}.norm1.weight": (d,), **{f"{b}.attn.{p}.weight": (d, d) for p in "qkvo"},
                   f"{b}.norm2.weight": (d,), f"{b}.ffn.gate.0.weight": (ffn, d), f"{b}.ffn.fc1.weight": (ffn, d),
                   f"{b}.ffn.fc2.weight": (d, ffn), f"{b}.pos_embedding.embedding.weight": (32, heads)})
    t5["norm.weight"] = (d,)
    tensors = {k: _tensor(s, "BF16", 1.0 if "norm" in k else 0.01) for k, s in t5.items()}
    torch.save(tensors, root / T5_PTH)
    total += sum(_nbytes(s, "BF16") for s in t5.values())
    largest = max([largest] + [_nbytes(s, "BF16") for s in t5.values()])
    del tensors
    _build_tokenizer().save_pretrained(root / "google" / "umt5-xxl")
    return total, largest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--t5-layers", type=int, default=2, help="T5 blocks to write (the real encoder has 24)")
    parser.add_argument("--dir", default=None, help="where to write the checkpoint and its conversion")
    parser.add_argument("--keep", action="store_true", help="keep the files afterwards")
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    parser.add_argument("--write-only", metavar="DIR", help=argparse.SUPPRESS)   # the writer child
    args = parser.parse_args(argv)
    if args.write_only:
        print(json.dumps(write_checkpoint(Path(args.write_only), args.t5_layers)))
        return 0

    work = Path(tempfile.mkdtemp(prefix="wan-convert-bench-", dir=args.dir))
    try:
        src = work / "Wan2.1-T2V-1.3B"
        env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1")
        t0 = time.perf_counter()
        writer = subprocess.run([sys.executable, __file__, "--write-only", str(src), "--t5-layers", str(args.t5_layers)],
                                env=env, capture_output=True, text=True)
        if writer.returncode != 0:
            print(writer.stderr[-3000:], file=sys.stderr)
            return 1
        model_bytes, largest = json.loads(writer.stdout.strip().splitlines()[-1])
        on_disk = sum(p.stat().st_size for p in src.rglob("*") if p.is_file())
        allocated = sum(p.stat().st_blocks * 512 for p in src.rglob("*") if p.is_file())
        print(f"wrote {src} in {time.perf_counter() - t0:.0f} s: {on_disk / 1e9:.2f} GB "
              f"({allocated / 1e9:.2f} GB allocated on disk, not sparse); largest tensor {largest / MB:.0f} MB")
        t0 = time.perf_counter()
        child = subprocess.run([sys.executable, "-c", _CHILD, str(src), str(work / "converted")], cwd=REPO,
                               env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if child.returncode != 0:
            print(child.stderr[-3000:] or child.stdout[-3000:], file=sys.stderr)
            return 1
        info = json.loads(child.stdout.strip().splitlines()[-1])
        peak = info["peak_rss"]
        out_bytes = sum(p.stat().st_size for p in (work / "converted").rglob("*") if p.is_file())
        print(f"converted {out_bytes / 1e9:.2f} GB in {info['seconds']:.1f} s ({wall:.1f} s with start-up), "
              f"{model_bytes / 1e6 / info['seconds']:.0f} MB/s")
        print(f"peak RSS {peak / MB:.0f} MB (after imports {info['rss_after_imports'] / MB:.0f} MB, so "
              f"{(peak - info['rss_after_imports']) / MB:.0f} MB for the conversion); "
              f"largest tensor {largest / MB:.0f} MB; model {model_bytes / MB:.0f} MB")
        if args.json:
            print(json.dumps({"peak_rss_mb": round(peak / MB, 1), "largest_tensor_mb": round(largest / MB, 1),
                              "model_mb": round(model_bytes / MB, 1)}))
        return 0
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
