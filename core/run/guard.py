"""The finite-step guard: a denoising step whose latents hold NaN or Inf stops the run at once.

Wan runs that go non-finite (fp16 overflow, a damaged file, a bad attention kernel, a wild
LoRA scale) otherwise finish every step, decode and write an all-black MP4. The guard costs
one reduction per step (``latents.sum()``: any NaN or Inf makes the sum non-finite) and one
over the decoded frames before anything is written. It also keeps references (no copies) to
the current step's transformer calls, so that the cause finder (:mod:`core.run.cause`) can run
exactly that call again with forward hooks.

Usage (what :class:`core.run.load.WanPipelineWrapper` does)::

    guard = FiniteGuard(pipe, steps=4)
    with guard.watching():
        frames = pipe(..., callback_on_step_end=lambda p, i, t, kw: guard.check_step(i + 1, kw["latents"]) or kw)
    guard.check_frames(frames)          # raises NonFiniteStep(where="frames")

torch is imported lazily, inside the functions that need it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

TRANSFORMERS = ("transformer", "transformer_2")


class NonFiniteStep(Exception):
    """A step's latents (``where="latents"``) or the decoded frames (``"frames"``) hold NaN or Inf."""

    def __init__(self, where: str, step: int | None, steps: int | None, expert: str | None = None,
                 kind: str = "NaN") -> None:
        self.where, self.step, self.steps, self.expert, self.kind = where, step, steps, expert, kind
        super().__init__(self.sentence)

    @property
    def sentence(self) -> str:
        """What happened, in one sentence (without the cause)."""
        if self.where == "frames":
            return f"The decoded video holds {self.kind} values (the VAE decode went non-finite)."
        expert = f" ({self.expert} expert)" if self.expert else ""
        return f"Step {self.step} of {self.steps}{expert} produced {self.kind} latents; the run was stopped there."


@dataclass
class TransformerCall:
    """One transformer call of the current step: the component's name and its arguments (references)."""

    component: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


@dataclass
class FiniteGuard:
    """Checks each step's latents and the decoded frames; remembers the current step's transformer calls."""

    pipe: Any
    steps: int
    calls: list[TransformerCall] = field(default_factory=list)
    last_finite_step: int = 0
    _handles: list[Any] = field(default_factory=list)

    @contextlib.contextmanager
    def watching(self) -> Iterator[FiniteGuard]:
        """Keep the arguments of each transformer call of the current step while the block runs."""
        for name in TRANSFORMERS:
            module = getattr(self.pipe, name, None)
            if module is not None and hasattr(module, "register_forward_pre_hook"):
                self._handles.append(module.register_forward_pre_hook(self._keeper(name), with_kwargs=True))
        try:
            yield self
        finally:
            self.remove_hooks()

    def remove_hooks(self) -> None:
        """Take the guard's own hooks off (before the cause finder adds its own)."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _keeper(self, name: str) -> Any:
        def keep(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            self.calls.append(TransformerCall(name, args, dict(kwargs)))
        return keep

    def check_step(self, step: int, latents: Any, expert: str | None = None) -> None:
        """One reduction: raise :class:`NonFiniteStep` when ``latents`` hold NaN or Inf (``step`` counts from 1)."""
        import torch
        if latents is not None and not bool(torch.isfinite(latents.sum())):
            kind = "NaN" if bool(torch.isnan(latents).any()) else "Inf"
            raise NonFiniteStep("latents", step, self.steps, expert, kind)
        self.last_finite_step = step
        self.calls.clear()

    def check_frames(self, frames: Any) -> None:
        """Raise :class:`NonFiniteStep` (``where="frames"``) when the decoded frames hold NaN or Inf."""
        import numpy as np
        array = frames.detach().float().cpu().numpy() if hasattr(frames, "detach") else np.asarray(frames)
        if not np.isfinite(array.sum(dtype=np.float64)):
            raise NonFiniteStep("frames", None, self.steps, None,
                                "NaN" if np.isnan(array).any() else "Inf")
