"""What Wan Compat's loading and generation cost over plain diffusers, and whether they match.

On a demo model (128x128, 33 frames, 4 steps, same seed), plain
``DiffusionPipeline.from_pretrained(folder)(...)`` against
``WanPipelineLoader().load_wan_pipeline(folder)`` + ``wrapper.generate(...)``.

    .venv/bin/python bench/overhead.py [--runs 5] [--model wan22_t2v_a14b] [--json]
    .venv/bin/python bench/overhead.py --task ti2v-image|vace|v2v|animate [--runs 3] [--json]

``--task`` runs a task with its inputs (real files, decoded once for the plain pipeline):
ti2v-image on the demo TI2V-5B (plain: ``WanImageToVideoPipeline.from_pretrained``), v2v on the
demo Wan2.1 T2V (plain: ``WanVideoToVideoPipeline.from_pretrained``), vace and animate on the tiny
save_pretrained models of tests/task_models.py (plain: ``DiffusionPipeline.from_pretrained``).

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
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

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


@dataclass
class Task:
    """One benchmark case: the model folder, the plain class and each side's inputs."""

    folder: Path
    plain_class: str = "DiffusionPipeline"
    plain_inputs: dict = field(default_factory=dict)     # decoded (PIL images, lists of frames)
    our_inputs: dict = field(default_factory=dict)       # GenerationConfig fields (file paths)
    takes_num_frames: bool = True


def make_task(name: str, model: str, tmp: Path) -> Task:
    """Write the model and the input files for ``name`` ("t2v" runs ``model`` without inputs)."""
    if name == "t2v":
        return Task(write_demo_model(model, tmp), our_inputs={"guidance_scale_2": 5.0})  # plain: one scale, both experts
    from core.run.inputs import read_image, read_video
    files = tmp / "inputs"
    files.mkdir()
    rng = np.random.RandomState(0)

    def video(name: str, size: int = 128) -> str:
        path = files / name
        write_mp4(rng.rand(33, size, size, 3).astype("float32"), path, fps=16, metadata={})
        return str(path)

    def image(name: str) -> str:
        from PIL import Image
        path = files / name
        Image.fromarray((rng.rand(128, 128, 3) * 255).astype("uint8")).save(path)
        return str(path)

    if name == "ti2v-image":
        start = image("start.png")
        return Task(write_demo_model("wan22_ti2v_5b", tmp), "WanImageToVideoPipeline",
                    {"image": read_image(start)}, {"image": start})
    if name == "v2v":
        source = video("source.mp4")
        return Task(write_demo_model("wan21_t2v", tmp), "WanVideoToVideoPipeline",
                    {"video": read_video(source), "strength": 0.7}, {"video": source, "strength": 0.7}, False)
    sys.path.insert(0, str(REPO))
    from tests.task_models import write_task_models
    folders = write_task_models(tmp / "tiny")
    if name == "vace":
        control, mask, ref = video("control.mp4"), video("mask.mp4"), image("ref.png")
        return Task(folders["vace"], plain_inputs={"video": read_video(control), "mask": read_video(mask),
                                                   "reference_images": [read_image(ref)], "conditioning_scale": 0.8},
                    our_inputs={"video": control, "mask": mask, "reference_images": [ref], "conditioning_scale": 0.8})
    if name == "animate":
        character, pose, face = image("character.png"), video("pose.mp4"), video("face.mp4", 32)
        return Task(folders["animate"], plain_inputs={"image": read_image(character), "pose_video": read_video(pose),
                                                      "face_video": read_video(face), "mode": "animate"},
                    our_inputs={"image": character, "pose_video": pose, "face_video": face}, takes_num_frames=False)
    raise SystemExit(f"unknown task {name!r}: use t2v, ti2v-image, vace, v2v or animate")


def plain_run(task: Task) -> tuple[float, float, np.ndarray]:
    import diffusers
    start = time.perf_counter()
    pipe = getattr(diffusers, task.plain_class).from_pretrained(task.folder)
    load = time.perf_counter() - start
    pipe.set_progress_bar_config(disable=True)
    settings = dict(SETTINGS) if task.takes_num_frames else {k: v for k, v in SETTINGS.items() if k != "num_frames"}
    start = time.perf_counter()
    frames = pipe(**settings, **task.plain_inputs, generator=torch.Generator(device="cpu").manual_seed(SEED),
                  output_type="np").frames[0]
    return load, time.perf_counter() - start, frames


def our_run(task: Task, out: Path) -> tuple[float, float, float, np.ndarray]:
    start = time.perf_counter()
    wrapper = WanPipelineLoader().load_wan_pipeline(task.folder)
    load = time.perf_counter() - start
    config = GenerationConfig(prompt=SETTINGS["prompt"], negative_prompt=SETTINGS["negative_prompt"],
                              height=128, width=128, num_frames=33, num_inference_steps=4, guidance_scale=5.0,
                              seed=SEED, fps=16, **task.our_inputs)
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
    parser.add_argument("--task", default="t2v", choices=("t2v", "ti2v-image", "vace", "v2v", "animate"))
    args = parser.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    with tempfile.TemporaryDirectory(prefix="wan-overhead-") as tmp:
        task = make_task(args.task, args.model, Path(tmp))
        our_out = Path(tmp) / "ours.mp4"
        plain_run(task), our_run(task, our_out)  # warm-up: imports, caches
        plain, ours = [], []
        for _ in range(args.runs):  # interleaved, so that drift in the machine hits both alike
            plain.append(plain_run(task))
            ours.append(our_run(task, our_out))
        diff = int(max(np.abs(pixels(p[2]) - pixels(o[3])).max() for p, o in zip(plain, ours)))
    median = lambda rows, i: statistics.median(r[i] for r in rows)  # noqa: E731
    load_ratio = median(ours, 0) / median(plain, 0)
    generate_ratio = median(ours, 1) / median(plain, 1)
    what = args.model if args.task == "t2v" else f"task {args.task} ({task.folder.name})"
    print(f"{what}, 128x128, 33 frames, 4 steps, {args.runs} runs (medians)")
    print(f"load:     plain {median(plain, 0):.3f} s   ours {median(ours, 0):.3f} s   ratio {load_ratio:.3f}")
    print(f"generate: plain {median(plain, 1):.3f} s   ours {median(ours, 1):.3f} s   ratio {generate_ratio:.3f}")
    print(f"writing the MP4 (ours only): {median(ours, 2):.3f} s")
    print(f"largest pixel difference between the two outputs (0-255): {diff}")
    if args.json:
        print(json.dumps({"task": args.task, "load_ratio": round(load_ratio, 4),
                          "generate_ratio": round(generate_ratio, 4), "max_pixel_diff": diff}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
