"""Statistics over the recorded runs: summaries, regressions, plan effectiveness, the perf report.

Pure functions of ``OperationMetrics`` lists (no database, no clock):

    >>> describe([3.0, 1.0, None, 2.0])["median"]
    2.0
    >>> for alert in find_regressions(ops):           # ops: successful runs, oldest first
    ...     print(alert.message)
    >>> effectiveness(ops)                            # one row per plan, for otherwise equal runs
    >>> print(render_text(db_path, summary, alerts, rows))   # what ``python -m core perf`` prints
"""

from __future__ import annotations

import json
import os
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from core.monitor.context import plan_label
from core.units import format_mib

if TYPE_CHECKING:
    from core.monitor.store import OperationMetrics

# Plan settings that do not make runs incomparable: a change in them is reported as
# "what changed" (they often explain a slowdown) instead of starting a new comparison group.
PLAN_DETAILS = ("vae_tiling", "vae_slicing", "attention_backend")
METRICS = ("duration", "seconds_per_step", "memory_peak_mb", "gpu_memory_peak_mb")   # compared for regressions


@dataclass(frozen=True)
class RegressionAlert:
    """A metric that got worse between comparable runs, with the evidence.

    ``baseline``/``current`` are medians; ``confidence`` (0..1) is the share of (recent,
    baseline) run pairs in which the recent run was worse; ``what_changed`` maps a
    version, the driver or a plan setting to its (before, after) values.
    """

    metric_name: str
    operation_type: str
    model: str | None
    size: str | None
    frames: int | None
    steps: int | None
    plan: str
    baseline: float
    current: float
    change_percent: float
    threshold_percent: float                  # the change this group's noise allows
    baseline_runs: int
    current_runs: int
    confidence: float
    confidence_label: str                     # "high", "medium" or "low"
    what_changed: dict[str, tuple[Any, Any]] = field(default_factory=dict)

    @property
    def message(self) -> str:
        """One sentence for people."""
        what = ", ".join(x for x in (self.model, self.size, f"{self.frames} frames" if self.frames else None,
                                     f"{self.steps} steps" if self.steps else None) if x)
        worse = "slower" if self.metric_name in ("duration", "seconds_per_step") else "more memory"
        changed = "; ".join(f"{k} {a} -> {b}" for k, a, b in ((k, *v) for k, v in self.what_changed.items()))
        return (f"{self.operation_type} of {what or 'an unnamed model'}: {self.metric_name} {self.change_percent:+.0f}% "
                f"({worse}; median {_fmt(self.metric_name, self.baseline)} over {self.baseline_runs} runs -> "
                f"{_fmt(self.metric_name, self.current)} over the last {self.current_runs}; confidence "
                f"{self.confidence_label}). " + (f"Changed: {changed}." if changed else "No version or plan changed."))

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["what_changed"] = {k: list(v) for k, v in self.what_changed.items()}
        out["message"] = self.message
        return out


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-th percentile with linear interpolation between ranks (numpy's default).

    >>> percentile([1, 2, 3, 4], 95)
    3.85
    """
    if not sorted_values:
        raise ValueError("percentile of no values")
    pos = (len(sorted_values) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def describe(values: Iterable[float | None]) -> dict[str, Any]:
    """``{"count", "mean", "median", "p95", "min", "max"}`` of the values that are not None."""
    xs = sorted(float(v) for v in values if v is not None)
    if not xs:
        return {"count": 0, "mean": None, "median": None, "p95": None, "min": None, "max": None}
    return {"count": len(xs), "mean": statistics.fmean(xs), "median": statistics.median(xs),
            "p95": percentile(xs, 95), "min": xs[0], "max": xs[-1]}


def _split_plan(plan: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(the part of a plan that defines comparability, as JSON; the details)."""
    key = {k: v for k, v in plan.items() if k not in PLAN_DETAILS}
    return json.dumps(key, sort_keys=True, default=str), {k: plan[k] for k in PLAN_DETAILS if k in plan}


def comparable_key(o: OperationMetrics, with_plan: bool = True) -> tuple[Any, ...]:
    """Runs with the same key did the same work on the same machine with the same memory plan."""
    base = (o.operation_type, o.model_fingerprint or o.model, o.width, o.height, o.frames, o.steps, o.hardware)
    return base + (_split_plan(o.plan)[0],) if with_plan else base


def find_regressions(ops: Sequence[OperationMetrics], recent_runs: int = 3, baseline_runs: int = 10,
                     min_baseline_runs: int = 3, min_change_percent: float = 10.0,
                     noise_factor: float = 3.0) -> list[RegressionAlert]:
    """Alerts for metrics that got worse, from successful runs in time order.

    The rule, per group of comparable runs (:func:`comparable_key`) and per metric
    (duration, seconds per step, peak RAM, peak GPU memory): the *current* window is the
    last ``recent_runs`` runs, the *baseline* the up to ``baseline_runs`` runs before them
    (at least ``min_baseline_runs``). With ``b`` the baseline median, ``s`` its spread
    (1.4826 x the median absolute deviation, a standard deviation that outliers do not
    inflate) and ``c`` the current median, it is a regression when

        c - b > max(min_change_percent% of b, noise_factor x s).

    The median of the current window means at least two of three recent runs must be
    worse, so one noisy run never alerts. Confidence is the share of (current, baseline)
    pairs in which the current run was worse (ties count half): "high" at >= 0.95 with at
    least 5 baseline and 3 current runs, "medium" at >= 0.8, else "low".
    """
    groups: dict[tuple[Any, ...], list[OperationMetrics]] = {}
    for o in ops:
        if o.success:
            groups.setdefault(comparable_key(o), []).append(o)
    alerts = []
    for runs in groups.values():
        # In the order they were recorded (the history's insertion order), not by their clock time:
        # runs recorded while the clock was a year ahead must not stay "the latest" forever.
        for metric in METRICS:
            have = [o for o in runs if o.value(metric) is not None]
            if len(have) < recent_runs + min_baseline_runs:
                continue
            current_ops = have[-recent_runs:]
            baseline_ops = have[:-recent_runs][-baseline_runs:]
            alert = _compare(metric, baseline_ops, current_ops, min_change_percent, noise_factor)
            if alert is not None:
                alerts.append(alert)
    return sorted(alerts, key=lambda a: -a.change_percent)


def _compare(metric: str, baseline_ops: list[OperationMetrics], current_ops: list[OperationMetrics],
             min_change_percent: float, noise_factor: float) -> RegressionAlert | None:
    base = [o.value(metric) for o in baseline_ops]
    cur = [o.value(metric) for o in current_ops]
    b, c = statistics.median(base), statistics.median(cur)
    if b <= 0:
        return None
    spread = 1.4826 * statistics.median(abs(x - b) for x in base)
    threshold = max(b * min_change_percent / 100, noise_factor * spread)
    if c - b <= threshold:
        return None
    pairs = [(1.0 if x > y else 0.5 if x == y else 0.0) for x in cur for y in base]
    confidence = sum(pairs) / len(pairs)
    label = ("high" if confidence >= 0.95 and len(base) >= 5 and len(cur) >= 3
             else "medium" if confidence >= 0.8 else "low")
    last = current_ops[-1]
    return RegressionAlert(
        metric_name=metric, operation_type=last.operation_type, model=last.model, size=last.size,
        frames=last.frames, steps=last.steps, plan=plan_label({k: v for k, v in last.plan.items()
                                                               if k not in PLAN_DETAILS}),
        baseline=b, current=c, change_percent=100 * (c - b) / b, threshold_percent=100 * threshold / b,
        baseline_runs=len(base), current_runs=len(cur), confidence=round(confidence, 3),
        confidence_label=label, what_changed=what_changed(baseline_ops, current_ops))


def what_changed(before: Sequence[OperationMetrics], after: Sequence[OperationMetrics]) -> dict[str, tuple[Any, Any]]:
    """Versions (app, torch, CUDA, driver, diffusers, ...) and plan details whose most common
    value differs between two sets of runs: ``{name: (before, after)}``."""
    def facts(o: OperationMetrics) -> dict[str, Any]:
        return {**o.versions, **{f"plan.{k}": v for k, v in _split_plan(o.plan)[1].items()}}

    def mode(runs: Sequence[OperationMetrics], key: str) -> Any:
        return Counter(json.dumps(facts(o).get(key), default=str) for o in runs).most_common(1)[0][0]

    keys = sorted({k for o in [*before, *after] for k in facts(o)})
    out = {}
    for key in keys:
        a, b = mode(before, key), mode(after, key)
        if a != b:
            out[key] = (json.loads(a), json.loads(b))
    return out


def effectiveness(ops: Sequence[OperationMetrics]) -> list[dict[str, Any]]:
    """For groups of successful runs that differ only in plan (two plans or more), one row per
    plan: runs, median duration, seconds per step, peak RAM and GPU memory, and time relative
    to the fastest plan of the group (1.0 = the fastest)."""
    groups: dict[tuple[Any, ...], dict[str, list[OperationMetrics]]] = {}
    for o in ops:
        if o.success:
            plan = json.dumps(o.plan, sort_keys=True, default=str)
            groups.setdefault(comparable_key(o, with_plan=False), {}).setdefault(plan, []).append(o)
    rows: list[dict[str, Any]] = []
    for plans in groups.values():
        if len(plans) < 2:
            continue
        group_rows = []
        for runs in plans.values():
            first = runs[-1]
            group_rows.append({
                "operation_type": first.operation_type, "model": first.model, "size": first.size,
                "frames": first.frames, "steps": first.steps, "plan": first.plan_label, "plan_settings": first.plan,
                "runs": len(runs), "median_duration": statistics.median(o.duration for o in runs),
                "median_seconds_per_step": describe(o.seconds_per_step for o in runs)["median"],
                "median_memory_peak_mb": describe(o.memory_peak_mb for o in runs)["median"],
                "median_gpu_memory_peak_mb": describe(o.gpu_memory_peak_mb for o in runs)["median"]})
        fastest = min(r["median_duration"] for r in group_rows) or 1e-9
        for r in sorted(group_rows, key=lambda r: r["median_duration"]):
            r["time_vs_fastest"] = r["median_duration"] / fastest
            rows.append(r)
    return rows


def _fmt(metric: str, value: float) -> str:
    if metric.endswith("_mb"):
        return format_mib(value)
    return f"{value:.2f} s" if value < 100 else f"{value:.0f} s"


def render_text(db_path: str | os.PathLike[str], summary: dict[str, Any], alerts: Sequence[RegressionAlert],
                rows: Sequence[dict[str, Any]]) -> str:
    """What ``python -m core perf`` prints: the summary, the alerts, the effectiveness table."""
    if not summary["operations"]:
        return (f"No runs recorded yet in {db_path}.\n"
                "Every load and generation (app or command line) is recorded as it happens.")
    lines = [f"Performance history: {db_path}",
             f"  {summary['operations']} runs: {summary['succeeded']} succeeded, {summary['failed']} failed, "
             f"{summary['cancelled']} cancelled"]
    for kind, stats in summary["by_type"].items():
        runs = f"{stats['count']} run{'s' if stats['count'] != 1 else ''}"
        lines.append(f"  {kind}: {runs}, median {_fmt('duration', stats['median'])} "
                     f"(p95 {_fmt('duration', stats['p95'])}, min {_fmt('duration', stats['min'])}, "
                     f"max {_fmt('duration', stats['max'])})")
    for label, key, metric in (("seconds per step", "seconds_per_step_stats", "duration"),
                               ("peak RAM", "memory_stats", "memory_peak_mb"),
                               ("peak GPU memory", "gpu_memory_stats", "gpu_memory_peak_mb")):
        stats = summary[key]
        if stats["count"]:
            lines.append(f"  {label}: median {_fmt(metric, stats['median'])} (p95 {_fmt(metric, stats['p95'])}, "
                         f"max {_fmt(metric, stats['max'])})")
    lines.append("")
    if alerts:
        lines.append(f"Regressions ({len(alerts)}):")
        lines += [f"  - {a.message}" for a in alerts]
    else:
        lines.append("No regressions: comparable runs are not slower or larger than before "
                     "(an alert needs 3 earlier and 3 recent comparable runs).")
    if rows:
        lines += ["", "Optimization effectiveness (same model, size, frames, steps and machine; different plans):"]
        table = [("model", "size", "frames", "steps", "plan", "runs", "median", "vs fastest", "s/step", "peak RAM",
                  "peak GPU")]
        for r in rows:
            table.append((str(r["model"] or "-"), r["size"] or "-", str(r["frames"] or "-"), str(r["steps"] or "-"),
                          r["plan"], str(r["runs"]), _fmt("duration", r["median_duration"]),
                          f"{r['time_vs_fastest']:.2f}x",
                          "-" if r["median_seconds_per_step"] is None else _fmt("duration", r["median_seconds_per_step"]),
                          "-" if r["median_memory_peak_mb"] is None else _fmt("mb", r["median_memory_peak_mb"]),
                          "-" if r["median_gpu_memory_peak_mb"] is None else _fmt("mb", r["median_gpu_memory_peak_mb"])))
        widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
        lines += ["  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in table]
    return "\n".join(lines)
