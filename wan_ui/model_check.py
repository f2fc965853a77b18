"""The Model Check tab: a path, a dropped folder or a .zip in; report cards out.

Three ways in, one report:

- a path typed or pasted (``check_path``, API ``/check``);
- a folder dropped on the page, described in the browser without uploading weights
  (``check_manifest``, API ``/check_manifest``; see :mod:`wan_ui.dropzone`);
- a ``.zip`` of a small model, unpacked with size limits and path checks (``check_zip``,
  API ``/check_zip``).

The report is rendered as cards: what the model is and whether it is complete, each finding
with its remedy, and whether it fits this computer with which memory plan
(``core.run.optimize.plan_for``). A button right under the headline opens the Fix tab on the same
folder (:mod:`wan_ui.report_actions`); the JSON can be downloaded. A System fold shows
``core.doctor``'s checks of this computer::

    from gradio_client import Client
    client = Client("http://127.0.0.1:7860/", download_files=False)
    html, report = client.predict("/models/Wan2.2-TI2V-5B-Diffusers", api_name="/check")
    report["loadable"], report["findings"]

(``download_files=False``: gradio_client 2.7 against Gradio 6 mistakes any dict with a
``"path"`` string, as the report has, for a file to download, and fails with 403.)

Nothing here raises: a missing path, an unreadable file or a bug becomes a plain sentence with
a remedy, and the traceback sits behind a closed "Technical details" fold.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import gradio as gr

from core.check.archive import ZipLimits, extract_zip
from core.errors import WanError, explain
from wan_ui import common, deep_check, dropzone, lora_picker
from wan_ui.render import (
    ACTION_JS,
    render_doctor,
    render_error,
    render_fit,
    render_prompt,
    render_report,
)

log = logging.getLogger(__name__)

PLACEHOLDER = "/path/to/Wan2.2-T2V-A14B-Diffusers or a .safetensors file"
INTRO = ("Point Wan Compat at a model folder, a Hugging Face cache folder, a folder of several "
         "models or a single `.safetensors` file. It reads only the configs and the file headers, "
         "never the weights, so even a 100 GB model is checked in about a second.")
MAX_PATH_CHARS = 4096
MAX_MANIFEST_CHARS = 64 * 2**20         # the JSON a browser may send for a dropped folder
ZIP_LIMITS = ZipLimits()                # what an uploaded .zip may hold (core.check.archive)
ZIP_KEEP = 3                            # unpacked uploads kept (older ones are deleted)


def clean_path(text: str | None) -> str:
    """The path a person meant: trimmed, quotes from "Copy as path" and ``file://`` removed, ``~`` expanded.

    >>> clean_path('  "C:/Models/Wan2.1-T2V-1.3B"  ')
    'C:/Models/Wan2.1-T2V-1.3B'
    """
    path = (text or "").strip()
    if len(path) >= 2 and path[0] == path[-1] and path[0] in "\"'":
        path = path[1:-1].strip()
    if path.lower().startswith("file://"):
        parsed = urlparse(path)
        path = unquote(parsed.path)
        if len(path) > 2 and path[0] == "/" and path[2] == ":":  # file:///C:/...
            path = path[1:]
    return os.path.expanduser(path) if path else ""


def _report_outputs(report: Any, source: str = "path", note: str = "",
                    local_path: str | None = None) -> tuple[str, dict[str, Any]]:
    """(report cards as HTML, report.to_dict() with ``source``) for any way in.

    ``local_path``: where the model is on this computer (None: unknown, e.g. a dropped folder that
    was not found); the buttons under the headline and in a folder's list of models act on it.
    """
    from wan_ui.report_actions import fix_offer
    plan = None
    try:
        plan = common.default_plan(report)
    except Exception as exc:  # noqa: BLE001 - the fit is advice; the report stands without it
        log.warning("No memory plan for %s: %s", report.path, exc)
    html = render_report(report, offer=fix_offer(report, local_path), plan=plan, local=local_path is not None)
    if note:
        html = html.replace('<div class="wc-report">', f'<div class="wc-report"><p class="wc-note">{note}</p>', 1)
    if plan is not None:
        html += render_fit(report, plan)
    data = report.to_dict()
    data["source"] = source
    if local_path is not None:
        data["local_path"] = local_path
    return html, data


def check_path(path: str) -> tuple[str, dict[str, Any]]:
    """Inspect ``path`` and return (the report as HTML, ``report.to_dict()``).

    An empty path gives a prompt sentence and ``{}``; any failure gives an HTML sentence with
    its remedy and ``{"error": ..., "remedy": ..., "path": ...}``.
    """
    target = clean_path(path)
    if not target:
        return render_prompt(), {}
    try:
        if len(target) > MAX_PATH_CHARS:
            raise WanError(f"That path is {len(target):,} characters long, too long to be a path.",
                           "Paste only the path of the model folder or file.")
        if "\0" in target:
            raise WanError("That path holds a NUL character, which no path can hold.",
                           "Paste only the path of the model folder or file.")
        os.stat(target)  # not found, permission denied, a link loop: said plainly by explain()
        from core.check.detect import (
            inspect,  # imported when first needed; reads no weights
        )

        report = inspect(target)
        if report.is_wan and not report.is_collection:
            common.remember(target)
        return _report_outputs(report, "path", local_path=target)
    except Exception as exc:  # noqa: BLE001 - every failure becomes a sentence, never a traceback
        err = explain(exc)
        if not isinstance(exc, (OSError, WanError)):
            log.warning("Model Check failed on %s", target, exc_info=exc)
        return render_error(err, target), {"error": err.message, "remedy": err.remedy, "path": target}


def check_manifest(manifest_json: str) -> tuple[str, dict[str, Any]]:
    """Inspect a folder described by a browser (see :mod:`wan_ui.dropzone`): names, sizes, JSON, headers."""
    text = manifest_json or ""
    if not text.strip():
        return render_prompt(), {}
    try:
        if len(text) > MAX_MANIFEST_CHARS:
            raise WanError(f"The folder description is {len(text) / 2**20:.0f} MB, more than a model's "
                           "configs and headers take.",
                           "Drop the model folder itself, not a folder of many other files.")
        try:
            manifest = json.loads(text)
        except ValueError as exc:
            raise WanError("The browser sent a folder description that is not valid JSON.",
                           "Drop the folder again; if it keeps failing, type its path instead.", str(exc)) from exc
        from core.check.detect import inspect
        from core.check.filesource import ManifestSource

        source = ManifestSource(manifest)
        from wan_ui.report_actions import locate_dropped, search_folders
        found = locate_dropped(manifest, search_folders())
        report = inspect(found if found else source)     # found: the same files, with their real paths
        note = dropzone.describe_sent(manifest) + (
            f" It is <code>{escape(found)}</code> on this computer (the names and sizes of its files match)."
            if found else "")
        html, data = _report_outputs(report, "manifest", note, local_path=found)
        data["received_bytes"] = len(text)
        data["manifest_files"] = len(source.files)
        return html, data
    except Exception as exc:  # noqa: BLE001
        err = explain(exc)
        if not isinstance(exc, (OSError, WanError, ValueError)):
            log.warning("Model Check of a dropped folder failed", exc_info=exc)
        return render_error(err, "dropped folder"), {"error": err.message, "remedy": err.remedy,
                                                     "path": "dropped folder"}


# --- .zip uploads ---------------------------------------------------------------------------

_ZIP_LOCK = threading.Lock()
_ZIP_DIRS: list[str] = []


def check_zip(file: Any, progress: gr.Progress = gr.Progress()) -> tuple[str, dict[str, Any]]:  # noqa: B008
    """Unpack an uploaded .zip (within ZIP_LIMITS, see core.check.archive) and inspect what is inside.

    The page shows "Unpacking the .zip: i of n files" while it unpacks (a zip of 9,999 small
    files takes tens of seconds)."""
    path = file.get("path") if isinstance(file, dict) else file
    if not path:
        return render_prompt(), {}
    name = Path(str(path)).name
    dest = Path(tempfile.mkdtemp(prefix="wan-compat-zip-"))
    try:
        if not str(path).lower().endswith(".zip"):
            raise WanError(f"{name} is not a .zip file.", "Upload a .zip of the model folder.")
        folder = extract_zip(path, dest, ZIP_LIMITS,
                             progress=lambda event: progress(event.percent / 100, desc=event.message))
        from core.check.detect import inspect

        report = inspect(str(folder))
        with _ZIP_LOCK:
            _ZIP_DIRS.append(str(dest))
            while len(_ZIP_DIRS) > ZIP_KEEP:
                shutil.rmtree(_ZIP_DIRS.pop(0), ignore_errors=True)
        return _report_outputs(report, "zip", escape(f"Unpacked from {name} into {folder}."))   # a copy: not fixed
    except Exception as exc:  # noqa: BLE001
        shutil.rmtree(dest, ignore_errors=True)
        err = explain(exc)
        if not isinstance(exc, (OSError, WanError)):
            log.warning("Model Check of an uploaded .zip failed", exc_info=exc)
        return render_error(err, name), {"error": err.message, "remedy": err.remedy, "path": name}


# --- after a check: the JSON download -------------------------------------------------------

def after_check(data: dict[str, Any] | None) -> Any:
    """Offer the report as a JSON file (the Fix buttons are in the report, under its headline)."""
    if not data or "error" in data or not data.get("path"):
        return gr.update(value=None, interactive=False)
    folder = tempfile.mkdtemp(prefix="wan-compat-report-")
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(str(data["path"])).name) or "model"
    file = Path(folder) / f"{stem}-report.json"
    file.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return gr.update(value=str(file), interactive=True)


# --- the System fold: core.doctor -------------------------------------------------------------

_DOCTOR: tuple[float, str] | None = None
_DOCTOR_LOCK = threading.Lock()
DOCTOR_TTL_S = 120.0


def system_check(force: bool = False) -> str:
    """core.doctor's checks of this computer as HTML (cached for two minutes)."""
    global _DOCTOR
    with _DOCTOR_LOCK:
        if not force and _DOCTOR is not None and time.monotonic() - _DOCTOR[0] < DOCTOR_TTL_S:
            return _DOCTOR[1]
        try:
            from core.doctor import run_doctor
            html = render_doctor(run_doctor(common.context().config))
        except Exception as exc:  # noqa: BLE001
            err = explain(exc)
            return render_error(err)
        _DOCTOR = (time.monotonic(), html)
        return html


