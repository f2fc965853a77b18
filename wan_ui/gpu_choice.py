"""The Generate tab's "GPUs" control: shown only when more than one GPU is visible.

Its choices are the GPU counts (1..N visible) that split the chosen model at the chosen size
(attention heads and latent tokens divide by the count; see :mod:`core.run.parallel`), plus
"auto" (every GPU when the model does not fit one, else one)::

    from wan_ui.gpu_choice import gpu_control
    gpu_control(hardware, report, 832, 480, 81)
    # {"visible": True, "choices": ["1", "2", "4", "auto"], "value": "auto"}

No torch or diffusers: the probe and the report are what the tab already has.
"""

from __future__ import annotations

from typing import Any

from core.check.report import ModelReport
from core.run.hardware import HardwareInfo

AUTO = "auto"
INFO = ("Spread one generation over several GPUs of this computer (the video's tokens split "
        "between them; weights sharded when one GPU cannot hold them). Counts that cannot split "
        "this model at this size are left out.")


def gpu_choices(hardware: HardwareInfo, report: ModelReport | None = None, width: int | None = None,
                height: int | None = None, frames: int | None = None) -> list[str]:
    """``["1", ..., "auto"]``: the counts up to the visible GPUs that split ``report`` at this size."""
    from core.run.parallel import cannot_split, working_counts
    visible = len(hardware.gpus)
    counts = list(range(1, visible + 1))
    if report is not None and cannot_split(report):
        counts = [1]
    elif report is not None and width and height and frames:
        counts = [n for n in working_counts(report, int(width), int(height), int(frames), visible) if n <= visible]
    return [str(n) for n in counts or [1]] + [AUTO]


def gpu_control(hardware: HardwareInfo, report: ModelReport | None = None, width: int | None = None,
                height: int | None = None, frames: int | None = None, value: str | None = None) -> dict[str, Any]:
    """The control's visibility, choices and value (a choice kept when it is still offered, else "auto")."""
    choices = gpu_choices(hardware, report, width, height, frames)
    return {"visible": len(hardware.gpus) > 1, "choices": choices,
            "value": value if value in choices else AUTO}


def ranks_for(choice: str | None, report: ModelReport, request: Any, hardware: HardwareInfo) -> int:
    """How many ranks a run with this choice uses: the number, or :func:`core.run.parallel.choose_auto`."""
    from core.run.parallel import choose_auto
    text = str(choice or "1").strip().lower()
    if text == AUTO:
        return choose_auto(report, request, hardware, request.width, request.height, request.num_frames)
    try:
        return max(1, int(text))
    except ValueError:
        return 1
