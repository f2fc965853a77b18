"""The Generate tab's LoRA picker: files from ``loras_dir``, a path box and drag-and-drop, each with its
check verdict against the chosen model and its own strength slider (one per expert it goes to on Wan2.2
A14B), and a distillation LoRA's preset (steps, guidance 1.0, scheduler shift) in one click that says
what it changed.

The words and checks come from core.check (the header of each file; the prediction against the
model runs diffusers' converters on meta tensors, no weights). No torch or diffusers here::

    from wan_ui.lora_picker import build_lora_picker, lora_values
    picker = build_lora_picker()              # inside the Generate form
    lora_values(report, ["a.safetensors"], 0.8, 1.0)   # ["a.safetensors:0.8"] for GenerationConfig.loras
    lora_values(a14b, ["a.safetensors"], {"a.safetensors": {"high": 0.5, "low": 1.0}}, None)
    # ["a.safetensors:0.5@high", "a.safetensors:1@low"]: each LoRA at its own strengths
"""

from __future__ import annotations

import html
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from core.check.report import ModelReport

MAX_FILES = 200


def lora_files(folder: str | os.PathLike[str] | None) -> list[str]:
    """The .safetensors files in ``folder`` and its subfolders (sorted; none when it does not exist)."""
    if not folder or not Path(folder).is_dir():
        return []
    found: list[str] = []
    for root, _, names in os.walk(folder):
        found += [os.path.join(root, n) for n in names if n.lower().endswith(".safetensors")]
        if len(found) >= MAX_FILES:
            break
    return sorted(found)[:MAX_FILES]


def file_label(path: str) -> str:
    """'Wan2.2-Lightning_..._HIGH_fp16 — Wan 14B, high-noise, 4-step distillation' (✗ when not usable)."""
    from core.check.lora_match import read_lora
    info, problems, _ = read_lora(path)
    name = Path(path).stem
    if info is None or problems or not info.usable:
        reason = (problems or list(info.findings if info else []))
        return f"{name} — ✗ {reason[0].message[:80] if reason else 'not a LoRA'}"
    return f"{name} — {info.summary.split(' for ', 1)[-1]}"


def choices(folder: str | os.PathLike[str] | None, extra: list[str] | None = None) -> list[tuple[str, str]]:
    """The picker's (label, path) pairs: the folder's files, then ``extra`` paths (typed or dropped)."""
    paths = list(dict.fromkeys(lora_files(folder) + [p for p in extra or [] if p]))
    return [(file_label(p), p) for p in paths]


def lora_values(report: ModelReport | None, paths: list[str] | None, strength: Any, strength_low: Any) -> list[str]:
    """The picked LoRAs as ``FILE:STRENGTH[@high|@low]`` for GenerationConfig.loras.

    ``strength``: each LoRA's own strengths, ``{path: {"high": x, "low": y}}`` (the picker's sliders;
    ``strength_low`` is then not used), or one number for all (``strength_low``: theirs on the
    low-noise expert). On a two-expert model a LoRA named for one expert goes there at that expert's
    strength; one that names none goes to both, each at its expert's strength (two entries when they differ).
    """
    from core.check.lora_match import read_lora
    out: list[str] = []
    for path in paths or []:
        high, low = _strengths(strength, strength_low, path)
        if report is None or report.experts < 2:
            out.append(f"{path}:{high:g}")
            continue
        info, _, _ = read_lora(path)
        expert = info.expert if info else None
        if expert == "high" or (expert is None and high == low):
            out.append(f"{path}:{high:g}" + ("@high" if expert else ""))
        elif expert == "low":
            out.append(f"{path}:{low:g}@low")
        else:
            out += [f"{path}:{high:g}@high", f"{path}:{low:g}@low"]
    return out


def _strengths(strength: Any, strength_low: Any, path: str) -> tuple[float, float]:
    """(high-noise or only, low-noise) strength of one LoRA: its own when ``strength`` maps paths to them."""
    if isinstance(strength, dict):
        own = strength.get(path) or {}
        high = _number(own.get("high"), 1.0)
        return high, _number(own.get("low"), high)
    high = _number(strength, 1.0)
    return high, _number(strength_low, high)


