"""Plain-text descriptions of a ModelReport: names people know, sizes, and the CLI rendering.

Shared by the command line and the UI (which adds HTML around the same words).

Usage::

    print(render_text(inspect(path)))
    headline(report)  # 'Wan 2.2 T2V A14B (two experts) — diffusers layout — ready to load'
"""

from __future__ import annotations

from core.check.filesource import display_name
from core.check.report import ArchitectureType, Layout, ModelReport, Severity
from core.units import format_bytes

A = ArchitectureType

ARCHITECTURE_NAMES: dict[ArchitectureType, str] = {
    A.WAN_T2V: "Wan text-to-video",
    A.WAN_I2V: "Wan image-to-video",
    A.WAN_TI2V: "Wan text-and-image-to-video",
    A.WAN_FLF2V: "Wan first-and-last-frame-to-video",
    A.WAN_VACE: "Wan VACE (video creation and editing)",
    A.WAN_S2V: "Wan speech-to-video",
    A.WAN_ANIMATE: "Wan Animate (character animation)",
    A.STABLE_DIFFUSION: "Stable Diffusion 1.x/2.x",
    A.STABLE_DIFFUSION_XL: "Stable Diffusion XL",
    A.STABLE_DIFFUSION_3: "Stable Diffusion 3",
    A.FLUX: "Flux",
    A.DIFFUSERS_OTHER: "A diffusers model",
    A.UNKNOWN: "Not a recognised model",
}
TASK_NAMES = {
    "t2v": ("T2V", "text to video"), "i2v": ("I2V", "image to video"),
    "ti2v": ("TI2V", "text or image to video"), "flf2v": ("FLF2V", "first and last frame to video"),
    "vace": ("VACE", "video creation and editing"), "s2v": ("S2V", "speech to video"),
    "animate": ("Animate", "character animation"),
}
LAYOUT_NAMES = {
    Layout.DIFFUSERS: "diffusers layout",
    Layout.WAN_ORIGINAL: "original Wan-AI layout",
    Layout.SINGLE_FILE: "single-file checkpoint",
    Layout.GGUF: "GGUF file",
    Layout.UNKNOWN: "unknown layout",
}
VAE_NAMES = {"wan2.1": "Wan 2.1 VAE", "wan2.2": "Wan 2.2 VAE"}
NONE = "—"
EMPTY_FOLDER = "The folder is empty."                  # Model Check's sentences the headline names
NOT_A_MODEL_FILE = "This is not a model file"
MARK = {Severity.ERROR: "✗", Severity.WARNING: "!", Severity.INFO: "·"}


def format_size(n: int | None) -> str:
    """Bytes for people, in decimal units: '57.21 GB', '12.3 MB', '4.1 KB'.

    >>> format_size(57_210_000_000), format_size(12_345_678), format_size(0)
    ('57.21 GB', '12.3 MB', '0 bytes')
    """
    return format_bytes(n, NONE)


def format_parameters(n: int | None) -> str:
    """A parameter count in billions, or millions when small: '14.29 B', '83.7 M'.

    >>> format_parameters(14_288_491_584), format_parameters(83_653_863)
    ('14.29 B', '83.7 M')
    """
    if n is None:
        return NONE
    if n >= 100_000_000:
        return f"{n / 1e9:.2f} B"
    if n >= 100_000:
        return f"{n / 1e6:.1f} M"
    return f"{n:,}"


def model_name(report: ModelReport) -> str:
    """What the model is, in a few words: 'Wan 2.2 T2V A14B (two experts)', 'Flux'."""
    arch = report.architecture_type
    if arch.is_wan:
        task = report.task or arch.value.removeprefix("wan_")
        parts = ["Wan"]
        if report.wan_version:
            parts.append(report.wan_version)
        parts.append(TASK_NAMES.get(task, (task.upper(), ""))[0])
        if report.size_class:
            parts.append(("A" if report.experts == 2 else "") + report.size_class)
        name = " ".join(parts)
        return name + " (two experts)" if report.experts == 2 else name
    if arch is A.DIFFUSERS_OTHER and report.pipeline_class:
        return f"A diffusers model ({report.pipeline_class})"
    return ARCHITECTURE_NAMES[arch]


