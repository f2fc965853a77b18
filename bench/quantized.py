"""GGUF and fp8 transformers against plain diffusers, and the RAM a real-size load takes against the plan.

Four parts (each can be skipped):

- ``gguf``: a Wan2.1 T2V transformer of width 1024 (8 heads of 128, ffn 4096, 4 blocks; the demo
  width is too small for blocks of 256) as GGUF Q8_0 (gguf-py's quantizer) and Q4_K (blocks
  built by tests/quantized_files.py), assembled by ``fix --assemble`` with tiny real VAE and
  text-encoder files. Ours: ``WanPipelineLoader().load_wan_pipeline(folder)`` +
  ``generate_frames``; plain: diffusers' own ``WanTransformer3DModel.from_single_file(file,
  quantization_config=GGUFQuantizationConfig(compute_dtype=float32), config=folder,
  subfolder="transformer")`` + ``WanPipeline.from_pretrained(folder, transformer=...)`` and its
  call, same seed. ``load_ratio`` and ``generate_ratio`` are ours / plain (the fastest of the
  round-robin runs of each: on a shared machine other processes only ever add time, and a
  generation here lasts about a second, a load 0.15 s, so loads get ``--load-runs`` (20) more
  round-robin runs of their own; the medians are printed too). Before each timed load or
  generation, either side's, ``gc.collect()`` runs: otherwise the previous run's garbage is
  collected inside whichever load comes next (it moved the load ratio from 1.02 to 1.15).
  ``max_pixel_diff`` the
  largest difference of the 0-255 frames (must be 0).
- ``fp8_scaled``: the same transformer as a ComfyUI ``*_fp8_scaled`` file, kept fp8 (``--keep-fp8``)
  against Fix's bf16 conversion of the same file, both run in bf16: ``mean_abs_diff`` of the frames
  (0-1 scale) and ``memory_vs_bf16``, the loaded transformer's bytes against the bf16 one's.
- ``ram``: a real-size Wan2.2 TI2V-5B transformer (bf16 safetensors, about 10 GB, random values;
  the text projection takes the demo text encoder's width 32 instead of 4096, 0.25% of the
  parameters, so that the folder is a complete loadable model) with the demo's tiny VAE and
  text encoder. A child process plans for this machine (the RAM-lean plan keeps the file's bf16,
  so the weights are the memory-mapped file), loads with that plan and reads every weight once:
  ``peak_vs_file`` is its peak RSS over the transformer files' size, ``estimate_vs_peak`` the
  plan's RAM-while-loading estimate over that peak. ``--ram-layers N`` writes N blocks instead of
  30 (a smaller real-width model, when the machine has too little free RAM); ``--ram-precision bf16``
  asks for the RAM-lean precision where the plan would still afford fp32.

    .venv/bin/python bench/quantized.py [--runs 5] [--load-runs 20] [--threads 1] [--skip-ram] [--skip-gguf]
        [--ram-layers 30] [--json]

- ``gguf_real_size``: load only, round-robin, of the real Wan2.1 T2V-1.3B transformer's shape as Q8_0
  (1.5 GB, random values; writing it takes about a minute): the load ratio where a load lasts about
  0.8 s instead of 0.15 s (``--skip-real-size`` leaves it out).

With --json the last line is ``{"gguf": {...}, "fp8_scaled": {...}, "gguf_real_size": {...}, "ram": {...}}``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from core.fix.convert import plan_assembly  # noqa: E402
from core.run.generation import GenerationConfig  # noqa: E402
from core.run.load import WanPipelineLoader  # noqa: E402
from tests.quantized_files import write_fp8, write_gguf  # noqa: E402
from tests.sparse.original_keys import wan_dit_keys  # noqa: E402
from tests.sparse.specs import ModelSpec  # noqa: E402
from tests.test_convert import _save_single, _umt5_file, tiny_vae_model, tiny_vae_original, write_tokenizer  # noqa: E402

WIDE = ModelSpec("bench_wide", None, None, "2.1", "t2v", 1024, 4096, 4, 16, 16)
TEXT_DIM = 32
SETTINGS = dict(prompt="a red fox running through deep snow", negative_prompt="blurry", height=64, width=64,
                num_frames=9, num_inference_steps=4, guidance_scale=5.0)
SEED = 1234


def pixels(frames: Any) -> np.ndarray:
    return np.round(np.clip(np.asarray(frames, dtype=np.float32), 0, 1) * 255).astype(np.int16)


def wide_dit(seed: int, spec: ModelSpec = WIDE) -> dict[str, torch.Tensor]:
    """An original-name Wan DiT of ``spec`` with weights of a trained model's scale (1/sqrt(fan_in))."""
    gen = torch.Generator().manual_seed(seed)
    keys = wan_dit_keys(spec, "F32")
    keys["text_embedding.0.weight"] = ("F32", (spec.dim, TEXT_DIM))
    out = {}
    for name, (_, shape) in keys.items():
        if "norm" in name and name.endswith(".weight"):
            out[name] = torch.ones(shape)
        elif len(shape) >= 2 and name.endswith(".weight"):
            fan_in = int(np.prod(shape[1:]))
            out[name] = torch.randn(shape, generator=gen) / fan_in ** 0.5
        else:
            out[name] = torch.randn(shape, generator=gen) * 0.02
    return out


