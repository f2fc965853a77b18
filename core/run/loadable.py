"""Whether a checked model can be loaded, and if not, the one sentence that says why.

The loader, the Generate tab and ``python -m core generate`` all refuse through here.

Usage::

    from core.check.detect import inspect
    from core.run.loadable import ensure_loadable, refusal

    report = inspect("/models/Wan2.2-TI2V-5B-Diffusers")
    problem = refusal(report)          # None, or the exception that would be raised
    ensure_loadable(report)            # raises it

Non-Wan models give ``ValueError("... is not a Wan architecture model ...")`` (the seed
guide's contract); every other refusal is a :class:`~core.errors.WanError` with a remedy.
"""

from __future__ import annotations

from pathlib import Path

from core.check.report import Layout, ModelReport
from core.errors import WanError


def refusal(report: ModelReport, trust_remote_code: bool = False) -> Exception | None:
    """Why ``report``'s model cannot be loaded (the exception to raise), or None when it can."""
    errors = list(report.errors)
    if report.is_collection:
        return WanError(f"{Path(report.path).name} holds {len(report.models)} models.",
                        "Choose one of them: give the path of its own folder.")
    if not report.is_wan:
        if report.architecture_type.value == "unknown" and errors:
            first = errors[0]
            return ValueError(f"{report.path} is not a Wan architecture model: {first.message} "
                              f"{first.remedy}".strip())
        return ValueError(f"{report.path} is not a Wan architecture model "
                          f"(detected: {report.architecture_type.value}); load it with diffusers' "
                          "DiffusionPipeline.from_pretrained instead.")
    if report.task == "s2v":
        return WanError("Wan2.2 speech-to-video (S2V) cannot run here: diffusers has no pipeline for it yet, "
                        "so nothing was loaded.",
                        "Run it with generate.py from the Wan2.2 repository (github.com/Wan-Video/Wan2.2).")
    if report.layout is not Layout.DIFFUSERS:
        return WanError(f"This Wan model is in the {report.layout.value.replace('_', ' ')} layout, which diffusers "
                        "cannot load directly.",
                        "Convert it to the diffusers layout with Fix (`python -m core fix PATH`), or download "
                        "the -Diffusers version of the model.")
    if report.custom_code and not trust_remote_code:
        return WanError("model_index.json names Python code from outside diffusers and transformers; "
                        "it was not loaded, and nothing was run.",
                        "Wan models need no custom code: repair model_index.json with Fix, or pass "
                        "trust_remote_code=True only if you trust where the model came from.")
    if errors:
        first = errors[0]
        more = f" ({len(errors) - 1} more problem(s); see `python -m core check`.)" if len(errors) > 1 else ""
        return WanError(f"The model cannot be loaded: {first.message}{more}",
                        first.remedy or "Open it in Model Check and Fix.",
                        "\n".join(f"{f.code}: {f.message}" for f in errors))
    return None


def ensure_loadable(report: ModelReport, trust_remote_code: bool = False) -> None:
    """Raise :func:`refusal`'s exception, if there is one."""
    problem = refusal(report, trust_remote_code)
    if problem is not None:
        raise problem