def _number(value: Any, default: float) -> float:
    try:
        return float(value) if value not in (None, "") else default
    except (TypeError, ValueError):
        return default


def verdict_html(report: ModelReport | None, texts: list[str]) -> str:
    """Each picked LoRA against the model: where it goes, layers applied, findings (before anything loads)."""
    if not texts:
        return ""
    from core.check.lora_match import choices_from_args, match_loras
    picked, problems = choices_from_args(texts)
    rows = [f"<li class='wc-error'>{html.escape(p)}</li>" for p in problems]
    if report is None or not report.is_wan:
        rows.append("<li>Choose a Wan model to see how each LoRA fits it.</li>")
    else:
        for m in match_loras(report, picked):
            where = {"both": "both experts", "high": "high-noise expert", "low": "low-noise expert",
                     "transformer": "the transformer"}.get(m.target or "", "—")
            counts = f", {m.applied} layers applied, {m.not_applied} not" if m.applied is not None else ""
            mark = "✗" if not m.ok else "!" if any(f.severity.value == "warning" for f in m.findings) else "✓"
            lines = "".join(f"<div class='wc-{f.severity.value}'>{html.escape(f.message)}</div>" for f in m.findings)
            rows.append(f"<li>{mark} <b>{html.escape(Path(m.choice.path).name)}</b> "
                        f"(strength {m.choice.strength:g}) → {where}{counts}{lines}</li>")
    return f"<ul class='wc-lora-verdicts' id='wc-lora-verdicts'>{''.join(rows)}</ul>"


def distill_preset(paths: list[str] | None) -> dict[str, Any] | None:
    """The settings a picked distillation LoRA needs (steps, guidance 1.0, the shift its publisher gives)."""
    from core.check.lora_match import read_lora
    from core.check.lora_registry import DISTILL_LORAS
    for path in paths or []:
        info, _, _ = read_lora(path)
        if info is not None and info.distill_steps:
            entry = next((e for e in DISTILL_LORAS if e.id == info.registry_id), None)
            return {"file": Path(path).name, "steps": info.distill_steps, "guidance": entry.guidance if entry else 1.0,
                    "shift": entry.shift if entry else None}
    return None


def apply_preset(paths: list[str] | None, steps: Any, guidance: Any, guidance_2: Any,
                 shift: Any = None) -> tuple[Any, Any, Any, Any, str]:
    """The preset button: (steps, guidance, guidance_2, shift, what changed)."""
    preset = distill_preset(paths)
    if preset is None:
        return gr.skip(), gr.skip(), gr.skip(), gr.skip(), "No distillation LoRA is picked."
    wanted = (("steps", steps, preset["steps"]), ("guidance", guidance, preset["guidance"]),
              ("guidance (low-noise)", guidance_2, preset["guidance"]), ("scheduler shift", shift, preset["shift"]))
    changes = [f"{name} {_shown(old)} → {new:g}" for name, old, new in wanted
               if new is not None and _number(old, -1.0) != float(new)]
    note = f"For {preset['file']}: " + (", ".join(changes) if changes else "nothing to change") + "."
    shift_text = f"{preset['shift']:g}" if preset["shift"] else gr.skip()
    return preset["steps"], preset["guidance"], preset["guidance"], shift_text, note


def shift_problem(text: Any) -> str:
    """The shift field's sentence: empty is the model's own shift; anything else must be a number above 0."""
    value = str(text or "").strip()
    if not value:
        return ""
    number = _number(value, 0.0)
    if not (number > 0 and number == number and number != float("inf")):
        return (f"The scheduler shift must be a number above 0 (e.g. 5), not {value!r}; until then the model's own "
                "shift is used. Leave it empty for the model's own.")
    return ""


def _shown(value: Any) -> str:
    return "the model's" if value in (None, "") or _number(value, 0.0) <= 0 else f"{value}"


SLOTS = 6        # LoRAs with sliders of their own; more picked ones go on at strength 1


