"""Model Check reports as HTML for people: a headline, a summary, components, findings.

Pure string building with no Gradio (and no torch) here, so it is easy to test and to
reuse. Every value taken from a report is HTML-escaped: file names come from the user's disk.

Usage::

    from core.detector import inspect
    from wan_ui.render import headline, render_report

    report = inspect("/models/Wan2.2-T2V-A14B-Diffusers")
    headline(report)   # 'Wan 2.2 T2V A14B (two experts) — diffusers layout — ready to load'
    html = render_report(report)
"""

from __future__ import annotations

import os
from html import escape

from core.errors import WanError
from core.report import ArchitectureType, ComponentReport, Finding, ModelReport, Severity
from core.report_text import (ARCHITECTURE_NAMES, LAYOUT_NAMES, NONE, TASK_NAMES, VAE_NAMES, format_parameters,
                              format_size, headline)

A = ArchitectureType

SEVERITY_SECTIONS = (
    (Severity.ERROR, "Problems to fix", "✗"),
    (Severity.WARNING, "Warnings", "!"),
    (Severity.INFO, "Notes", "i"),
)

PROMPT_SENTENCE = ("Type or paste the path of a model folder or a .safetensors file above, "
                   "then press Check (or Enter).")

# Styles for the classes below; app.py passes them to ``launch(css=...)``. Colours come
# from Gradio's theme variables, so light and dark mode both work.
CSS = """
.wc-report { display: flex; flex-direction: column; gap: 14px; --wc-label: var(--neutral-600); }
.dark .wc-report { --wc-label: var(--neutral-400); }
.wc-card { border: 1px solid var(--border-color-primary); border-radius: var(--radius-lg);
  padding: 14px 18px; background: var(--background-fill-primary); }
.wc-headline { display: flex; align-items: center; gap: 10px; font-size: 1.15em;
  font-weight: 600; margin: 0 0 4px 0; line-height: 1.35; }
.wc-path { color: var(--wc-label); font-family: var(--font-mono);
  font-size: 0.85em; word-break: break-all; margin: 0 0 10px 0; }
.wc-badge { display: inline-block; border-radius: 999px; padding: 2px 10px; font-size: 0.78em;
  font-weight: 600; white-space: nowrap; flex-shrink: 0; }
.wc-ok .wc-badge { background: rgba(34, 160, 80, 0.16); color: #1d8a47; }
.wc-bad .wc-badge { background: rgba(220, 50, 50, 0.14); color: #c42b2b; }
.wc-unknown .wc-badge { background: rgba(128, 128, 128, 0.18); color: var(--body-text-color-subdued); }
.dark .wc-ok .wc-badge { color: #5fd68f; }
.dark .wc-bad .wc-badge { color: #ff7b7b; }
.wc-h { font-size: 0.95em; font-weight: 600; margin: 14px 0 6px 0; }
#wc-report .html-container { padding: 0; }
#wc-check-models-dir { white-space: nowrap; width: auto; max-width: none; flex: none; }
/* Doubled classes outrank Gradio's ".prose table/tr/td/th { border: 1px solid }". */
.wc-report .wc-table.wc-table { border-collapse: collapse; width: 100%; font-size: 0.9em;
  margin: 0; border: 0; }
.wc-report .wc-table.wc-table tr { border: 0; }
.wc-report .wc-table.wc-table th, .wc-report .wc-table.wc-table td { text-align: left;
  padding: 5px 10px; border: 0; border-bottom: 1px solid var(--border-color-primary);
  vertical-align: top; background: transparent; color: var(--body-text-color); }
.wc-report .wc-table.wc-table tr:last-child th, .wc-report .wc-table.wc-table tr:last-child td {
  border-bottom: 0; }
.wc-report .wc-table.wc-table thead th { font-weight: 600; color: var(--body-text-color-subdued);
  background: var(--background-fill-secondary); border-bottom: 1px solid var(--border-color-primary); }
.wc-report .wc-summary.wc-summary th { width: 15em; font-weight: 500; color: var(--wc-label); }
.wc-report .wc-table.wc-table .wc-num { text-align: right; white-space: nowrap; }
.wc-report .wc-table.wc-table .wc-mark { text-align: center; }
.wc-yes { color: #1d8a47; font-weight: 700; }
.wc-no { color: #c42b2b; font-weight: 700; }
.dark .wc-yes { color: #5fd68f; }
.dark .wc-no { color: #ff7b7b; }
.wc-report .wc-findings { list-style: none; padding: 0; margin: 0; display: flex; flex-direction: column; gap: 8px; }
.wc-report .wc-finding { margin: 0; border-left: 4px solid var(--border-color-primary); padding: 6px 12px;
  background: var(--background-fill-secondary); border-radius: 4px; }
.wc-finding.wc-sev-error { border-left-color: #d93636; }
.wc-finding.wc-sev-warning { border-left-color: #e0a000; }
.wc-finding.wc-sev-info { border-left-color: #3b82f6; }
.wc-msg { margin: 0; }
.wc-remedy { margin: 3px 0 0 0; }
.wc-report b { font-size: inherit; font-weight: 600; }
.wc-meta { margin: 3px 0 0 0; font-size: 0.8em; color: var(--wc-label); }
.wc-fine { margin: 0; }
.wc-footer { font-size: 0.8em; color: var(--wc-label); margin: 12px 0 0 0; }
.wc-error-msg { font-weight: 600; margin: 0 0 4px 0; }
.wc-details summary { cursor: pointer; color: var(--body-text-color-subdued); font-size: 0.85em;
  margin-top: 8px; }
.wc-details pre { font-size: 0.8em; max-height: 22em; overflow: auto; white-space: pre-wrap;
  background: var(--background-fill-secondary); padding: 8px; border-radius: 4px; }
.wc-prompt { color: var(--body-text-color-subdued); margin: 6px 2px; }
.wc-report code, .wc-table code { font-family: var(--font-mono); font-size: 0.92em; }
"""