def status(report: ModelReport) -> str:
    """'ready to load', '2 problems to fix' or 'not recognised as a model'."""
    n = len(report.errors)
    if report.architecture_type is ArchitectureType.UNKNOWN and not report.is_collection:
        return "not recognised as a model"
    if n:
        return f"{n} problem{'s' if n != 1 else ''} to fix"
    if report.loadable and report.layout is Layout.WAN_ORIGINAL:
        return "complete; convert it with Fix to load it"
    if report.loadable:
        return "ready to load"
    return "not recognised as a model"


def headline(report: ModelReport) -> str:
    """One line: what it is — its layout — whether it is ready.

    For a folder of several models: how many there are and how many are ready.
    """
    if report.is_collection:
        n = len(report.models)
        ready = sum(1 for m in report.models if m.usable)
        loras = sum(1 for m in report.models if m.lora is not None)
        what = f"{n} LoRA files" if loras == n else f"{n} model{'s' if n != 1 else ''}"
        text = f"A folder of {what} — {ready} {'usable' if loras == n else 'ready to load'}"
        if n - ready:
            text += f", {n - ready} with problems"
        return text
    if report.lora is not None:
        lora = report.lora
        verdict = "usable with a model" if report.usable else (
            f"{len(report.errors)} problem{'s' if len(report.errors) != 1 else ''}")
        return f"{'Wan ' if lora.is_wan else ''}LoRA ({lora.summary}) — not a model — {verdict}"
    if report.is_wan_part:
        what = (f"{VAE_NAMES.get(report.vae_kind or '', 'Wan VAE')}" if report.part == "vae"
                else "Wan text encoder (UMT5-XXL)")
        return f"{what} — one part of a model, not a whole model"
    if report.part == "transformer":
        return f"{model_name(report)} — transformer only — needs a VAE, text encoder and tokenizer"
    if report.architecture_type is A.UNKNOWN:  # its findings say why; "not a model" says it all here
        first = report.errors[0].message if report.errors else ""
        if first == EMPTY_FOLDER:
            return "An empty folder"
        if first.startswith(NOT_A_MODEL_FILE):
            return "Not a model file"
        return model_name(report) + ("" if report.layout is Layout.UNKNOWN else f" — {LAYOUT_NAMES[report.layout]}")
    return f"{model_name(report)} — {LAYOUT_NAMES[report.layout]} — {status(report)}"



def quant_label(quant: dict | None) -> str:
    """A short name for a model's storage: "GGUF Q4_K", "fp8 scaled", "fp8"; "" for plain weights.

    >>> quant_label({"format": "gguf", "types": {"F32": 700, "Q4_K": 300, "Q6_K": 30}}), quant_label(None)
    ('GGUF Q4_K', '')
    """
    if not quant:
        return ""
    if quant.get("format") == "gguf":
        types = {t: n for t, n in (quant.get("types") or {}).items() if t not in ("F32", "F16", "BF16")}
        return "GGUF " + max(types, key=types.__getitem__) if types else "GGUF"
    return str(quant.get("format", "")).replace("_", " ")


def quantization_str(quant: dict) -> str:
    """``{"format": "gguf", "types": {...}, "bits_per_weight": 4.9, "weights_bytes": n}`` for people.

    >>> quantization_str({"format": "gguf", "types": {"F32": 3, "Q4_K": 5}, "bits_per_weight": 4.9, "weights_bytes": 10**9})
    'GGUF Q4_K (5 tensors), F32 (3), 4.9 bits per weight, 1.00 GB of weights'
    """
    types = sorted((quant.get("types") or {}).items(), key=lambda kv: (kv[0] in ("F32", "F16", "BF16"), -kv[1]))
    listed = ", ".join(f"{t} ({n}{' tensors' if i == 0 else ''})" for i, (t, n) in enumerate(types))
    name = {"gguf": "GGUF", "fp8": "fp8", "fp8_scaled": "fp8 scaled"}.get(str(quant.get("format")), str(quant.get("format")))
    bits = quant.get("bits_per_weight")
    return (f"{name} {listed}" + (f", {bits:g} bits per weight" if bits else "")
            + (f", {format_size(quant.get('weights_bytes'))} of weights" if quant.get("weights_bytes") else ""))


