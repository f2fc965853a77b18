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
from pathlib import Path
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


def _changes_title(n: int, done: int | None) -> str:
    """'2 changes to make in place', 'The change was made', 'All 3 changes were made', '1 of 3 changes made'."""
    if done is None:
        return f"{n} change{'s' if n != 1 else ''} to make in place"
    if done == n:
        return "The change was made" if n == 1 else f"All {n} changes were made"
    return f"{done} of {n} changes made"


def plain_change(description: str) -> tuple[str, str]:
    """(the change in plain words, the jargon it names) — e.g. a rebuilt model_index.json's entries.

    >>> plain_change("Rebuild model_index.json (it is missing) from the component folders: WanPipeline; boundary_ratio: null.")
    ('Rebuild model_index.json (it is missing) from the component folders.', 'WanPipeline; boundary_ratio: null')
    """
    text, _sep, contents = description.partition(" from the component folders: ")
    return (text + " from the component folders.", contents.rstrip(".")) if contents else (description, "")


def _action_item(action: Any, done: set[str]) -> str:
    """One change as a checklist line; the long list of what a rebuilt file holds goes into a fold."""
    box = "✓" if action.description in done else "☐"
    text, contents = plain_change(action.description)
    words = escape(text)
    if contents:
        words += ('<details class="wc-details"><summary>What it will name</summary>'
                  f"<pre>{escape(contents.replace('; ', chr(10)))}</pre></details>")
    files = _action_files(action)
    return (f'<li><span class="wc-check-box">{box}</span>{words}'
            + (f'<div class="wc-files">{escape(files)}</div>' if files else "")
            + ("" if action.undoable else '<div class="wc-note">Cannot be undone.</div>') + "</li>")


def render_manual_steps(steps: Any) -> str:
    """What Fix cannot repair here, as the main content: each file to download, where it goes, and
    the download command with a Copy button."""
    from wan_ui.render import action_button
    items = []
    for s in steps:
        cmd = ""
        if s.command:
            cmd = (f'<div class="wc-manual-cmd"><pre>{escape(s.command)}</pre>'
                   f'{action_button("Copy", "copy", s.command, cls="wc-copy")}</div>')
        items.append(f'<li class="wc-finding wc-sev-error"><div class="wc-msg">{escape(s.problem)}</div>'
                     f'<div class="wc-remedy"><b>Download:</b> {escape(s.fetch)}</div>'
                     f'<div class="wc-remedy"><b>Put it in:</b> <code>{escape(s.where)}</code></div>{cmd}</li>')
    k = len(items)
    title = f"Fix cannot repair this here: {'one download is' if k == 1 else f'{k} downloads are'} needed"
    body = ('<p class="wc-sub">Nothing on this computer has what is missing; after the download, press Plan '
            f'again.</p><ul class="wc-findings">{"".join(items)}</ul>')
    return _card("bad", "To download", title, body)


def render_collection_plan(report: Any) -> str:
    """A folder of several models: only the ones that need fixing, each with its own "Open in Fix"."""
    from wan_ui.render import action_button, verdict
    todo = [m for m in report.models if m.is_wan and m.lora is None and (m.errors or not m.loadable)]
    if not todo:
        return _card("ok", "✓ Nothing to do", f"None of the {len(report.models)} models in this folder needs fixing.",
                     f'<p class="wc-path">{escape(report.path)}</p>')
    rows = "".join(f"<tr><td>{escape(os.path.relpath(m.path, report.path))}</td><td>{escape(verdict(m))}"
                   f"{f' ({len(m.errors)})' if m.errors else ''}</td>"
                   f'<td class="wc-row-actions">{action_button("Open in Fix", "fix", m.path, primary=True)}</td></tr>'
                   for m in todo)
    n = len(todo)
    title = f"{n} of the {len(report.models)} models in this folder need{'s' if n == 1 else ''} fixing"
    body = (f'<p class="wc-path">{escape(report.path)}</p><p class="wc-sub">Fix repairs one model at a time: '
            'open each one to see its plan.</p>'
            f'<table class="wc-table wc-models"><tbody>{rows}</tbody></table>')
    return _card("unknown", "Several models", title, body)