# --- HTML -------------------------------------------------------------------------------

def render_prompt() -> str:
    """The gentle sentence shown before anything was checked."""
    return f'<p class="wc-prompt">{escape(PROMPT_SENTENCE)}</p>'


def render_error(err: WanError, path: str | None = None) -> str:
    """A plain sentence and its remedy; the technical details behind a closed fold."""
    parts = ['<div class="wc-report"><div class="wc-card wc-bad">',
             f'<p class="wc-headline wc-error-msg"><span class="wc-badge">Cannot check</span>'
             f'<span>{escape(err.message)}</span></p>']
    if path and path not in err.message:
        parts.append(f'<p class="wc-path">{escape(path)}</p>')
    if err.remedy:
        parts.append(f'<p class="wc-remedy"><b>What to do:</b> {escape(err.remedy)}</p>')
    if err.details:
        parts.append('<details class="wc-details"><summary>Technical details</summary>'
                     f'<pre>{escape(err.details)}</pre></details>')
    parts.append("</div></div>")
    return "".join(parts)


def render_report(report: ModelReport) -> str:
    """The whole report: one card, or for a folder of several models one card per model."""
    if not report.is_collection:
        return f'<div class="wc-report">{_model_card(report)}</div>'
    cards = [_collection_card(report)]
    cards += [_model_card(m, root=report.path) for m in report.models]
    return f'<div class="wc-report">{"".join(cards)}</div>'


def _tone(report: ModelReport) -> str:
    if report.errors or (report.is_collection and not report.loadable):
        return "wc-bad"
    return "wc-ok" if report.loadable else "wc-unknown"


def _badge(report: ModelReport) -> str:
    tone = _tone(report)
    text = {"wc-ok": "✓ Ready", "wc-bad": "✗ Needs fixing", "wc-unknown": "? Not recognised"}[tone]
    return f'<span class="wc-badge">{text}</span>'


def _collection_card(report: ModelReport) -> str:
    parts = [f'<div class="wc-card {_tone(report)}">',
             f'<p class="wc-headline">{_badge(report)}<span>{escape(headline(report))}</span></p>',
             f'<p class="wc-path">{escape(report.path)}</p>']
    if report.findings:
        parts.append(_findings(report.findings))
    parts.append(_footer(report))
    parts.append("</div>")
    return "".join(parts)


def _model_card(report: ModelReport, root: str | None = None) -> str:
    shown_path = report.path
    if root and report.path != root:
        try:
            rel = os.path.relpath(report.path, root)
            shown_path = report.path if rel.startswith("..") else rel
        except ValueError:
            pass
    parts = [f'<div class="wc-card {_tone(report)}">',
             f'<p class="wc-headline">{_badge(report)}<span>{escape(headline(report))}</span></p>',
             f'<p class="wc-path">{escape(shown_path)}</p>']
    parts.append('<p class="wc-h">Summary</p>')
    parts.append(_summary_table(report))
    if report.components:
        parts.append('<p class="wc-h">Components</p>')
        parts.append(_components_table(report.components))
    parts.append(_findings(report.findings))
    if root is None:
        parts.append(_footer(report))
    parts.append("</div>")
    return "".join(parts)


