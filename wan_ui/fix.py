"""The Fix tab: the repair plan as a checklist, then Apply with live progress, backups and before/after.

``core.fix.plan(report)`` is made first and shown (a dry run: nothing changes); Apply carries
out exactly that plan (``FixPlan.execute``), streaming its progress. In-place repairs back up
every file they replace under ``.wan_compat_backup/<time>/`` inside the model folder; Undo
restores the latest backup. The original Wan-AI layout and single files become a conversion
into a new folder (the source is never modified): its output folder, the disk space it needs
and has, and progress per tensor/shard are shown.

The API::

    html, plan = client.predict("/models/broken", "", api_name="/fix_plan")
    progress_html, after_html, result = client.predict("/models/broken", "", api_name="/fix_apply")
    result["ok"], result["backup_dir"], result["report_after"]["loadable"]
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from dataclasses import dataclass
from html import escape
from typing import Any, Iterator

import gradio as gr

from core.errors import WanError, explain
from wan_ui import common
from wan_ui.render import (
    render_error,
    render_notice,
    render_progress,
    render_report,
    render_sentences,
)

log = logging.getLogger(__name__)

PLACEHOLDER = "/path/to/a model folder to repair"


def _format_bytes(n: Any) -> str:
    from core.report_text import format_size
    return format_size(int(n)) if isinstance(n, (int, float)) else "unknown"


def _plan_of(path: str, out: str | None = None) -> Any:
    from core import fix
    from core.detector import inspect
    from wan_ui.model_check import clean_path
    target = clean_path(path)
    if not target:
        raise WanError("Type the path of the model folder to repair.",
                       "Or open Fix from a Model Check report with the “Open in Fix” button.")
    os.stat(target)
    return fix.plan(inspect(target), out=clean_path(out) or None)


def _action_files(action: Any) -> str:
    parts = [f"writes {w}" for w in action.writes] + [f"renames {a} → {b}" for a, b in action.moves]
    return " · ".join(parts)


def render_fix_plan(plan: Any, applied: list[str] | None = None) -> str:
    """The plan as a checklist (ticked after Apply), the conversion, the manual steps and notes."""
    from core.fix import BACKUP_DIR, is_ready
    done = set(applied or [])
    parts: list[str] = []
    n = len(plan.actions)
    if plan.actions:
        title = (f"{len(done)} of {n} change(s) made" if applied is not None
                 else f"{n} change{'s' if n != 1 else ''} to make in place")
        items = []
        for a in plan.actions:
            box = "✓" if a.description in done else "☐"
            files = _action_files(a)
            items.append(f'<li><span class="wc-check-box">{box}</span>{escape(a.description)}'
                         + (f'<div class="wc-files">{escape(files)}</div>' if files else "")
                         + ("" if a.undoable else '<div class="wc-note">Cannot be undone.</div>') + "</li>")
        body = (f'<p class="wc-path">{escape(plan.path)}</p><ul class="wc-checklist">{"".join(items)}</ul>'
                f'<p class="wc-note">Every file that is replaced is first copied to <code>{escape(BACKUP_DIR)}'
                "/&lt;time&gt;/</code> inside the model folder; weights are never copied, only renamed.</p>")
        tone = "ok" if applied is not None and len(done) == n else "unknown"
        parts.append(_card(tone, "✓ Done" if tone == "ok" else "Plan", title, body))
    if plan.conversion is not None:
        parts.append(render_conversion(plan.conversion))
    if plan.manual_steps:
        items = []
        for s in plan.manual_steps:
            cmd = f'<div class="wc-files">command: <code>{escape(s.command)}</code></div>' if s.command else ""
            items.append(f'<li class="wc-finding wc-sev-error"><div class="wc-msg">{escape(s.problem)}</div>'
                         f'<div class="wc-remedy"><b>Fetch:</b> {escape(s.fetch)}</div>'
                         f'<div class="wc-remedy"><b>Put it in:</b> {escape(s.where)}</div>{cmd}</li>')
        parts.append(_card("bad", "Manual", "Cannot be repaired here: download these",
                           f'<ul class="wc-findings">{"".join(items)}</ul>'))
    if plan.notes:
        parts.append(_card("unknown", "Note", " ".join(plan.notes)))
    if plan.is_empty and not plan.manual_steps:
        ready = is_ready(plan.report_before)
        parts.append(_card("ok" if ready else "unknown", "✓ Nothing to do" if ready else "Nothing to do",
                           "Nothing to repair." + (" The model is ready to load." if ready else ""),
                           f'<p class="wc-path">{escape(plan.path)}</p>'))
    return f'<div class="wc-report">{"".join(parts)}</div>'


def render_conversion(conversion: Any) -> str:
    """A conversion: where it writes, the disk space it needs and has, its steps."""
    data = conversion.to_dict() if hasattr(conversion, "to_dict") else {}
    out = (data.get("target") or data.get("output") or data.get("out") or data.get("output_path")
           or getattr(conversion, "target", None) or getattr(conversion, "out", None) or "")
    needed = data.get("bytes_needed", getattr(conversion, "bytes_needed", None))
    free = data.get("bytes_free", getattr(conversion, "bytes_free", None))
    fits = data.get("fits_disk", getattr(conversion, "fits_disk", None))
    refusal = data.get("refusal", getattr(conversion, "refusal", None))
    rows = [("Output folder", f"<code>{escape(str(out))}</code>" if out else "—"),
            ("Disk space needed", escape(_format_bytes(needed))),
            ("Free on that disk", escape(_format_bytes(free)) + (
                "" if fits is None else (' <span class="wc-yes">✓ enough</span>' if fits
                                         else ' <span class="wc-no">✗ not enough</span>')))]
    table = "".join(f"<tr><th>{escape(k)}</th><td>{v}</td></tr>" for k, v in rows)
    try:
        lines = list(conversion.describe())
    except Exception:  # noqa: BLE001
        lines = [str(s) for s in data.get("steps") or []]
    body = (f'<table class="wc-table wc-summary"><tbody>{table}</tbody></table>'
            + (f'<ul class="wc-plan-lines">{"".join(f"<li>{escape(str(x))}</li>" for x in lines)}</ul>'
               if lines else ""))
    if refusal:
        body += f'<p class="wc-remedy"><b>Why not:</b> {escape(str(refusal))}</p>'
    tone, badge = ("bad", "✗ Cannot convert") if refusal else ("unknown", "Conversion")
    return _card(tone, badge, "Convert into a new folder in the diffusers layout (the source is not changed)", body)


def _card(tone: str, badge: str, title: str, body: str = "") -> str:
    return (f'<div class="wc-card wc-{tone}"><p class="wc-headline"><span class="wc-badge">{escape(badge)}'
            f"</span><span>{escape(title)}</span></p>{body}</div>")


def plan_fix(path: str, out: str = "") -> tuple[str, str, dict[str, Any], Any]:
    """Make the plan (nothing changes): (plan HTML, report-before HTML, plan dict, the plan for Apply)."""
    try:
        plan = _plan_of(path, out)
    except Exception as exc:  # noqa: BLE001
        err = explain(exc)
        return render_error(err, path), "", {"error": err.message, "remedy": err.remedy}, None
    return render_fix_plan(plan), render_report(plan.report_before), plan.to_dict(), plan


def plan_fix_api(path: str, out: str = "") -> tuple[str, dict[str, Any]]:
    """API ``/fix_plan``: (plan HTML, plan dict)."""
    html, _before, data, _plan = plan_fix(path, out)
    return html, data


def apply_fix(path: str, out: str = "", planned: Any = None) -> Iterator[tuple[Any, Any, Any, Any]]:
    """Carry out the plan shown (or a fresh one), streaming progress: yields (progress HTML, plan HTML,
    report-after HTML, result dict)."""
    from wan_ui.generate import ProgressView
    from wan_ui.model_check import clean_path
    target = clean_path(path)
    try:
        plan = planned if planned is not None and os.path.abspath(planned.path) == os.path.abspath(target) else None
        plan = plan or _plan_of(path, out)
    except Exception as exc:  # noqa: BLE001
        err = explain(exc)
        yield render_error(err, path), gr.skip(), "", {"error": err.message, "remedy": err.remedy}
        return
    if plan.is_empty:
        yield (render_notice("Nothing to apply: the plan has no changes.", "unknown", "i"), render_fix_plan(plan),
               "", {"ok": False, "fixes_applied": [], "errors": [], "nothing_to_do": True})
        return
    events: "queue.Queue[Any]" = queue.Queue()
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["result"] = plan.execute(progress_callback=lambda m, p: events.put((str(m), float(p))))
        except Exception as exc:  # noqa: BLE001
            box["error"] = explain(exc)
        finally:
            events.put(None)

    started = time.monotonic()
    threading.Thread(target=work, name="wan-compat-fix", daemon=True).start()
    view = ProgressView(stage="Applying the fix")
    while True:
        try:
            item = events.get(timeout=0.5)
        except queue.Empty:
            view.elapsed = time.monotonic() - started
            yield render_progress(view), gr.skip(), gr.skip(), gr.skip()
            continue
        batch = [item]
        while item is not None:              # a burst of per-tensor messages becomes one update
            try:
                item = events.get_nowait()
            except queue.Empty:
                break
            batch.append(item)
        for entry in batch:
            if entry is not None:
                message, percent = entry
                view.update(message, percent, "Applying the fix")
                view.stage = message if len(message) < 90 else view.stage
        view.elapsed = time.monotonic() - started
        if batch[-1] is None:
            break
        yield render_progress(view), gr.skip(), gr.skip(), gr.skip()
    common.forget(plan.path)
    try:
        from wan_ui.generate import unload
        unload(plan.path)
    except Exception:  # noqa: BLE001
        pass
    if "error" in box:
        err: WanError = box["error"]
        view.state, view.stage = "failed", "Stopped"
        yield (render_progress(view) + render_error(err, plan.path), render_fix_plan(plan), "",
               {"ok": False, "errors": [f"{err.message} {err.remedy}".strip()]})
        return
    result = box["result"]
    if result.output_path:
        common.forget(result.output_path)
    view.state = "done" if not result.errors else "failed"
    view.stage = "Done" if not result.errors else "Stopped"
    view.percent = 100.0 if not result.errors else view.percent
    summary = _result_card(result)
    after = render_report(result.report_after) if result.report_after is not None else ""
    yield render_progress(view) + summary, render_fix_plan(plan, applied=list(result.fixes_applied)), after, \
        result.to_dict()


def apply_fix_api(path: str, out: str = "") -> Iterator[tuple[Any, Any, Any]]:
    """API ``/fix_apply``: yields (progress HTML, report-after HTML, result dict)."""
    for progress, _plan, after, result in apply_fix(path, out, None):
        yield progress, after, result


def _result_card(result: Any) -> str:
    lines = []
    if result.backup_dir:
        lines.append(f'<p class="wc-remedy"><b>Backup:</b> <code>{escape(result.backup_dir)}</code> '
                     "(Undo restores it)</p>")
    if result.output_path:
        lines.append(f'<p class="wc-remedy"><b>Converted model:</b> <code>{escape(result.output_path)}</code></p>')
    for e in result.errors:
        lines.append(f'<p class="wc-remedy">{escape(e)}</p>')
    if result.errors:
        return render_sentences("The fix did not complete.", list(result.errors)).replace(
            "</div></div>", "".join(lines[:2]) + "</div></div>", 1)
    ready = result.ok
    title = ("Fixed: the model is ready to load." if ready else
             "Applied; Model Check still finds problems (see the report after).")
    body = "".join(lines) + "".join(f'<p class="wc-note">✓ {escape(f)}</p>' for f in result.fixes_applied)
    return f'<div class="wc-report">{_card("ok" if ready else "unknown", "✓ Applied", title, body)}</div>'


def undo_last(path: str) -> tuple[str, str, dict[str, Any]]:
    """Restore the latest fix's backups (API ``/fix_undo``): (result HTML, report HTML, result dict)."""
    from wan_ui.model_check import clean_path
    target = clean_path(path)
    try:
        from core.fix import undo_fix
        result = undo_fix(target)
    except Exception as exc:  # noqa: BLE001
        err = explain(exc)
        return render_error(err, target), "", {"error": err.message, "remedy": err.remedy}
    common.forget(target)
    after = render_report(result.report_after) if result.report_after is not None else ""
    if result.errors:
        return render_sentences("Undo did not complete.", list(result.errors)), after, result.to_dict()
    return (render_notice(" ".join(result.fixes_applied) or "Restored.", "ok", "↶ Undone"), after,
            result.to_dict())


