"""An ETA for the whole job: the denoising ETA plus what the VAE decode and the MP4 write will take.

The denoising loop knows its own remaining seconds; on a CPU the decode after it can take longer
than all the steps together. The decode and write seconds of the last run of the same model
(this worker's, else the performance history's) are scaled by the pixels x frames asked now::

    eta = WholeJobEta()
    eta.prepare(report, settings)            # after the request is checked
    event = eta.adjust(event)                # denoise: + decode + write; decode: + write
    eta.learn(result)                        # the job's own stage seconds, for the next job

Without an earlier run of this model the denoising events keep their own ETA, and the decode
events (core.run.decode_progress) give theirs from the parts decoded so far.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

from core.progress import ProgressEvent

_SEEN: dict[str, tuple[float, float, float]] = {}     # fingerprint -> (pixels x frames, decode s, write s)
_ETA_WORDS = re.compile(r"ETA (\d+m )?\d+s")


def duration_words(seconds: float) -> str:
    """"45s", "7m 55s"."""
    whole = max(0, int(round(seconds)))
    return f"{whole // 60}m {whole % 60:02d}s" if whole >= 60 else f"{whole}s"


class WholeJobEta:
    """Turns stage ETAs into whole-job ETAs for one job (see the module's usage)."""

    def __init__(self) -> None:
        self.fingerprint: str | None = None
        self.work = 0.0
        self.decode_s: float | None = None
        self.write_s: float | None = None

    def prepare(self, report: Any, settings: Any) -> None:
        """Estimate this job's decode and write seconds from the last run of the same model."""
        from core.monitor import model_fingerprint
        self.fingerprint = model_fingerprint(report)
        self.work = float(settings.width * settings.height * settings.num_frames)
        before = _SEEN.get(self.fingerprint) or _from_history(self.fingerprint)
        if before is not None and before[0] > 0:
            scale = self.work / before[0]
            self.decode_s, self.write_s = before[1] * scale, before[2] * scale

    def adjust(self, event: ProgressEvent) -> ProgressEvent:
        """``event`` with its ETA covering what comes after its stage."""
        if event.eta_seconds is None:
            return event
        after = 0.0
        if event.stage == "denoise" and self.decode_s is not None:
            after = self.decode_s + (self.write_s or 0.0)
        elif event.stage == "decode" and self.write_s is not None:
            after = self.write_s
        if not after:
            return event
        eta = event.eta_seconds + after
        return replace(event, eta_seconds=eta, message=_ETA_WORDS.sub(f"ETA {duration_words(eta)}", event.message))

    def learn(self, result: dict[str, Any]) -> None:
        """Keep a finished job's decode and write seconds for the next job of this model."""
        seconds = result.get("seconds") or {}
        if self.fingerprint and result.get("success") and "decode" in seconds and self.work:
            _SEEN[self.fingerprint] = (self.work, float(seconds["decode"]), float(seconds.get("write", 0.0)))


def _from_history(fingerprint: str) -> tuple[float, float, float] | None:
    """The last successful generation of this model in the performance history with a decode time."""
    try:
        from core.monitor import GENERATION, get_performance_monitor
        runs = get_performance_monitor().operations(GENERATION, model=fingerprint, include_failed=False)
    except Exception:  # noqa: BLE001 - an estimate only: no history, no estimate
        return None
    for run in reversed(runs):
        decode = run.stage_seconds.get("decode")
        if decode and run.width and run.height and run.frames:
            return (float(run.width * run.height * run.frames), float(decode),
                    float(run.stage_seconds.get("write", 0.0)))
    return None
