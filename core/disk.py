"""Where a path will live on disk before it exists: its nearest existing folder, and the free space there.

Usage::

    from core.disk import free_bytes, nearest_existing, same_disk
    nearest_existing(Path("/data/offload/new/sub"))   # /data, when only /data exists yet
    free_bytes(Path("/data/offload"))                 # bytes free on that disk; 0 when it cannot be read
    same_disk(Path("model.gguf"), Path("/out/Wan"))   # whether a hard link / rename can reach it
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path


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