def parts(tmp: Path) -> dict[str, Path]:
    tok = tmp / "google" / "umt5-xxl"
    vocab = write_tokenizer(tok)
    te, _ = _umt5_file(tmp / "umt5_xxl_fp16.safetensors", vocab)
    vae = _save_single(tmp / "wan_2.1_vae.safetensors", tiny_vae_original(tiny_vae_model("wan2.1", 5), "wan2.1"))
    return {"tok": tok, "te": te, "vae": vae}


def assemble(p: dict[str, Path], transformer: Path, out: Path, keep_fp8: bool = False) -> Path:
    plan = plan_assembly(transformer=transformer, vae=p["vae"], text_encoder=p["te"], tokenizer=p["tok"], out=out,
                         keep_fp8=keep_fp8)
    assert plan.refusal is None, plan.refusal
    return plan.execute()


def ours(folder: Path, overrides: dict | None = None) -> tuple[float, float, Any, Any]:
    gc.collect()
    start = time.perf_counter()
    wrapper = WanPipelineLoader().load_wan_pipeline(folder, optimization_config=overrides)
    load = time.perf_counter() - start
    config = GenerationConfig(**SETTINGS, seed=SEED)
    start = time.perf_counter()
    frames, result = wrapper.generate_frames(config)
    assert result.success, result.errors
    return load, time.perf_counter() - start, frames, wrapper.pipeline.transformer


def ours_load(folder: Path) -> float:
    gc.collect()       # the last run's garbage is collected here, not inside the next timed load (either side's)
    start = time.perf_counter()
    WanPipelineLoader().load_wan_pipeline(folder)
    return time.perf_counter() - start


def plain_gguf_pipe(folder: Path) -> Any:
    from diffusers import GGUFQuantizationConfig, WanPipeline, WanTransformer3DModel
    gguf = next((folder / "transformer").glob("*.gguf"))
    transformer = WanTransformer3DModel.from_single_file(
        str(gguf), quantization_config=GGUFQuantizationConfig(compute_dtype=torch.float32), config=str(folder),
        subfolder="transformer", torch_dtype=torch.float32)
    return WanPipeline.from_pretrained(folder, transformer=transformer, torch_dtype=torch.float32)


def plain_gguf_load(folder: Path) -> float:
    gc.collect()
    start = time.perf_counter()
    plain_gguf_pipe(folder)
    return time.perf_counter() - start