# --- layout ---------------------------------------------------------------------------------

@dataclass
class ModelCheckTab:
    """The components app.py wires to the other tabs."""

    path: Any
    report_html: Any
    report_json: Any
    download: Any


def build_model_check_tab(models_dir: str | os.PathLike[str] | None = None) -> ModelCheckTab:
    """Add the Model Check controls to the current ``gr.Blocks`` / ``gr.Tab`` context.

    ``models_dir``: when it is an existing folder, a button checks it in one click.
    """
    gr.Markdown(INTRO, elem_classes=["wc-intro"])
    with gr.Row(equal_height=True, elem_id="wc-path-row"):
        path_box = gr.Textbox(label="Model path", show_label=False, container=False,
                              placeholder=PLACEHOLDER, max_lines=1, scale=6, elem_id="wc-path",
                              autofocus=True)
        check_button = gr.Button("Check", variant="primary", scale=0, min_width=120,
                                 elem_id="wc-check")
    folder = Path(models_dir) if models_dir else None
    folder_button = None
    if folder is not None and folder.is_dir():
        with gr.Row():
            folder_button = gr.Button(f"Check my models folder: {folder}", variant="secondary",
                                      size="sm", scale=0, elem_id="wc-check-models-dir")
    # one drop zone for a folder or a .zip (wan_ui.dropzone); it hands a .zip to this hidden upload
    gr.HTML(dropzone.html(), elem_id=dropzone.DROP_ID, js_on_load=dropzone.JS, css_template=dropzone.CSS)
    zip_file = gr.File(label="a .zip of a small model", file_types=[".zip"], type="filepath",
                       elem_id=dropzone.ZIP_ID, visible="hidden")
    manifest_box = gr.Textbox(visible="hidden", lines=2, elem_id=dropzone.MANIFEST_ID, label="manifest")
    manifest_send = gr.Button("send manifest", visible="hidden", elem_id=dropzone.SEND_ID)
    report_html = gr.HTML(render_prompt(), elem_id="wc-report", js_on_load=ACTION_JS)   # its buttons: report_actions
    with gr.Row():
        download = gr.DownloadButton("Download the report (JSON)", interactive=False, size="sm", scale=0,
                                     elem_id="wc-report-download")
    with gr.Row(equal_height=True):   # issue 10: a LoRA checked against this model (wan_ui.lora_picker)
        lora_box = gr.Textbox(label="LoRA to check against this model", max_lines=3, scale=6, elem_id="wc-lora",
                              placeholder="/path/to/a_lora.safetensors[:strength][@high|@low], one per line")
        lora_button = gr.Button("Check the LoRA", size="sm", scale=0, min_width=160, elem_id="wc-lora-check")
    lora_html = gr.HTML("", elem_id="wc-lora-report")
    with gr.Accordion("Report as JSON", open=False, elem_id="wc-json-fold"):
        report_json = gr.JSON(value={}, show_label=False, elem_id="wc-json")
    with gr.Row():   # issue 19: core.check.deep, every byte read, with progress and Cancel
        deep_button = gr.Button("Deep check (reads every byte)", size="sm", scale=0, min_width=260,
                                elem_id="wc-deep-check")
        deep_cancel = gr.Button("Cancel deep check", size="sm", scale=0, elem_id="wc-deep-cancel")
    deep_html = gr.HTML("", elem_id="wc-deep-report")
    deep_json = gr.JSON(value={}, visible=False, elem_id="wc-deep-json")
    with gr.Accordion("System: is this computer ready?", open=False, elem_id="wc-system") as system:
        system_html = gr.HTML('<p class="wc-prompt">Checking Python, torch, the GPU, memory, disk and '
                              "libraries…</p>", elem_id="wc-system-report", js_on_load=None)
        again = gr.Button("Check again", size="sm", elem_id="wc-system-again")

    outputs = [report_html, report_json]
    deep_button.click(deep_check.run_deep_check, inputs=path_box, outputs=[deep_html, deep_json],
                      api_name="deep_check", show_progress="minimal", concurrency_id="deep_check")
    deep_cancel.click(deep_check.cancel_deep_check, outputs=deep_html, api_name="cancel_deep_check",
                      concurrency_id="deep_cancel")
    after = dict(fn=after_check, inputs=report_json, outputs=download, api_visibility="private")
    gr.on([check_button.click, path_box.submit], check_path, inputs=path_box,
          outputs=outputs, api_name="check", show_progress="minimal").then(**after)
    manifest_send.click(check_manifest, inputs=manifest_box, outputs=outputs, api_name="check_manifest",
                        show_progress="minimal").then(**after)
    zip_file.upload(check_zip, inputs=zip_file, outputs=outputs, api_name="check_zip",
                    show_progress="full").then(**after)
    if folder_button is not None:
        folder_button.click(lambda: str(folder), outputs=path_box, api_visibility="private").then(
            check_path, inputs=path_box, outputs=outputs, api_visibility="private",
            show_progress="minimal").then(**after)
    gr.on([lora_button.click, lora_box.submit], lora_picker.model_check_lora, inputs=[path_box, lora_box],
          outputs=lora_html, api_name="check_lora", show_progress="minimal")
    report_json.change(dropzone.checked_path, inputs=report_json, outputs=path_box,   # the box says what was checked
                       api_visibility="private", queue=False)
    system.expand(system_check, outputs=system_html, api_visibility="private")
    again.click(lambda: system_check(force=True), outputs=system_html, api_name="doctor")
    return ModelCheckTab(path=path_box, report_html=report_html, report_json=report_json, download=download)
