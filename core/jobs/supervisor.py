"""The app's side of the worker process: start it, hand it a job, relay its events, see it die.

Usage::

    from core.jobs.supervisor import WorkerProcess

    worker = WorkerProcess()
    outcome = worker.run({"op": "run", "job": 7, "model": path, "config": {...}}, on_event=print)
    outcome.result            # the worker's result dict, or None when the worker died
    outcome.returncode        # how it died (-9: SIGKILL, e.g. the kernel's OOM killer)
    worker.cancel()           # from another thread: stop after the current step
    worker.stop()

The worker runs in its own session (Ctrl+C in the app's terminal reaches the app, which
stops it) and is told by the kernel to stop (SIGTERM) when the app dies.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from core.progress import ProgressEvent

ROOT = Path(__file__).resolve().parents[2]
STOP_WAIT_S = 10.0


@dataclass(frozen=True)
class Outcome:
    """How one job ended in the worker: its result, or the worker's exit code when it died."""

    result: dict[str, Any] | None
    returncode: int | None = None


class WorkerProcess:
    """One ``python -m core.jobs.worker`` process, started on the first job and after a death."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self.env = dict(env or {})
        self.proc: subprocess.Popen[bytes] | None = None
        self._events: IO[str] | None = None
        self._lock = threading.Lock()
        self._in_run = False

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        """Start the worker (it imports torch on its first job, not now)."""
        from core.jobs.worker import FD_ENV, PARENT_ENV
        read_fd, write_fd = os.pipe()
        env = dict(os.environ, **self.env)
        env[FD_ENV], env[PARENT_ENV] = str(write_fd), str(os.getpid())
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
        try:
            self.proc = subprocess.Popen([sys.executable, "-m", "core.jobs.worker"], stdin=subprocess.PIPE,
                                         pass_fds=(write_fd,), env=env, cwd=ROOT, start_new_session=True)
        finally:
            os.close(write_fd)            # the worker holds the only writer: its death is our EOF
        self._events = os.fdopen(read_fd, "r", encoding="utf-8")

    def _send(self, message: dict[str, Any]) -> None:
        with self._lock:
            if self.proc is None or self.proc.stdin is None:
                raise BrokenPipeError("no worker")
            self.proc.stdin.write((json.dumps(message, default=str) + "\n").encode("utf-8"))
            self.proc.stdin.flush()

    def run(self, command: dict[str, Any], on_event: Callable[[ProgressEvent], None]) -> Outcome:
        """Run one job and wait for it; never raises for the worker's death (see ``returncode``)."""
        self._in_run = True
        try:
            return self._run(command, on_event)
        finally:
            self._in_run = False

    def _run(self, command: dict[str, Any], on_event: Callable[[ProgressEvent], None]) -> Outcome:
        for attempt in (1, 2):
            if not self.alive():
                self._reap()
                self.start()
            try:
                self._send(command)
                break
            except (BrokenPipeError, OSError):      # it died between jobs: once more with a new one
                self._reap()
                if attempt == 2:
                    return Outcome(None, self.proc.returncode if self.proc is not None else None)
        assert self._events is not None
        while True:
            line = self._events.readline()
            if not line:                              # the worker is gone
                return Outcome(None, self._reap())
            try:
                message = json.loads(line)
            except json.JSONDecodeError:
                continue
            kind = message.get("type")
            if kind == "event":
                on_event(ProgressEvent(**message["event"]))
            elif kind == "result" and message.get("job") == command.get("job"):
                return Outcome(message.get("result") or {})

    def cancel(self) -> None:
        """Ask the running job to stop after its current step."""
        try:
            self._send({"op": "cancel"})
        except (BrokenPipeError, OSError):
            pass

    def unload(self) -> None:
        """Ask the worker to forget its loaded model (between jobs)."""
        try:
            self._send({"op": "unload"})
        except (BrokenPipeError, OSError):
            pass

    def kill(self) -> None:
        """End the worker now (SIGKILL)."""
        if self.alive():
            assert self.proc is not None
            self.proc.kill()

    def stop(self) -> None:
        """Let the worker quit (it stops a running job first); killed if it does not within STOP_WAIT_S."""
        if self.alive():
            try:
                self._send({"op": "cancel"})
                self._send({"op": "quit"})
            except (BrokenPipeError, OSError):
                pass
            try:
                self.proc.wait(timeout=STOP_WAIT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if not self._in_run:
            self._reap()

    def _reap(self) -> int | None:
        """Wait for a worker that has gone; its exit code (negative: the signal that ended it)."""
        code = None
        if self.proc is not None:
            try:
                code = self.proc.wait(timeout=STOP_WAIT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                code = self.proc.wait()
            if self.proc.stdin is not None:
                try:
                    self.proc.stdin.close()
                except OSError:
                    pass
        if self._events is not None:
            self._events.close()
            self._events = None
        self.proc = None
        return code
