"""The Generate form's defaults: what a chosen model puts into the form, and what it leaves alone.

No Gradio here: plain functions the Generate tab calls, easy to test.

- :func:`model_defaults`: a model's size presets (its own, then a Quick test), frames, fps, steps, guidance.
- :func:`untouched`: which fields still hold what the form last filled in (the person has not
  changed them), so choosing another model fills only those.
- :func:`quick_test`: the smallest size the model accepts, with few frames and steps.
- :func:`clip_words`: "17 frames = 1.1 s at 16 fps" beside the frame count.
- :func:`missing_words`: why Generate is not yet possible ("Write a prompt…"), or "".

Usage::

    d = model_defaults(report)            # FormDefaults(width=1280, height=720, frames=81, fps=16, ...)
    keep = untouched({"width": 1280}, filled={"width": 832})      # {}: the width was typed: it stays
    clip_words(17, 16)                    # "17 frames = 1.1 s at 16 fps"
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

QUICK = "quick"                 # the Quick test choice's value in the size presets
QUICK_FRAMES = 9                # 4k+1: three latent frames, 0.6 s at 16 fps
QUICK_STEPS = 4                 # enough for both experts of an A14B model to run
FIELDS = ("width", "height", "frames", "steps", "guidance", "guidance_2")
#: The values the form starts with (before any model is chosen): untouched until the person changes them.
START = {"width": 832, "height": 480, "frames": 81, "steps": 50, "guidance": 5.0, "guidance_2": 3.0}


@dataclass(frozen=True)
class QuickTest:
    """The Quick test preset: the smallest size the model accepts, few frames and steps."""

    width: int
    height: int
    frames: int = QUICK_FRAMES
    steps: int = QUICK_STEPS

    @property
    def label(self) -> str:
        return f"Quick test: {self.width}x{self.height}, {self.frames} frames, {self.steps} steps"


@dataclass(frozen=True)
class FormDefaults:
    """What a model puts into the form when it is chosen."""

    width: int
    height: int
    frames: int
    fps: int
    steps: int
    guidance: float
    guidance_2: float
    sizes: tuple[tuple[int, int], ...]
    quick: QuickTest

    def values(self) -> dict[str, Any]:
        """The fields of :data:`FIELDS` and their defaults."""
        return {"width": self.width, "height": self.height, "frames": self.frames, "steps": self.steps,
                "guidance": self.guidance, "guidance_2": self.guidance_2}

    def size_choices(self) -> list[tuple[str, str]]:
        """The size presets, (label, value): the model's own sizes, the default first, then the Quick test."""
        own = [(f"{w}x{h}" + (" (default)" if (w, h) == (self.width, self.height) else ""), f"{w}x{h}")
               for w, h in self.sizes]
        return [*own, (self.quick.label, QUICK)]

    def size_value(self, width: Any, height: Any) -> str | None:
        """The preset that the form's size is, or None."""
        size = (_number(width), _number(height))
        return f"{size[0]:g}x{size[1]:g}" if size in {(float(w), float(h)) for w, h in self.sizes} else None


def quick_test(report: Any) -> QuickTest:
    """The smallest size ``report``'s model accepts (16x16, or 32x32 with the Wan2.2 VAE), 9 frames, 4 steps."""
    from core.run.generation import size_multiple
    side = size_multiple(report)
    return QuickTest(side, side)


def model_defaults(report: Any, entry: Any = None) -> FormDefaults:
    """The form's defaults for ``report`` (``entry``: its registry entry, None for the fallback)."""
    from core.run.generation import FALLBACK
    default = tuple(entry.default_size) if entry else FALLBACK["size"]
    sizes = tuple(dict.fromkeys([default, *(tuple(s) for s in (entry.sizes if entry else ()))]))
    guidance = float(entry.guidance if entry else FALLBACK["guidance"])
    guidance_2 = float(entry.guidance_2) if entry and entry.guidance_2 is not None else guidance
    return FormDefaults(width=default[0], height=default[1], frames=entry.frames if entry else FALLBACK["frames"],
                        fps=entry.fps if entry else FALLBACK["fps"], steps=entry.steps if entry else FALLBACK["steps"],
                        guidance=guidance, guidance_2=guidance_2, sizes=sizes, quick=quick_test(report))


def untouched(current: dict[str, Any], filled: dict[str, Any]) -> set[str]:
    """The fields whose value is still what the form last filled in (``filled``): a model may change them.

    A field the person typed into, or set with a preset, Reuse or the LoRAs' distillation
    preset, holds another value and is left as it is.
    """
    return {name for name in FIELDS if name in filled and _number(current.get(name)) == _number(filled[name])}


def to_fill(defaults: FormDefaults, current: dict[str, Any] | None, filled: dict[str, Any] | None,
            size: str | None = None) -> dict[str, Any]:
    """What a newly chosen model puts into the form: its defaults in the :func:`untouched` fields (all of
    them without ``current``/``filled``); with the Quick test chosen (``size``), its own smallest size."""
    values = defaults.values()
    fill = values if current is None or filled is None else {
        k: v for k, v in values.items() if k in untouched(current, filled)}
    if size == QUICK:
        fill = {**fill, "width": defaults.quick.width, "height": defaults.quick.height}
        fill.update({k: v for k, v in (("frames", defaults.quick.frames), ("steps", defaults.quick.steps))
                     if _number((current or {}).get(k)) == v})
    return fill


def clip_words(frames: Any, fps: Any) -> str:
    """The clip's length beside the frame count: "17 frames = 1.1 s at 16 fps" (or why the count is refused)."""
    n, rate = _number(frames), _number(fps) or 16.0
    if n is None or n < 1 or not n.is_integer():
        return "4k+1 frames: 9, 17, 33, 81…"
    n = int(n)
    if (n - 1) % 4:
        low = (n - 1) // 4 * 4 + 1
        return f"{n} frames: must be 4k+1; use {low} or {low + 4}"
    return f"{n} frames = {n / rate:.1f} s at {rate:g} fps"


def missing_words(path: str, prompt: str) -> str:
    """Why Generate cannot run yet, or "" when a model and a prompt are there."""
    no_model, no_prompt = not (path or "").strip(), not (prompt or "").strip()
    if no_model and no_prompt:
        return "Choose a model and write a prompt to generate."
    if no_model:
        return "Choose a model to generate: pick one in the list, or type the path of a model folder."
    if no_prompt:
        return "Write a prompt to generate: what the video shows."
    return ""


def _number(value: Any) -> float | None:
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
