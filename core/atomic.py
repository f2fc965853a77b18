"""Atomic file writes: a reader sees the old file or the new one, never a half-written one.

The new content goes to a temporary file in the same folder, is flushed and fsync'ed, then
``os.replace``-d over the target, and the folder itself is fsync'ed so that the rename
survives a power cut. The temporary file has a fixed name (``.NAME.wan_compat_tmp``), so
whoever finds one left behind by a killed process knows what it is and may delete it.

Usage::

    from core.atomic import atomic_write_bytes, atomic_write_json, fsync_dir
    atomic_write_json("/models/Wan/model_index.json", {"_class_name": "WanPipeline"})
    atomic_write_bytes(path, data)
    os.rename(a, b); fsync_dir(os.path.dirname(b))
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

TEMP_SUFFIX = ".wan_compat_tmp"


def temp_path_for(path: str | os.PathLike[str]) -> Path:
    """The temporary file an atomic write of ``path`` uses: ``.NAME.wan_compat_tmp`` beside it."""
    p = Path(path)
    return p.with_name(f".{p.name}{TEMP_SUFFIX}")


def fsync_dir(folder: str | os.PathLike[str]) -> None:
    """Flush a folder's entries (renames, new files) to disk; a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(os.fspath(folder), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes,
                       before_replace: Callable[[], None] | None = None) -> None:
    """Replace (or create) ``path`` with ``data`` atomically.

    ``before_replace`` runs after the temporary file is complete and on disk, just before
    the rename (a test hook: killing the process there must leave the old file intact).
    Missing parent folders are created.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(target)
    mode = None
    try:
        mode = os.stat(target).st_mode & 0o777  # keep the permissions of the file it replaces
    except OSError:
        pass
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        if before_replace is not None:
            before_replace()
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_dir(target.parent)


def dumps_json(obj: Any, *, sort_keys: bool = False) -> bytes:
    """JSON as diffusers and transformers write their configs: indent 2, UTF-8, a final newline."""
    return (json.dumps(obj, indent=2, sort_keys=sort_keys, ensure_ascii=False) + "\n").encode("utf-8")


def atomic_write_json(path: str | os.PathLike[str], obj: Any, *, sort_keys: bool = False) -> None:
    """``atomic_write_bytes`` of ``obj`` as indented JSON."""
    atomic_write_bytes(path, dumps_json(obj, sort_keys=sort_keys))


def atomic_rename(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """Rename ``src`` to ``dst`` (same file system) and make it durable; refuses to overwrite."""
    if os.path.lexists(dst):
        raise FileExistsError(17, "will not overwrite", os.fspath(dst))
    os.rename(src, dst)
    fsync_dir(Path(dst).parent)
    if Path(src).parent != Path(dst).parent:
        fsync_dir(Path(src).parent)


# --- where a path will live on disk before it exists ------------------------------------
def nearest_existing(folder: str | os.PathLike[str]) -> Path:
    """``folder`` itself, or its closest parent that exists."""
    path = Path(folder).absolute()
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def free_bytes(path: str | os.PathLike[str]) -> int:
    """Free bytes on the disk that holds ``path`` (or will, once it is made); 0 when it cannot be read."""
    try:
        return shutil.disk_usage(nearest_existing(path)).free
    except OSError:
        return 0


def same_disk(existing: str | os.PathLike[str], target: str | os.PathLike[str]) -> bool:
    """Whether ``target`` (made later if need be) is on the same file system as the existing ``existing``."""
    return os.stat(existing).st_dev == os.stat(nearest_existing(target)).st_dev
