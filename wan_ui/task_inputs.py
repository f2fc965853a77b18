"""The Generate tab's task inputs: exactly those the chosen model's task takes, each with a preview.

Which task takes which input comes from ``core.run.tasks`` (:func:`~core.run.tasks.form_fields`),
the one table the CLI and the checks read too. A file given to an input is checked at once by
``core.run.tasks.check_one`` (the checks Generate makes before loading), and the sentence or
the file's facts ("9 frames · 832x480 · 16 fps") is shown beside it. A dropped video is taken
as it is (no conversion); images are taken by a file box so that a broken one gets our sentence,
and shown as a thumbnail once it reads.

Usage (inside a Blocks context)::

    inputs = build_task_inputs()
    picked.then(show_for_model, inputs=[path, inputs.mode], outputs=inputs.model_outputs())
    values = inputs.values()        # the components Generate reads, in VALUE_FIELDS order
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from core.run.tasks import ANIMATE_MODES, INPUTS, check_one, form_fields

#: The files a form can take, in the order the Generate function reads them (after image, last_image).
FILE_FIELDS = ("video", "mask", "reference_images", "pose_video", "face_video", "background_video", "mask_video")
#: The numbers and the mode, in that order after the files.
OPTION_FIELDS = ("strength", "conditioning_scale", "mode", "segment_frame_length")
VALUE_FIELDS = (*FILE_FIELDS, *OPTION_FIELDS)
_LABELS = {"video": "Video (source for video-to-video, or VACE's control video)",
           "mask": "Mask video (white = generate, black = keep)", "reference_images": "Reference images",
           "pose_video": "Pose video", "face_video": "Face video", "background_video": "Background video",
           "mask_video": "Mask video (the person to replace)"}
_IMAGE_TYPES = [".png", ".jpg", ".jpeg", ".webp"]


@dataclass
class Slot:
    """One input: the box that takes the file, its preview (images) and the note beside it."""

    field: str
    group: Any
    box: Any
    preview: Any
    note: Any


@dataclass
class TaskInputs:
    """The task inputs' components; ``slots`` by field (image, last_image and FILE_FIELDS)."""

    slots: dict[str, Slot]
    strength: Any
    conditioning_scale: Any
    mode: Any
    segment_frame_length: Any
    task: Any                   # gr.State: the task shown (the mode toggle reads it)

    def option(self, name: str) -> Any:
        return getattr(self, name)

    def values(self) -> list[Any]:
        """The components Generate reads after image and last_image, in VALUE_FIELDS order."""
        return [self.slots[f].box for f in FILE_FIELDS] + [self.option(o) for o in OPTION_FIELDS]

    def show_outputs(self) -> list[Any]:
        """What :func:`show_for_model` and :func:`show_for_mode` update, in their order."""
        out = []
        for slot in self.slots.values():
            out += [slot.group, slot.box]
        return out + [self.option(o) for o in OPTION_FIELDS]

    def model_outputs(self) -> list[Any]:
        """What :func:`show_for_model` updates: :meth:`show_outputs` and the task."""
        return [*self.show_outputs(), self.task]


def _elem(field: str) -> str:
    return "wc-gen-" + field.replace("_", "-")


def build_task_inputs() -> TaskInputs:
    """Add every task input, hidden, to the current Blocks context (shown per model by show_for_model)."""
    slots: dict[str, Slot] = {}
    with gr.Row(equal_height=False, elem_id="wc-gen-inputs"):
        for field in ("image", "last_image"):
            label = "Starting image" if field == "image" else "Last frame"
            with gr.Column(visible=False, min_width=200, elem_id=_elem(field) + "-slot") as group:
                box = gr.File(label=label, file_types=_IMAGE_TYPES, type="filepath", elem_id=_elem(field),
                              height=120)
                preview = gr.Image(show_label=False, interactive=False, visible=False, height=140,
                                   elem_id=_elem(field) + "-preview")
                note = gr.HTML("", elem_id=_elem(field) + "-note")
            slots[field] = Slot(field, group, box, preview, note)
    with gr.Row(equal_height=False):
        for field in FILE_FIELDS:
            with gr.Column(visible=False, min_width=240, elem_id=_elem(field) + "-slot") as group:
                if field == "reference_images":
                    box = gr.File(label=_LABELS[field], file_count="multiple", file_types=_IMAGE_TYPES,
                                  type="filepath", elem_id=_elem(field), height=120)
                    preview = gr.Gallery(show_label=False, visible=False, height=120, columns=4,
                                         allow_preview=False, interactive=False, elem_id=_elem(field) + "-preview")
                else:   # the player is the preview; a dropped video is taken as it is (no conversion)
                    box = gr.Video(label=_LABELS[field], sources=["upload"], format=None, include_audio=True,
                                   height=180, elem_id=_elem(field))
                    preview = None
                note = gr.HTML("", elem_id=_elem(field) + "-note")
            slots[field] = Slot(field, group, box, preview, note)
    with gr.Row():
        mode = gr.Radio(label="Animate mode", choices=list(ANIMATE_MODES), value="animate", visible=False,
                        elem_id="wc-gen-mode", info="replace: put the character into the background video")
        segment = gr.Number(label="Segment length (frames)", value=77, precision=0, minimum=1, visible=False,
                            elem_id="wc-gen-segment-frame-length")
        strength = gr.Slider(label="Strength (how much of the video changes)", minimum=0.05, maximum=1.0,
                             step=0.05, value=0.8, visible=False, elem_id="wc-gen-strength")
        scale = gr.Number(label="Conditioning scale", value=1.0, minimum=0, step=0.1, visible=False,
                          elem_id="wc-gen-conditioning-scale")
    inputs = TaskInputs(slots, strength, scale, mode, segment, gr.State("t2v"))
    for slot in slots.values():
        outputs = [slot.note] + ([slot.preview] if slot.preview is not None else [])
        slot.box.change(_checker(slot.field), inputs=slot.box, outputs=outputs, api_visibility="private",
                        show_progress="hidden")
    mode.input(show_for_mode, inputs=[mode, inputs.task], outputs=inputs.show_outputs(), api_visibility="private")
    return inputs


