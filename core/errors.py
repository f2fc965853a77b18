"""Errors a person can act on: a plain message, a remedy, and technical details.

Usage::

    from core.errors import WanError, explain
    try:
        do_something()
    except Exception as exc:
        err = explain(exc)
        print(err.message, err.remedy)
"""

from __future__ import annotations

import errno
import json
import traceback


class WanError(Exception):
    """An error with a plain-language message, a remedy and optional details.

    >>> err = WanError("The model folder is empty.", remedy="Download the model again.")
    >>> str(err)
    'The model folder is empty. Download the model again.'
    """

    def __init__(self, message: str, remedy: str = "", details: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.remedy = remedy
        self.details = details

    def __str__(self) -> str:
        return f"{self.message} {self.remedy}".strip()


# Lower-case fragments of every allocation failure seen from torch, its C++ allocator, the loader and libc.
MEMORY_WORDS = ("out of memory", "can't allocate memory", "cannot allocate memory", "not enough memory",
                "std::bad_alloc", "bad_alloc", "failed to map segment", "cudaerrormemoryallocation",
                "cublas_status_alloc_failed", "unable to mmap", "mmap failed", "memory allocation failed")


def is_memory_failure(exc: BaseException) -> bool:
    """True for any allocation failure, also one wrapped in another exception (``raise ... from``).

    >>> is_memory_failure(RuntimeError("[enforce fail at alloc_cpu.cpp:117] . DefaultCPUAllocator: "
    ...                                "can't allocate memory: you tried to allocate 2147483648 bytes."))
    True
    >>> is_memory_failure(ValueError("Repo id must be in the form 'repo_name'"))
    False
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, MemoryError) or type(current).__name__ == "OutOfMemoryError":
            return True
        if isinstance(current, OSError) and current.errno == errno.ENOMEM:
            return True
        if is_memory_text(str(current)):
            return True
        current = current.__cause__ or current.__context__
    return False


def is_memory_text(text: str) -> bool:
    """True when ``text`` (an error message or a child's stderr) words an allocation failure."""
    low = text.lower()
    return any(word in low for word in MEMORY_WORDS)


def explain(exc: BaseException) -> WanError:
    """Turn any exception into a WanError with a sentence and a remedy.

    The traceback goes into ``details`` so that a UI can show it behind a fold.
    """
    if isinstance(exc, WanError):
        if not exc.details:
            exc.details = "".join(traceback.format_exception(exc))
        return exc
    details = "".join(traceback.format_exception(exc))
    if isinstance(exc, OSError) and hasattr(exc, "remedy") and hasattr(exc, "message"):  # filesource.NotAModelPath
        return WanError(exc.message, exc.remedy, details)
    if isinstance(exc, FileNotFoundError):
        return WanError(f"Not found: {exc.filename or exc}.",
                        "Check the path; copy it from your file manager's address bar.", details)
    if isinstance(exc, PermissionError):
        return WanError(f"Permission denied: {exc.filename or 'a file'}.",
                        "Give your user access to it (read to check a model, write to fix it or save videos), "
                        "or work on a copy somewhere you own.", details)
    if isinstance(exc, NotADirectoryError) or (isinstance(exc, OSError) and exc.errno == errno.ENOTDIR):
        return WanError(f"Part of the path {exc.filename or ''} is a file, not a folder.".replace("  ", " "),
                        "Check the path; copy it from your file manager's address bar.", details)
    if isinstance(exc, IsADirectoryError):
        return WanError(f"{exc.filename} is a folder, where a file was expected.",
                        "Give the path of a file.", details)
    if isinstance(exc, FileExistsError):
        return WanError(f"{exc.filename} already exists.", "Choose another name, or move the existing one away.",
                        details)
    if isinstance(exc, OSError) and exc.errno == errno.EROFS:
        return WanError(f"{exc.filename or 'The folder'} is on a read-only disk.",
                        "Choose a folder on a writable disk.", details)
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return WanError("The disk is full.", "Free some space or choose another output folder.", details)
    if isinstance(exc, OSError) and exc.errno == errno.ELOOP:
        return WanError(f"A symbolic link loops back on itself: {exc.filename}.",
                        "Remove or repair the link.", details)
    if is_memory_failure(exc):    # before ImportError: "failed to map segment" is memory, not a broken install
        return WanError("The computer ran out of memory.",
                        "Close other programs, or choose a smaller size, fewer frames or stronger offloading.",
                        details)
    if isinstance(exc, json.JSONDecodeError):
        return WanError(f"A JSON file could not be read: {exc.msg} at line {exc.lineno}.",
                        "Open the file in a text editor and repair it, or download it again.", details)
    if isinstance(exc, KeyboardInterrupt):
        return WanError("Stopped by the user.", "", details)
    if isinstance(exc, ImportError):
        return WanError(f"A required package could not be imported: {exc}.",
                        "Run `python -m core doctor` for the command that mends the installation.", details)
    return WanError(f"Something went wrong: {type(exc).__name__}: {exc}",
                    "If it persists, run `python -m core doctor` and include its output in a bug report.",
                    details)
