"""The Model Check tab's "Deep check (reads every byte)": core.check.deep with live progress and Cancel.

One deep check at a time (it reads the whole model from disk). ``run_deep_check`` is a
generator for Gradio: it yields the progress card while reading, then the result card and
the result as JSON. ``cancel_deep_check`` stops it between chunks::

    for html, data in run_deep_check("/models/Wan2.1-T2V-1.3B-Diffusers"):
        pass
    data["ok"], data["findings"]
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from typing import Any

from core.errors import explain
from core.progress import ProgressEvent
from wan_ui.render import render_notice, render_sentences

_CANCEL = threading.Event()
_BUSY = threading.Lock()


def cancel_deep_check() -> str:
    """Ask the running deep check to stop (it stops after the chunk it is reading)."""
    _CANCEL.set()
    return render_notice("Stopping the deep check…", "unknown", "■ Cancel")


def run_deep_check(path: str, poll_s: float = 0.3) -> Iterator[tuple[str, dict[str, Any]]]:
    """Read every tensor under ``path`` (a thread), yielding (progress HTML, {}) and finally (result HTML, JSON)."""
    path = (path or "").strip().strip('"')
    if not path or not os.path.exists(path):
        yield render_notice(f"Not found: {path or '(no path)'}. Type the model folder's path first.", "bad",
                            "✗"), {}
        return
    if not _BUSY.acquire(blocking=False):
        yield render_notice("A deep check is already running; wait for it or cancel it.", "unknown", "Busy"), {}
        return
    try:
        _CANCEL.clear()
        latest: list[ProgressEvent] = []
        box: dict[str, Any] = {}

        def work() -> None:
            from core.check.deep import deep_check
            try:
                box["result"] = deep_check(path, progress=latest.append, cancel=_CANCEL)
            except Exception as exc:  # noqa: BLE001 - becomes a sentence below
                box["error"] = exc

        thread = threading.Thread(target=work, name="deep-check", daemon=True)
        yield render_notice(f"0% · Reading every tensor under {os.path.basename(path.rstrip('/')) or path}…",
                            "unknown", "Deep check"), {}
        thread.start()
        while thread.is_alive():
            thread.join(poll_s)
            if latest:
                event = latest[-1]
                yield (render_notice(f"{event.percent:.0f}% · {event.message}", "unknown", "Deep check"), {})
        if "error" in box:
            err = explain(box["error"])
            yield render_sentences("The deep check failed.", [f"{err.message} {err.remedy}".strip()]), {}
            return
        yield render_deep_result(box["result"]), box["result"].to_dict()
    finally:
        _BUSY.release()


def render_deep_result(result: Any) -> str:
    """The card for a finished, cancelled or failed deep check."""
    if result.cancelled:
        return render_notice("Deep check cancelled; nothing was changed.", "unknown", "■ Cancelled")
    read = f"Read {result.bytes_read / 2**20:,.1f} MB in {result.files} file(s) in {result.seconds:.1f} s"
    if result.ok:
        return render_notice(f"{read}: every tensor is finite and no region is zero-filled.", "ok", "✓ Deep check")
    return render_sentences(f"{read}: the model's files are damaged.",
                            [f"{f.message} {f.remedy}" for f in result.findings])