ASSEMBLE_TITLE = "Only the transformer: assemble it with the other parts of a model"
ASSEMBLE_SENTENCE = ("Name its VAE, text encoder and tokenizer under “Assemble a model from single files” above, "
                     "then press Plan the assembly. The file itself is not changed.")


def render_fix_plan(plan: Any, applied: list[str] | None = None, assembly: bool = False) -> str:
    """The plan: what cannot be done here first (the downloads), the changes as a checklist (ticked
    after Apply), the conversion and the notes. ``assembly``: the plan of "Plan the assembly"."""
    from core.fix import BACKUP_DIR, is_ready
    report = plan.report_before
    if report is not None and report.is_collection:
        return f'<div class="wc-report">{render_collection_plan(report)}</div>'
    done = set(applied or [])
    parts: list[str] = []
    if plan.manual_steps:
        parts.append(render_manual_steps(plan.manual_steps))
    n = len(plan.actions)
    if plan.actions:
        title = _changes_title(n, None if applied is None else len(done & {a.description for a in plan.actions}))
        items = "".join(_action_item(a, done) for a in plan.actions)
        body = (f'<p class="wc-path">{escape(plan.path)}</p><ul class="wc-checklist">{items}</ul>'
                f'<p class="wc-note">Every file that is replaced is first copied to <code>{escape(BACKUP_DIR)}'
                "/&lt;time&gt;/</code> inside the model folder; weights are never copied, only renamed.</p>")
        tone = "ok" if applied is not None and len(done) >= n else "unknown"
        parts.append(_card(tone, "✓ Done" if tone == "ok" else "Plan", title, body))
    lone = not assembly and report is not None and getattr(report, "part", None) == "transformer"
    if plan.conversion is not None and not (lone and getattr(plan.conversion, "refusal", None)):
        parts.append(render_conversion(plan.conversion))
    elif lone:
        parts.append(_card("unknown", "Assemble", ASSEMBLE_TITLE, f'<p class="wc-path">{escape(plan.path)}</p>'
                           f'<p class="wc-remedy">{escape(ASSEMBLE_SENTENCE)}</p>'))
    if plan.notes:
        parts.append(_card("unknown", "Note", " ".join(plan.notes)))
    ready = is_ready(report)
    if plan.is_empty and not plan.manual_steps and not lone and (ready or not plan.notes):   # a note already says why
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
    return (render_fix_plan(plan), render_report(plan.report_before, compact=True), plan.to_dict(),
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
    before = render_report(plan.report_before, compact=True)
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
    after = render_report(result.report_after, compact=True) if result.report_after is not None else ""
    state = PlannedFix(plan, planned.path, planned.out, applied=True) if not result.errors else None
    yield (render_progress(view) + summary, render_fix_plan(plan, applied=list(result.fixes_applied)), before,
           after, result.to_dict(), state)


def show_event(view: Any, event: ProgressEvent) -> None:
    """Put one Fix or conversion ProgressEvent on the panel: its percent, step and message.

    The headline is the event's own sentence when it is short (the change being made, the
    tensor being converted), else the stage's name.
    """
    from dataclasses import replace
    event = replace(event, message=plain_change(event.message)[0])     # a rebuilt file's entries: in the plan's fold
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
    body = "".join(lines) + "".join(f'<p class="wc-note">✓ {escape(plain_change(f)[0])}</p>' for f in result.fixes_applied)
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
    after = render_report(result.report_after, compact=True) if result.report_after is not None else ""
    if result.errors:
        return (render_sentences("Undo did not complete.", list(result.errors), badge="✗ Cannot undo"), after,
                result.to_dict())
    return (render_notice(" ".join(result.fixes_applied) or "Restored.", "ok", "↶ Undone"), after,
            result.to_dict())


def has_backup(path: str) -> bool:
    """Whether ``path`` is a model folder with a fix that Undo can restore."""
    from core.fix import BACKUP_DIR
    from core.fix.journal import undoable_backup
    from wan_ui.model_check import clean_path
    target = clean_path(path)
    try:
        return bool(target) and os.path.isdir(os.path.join(target, BACKUP_DIR)) and \
            undoable_backup(target) is not None
    except (OSError, ValueError):
        return False


def button_states(path: str, out: str, planned: PlannedFix | None) -> tuple[Any, Any, Any]:
    """(Apply, Undo, the assembly fold): Apply only for a plan with changes that is on screen for
    this folder; Undo only when there is a backup to restore; the fold open for a lone transformer."""
    from wan_ui.model_check import clean_path
    target = clean_path(path)
    current = planned if isinstance(planned, PlannedFix) and target and planned.matches(target, clean_path(out)) \
        else None
    can_apply = current is not None and not current.applied and not _nothing_left(current.plan)
    report = current.plan.report_before if current is not None else None
    lone = report is not None and getattr(report, "part", None) == "transformer"
    return (gr.update(interactive=can_apply), gr.update(visible=has_backup(target)),
            gr.update(open=lone))


def plan_assembly(path: str, out: str, vae: str, text_encoder: str, tokenizer: str,
                  transformer_2: str = "") -> tuple[str, str, dict[str, Any], PlannedFix | None]:
    """Plan putting a lone transformer file together with its VAE, text encoder and tokenizer
    (``core.fix.assemble``); the same four outputs as :func:`plan_fix`. Nothing changes until Apply."""
    from core import fix
    from wan_ui.model_check import clean_path
    target = clean_path(path)
    try:
        named = {"VAE": clean_path(vae), "text encoder": clean_path(text_encoder)}
        missing = [k for k, v in named.items() if not v]
        if not target or missing:
            raise WanError(f"Name the {' and the '.join(missing) or 'transformer file'} to assemble a model.",
                           "Type the path of each file: the transformer above, the others under "
                           "“Assemble a model from single files”.")
        for p in (target, *named.values()):
            usable_path(p, "file")
            os.stat(p)
        out_path = clean_path(out) or str(Path(target).with_suffix("")) + "-diffusers"
        plan = fix.assemble(transformer=target, vae=named["VAE"], text_encoder=named["text encoder"], out=out_path,
                            transformer_2=clean_path(transformer_2) or None, tokenizer=clean_path(tokenizer) or None)
    except Exception as exc:  # noqa: BLE001
        err = explain(exc)
        return (render_error(err, target, "Cannot assemble", details=not _expected(exc)), "",
                {"error": err.message, "remedy": err.remedy}, None)
    return (render_fix_plan(plan, assembly=True), render_report(plan.report_before, compact=True), plan.to_dict(),
            PlannedFix(plan, os.path.abspath(target), clean_path(out)))


def on_plan_action(out: str, evt: gr.EventData) -> tuple[Any, ...]:
    """A button in the plan (a folder of several models: "Open in Fix" on one of them)."""
    data = getattr(evt, "_data", None) or {}
    path = str(data.get("model") or "")
    if data.get("act") != "fix" or not path:
        return (gr.skip(),) * 5
    return (path, *plan_fix(path, out))


@dataclass
class FixTab:
    """What app.py wires: Model Check's buttons fill ``path`` and run ``plan_fix`` into ``plan_outputs``,
    then ``button_states`` into ``buttons``."""

    path: Any
    plan_inputs: list[Any]
    plan_outputs: list[Any]
    state_inputs: list[Any]
    buttons: list[Any]


def build_fix_tab() -> FixTab:
    """Add the Fix controls to the current Blocks/Tab context."""
    from wan_ui.render import ACTION_JS
    gr.Markdown("Press **Plan** to see what Fix would change; nothing changes until you press **Apply**. "
                "Every file that is replaced is backed up inside the model folder, and **Undo** puts it back.",
                elem_classes=["wc-intro"])
    with gr.Row(equal_height=True):
        path = gr.Textbox(label="Model folder", show_label=False, container=False, placeholder=PLACEHOLDER,
                          max_lines=1, scale=6, elem_id="wc-fix-path")
        plan_button = gr.Button("Plan", variant="primary", scale=0, min_width=110, elem_id="wc-fix-plan")
    with gr.Accordion("Conversion output folder (optional)", open=False, elem_id="wc-fix-out-fold"):
        out = gr.Textbox(label="Where a conversion writes", max_lines=1, elem_id="wc-fix-out",
                         placeholder="default: the model's folder name + “-diffusers”, beside it")
    with gr.Accordion("Assemble a model from single files", open=False, elem_id="wc-fix-assemble") as assemble_fold:
        gr.Markdown("For a lone transformer file (ComfyUI style) in the box above: name the other parts. "
                    "The model folder is written where the conversion output folder says.")
        with gr.Row():
            vae = gr.Textbox(label="VAE file", max_lines=1, elem_id="wc-fix-vae",
                             placeholder="/path/to/wan_2.1_vae.safetensors")
            text_encoder = gr.Textbox(label="Text encoder file", max_lines=1, elem_id="wc-fix-te",
                                      placeholder="/path/to/umt5_xxl.safetensors")
        with gr.Row():
            tokenizer = gr.Textbox(label="Tokenizer folder (optional)", max_lines=1, elem_id="wc-fix-tokenizer",
                                   placeholder="google/umt5-xxl folder; looked for beside the text encoder")
            transformer_2 = gr.Textbox(label="Low-noise transformer (Wan 2.2 A14B only)", max_lines=1,
                                       elem_id="wc-fix-transformer-2")
        assemble_button = gr.Button("Plan the assembly", size="sm", scale=0, elem_id="wc-fix-assemble-plan")
    planned = gr.State(None)
    plan_html = gr.HTML('<p class="wc-prompt">Type a model folder and press Plan, or press Fix on a '
                        "Model Check report.</p>", elem_id="wc-fix-plan-view", js_on_load=ACTION_JS)
    with gr.Row():
        apply_button = gr.Button("Apply", variant="primary", scale=0, min_width=140, elem_id="wc-fix-apply",
                                 interactive=False)
        undo_button = gr.Button("Undo the last fix", variant="secondary", scale=0, min_width=200,
                                elem_id="wc-fix-undo", visible=False)
    progress = gr.HTML("", elem_id="wc-fix-progress", js_on_load=None)
    with gr.Row(equal_height=False):
        with gr.Column(min_width=300):
            gr.Markdown("**Before**")
            before = gr.HTML("", elem_id="wc-fix-before", js_on_load=None)
        with gr.Column(min_width=300):
            gr.Markdown("**After**")
            after = gr.HTML("", elem_id="wc-fix-after", js_on_load=None)
    with gr.Accordion("Plan and result as JSON", open=False):
        data = gr.JSON(value={}, show_label=False, elem_id="wc-fix-json")

    plan_outputs = [plan_html, before, data, planned]
    buttons = [apply_button, undo_button, assemble_fold]
    states = dict(fn=button_states, inputs=[path, out, planned], outputs=buttons, api_visibility="private",
                  queue=False)
    clear = dict(fn=lambda: ("", ""), outputs=[progress, after], api_visibility="private", queue=False)
    gr.on([plan_button.click, path.submit], plan_fix, inputs=[path, out], outputs=plan_outputs,
          api_visibility="private", show_progress="minimal").then(**clear).then(**states)
    assemble_button.click(plan_assembly, inputs=[path, out, vae, text_encoder, tokenizer, transformer_2],
                          outputs=plan_outputs, api_visibility="private", show_progress="minimal"
                          ).then(**clear).then(**states)
    plan_html.click(on_plan_action, inputs=out, outputs=[path, *plan_outputs], api_visibility="private",
                    show_progress="minimal").then(**clear).then(**states)
    gr.api(plan_fix_api, api_name="fix_plan")
    apply_button.click(apply_fix, inputs=[path, out, planned],
                       outputs=[progress, plan_html, before, after, data, planned],
                       api_visibility="private", show_progress="hidden", concurrency_limit=4,
                       concurrency_id="fix").then(**states)
    gr.api(apply_fix_api, api_name="fix_apply")
    # Undo changes the folder: the plan on screen no longer describes it
    undo_button.click(undo_last, inputs=path, outputs=[progress, after, data], api_name="fix_undo").then(
        lambda: None, outputs=planned, api_visibility="private", queue=False).then(**states)
    return FixTab(path=path, plan_inputs=[path, out], plan_outputs=plan_outputs, state_inputs=[path, out, planned],
                  buttons=buttons)
