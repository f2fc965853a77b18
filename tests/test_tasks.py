"""Every Wan task's inputs on tiny real pipelines (diffusers' classes, ``save_pretrained``):
frames identical to calling the diffusers pipeline directly with the same decoded inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.check.detect import inspect
from core.run.generation import GenerationConfig, resolve
from core.run.load import WanPipelineLoader
from tests.task_models import write_task_models

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")
SIZE, STEPS, SEED = 64, 2, 7


@pytest.fixture(scope="session")
def task_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny T2V, TI2V-5B, VACE and Animate folders written by diffusers' ``save_pretrained``."""
    return write_task_models(tmp_path_factory.getbasetemp() / "wan_task_models")


@pytest.fixture(scope="session")
def wrappers(task_models: dict[str, Path]) -> dict[str, object]:
    """Each tiny model loaded once by our loader (the CPU plan: fp32)."""
    return {task: WanPipelineLoader().load_wan_pipeline(folder) for task, folder in task_models.items()}


def noise_image(path: Path, width: int = SIZE, height: int = SIZE, seed: int = 0) -> Path:
    from PIL import Image
    pixels = (np.random.RandomState(seed).rand(height, width, 3) * 255).astype("uint8")
    Image.fromarray(pixels).save(path)
    return path


def noise_video(path: Path, frames: int, width: int = SIZE, height: int = SIZE, seed: int = 0) -> Path:
    """A real MP4 (H.264) written with our own writer."""
    from core.run.video import write_mp4
    rng = np.random.RandomState(seed)
    write_mp4(rng.rand(frames, height, width, 3).astype("float32"), path, fps=8, metadata={})
    return path


def decoded_video(path: Path, limit: int | None = None) -> list:
    """The frames of an MP4 as PIL images, decoded with imageio-ffmpeg (independently of core.run.inputs)."""
    import imageio_ffmpeg
    from PIL import Image
    reader = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
    width, height = next(reader)["size"]
    frames = [Image.fromarray(np.frombuffer(raw, np.uint8).reshape(height, width, 3).copy()) for raw in reader]
    return frames[:limit]


def direct(pipe, **kwargs) -> np.ndarray:
    """The plain diffusers call with our defaults (prompt, negative, steps, seed, guidance 5)."""
    return pipe(prompt="a red fox", negative_prompt="", num_inference_steps=STEPS, guidance_scale=5.0,
                generator=torch.Generator("cpu").manual_seed(SEED), output_type="np", **kwargs).frames[0]


def ours(wrapper, **kwargs):
    frames, result = wrapper.generate_frames(GenerationConfig(
        prompt="a red fox", num_inference_steps=STEPS, guidance_scale=5.0, seed=SEED, **kwargs))
    assert result.success, result.errors
    return frames, result


# --------------------------------------------------------------------------- TI2V-5B from an image

def test_ti2v_from_an_image_equals_the_image_to_video_pipeline_loaded_from_the_folder(
        wrappers: dict, task_models: dict, tmp_path: Path) -> None:
    start = noise_image(tmp_path / "start.png")
    wrapper = wrappers["ti2v"]
    frames, result = ours(wrapper, image=str(start), width=SIZE, height=SIZE, num_frames=5)
    from PIL import Image
    reference = diffusers.WanImageToVideoPipeline.from_pretrained(task_models["ti2v"])
    expected = direct(reference, image=Image.open(start).convert("RGB"), width=SIZE, height=SIZE, num_frames=5)
    assert frames.shape == (5, SIZE, SIZE, 3)
    assert np.abs(frames - expected).max() == 0
    assert result.metadata["pipeline"] == "WanImageToVideoPipeline"
    assert result.metadata["inputs"]["image"]["sha256"] and result.metadata["inputs"]["image"]["width"] == SIZE
    # one loaded model: the image pipeline shares its modules, and text-only runs keep working
    image_pipe = wrapper._task_pipes["WanImageToVideoPipeline"]
    assert image_pipe.transformer is wrapper.pipeline.transformer and image_pipe.vae is wrapper.pipeline.vae
    text_frames, text_result = ours(wrapper, width=SIZE, height=SIZE, num_frames=5)
    assert text_result.metadata["pipeline"] == "WanPipeline"
    expected_text = direct(diffusers.WanPipeline.from_pretrained(task_models["ti2v"]), width=SIZE, height=SIZE,
                           num_frames=5)
    assert np.abs(text_frames - expected_text).max() == 0


def test_ti2v_from_an_image_on_the_demo_model_writes_an_mp4(demo_models_dir: Path, tmp_path: Path) -> None:
    from tests.conftest import run_cli
    start = noise_image(tmp_path / "start.jpg", 96, 64)
    out = tmp_path / "ti2v.mp4"
    result = run_cli("generate", str(demo_models_dir / "wan22_ti2v_5b"), "--prompt", "a paper boat",
                     "--image", str(start), "--size", "64x32", "--frames", "5", "--steps", "2", "--out", str(out))
    assert result.returncode == 0, result.stderr
    import json
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["pipeline"] == "WanImageToVideoPipeline" and meta["inputs"]["image"]["path"] == str(start)