def plain_gguf(folder: Path) -> tuple[float, float, Any]:
    gc.collect()
    start = time.perf_counter()
    pipe = plain_gguf_pipe(folder)
    load = time.perf_counter() - start
    pipe.set_progress_bar_config(disable=True)
    start = time.perf_counter()
    frames = pipe(**SETTINGS, generator=torch.Generator(device="cpu").manual_seed(SEED), output_type="np").frames[0]
    return load, time.perf_counter() - start, frames


def gguf_part(tmp: Path, p: dict[str, Path], runs: int, load_runs: int = 20) -> dict[str, Any]:
    state = wide_dit(1)
    result: dict[str, Any] = {"model": "Wan2.1 T2V, width 1024, 4 blocks", "size": "64x64x9, 4 steps, CFG"}
    for qtype in ("Q8_0", "Q4_K"):
        file = tmp / f"wan2.1-t2v-wide-{qtype}.gguf"
        write_gguf(file, state, qtype)
        folder = assemble(p, file, tmp / f"assembled-{qtype}")
        ours(folder), plain_gguf(folder)            # warm-up
        mine, plain = [], []
        for _ in range(runs):                       # round-robin: a busy machine slows both alike
            mine.append(ours(folder)[:3])
            plain.append(plain_gguf(folder))
        # A load lasts about 0.15 s, so one neighbour's time slice moves it by a third: more loads, round-robin.
        loads = [(ours_load(folder), plain_gguf_load(folder)) for _ in range(load_runs)]
        mine += [(m, float("inf"), mine[0][2]) for m, _ in loads]
        plain += [(q, float("inf"), plain[0][2]) for _, q in loads]
        best = lambda rows, i: min(r[i] for r in rows)  # noqa: E731
        med = lambda rows, i: statistics.median(r[i] for r in rows if r[i] != float("inf"))  # noqa: E731
        diff = int(max(np.abs(pixels(m[2]) - pixels(q[2])).max() for m, q in zip(mine[:runs], plain[:runs])))
        result[qtype] = {"load_ratio": round(best(mine, 0) / best(plain, 0), 4), "load_runs": runs + load_runs,
                         "generate_ratio": round(best(mine, 1) / best(plain, 1), 4), "max_pixel_diff": diff,
                         "ours_s": [round(best(mine, 0), 3), round(best(mine, 1), 3)],
                         "plain_s": [round(best(plain, 0), 3), round(best(plain, 1), 3)],
                         "median_ratios": [round(med(mine, 0) / med(plain, 0), 4),
                                           round(med(mine, 1) / med(plain, 1), 4)],
                         "file_mb": round(file.stat().st_size / 2**20, 2)}
        print(f"GGUF {qtype}: load {result[qtype]['load_ratio']:.3f}x, generate {result[qtype]['generate_ratio']:.3f}x "
              f"of plain diffusers, largest pixel difference {diff}", flush=True)
    return result


#: The real Wan2.1 T2V-1.3B transformer's shape (width 1536, ffn 8960, 30 blocks): its Q8_0 file is 1.4 GB.
REAL_1_3B = ModelSpec("bench_1_3b", None, None, "2.1", "t2v", 1536, 8960, 30, 16, 16)


def real_size_load_part(tmp: Path, p: dict[str, Path], runs: int) -> dict[str, Any]:
    """Load only, on a real-size 1.3B Q8_0 GGUF: what a user's load takes, with our fixed checks in it."""
    file = tmp / "wan2.1-t2v-1.3B-Q8_0.gguf"
    start = time.perf_counter()
    state = wide_dit(2, REAL_1_3B)
    write_gguf(file, state, "Q8_0")
    del state
    folder = assemble(p, file, tmp / "assembled-1.3B")
    print(f"wrote a {file.stat().st_size / 1e9:.2f} GB Q8_0 1.3B transformer in {time.perf_counter() - start:.0f} s",
          flush=True)
    ours_load(folder), plain_gguf_load(folder)          # warm-up: the file in the page cache for both
    loads = [(ours_load(folder), plain_gguf_load(folder)) for _ in range(runs)]
    mine, plain = [m for m, _ in loads], [q for _, q in loads]
    out = {"model": "Wan2.1 T2V-1.3B shape, Q8_0", "file_gb": round(file.stat().st_size / 1e9, 3),
           "load_ratio": round(min(mine) / min(plain), 4),
           "median_load_ratio": round(statistics.median(mine) / statistics.median(plain), 4),
           "ours_s": round(min(mine), 3), "plain_s": round(min(plain), 3), "runs": runs}
    print(f"GGUF Q8_0 at real size: load {out['load_ratio']:.3f}x (median {out['median_load_ratio']:.3f}x) of plain "
          f"diffusers, {out['ours_s']} s against {out['plain_s']} s", flush=True)
    return out


