"""One Fix at a time per model folder: across the app's worker threads and across processes.

Applying and undoing take :class:`FixLock` on the folder. Inside one process a
``threading.Lock`` per folder orders the threads; between processes an operating-system
file lock (``filelock``: ``flock`` on Linux and macOS, ``LockFileEx`` on Windows) on
``.wan_compat_backup/.lock`` does. The system releases that lock when its process ends, however
it ends, so a lock file left behind by a crash or a full disk is never "held" and its content
(a stale process id, anything) does not matter. A second Fix waits up to ``wait`` seconds and
is then refused with a :class:`~core.errors.WanError` that names the lock file. Usage::

    from core.fix.lock import FixLock, is_locked

    with FixLock(root, wait=30.0, on_wait=lambda: print("waiting for the other fix")):
        ...                      # back up, write, rename, or undo
    is_locked(root)              # True while any thread or process holds it

The lock file stays (removing it while another process waits on it would let two hold it).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.check.filesource import BACKUP_DIR
from core.errors import WanError

LOCK_NAME = ".lock"
WAIT_SECONDS = 30.0

_THREAD_LOCKS: dict[str, threading.Lock] = {}
_THREAD_LOCKS_GUARD = threading.Lock()


def lock_path(root: str | os.PathLike[str]) -> Path:
    """The lock file of the model folder ``root``."""
    return Path(root) / BACKUP_DIR / LOCK_NAME


def _thread_lock(root: Path) -> threading.Lock:
    """The one threading.Lock of this folder in this process (however its path is spelled)."""
    key = os.path.normcase(os.path.realpath(root))
    with _THREAD_LOCKS_GUARD:
        return _THREAD_LOCKS.setdefault(key, threading.Lock())


def _busy(root: Path) -> WanError:
    return WanError(f"Another fix is running on this folder (it holds the lock file {lock_path(root)}).",
                    "Wait for it to finish, then plan again.")


class FixLock:
    """Held while a fix or an undo changes the folder ``root`` (a context manager)."""

    def __init__(self, root: str | os.PathLike[str], wait: float = WAIT_SECONDS,
                 on_wait: Callable[[], None] | None = None) -> None:
        self.root = Path(root)
        self.dir = self.root / BACKUP_DIR
        self.path = lock_path(root)
        self.wait = max(0.0, float(wait))
        self.on_wait = on_wait
        self._thread = _thread_lock(self.root)
        self._file: Any = None

    def _waiting(self) -> None:
        if self.on_wait is not None:
            self.on_wait()
            self.on_wait = None  # said once

    def __enter__(self) -> FixLock:
        import filelock

        deadline = time.monotonic() + self.wait
        if not self._thread.acquire(blocking=False):
            self._waiting()
            if not self._thread.acquire(timeout=self.wait):
                raise _busy(self.root)
        try:
            if self.dir.is_symlink():   # a folder from elsewhere: the lock and backups would land outside it
                raise WanError(f"{self.dir} is a link to another place, so Fix will not write backups there; "
                               "nothing was changed.", f"Delete the link {self.dir} and run Fix again.")
            self.dir.mkdir(exist_ok=True)
            self._file = filelock.FileLock(str(self.path))
            try:
                self._file.acquire(timeout=0)
            except filelock.Timeout:
                self._waiting()
                try:
                    self._file.acquire(timeout=max(0.0, deadline - time.monotonic()))
                except filelock.Timeout:
                    raise _busy(self.root) from None
        except BaseException:
            self._thread.release()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            self._file.release()
        finally:
            self._thread.release()


def is_locked(root: str | os.PathLike[str]) -> bool:
    """Whether a fix holds ``root`` now (changes nothing; never creates the lock file)."""
    root = Path(root)
    if _thread_lock(root).locked():
        return True
    path = lock_path(root)
    if not path.is_file():
        return False
    import filelock
    probe = filelock.FileLock(str(path))
    try:
        probe.acquire(timeout=0)
    except filelock.Timeout:
        return True
    except OSError:  # cannot even open it (read-only folder): nobody can be fixing it
        return False
    probe.release()
    return False
