"""The Fix tab: the repair plan as a checklist, then Apply with live progress, backups and before/after.

``core.fix.plan(report)`` is made first and shown (a dry run: nothing changes); Apply carries
out exactly that plan (``FixPlan.execute``), streaming its progress, and only when it is the plan
on screen for the folder and output folder in the boxes; otherwise Apply shows the fresh plan
and changes nothing, and a second press carries it out. A plan is carried out once. In-place repairs back up
every file they replace under ``.wan_compat_backup/<time>/`` inside the model folder; Undo
restores the latest backup. The original Wan-AI layout and single files become a conversion
into a new folder (the source is never modified): its output folder, the disk space it needs
and has, and progress per tensor/shard are shown.

The API::

    html, plan = client.predict("/models/broken", "", api_name="/fix_plan")
    progress_html, after_html, result = client.predict("/models/broken", "", api_name="/fix_apply")
    result["ok"], result["backup_dir"], result["report_after"]["loadable"]

(``/fix_apply`` plans and carries out in one call, for scripts that asked ``/fix_plan`` first.)
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from html import escape
from typing import Any

import gradio as gr

from core.errors import WanError, explain
from core.progress import ProgressEvent
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
PROMPT_APPLY = "Type the path of the model folder to repair, then press Plan to see what would change."
PROMPT_UNDO = "Type the path of the model folder whose last fix should be undone, then press Undo."
ALREADY_APPLIED = "Already applied; nothing left to do."
NO_UNDO = "There is no fix to undo"          # the start of core.fix.undo_fix's sentence


@dataclass(frozen=True)
class PlannedFix:
    """The plan on screen, for the folder and output folder it was made for (the Fix tab's state).

    Apply carries out ``plan`` only when the path and the conversion output folder in the boxes
    are still these, and only once (``applied``).
    """

    plan: Any
    path: str                  # os.path.abspath of the folder planned
    out: str = ""              # the conversion output folder asked for ("" for the default)
    applied: bool = False

    def matches(self, path: str, out: str) -> bool:
        if os.path.abspath(path) != self.path:
            return False
        # the output folder matters only to a conversion
        return self.plan.conversion is None or _same_out(self.out, out)


def _same_out(a: str, b: str) -> bool:
    if not a or not b:
        return not a and not b
    return os.path.abspath(a) == os.path.abspath(b)


def _prompt(sentence: str) -> str:
    return f'<p class="wc-prompt">{escape(sentence)}</p>'


def _expected(exc: BaseException) -> bool:
    """An ordinary situation (a missing folder, a sentence from core): no traceback fold."""
    return isinstance(exc, (OSError, WanError))


def _format_bytes(n: Any) -> str:
    from core.check.wording import format_size
    return format_size(int(n)) if isinstance(n, (int, float)) else "unknown"


def usable_path(target: str, what: str = "model folder") -> str:
    """``target`` (already cleaned) when it can be a path; else WanError, as Model Check's /check says it.

    >>> usable_path("/models/Wan2.1-T2V-1.3B")
    '/models/Wan2.1-T2V-1.3B'
    """
    from wan_ui.model_check import MAX_PATH_CHARS
    if "\0" in target:
        raise WanError("That path holds a NUL character, which no path can hold.",
                       f"Paste only the path of the {what}.")
    if len(target) > MAX_PATH_CHARS:
        raise WanError(f"That path is {len(target):,} characters long, too long to be a path.",
                       f"Paste only the path of the {what}.")
    return target


def _plan_of(path: str, out: str | None = None) -> Any:
    from core import fix
    from core.check.detect import inspect
    from wan_ui.model_check import clean_path
    target = clean_path(path)
    if not target:
        raise WanError("Type the path of the model folder to repair.",
                       "Or open Fix from a Model Check report with the “Open in Fix” button.")
    usable_path(target)
    out_path = clean_path(out)
    if out_path:
        usable_path(out_path, "conversion output folder")
    os.stat(target)
    return fix.plan(inspect(target), out=out_path or None)


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
    ready = is_ready(plan.report_before)
    if plan.is_empty and not plan.manual_steps and (ready or not plan.notes):   # a note already says why
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


def plan_fix(path: str, out: str = "") -> tuple[str, str, dict[str, Any], PlannedFix | None]:
    """Make the plan (nothing changes): (plan HTML, report-before HTML, plan dict, the plan for Apply)."""
    from wan_ui.model_check import clean_path
    target = clean_path(path)
    if not target:
        return _prompt(PROMPT_APPLY), "", {}, None
    try:
        plan = _plan_of(target, out)
    except Exception as exc:  # noqa: BLE001
        err = explain(exc)
        return (render_error(err, target, "Cannot fix", details=not _expected(exc)), "",
                {"error": err.message, "remedy": err.remedy}, None)
    return (render_fix_plan(plan), render_report(plan.report_before), plan.to_dict(),
            PlannedFix(plan, os.path.abspath(target), clean_path(out)))


def plan_fix_api(path: str, out: str = "") -> tuple[str, dict[str, Any]]:
    """API ``/fix_plan``: (plan HTML, plan dict)."""
    html, _before, data, _plan = plan_fix(path, out)
    return html, data


def _nothing_left(plan: Any) -> bool:
    """No change left to make (a conversion that would be refused, e.g. its folder now exists, is none)."""
    return not plan.actions and (plan.conversion is None or bool(getattr(plan.conversion, "refusal", None)))


def apply_fix(path: str, out: str = "", planned: PlannedFix | None = None) -> Iterator[tuple[Any, ...]]:
    """The Apply button: carry out the plan on screen, streaming progress.

    Yields (progress HTML, plan HTML, report-before HTML, report-after HTML, result dict, state).
    Only the plan shown for this very folder and output folder is carried out, and only once;
    otherwise a fresh plan is made and shown (nothing changes) and a second press carries it out.
    """
    from wan_ui.model_check import clean_path
    target = clean_path(path)
    skip = gr.skip()
    if not target:
        yield _prompt(PROMPT_APPLY), skip, skip, skip, {"ok": False, "message": PROMPT_APPLY}, skip
        return
    current = planned if isinstance(planned, PlannedFix) and planned.matches(target, clean_path(out)) else None
    if current is not None and not current.applied:
        yield from _execute(current)
        return
    # No plan on screen for this folder (or it was carried out already): show one, change nothing.
    html, before, data, fresh = plan_fix(target, out)
    if fresh is None:
        yield html, "", before, "", data, None
        return
    plan = fresh.plan
    if current is not None and _nothing_left(plan):
        notice, tone, badge = ALREADY_APPLIED, "ok", "✓ Applied"
        data = dict(data, nothing_to_do=True, already_applied=True)
        fresh = PlannedFix(plan, fresh.path, fresh.out, applied=True)
    elif plan.is_empty:
        notice, tone, badge = "Nothing to apply: the plan has no changes.", "unknown", "i"
        data = dict(data, nothing_to_do=True)
    else:
        again = "Already applied, but Model Check still finds something. " if current is not None else ""
        notice = f"{again}This is the plan for {target}; press Apply to carry it out."
        tone, badge = "unknown", "Plan"
        data = dict(data, planned_only=True)
    yield render_notice(notice, tone, badge), html, before, "", data, fresh


def apply_fix_api(path: str, out: str = "") -> Iterator[tuple[Any, Any, Any]]:
    """API ``/fix_apply``: plan and carry out at once (as ``/fix_plan`` shows it); yields (progress HTML,
    report-after HTML, result dict)."""
    from wan_ui.model_check import clean_path
    target = clean_path(path)
    if not target:
        yield _prompt(PROMPT_APPLY), "", {"ok": False, "message": PROMPT_APPLY}
        return
    _html, _before, data, fresh = plan_fix(target, out)
    if fresh is None:
        yield _html, "", data
        return
    for progress, _plan, _b, after, result, _state in _execute(fresh):
        yield progress, after, result


def _execute(planned: PlannedFix) -> Iterator[tuple[Any, ...]]:
    """Carry out ``planned.plan`` in a worker thread; yields the six outputs of :func:`apply_fix`."""
    from wan_ui.generate import ProgressView
    plan = planned.plan
    skip = gr.skip()
    before = render_report(plan.report_before)
    if plan.is_empty:
        yield (render_notice("Nothing to apply: the plan has no changes.", "unknown", "i"), render_fix_plan(plan),
               before, "", {"ok": False, "fixes_applied": [], "errors": [], "nothing_to_do": True}, planned)
        return
    events: queue.Queue[Any] = queue.Queue()
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["result"] = plan.execute(progress_callback=lambda event: events.put(event))
        except Exception as exc:  # noqa: BLE001
            box["error"] = explain(exc)
            box["expected"] = _expected(exc)
        finally:
            events.put(None)

    started = time.monotonic()
    threading.Thread(target=work, name="wan-compat-fix", daemon=True).start()
    view = ProgressView(stage="Applying the fix")
    first = True
    while True:
        try:
            item = events.get(timeout=0.5)
        except queue.Empty:
            view.elapsed = time.monotonic() - started
            yield render_progress(view), skip, (before if first else skip), skip, skip, skip
            first = False
            continue
        batch = [item]
        while item is not None:              # a burst of per-tensor messages becomes one update
            try:
                item = events.get_nowait()
            except queue.Empty:
                break
            batch.append(item)
        for event in batch:
            if event is not None:
                show_event(view, event)
        view.elapsed = time.monotonic() - started
        if batch[-1] is None:
            break
        yield render_progress(view), skip, (before if first else skip), skip, skip, skip
        first = False
    common.forget(plan.path)
    try:
        from wan_ui.generate import unload
        unload(plan.path)
    except Exception:  # noqa: BLE001
        pass
    if "error" in box:
        err: WanError = box["error"]
        view.state, view.stage = "failed", "Stopped"
        yield (render_progress(view) + render_error(err, plan.path, "Cannot fix", details=not box["expected"]),
               render_fix_plan(plan), before, "", {"ok": False, "errors": [f"{err.message} {err.remedy}".strip()]},
               None)                          # the next press makes and shows a fresh plan
        return
    result = box["result"]
    if result.output_path:
        common.forget(result.output_path)
    view.state = "done" if not result.errors else "failed"
    view.stage = "Done" if not result.errors else "Stopped"
    view.percent = 100.0 if not result.errors else view.percent
    summary = _result_card(result)
    after = render_report(result.report_after) if result.report_after is not None else ""
    state = PlannedFix(plan, planned.path, planned.out, applied=True) if not result.errors else None
    yield (render_progress(view) + summary, render_fix_plan(plan, applied=list(result.fixes_applied)), before,
           after, result.to_dict(), state)


def show_event(view: Any, event: ProgressEvent) -> None:
    """Put one Fix or conversion ProgressEvent on the panel: its percent, step and message.

    The headline is the event's own sentence when it is short (the change being made, the
    tensor being converted), else the stage's name.
    """
    view.update(event)
    if len(event.message) < 90:
        view.stage = event.message


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
    if not target:
        return _prompt(PROMPT_UNDO), "", {"ok": False, "message": PROMPT_UNDO}
    try:
        usable_path(target)
        os.stat(target)                       # "Not found: <path>", before core looks for its backups
        if not os.path.isdir(target):
            return (render_notice(f"{NO_UNDO} for {target}: a fix of a single file writes a new folder and "
                                  "leaves the file as it was.", "unknown", "i Nothing to undo"), "",
                    {"ok": False, "nothing_to_undo": True, "message": f"{NO_UNDO} for {target}."})
        from core.fix import undo_fix
        result = undo_fix(target)
    except Exception as exc:  # noqa: BLE001
        err = explain(exc)
        if isinstance(exc, WanError) and err.message.startswith(NO_UNDO):
            return (render_notice(err.message, "unknown", "i Nothing to undo"), "",
                    {"ok": False, "nothing_to_undo": True, "message": err.message})
        return (render_error(err, target, "Cannot undo", details=not _expected(exc)), "",
                {"error": err.message, "remedy": err.remedy})
    common.forget(target)
    after = render_report(result.report_after) if result.report_after is not None else ""
    if result.errors:
        return (render_sentences("Undo did not complete.", list(result.errors), badge="✗ Cannot undo"), after,
                result.to_dict())
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
    apply_button.click(apply_fix, inputs=[path, out, planned],
                       outputs=[progress, plan_html, before, after, data, planned],
                       api_visibility="private", show_progress="hidden", concurrency_limit=4,
                       concurrency_id="fix")
    gr.api(apply_fix_api, api_name="fix_apply")
    # Undo changes the folder: the plan on screen no longer describes it
    undo_button.click(undo_last, inputs=path, outputs=[progress, after, data], api_name="fix_undo").then(
        lambda: None, outputs=planned, api_visibility="private", queue=False)
    return FixTab(path=path, plan_inputs=[path, out], plan_outputs=plan_outputs)
