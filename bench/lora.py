"""What LoRAs cost through Wan Compat against plain diffusers calls, and whether the prediction is exact.

On the demo Wan2.2 A14B pipeline, one LoRA per expert (ComfyUI format on the high-noise expert,
musubi on the low-noise one, real key names at the demo's widths):

- load: ours ``core.run.lora.apply_loras`` (header read, fingerprint, load_lora_weights per expert,
  strengths per transformer and their read-back) against plain ``load_file`` +
  ``pipe.load_lora_weights(..., load_into_transformer_2=...)`` + ``pipe.set_adapters``, each from a
  pipeline without LoRA layers (ours taken off by ``remove_loras``, plain by ``unload_lora_weights``:
  with ``delete_adapters`` the empty peft wrappers stay and the next plain load skips creating them);
- generate: ours ``wrapper.generate_frames`` with the same LoRAs (already on) against the plain
  pipeline call, same seed (128x128, 17 frames, 4 steps): the largest pixel difference must be 0;
- prediction: every format and mismatch case of tests/lora_files.py predicted, then loaded for real
  into the four demo pipelines: ``"prediction_exact": "k/n"``.

    .venv/bin/python bench/lora.py [--runs 5] [--json]

With --json the last line is ``{"load_ratio", "generate_ratio", "max_pixel_diff", "prediction_exact"}``
(targets <= 1.05, <= 1.05, 0, n/n). Medians over the runs, ours and plain alternating; ``*_ratio_min``
compare the fastest runs (steadier when other programs share the machine).
"""

from __future__ import annotations

import argparse
import json
import logging
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

from core.check.lora_match import LoraChoice  # noqa: E402
from core.demo import write_demo_models  # noqa: E402
from core.run.generation import GenerationConfig  # noqa: E402
from core.run.load import WanPipelineLoader  # noqa: E402
from core.run.lora import apply_loras, remove_loras  # noqa: E402
from tests.lora_files import DEMO_WIDTHS, compare_case, prediction_cases, write_lora  # noqa: E402

SETTINGS = dict(prompt="a red fox running through deep snow", negative_prompt="blurry", height=128, width=128,
                num_frames=17, num_inference_steps=4)
SEED = 1234


def pixels(frames: np.ndarray) -> np.ndarray:
    return np.round(np.clip(frames, 0, 1) * 255).astype(np.int16)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    logging.getLogger("diffusers").setLevel(logging.CRITICAL)
    from diffusers import DiffusionPipeline
    from safetensors.torch import load_file
    work = Path(tempfile.mkdtemp(prefix="wan_lora_bench_"))
    os.environ.setdefault("WAN_COMPAT_HISTORY_DB", str(work / "history.db"))
    models = write_demo_models(work / "models")
    folder = models["wan22_t2v_a14b"]
    dim, ffn, blocks = DEMO_WIDTHS
    high = write_lora(work / "motion_HIGH.safetensors", "comfyui", dim, ffn, blocks, seed=1)
    low = write_lora(work / "motion_LOW.safetensors", "musubi", dim, ffn, blocks, seed=2)
    choices = (LoraChoice(str(high), 0.8), LoraChoice(str(low), 1.0))   # experts from the file names

    wrapper = WanPipelineLoader().load_wan_pipeline(folder)
    plain = DiffusionPipeline.from_pretrained(folder)
    plain.set_progress_bar_config(disable=True)
    ours_load, plain_load = [], []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        state = apply_loras(wrapper.pipeline, choices)
        ours_load.append(time.perf_counter() - t0)
        remove_loras(wrapper.pipeline, state)
        t0 = time.perf_counter()
        plain.load_lora_weights(load_file(high), adapter_name="h")
        plain.load_lora_weights(load_file(low), adapter_name="l", load_into_transformer_2=True)
        plain.set_adapters(["h", "l"], [0.8, 1.0])
        plain_load.append(time.perf_counter() - t0)
        plain.unload_lora_weights()     # both start each run from plain layers (remove_loras does the same)

    config = GenerationConfig(**SETTINGS, seed=SEED, loras=choices)
    _, first = wrapper.generate_frames(config)            # puts the LoRAs on, plans for this request
    guidance = dict(guidance_scale=first.metadata["guidance_scale"], guidance_scale_2=first.metadata["guidance_scale_2"])
    plain.load_lora_weights(load_file(high), adapter_name="h")
    plain.load_lora_weights(load_file(low), adapter_name="l", load_into_transformer_2=True)
    plain.set_adapters(["h", "l"], [0.8, 1.0])
    ours_gen, plain_gen, diff = [], [], 0
    for _ in range(args.runs):
        t0 = time.perf_counter()
        frames, result = wrapper.generate_frames(config)
        ours_gen.append(time.perf_counter() - t0)
        assert result.success, result.errors
        t0 = time.perf_counter()
        expected = plain(**SETTINGS, **guidance, output_type="np",
                         generator=torch.Generator().manual_seed(SEED)).frames[0]
        plain_gen.append(time.perf_counter() - t0)
        diff = max(diff, int(np.abs(pixels(frames) - pixels(expected)).max()))

    cases = prediction_cases(Path(models["wan21_t2v"]).parent, work / "cases")
    pipes: dict = {}
    exact = sum(compare_case(pipes, m, t)[0] for m, _, t in cases)
    out = {"load_ratio": round(statistics.median(ours_load) / statistics.median(plain_load), 3),
           "generate_ratio": round(statistics.median(ours_gen) / statistics.median(plain_gen), 3),
           "max_pixel_diff": diff, "prediction_exact": f"{exact}/{len(cases)}",
           # fastest against fastest: on a shared machine the medians move with the neighbours' load
           "load_ratio_min": round(min(ours_load) / min(plain_load), 3),
           "generate_ratio_min": round(min(ours_gen) / min(plain_gen), 3),
           "load_seconds": {"ours": round(statistics.median(ours_load), 4), "plain": round(statistics.median(plain_load), 4)},
           "generate_seconds": {"ours": round(statistics.median(ours_gen), 4),
                                "plain": round(statistics.median(plain_gen), 4)},
           "runs": args.runs}
    if not args.json:
        print(f"LoRA load (one per expert): ours {out['load_seconds']['ours']:.4f} s, plain "
              f"{out['load_seconds']['plain']:.4f} s, ratio {out['load_ratio']}")
        print(f"generate 128x128x17, 4 steps: ours {out['generate_seconds']['ours']:.3f} s, plain "
              f"{out['generate_seconds']['plain']:.3f} s, ratio {out['generate_ratio']}; largest pixel difference {diff}")
        print(f"prediction exact in {out['prediction_exact']} cases")
    print(json.dumps(out) if args.json else "")
    return 0


if __name__ == "__main__":
    sys.exit(main())
