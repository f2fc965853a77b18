"""One generation over N ranks (Ulysses context parallelism) against one rank.

CPU (default): the time of one long-sequence WanTransformer3DModel forward on 2 gloo ranks
against 1 rank (each rank 1 thread, both under torch.distributed.run), and that the outputs
match::

    .venv/bin/python bench/multi_gpu.py [--tokens 6144] [--runs 3] [--json]

GPU (NVIDIA, N GPUs): seconds per step and per-GPU peak memory of ``generate --gpus N`` on a
model folder, for N = 1, 2, 4 (those the machine has), against the plan's per-GPU estimate::

    .venv/bin/python bench/multi_gpu.py --gpu MODEL [--size 832x480] [--frames 33] [--steps 4] [--json]

With --json the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def _forward_rank(out_dir: str, tokens: int, runs: int) -> None:
    """Inside one rank: build the same transformer, run it ``runs`` times, rank 0 writes the timings."""
    import torch
    import torch.distributed as dist
    from diffusers import WanTransformer3DModel

    from core.run.rank import enable_context_parallel
    dist.init_process_group("gloo")
    world, rank = dist.get_world_size(), dist.get_rank()
    torch.manual_seed(0)
    model = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=4, attention_head_dim=32,
                                  in_channels=16, out_channels=16, text_dim=32, freq_dim=256, ffn_dim=256,
                                  num_layers=2, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
                                  rope_max_seq_len=1024).eval()
    if world > 1:
        enable_context_parallel(model, world)
    side = int((tokens // 4) ** 0.5)     # 4 latent frames of side x side tokens
    x = torch.randn(1, 16, 4, side * 2, side * 2, generator=torch.Generator().manual_seed(1))
    text = torch.randn(1, 64, 32, generator=torch.Generator().manual_seed(2))
    t = torch.tensor([500])
    times = []
    with torch.no_grad():
        for _ in range(runs + 1):                # the first is a warm-up
            dist.barrier()
            start = time.perf_counter()
            y = model(hidden_states=x, timestep=t, encoder_hidden_states=text, return_dict=False)[0]
            times.append(time.perf_counter() - start)
    if rank == 0:
        torch.save({"times": times[1:], "out": y}, Path(out_dir) / f"world{world}.pt")
    dist.destroy_process_group()


def _launch(n: int, out_dir: str, tokens: int, runs: int) -> None:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1", f"--nproc-per-node={n}",
           str(Path(__file__).resolve()), "--rank-of", out_dir, "--tokens", str(tokens), "--runs", str(runs)]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    subprocess.run(cmd, check=True, env=env, capture_output=True)


def cpu_bench(tokens: int, runs: int) -> dict:
    import statistics

    import torch
    with tempfile.TemporaryDirectory() as out:
        for n in (1, 2):
            _launch(n, out, tokens, runs)
        one, two = torch.load(Path(out) / "world1.pt"), torch.load(Path(out) / "world2.pt")
    t1, t2 = statistics.median(one["times"]), statistics.median(two["times"])
    return {"tokens": tokens, "one_rank_s": round(t1, 3), "two_ranks_s": round(t2, 3),
            "two_over_one": round(t2 / t1, 3), "max_abs_diff": float((one["out"] - two["out"]).abs().max())}


def gpu_bench(model: str, size: str, frames: int, steps: int) -> dict:
    import torch

    from core.check.detect import inspect
    from core.run.generation import GenerationConfig, request_for, resolve
    from core.run.hardware import probe
    from core.run.optimize import plan_for
    from core.run.parallel import one_gpu_hardware, run_parallel, split_memory, split_problem
    w, h = (int(v) for v in size.split("x"))
    report = inspect(model)
    config = GenerationConfig(prompt="A red fox running through snow", width=w, height=h, num_frames=frames,
                              num_inference_steps=steps, seed=42)
    settings, errors = resolve(config, report)
    if errors:
        raise SystemExit("\n".join(errors))
    hardware = probe(use_torch=True)
    visible = torch.cuda.device_count()
    rows = []
    for n in (1, 2, 4):
        if n > visible or split_problem(report, w, h, frames, n, visible):
            continue
        plan = plan_for(report, one_gpu_hardware(hardware, hardware.gpus[0].index), request_for(settings, {}))
        with tempfile.TemporaryDirectory() as out:
            kwargs = {k: getattr(config, k) for k in ("prompt", "width", "height", "num_frames",
                                                        "num_inference_steps", "seed")}
            outcome = run_parallel(report, kwargs, {}, n, output_path=str(Path(out) / f"gpus{n}.mp4"))
        res = outcome.result
        rows.append({"gpus": n, "ok": outcome.exit_code == 0, "message": outcome.message,
                     "seconds_per_step": res.get("seconds_per_step"),
                     "peak_vram_mb_rank0": res.get("peak_vram_mb"),
                     "planned_per_gpu_mb": round(split_memory(plan, n).per_gpu_vram_mb, 1),
                     "placement": plan.placement.value})
    return {"model": model, "size": size, "frames": frames, "steps": steps, "rows": rows}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=6144, help="CPU: tokens of the forward (4 frames x side^2)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--gpu", default=None, metavar="MODEL", help="GPU mode: a diffusers Wan model folder")
    parser.add_argument("--size", default="832x480")
    parser.add_argument("--frames", type=int, default=33)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--rank-of", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rank_of:
        _forward_rank(args.rank_of, args.tokens, args.runs)
        return 0
    if args.gpu:
        result = gpu_bench(args.gpu, args.size, args.frames, args.steps)
        for row in result["rows"]:
            print(f"{row['gpus']} GPU(s): {row['seconds_per_step']} s/step, rank 0 peak {row['peak_vram_mb_rank0']} MB, "
                  f"plan {row['planned_per_gpu_mb']} MB per GPU ({row['placement']}) {row['message']}")
    else:
        result = cpu_bench(args.tokens, args.runs)
        print(f"{result['tokens']} tokens, one forward: 1 rank {result['one_rank_s']} s, 2 ranks "
              f"{result['two_ranks_s']} s (ratio {result['two_over_one']}); largest difference {result['max_abs_diff']}")
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
