"""A job's own copy of its input files, so that it still runs when the originals move or go.

The job queue (issue 12) calls this when a job is queued; the config it keeps names the copies.
Files and frame folders are copied; PIL images given in Python are kept as they are.

Usage::

    from core.run.job_inputs import snapshot_inputs

    queued = snapshot_inputs(config, "jobs/0001")   # copies into jobs/0001/inputs/, paths rewritten
    queued.pose_video                                # 'jobs/0001/inputs/pose_video.mp4'
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path
from typing import Any

from core.run.inputs import is_path
from core.run.tasks import INPUTS


def snapshot_inputs(config: Any, job_dir: str | os.PathLike[str]) -> Any:
    """``config`` (a GenerationConfig) with each input file copied into ``job_dir/inputs``.

    Copies are named by field ("image.png", "reference_images_1.jpg", "video" for a frames
    folder); the original is never changed. Raises OSError when a file cannot be copied.
    """
    folder = Path(job_dir) / "inputs"
    changes: dict[str, Any] = {}
    for field, spec in INPUTS.items():
        value = getattr(config, field, None)
        if value is None:
            continue
        if spec.kind == "images" and isinstance(value, (list, tuple)):
            changes[field] = [_copy(v, folder, f"{field}_{i}") for i, v in enumerate(value)]
        else:
            changes[field] = _copy(value, folder, field)
    return dataclasses.replace(config, **changes)


def _copy(value: Any, folder: Path, name: str) -> Any:
    if not is_path(value):
        return value                      # a PIL image or a list of frames: already the job's own
    source = Path(value)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / (name + ("" if source.is_dir() else source.suffix.lower()))
    if source.is_dir():
        shutil.copytree(source, target, dirs_exist_ok=True)
    else:
        shutil.copyfile(source, target)
    return str(target)
