"""What each speed preset saves: transformer calls, seconds, and how far its frames move from quality's.

CPU mode (default): a demo Wan2.1 T2V pipeline whose transformer is widened (width 512 =
8 heads x 64, 8 blocks, ffn 1536, random weights) so that denoising is most of the time; each
preset that runs here goes through the product's own path (``plan_for`` with ``speed=...``,
``load``, ``generate_frames``), same prompt and seed, 20 steps with CFG. MagCache presets are
calibrated once first (a calibration run, as the app does for a new model; not timed).

    .venv/bin/python bench/speed.py [--steps 20] [--size 128x128x17] [--runs 3] [--json]

GPU mode (an NVIDIA GPU): the real-size Wan2.2 TI2V-5B transformer (random bf16 weights) at
1280x704 with 121 frames, a 2-call (CFG) denoising loop of ``--steps`` steps per preset and per
attention backend that runs here, through the same per-run set-up (core.run.speed_run):

    python bench/speed.py --gpu [--steps 10] [--backends native,flash,sage] [--json]

With --json the last line is ``{"presets": [{"name", "transformer_calls", "seconds",
"ratio_vs_quality", "psnr_vs_quality"}, ...]}`` (GPU mode adds ``attention`` and
``seconds_per_step``). Targets on the CPU: fast <= 0.6x quality, balanced <= 0.85x, every
preset's frames finite, none slower than quality. PSNR on random weights says little; the
thresholds are the cache authors' published ones (core/run/speed.py), not tuned to this bench.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

PRESETS = ("quality", "balanced", "fast", "auto")
PROMPT = "a red fox running through deep snow"
SEED = 1234
WIDE = dict(num_attention_heads=8, attention_head_dim=64, num_layers=8, ffn_dim=1536)


def parse_size(text: str) -> tuple[int, int, int]:
    try:
        width, height, frames = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not WIDTHxHEIGHTxFRAMES, e.g. 128x128x17") from None
    if width % 16 or height % 16 or (frames - 1) % 4 or min(width, height, frames) < 1:
        raise argparse.ArgumentTypeError(f"{text}: width and height multiples of 16, frames 4k+1")
    return width, height, frames


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=None, help="denoising steps (20 on the CPU, 10 with --gpu)")
    parser.add_argument("--size", type=parse_size, default=None, help="WxHxFRAMES (CPU 128x128x17, GPU 1280x704x121)")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per preset, round-robin (median)")
    parser.add_argument("--presets", default=",".join(PRESETS), help="comma-separated presets")
    parser.add_argument("--gpu", action="store_true", help="real-size TI2V-5B transformer on an NVIDIA GPU")
    parser.add_argument("--backends", default="native,_native_cudnn,flash,sage",
                        help="--gpu: attention backends to try (those that run here)")
    parser.add_argument("--layers", type=int, default=None,
                        help="--gpu: fewer transformer layers (with --size, a quick try of the GPU mode on the CPU)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    bad = [p for p in args.presets.split(",") if p not in PRESETS]
    if bad:
        parser.error(f"unknown preset {', '.join(bad)}: use {', '.join(PRESETS)}")
    if args.steps is not None and args.steps < 1 or args.runs < 1 or (args.layers is not None and args.layers < 1):
        parser.error("--steps, --runs and --layers must be 1 or more")
    if args.layers is not None and not args.gpu:
        parser.error("--layers goes with --gpu")
    args.steps = args.steps or (10 if args.gpu else 20)
    args.size = args.size or ((1280, 704, 121) if args.gpu else (128, 128, 17))
    return args


def psnr(a: object, b: object) -> float | None:
    import numpy as np
    mse = float(np.mean((np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)) ** 2))
    return None if mse == 0 else round(10 * math.log10(1.0 / mse), 2)


def wide_model(tmp: Path) -> Path:
    """The demo Wan2.1 T2V pipeline with a wider random transformer, saved by diffusers."""
    import torch
    from diffusers import DiffusionPipeline, WanTransformer3DModel

    from core.demo import write_demo_model
    demo = write_demo_model("wan21_t2v", tmp / "demo")
    pipe = DiffusionPipeline.from_pretrained(demo)
    config = dict(pipe.transformer.config)
    config.update(WIDE)
    torch.manual_seed(0)
    pipe.transformer = WanTransformer3DModel.from_config(config).eval()
    out = tmp / "Wan2.1-T2V-wide"
    pipe.save_pretrained(out)
    return out


def cpu_bench(args: argparse.Namespace) -> list[dict]:
    import numpy as np

    from core.check.detect import inspect
    from core.run.generation import GenerationConfig, request_for, resolve
    from core.run.hardware import probe
    from core.run.load import load
    from core.run.optimize import plan_for
    width, height, frames = args.size
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="wan-speed-") as tmp:
        os.environ["WAN_COMPAT_HISTORY_DB"] = str(Path(tmp) / "history.db")   # calibrations stay here
        report = inspect(wide_model(Path(tmp)))
        config = GenerationConfig(prompt=PROMPT, negative_prompt="blurry", width=width, height=height,
                                  num_frames=frames, num_inference_steps=args.steps, guidance_scale=5.0, seed=SEED)
        settings, errors = resolve(config, report)
        if errors:
            raise SystemExit("; ".join(errors))
        hardware = probe(use_torch=True)
        names = args.presets.split(",")
        plans, calibration = {}, {}
        wrapper = None
        for name in names:           # plans, and the one MagCache calibration run (not timed)
            plan = plan_for(report, hardware, request_for(settings, {"speed": name}))
            wrapper = wrapper or load(report, plan)
            if plan.speed and any(c.calibrate for c in plan.speed.caches.values()):
                start = time.perf_counter()
                wrapper.generate_frames(config, plan=plan)
                calibration[name] = round(time.perf_counter() - start, 2)
                plan = plan_for(report, hardware, request_for(settings, {"speed": name}))
            plans[name] = plan
        times: dict[str, list[float]] = {n: [] for n in names}
        outs: dict[str, object] = {}
        results: dict[str, object] = {}
        for _ in range(args.runs):   # round-robin, so that a busy machine slows every preset alike
            for name in names:
                start = time.perf_counter()
                outs[name], results[name] = wrapper.generate_frames(config, plan=plans[name])
                times[name].append(time.perf_counter() - start)
                if not results[name].success:
                    raise SystemExit(f"{name}: {results[name].errors}")
        reference = outs[names[0]]
        for name in names:
            speed = results[name].metadata["speed"]
            row = {"name": name, "transformer_calls": speed["transformer_calls"],
                   "forward_calls": speed["forward_calls"], "seconds": round(statistics.median(times[name]), 3),
                   "finite": bool(np.isfinite(outs[name]).all()), "cache": speed["cache"],
                   "attention": speed["attention"], "compile": speed["compile"],
                   "calibration_seconds": calibration.get(name)}
            rows.append(row)
            print(f"  {name:<9} {row['transformer_calls']:>3}/{row['forward_calls']} transformer passes, "
                  f"{row['seconds']:.2f} s (median of {args.runs}), cache {row['cache']}", flush=True)
        base = rows[0]["seconds"] if rows and rows[0]["name"] == "quality" else None
        for row in rows:
            row["ratio_vs_quality"] = round(row["seconds"] / base, 3) if base else None
            row["psnr_vs_quality"] = None if row["name"] == "quality" else psnr(outs[row["name"]], reference)
    return rows


def gpu_bench(args: argparse.Namespace) -> list[dict]:
    """Seconds per step of the real-size TI2V-5B transformer for each preset and attention backend."""
    import types

    import torch
    from diffusers import UniPCMultistepScheduler, WanTransformer3DModel

    from core.check.detect import inspect
    from core.run.hardware import probe
    from core.run.optimize import OptimizationRequest, plan_for
    from core.run.speed_run import speed_run
    from tests.sparse.diffusers_layout import write_diffusers_layout
    from tests.sparse.specs import BY_KEY
    width, height, frames = args.size
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="wan-speed-gpu-") as tmp:
        os.environ["WAN_COMPAT_HISTORY_DB"] = str(Path(tmp) / "history.db")
        folder = write_diffusers_layout(BY_KEY["wan22_ti2v_5b"], Path(tmp) / "Wan2.2-TI2V-5B-Diffusers")
        report = inspect(folder)
        config = json.loads((folder / "transformer" / "config.json").read_text())
        if args.layers:
            config["num_layers"] = args.layers
        device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = torch.bfloat16 if device == "cuda" else torch.float32
        torch.set_default_dtype(dtype)
        with torch.device(device):
            model = WanTransformer3DModel.from_config(config).eval()
        torch.set_default_dtype(torch.float32)
        latent_frames = (frames - 1) // 4 + 1
        tokens = latent_frames * (height // 32) * (width // 32)
        text = torch.randn(1, 512, 4096, device=device, dtype=dtype)

        def sync() -> None:
            if device == "cuda":
                torch.cuda.synchronize()
        scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True,
                                            flow_shift=5.0, num_train_timesteps=1000)
        pipe = types.SimpleNamespace(transformer=model, config=types.SimpleNamespace(boundary_ratio=None),
                                     scheduler=scheduler)
        hardware = probe(use_torch=True)
        from core.monitor.context import model_fingerprint
        fingerprint = model_fingerprint(report)       # where the plan looks for the calibration

        def loop(plan: object) -> tuple[float, dict]:
            torch.manual_seed(SEED)
            latents = torch.randn(1, 48, latent_frames, height // 16, width // 16, device=device)
            scheduler.set_timesteps(args.steps, device=device)
            with speed_run(pipe, plan.speed, args.steps, fingerprint) as run, torch.no_grad():
                sync()
                start = time.perf_counter()
                for i, t in enumerate(scheduler.timesteps):
                    timestep = torch.full((1, tokens), float(t), device=device)
                    x = latents.to(dtype)
                    outs = []
                    for context in ("cond", "uncond"):
                        with model.cache_context(context, step_index=i, num_inference_steps=args.steps):
                            outs.append(model(hidden_states=x, timestep=timestep, encoder_hidden_states=text,
                                              return_dict=False)[0].float())
                    noise = outs[1] + 5.0 * (outs[0] - outs[1])
                    latents = scheduler.step(noise, t, latents, return_dict=False)[0]
                sync()
                seconds = time.perf_counter() - start
            model._reset_stateful_cache()
            return seconds, {**run.summary(), "finite": bool(torch.isfinite(latents).all()), "latents": latents}

        base = None
        reference = None
        for backend in args.backends.split(","):
            for name in args.presets.split(","):
                overrides = {"speed": name, "attention_backend": backend, "compile": False}
                request = OptimizationRequest(width, height, frames, args.steps, overrides=overrides)
                plan = plan_for(report, hardware, request)
                if plan.attention_backend.value != backend:
                    print(f"  {backend}: {'; '.join(n for n in plan.notes if backend in n)}", flush=True)
                    break
                if any(c.calibrate for c in plan.speed.caches.values()):
                    loop(plan)                      # calibration, not timed
                    plan = plan_for(report, hardware, request)
                loop(plan)                          # warm-up (kernels, allocator)
                seconds, summary = loop(plan)
                latents = summary.pop("latents")
                base = seconds if base is None else base
                reference = latents if reference is None else reference
                mse = float(((latents - reference) ** 2).mean())
                row = {"name": name, "attention": summary["attention"],
                       "transformer_calls": summary["transformer_calls"], "forward_calls": summary["forward_calls"],
                       "seconds": round(seconds, 3), "seconds_per_step": round(seconds / args.steps, 3),
                       "ratio_vs_quality": round(seconds / base, 3),
                       "psnr_vs_quality": None if mse == 0 else round(10 * math.log10(
                           float(reference.abs().max()) ** 2 / mse), 2), "finite": summary["finite"]}
                rows.append(row)
                print(f"  {backend:<14} {name:<9} {row['seconds_per_step']:.3f} s/step, "
                      f"{row['transformer_calls']}/{row['forward_calls']} passes", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch
    if args.gpu and not torch.cuda.is_available() and not args.layers:
        print("--gpu needs an NVIDIA GPU that torch can use; without one, run bench/speed.py without --gpu "
              "(or try the GPU mode small: --gpu --layers 1 --size 64x64x5 --steps 4).", file=sys.stderr)
        return 2
    rows = gpu_bench(args) if args.gpu else cpu_bench(args)
    print(f"{'preset':<10}{'calls':>8}{'seconds':>10}{'ratio':>8}{'PSNR':>8}")
    for r in rows:
        print(f"{r['name']:<10}{r['transformer_calls']:>8}{r['seconds']:>10.2f}{r['ratio_vs_quality'] or 0:>8.3f}"
              f"{r['psnr_vs_quality'] if r['psnr_vs_quality'] is not None else '-':>8}")
    if args.json:
        print(json.dumps({"presets": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