def render_text(report: ModelReport, indent: str = "") -> str:
    """The report as a few readable lines; a folder of models renders each model in turn."""
    lines = [f"{indent}{headline(report)}", f"{indent}  path: {report.path}"]
    if report.lora is not None:
        lora = report.lora
        facts = [("format", lora.format), ("base", lora.base or NONE), ("task", lora.task or NONE),
                 ("expert", lora.expert or NONE), ("rank", lora.rank or NONE),
                 ("alpha", NONE if lora.alpha is None else f"{lora.alpha:g}"), ("layers", lora.modules),
                 ("distillation steps", lora.distill_steps or NONE)]
        lines += [f"{indent}  {k}: {v}" for k, v in facts]
    elif not report.is_collection:
        experts = f"{report.experts}" + (f" (boundary ratio {report.boundary_ratio:g})"
                                          if report.boundary_ratio is not None else "")
        facts = [
            ("architecture", report.architecture_type.value),
            ("pipeline", report.pipeline_class or NONE),
            ("experts", experts),
            ("VAE", f"{VAE_NAMES.get(report.vae_kind, report.vae_kind)} (z_dim {report.vae_z_dim})"
             if report.vae_kind else NONE),
            ("parameters", f"{format_parameters(report.parameters)}, "
                           f"{format_size(report.weights_bytes_bf16)} of weights at bf16"),
            ("registry", report.registry_id or NONE),
        ]
        if report.quantization:
            facts.insert(-1, ("quantization", quantization_str(report.quantization)))
        lines += [f"{indent}  {k}: {v}" for k, v in facts]
        if report.components:
            lines.append(f"{indent}  components:")
            for c in report.components:
                state = "ok" if c.complete else ("missing" if not c.present else "incomplete")
                lines.append(f"{indent}    {c.name:<15} {c.class_name or NONE:<28} {len(c.files):>3} files "
                             f"{format_size(c.size_bytes):>10}  {c.dtype or NONE:<8} "
                             f"{format_parameters(c.parameters):>9}  {state}")
    for f in report.findings:
        where = f" [{display_name(f.path)}]" if f.path and display_name(f.path) not in f.message else ""
        lines.append(f"{indent}  {MARK[f.severity]} {f.severity.value}: {f.message}{where}")
        if f.remedy:
            lines.append(f"{indent}      → {f.remedy}")
    for m in report.models:
        lines.append("")
        lines.append(render_text(m, indent + "  "))
    return "\n".join(lines)


# --- the app's words for a remedy -----------------------------------------------------------
# The CLI prints a remedy as core wrote it ("Run Fix (`python -m core fix PATH`) to ..."); in the
# app the same remedy names the button to press. Longest patterns first.
_APP_REMEDIES: tuple[tuple[str, str], ...] = (
    (r"Run `python -m core fix PATH --apply` to finish it, or `--undo` to go back\.",
     "Press Fix, then Apply, to finish it, or Undo there to go back."),
    (r"Convert it with Fix \(`python -m core fix PATH`\)", "Press Fix to convert it into a new folder"),
    (r"Fix can assemble the parts into a diffusers folder \(`python -m core fix --assemble`\)\.",
     "Press Assemble in Fix and name the VAE, text encoder and tokenizer to put them together with it "
     "into a model folder."),
    (r"[Rr]un Fix \(`python -m core fix PATH`\) to", "Press Fix to"),
    (r"\bRun Fix\b", "Press Fix"),
    (r"\brun Fix\b", "press Fix"),
)


def app_remedy(text: str | None) -> str:
    """A remedy in the app's words: the Fix button to press instead of a terminal command.

    >>> app_remedy("Run Fix (`python -m core fix PATH`) to rebuild it from the component folders.")
    'Press Fix to rebuild it from the component folders.'
    >>> app_remedy("Download vae/config.json again, or run Fix to rebuild it.")
    'Download vae/config.json again, or press Fix to rebuild it.'
    """
    import re
    out = text or ""
    for pattern, words in _APP_REMEDIES:
        out = re.sub(pattern, words, out)
    return out

