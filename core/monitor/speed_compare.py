"""Speed presets side by side, on otherwise equal runs of the history.

Runs are equal when model files, size, frames, steps, machine and the memory plan match; only
the speed choice (``plan["speed"]``, the attention kernel) differs. For each preset of such a
group: runs, median seconds per step, time against quality, transformer passes per run (those
really computed, and all calls), and how far its frames moved from quality's: the PSNR between
the two runs' frame thumbnails (core.run.speed_run; same seed and prompt only)::

    from core.monitor import get_performance_monitor
    from core.monitor.speed_compare import compare_presets
    rows = compare_presets(get_performance_monitor().operations("generation"))
    rows[0]   # {"model", "size", "frames", "steps", "preset", "runs", "seconds_per_step",
              #  "time_vs_quality", "transformer_calls", "forward_calls", "psnr_vs_quality"}
"""

from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

#: Plan keys that make up the speed choice (everything else must match).
SPEED_PLAN_KEYS = ("speed", "attention_backend")


def preset_of(op: Any) -> str:
    """The run's preset ("quality" for runs recorded before presets or without one)."""
    speed = (op.context or {}).get("speed") if isinstance(op.context, dict) else None
    preset = (op.plan or {}).get("speed") or (speed or {}).get("preset") or "quality"
    attention = (op.plan or {}).get("attention_backend") or (speed or {}).get("attention")
    return preset if attention in (None, "native") else f"{preset} ({attention})"


def _key(op: Any) -> tuple[Any, ...]:
    plan = {k: v for k, v in (op.plan or {}).items() if k not in SPEED_PLAN_KEYS}
    return (op.model_fingerprint or op.model, op.width, op.height, op.frames, op.steps, op.hardware,
            json.dumps(plan, sort_keys=True, default=str))


def signature_psnr(a: dict[str, Any] | None, b: dict[str, Any] | None) -> float | None:
    """PSNR (dB) between two frame thumbnails made from the same seed and prompt; None if not comparable,
    inf when identical."""
    if not a or not b or a.get("seed") != b.get("seed") or a.get("prompt") != b.get("prompt"):
        return None
    x, y = a.get("cells") or [], b.get("cells") or []
    if not x or len(x) != len(y):
        return None
    mse = sum((p - q) ** 2 for p, q in zip(x, y, strict=True)) / len(x)
    return math.inf if mse == 0 else round(10 * math.log10(1.0 / mse), 2)


def compare_presets(ops: Iterable[Any]) -> list[dict[str, Any]]:
    """One row per preset of every group of otherwise equal successful generations with two or more presets."""
    groups: dict[tuple[Any, ...], dict[str, list[Any]]] = defaultdict(lambda: defaultdict(list))
    for op in ops:
        if op.operation_type == "generation" and op.success and not op.cancelled:
            groups[_key(op)][preset_of(op)].append(op)
    rows: list[dict[str, Any]] = []
    for by_preset in groups.values():
        if len(by_preset) < 2:
            continue
        base = by_preset.get("quality")
        base_step = _median(o.seconds_per_step for o in base) if base else None
        base_sig = _speed(base[-1]).get("signature") if base else None
        for preset, runs in sorted(by_preset.items(), key=lambda kv: _order(kv[0])):
            last = runs[-1]
            per_step = _median(o.seconds_per_step for o in runs)
            speed = _speed(last)
            psnr = None if preset == "quality" else signature_psnr(base_sig, speed.get("signature"))
            rows.append({"model": last.model, "size": last.size, "frames": last.frames, "steps": last.steps,
                         "preset": preset, "runs": len(runs), "seconds_per_step": per_step,
                         "time_vs_quality": (round(per_step / base_step, 3) if per_step and base_step else None),
                         "transformer_calls": speed.get("transformer_calls"), "forward_calls": speed.get("forward_calls"),
                         "psnr_vs_quality": psnr})
    return rows


def _speed(op: Any) -> dict[str, Any]:
    value = (op.context or {}).get("speed") if isinstance(op.context, dict) else None
    return value if isinstance(value, dict) else {}


def _median(values: Iterable[Any]) -> float | None:
    numbers: Sequence[float] = [float(v) for v in values if v is not None]
    return round(statistics.median(numbers), 4) if numbers else None


def _order(preset: str) -> tuple[int, str]:
    names = ("quality", "balanced", "auto", "fast")
    head = preset.split(" ")[0]
    return (names.index(head) if head in names else len(names), preset)
