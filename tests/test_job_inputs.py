"""A queued job keeps its own copy of its input files (core/run/job_inputs.py): the copies are
checked exactly like the originals after the originals are deleted. The queue itself is issue 12."""

from __future__ import annotations

import shutil
from pathlib import Path

from core.check.detect import inspect
from core.run.generation import GenerationConfig, resolve
from core.run.inputs import sha256_of
from core.run.job_inputs import snapshot_inputs
from tests.test_tasks import noise_image, noise_video, task_models  # noqa: F401 - the session fixture


def test_the_job_copy_survives_deleting_the_originals(task_models: dict, tmp_path: Path) -> None:  # noqa: F811
    mine = tmp_path / "my files"
    mine.mkdir()
    control = noise_video(mine / "Control.MP4", 9)
    frames = mine / "mask frames"
    frames.mkdir()
    for i in range(9):
        noise_image(frames / f"{i}.png", seed=i)
    refs = [str(noise_image(mine / f"ref{i}.jpg", seed=10 + i)) for i in range(2)]
    config = GenerationConfig(prompt="a fox", video=str(control), mask=str(frames), reference_images=refs,
                              width=64, height=64, num_frames=9)
    before = {k: sha256_of(p) for k, p in (("video", control), ("mask", frames), ("ref", refs[1]))}
    queued = snapshot_inputs(config, tmp_path / "jobs" / "0001")
    shutil.rmtree(mine)                                     # the user deletes the originals
    job = tmp_path / "jobs" / "0001" / "inputs"
    assert queued.video == str(job / "video.mp4") and queued.mask == str(job / "mask")
    assert queued.reference_images == [str(job / "reference_images_0.jpg"), str(job / "reference_images_1.jpg")]
    assert config.video == str(control) and queued.prompt == "a fox"
    assert {"video": sha256_of(queued.video), "mask": sha256_of(queued.mask),
            "ref": sha256_of(queued.reference_images[1])} == before
    settings, errors = resolve(queued, inspect(task_models["vace"]))
    assert not errors, errors
    assert settings.inputs["mask"].frames == 9 and settings.inputs["video"].frames == 9
