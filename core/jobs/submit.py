"""A generation request checked before it is queued: the sentences now, not after a wait in the queue.

Usage::

    from core.jobs.submit import check_request

    checked = check_request("/models/Wan2.1-T2V-1.3B-Diffusers", {"prompt": "a fox", "num_frames": 17})
    checked.errors          # [] or sentences ("The number of frames must be 4k+1 ...")
    checked.config          # the GenerationConfig fields to keep (unset ones stay None: the model's defaults)
    checked.label           # "a fox · 832x480 · 17 frames · 50 steps · Wan2.1-T2V-1.3B-Diffusers"
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from core.errors import WanError, explain

_WHOLE = ("num_frames", "width", "height", "num_inference_steps", "seed", "fps", "segment_frame_length")


@dataclass(frozen=True)
class CheckedRequest:
    """What :func:`check_request` found: the fields to queue, a label for people, or the errors."""

    config: dict[str, Any] = field(default_factory=dict)
    label: str = ""
    errors: list[str] = field(default_factory=list)
    report: Any = None


def config_fields() -> tuple[str, ...]:
    """The GenerationConfig field names a job takes (the API's keyword arguments besides ``model``)."""
    from core.run.generation import GenerationConfig
    return tuple(f.name for f in fields(GenerationConfig))


def check_request(model: str, values: dict[str, Any], report: Any = None) -> CheckedRequest:
    """Check ``values`` (GenerationConfig field names; None or absent: the model's default) for ``model``.

    ``report``: the model's ModelReport when the caller has one (the app caches them).
    """
    from core.run.generation import GenerationConfig, resolve
    from core.run.loadable import refusal
    known = config_fields()
    unknown = [k for k in values if k not in known]
    if unknown:
        return CheckedRequest(errors=[_unknown(k, known) for k in unknown])
    config = {k: _whole(k, v) for k, v in values.items() if v is not None and v != ""}
    if not model:
        return CheckedRequest(errors=["Choose a model first: give the path of a model folder."])
    if report is None:
        try:
            os.stat(model)
            from core.check.detect import inspect
            report = inspect(model)
        except OSError as exc:
            err = explain(exc)
            return CheckedRequest(errors=[f"{err.message} {err.remedy}".strip()])
    problem = refusal(report)
    if problem is not None:
        words = f"{problem.message} {problem.remedy}".strip() if isinstance(problem, WanError) else str(problem)
        return CheckedRequest(errors=[words], report=report)
    settings, errors = resolve(GenerationConfig(**config), report)
    if errors or settings is None:
        return CheckedRequest(errors=list(errors), report=report)
    if settings.loras:   # each LoRA against the model before queuing, as `generate --lora` does (core.check.lora_match)
        from core.check.lora_match import lora_refusals
        problems = lora_refusals(report, settings.loras)
        if problems:
            return CheckedRequest(errors=problems, report=report)
    prompt = settings.prompt if len(settings.prompt) <= 60 else settings.prompt[:57].rstrip() + "…"
    label = (f"{prompt} · {settings.width}x{settings.height} · {settings.num_frames} frames · "
             f"{settings.num_inference_steps} steps · {Path(report.path).name}")
    return CheckedRequest(config=config, label=label, report=report)


def _whole(name: str, value: Any) -> Any:
    """A whole-number setting sent as 64.0 (JSON clients, number boxes) is 64."""
    if name in _WHOLE and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _unknown(name: str, known: tuple[str, ...]) -> str:
    near = difflib.get_close_matches(name, known, n=1)
    hint = f" Did you mean `{near[0]}`?" if near else f" The settings are: {', '.join(known)}."
    return f"`{name}` is not a generation setting.{hint}"