@dataclass
class LoraPicker:
    """The picker's components; ``inputs`` go into the form (after the others) in this order.

    ``strengths`` (a State) holds each picked LoRA's strengths, ``{path: {"high": x, "low": y}}``, set by
    the slider pair of its slot (``sliders``: one pair per slot; the low-noise one shows on Wan2.2 A14B).
    """

    files: Any
    path_box: Any
    drop: Any
    strengths: Any
    sliders: list[tuple[Any, Any]]
    verdicts: Any
    preset: Any
    note: Any
    shift: Any

    @property
    def inputs(self) -> list[Any]:
        # GenerateTab's form takes (files, strength, strength_low, shift): the per-LoRA map fills both
        return [self.files, self.strengths, self.strengths, self.shift]

    @property
    def slider_list(self) -> list[Any]:
        return [s for pair in self.sliders for s in pair]


def build_lora_picker() -> LoraPicker:
    """The LoRA fold of the Generate form (call inside a Blocks context)."""
    with gr.Accordion("LoRAs", open=False, elem_id="wc-gen-loras"):
        files = gr.Dropdown(label="LoRA files", multiselect=True, choices=choices(_folder()), value=[],
                            elem_id="wc-gen-lora-files",
                            info=f"From {_folder() or 'loras_dir in config.yaml'}; each with how it fits the model.")
        with gr.Row():
            path_box = gr.Textbox(label="Add a LoRA by its path", max_lines=1, scale=4, elem_id="wc-gen-lora-path",
                                  placeholder="/path/to/a_lora.safetensors, then Enter")
            drop = gr.File(label="…or drop one here", file_types=[".safetensors"], scale=2, elem_id="wc-gen-lora-drop")
        sliders = []
        for i in range(SLOTS):           # one row per picked LoRA: its strength (per expert on Wan2.2 A14B)
            with gr.Row():
                sliders.append((
                    gr.Slider(label="Strength", minimum=-2, maximum=2, step=0.05, value=1.0, visible=False,
                              elem_id=f"wc-gen-lora-strength-{i}"),
                    gr.Slider(label="Strength, low-noise expert", minimum=-2, maximum=2, step=0.05, value=1.0,
                              visible=False, elem_id=f"wc-gen-lora-strength-low-{i}")))
        strengths = gr.State({})
        verdicts = gr.HTML("", elem_id="wc-gen-lora-verdicts")
        # a text box: an empty gr.Number is sent as 0 once shown, which is no shift (issue 10)
        shift = gr.Textbox(label="Scheduler shift", value="", max_lines=1, placeholder="the model's own",
                           elem_id="wc-gen-shift",
                           info="Empty: the model's own. Distillation LoRAs want their publisher's (the button below).")
        with gr.Row():
            preset = gr.Button("Use the distillation LoRA's settings", size="sm", visible=False,
                               elem_id="wc-gen-lora-preset")
            note = gr.Markdown("", elem_id="wc-gen-lora-note", elem_classes=["wc-note"])
    return LoraPicker(files, path_box, drop, strengths, sliders, verdicts, preset, note, shift)


def _folder() -> str | None:
    from core.config import ConfigError, current
    try:
        return str(current().loras_dir)
    except (ConfigError, AttributeError):
        return None


def add_path(current: list[str] | None, given: Any) -> tuple[Any, str]:
    """A typed or dropped file joins the choices and the selection; (dropdown update, cleared path box)."""
    if isinstance(given, dict):
        given = given.get("path")
    path = str(getattr(given, "name", given) or "").strip().strip('"')
    picked = list(current or [])
    if path and path not in picked:
        picked.append(path)
    return gr.update(choices=choices(_folder(), picked), value=picked), ""


def slot_updates(report: ModelReport | None, picked: list[str] | None, strengths: dict | None) -> list[Any]:
    """Each slot's slider pair for the picked LoRAs: the LoRA's name, where it goes, its strengths.

    One slider on a one-transformer model; on Wan2.2 A14B the expert(s) the LoRA goes to (the one its
    file names, else both, each with its own slider).
    """
    from core.check.lora_match import read_lora
    picked, strengths = list(picked or []), strengths or {}
    two = report is not None and report.experts >= 2
    out: list[Any] = []
    for i in range(SLOTS):
        if i >= len(picked):
            out += [gr.update(visible=False), gr.update(visible=False)]
            continue
        path = picked[i]
        name = Path(path).name
        high, low = _strengths(strengths, None, path)
        info, _, _ = read_lora(path)
        expert = info.expert if info is not None and two else None
        if not two:
            out += [gr.update(visible=True, label=f"{name}: strength", value=high), gr.update(visible=False)]
        else:
            out += [gr.update(visible=expert != "low", label=f"{name}: strength on the high-noise expert", value=high),
                    gr.update(visible=expert != "high", label=f"{name}: strength on the low-noise expert",
                              value=low if expert is None else high)]
    return out


