"""Plain-text rendering of a ModelReport, for the command line.

Usage::

    print(render_text(inspect(path)))
    headline(report)  # "Wan 2.2 T2V A14B (two experts), diffusers layout: ready to load"
"""

from __future__ import annotations

from core.filesource import display_name
from core.report import ModelReport, Severity

MARK = {Severity.ERROR: "✗", Severity.WARNING: "!", Severity.INFO: "·"}


def model_name(report: ModelReport) -> str:
    """A short name a person recognises: "Wan 2.2 TI2V 5B", "Stable Diffusion XL", "unknown"."""
    if report.is_wan:
        size = report.size_class or ""
        if report.experts >= 2 and size == "14B":
            size = "A14B (two experts)"
        parts = ["Wan", report.wan_version or "2.x", (report.task or "").upper(), size]
        return " ".join(p for p in parts if p)
    return report.architecture_type.value.replace("_", " ").title().replace("Xl", "XL")


def headline(report: ModelReport) -> str:
    """One line: what it is, its layout, and whether it is ready."""
    if report.is_collection:
        ready = sum(m.loadable for m in report.models)
        return f"A folder of {len(report.models)} models ({ready} ready to load)"
    errors = len(report.errors)
    state = "ready to load" if report.loadable else (
        f"{errors} problem{'s' if errors != 1 else ''} to fix" if errors else "not a model")
    what = model_name(report) if report.architecture_type.value != "unknown" else "Not a recognised model"
    return f"{what}, {report.layout.value.replace('_', ' ')} layout: {state}"


def _gb(n: int | None) -> str:
    return "-" if n is None else f"{n / 1e9:.2f} GB"


def _params(n: int | None) -> str:
    return "-" if n is None else (f"{n / 1e9:.2f} B" if n >= 1e8 else f"{n / 1e6:.1f} M" if n >= 1e5 else f"{n:,}")


def render_text(report: ModelReport, indent: str = "") -> str:
    """The report as a few readable lines; a folder of models renders each model in turn."""
    lines = [f"{indent}{headline(report)}", f"{indent}  path: {report.path}"]
    if not report.is_collection:
        facts = [
            ("architecture", report.architecture_type.value),
            ("pipeline", report.pipeline_class or "-"),
            ("experts", f"{report.experts}" + (f" (boundary {report.boundary_ratio})" if report.boundary_ratio else "")),
            ("VAE", f"{report.vae_kind} (z_dim {report.vae_z_dim})" if report.vae_kind else "-"),
            ("parameters", f"{_params(report.parameters)}, {_gb(report.weights_bytes_bf16)} of weights at bf16"),
            ("registry", report.registry_id or "-"),
        ]
        lines += [f"{indent}  {k}: {v}" for k, v in facts]
        if report.components:
            lines.append(f"{indent}  components:")
            for c in report.components:
                state = "ok" if c.complete else ("missing" if not c.present else "incomplete")
                lines.append(f"{indent}    {c.name:<14} {c.class_name or '-':<28} {len(c.files):>3} files "
                             f"{_gb(c.size_bytes):>10}  {c.dtype or '-':<8} {_params(c.parameters):>9}  {state}")
    for f in report.findings:
        where = f" [{display_name(f.path)}]" if f.path else ""
        lines.append(f"{indent}  {MARK[f.severity]} {f.severity.value}: {f.message}{where}")
        if f.remedy:
            lines.append(f"{indent}      → {f.remedy}")
    for m in report.models:
        lines.append("")
        lines.append(render_text(m, indent + "  "))
    return "\n".join(lines)
