"""SIGTERM and Ctrl+C while a video is written: ffmpeg stopped, temporary files removed, a sentence, 143/130.

Python's default SIGTERM ends the process at once: no ``finally`` runs, so the hidden
``.NAME.mp4.partial-PID-xxxx`` and its ``.ffmeta`` stay for good and ffmpeg is left behind.
:func:`install` turns SIGTERM into :class:`Stopped` (a ``BaseException``, like
``KeyboardInterrupt``), so the ``finally`` blocks of the main thread run. Work on another thread
(the app's generations) cannot be unwound by a signal, so what must not outlive the process
(ffmpeg, temporary files) registers a clean-up with :func:`on_stop`; the handler runs them first.

Usage::

    from core.run import stop_signals
    stop_signals.install()                      # once, in the main thread (CLI, app)
    with stop_signals.on_stop(lambda: proc.kill()):
        ...                                     # the clean-up runs if SIGTERM/SIGINT arrives
    try: ...
    except stop_signals.Stopped as stop:
        print(stop.sentence); sys.exit(stop.exit_code)   # 143
"""

from __future__ import annotations

import contextlib
import itertools
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

_cleanups: dict[int, Callable[[], None]] = {}
_ids = itertools.count()
_lock = threading.Lock()


class Stopped(BaseException):
    """Raised in the main thread when SIGTERM arrives. ``exit_code`` is 128 + the signal's number."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.exit_code = 128 + signum
        self.name = signal.Signals(signum).name
        self.sentence = f"Stopped by {self.name}."
        super().__init__(self.sentence)


def register(cleanup: Callable[[], None]) -> int:
    """Run ``cleanup`` if SIGTERM or SIGINT arrives before :func:`unregister` (from any thread)."""
    key = next(_ids)
    with _lock:
        _cleanups[key] = cleanup
    return key


def unregister(key: int) -> None:
    with _lock:
        _cleanups.pop(key, None)


@contextlib.contextmanager
def on_stop(cleanup: Callable[[], None]) -> Iterator[None]:
    """:func:`register` for the duration of a ``with`` block."""
    key = register(cleanup)
    try:
        yield
    finally:
        unregister(key)


def run_cleanups() -> None:
    """Run every registered clean-up once (each may fail on its own without stopping the others)."""
    with _lock:
        pending = list(_cleanups.values())
        _cleanups.clear()
    for cleanup in pending:
        try:
            cleanup()
        except Exception:  # noqa: BLE001, S110 - best effort while the process is stopping
            pass


def _on_term(signum: int, frame: Any) -> None:
    run_cleanups()
    raise Stopped(signum)


def _on_int(signum: int, frame: Any) -> None:
    run_cleanups()
    raise KeyboardInterrupt


def install() -> bool:
    """Handle SIGTERM (and SIGINT, keeping KeyboardInterrupt) as above; False off the main thread."""
    if threading.current_thread() is not threading.main_thread():
        return False
    signal.signal(signal.SIGTERM, _on_term)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _on_int)
    return True