def set_strength(strengths: dict | None, picked: list[str] | None, index: int, which: str, value: Any) -> dict:
    """A slot's slider moved: the new strengths map (``which``: "high", or "low" for the low-noise slider;
    a LoRA named for the low-noise expert keeps its one strength under "high")."""
    from core.check.lora_match import read_lora
    picked = list(picked or [])
    new = {k: dict(v) for k, v in (strengths or {}).items()}
    if index < len(picked):
        path = picked[index]
        info, _, _ = read_lora(path)
        key = "high" if which == "low" and info is not None and info.expert == "low" else which
        new.setdefault(path, {})[key] = _number(value, 1.0)
    return new


def _report(path: str) -> ModelReport | None:
    from wan_ui import common
    if not path:
        return None
    try:
        return common.inspect_cached(path)
    except Exception:  # noqa: BLE001 - no model yet: verdicts say so
        return None


def refresh(path: str, picked: list[str] | None, strengths: dict | None) -> tuple[Any, ...]:
    """After a change of model, LoRAs or strengths: verdicts, the preset button, each slot's sliders."""
    report = _report(path)
    texts = lora_values(report, picked, strengths or {}, None)
    return (verdict_html(report, texts), gr.update(visible=distill_preset(picked) is not None),
            *slot_updates(report, picked, strengths))


def wire(picker: LoraPicker, path: Any, steps: Any, guidance: Any, guidance_2: Any) -> None:
    """Connect the picker to the form: verdicts and sliders follow the model and the picks; each slider sets
    its LoRA's strength; the preset sets the form."""
    outputs = [picker.verdicts, picker.preset, *picker.slider_list]
    inputs = [path, picker.files, picker.strengths]
    gr.on([picker.files.change, path.change], refresh, inputs=inputs, outputs=outputs, api_visibility="private",
          show_progress="hidden")
    for index, pair in enumerate(picker.sliders):
        for which, slider in zip(("high", "low"), pair):
            slider.release(lambda s, p, v, i=index, w=which: set_strength(s, p, i, w, v),
                           inputs=[picker.strengths, picker.files, slider], outputs=picker.strengths,
                           api_visibility="private", show_progress="hidden").then(
                refresh, inputs=inputs, outputs=outputs, api_visibility="private", show_progress="hidden")
    picker.path_box.submit(add_path, inputs=[picker.files, picker.path_box], outputs=[picker.files, picker.path_box],
                           api_visibility="private")
    picker.drop.upload(add_path, inputs=[picker.files, picker.drop], outputs=[picker.files, picker.path_box],
                       api_visibility="private")
    picker.shift.blur(shift_problem, inputs=picker.shift, outputs=picker.note, api_visibility="private",
                      show_progress="hidden")
    picker.preset.click(apply_preset, inputs=[picker.files, steps, guidance, guidance_2, picker.shift],
                        outputs=[steps, guidance, guidance_2, picker.shift, picker.note], api_visibility="private")


def model_check_lora(path: str, text: str) -> str:
    """Model Check's LoRA field: each LoRA given (one per line, FILE[:STRENGTH][@high|@low]) against the
    model in the path box, as HTML (API ``/check_lora``)."""
    from wan_ui import common
    from wan_ui.model_check import clean_path
    texts = [t.strip().strip('"') for t in (text or "").splitlines() if t.strip()]
    if not texts:
        return "<p class='wc-prompt'>Give a LoRA file to see how it fits this model.</p>"
    report = None
    try:
        report = common.inspect_cached(clean_path(path)) if path else None
    except Exception as exc:  # noqa: BLE001 - the sentence, not a traceback
        from core.errors import explain
        return f"<p class='wc-error'>{html.escape(str(explain(exc)))}</p>"
    return verdict_html(report, texts)
