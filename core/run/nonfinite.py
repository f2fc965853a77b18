"""What a generation does when a step went NaN: name the cause, record the failed attempt, retry once or stop.

Called by :class:`core.run.load.WanPipelineWrapper` when its :class:`~core.run.guard.FiniteGuard`
stopped a run. The first time, a cause that a safer plan can mend (fp16 overflow, an attention
kernel, a hook) is retried once with :func:`~core.run.safer.safer_plan` (the model is loaded
again with it); a damaged file or a LoRA's scale is never retried. Every failed attempt is
recorded in the performance history with its cause.

Usage (inside the wrapper's attempt loop)::

    outcome = respond(wrapper, settings, failure, calls, attempt, progress, warnings)
    if outcome.result is not None:
        return None, outcome.result      # stopped: the sentence is in result.errors
    # else wrapper now holds the safer plan's pipeline: run again; outcome.note goes in the metadata
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.monitor import GENERATION, track
from core.progress import Progress
from core.run.cause import Cause, find_cause
from core.run.generation import GenerationResult, ResolvedSettings
from core.run.guard import NonFiniteStep, TransformerCall
from core.run.safer import safer_plan


@dataclass(frozen=True)
class Outcome:
    """``result`` when the run stops; else ``note`` (the cause and the retry, for the history)."""

    result: GenerationResult | None
    note: dict[str, Any]


def respond(wrapper: Any, s: ResolvedSettings, failure: NonFiniteStep, calls: list[TransformerCall],
            attempt: int, progress: Progress, warnings: list[str]) -> Outcome:
    """Diagnose ``failure``; record it; retry (reload ``wrapper`` with a safer plan) or return the failure."""
    plan = wrapper.plan
    progress.emit("plan", f"{failure.sentence} Looking for the cause...", 0)
    cause = find_cause(wrapper.pipeline, wrapper.report, plan.precision.value,
                       str(plan.attention_backend.value or "native"), failure, calls)
    note: dict[str, Any] = {"step": failure.step, "steps": failure.steps, "where": failure.where,
                            "value": failure.kind, "plan": plan.to_dict(), "cause": cause.to_dict()}
    retry, said = (None, "Not retried: it already failed after one retry.") if attempt > 1 else safer_plan(
        plan, wrapper.report, wrapper._hardware(), cause)
    note["retry"] = said if retry is not None else None
    _record_attempt(wrapper, s, cause, note, said)
    if retry is None:
        errors = [_sentence(cause)]
        if cause.retry and attempt == 1:
            errors.append(said)
        return Outcome(GenerationResult(success=False, plan=plan.to_dict(), errors=errors, warnings=warnings,
                                        metadata={"non_finite": note}), note)
    warnings.append(f"{cause.sentence} {said}")
    progress.emit("plan", warnings[-1], 0)
    wrapper.reload(retry)
    return Outcome(None, note)


def _sentence(cause: Cause) -> str:
    return f"{cause.sentence} {cause.remedy}".strip()


def _record_attempt(wrapper: Any, s: ResolvedSettings, cause: Cause, note: dict[str, Any], said: str) -> None:
    """One history row for the failed attempt: success False, the cause as its error, the retry in context."""
    with track(GENERATION, report=wrapper.report, plan=wrapper.plan, hardware=wrapper.hardware, width=s.width,
               height=s.height, frames=s.num_frames, steps=s.num_inference_steps) as op:
        op.set(error=_sentence(cause)[:500], non_finite=note, retry=said)
        op.success = False
