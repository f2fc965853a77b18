"""What Wan Compat's loading and generation cost over plain diffusers, and whether they match.

On a demo model (128x128, 33 frames, 4 steps, same seed), plain
``DiffusionPipeline.from_pretrained(folder)(...)`` against
``WanPipelineLoader().load_wan_pipeline(folder)`` + ``wrapper.generate(...)``.

    .venv/bin/python bench/overhead.py [--runs 5] [--model wan22_t2v_a14b] [--json]

Prints the time ratios ours/plain for load and for generate (medians over the runs;
target <= 1.05 each) and the largest pixel difference between the two outputs, on the
0-255 scale (must be 0). "generate" for us is ``wrapper.generate_frames``: validation, the
plan for the request, progress, timing and the pipeline call; writing the MP4, which plain
diffusers does not do, is timed separately. With --json the last line is
``{"load_ratio": x, "generate_ratio": x, "max_pixel_diff": n}``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from diffusers import DiffusionPipeline  # noqa: E402

from core.demo import write_demo_model  # noqa: E402
from core.run.generation import GenerationConfig  # noqa: E402
from core.run.load import WanPipelineLoader  # noqa: E402
from core.run.video import write_mp4  # noqa: E402

SETTINGS = dict(prompt="a red fox running through deep snow", negative_prompt="blurry", height=128, width=128,
                num_frames=33, num_inference_steps=4, guidance_scale=5.0)
SEED = 1234


def pixels(frames: np.ndarray) -> np.ndarray:
    """Frames in 0..1 as the 0-255 pixels a video holds."""
    return np.round(np.clip(frames, 0, 1) * 255).astype(np.int16)


def plain_run(folder: Path) -> tuple[float, float, np.ndarray]:
    start = time.perf_counter()
    pipe = DiffusionPipeline.from_pretrained(folder)
    load = time.perf_counter() - start
    pipe.set_progress_bar_config(disable=True)
    start = time.perf_counter()
    frames = pipe(**SETTINGS, generator=torch.Generator(device="cpu").manual_seed(SEED), output_type="np").frames[0]
    return load, time.perf_counter() - start, frames


def our_run(folder: Path, out: Path) -> tuple[float, float, float, np.ndarray]:
    start = time.perf_counter()
    wrapper = WanPipelineLoader().load_wan_pipeline(folder)
    load = time.perf_counter() - start
    config = GenerationConfig(prompt=SETTINGS["prompt"], negative_prompt=SETTINGS["negative_prompt"],
                              height=128, width=128, num_frames=33, num_inference_steps=4, guidance_scale=5.0,
                              guidance_scale_2=5.0,  # plain diffusers uses guidance_scale for both experts
                              seed=SEED, fps=16)
    start = time.perf_counter()
    frames, result = wrapper.generate_frames(config)
    generate = time.perf_counter() - start
    assert result.success, result.errors
    start = time.perf_counter()
    write_mp4(frames, out, result.fps, result.metadata)
    return load, generate, time.perf_counter() - start, frames


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--model", default="wan22_t2v_a14b")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    with tempfile.TemporaryDirectory(prefix="wan-overhead-") as tmp:
        folder = write_demo_model(args.model, Path(tmp))
        our_out = Path(tmp) / "ours.mp4"
        plain_run(folder), our_run(folder, our_out)  # warm-up: imports, caches
        plain, ours = [], []
        for _ in range(args.runs):  # interleaved, so that drift in the machine hits both alike
            plain.append(plain_run(folder))
            ours.append(our_run(folder, our_out))
        diff = int(max(np.abs(pixels(p[2]) - pixels(o[3])).max() for p, o in zip(plain, ours)))
    median = lambda rows, i: statistics.median(r[i] for r in rows)  # noqa: E731
    load_ratio = median(ours, 0) / median(plain, 0)
    generate_ratio = median(ours, 1) / median(plain, 1)
    print(f"model {args.model}, 128x128, 33 frames, 4 steps, {args.runs} runs (medians)")
    print(f"load:     plain {median(plain, 0):.3f} s   ours {median(ours, 0):.3f} s   ratio {load_ratio:.3f}")
    print(f"generate: plain {median(plain, 1):.3f} s   ours {median(ours, 1):.3f} s   ratio {generate_ratio:.3f}")
    print(f"writing the MP4 (ours only): {median(ours, 2):.3f} s")
    print(f"largest pixel difference between the two outputs (0-255): {diff}")
    if args.json:
        print(json.dumps({"load_ratio": round(load_ratio, 4), "generate_ratio": round(generate_ratio, 4),
                          "max_pixel_diff": diff}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