def _bytes(module: Any) -> int:
    return sum(t.numel() * t.element_size() for t in (*module.parameters(), *module.buffers()))


def fp8_part(tmp: Path, p: dict[str, Path]) -> dict[str, Any]:
    file = write_fp8(tmp / "wan2.1_t2v_wide_fp8_scaled.safetensors", wide_dit(2), True, "model.diffusion_model.")
    kept = assemble(p, file, tmp / "fp8-kept", keep_fp8=True)
    converted = assemble(p, file, tmp / "fp8-bf16")
    bf16 = {"precision": "bf16"}
    _, _, mine, kept_model = ours(kept, bf16)
    _, _, theirs, bf16_model = ours(converted, bf16)
    a, b = np.asarray(mine, np.float32), np.asarray(theirs, np.float32)
    out = {"mean_abs_diff": round(float(np.abs(a - b).mean()), 5), "finite": bool(np.isfinite(a).all()),
           "memory_vs_bf16": round(_bytes(kept_model) / _bytes(bf16_model), 4),
           "transformer_mb": [round(_bytes(kept_model) / 2**20, 2), round(_bytes(bf16_model) / 2**20, 2)]}
    print(f"fp8_scaled kept in fp8: frames {out['mean_abs_diff']} from the bf16 conversion (mean, 0-1), "
          f"transformer memory {out['memory_vs_bf16']:.3f}x of bf16", flush=True)
    return out


# --------------------------------------------------------------------------- real-size RAM

def real_size_folder(tmp: Path, layers: int) -> tuple[Path, int]:
    """The demo TI2V-5B folder with a real-width transformer (random bf16 values) of ``layers`` blocks."""
    from core.demo import write_demo_model
    from tests.sparse.diffusers_layout import write_weights
    folder = write_demo_model("wan22_ti2v_5b", tmp / "demo")
    config = json.loads((folder / "transformer" / "config.json").read_text())
    config.update(num_attention_heads=24, attention_head_dim=128, ffn_dim=14336, num_layers=layers, freq_dim=256,
                  text_dim=TEXT_DIM, rope_max_seq_len=1024)
    from diffusers import WanTransformer3DModel
    with torch.device("meta"):
        table = tuple((k, tuple(v.shape)) for k, v in WanTransformer3DModel(
            **{k: v for k, v in config.items() if not k.startswith("_")}).state_dict().items())
    sub = folder / "transformer"
    for f in sub.iterdir():
        f.unlink()
    (sub / "config.json").write_text(json.dumps(config, indent=2))
    names = write_weights(sub, "diffusion_pytorch_model", table, "BF16")
    block = (torch.randn(32 * 2**20, generator=torch.Generator().manual_seed(0)) * 0.02).to(torch.bfloat16)
    raw = block.view(torch.uint8).numpy().tobytes()          # 64 MB of random bf16 values, written over and over
    total = 0
    for name in names:
        path = sub / name
        size = path.stat().st_size
        with open(path, "r+b") as fh:
            start = 8 + int.from_bytes(fh.read(8), "little")
            fh.seek(start)
            left = size - start
            while left > 0:
                fh.write(raw[: min(left, len(raw))])
                left -= min(left, len(raw))
            fh.flush()
            os.fsync(fh.fileno())
        total += size
    return folder, total


CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[2])
import torch
from core.check.detect import inspect
from core.run.hardware import probe
from core.run.load import load, plan_for_load
from core.run.optimize import OptimizationRequest
report = inspect(sys.argv[1])
overrides = {} if sys.argv[3] == "auto" else {"precision": sys.argv[3]}
plan = plan_for_load(report, probe(use_torch=True), OptimizationRequest(256, 256, 5, 1, overrides=overrides))
start = time.perf_counter()
wrapper = load(report, plan)
seconds = time.perf_counter() - start
loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
with torch.no_grad():
    for p in wrapper.pipeline.transformer.parameters():   # every weight read once, as the first step does
        p.float().abs().max()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"precision": plan.precision.value, "placement": plan.placement.value,
                  "precision_reason": plan.precision.reason, "load_ram_mb": plan.estimate.load_ram_mb,
                  "peak_after_load": loaded, "peak": peak, "load_seconds": seconds}))
"""


def ram_part(tmp: Path, layers: int, precision: str = "auto") -> dict[str, Any]:
    import psutil
    free = psutil.virtual_memory().available
    start = time.perf_counter()
    folder, file_bytes = real_size_folder(tmp, layers)
    print(f"wrote a {file_bytes / 1e9:.2f} GB bf16 TI2V-5B transformer ({layers} blocks) in "
          f"{time.perf_counter() - start:.0f} s; {free / 2**30:.1f} GiB of RAM available", flush=True)
    proc = subprocess.run([sys.executable, "-c", CHILD, str(folder), str(REPO), precision], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(REPO)))
    if proc.returncode != 0:
        return {"error": (proc.stderr or proc.stdout).strip().splitlines()[-1][:300], "layers": layers}
    child = json.loads(proc.stdout.strip().splitlines()[-1])
    estimate = child["load_ram_mb"] * 2**20
    out = {"layers": layers, "precision_asked": precision, "file_gb": round(file_bytes / 1e9, 3),
           "plan_precision": child["precision"],
           "peak_gb": round(child["peak"] / 1e9, 3), "peak_after_load_gb": round(child["peak_after_load"] / 1e9, 3),
           "peak_vs_file": round(child["peak"] / file_bytes, 4),
           "estimate_vs_peak": round(estimate / child["peak"], 4), "estimate_gb": round(estimate / 1e9, 3),
           "load_seconds": round(child["load_seconds"], 2)}
    print(f"RAM: peak {out['peak_gb']} GB for a {out['file_gb']} GB file ({out['peak_vs_file']}x); the plan "
          f"({child['precision']}) estimated {out['estimate_gb']} GB ({out['estimate_vs_peak']}x the peak)", flush=True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--load-runs", type=int, default=20, help="extra load-only round-robin runs per quantization")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: steadier on a shared machine)")
    parser.add_argument("--skip-ram", action="store_true")
    parser.add_argument("--skip-gguf", action="store_true")
    parser.add_argument("--skip-real-size", action="store_true", help="skip the load of a 1.4 GB 1.3B Q8_0 GGUF")
    parser.add_argument("--ram-layers", type=int, default=30)
    parser.add_argument("--ram-precision", default="auto", help="auto: the plan decides (bf16 when fp32 does not fit)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="wan-quantized-") as tmp_name:
        tmp = Path(tmp_name)
        p = parts(tmp / "parts")
        if not args.skip_gguf:
            result["gguf"] = gguf_part(tmp / "gguf", p, args.runs, args.load_runs)
            result["fp8_scaled"] = fp8_part(tmp / "fp8", p)
        if not args.skip_real_size:
            result["gguf_real_size"] = real_size_load_part(tmp / "real", p, max(args.runs, 5))
        if not args.skip_ram:
            result["ram"] = ram_part(tmp / "ram", args.ram_layers, args.ram_precision)
    result["peak_rss_mb_bench"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