@dataclass
class FixTab:
    """What app.py wires: Model Check's "Open in Fix" fills ``path`` and runs ``plan_event_fn``."""

    path: Any
    plan_inputs: list[Any]
    plan_outputs: list[Any]


def build_fix_tab() -> FixTab:
    """Add the Fix controls to the current Blocks/Tab context."""
    gr.Markdown("Repairs are planned first and shown here; nothing changes until you press **Apply**. "
                "Every file that is replaced is backed up inside the model folder, and **Undo** puts it back.",
                elem_classes=["wc-intro"])
    with gr.Row(equal_height=True):
        path = gr.Textbox(label="Model folder", show_label=False, container=False, placeholder=PLACEHOLDER,
                          max_lines=1, scale=6, elem_id="wc-fix-path")
        plan_button = gr.Button("Plan", variant="secondary", scale=0, min_width=110, elem_id="wc-fix-plan")
    with gr.Accordion("Conversion output folder (optional)", open=False, elem_id="wc-fix-out-fold"):
        out = gr.Textbox(label="Where a conversion writes", max_lines=1, elem_id="wc-fix-out",
                         placeholder="default: the model's folder name + “-diffusers”, beside it")
    planned = gr.State(None)
    plan_html = gr.HTML('<p class="wc-prompt">Type a model folder and press Plan, or use “Open in Fix” on a '
                        "Model Check report.</p>", elem_id="wc-fix-plan-view", js_on_load=None)
    with gr.Row():
        apply_button = gr.Button("Apply", variant="primary", scale=0, min_width=140, elem_id="wc-fix-apply")
        undo_button = gr.Button("Undo the last fix", variant="secondary", scale=0, min_width=200,
                                elem_id="wc-fix-undo")
    progress = gr.HTML("", elem_id="wc-fix-progress", js_on_load=None)
    with gr.Row(equal_height=False):
        with gr.Column():
            gr.Markdown("**Before**")
            before = gr.HTML("", elem_id="wc-fix-before", js_on_load=None)
        with gr.Column():
            gr.Markdown("**After**")
            after = gr.HTML("", elem_id="wc-fix-after", js_on_load=None)
    with gr.Accordion("Plan and result as JSON", open=False):
        data = gr.JSON(value={}, show_label=False, elem_id="wc-fix-json")

    plan_outputs = [plan_html, before, data, planned]
    gr.on([plan_button.click, path.submit], plan_fix, inputs=[path, out], outputs=plan_outputs,
          api_visibility="private", show_progress="minimal").then(
        lambda: ("", ""), outputs=[progress, after], api_visibility="private")
    gr.api(plan_fix_api, api_name="fix_plan")
    apply_button.click(apply_fix, inputs=[path, out, planned], outputs=[progress, plan_html, after, data],
                       api_visibility="private", show_progress="hidden", concurrency_limit=4,
                       concurrency_id="fix")
    gr.api(apply_fix_api, api_name="fix_apply")
    undo_button.click(undo_last, inputs=path, outputs=[progress, after, data], api_name="fix_undo")
    return FixTab(path=path, plan_inputs=[path, out], plan_outputs=plan_outputs)
