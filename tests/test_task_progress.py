"""Progress through every slow part of a task run, on the tiny save_pretrained task models:
"Encoding reference images", "Encoding the source video", "Segment 2 of 3" (Animate), with one
percent that never goes backwards and frames still identical to the plain pipeline."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from core.run.generation import GenerationConfig
from tests.test_tasks import (  # noqa: F401 - the session fixtures
    SEED,
    SIZE,
    decoded_video,
    diffusers,
    direct,
    noise_image,
    noise_video,
    task_models,
    wrappers,
)


def _run(wrapper, **kwargs):
    events: list = []
    frames, result = wrapper.generate_frames(GenerationConfig(
        prompt="a red fox", num_inference_steps=2, guidance_scale=5.0, seed=SEED, width=SIZE, height=SIZE, **kwargs),
        progress=events.append)
    assert result.success, result.errors
    percents = [e.percent for e in events]
    assert percents == sorted(percents), percents                 # the percent never goes backwards
    return frames, [e.message for e in events], events


def test_vace_and_video_to_video_announce_their_encodings(wrappers: dict, tmp_path: Path) -> None:  # noqa: F811
    control = noise_video(tmp_path / "control.mp4", 5)
    refs = [str(noise_image(tmp_path / f"ref{i}.png", 48, 64, seed=i)) for i in range(2)]
    _, messages, _ = _run(wrappers["vace"], video=str(control), reference_images=refs, num_frames=5)
    at = messages.index("Encoding reference images (2) and the control video")
    assert messages.index("Encoding the prompt") < at < next(i for i, m in enumerate(messages) if m.startswith("Step"))
    _, messages, _ = _run(wrappers["t2v"], video=str(control), strength=0.7, num_frames=5)
    assert "Encoding the source video" in messages


def test_animate_says_which_segment(wrappers: dict, task_models: dict, tmp_path: Path) -> None:  # noqa: F811
    character = noise_image(tmp_path / "character.png")
    pose = noise_video(tmp_path / "pose.mp4", 9)
    face = noise_video(tmp_path / "face.mp4", 9, 32, 32, seed=2)
    frames, messages, events = _run(wrappers["animate"], image=str(character), pose_video=str(pose),
                                    face_video=str(face), segment_frame_length=5)
    steps = [m for m in messages if "Step" in m]
    assert [m.split(" · ")[:2] for m in steps] == [["Segment 1 of 2", "Step 1/2"], ["Segment 1 of 2", "Step 2/2"],
                                                   ["Segment 2 of 2", "Step 1/2"], ["Segment 2 of 2", "Step 2/2"]]
    assert "Encoding the character image" in messages
    from PIL import Image
    reference = diffusers.WanAnimatePipeline.from_pretrained(task_models["animate"])
    expected = direct(reference, image=Image.open(character).convert("RGB"), pose_video=decoded_video(pose),
                      face_video=decoded_video(face), mode="animate", segment_frame_length=5, width=SIZE, height=SIZE)
    assert np.abs(frames - expected).max() == 0
