"""The buttons inside a Model Check report: what Fix offers under the headline, and where they lead.

A report of one Wan model gets one button right under its headline (:func:`fix_offer`):

- **Fix** when Fix can repair it here (its plan has changes) or convert it;
- **Assemble in Fix** for a lone transformer file (it needs a VAE, a text encoder and a tokenizer);
- **Open in Fix** otherwise (the plan lists what to download, or there is nothing to do).

A folder dropped on the page has no path the server can see; :func:`locate_dropped` finds it in
the models folder or among the recent paths when the names and sizes of its files match, and
otherwise the sentence says how to get the path. A folder of several models lists each model
with "Open" and "Open in Fix" (see :func:`wan_ui.render.render_report`).

The buttons are plain HTML; ``wan_ui.render.ACTION_JS`` turns a press into the report's click
event with ``{"act": "check" | "fix", "model": path}`` (not "path": Gradio takes a dict with a
"path" for a file), which :func:`wire` sends on::

    wire(check_tab, fix_tab, tabs)      # in app.py, once both tabs exist
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import gradio as gr

from core.check.report import ModelReport
from wan_ui.render import Offer

log = logging.getLogger(__name__)

HOW_TO_GET_THE_PATH = ("To fix it, type the folder's path in the box above and press Check (Windows: "
                       "Shift+right-click the folder → Copy as path; macOS: Option+right-click → Copy as "
                       "Pathname; Linux: Ctrl+L in the file manager shows it).")
MAX_COMPARED = 500          # files of a dropped folder compared by name and size


def fix_offer(report: ModelReport, path: str | None) -> Offer | None:
    """The button under the headline of a Wan model's report and the sentence beside it.

    ``path``: the folder or file on this computer (None: a dropped folder whose path is unknown).
    """
    if report.is_collection or not (report.is_wan or report.is_wan_part) or report.lora is not None:
        return None
    if path is None:
        return Offer("", "", HOW_TO_GET_THE_PATH, act="") if report.errors or not report.loadable else None
    if report.part == "transformer":
        return Offer("Assemble in Fix", path, "This file is only the transformer: Fix can put it together with "
                     "a VAE, a text encoder and a tokenizer into a model folder.")
    if report.is_wan_part:
        return None
    try:
        from core import fix
        plan = fix.plan(report)
    except Exception as exc:  # noqa: BLE001 - the offer is advice; the report stands without it
        log.warning("No fix plan for %s: %s", path, exc)
        return Offer("Open in Fix", path, primary=bool(report.errors))
    n = len(plan.actions)
    if n:
        return Offer("Fix", path, f"Fix can repair this here: {n} change{'s' if n != 1 else ''}, shown before "
                     "anything is changed; every replaced file is backed up.")
    conversion = plan.conversion
    if conversion is not None and not getattr(conversion, "refusal", None):
        return Offer("Fix", path, "Fix can convert it into a new folder in the diffusers layout "
                     "(the original is not changed).")
    if plan.manual_steps:
        k = len(plan.manual_steps)
        return Offer("Open in Fix", path, f"Fix cannot repair this here: {'one download is' if k == 1 else f'{k} downloads are'} "
                     "needed; Fix lists what to download, where to put it and the command.", primary=False)
    return Offer("Open in Fix", path, primary=False)


def locate_dropped(manifest: dict[str, Any], folders: list[Path]) -> str | None:
    """The folder on this computer that a dropped folder's manifest describes, or None.

    Looked for by name in each of ``folders`` and one level below them; a candidate counts
    when every file of the manifest (up to MAX_COMPARED) is there with the same size.
    """
    name = str(manifest.get("name") or "").strip("/")
    files = [f for f in manifest.get("files") or [] if isinstance(f, dict) and isinstance(f.get("path"), str)]
    if not name or "/" in name or "\\" in name or name in (".", "..") or not files:
        return None
    seen: set[str] = set()
    for base in folders:
        candidates = [base / name] if base.name != name else [base]
        try:
            candidates += [sub / name for sub in base.iterdir() if sub.is_dir()] if base.is_dir() else []
        except OSError:
            pass
        for folder in candidates:
            key = os.path.abspath(folder)
            if key in seen or not folder.is_dir():
                continue
            seen.add(key)
            if _same_files(folder, name, files):
                return key
    return None


def _same_files(folder: Path, name: str, files: list[dict[str, Any]]) -> bool:
    for item in files[:MAX_COMPARED]:
        rel = item["path"].strip("/")
        rel = rel[len(name) + 1:] if rel.startswith(name + "/") else rel
        try:
            if (folder / rel).stat().st_size != item.get("size"):
                return False
        except (OSError, ValueError):
            return False
    return True


def search_folders() -> list[Path]:
    """Where a dropped folder is looked for: the models folder, the demo folder, recent paths' parents."""
    from wan_ui import common
    ctx = common.context()
    folders = [Path(ctx.models_dir), Path(ctx.demo_dir)]
    for recent in common.recent_paths():
        folders += [Path(recent), Path(recent).parent]
    return folders


# --- the report's click event -------------------------------------------------------------

def on_action(out: str, evt: gr.EventData) -> tuple[Any, ...]:
    """A button in a report was pressed: check that model, or open it in Fix with its plan.

    Returns (tab, Model Check path box, report HTML, report JSON, Fix path box, Fix's plan
    outputs...); what the action does not change is skipped.
    """
    from wan_ui.fix import plan_fix
    from wan_ui.model_check import check_path
    data = getattr(evt, "_data", None) or {}
    act, path = data.get("act"), str(data.get("model") or "")
    skip = gr.skip()
    if not path or act not in ("check", "fix"):
        return (skip,) * 9
    if act == "check":
        html, report = check_path(path)
        return skip, path, html, report, skip, skip, skip, skip, skip
    return (gr.Tabs(selected="fix"), skip, skip, skip, path, *plan_fix(path, out))


def wire(check: Any, fix: Any, tabs: Any) -> None:
    """Connect the buttons of Model Check reports to the tabs (call inside the Blocks)."""
    from wan_ui.model_check import after_check
    event = check.report_html.click(
        on_action, inputs=[fix.plan_inputs[1]],
        outputs=[tabs, check.path, check.report_html, check.report_json, fix.path, *fix.plan_outputs],
        api_visibility="private", show_progress="minimal")
    event.then(after_check, inputs=check.report_json, outputs=check.download, api_visibility="private")
    from wan_ui.fix import button_states
    event.then(button_states, inputs=fix.state_inputs, outputs=fix.buttons, api_visibility="private")
