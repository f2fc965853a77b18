"""One progress event for every long job: load, generate, fix, convert, deep check.

Usage::

    from core.progress import Progress, ProgressEvent

    def show(event: ProgressEvent) -> None:           # new style: one argument, the event
        print(f"{event.percent:5.1f}% {event.stage}: {event.message}")

    progress = Progress(show)                          # or Progress(lambda message, percent: ...)
    progress.emit("load", "Loading transformer", 12.0)
    denoise = progress.span(10, 90)                    # a stage's own 0-100 mapped onto 10-90
    denoise.emit("denoise", "Step 1/4", 25.0, step=1, steps=4, seconds_per_step=0.5, eta_seconds=1.5)

Callbacks written for the seed guide's ``(message, percent)`` keep working: the arity is
detected once, when the ``Progress`` is made. The overall percent never goes backwards,
whatever the stages report.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Union

STAGES = ("check", "load", "plan", "encode", "denoise", "decode", "write", "fix", "convert", "done")


@dataclass(frozen=True)
class ProgressEvent:
    """Where a long job is: its stage, a sentence for people, and the numbers behind it.

    ``percent`` is of the whole job (0-100, never lower than an earlier event's);
    ``step``/``steps``, ``expert`` ("high-noise" or "low-noise"), ``seconds_per_step`` and
    ``eta_seconds`` are set while denoising, else None.
    """

    stage: str
    message: str
    percent: float
    step: int | None = None
    steps: int | None = None
    expert: str | None = None
    seconds_per_step: float | None = None
    eta_seconds: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The event as plain JSON values (for the API and the job records)."""
        return {"stage": self.stage, "message": self.message, "percent": round(self.percent, 2),
                "step": self.step, "steps": self.steps, "expert": self.expert,
                "seconds_per_step": self.seconds_per_step, "eta_seconds": self.eta_seconds}


EventCallback = Callable[[ProgressEvent], None]
MessageCallback = Callable[[str, float], None]
AnyCallback = Union[EventCallback, MessageCallback, "Progress", None]


def _takes_message_and_percent(callback: Callable[..., Any]) -> bool:
    """True for a seed-style ``(message, percent)`` callback, False for ``(event)``."""
    try:
        params = list(inspect.signature(callback).parameters.values())
    except (TypeError, ValueError):  # a builtin without a signature: print and friends take *args
        return True
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return True
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 and positional[1].default is inspect.Parameter.empty


class Progress:
    """Sends ProgressEvents to one callback, keeping the overall percent from going backwards.

    ``span(start, end)`` gives a view whose 0-100 lands in ``start``-``end`` of the whole,
    so a stage can report its own percent. Thread-safe: the UI may read from another thread.
    """

    def __init__(self, callback: AnyCallback = None, start: float = 0.0, end: float = 100.0,
                 _shared: _State | None = None) -> None:
        if isinstance(callback, Progress):
            _shared, start, end = callback._state, callback._map(start), callback._map(end)
            callback = None
        self._state = _shared or _State(callback)
        self._start, self._end = float(start), float(end)

    def _map(self, percent: float) -> float:
        percent = min(100.0, max(0.0, float(percent)))
        return self._start + (self._end - self._start) * percent / 100.0

    def span(self, start: float, end: float) -> Progress:
        """A view of this progress whose 0-100 covers ``start``-``end`` of this one."""
        return Progress(None, self._map(start), self._map(end), _shared=self._state)

    def emit(self, stage: str, message: str, percent: float, **numbers: Any) -> ProgressEvent:
        """Send one event (``percent`` of this view); returns the event as sent."""
        return self._state.send(ProgressEvent(stage, message, self._map(percent), **numbers))

    def send(self, event: ProgressEvent) -> ProgressEvent:
        """Forward an event made elsewhere (its percent taken as of this view)."""
        return self._state.send(replace(event, percent=self._map(event.percent)))

    @property
    def last(self) -> ProgressEvent | None:
        """The last event sent (None before the first)."""
        return self._state.last


class _State:
    def __init__(self, callback: Callable[..., Any] | None) -> None:
        self.last: ProgressEvent | None = None
        self._lock = threading.Lock()
        if callback is None:
            self._deliver: Callable[[ProgressEvent], None] = lambda event: None
        elif _takes_message_and_percent(callback):
            self._deliver = lambda event: callback(event.message, event.percent)
        else:
            self._deliver = callback

    def send(self, event: ProgressEvent) -> ProgressEvent:
        with self._lock:
            floor = self.last.percent if self.last is not None else 0.0
            if event.percent < floor:
                event = replace(event, percent=floor)
            self.last = event
        self._deliver(event)
        return event
