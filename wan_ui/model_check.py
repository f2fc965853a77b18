"""The Model Check tab: a path in, a readable report out.

:func:`check_path` is a plain function (no Gradio in it) that the Check button calls and
that the API exposes as ``/check``::

    from gradio_client import Client
    client = Client("http://127.0.0.1:7860/", download_files=False)
    html, report = client.predict("/models/Wan2.2-TI2V-5B-Diffusers", api_name="/check")
    report["loadable"], report["findings"]

(``download_files=False``: gradio_client 2.7 against Gradio 6 mistakes any dict with a
``"path"`` string, as the report has, for a file to download, and fails with 403.)

It never raises: a missing path, an unreadable file or a bug becomes a plain sentence with a
remedy, and the traceback sits behind a closed "Technical details" fold.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import gradio as gr

from core.errors import WanError, explain
from wan_ui.render import render_error, render_prompt, render_report

log = logging.getLogger(__name__)

PLACEHOLDER = "/path/to/Wan2.2-T2V-A14B-Diffusers or a .safetensors file"
INTRO = ("Point Wan Compat at a model folder, a Hugging Face cache folder, a folder of several "
         "models or a single `.safetensors` file. It reads only the configs and the file headers, "
         "never the weights, so even a 100 GB model is checked in about a second.")
MAX_PATH_CHARS = 4096


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
        os.stat(target)  # not found, permission denied, a link loop: said plainly by explain()
        from core.detector import inspect  # imported when first needed; reads no weights

        report = inspect(target)
        return render_report(report), report.to_dict()
    except Exception as exc:  # noqa: BLE001 - every failure becomes a sentence, never a traceback
        err = explain(exc)
        if not isinstance(exc, (OSError, WanError)):
            log.warning("Model Check failed on %s", target, exc_info=exc)
        return render_error(err, target), {"error": err.message, "remedy": err.remedy, "path": target}


def build_model_check_tab(models_dir: str | os.PathLike[str] | None = None) -> None:
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
    report_html = gr.HTML(render_prompt(), elem_id="wc-report", js_on_load=None)
    with gr.Accordion("Report as JSON", open=False, elem_id="wc-json-fold"):
        report_json = gr.JSON(value={}, show_label=False, elem_id="wc-json")

    gr.on([check_button.click, path_box.submit], check_path, inputs=path_box,
          outputs=[report_html, report_json], api_name="check", show_progress="minimal")
    if folder_button is not None:
        folder_button.click(lambda: str(folder), outputs=path_box, api_visibility="private").then(
            check_path, inputs=path_box, outputs=[report_html, report_json],
            api_visibility="private", show_progress="minimal")
