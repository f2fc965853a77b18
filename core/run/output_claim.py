"""Output names claimed atomically, and the hidden files of runs that died removed on the next start.

Two runs finishing in the same second with the same prompt and seed used to get the same
automatic name, and the second replaced the first. A name is now claimed before it is used: an
exclusive create (``O_CREAT | O_EXCL``) of ``.NAME.mp4.claim`` holding the claiming process's
id. Only one process (or thread) can create it; after claiming, the name is checked again, so a
run that finished and released the name in between is seen. :func:`~core.run.video.write_mp4`
releases the claim once the MP4 is in place; at exit a process releases what it still holds.

A run killed outright (SIGKILL, power cut) leaves ``.NAME.mp4.partial-PID-xxxx``, its
``.ffmeta`` and maybe a claim. :func:`sweep` removes those whose process is gone.

Usage::

    from core.run.output_claim import claim, release, sweep
    path = claim(Path("outputs"), "2026-11-26_114502_a-cat_seed42")   # outputs/...seed42.mp4 or ...-2.mp4
    ...write the video...
    release(path)
    sweep(Path("outputs"))       # at start: [the removed leftovers]
"""

from __future__ import annotations

import atexit
import os
import re
import threading
from pathlib import Path

_PARTIAL = re.compile(r"^\..+\.partial-(\d+)-[^/]*$")
_CLAIM = re.compile(r"^\..+\.claim$")
_held: set[Path] = set()
_lock = threading.Lock()


def claim_file(path: Path) -> Path:
    """The hidden file that claims ``path``: ``.NAME.mp4.claim`` beside it."""
    return path.with_name(f".{path.name}.claim")


def _taken(path: Path) -> bool:
    return path.exists() or path.is_symlink() or path.with_suffix(".json").exists()


def claim(folder: Path, base: str, suffix: str = ".mp4") -> Path:
    """Claim the first free name ``base``, ``base-2``, ``base-3``... in ``folder`` and return its path.

    Creates ``folder`` when missing. Safe between threads and processes: no two callers get the
    same path while it is claimed or once a file of that name (or its JSON) exists.
    """
    folder.mkdir(parents=True, exist_ok=True)
    n = 1
    while True:
        path = folder / (f"{base}{suffix}" if n == 1 else f"{base}-{n}{suffix}")
        n += 1
        if _taken(path):
            continue
        try:
            fd = os.open(claim_file(path), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            continue
        with os.fdopen(fd, "w") as handle:
            handle.write(str(os.getpid()))
        if _taken(path):                 # finished and released between the check and the claim
            _unlink(claim_file(path))
            continue
        with _lock:
            _held.add(path)
        return path


def release(path: Path) -> None:
    """Give up the claim on ``path`` (after the video is in place, or when the run failed)."""
    path = Path(path)
    with _lock:
        if path not in _held:
            return
        _held.discard(path)
    _unlink(claim_file(path))


@atexit.register
def release_all() -> None:
    """Release every claim this process still holds (a failed or cancelled run's name)."""
    for path in list(_held):
        release(path)


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists (signal 0; PermissionError: it exists, owned by another user)."""
    if pid <= 0:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def sweep(folder: Path) -> list[Path]:
    """Remove ``.*.partial-PID-*`` files and claims in ``folder`` whose process is gone; the removed paths."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        pid = _owner(entry)
        if pid is None or alive(pid):
            continue
        if _unlink(Path(entry.path)):
            removed.append(Path(entry.path))
    return removed


def _owner(entry: os.DirEntry[str]) -> int | None:
    match = _PARTIAL.match(entry.name)
    if match:
        return int(match[1])
    if _CLAIM.match(entry.name):
        try:
            text = Path(entry.path).read_text().strip()
        except OSError:
            return None
        if text.isdigit():
            return int(text)
        return 0 if _age(entry) > 60 else None      # being written right now, or left half-written long ago
    return None


def _age(entry: os.DirEntry[str]) -> float:
    import time
    try:
        return time.time() - entry.stat().st_mtime
    except OSError:
        return 0.0


def _unlink(path: Path) -> bool:
    try:
        path.unlink()
        return True
    except OSError:
        return False
