"""The progress panel's model: what a generation's ProgressEvents add up to on the page.

Usage::

    from wan_ui.progress_view import ProgressView
    from wan_ui.render import render_progress

    view = ProgressView()
    view.update(event)                 # a core.progress.ProgressEvent
    html = render_progress(view)       # stage, percent, step i of n, expert, s/step, ETA, elapsed
"""

from __future__ import annotations

from dataclasses import dataclass, field

from core.jobs.eta import duration_words as _duration
from core.progress import ProgressEvent

#: The panel's headline for each ProgressEvent stage.
STAGE_LABELS = {"build": "Building the demo model", "check": "Checking the model", "plan": "Memory plan",
                "load": "Loading the model", "encode": "Encoding the prompt", "denoise": "Denoising",
                "decode": "Decoding the video (VAE)", "write": "Writing the MP4", "done": "Done",
                "fix": "Applying the fix", "convert": "Converting"}
#: A new part of the job: the step facts of an earlier denoising no longer apply.
_FRESH_STAGES = ("build", "check", "plan", "load")


@dataclass
class ProgressView:
    """What the progress panel shows; ``update`` reads one ProgressEvent (or a plain message)."""

    stage: str = "Starting"
    percent: float = 0.0
    state: str = "running"              # running, cancelling, done, failed, cancelled
    step: int | None = None
    steps: int | None = None
    expert: str = ""
    seconds_per_step: str = ""
    eta: str = ""
    elapsed: float | None = None
    log: list[str] = field(default_factory=list)
    phase: str = ""

    def update(self, event: ProgressEvent | str, percent: float | None = None, phase: str = "") -> None:
        """Show one event: its stage, percent and, while denoising, its step numbers.

        ``update(message, percent, phase)`` still takes a plain message from a job that sends
        no events; its stage is then the phase.
        """
        if not isinstance(event, ProgressEvent):
            self._plain(str(event), float(percent or 0.0), phase)
            return
        self.log.append(event.message)
        del self.log[:-50]
        self.percent = event.percent
        if event.step is not None:
            self.step, self.steps = event.step, event.steps
            self.expert = f"{event.expert} expert" if event.expert else ""
            self.seconds_per_step = "" if event.seconds_per_step is None else f"{event.seconds_per_step:.2f}"
            self.eta = "" if event.eta_seconds is None else _duration(event.eta_seconds)
        elif event.stage in _FRESH_STAGES:
            self.step = self.steps = None
            self.expert = self.seconds_per_step = self.eta = ""
        elif event.eta_seconds is not None:          # the VAE decode's own ETA (core.run.decode_progress)
            self.eta = _duration(event.eta_seconds)
        self.stage = STAGE_LABELS.get(event.stage, event.stage.capitalize())

    def _plain(self, message: str, percent: float, phase: str) -> None:
        self.log.append(message)
        del self.log[:-50]
        self.percent = percent
        if phase and phase != self.phase:
            self.phase = phase
            self.step = self.steps = None
            self.expert = self.seconds_per_step = self.eta = ""
        self.stage = stage_of(message, phase)


def stage_of(message: str, phase: str = "") -> str:
    """A short stage name for a progress message."""
    for prefix, stage in (("Loading", "Loading the model"), ("Loaded", "Loading the model"),
                          ("Checking", "Checking the model"), ("Applying the memory plan", "Loading the model"),
                          ("Encoding the prompt", "Encoding the prompt"), ("Decoding", "Decoding the video (VAE)"),
                          ("Encoding video", "Writing the MP4"), ("Finishing video", "Writing the MP4"),
                          ("Saving video", "Writing the MP4"), ("Saved video", "Writing the MP4"),
                          ("Done", "Done"), ("Ran out of", "Retrying with less memory"),
                          ("Building the demo", "Building the demo model"), ("wan", "Building the demo model")):
        if message.startswith(prefix):
            return stage
    return phase or "Working"
