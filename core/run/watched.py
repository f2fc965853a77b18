"""A command-line generation in a child process its command watches: a kernel kill is said, never silent.

The kernel's OOM killer ends a process with SIGKILL and no word; when that process is the
command itself the terminal shows only "Killed". ``watch`` forks: the child goes on with the
load and the generation exactly as before (same stdout, stderr, exit code); the parent only
waits, and when the child was killed by SIGKILL it prints the memory sentence (``killed``,
e.g. :func:`core.run.memory_failure.killed_by_system`) and exits 1. The app does the same
with its job worker (core.jobs.supervisor). Usage::

    code = watch(lambda returncode: sentence_for(returncode))   # None: this is the child, go on
    if code is not None:
        return code                                              # the parent: the child's exit code
    ... load and generate ...

Signals: a Ctrl+C typed in the terminal reaches the child by itself (same process group),
so the parent only waits; SIGTERM, SIGHUP and a SIGINT sent with ``kill`` to the command are
passed on to the child, which stops as it always did (exit 143/129/130).

Nothing is forked (``watch`` returns None at once and the work runs in this process) where
fork or ``sigtimedwait`` is missing (Windows, macOS), when other threads run, or once torch
has set up CUDA (a forked child cannot use it).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable

PASSED_ON = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_SENT_BY_A_PROCESS = 0     # si_code <= 0: kill(), tkill(), sigqueue(); > 0: the kernel (a terminal's Ctrl+C)


def can_watch() -> bool:
    """Whether this process may fork a watched child now (see the module docstring)."""
    if not (hasattr(os, "fork") and hasattr(signal, "sigtimedwait") and hasattr(signal, "pthread_sigmask")):
        return False
    if threading.active_count() != 1:
        return False
    torch = sys.modules.get("torch")
    try:
        return not (torch is not None and torch.cuda.is_initialized())
    except Exception:  # noqa: BLE001 - a torch without cuda: nothing to protect
        return True


def watch(killed: Callable[[int], str]) -> int | None:
    """Fork: None in the child (go on with the work); in the parent, the child's exit code.

    A child killed by SIGKILL makes the parent print ``killed(returncode)`` to stderr and
    return 1; one ended by another signal is said with its name (exit 128 + the signal).

    >>> code = watch(lambda rc: f"killed ({rc})")      # doctest: +SKIP
    """
    if not can_watch():
        return None
    sys.stdout.flush()
    sys.stderr.flush()
    waited = {signal.SIGCHLD, *PASSED_ON}
    before = signal.pthread_sigmask(signal.SIG_BLOCK, waited)    # no signal lost between fork and wait
    pid = os.fork()
    if pid == 0:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)
        return None
    try:
        code = os.waitstatus_to_exitcode(_wait(pid, waited))
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)
    if code >= 0:
        return code
    if code == -signal.SIGKILL:
        print(killed(code), file=sys.stderr)
        return 1
    name = signal.Signals(-code).name if -code in {s.value for s in signal.Signals} else f"signal {-code}"
    print(f"The generation stopped ({name}); no video was written.", file=sys.stderr)
    return 128 - code


def _wait(pid: int, waited: set[signal.Signals]) -> int:
    """Wait for the child, passing on the signals a process sent to this one; its wait status."""
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        info = signal.sigtimedwait(waited, 0.5)
        if info is None or info.si_signo == signal.SIGCHLD:
            continue
        if info.si_code <= _SENT_BY_A_PROCESS:      # a terminal's signal reached the child already
            try:
                os.kill(pid, info.si_signo)
            except ProcessLookupError:
                pass