def _summary_rows(report: ModelReport) -> list[tuple[str, str]]:
    """(label, already-escaped HTML value) pairs."""
    arch = report.architecture_type
    arch_text = ARCHITECTURE_NAMES[arch]
    if arch is A.DIFFUSERS_OTHER and report.pipeline_class:
        arch_text = "another diffusers model"
    if arch is not A.UNKNOWN:
        arch_text += " (a Wan model)" if arch.is_wan else " (not a Wan model)"
    arch_html = f"{escape(arch_text)} <code>{escape(arch.value)}</code>"

    if report.task:
        short, long = TASK_NAMES.get(report.task, (report.task, ""))
        task = f"{short} — {long}" if long else short
    else:
        task = NONE
    if report.experts == 2:
        ratio = (f", switching at boundary ratio {report.boundary_ratio:g}"
                 if report.boundary_ratio is not None else ", boundary ratio not set")
        experts = f"2 (high-noise and low-noise){ratio}"
    elif report.experts == 1:
        experts = "1 (a single transformer)"
    else:
        experts = NONE if report.boundary_ratio is None else f"boundary ratio {report.boundary_ratio:g}"
    if report.vae_kind or report.vae_z_dim is not None:
        vae = VAE_NAMES.get(report.vae_kind or "", report.vae_kind or "VAE")
        if report.vae_z_dim is not None:
            vae += f" (z_dim {report.vae_z_dim})"
    else:
        vae = NONE
    disk = sum(c.size_bytes for c in report.components) if report.components else None
    pipeline = f"<code>{escape(report.pipeline_class)}</code>" if report.pipeline_class else "unknown"
    registry = (f"<code>{escape(report.registry_id)}</code>" if report.registry_id
                else "no match among the known models")
    rows = [
        ("Layout", escape(LAYOUT_NAMES[report.layout])),
        ("Architecture", arch_html),
        ("Wan version", escape(report.wan_version or NONE)),
        ("Task", escape(task)),
        ("Pipeline class", pipeline),
        ("Experts and boundary ratio", escape(experts)),
        ("VAE", escape(vae)),
        ("Parameters", escape(format_parameters(report.parameters))),
        ("Weights in memory at bf16", escape(format_size(report.weights_bytes_bf16))),
        ("Size on disk", escape(format_size(disk))),
        ("Registry match", registry),
    ]
    if report.custom_code:
        rows.append(("Custom code", "yes: <code>model_index.json</code> names code that would run; "
                                    "it is not run unless you allow it for this model"))
    return rows


def _summary_table(report: ModelReport) -> str:
    body = "".join(f"<tr><th>{escape(label)}</th><td>{value}</td></tr>"
                   for label, value in _summary_rows(report))
    return f'<table class="wc-table wc-summary"><tbody>{body}</tbody></table>'


def _mark(ok: bool) -> str:
    return ('<span class="wc-yes" title="yes">✓</span>' if ok
            else '<span class="wc-no" title="no">✗</span>')


def _components_table(components: tuple[ComponentReport, ...]) -> str:
    head = ('<thead><tr><th>Component</th><th>Class</th><th class="wc-num">Files</th>'
            '<th class="wc-num">Size on disk</th><th>Dtype</th><th class="wc-num">Parameters</th>'
            '<th class="wc-mark">Present</th><th class="wc-mark">Complete</th></tr></thead>')
    rows = []
    for c in components:
        cls = f"<code>{escape(c.class_name)}</code>" if c.class_name else NONE
        rows.append(
            f"<tr><td>{escape(c.name)}</td><td>{cls}</td>"
            f'<td class="wc-num">{len(c.files)}</td>'
            f'<td class="wc-num">{escape(format_size(c.size_bytes) if c.files else NONE)}</td>'
            f"<td>{escape(c.dtype or NONE)}</td>"
            f'<td class="wc-num">{escape(format_parameters(c.parameters))}</td>'
            f'<td class="wc-mark">{_mark(c.present)}</td>'
            f'<td class="wc-mark">{_mark(c.complete)}</td></tr>')
    return f'<table class="wc-table wc-components">{head}<tbody>{"".join(rows)}</tbody></table>'


def _findings(findings: tuple[Finding, ...]) -> str:
    if not findings:
        return '<p class="wc-h">Findings</p><p class="wc-fine"><span class="wc-yes">✓</span> No problems found.</p>'
    parts = []
    for severity, title, _icon in SEVERITY_SECTIONS:
        group = [f for f in findings if f.severity is severity]
        if not group:
            continue
        parts.append(f'<p class="wc-h">{escape(title)} ({len(group)})</p><ul class="wc-findings">')
        for f in group:
            meta = f"<code>{escape(f.code)}</code>"
            if f.path:
                meta += f" · {escape(f.path)}"
            remedy = (f'<div class="wc-remedy"><b>What to do:</b> {escape(f.remedy)}</div>'
                      if f.remedy else "")
            parts.append(f'<li class="wc-finding wc-sev-{severity.value}">'
                         f'<div class="wc-msg">{escape(f.message)}</div>{remedy}'
                         f'<div class="wc-meta">{meta}</div></li>')
        parts.append("</ul>")
    return "".join(parts)


def _footer(report: ModelReport) -> str:
    if not report.bytes_read:
        return ""
    return (f'<p class="wc-footer">Read {escape(format_size(report.bytes_read))} of configs and '
            "file headers; no weights were loaded.</p>")