def test_the_default_size_follows_the_image_aspect(task_models: dict, tmp_path: Path) -> None:
    report = inspect(task_models["ti2v"])
    wide = noise_image(tmp_path / "wide.png", 160, 90)
    settings, errors = resolve(GenerationConfig(prompt="x", image=str(wide)), report)
    assert not errors
    # the model's area (1280x704) at 16:9, in multiples of 32
    assert (settings.width, settings.height) == (1280, 704) or settings.width * 9 // 16 - settings.height <= 32
    assert settings.width % 32 == 0 and settings.height % 32 == 0 and settings.width > settings.height
    tall = noise_image(tmp_path / "tall.png", 90, 160)
    settings, _ = resolve(GenerationConfig(prompt="x", image=str(tall)), report)
    assert settings.height > settings.width and "aspect ratio" in settings.notes[0]
    square = noise_image(tmp_path / "square.png", 50, 50)
    settings, _ = resolve(GenerationConfig(prompt="x", image=str(square)), report)
    assert (settings.width, settings.height) == (960, 960)


# --------------------------------------------------------------------------- video-to-video, VACE, Animate

def test_video_to_video_equals_the_plain_pipeline_and_cuts_a_longer_video(
        wrappers: dict, task_models: dict, tmp_path: Path) -> None:
    source = noise_video(tmp_path / "source.mp4", 7)          # longer than the 5 frames asked: cut
    events: list = []
    frames, result = wrappers["t2v"].generate_frames(GenerationConfig(
        prompt="a red fox", num_inference_steps=STEPS, guidance_scale=5.0, seed=SEED, video=str(source),
        strength=0.7, width=SIZE, height=SIZE, num_frames=5), progress=events.append)
    assert result.success, result.errors
    reference = diffusers.WanVideoToVideoPipeline.from_pretrained(task_models["t2v"])
    expected = direct(reference, video=decoded_video(source, 5), strength=0.7, width=SIZE, height=SIZE)
    assert frames.shape == expected.shape == (5, SIZE, SIZE, 3)
    assert np.abs(frames - expected).max() == 0
    assert result.metadata["pipeline"] == "WanVideoToVideoPipeline" and result.metadata["inputs"]["video"]["frames"] == 7
    assert any(e.message == "Reading video: 5/5 frames" for e in events)


def test_vace_equals_the_plain_pipeline(wrappers: dict, task_models: dict, tmp_path: Path) -> None:
    control = noise_video(tmp_path / "control.mp4", 9)
    mask = noise_video(tmp_path / "mask.mp4", 9, seed=3)
    ref = noise_image(tmp_path / "ref.png", 48, 64)
    events: list = []
    frames, result = wrappers["vace"].generate_frames(GenerationConfig(
        prompt="a red fox", num_inference_steps=STEPS, guidance_scale=5.0, seed=SEED, video=str(control),
        mask=str(mask), reference_images=[str(ref)], conditioning_scale=0.8, width=SIZE, height=SIZE),
        progress=events.append)
    assert result.success, result.errors
    from PIL import Image
    reference = diffusers.WanVACEPipeline.from_pretrained(task_models["vace"])
    expected = direct(reference, video=decoded_video(control), mask=decoded_video(mask),
                      reference_images=[Image.open(ref).convert("RGB")], conditioning_scale=0.8,
                      width=SIZE, height=SIZE, num_frames=9)
    assert frames.shape == (9, SIZE, SIZE, 3) and np.abs(frames - expected).max() == 0
    assert any(e.message == "Reading control video: 9/9 frames" for e in events)


def test_animate_equals_the_plain_pipeline(wrappers: dict, task_models: dict, tmp_path: Path) -> None:
    character = noise_image(tmp_path / "character.png")
    pose = noise_video(tmp_path / "pose.mp4", 5)
    face = noise_video(tmp_path / "face.mp4", 5, 32, 32, seed=2)
    frames, result = ours(wrappers["animate"], image=str(character), pose_video=str(pose), face_video=str(face),
                          segment_frame_length=5, width=SIZE, height=SIZE)
    from PIL import Image
    reference = diffusers.WanAnimatePipeline.from_pretrained(task_models["animate"])
    expected = direct(reference, image=Image.open(character).convert("RGB"), pose_video=decoded_video(pose),
                      face_video=decoded_video(face), mode="animate", segment_frame_length=5, width=SIZE, height=SIZE)
    assert frames.shape == (5, SIZE, SIZE, 3) and np.abs(frames - expected).max() == 0
    assert result.metadata["inputs"]["pose_video"]["frames"] == 5 and result.metadata["mode"] is None
