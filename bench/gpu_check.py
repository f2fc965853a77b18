"""On an NVIDIA GPU: the real-size TI2V-5B transformer against the memory plan's estimate.

Builds the full-size Wan2.2 TI2V-5B transformer (its published config.json) with random
weights in bf16 on the GPU and times denoising steps at 1280x704 with 121 frames (each
step is two transformer calls, conditional and unconditional, as diffusers runs them),
then compares seconds per step and peak VRAM with ``core.run.optimize``'s estimate for the
same request. With ``--placements`` it also loads a demo model with each placement the
loader applies (all on the GPU, model, group and sequential offload, text encoder on the
CPU) and checks the frames agree.

    python bench/gpu_check.py [--steps 3] [--placements] [--json]
    python bench/gpu_check.py --size 256x256x17 --layers 2   # a quick try on the CPU

With --json the last line is ``{"seconds_per_step", "peak_vram_mb", "estimated_vram_mb",
"vram_ratio", "device", "placements": {...}}``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from core.check.detect import inspect  # noqa: E402
from core.run.hardware import probe  # noqa: E402
from core.run.optimize import OptimizationRequest, plan_for  # noqa: E402
from tests.sparse.diffusers_layout import write_diffusers_layout  # noqa: E402
from tests.sparse.specs import BY_KEY  # noqa: E402


def parse_size(text: str) -> tuple[int, int, int]:
    width, height, frames = (int(v) for v in text.lower().split("x"))
    return width, height, frames


def transformer_check(tmp: Path, width: int, height: int, frames: int, steps: int, layers: int | None,
                      device: str) -> dict:
    """Seconds per step and peak memory of the real-size transformer, with the plan's estimate."""
    from diffusers import WanTransformer3DModel
    folder = write_diffusers_layout(BY_KEY["wan22_ti2v_5b"], tmp / "Wan2.2-TI2V-5B-Diffusers")
    report = inspect(folder)
    plan = plan_for(report, probe(use_torch=True), OptimizationRequest(width, height, frames, 50))
    config = json.loads((folder / "transformer" / "config.json").read_text())
    if layers:
        config["num_layers"] = layers
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    torch.set_default_dtype(dtype)
    with torch.device(device):
        model = WanTransformer3DModel.from_config(config).eval()
    torch.set_default_dtype(torch.float32)
    weights_mb = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
    latent_frames = (frames - 1) // 4 + 1
    hidden = torch.randn(1, 48, latent_frames, height // 16, width // 16, device=device, dtype=dtype)
    tokens = latent_frames * (height // 32) * (width // 32)
    timestep = torch.full((1, tokens), 900.0, device=device)  # expand_timesteps: one per token
    text = torch.randn(1, 512, 4096, device=device, dtype=dtype)

    def step() -> None:
        with torch.no_grad():
            for _ in range(2):  # conditional and unconditional
                model(hidden_states=hidden, timestep=timestep, encoder_hidden_states=text, return_dict=False)

    step()  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / steps
    peak = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None
    estimate = plan.estimate
    scale = (layers or 30) / 30  # the estimate's weights are for all 30 layers
    estimated = estimate.weights_mb["transformer"] * scale + estimate.activations_mb
    return {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
            "size": f"{width}x{height}x{frames}", "latent_tokens": tokens, "estimate_tokens": estimate.latent_tokens,
            "seconds_per_step": round(seconds, 3), "weights_mb": round(weights_mb, 1),
            "peak_vram_mb": None if peak is None else round(peak, 1), "estimated_vram_mb": round(estimated, 1),
            "vram_ratio": None if peak is None else round(peak / estimated, 3),
            "plan_placement": plan.placement.value, "plan_peak_vram_mb": round(estimate.peak_vram_mb, 1),
            "plan_stage_vram_mb": {k: round(v, 1) for k, v in estimate.stage_vram_mb.items()}}


def placements_check(tmp: Path) -> dict:
    """Each placement the loader applies, on a demo model: does it run, and do the frames agree?"""
    import numpy as np

    from core.demo import write_demo_model
    from core.run.generation import GenerationConfig
    from core.run.load import WanPipelineLoader
    folder = write_demo_model("wan22_t2v_a14b", tmp)
    config = GenerationConfig(prompt="a red fox in the snow", width=64, height=64, num_frames=9,
                              num_inference_steps=4, seed=1)
    results: dict[str, dict] = {}
    reference = None
    variants = [("all_on_device", {"placement": "all_on_device"}), ("model_offload", {"placement": "model_offload"}),
                ("group_offload", {"placement": "group_offload"}),
                ("sequential_offload", {"placement": "sequential_offload"}),
                ("text_encoder_on_cpu", {"placement": "all_on_device", "text_encoder_on_cpu": True})]
    for name, overrides in variants:
        try:
            wrapper = WanPipelineLoader().load_wan_pipeline(folder, optimization_config=overrides)
            frames, result = wrapper.generate_frames(config)
            row = {"applied": wrapper.plan.placement.value, "success": result.success, "errors": result.errors,
                   "peak_vram_mb": result.peak_vram_mb, "seconds_per_step": result.seconds_per_step}
            if result.success:
                reference = frames if reference is None else reference
                row["max_diff_vs_first"] = float(np.abs(frames - reference).max())
        except Exception as exc:  # noqa: BLE001 - a bench reports every failure and goes on
            row = {"success": False, "errors": [f"{type(exc).__name__}: {exc}"]}
        results[name] = row
        print(f"  {name:<22} {json.dumps(row)}", flush=True)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=parse_size, default=(1280, 704, 121), help="WxHxFRAMES")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--layers", type=int, default=None, help="fewer transformer layers (CPU tries)")
    parser.add_argument("--placements", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu" and args.layers is None:
        print("No NVIDIA GPU here: run this where one is, or try it small with --size 256x256x17 --layers 2.",
              file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="wan-gpu-check-") as tmp:
        width, height, frames = args.size
        result = transformer_check(Path(tmp), width, height, frames, args.steps, args.layers, device)
        print(f"TI2V-5B transformer at {result['size']} on {result['device']}: {result['seconds_per_step']} s/step "
              f"(2 calls), peak {result['peak_vram_mb']} MiB, estimated {result['estimated_vram_mb']} MiB "
              f"(ratio {result['vram_ratio']}); the plan: {result['plan_placement']}, whole-pipeline peak "
              f"{result['plan_peak_vram_mb']} MiB {result['plan_stage_vram_mb']}", flush=True)
        if args.placements:
            result["placements"] = placements_check(Path(tmp))
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
