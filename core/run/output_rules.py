"""Where a video may be written: the one rule for ``generate --out``, the Python API and the app.

Checked before loading (a refusal costs nothing). A video may not be written

- under a name that does not end in ``.mp4`` (``x.json`` included: the settings go there);
- inside a model folder: the model being used (its folder, or the folder of a single file),
  or any folder that holds a model (``model_index.json``, a component's ``config.json`` with
  weights, a Hugging Face cache ``models--*`` folder, Fix's backups), links followed;
- over an existing file that is not a video Wan Compat wrote (its ``comment`` tag carries
  ``"app": "Wan Compat ..."``), nor over a ``NAME.json`` beside it that is not our settings file.

Usage::

    from core.run.output_rules import output_problem, outputs_dir_problem

    output_problem("/models/Wan2.1-T2V-1.3B/transformer/x.mp4", ["/models/Wan2.1-T2V-1.3B"])
    # 'The output ... is inside the model folder ...; write the video outside it, e.g. ...'
    output_problem("clip.mp4")          # None: a new file in the current folder
    outputs_dir_problem("/models/Wan2.1-T2V-1.3B/outputs", ["/models/Wan2.1-T2V-1.3B"])
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from core.check.filesource import BACKUP_DIR

APP_TAG = "Wan Compat"          # the start of metadata["app"] in every video we write
MAX_PATH_CHARS = 4096
ELSEWHERE = "e.g. a file in the outputs folder (leave --out out for a new one there)"
WeightSuffixes = (".safetensors", ".bin", ".pth", ".ckpt", ".gguf", ".pt")


def _real(path: str | os.PathLike[str]) -> Path:
    return Path(os.path.realpath(os.path.abspath(path)))


def _inside(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def _holds_a_model(folder: Path) -> str | None:
    """Why ``folder`` is (part of) a model folder, or None."""
    if folder.name == BACKUP_DIR or folder.name.startswith("models--"):
        return "a model's folder"
    try:
        if (folder / "model_index.json").is_file() or (folder / BACKUP_DIR).is_dir():
            return "a model folder (it holds model_index.json)"
        if (folder / "config.json").is_file() and any(
                e.name.endswith(WeightSuffixes) for e in os.scandir(folder) if e.is_file()):
            return "a model folder (it holds a config.json and weights)"
    except OSError:
        return None
    return None


def _model_folder_of(target: Path, models: Iterable[str | os.PathLike[str]]) -> tuple[Path, str] | None:
    """The model folder ``target`` (resolved) is inside, and why it is one."""
    for model in models:
        if not model:
            continue
        folder = _real(model)          # a single file's folder may hold other things: only the file itself
        if _inside(target, folder):
            return folder, "the folder of the model being used"
    for folder in [target, *target.parents]:
        why = _holds_a_model(folder)
        if why:
            return folder, why
    return None


def _written_by_us(path: Path) -> bool:
    """Whether ``path`` is a video (or its settings JSON) that Wan Compat wrote."""
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):
            return False
        return isinstance(data, dict) and str(data.get("app", "")).startswith(APP_TAG)
    try:
        from core.run.video import read_video_metadata
        meta = read_video_metadata(path)
    except Exception:  # noqa: BLE001 - anything unreadable is not ours
        return False
    return isinstance(meta, dict) and str(meta.get("app", "")).startswith(APP_TAG)


def output_problem(path: str | os.PathLike[str], models: Iterable[str | os.PathLike[str]] = ()) -> str | None:
    """One sentence saying why the video may not be written at ``path`` and what to do instead, or None.

    ``models`` are the model paths being used (a folder, or a single weights file).
    """
    text = os.fspath(path)
    if "\0" in text or len(text) > MAX_PATH_CHARS or not text.strip():
        return "The output is not a usable file name; give a short path ending in .mp4."
    p = Path(text)
    if p.suffix.lower() != ".mp4":
        return (f"The output {p.name} must end in .mp4 (videos are written as MP4, with their settings in a .json "
                f"beside them); use e.g. --out {p.with_suffix('.mp4').name}.")
    target = _real(p)
    found = _model_folder_of(target, models)
    if found is not None:
        folder, why = found
        return (f"The output {p} is inside {folder}, {why}; a video is never written into a model folder. "
                f"Write it outside, {ELSEWHERE}.")
    if p.is_dir():
        return f"The output {p} is a folder: give a file name ending in .mp4."
    sidecar = p.with_suffix(".json")
    for existing in (p, sidecar):
        if (existing.exists() or existing.is_symlink()) and not _written_by_us(existing):
            return (f"{existing} already exists and is not a video (or settings file) that Wan Compat wrote, so it "
                    f"is not replaced; choose a new name, {ELSEWHERE}.")
    return None


def outputs_dir_problem(folder: str | os.PathLike[str], models: Iterable[str | os.PathLike[str]] = ()) -> str | None:
    """One sentence saying why videos may not be written into ``folder`` (the app's outputs folder), or None."""
    text = os.fspath(folder)
    if "\0" in text or len(text) > MAX_PATH_CHARS:
        return "The outputs folder is not a usable path; set outputs_dir in config.yaml to a short folder path."
    found = _model_folder_of(_real(text), models)
    if found is None:
        return None
    inside, why = found
    return (f"The outputs folder {text} is inside {inside}, {why}; videos are never written into a model "
            "folder. Set outputs_dir in config.yaml to a folder outside it (the default is ./outputs).")
