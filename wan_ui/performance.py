"""The Performance tab: the history of loads and generations, plots, slowdowns and what helped.

Everything comes from ``core.monitor`` (SQLite; ``core.run.load`` records every load and
generation by itself). :func:`history_view` is the one call that reads it; the tab shows:

- a table of recorded runs (when, what ran at which size, model, result, seconds per step, peak
  memory, plan) that fits the page; a click on a row shows that run in full (duration, RAM and
  GPU peaks, the whole error);
- seconds per step and peak memory over time, one line per model;
- regression alerts: which metric got worse, by how much, and what changed (versions, plan);
- optimization effectiveness: for otherwise equal runs, each plan's time and memory;
- a CSV export of the whole history.

API: ``client.predict("generation", api_name="/history")`` gives the table's rows as JSON
(with the alerts and the effectiveness rows).
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from html import escape
from typing import Any

import gradio as gr

from core.errors import explain
from wan_ui.render import render_sentences

log = logging.getLogger(__name__)

TYPE_CHOICES = [("All operations", "all"), ("Generations", "generation"), ("Model loads", "load")]
EFFECT_COLUMNS = ["model", "size", "frames", "steps", "plan", "runs", "median time (s)", "s/step",
                  "peak RAM (MB)", "peak GPU (MB)", "time vs fastest"]
SPEED_COLUMNS = ["model", "size", "frames", "steps", "preset", "runs", "s/step", "time vs quality",
                 "transformer passes", "PSNR vs quality (dB)"]
# What the History table shows: seven columns that fit the page (cells wrap); a click on a row shows
# the whole run below it (every value, the full error and plan). The API's rows keep all the numbers.
TABLE_COLUMNS = ["when", "what", "model", "result", "s/step", "peak memory", "plan"]
TABLE_WIDTHS = ["10%", "21%", "16%", "15%", "7%", "10%", "21%"]
MAX_ROWS = 500
TIME_FORMAT = "%b %d %H:%M:%S"
SHORT_TIME = "%b %d %H:%M"
DETAILS_PROMPT = "*Click a row of the history to see that run in full.*"


def _monitor() -> Any:
    from core.monitor import get_performance_monitor
    return get_performance_monitor()


def _r(value: Any, digits: int = 2) -> Any:
    return None if value is None else round(float(value), digits)


def _outcome(o: Any) -> str:
    if o.cancelled:
        return "cancelled"
    return "ok" if o.success else f"failed: {(o.error or '')[:80]}".rstrip(": ")


def history_rows(operation_type: str = "all") -> list[dict[str, Any]]:
    """Recorded runs, newest first, as plain rows (the table and the API)."""
    kind = None if operation_type in (None, "", "all") else operation_type
    ops = _monitor().operations(kind)
    rows = []
    for o in reversed(ops[-MAX_ROWS:]):
        rows.append({
            "time": datetime.fromtimestamp(o.started_at).strftime("%Y-%m-%d %H:%M:%S"),
            "type": o.operation_type, "model": o.model or "", "size": o.size or "",
            "frames": o.frames, "steps": o.steps, "duration (s)": _r(o.duration),
            "s/step": _r(o.seconds_per_step, 3), "peak RAM (MB)": _r(o.memory_peak_mb, 0),
            "peak GPU (MB)": _r(o.gpu_memory_peak_mb, 0), "plan": o.plan_label, "result": _outcome(o)})
    return rows


def table_rows(rows: list[dict[str, Any]]) -> list[list[Any]]:
    """The History table's cells for :func:`history_rows`: a short time, what ran (with its size,
    frames and steps), the peak memory as the result card writes it (``core.units.format_mib``:
    the GPU's where one was used, else RAM), long results cut (the row's details have them whole)."""
    from core.units import format_mib

    def when(text: str) -> str:
        try:
            return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").strftime(SHORT_TIME)
        except ValueError:
            return text

    out = []
    for r in rows:
        what = r["type"]
        if r["size"]:
            what += f" {r['size']}" + (f", {r['frames']} frames" if r["frames"] else "") + (
                f", {r['steps']} steps" if r["steps"] else "")
        gpu, ram = r["peak GPU (MB)"], r["peak RAM (MB)"]
        memory = (f"{format_mib(gpu)} GPU" if isinstance(gpu, (int, float)) else
                  f"{format_mib(ram)} RAM" if isinstance(ram, (int, float)) else "")
        result = r["result"] if len(r["result"]) <= 40 else r["result"][:38] + "…"
        out.append([when(r["time"]), what, r["model"], result, r["s/step"], memory, r["plan"]])
    return out


def run_details(operation_type: str, evt: gr.SelectData) -> str:
    """The run of the clicked row, in full: every recorded value, the whole error and plan."""
    index = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
    rows = history_rows(operation_type)
    if not isinstance(index, int) or not 0 <= index < len(rows):
        return DETAILS_PROMPT
    r = rows[index]
    kind = None if operation_type in (None, "", "all") else operation_type
    ops = list(reversed(_monitor().operations(kind)[-MAX_ROWS:]))
    error = ops[index].error if index < len(ops) else None
    result = "failed" if error and r["result"].startswith("failed") else r["result"]
    lines = [f"**{r['type']} of {r['model'] or 'an unnamed model'}** at {r['time']}: {result}"]
    if error:
        lines.append(f"- error: {error}")
    from core.units import format_mib
    for key, value in r.items():
        if key in ("type", "model", "time", "result") or value in (None, ""):
            continue
        if key in ("peak RAM (MB)", "peak GPU (MB)"):
            key, value = key.removesuffix(" (MB)"), format_mib(value)
        lines.append(f"- {key}: {value}")
    return "\n".join(lines)


def _frames_for_plots(ops: list[Any]) -> tuple[Any, Any]:
    """DataFrames for the two plots: seconds per step and peak memory over time, per model."""
    import pandas as pd

    speed, memory = [], []
    for o in ops:
        if not o.success or o.operation_type != "generation":
            continue
        when = datetime.fromtimestamp(o.started_at)
        model = o.model or "unnamed model"
        if o.seconds_per_step is not None:
            speed.append({"time": when, "seconds per step": float(o.seconds_per_step), "model": model})
        if o.gpu_memory_peak_mb is not None:
            memory.append({"time": when, "peak memory (MB)": float(o.gpu_memory_peak_mb), "model": model,
                           "memory": "GPU"})
        if o.memory_peak_mb is not None:
            memory.append({"time": when, "peak memory (MB)": float(o.memory_peak_mb), "model": model,
                           "memory": "RAM"})
    speed_df = pd.DataFrame(speed, columns=["time", "seconds per step", "model"])
    memory_df = pd.DataFrame(memory, columns=["time", "peak memory (MB)", "model", "memory"])
    if not memory_df.empty:
        memory_df["model"] = memory_df["model"] + " · " + memory_df["memory"]
    return speed_df, memory_df


RECENT_RUNS, MIN_BASELINE_RUNS = 3, 3          # core.monitor's detect_performance_regressions defaults
COMPARE_RULE = (f"Runs are compared once the same model, size, frames, steps and plan have run "
                f"{RECENT_RUNS + MIN_BASELINE_RUNS} times: the latest {RECENT_RUNS} against the ones before.")
NO_PLOT = ("*No generations recorded yet: the plots of seconds per step and peak memory appear after the "
           "first video (or press Self-test on the Generate tab).*")


def comparable_runs(ops: list[Any]) -> int:
    """The most successful runs of one comparable group (same model, size, frames, steps, plan)."""
    from core.monitor.stats import comparable_key
    groups: dict[Any, int] = {}
    for o in ops:
        if o.success:
            key = comparable_key(o)
            groups[key] = groups.get(key, 0) + 1
    return max(groups.values(), default=0)


def _plain_card(badge: str, title: str, sub: str, tone: str = "unknown") -> str:
    return (f'<div class="wc-report"><div class="wc-card wc-{tone}"><p class="wc-headline">'
            f'<span class="wc-badge">{escape(badge)}</span><span>{escape(title)}</span></p>'
            f'<p class="wc-sub">{escape(sub)}</p></div></div>')


def render_alerts(alerts: list[Any], ops: list[Any] | None = None) -> str:
    """Regression alerts as cards: the metric, the change and what changed.

    ``ops``: the runs the alerts were looked for in; with none, or too few to compare, the card
    says so instead of "no regressions".
    """
    if not alerts and ops is not None and not ops:
        return _plain_card("i No runs", "No runs recorded yet",
                           "Generate a video (or press Self-test on the Generate tab); slowdowns are looked for "
                           "as runs are recorded. " + COMPARE_RULE)
    if not alerts and ops is not None and comparable_runs(ops) < RECENT_RUNS + MIN_BASELINE_RUNS:
        have = comparable_runs(ops)
        return _plain_card("i Too few runs", "Not enough runs to compare yet",
                           f"The most runs of one kind so far: {have}. " + COMPARE_RULE)
    if not alerts:
        return _plain_card("✓ No regressions", "No slowdowns found",
                           "The latest runs are as fast and as lean as the ones before. " + COMPARE_RULE, "ok")
    parts = ['<div class="wc-report">']
    for a in alerts:
        changed = "".join(f"<li><code>{escape(str(k))}</code>: {escape(str(v[0]))} → {escape(str(v[1]))}</li>"
                          for k, v in a.what_changed.items())
        body = (f'<p class="wc-remedy">{escape(a.message)}</p>'
                + (f'<p class="wc-h">What changed</p><ul class="wc-plan-lines">{changed}</ul>' if changed else
                   '<p class="wc-note">No version, driver or plan setting changed: something else on the '
                   "computer may be using it (other programs, thermal throttling).</p>"))
        worse = "slower" if a.metric_name in ("duration", "seconds_per_step") else "more memory"
        parts.append(f'<div class="wc-card wc-bad"><p class="wc-headline"><span class="wc-badge">'
                     f"{escape(f'{a.change_percent:+.0f}% {worse}')}</span><span>"
                     f"{escape(a.metric_name.replace('_', ' '))} · {escape(a.model or 'unnamed model')}"
                     f"</span></p>{body}</div>")
    parts.append("</div>")
    return "".join(parts)


def effectiveness_rows(operation_type: str | None = "generation") -> list[list[Any]]:
    rows = []
    for r in _monitor().optimization_effectiveness(operation_type):
        rows.append([r.get("model") or "", r.get("size") or "", r.get("frames"), r.get("steps"), r.get("plan"),
                     r.get("runs"), _r(r.get("median_duration")), _r(r.get("median_seconds_per_step"), 3),
                     _r(r.get("median_memory_peak_mb"), 0), _r(r.get("median_gpu_memory_peak_mb"), 0),
                     f"{r.get('time_vs_fastest', 1.0):.2f}x"])
    return rows


def speed_rows(ops: list[Any]) -> list[list[Any]]:
    """Speed presets on otherwise equal runs (core.monitor.speed_compare), as table rows."""
    from core.monitor.speed_compare import compare_presets
    rows = []
    for r in compare_presets(ops):
        calls = (f"{r['transformer_calls']} of {r['forward_calls']}" if r.get("forward_calls") else "")
        psnr = r.get("psnr_vs_quality")
        rows.append([r["model"] or "", r["size"] or "", r["frames"], r["steps"], r["preset"], r["runs"],
                     _r(r["seconds_per_step"], 3),
                     f"{r['time_vs_quality']:.2f}x" if r.get("time_vs_quality") else "",
                     calls, "identical" if psnr == float("inf") else ("" if psnr is None else psnr)])
    return rows


def history_view(operation_type: str = "all") -> dict[str, Any]:
    """Everything the tab shows, as plain data (API ``/history``)."""
    monitor = _monitor()
    kind = None if operation_type in (None, "", "all") else operation_type
    alerts = monitor.detect_performance_regressions(operation_type=kind)
    return {"rows": history_rows(operation_type), "summary": monitor.get_performance_summary(kind),
            "alerts": [a.to_dict() for a in alerts], "effectiveness": monitor.optimization_effectiveness(kind),
            "database": str(monitor.db_path), "warnings": list(monitor.warnings)}


def refresh(operation_type: str = "all") -> tuple[Any, ...]:
    """Read the history and fill every part of the tab."""
    try:
        import pandas as pd

        monitor = _monitor()
        kind = None if operation_type in (None, "", "all") else operation_type
        ops = monitor.operations(kind)
        rows = history_rows(operation_type)
        table = pd.DataFrame(table_rows(rows), columns=TABLE_COLUMNS)
        speed, memory = _frames_for_plots(ops)
        alerts = render_alerts(monitor.detect_performance_regressions(operation_type=kind), ops)
        effect = pd.DataFrame(effectiveness_rows(kind), columns=EFFECT_COLUMNS)
        presets = pd.DataFrame(speed_rows(ops), columns=SPEED_COLUMNS)
        summary = monitor.get_performance_summary(kind)
        note = (f"{summary['operations']} run(s) recorded: {summary['succeeded']} succeeded, "
                f"{summary['failed']} failed, {summary['cancelled']} cancelled. History file: {monitor.db_path}")
        if monitor.warnings:
            note += " — " + " ".join(monitor.warnings[-2:])
        if not ops:
            note = (f"No runs recorded yet. Generate a video (or press Self-test on the Generate tab) and "
                    f"it appears here. History file: {monitor.db_path}")
        if monitor.unusable:        # a newer version's file: not "no runs yet"
            note = monitor.unusable
            alerts = _plain_card("! Not readable", "This version cannot use the history file", monitor.unusable,
                                 tone="bad")
        csv_path = export_csv() if ops else None
        effect_note = ("" if not effect.empty else
                       "*No comparisons yet: run the same model, size, frames and steps with two different memory "
                       "plans (Generate → Advanced) and they appear here.*")
        plotted = not (speed.empty and memory.empty)
        # the time format only with data: Vega rejects it on an empty data set ("invalid format")
        axis = TIME_FORMAT if plotted else None
        return (note, table, gr.update(value=speed, visible=plotted, x_axis_format=axis),
                gr.update(value=memory, visible=plotted, x_axis_format=axis),
                alerts, gr.update(value=effect, visible=not effect.empty),
                gr.update(value=csv_path, interactive=bool(ops)), effect_note,
                gr.update(value="" if plotted else NO_PLOT, visible=not plotted),
                gr.update(value=presets, visible=not presets.empty))
    except Exception as exc:  # noqa: BLE001 - the history is advice; say what went wrong
        err = explain(exc)
        log.warning("Performance history failed", exc_info=exc)
        return (render_sentences(err.message, [err.remedy], err.details), gr.skip(), gr.skip(), gr.skip(),
                gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip())


def export_csv() -> str:
    """Write the whole history to a CSV file and return its path (for the download button)."""
    folder = tempfile.mkdtemp(prefix="wan-compat-history-")
    path = os.path.join(folder, f"wan-compat-history-{time.strftime('%Y%m%d-%H%M%S')}.csv")
    _monitor().export_csv(path)
    return path


def build_performance_tab() -> Any:
    """Add the Performance controls to the current Blocks/Tab context; returns the refresh callable
    and its outputs so app.py can refresh after each generation."""
    with gr.Row(equal_height=False):
        kind = gr.Dropdown(label="Show", choices=TYPE_CHOICES, value="all", scale=3, elem_id="wc-perf-kind")
        with gr.Column(scale=1, min_width=160):
            again = gr.Button("Refresh", size="sm", elem_id="wc-perf-refresh")
            csv_button = gr.DownloadButton("Export CSV", size="sm", elem_id="wc-perf-csv", interactive=False)
    note = gr.Markdown("", elem_id="wc-perf-note")
    # Hidden until there is something to plot (an empty plot is a blank frame); the time format is
    # set by refresh() only when there is data: Vega rejects it on an empty data set ("invalid format").
    plot_note = gr.Markdown(NO_PLOT, elem_id="wc-perf-plot-note")
    with gr.Row():
        speed = gr.ScatterPlot(x="time", y="seconds per step", color="model", title="Seconds per step",
                               elem_id="wc-perf-speed", height=260, x_title="time", y_title="seconds per step",
                               tooltip="all", visible=False)
        memory = gr.ScatterPlot(x="time", y="peak memory (MB)", color="model", title="Peak memory",
                                elem_id="wc-perf-memory", height=260, x_title="time", y_title="MB",
                                tooltip="all", visible=False)
    gr.Markdown("### Slowdowns", elem_classes=["wc-h"])
    alerts = gr.HTML("", elem_id="wc-perf-alerts", js_on_load=None)
    gr.Markdown("### History", elem_classes=["wc-h"])
    table = gr.Dataframe(headers=TABLE_COLUMNS, interactive=False, elem_id="wc-perf-table", max_height=420,
                         wrap=True, column_widths=TABLE_WIDTHS)
    details = gr.Markdown(DETAILS_PROMPT, elem_id="wc-perf-run")
    gr.Markdown("### What each memory plan costs\nRuns that differ only in their plan (same model, size, "
                "frames and steps), fastest first.", elem_classes=["wc-h"])
    effect = gr.Dataframe(headers=EFFECT_COLUMNS, interactive=False, elem_id="wc-perf-effect", wrap=True)
    effect_note = gr.Markdown("", elem_id="wc-perf-effect-note")
    gr.Markdown("### Speed presets\nOtherwise equal runs with different speed presets: seconds per step, "
                "transformer passes computed of all calls, and how far the frames moved from quality's "
                "(PSNR of small thumbnails; same seed and prompt).", elem_classes=["wc-h"])
    presets = gr.Dataframe(headers=SPEED_COLUMNS, interactive=False, elem_id="wc-perf-presets", visible=False,
                           wrap=True)
    outputs = [note, table, speed, memory, alerts, effect, csv_button, effect_note, plot_note, presets]
    gr.on([again.click, kind.change], refresh, inputs=kind, outputs=outputs, api_visibility="private")
    table.select(run_details, inputs=kind, outputs=details, api_visibility="private")
    gr.api(history_view, api_name="history")
    gr.api(export_csv, api_name="export_csv")
    return PerformanceTab(refresh=refresh, kind=kind, outputs=outputs)


@dataclass
class PerformanceTab:
    """What app.py wires: ``refresh`` with ``kind`` as input fills ``outputs``."""

    refresh: Any
    kind: Any
    outputs: list[Any]
