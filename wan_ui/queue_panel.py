"""The job queue on the Generate tab, the page's live progress of its job, and the jobs API.

Generations are jobs owned by the server (core.jobs): they run to the end whatever the page
does; only Cancel stops one. Each page follows one job (a ``gr.State``) and a ``gr.Timer``
redraws its progress panel and the queue list from the runner, so a reloaded page, or a
second tab, picks up the running job's live progress where it is.

The API (``gradio_client``, keyword arguments)::

    client = Client("http://127.0.0.1:7860/", download_files=False)
    job = client.predict(model="/models/Wan2.1-T2V-1.3B-Diffusers", prompt="A red fox in the snow",
                         num_frames=17, api_name="/enqueue")                    # the job's id, at once
    client.predict(job_id=job, api_name="/job")   # {"id", "state", "percent", "message", "output_path", "error"}
    client.predict(api_name="/jobs")              # every job, running and queued first
    client.predict(job_id=job, api_name="/cancel_job")

Unset settings take the model's defaults; a request that cannot run is refused at once with
its sentences (gradio_client raises ``AppError``).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace
from html import escape
from pathlib import Path
from typing import Any

import gradio as gr

from core.jobs.runner import JobRunner, get_runner
from core.jobs.store import Job
from wan_ui import common
from wan_ui.progress_view import ProgressView
from wan_ui.render import render_progress, render_result

POLL_S = 0.5                    # how often a page redraws its job's progress and the queue
QUEUE_SHOWN = 30                # jobs listed (running and queued first, then the latest finished)
CANCELLING = "Cancelling after the current step…"
NOTHING_TO_CANCEL = "Nothing is being generated."
#: What each state's row offers (the buttons' data-act).
ACTIONS = {"queued": (("up", "↑", "Move up"), ("down", "↓", "Move down"), ("remove", "Remove", "Remove from the queue")),
           "running": (("cancel", "Cancel", "Stop after the current step"),),
           "done": (("show", "Show", "Show this video"), ("remove", "Remove", "Remove from the list")),
           "failed": (("show", "Show", "Show what went wrong"), ("requeue", "Re-queue", "Run it again"),
                      ("remove", "Remove", "Remove from the list")),
           "cancelled": (("requeue", "Re-queue", "Run it again"), ("remove", "Remove", "Remove from the list")),
           "interrupted": (("requeue", "Re-queue", "Run it again"), ("remove", "Remove", "Remove from the list"))}
STATE_WORDS = {"queued": "queued", "running": "running", "done": "done", "failed": "failed",
               "cancelled": "cancelled", "interrupted": "interrupted"}
QUEUE_CSS = """
table { width: 100%; border-collapse: collapse; font-size: 0.85em; }
th, td { padding: 4px 6px; border-bottom: 1px solid var(--border-color-primary); text-align: left; vertical-align: top; }
.wc-q-state { padding: 1px 8px; border-radius: 999px; background: var(--background-fill-secondary); white-space: nowrap; }
.wc-q-running { background: #fff1c2; color: #5c4500; }
.wc-q-done { background: #d9f2e1; color: #14532d; }
.wc-q-failed, .wc-q-interrupted { background: #fde2e2; color: #7f1d1d; }
tr.wc-q-followed td { background: var(--background-fill-secondary); }
.wc-q-actions { white-space: nowrap; text-align: right; }
.wc-q-btn { font-size: 0.9em; padding: 1px 8px; margin: 1px; cursor: pointer; border-radius: 6px;
            border: 1px solid var(--border-color-primary); background: var(--button-secondary-background-fill); }
.wc-bar { height: 6px; margin-bottom: 2px; }
"""
#: Cancel pressed: the running panel says so in the browser at once, however busy the server is.
CANCELLING_JS = """() => { const p = document.querySelector('#wc-gen-progress .wc-progress[data-state="running"]');
  if (p) { p.dataset.state = 'cancelling'; const s = p.querySelector('.wc-stage');
           if (s) { s.textContent = '""" + CANCELLING + """'; } } }"""
ROW_JS = """element.addEventListener('click', (e) => {
  const b = e.target.closest('button[data-act]');
  if (b) { trigger('click', {act: b.dataset.act, job: b.dataset.job}); }
});"""


def runner() -> JobRunner:
    """The app's job runner, for the configured history database and outputs folder."""
    ctx = common.context()
    return get_runner(outputs_dir=ctx.outputs_dir, db_path=ctx.history_db)


# --- what a page shows of one job ----------------------------------------------------------------

_VIEWS: dict[int, tuple[int, ProgressView]] = {}    # job id -> (events read, its view): shared by all pages
_VIEWS_LOCK = threading.Lock()


def job_view(job: Job) -> ProgressView:
    """The progress panel's view of ``job``, brought up to date with the runner's new events."""
    r = runner()
    with _VIEWS_LOCK:
        seq, view = _VIEWS.get(job.id, (0, None))
        if view is None:
            view = ProgressView()
            if job.event:                         # a page that attaches late starts from the saved state
                from core.progress import ProgressEvent
                try:
                    view.update(ProgressEvent(**job.event))
                except TypeError:
                    pass
        seq, events, _ = r.events_since(job.id, seq, timeout=0.0)
        for event in events:
            view.update(event)
        _VIEWS[job.id] = (seq, view)
        if len(_VIEWS) > 64:
            _VIEWS.pop(next(iter(_VIEWS)))
    return view


def job_panel(job: Job | None, cancelling: bool = False) -> str:
    """The progress panel for ``job`` in any state: queued, running (live), or ended (with its card).
    ``cancelling``: Cancel was just pressed (said even before the runner has heard it)."""
    if job is None:
        return ""
    view = replace(job_view(job), state="running")      # a copy: what is said here is this job's state now
    r = runner()
    if job.started_at:
        view.elapsed = (job.finished_at or time.time()) - job.started_at
    if job.state == "queued":
        ahead = sum(1 for j in r.store.list() if j.state in ("queued", "running") and
                    (j.state == "running" or j.position < job.position))
        view.state, view.percent = "queued", 0.0
        view.stage = f"Waiting in the queue: {ahead} job{'s' if ahead != 1 else ''} ahead"
        return render_progress(view)
    if job.state == "running":
        if cancelling or job.cancel_requested or r.cancelling(job.id):
            view.state, view.stage, view.eta = "cancelling", CANCELLING, ""
        return render_progress(view)
    result = job_result(job)
    view.eta = ""                                  # an ended job has no ETA
    if job.state == "done":
        view.state, view.stage, view.percent = "done", "Done", 100.0
    elif job.state == "cancelled":
        view.state, view.stage = "cancelled", "Cancelled"
    elif job.state == "interrupted":
        view.state, view.stage = "failed", "Interrupted"
    else:
        view.state, view.stage = "failed", "Stopped"
    return render_progress(view) + render_result(result)


def job_result(job: Job) -> dict[str, Any]:
    """The ended job's result as the page's "Settings of this video" shows it."""
    if job.result:
        return dict(job.result)
    if job.state == "cancelled":
        return {"success": False, "cancelled": True, "errors": ["Cancelled; no video was written."]}
    if job.state == "done":
        return {"success": True, "output_path": job.output_path}
    return {"success": False, "errors": [job.error or "The generation did not finish."]}


# --- the page's timer -----------------------------------------------------------------------------

@dataclass
class PageState:
    """What one page follows and what it last drew (kept in a ``gr.State``)."""

    job: int | None = None
    ended_shown: bool = False
    progress_html: str = ""
    queue_html: str = ""
    cancel_enabled: bool = False
    refusal: bool = False         # the panel shows a request's refusal, not a job


def refused(state: PageState | None) -> PageState:
    """The panel now shows why a request was refused (cleared by :func:`clear_refusal`)."""
    state = state or PageState()
    state.refusal = True
    return state


def clear_refusal(state: PageState | None) -> tuple[PageState, Any]:
    """A model was chosen: a refusal still on the panel ("Choose a model first") gives way to the page's
    job (or nothing); (state, the panel's new HTML or a skip)."""
    state = state or PageState()
    if not state.refusal:
        return state, gr.skip()
    state.refusal = False
    job = runner().store.get(state.job) if state.job is not None else None
    state.progress_html = job_panel(job) if job is not None else ""
    return state, state.progress_html


def follow(state: PageState | None, job_id: int | None) -> PageState:
    """The page now follows ``job_id`` (its panel is drawn on the next tick)."""
    state = state or PageState()
    state.job, state.ended_shown, state.refusal = job_id, False, False
    return state


def tick(state: PageState | None) -> tuple[Any, ...]:
    """The timer: (state, progress HTML, video, result, queue HTML, Cancel button), skipping what did not change.

    A page following nothing (or a job that ended and was shown) takes up the running job:
    that is how a reloaded page or a second tab re-attaches.
    """
    state = state or PageState()
    r = runner()
    running = r.store.running()
    job = r.store.get(state.job) if state.job is not None else None
    if (job is None or (job.finished and state.ended_shown)) and running is not None and running.id != state.job:
        state.job, state.ended_shown = running.id, False
        job = running
    progress = video = result = gr.skip()
    if job is not None and not state.ended_shown:
        html = job_panel(job)
        if html != state.progress_html and not state.refusal:     # a refusal stays until the person acts
            progress, state.progress_html = html, html
        if job.finished:
            state.ended_shown = True
            outcome = job_result(job)
            result = outcome
            if job.state == "done" and job.output_path:
                video = job.output_path                  # a cancelled or failed job keeps the last video
    queue_html = render_queue(r.store.list(QUEUE_SHOWN), state.job)
    queue_out = gr.skip()
    if queue_html != state.queue_html:
        queue_out, state.queue_html = queue_html, queue_html
    can_cancel = job is not None and job.state in ("queued", "running")
    cancel_out = gr.skip()
    if can_cancel != state.cancel_enabled:
        cancel_out, state.cancel_enabled = gr.update(interactive=can_cancel), can_cancel
    return state, progress, video, result, queue_out, cancel_out


def cancel_followed(state: PageState | None) -> str:
    """Cancel (API ``/cancel``): the job this page follows, else the running one; the sentence to show."""
    r = runner()
    job_id = state.job if state is not None and state.job is not None else None
    job = r.store.get(job_id) if job_id is not None else None
    if job is None or job.finished:
        job = r.store.running()
    if job is None:
        return NOTHING_TO_CANCEL
    return r.cancel(job.id)


def show_cancelling(state: PageState | None) -> tuple[PageState, Any]:
    """On Cancel (beside the cancelling itself): the panel says "cancelling" at once, before the job stops;
    (the page's state, the panel)."""
    state = state or PageState()
    r = runner()
    job = r.store.get(state.job) if state.job is not None else None
    if job is None or job.finished:
        job = r.store.running()
    if job is None or job.state != "running":
        return state, gr.skip()
    state.refusal = False
    return state, job_panel(job, cancelling=True)


# --- the queue list -------------------------------------------------------------------------------

def render_queue(jobs: list[Job], followed: int | None = None) -> str:
    """The queue as a table: state, what, progress, its video or sentence, and what can be done."""
    if not jobs:
        return ('<div id="wc-queue-empty" class="wc-note">No jobs yet. Generate runs one now; '
                "Add to queue keeps it for when the one before has finished.</div>")
    rows = []
    for job in jobs:
        if job.state == "running":
            what = f'<div class="wc-bar"><div class="wc-bar-fill" style="width:{job.percent:.1f}%"></div></div>' \
                   f"{job.percent:.0f}% · {escape(job.message)}"
        elif job.state == "done" and job.output_path:
            what = escape(Path(job.output_path).name)
        elif job.error:
            what = escape(job.error)
        else:
            what = escape(job.message)
        buttons = "".join(f'<button type="button" class="wc-q-btn" data-act="{act}" data-job="{job.id}" '
                          f'title="{escape(tip)}">{escape(text)}</button>' for act, text, tip in ACTIONS[job.state])
        mark = ' class="wc-q-followed"' if job.id == followed else ""
        rows.append(f'<tr data-job="{job.id}" data-state="{job.state}"{mark}><td>{job.id}</td>'
                    f'<td><span class="wc-q-state wc-q-{job.state}">{STATE_WORDS[job.state]}</span></td>'
                    f"<td>{escape(job.label or job.model)}</td><td>{what}</td>"
                    f'<td class="wc-q-actions">{buttons}</td></tr>')
    return ('<table id="wc-queue" class="wc-queue"><thead><tr><th>#</th><th>State</th><th>What</th>'
            f'<th>Progress / result</th><th></th></tr></thead><tbody>{"".join(rows)}</tbody></table>')


def on_row_action(state: PageState | None, evt: gr.EventData) -> tuple[Any, Any, str]:
    """A button in the queue list: move, remove, cancel, re-queue, or show that job here."""
    state = state or PageState()
    data = getattr(evt, "_data", None) or {}
    act, job_text = data.get("act"), str(data.get("job") or "")
    if not job_text.isdigit():
        return state, gr.skip(), ""
    job_id, r = int(job_text), runner()
    note = ""
    if act in ("up", "down"):
        r.move(job_id, -1 if act == "up" else 1)
    elif act == "remove":
        note = "" if r.remove(job_id) else "A running job cannot be removed: cancel it first."
    elif act == "cancel":
        note = r.cancel(job_id)
    elif act == "requeue":
        note = "Queued again." if r.requeue(job_id) else "Only a failed, cancelled or interrupted job can be re-queued."
        state = follow(state, job_id)
    elif act == "show":
        state = follow(state, job_id)
    state.queue_html = ""                      # redraw on the next tick
    return state, render_queue(r.store.list(QUEUE_SHOWN), state.job), note


def build_queue_panel() -> dict[str, Any]:
    """The queue list, its note, the page's state and its timer (wired by the Generate tab)."""
    with gr.Accordion("Queue", open=True, elem_id="wc-queue-fold"):
        queue_html = gr.HTML(render_queue([]), elem_id="wc-queue-list", js_on_load=ROW_JS, css_template=QUEUE_CSS)
        note = gr.Markdown("", elem_id="wc-queue-note", elem_classes=["wc-note"])
    return {"html": queue_html, "note": note, "state": gr.State(PageState()), "timer": gr.Timer(POLL_S)}


# --- the API --------------------------------------------------------------------------------------

def api_enqueue(model: str, prompt: str = "", negative_prompt: str | None = None, width: int | None = None,
                height: int | None = None, num_frames: int | None = None, num_inference_steps: int | None = None,
                guidance_scale: float | None = None, guidance_scale_2: float | None = None, seed: int | None = None,
                fps: int | None = None, image: str | None = None, last_image: str | None = None,
                video: str | None = None, mask: str | None = None, reference_images: list[str] | None = None,
                conditioning_scale: float | None = None, strength: float | None = None,
                pose_video: str | None = None, face_video: str | None = None, background_video: str | None = None,
                mask_video: str | None = None, mode: str | None = None, segment_frame_length: int | None = None,
                enable_optimizations: bool | None = None, force_chunked_processing: bool | None = None,
                output_path: str | None = None, loras: list[str] | None = None, flow_shift: float | None = None,
                precision: str | None = None, offload: str | None = None) -> int:
    """Queue one generation (API ``/enqueue``) and return its job id at once.

    ``model``: a model folder; the other names are every GenerationConfig field (unset: the
    model's defaults; ``loras`` as ``["FILE:STRENGTH@high", ...]``); ``precision``/``offload``
    as in the Advanced settings. A request that cannot run is refused with its sentences.
    """
    values = {k: v for k, v in locals().items() if k not in ("model", "precision", "offload")}
    from wan_ui.model_check import clean_path
    job_id, errors = runner().submit(clean_path(model), values, common.overrides_from(precision, offload))
    if job_id is None:
        raise gr.Error(" ".join(errors), print_exception=False)
    return job_id


def api_jobs() -> list[dict[str, Any]]:
    """Every job (API ``/jobs``): ``{"id", "state", "percent", "message", "output_path", "error"}``."""
    return [job.to_api() for job in runner().store.list()]


def api_job(job_id: int) -> dict[str, Any]:
    """One job (API ``/job``), as in ``/jobs``."""
    job = runner().store.get(job_id)
    if job is None:
        raise gr.Error(f"There is no job {job_id}: see /jobs for the list.", print_exception=False)
    return job.to_api()


def api_cancel_job(job_id: int) -> str:
    """Cancel a job (API ``/cancel_job``): a queued one at once, a running one after its current step."""
    return runner().cancel(job_id)


def register_api() -> None:
    """The jobs API endpoints (inside the Blocks)."""
    gr.api(api_enqueue, api_name="enqueue")
    gr.api(api_jobs, api_name="jobs")
    gr.api(api_job, api_name="job")
    gr.api(api_cancel_job, api_name="cancel_job")
