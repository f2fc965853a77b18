"""A run with another scheduler shift (a step-distillation LoRA's preset), the pipeline's own restored after.

Wan's schedulers keep the shift in their config: ``flow_shift`` (UniPCMultistepScheduler,
DPMSolver) or ``shift`` (FlowMatchEulerDiscreteScheduler). A scheduler built from the same
config with the new value replaces the pipeline's for one call and the old one comes back
after it, failed or not, so the next run gets the model's own shift.

Usage::

    with shifted_scheduler(pipe, 5.0) as note:
        frames = pipe(**kwargs).frames[0]
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def shifted_scheduler(pipe: Any, shift: float | None) -> Iterator[str | None]:
    """Use ``shift`` for the ``with`` block (None: leave the scheduler alone); yields a note or None."""
    scheduler = getattr(pipe, "scheduler", None)
    key = next((k for k in ("flow_shift", "shift") if scheduler is not None and k in scheduler.config), None)
    if shift is None or key is None or scheduler.config[key] == shift:
        yield None if shift is None or key is not None else (
            f"The scheduler shift {shift:g} was not used: {type(scheduler).__name__} has none.")
        return
    pipe.scheduler = type(scheduler).from_config(scheduler.config, **{key: shift})
    try:
        yield None
    finally:
        pipe.scheduler = scheduler