# --- which inputs show ----------------------------------------------------------------------

def _updates(task: str | None, mode: str | None, clear: bool) -> list[Any]:
    shown = set(form_fields(task, mode))
    out: list[Any] = []
    for field in ("image", "last_image", *FILE_FIELDS):
        visible = field in shown
        out.append(gr.update(visible=visible))
        out.append(gr.update(visible=True, value=None) if clear and not visible else gr.update(visible=True))
    return out + [gr.update(visible=name in shown) for name in OPTION_FIELDS]


def show_for_model(path: str, mode: str | None) -> list[Any]:
    """A model was chosen: show the inputs its task takes, hide (and empty) the others."""
    from wan_ui import common
    from wan_ui.model_check import clean_path
    target = clean_path(path)
    task = None
    if target:
        try:
            report = common.inspect_cached(target)
            task = None if report.is_collection else report.task
        except Exception:  # noqa: BLE001 - the model line says what is wrong with the path
            task = None
    return [*_updates(task or "t2v", mode, clear=True), task or "t2v"]


def show_for_mode(mode: str, task: str) -> list[Any]:
    """Animate's mode changed: "replace" shows the background and mask videos, "animate" hides them."""
    return _updates(task, mode, clear=False)


# --- the note beside an input ----------------------------------------------------------------

def _checker(field: str) -> Any:
    def check(value: Any) -> Any:
        return check_input(field, value)
    check.__name__ = f"check_{field}"
    return check


def _file_paths(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    items = value if isinstance(value, (list, tuple)) else [value]
    return [str(v.get("path") if isinstance(v, dict) else getattr(v, "path", v)) for v in items if v]


def check_input(field: str, value: Any) -> tuple[Any, ...]:
    """The note (and preview, for images) for one input, from the same checks Generate makes first.

    Returns (note HTML,) for videos, (note HTML, preview update) for images.
    """
    paths = _file_paths(value)
    has_preview = INPUTS[field].kind != "video"
    if not paths:
        return ("", gr.update(value=None, visible=False)) if has_preview else ("",)
    given: Any = paths if INPUTS[field].kind == "images" else paths[0]
    info, errors = check_one(field, given)
    if errors:
        note = render_note(_short(" ".join(errors), paths), bad=True)
        return (note, gr.update(value=None, visible=False)) if has_preview else (note,)
    assert info is not None
    facts = f"{info.width}x{info.height}"
    if info.kind == "video":
        facts = f"{info.frames} frames · {facts}" + (f" · {info.fps:g} fps" if info.fps else "")
    if INPUTS[field].kind == "images":
        facts = f"{len(paths)} image{'s' if len(paths) > 1 else ''} · first {facts}"
    note = render_note(facts)
    if not has_preview:
        return (note,)
    preview = paths if INPUTS[field].kind == "images" else paths[0]
    return note, gr.update(value=preview, visible=True)


def _short(sentence: str, paths: list[str]) -> str:
    """The sentence with each uploaded file's temporary path shown as its name."""
    for path in paths:
        sentence = sentence.replace(path, Path(path).name)
    return sentence


def render_note(text: str, bad: bool = False) -> str:
    """The line beside an input: its facts, or what is wrong with it."""
    tone = "bad" if bad else "ok"
    mark = "✗ " if bad else ""
    return f'<p class="wc-input-note wc-{tone}" data-tone="{tone}">{mark}{html.escape(text)}</p>'


# --- what Generate passes ------------------------------------------------------------------------

def task_values(task: str | None, values: dict[str, Any]) -> dict[str, Any]:
    """The form's task inputs as GenerationConfig fields: files as paths, only what ``task`` takes as shown.

    Numbers of hidden controls are left out (a T2V model's strength only with a video), so that a
    form never sends what its task does not take; a file the task does not take is passed on and
    refused by the checks with their sentence (it can only come from the API).

    >>> task_values("t2v", {"video": "/v.mp4", "strength": 0.5, "mode": "animate"})
    {'video': '/v.mp4', 'strength': 0.5}
    """
    mode = values.get("mode") if values.get("mode") in ANIMATE_MODES else None
    shown = form_fields(task, mode)
    out: dict[str, Any] = {}
    for field in FILE_FIELDS:
        paths = _file_paths(values.get(field))
        if paths and (field in shown or field not in form_fields(task, "replace")):
            out[field] = paths if INPUTS[field].kind == "images" else paths[0]
    for name in OPTION_FIELDS:
        value = values.get(name)
        if value is None or value == "" or name not in shown:
            continue
        if name == "strength" and "video" not in out:
            continue
        out[name] = value if name == "mode" else int(value) if name == "segment_frame_length" else float(value)
    return out
