"""Unpack a .zip of a small model safely, so that it can be checked like a folder.

Usage::

    from core.check.archive import ZipLimits, extract_zip
    folder = extract_zip("Wan2.1-T2V-1.3B.zip", tmp_dir)                 # the model folder inside
    folder = extract_zip(upload, tmp_dir, ZipLimits(max_bytes=200 * 10**6))
    folder = extract_zip(upload, tmp_dir, progress=lambda event: print(event.percent, event.message))

Nothing in an archive is trusted: a member that would land outside ``dest`` (``../``, an
absolute path, a drive letter), a link, too many members, too many bytes (declared, and
counted again while writing) or a member that inflates like a zip bomb is refused with a
:class:`~core.errors.WanError` whose sentence says which, and what was written is removed.
"""

from __future__ import annotations

import os
import shutil
import stat
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from core.errors import WanError
from core.progress import Progress, ProgressEvent
from core.units import format_bytes

CHUNK = 2**20
PROGRESS_EVERY_S = 0.2
ProgressCallback = Callable[[ProgressEvent], object]


@dataclass(frozen=True)
class ZipLimits:
    """What an archive may hold.

    ``max_ratio`` applies to members larger than ``ratio_floor`` bytes: a member that unpacks
    to more than ``max_ratio`` times its packed size is a zip bomb (real weights compress
    by far less than 200:1).
    """

    max_bytes: int = 2 * 10**9
    max_files: int = 10_000
    max_ratio: int = 200
    ratio_floor: int = 10 * 2**20


def safe_member(name: str) -> PurePosixPath | None:
    """The member's relative path, or None when it would land outside the folder (zip-slip).

    >>> safe_member("model/config.json"), safe_member("../evil"), safe_member("/etc/passwd")
    (PurePosixPath('model/config.json'), None, None)
    """
    clean = name.replace("\\", "/")
    if not clean or clean.startswith("/") or (len(clean) > 1 and clean[1] == ":"):
        return None
    parts = [p for p in clean.split("/") if p not in ("", ".")]
    if not parts or any(p == ".." for p in parts):
        return None
    return PurePosixPath(*parts)


def extract_zip(archive: str | os.PathLike[str], dest: str | os.PathLike[str],
                limits: ZipLimits | None = None, progress: ProgressCallback | None = None) -> Path:
    """Unpack ``archive`` into ``dest`` within ``limits``; returns the model folder inside.

    ``progress`` receives "check" ProgressEvents (files unpacked of all, a few a second at most).

    When the archive holds a single top folder (beside a ``__MACOSX`` one), that folder is
    returned, else ``dest``. On a refusal, ``dest`` is left as it was found (created and
    removed again when it did not exist).
    """
    limits = limits or ZipLimits()
    dest = Path(dest)
    existed = dest.exists()
    before = set(dest.iterdir()) if existed else set()
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise WanError("That file is not a readable .zip archive.",
                       "Make the .zip again (right-click the model folder: Compress / Send to ZIP), "
                       "or type the folder's path instead.", str(exc)) from exc
    try:
        with zf:
            _check_listing(zf.infolist(), limits)
            dest.mkdir(parents=True, exist_ok=True)
            _unpack(zf, dest, limits, Progress(progress))
    except BaseException:
        _undo(dest, existed, before)
        raise
    entries = [p for p in dest.iterdir() if p.name != "__MACOSX" and p not in before]
    if len(entries) == 1 and entries[0].is_dir():
        return entries[0]
    return dest


def _limit_words(limits: ZipLimits) -> str:
    return format_bytes(limits.max_bytes)


def _check_listing(members: list[zipfile.ZipInfo], limits: ZipLimits) -> None:
    """Refuse on the table of contents alone, before anything is written."""
    if len(members) > limits.max_files:
        raise WanError(f"The .zip holds {len(members):,} files; a model has far fewer "
                       f"(limit {limits.max_files:,}).", "Zip only the model folder.")
    declared = sum(m.file_size for m in members)
    if declared > limits.max_bytes:
        raise WanError(f"The .zip unpacks to {format_bytes(declared)}, more than the {_limit_words(limits)} "
                       "allowed for uploads.",
                       "Uploads are for small models; for a large one type its folder's path, or drop the "
                       "folder on the page (only its headers are read).")
    for m in members:
        if safe_member(m.filename) is None:
            raise WanError(f"The .zip contains a path that points outside its folder: {m.filename!r}.",
                           "This archive is unsafe to unpack; make the .zip again from the model folder.")
        if (m.external_attr >> 16) & 0o170000 == stat.S_IFLNK:
            raise WanError(f"The .zip contains a link ({m.filename}); links are not unpacked.",
                           "Make the .zip again without links (copy the real files into the folder).")
        if m.file_size > limits.ratio_floor and m.file_size > limits.max_ratio * max(1, m.compress_size):
            raise WanError(f"{m.filename} would unpack to {format_bytes(m.file_size)} from "
                           f"{format_bytes(m.compress_size)}: that looks like a zip bomb.",
                           "Do not use this archive.")


def _unpack(zf: zipfile.ZipFile, dest: Path, limits: ZipLimits, progress: Progress) -> None:
    """Write the members, counting bytes as written (a header may lie about sizes)."""
    written = 0
    members = zf.infolist()
    shown = 0.0
    try:
        for i, m in enumerate(members, 1):
            rel = safe_member(m.filename)
            assert rel is not None  # _check_listing refused the others
            target = dest.joinpath(*rel.parts)
            if m.is_dir():
                target.mkdir(parents=True, exist_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(m) as src, open(target, "wb") as out:
                    written = _copy(src, out, written, limits)
            if time.monotonic() - shown > PROGRESS_EVERY_S or i == len(members):
                shown = time.monotonic()
                progress.emit("check", f"Unpacking the .zip: {i:,} of {len(members):,} files", 100.0 * i / len(members))
    except zipfile.BadZipFile as exc:
        raise WanError("The .zip archive is damaged.", "Make the .zip again.", str(exc)) from exc


def _copy(src: IO[bytes], out: IO[bytes], written: int, limits: ZipLimits) -> int:
    while chunk := src.read(CHUNK):
        written += len(chunk)
        if written > limits.max_bytes:
            raise WanError(f"The .zip unpacks to more than the {_limit_words(limits)} allowed for uploads.",
                           "Type the model folder's path instead.")
        out.write(chunk)
    return written


def _undo(dest: Path, existed: bool, before: set[Path]) -> None:
    if not existed:
        shutil.rmtree(dest, ignore_errors=True)
        return
    for path in set(dest.iterdir()) - before if dest.is_dir() else ():
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
