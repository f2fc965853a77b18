"""What a task's inputs add to a generation's memory, for the memory plan (no torch).

VACE adds one latent frame per reference image to every transformer call and encodes its
control video twice (the kept and the changed parts); video-to-video encodes its source video;
Animate runs in segments of ``segment_frame_length`` frames (each call sees one segment and the
character's latent frame, encodes the segment's pose and, in replace mode, background and mask)
and keeps the frames made so far. Every decoded input frame is held in RAM.

Usage::

    from core.run.input_memory import input_load

    load = input_load("vace", settings)      # from checked settings (core.run.generation.resolve)
    load.reference_frames, load.encoded_frames, load.decoded_mb, load.words()
    request = OptimizationRequest(..., inputs=load)   # memory_estimate counts it
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

MIB = 1024 * 1024
_ANIMATE_SEGMENT = 77          # diffusers' default segment_frame_length
_ANIMATE_OVERLAP = 1           # diffusers' prev_segment_conditioning_frames


@dataclass(frozen=True)
class InputLoad:
    """The memory a request's inputs add. Frames are pixel frames; sizes in MiB.

    >>> InputLoad(reference_frames=2, what=("2 reference images",)).words()
    '2 reference images'
    """

    reference_frames: int = 0          # latent frames added to each transformer call (VACE references)
    encoded_frames: int = 0            # pixel frames the VAE encodes at once (at the output size)
    segment_frames: int | None = None  # Animate: frames one transformer call sees
    segments: int = 1
    decoded_mb: float = 0.0            # decoded input frames in RAM (8-bit, at their own size)
    what: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.reference_frames or self.encoded_frames or self.segment_frames or self.decoded_mb)

    def words(self) -> str:
        return ", ".join(self.what)

    def to_dict(self) -> dict[str, Any]:
        return {"reference_frames": self.reference_frames, "encoded_frames": self.encoded_frames,
                "segment_frames": self.segment_frames, "segments": self.segments,
                "decoded_mb": round(self.decoded_mb, 1), "what": list(self.what)}


def animate_segments(frames: int, segment: int) -> int:
    """How many segments diffusers' WanAnimatePipeline runs for ``frames`` pose frames.

    >>> animate_segments(81, 77), animate_segments(200, 77)
    (2, 3)
    """
    step = max(1, segment - _ANIMATE_OVERLAP)
    return max(1, math.ceil(max(0, frames - _ANIMATE_OVERLAP) / step))


def animate_segment_length(asked: int) -> int:
    """The segment length diffusers uses for ``asked`` (rounded to 4k+1 as WanAnimatePipeline does).

    >>> animate_segment_length(77), animate_segment_length(20)
    (77, 21)
    """
    return max(1, asked if asked % 4 == 1 else asked // 4 * 4 + 1)


def input_load(task: str | None, settings: Any) -> InputLoad:
    """What ``settings``' inputs add (``settings.inputs``: field -> InputInfo, from the checks).

    Nothing for a request without inputs (text-to-video, an image only).
    """
    infos = getattr(settings, "inputs", None) or {}
    frames = settings.num_frames
    decoded = sum(min(i.frames, frames) * i.width * i.height * 3 for i in infos.values()) / MIB
    refs = sum(1 for key in infos if key.startswith("reference_images"))
    what: list[str] = []
    if task == "vace":
        what.append(f"VACE's control video encoded as {2 * frames} frames (kept and changed parts)")
        if refs:
            what.append(f"{refs} reference image{'s' if refs > 1 else ''} ({refs} more latent "
                        f"frame{'s' if refs > 1 else ''} in every step)")
        return InputLoad(refs, 2 * frames, None, 1, decoded, tuple(what))
    if task == "animate" and "pose_video" in infos:
        segment = getattr(settings, "segment_frame_length", None) or _ANIMATE_SEGMENT
        segment = animate_segment_length(segment)
        segments = animate_segments(min(infos["pose_video"].frames, frames), segment)
        replace = getattr(settings, "mode", None) == "replace"
        encoded = segment * (3 if replace else 2)   # pose (+ background and mask) and the previous frames
        what.append(f"Animate in {segments} segment{'s' if segments > 1 else ''} of {segment} frames"
                    + (" (background and mask encoded too)" if replace else ""))
        return InputLoad(1, encoded, segment, segments, decoded, tuple(what))
    if "video" in infos:
        what.append(f"the source video encoded ({frames} frames)")
        return InputLoad(0, frames, None, 1, decoded, tuple(what))
    if decoded:
        return InputLoad(decoded_mb=decoded, what=("the input images",))
    return InputLoad()
