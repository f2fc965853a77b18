"""Model Check reports as HTML for people: a headline, a summary, components, findings.

Pure string building with no Gradio (and no torch) here, so it is easy to test and to
reuse. Every value taken from a report is HTML-escaped: file names come from the user's disk.

Usage::

    from core.check.detect import inspect
    from wan_ui.render import headline, render_report

    report = inspect("/models/Wan2.2-T2V-A14B-Diffusers")
    headline(report)   # 'Wan 2.2 T2V A14B (two experts) — diffusers layout — ready to load'
    html = render_report(report)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from html import escape

from core.check.codes import Code
from core.check.report import (
    ArchitectureType,
    ComponentReport,
    Finding,
    ModelReport,
    Severity,
)
from core.check.wording import (
    ARCHITECTURE_NAMES,
    LAYOUT_NAMES,
    NONE,
    TASK_NAMES,
    VAE_NAMES,
    app_remedy,
    format_parameters,
    format_size,
    headline,
    model_name,
)
from core.errors import WanError
from core.units import format_mib

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
  padding: 14px 18px; background: var(--background-fill-primary); overflow-x: auto; }
.wc-headline { display: flex; align-items: center; gap: 10px; font-size: 1.15em;
  font-weight: 600; margin: 0 0 4px 0; line-height: 1.35; }
.wc-path { color: var(--wc-label); font-family: var(--font-mono);
  font-size: 0.85em; word-break: break-all; margin: 0 0 10px 0; }
.wc-badge { display: inline-block; border-radius: 999px; padding: 2px 10px; font-size: 0.78em;
  font-weight: 600; white-space: nowrap; flex-shrink: 0; }
.wc-ok .wc-badge { background: rgba(34, 160, 80, 0.16); color: #1d8a47; }
.wc-bad .wc-badge { background: rgba(220, 50, 50, 0.14); color: #c42b2b; }
.wc-unknown .wc-badge { background: rgba(128, 128, 128, 0.18); color: var(--neutral-700); }
.dark .wc-unknown .wc-badge { color: var(--neutral-300); }
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
.wc-offer { display: flex; align-items: center; flex-wrap: wrap; gap: 8px 14px; margin: 0 0 12px 0; }
.wc-offer-say { font-size: 0.92em; }
.wc-act { border-radius: var(--button-large-radius, 8px); padding: 7px 18px; font-weight: 600; cursor: pointer;
  border: 1px solid var(--button-secondary-border-color, var(--border-color-primary)); font-size: 0.92em;
  background: var(--button-secondary-background-fill); color: var(--button-secondary-text-color); }
.wc-act:hover { filter: brightness(0.96); }
.wc-act-primary { background: var(--button-primary-background-fill); color: var(--button-primary-text-color);
  border-color: var(--button-primary-border-color, transparent); }
.wc-report .wc-table.wc-table .wc-row-actions { white-space: nowrap; text-align: right; }
.wc-row-actions .wc-act { padding: 3px 12px; font-weight: 500; margin-left: 6px; }
.wc-models .wc-badge { font-weight: 500; }
.wc-report .wc-table.wc-models td { vertical-align: middle; }
.wc-models tr.wc-ok .wc-badge { background: rgba(34, 160, 80, 0.16); color: #1d8a47; }
.wc-models tr.wc-bad .wc-badge { background: rgba(220, 50, 50, 0.14); color: #c42b2b; }
.wc-models tr.wc-unknown .wc-badge { background: rgba(128, 128, 128, 0.18); }
.wc-full-reports > summary { font-size: 0.95em; }
.wc-full-reports > .wc-report { margin-top: 10px; }
.wc-manual-cmd { display: flex; gap: 8px; align-items: flex-start; margin: 6px 0 0 0; }
.wc-manual-cmd pre { flex: 1; margin: 0; padding: 6px 8px; font-size: 0.85em; white-space: pre-wrap;
  word-break: break-all; background: var(--background-fill-primary); border: 1px solid var(--border-color-primary);
  border-radius: 4px; }
"""

# The click listener of a report (gr.HTML js_on_load): a button with data-wc-act="check" or "fix"
# becomes the component's click event with {act, path}; "copy" copies data-wc-path to the clipboard.
ACTION_JS = """element.addEventListener('click', (e) => {
  const b = e.target.closest('button[data-wc-act]');
  if (!b) { return; }
  const act = b.dataset.wcAct, text = b.dataset.wcPath || '';
  if (act !== 'copy') { trigger('click', {act: act, model: text}); return; }
  const done = () => { b.textContent = 'Copied'; setTimeout(() => { b.textContent = 'Copy'; }, 1500); };
  const fallback = () => {
    const area = document.createElement('textarea');
    area.value = text; document.body.appendChild(area); area.select();
    try { document.execCommand('copy'); done(); } finally { area.remove(); }
  };
  if (navigator.clipboard && window.isSecureContext) { navigator.clipboard.writeText(text).then(done, fallback); }
  else { fallback(); }
});"""


# --- HTML -------------------------------------------------------------------------------

def render_prompt() -> str:
    """The gentle sentence shown before anything was checked."""
    return f'<p class="wc-prompt">{escape(PROMPT_SENTENCE)}</p>'


def render_error(err: WanError, path: str | None = None, badge: str = "Cannot check",
                 details: bool = True) -> str:
    """A plain sentence and its remedy; the technical details behind a closed fold.

    ``badge`` names what could not be done ("Cannot check", "Cannot fix", "Cannot undo");
    ``details=False`` leaves the traceback out (for ordinary situations such as a missing folder).
    """
    parts = ['<div class="wc-report"><div class="wc-card wc-bad">',
             f'<p class="wc-headline wc-error-msg"><span class="wc-badge">{escape(badge)}</span>'
             f'<span>{escape(err.message)}</span></p>']
    if path and path not in err.message:
        parts.append(f'<p class="wc-path">{escape(path)}</p>')
    if err.remedy:
        parts.append(f'<p class="wc-remedy"><b>What to do:</b> {escape(err.remedy)}</p>')
    if err.details and details:
        parts.append('<details class="wc-details"><summary>Technical details</summary>'
                     f'<pre>{escape(err.details)}</pre></details>')
    parts.append("</div></div>")
    return "".join(parts)


@dataclass(frozen=True)
class Offer:
    """A button right under a report's headline, and the sentence beside it.

    ``act``: "fix" opens the Fix tab on ``path`` with its plan; "check" checks ``path``;
    "" shows only the sentence (e.g. how to find a dropped folder's path).
    """

    label: str
    path: str = ""
    sentence: str = ""
    primary: bool = True
    act: str = "fix"


def action_button(label: str, act: str, path: str, primary: bool = False, cls: str = "") -> str:
    """An HTML button that the report's click listener turns into an app action (see ACTION_JS)."""
    classes = " ".join(x for x in ("wc-act", "wc-act-primary" if primary else "wc-act-secondary", cls) if x)
    return (f'<button type="button" class="{classes}" data-wc-act="{escape(act)}" '
            f'data-wc-path="{escape(path)}">{escape(label)}</button>')


def render_offer(offer: Offer | None) -> str:
    """The action bar under a headline: a button (when the action can run) and its sentence."""
    if offer is None:
        return ""
    button = (action_button(offer.label, offer.act, offer.path, offer.primary, "wc-offer-button")
              if offer.act and offer.path else "")
    say = f'<span class="wc-offer-say">{escape(offer.sentence)}</span>' if offer.sentence else ""
    return f'<div class="wc-offer">{button}{say}</div>' if button or say else ""


def render_report(report: ModelReport, offer: Offer | None = None, plan=None, compact: bool = False,
                  local: bool = True) -> str:
    """The whole report: one card; for a folder of several models a summary list, then each
    model's full report in a fold.

    ``offer``: the button under the headline (see :class:`Offer`); ``plan``: the memory plan
    whose precision the "Weights in memory" row uses; ``compact``: what the Fix tab's
    Before/After columns show (headline, components present/complete, findings; a folder: its list);
    ``local``: the paths are on this computer (the summary list offers Open and Open in Fix).
    """
    if not report.is_collection:
        return f'<div class="wc-report">{_model_card(report, offer=offer, plan=plan, compact=compact)}</div>'
    cards = [_collection_card(report, local=local and not compact)]
    if not compact:                   # Fix's Before/After: the list says it; each model has its own plan
        folded = "".join(_model_card(m, root=report.path) for m in report.models)
        cards.append(f'<details class="wc-details wc-full-reports"><summary>Full report of each model '
                     f"({len(report.models)})</summary><div class=\"wc-report\">{folded}</div></details>")
    return f'<div class="wc-report">{"".join(cards)}</div>'


def _not_wan(report: ModelReport) -> bool:
    """A single model (not a collection) that is no Wan model: Fix cannot touch it."""
    return not report.is_collection and not report.is_wan and not report.is_wan_part


def _tone(report: ModelReport) -> str:
    if _not_wan(report):
        return "wc-unknown"
    if report.errors or (report.is_collection and not report.loadable):
        return "wc-bad"
    if report.part or report.is_wan_part:
        return "wc-unknown"
    return "wc-ok" if report.loadable or report.usable else "wc-unknown"


def verdict(report: ModelReport) -> str:
    """The badge's words: '✓ Ready', '✗ Needs fixing', 'Part of a model', 'Not a Wan model' ..."""
    if _not_wan(report):
        if report.lora is not None:
            return "✗ Not usable" if report.errors else "✓ LoRA"
        return "Not a model" if report.architecture_type is A.UNKNOWN else "Not a Wan model"
    tone = _tone(report)
    if tone == "wc-unknown" and (report.part or report.is_wan_part):
        return "Part of a model"
    if report.lora is not None and tone == "wc-ok":
        return "✓ Usable"
    return {"wc-ok": "✓ Ready", "wc-bad": "✗ Needs fixing", "wc-unknown": "? Not recognised"}[tone]


def _badge(report: ModelReport) -> str:
    return f'<span class="wc-badge">{escape(verdict(report))}</span>'


def _size_on_disk(report: ModelReport) -> int | None:
    return sum(c.size_bytes for c in report.components) if report.components else None


def _collection_card(report: ModelReport, local: bool = True) -> str:
    parts = [f'<div class="wc-card {_tone(report)}">',
             f'<p class="wc-headline">{_badge(report)}<span>{escape(headline(report))}</span></p>',
             f'<p class="wc-path">{escape(report.path)}</p>', _models_list(report, local)]
    others = [f for f in report.findings if f.code != Code.COLLECTION]     # "each is reported below": the list says it
    if others:
        parts.append(_findings(tuple(others)))
    parts.append(_footer(report))
    parts.append("</div>")
    return "".join(parts)


def _models_list(report: ModelReport, local: bool) -> str:
    """A folder of several models: one row each (name, kind, verdict, size, Open, Open in Fix)."""
    rows = []
    for m in report.models:
        name = _relative(m.path, report.path)
        problems = len(m.errors)
        said = verdict(m) + (f" ({problems} problem{'s' if problems != 1 else ''})" if problems else "")
        buttons = ""
        if local:
            buttons = action_button("Open", "check", m.path)
            if m.is_wan and m.lora is None:
                buttons += action_button("Open in Fix", "fix", m.path, primary=bool(m.errors))
        rows.append(f'<tr class="{_tone(m)}"><td>{escape(name)}</td><td>{escape(model_name(m) if m.lora is None else "LoRA")}'
                    f'</td><td><span class="wc-badge">{escape(said)}</span></td>'
                    f'<td class="wc-num">{escape(format_size(_size_on_disk(m)))}</td>'
                    f'<td class="wc-row-actions">{buttons}</td></tr>')
    head = ('<thead><tr><th>Name</th><th>Kind</th><th>Verdict</th><th class="wc-num">Size</th>'
            "<th></th></tr></thead>")
    return f'<table class="wc-table wc-models">{head}<tbody>{"".join(rows)}</tbody></table>'


def _relative(path: str, root: str) -> str:
    if root and path != root:
        try:
            rel = os.path.relpath(path, root)
            return path if rel.startswith("..") else rel
        except ValueError:
            pass
    return path


def _model_card(report: ModelReport, root: str | None = None, offer: Offer | None = None, plan=None,
                compact: bool = False) -> str:
    shown_path = _relative(report.path, root) if root else report.path
    parts = [f'<div class="wc-card {_tone(report)}">',
             f'<p class="wc-headline">{_badge(report)}<span>{escape(headline(report))}</span></p>',
             f'<p class="wc-path">{escape(shown_path)}</p>', render_offer(offer)]
    if compact:
        if report.components:
            parts.append(_components_table(report.components, compact=True))
        parts.append(_findings(report.findings, remedies=False))
        parts.append("</div>")
        return "".join(parts)
    parts.append(_findings(report.findings))
    if report.architecture_type is not A.UNKNOWN or report.is_wan_part:   # nothing recognised: no table of dashes
        parts.append('<p class="wc-h">Summary</p>')
        parts.append(_summary_table(report, plan))
    if report.components:
        parts.append('<p class="wc-h">Components</p>')
        parts.append(_components_table(report.components))
    parts.append(_technical(report))
    if root is None:
        parts.append(_footer(report))
    parts.append("</div>")
    return "".join(parts)


def _experts_words(report: ModelReport) -> str:
    if report.experts == 2:
        if report.boundary_ratio is None:
            return "2 (high-noise and low-noise); when to switch between them is not set"
        return (f"2 (high-noise and low-noise); the low-noise expert takes over for the last "
                f"{100 * report.boundary_ratio:.1f} % of the noise schedule")
    if report.experts == 1:
        return "1 (a single transformer)"
    return NONE


def _weights_row(report: ModelReport, plan) -> tuple[str, str]:
    """"Weights in memory" at the precision of the plan shown under the report (bf16 without one)."""
    if plan is not None and getattr(plan, "estimate", None) is not None and plan.estimate.weights_mb:
        precision = getattr(plan.precision, "value", str(plan.precision))
        total = sum(plan.estimate.weights_mb.values())
        return f"Weights in memory ({precision}, as planned)", escape(_gib(total))
    return "Weights in memory at bf16", escape(format_size(report.weights_bytes_bf16))


def _summary_rows(report: ModelReport, plan=None) -> list[tuple[str, str]]:
    """(label, already-escaped HTML value) pairs, in plain words (codes are in the Technical details fold)."""
    arch = report.architecture_type
    arch_text = ARCHITECTURE_NAMES[arch]
    if arch is A.DIFFUSERS_OTHER and report.pipeline_class:
        arch_text = "another diffusers model"
    if arch is not A.UNKNOWN:
        arch_text += " (a Wan model)" if arch.is_wan else " (not a Wan model)"
    if report.task:
        short, long = TASK_NAMES.get(report.task, (report.task, ""))
        task = f"{short} — {long}" if long else short
    else:
        task = NONE
    if report.vae_kind or report.vae_z_dim is not None:
        vae = VAE_NAMES.get(report.vae_kind or "", report.vae_kind or "VAE")
        if report.vae_z_dim is not None:
            vae += f" ({report.vae_z_dim} latent channels)"
    else:
        vae = NONE
    rows = [
        ("Kind", escape(arch_text)),
        ("Layout", escape(LAYOUT_NAMES[report.layout])),
        ("Wan version", escape(report.wan_version or NONE)),
        ("Task", escape(task)),
        ("Experts", escape(_experts_words(report))),
        ("VAE", escape(vae)),
        ("Parameters", escape(format_parameters(report.parameters))),
        _weights_row(report, plan),
        ("Size on disk", escape(format_size(_size_on_disk(report)))),
        ("Known model", escape(report.registry_id) if report.registry_id else "no match among the known models"),
    ]
    if report.custom_code:
        rows.append(("Custom code", "yes: <code>model_index.json</code> names code that would run; "
                                    "it is not run unless you allow it for this model"))
    return rows


def _summary_table(report: ModelReport, plan=None) -> str:
    body = "".join(f"<tr><th>{escape(label)}</th><td>{value}</td></tr>"
                   for label, value in _summary_rows(report, plan))
    return f'<table class="wc-table wc-summary"><tbody>{body}</tbody></table>'


def _technical(report: ModelReport) -> str:
    """The codes and class names a bug report or a search needs, in a closed fold."""
    rows = [("Architecture code", report.architecture_type.value),
            ("Pipeline class", report.pipeline_class or NONE)]
    rows += [(f"{c.name} class", c.class_name) for c in report.components if c.class_name]
    if report.boundary_ratio is not None:
        rows.append(("boundary_ratio", f"{report.boundary_ratio:g}"))
    rows += [(f"Finding: {f.message[:60]}{'…' if len(f.message) > 60 else ''}", f.code) for f in report.findings]
    body = "".join(f"<tr><th>{escape(k)}</th><td><code>{escape(str(v))}</code></td></tr>" for k, v in rows)
    return ('<details class="wc-details wc-technical"><summary>Technical details (codes and class names)</summary>'
            f'<table class="wc-table wc-summary"><tbody>{body}</tbody></table></details>')


def _mark(ok: bool) -> str:
    return ('<span class="wc-yes" title="yes">✓</span>' if ok
            else '<span class="wc-no" title="no">✗</span>')


def _components_table(components: tuple[ComponentReport, ...], compact: bool = False) -> str:
    """Each part of the model; ``compact`` keeps the columns that fit half a page (Fix's Before/After)."""
    if compact:
        head = ('<thead><tr><th>Component</th><th class="wc-num">Size</th><th class="wc-mark">Present</th>'
                '<th class="wc-mark">Complete</th></tr></thead>')
        rows = [f"<tr><td>{escape(c.name)}</td>"
                f'<td class="wc-num">{escape(format_size(c.size_bytes) if c.files else NONE)}</td>'
                f'<td class="wc-mark">{_mark(c.present)}</td><td class="wc-mark">{_mark(c.complete)}</td></tr>'
                for c in components]
        return f'<table class="wc-table wc-components wc-compact">{head}<tbody>{"".join(rows)}</tbody></table>'
    head = ('<thead><tr><th>Component</th><th class="wc-num">Files</th>'
            '<th class="wc-num">Size on disk</th><th>Stored as</th><th class="wc-num">Parameters</th>'
            '<th class="wc-mark">Present</th><th class="wc-mark">Complete</th></tr></thead>')
    rows = []
    for c in components:
        rows.append(
            f"<tr><td>{escape(c.name)}</td>"
            f'<td class="wc-num">{len(c.files)}</td>'
            f'<td class="wc-num">{escape(format_size(c.size_bytes) if c.files else NONE)}</td>'
            f"<td>{escape((c.dtype or NONE).lower())}</td>"
            f'<td class="wc-num">{escape(format_parameters(c.parameters))}</td>'
            f'<td class="wc-mark">{_mark(c.present)}</td>'
            f'<td class="wc-mark">{_mark(c.complete)}</td></tr>')
    return f'<table class="wc-table wc-components">{head}<tbody>{"".join(rows)}</tbody></table>'


def _findings(findings: tuple[Finding, ...], remedies: bool = True) -> str:
    """Problems, warnings and notes, each with its remedy in the app's words (``app_remedy``)."""
    if not findings:
        return '<p class="wc-h">Findings</p><p class="wc-fine"><span class="wc-yes">✓</span> No problems found.</p>'
    parts = []
    for severity, title, _icon in SEVERITY_SECTIONS:
        group = [f for f in findings if f.severity is severity]
        if not group:
            continue
        parts.append(f'<p class="wc-h">{escape(title)} ({len(group)})</p><ul class="wc-findings">')
        for f in group:
            remedy = (f'<div class="wc-remedy"><b>What to do:</b> {escape(app_remedy(f.remedy))}</div>'
                      if f.remedy and remedies else "")
            where = (f'<div class="wc-meta">{escape(_relative(f.path, ""))}</div>'
                     if f.path and f.path not in f.message else "")
            parts.append(f'<li class="wc-finding wc-sev-{severity.value}">'
                         f'<div class="wc-msg">{escape(f.message)}</div>{remedy}{where}</li>')
        parts.append("</ul>")
    return "".join(parts)


def _footer(report: ModelReport) -> str:
    if not report.bytes_read:
        return ""
    return (f'<p class="wc-footer">Read {escape(format_size(report.bytes_read))} of configs and '
            "file headers; no weights were loaded.</p>")


# --- the rest of the app: plans, progress, results, the doctor -----------------------------
# (Pure string building as above; the tab modules call these.)

CSS += """
.wc-fit { margin-top: 14px; }
.wc-plan-lines { margin: 6px 0 0 0; padding-left: 1.2em; font-size: 0.9em; }
.wc-plan-lines li { margin: 2px 0; }
.wc-sub { color: var(--wc-label); font-size: 0.9em; margin: 0; }
.wc-progress { display: flex; flex-direction: column; gap: 6px; }
.wc-progress-head { display: flex; justify-content: space-between; align-items: baseline; gap: 10px; }
.wc-stage { font-weight: 600; }
.wc-pct { font-variant-numeric: tabular-nums; color: var(--wc-label); }
.wc-bar { height: 10px; border-radius: 999px; background: var(--background-fill-secondary);
  border: 1px solid var(--border-color-primary); overflow: hidden; }
.wc-bar-fill { height: 100%; background: var(--color-accent); transition: width 0.25s ease; }
.wc-bar-fill.wc-bar-done { background: #22a050; }
.wc-bar-fill.wc-bar-bad { background: #d93636; }
.wc-facts { display: flex; flex-wrap: wrap; gap: 6px 14px; font-size: 0.9em; margin: 0; padding: 0;
  list-style: none; font-variant-numeric: tabular-nums; }
.wc-facts li b { font-weight: 600; }
.wc-log { font-family: var(--font-mono); font-size: 0.8em; color: var(--wc-label); margin: 0 0 10px 0;
  white-space: pre-wrap; word-break: break-all; }
.wc-dice-col { align-self: flex-end; }
/* Gradio widens the grid to the number of items; keep thumbnails small with one or two videos. */
#wc-gen-gallery .grid-container { grid-template-columns: repeat(4, minmax(0, 1fr)) !important; }
.wc-note { margin: 4px 0 0 0; font-size: 0.9em; }
.wc-model-info { margin: 2px 0 0 0; }
.wc-drop { border: 2px dashed var(--border-color-primary); border-radius: var(--radius-lg);
  padding: 18px; text-align: center; background: var(--background-fill-secondary); cursor: pointer;
  transition: border-color 0.15s, background 0.15s; }
.wc-drop.wc-drag { border-color: var(--color-accent); background: var(--background-fill-primary); }
.wc-drop-title { font-weight: 600; margin: 0 0 4px 0; }
.wc-drop-sub { font-size: 0.85em; color: var(--wc-label); margin: 0; }
.wc-drop-status { font-size: 0.85em; margin: 8px 0 0 0; min-height: 1.2em; }
.wc-drop button { margin-top: 8px; }
.wc-checklist { list-style: none; padding: 0; margin: 0; display: flex; flex-direction: column; gap: 8px; }
.wc-checklist li { border: 1px solid var(--border-color-primary); border-radius: 6px; padding: 8px 12px;
  background: var(--background-fill-secondary); }
.wc-check-box { font-weight: 700; margin-right: 6px; }
.wc-files { font-family: var(--font-mono); font-size: 0.8em; color: var(--wc-label); margin: 4px 0 0 0;
  word-break: break-all; }
.wc-doctor-row td:first-child { white-space: nowrap; }
.wc-alert { border-left: 4px solid #e0a000; padding: 6px 12px; background: var(--background-fill-secondary);
  border-radius: 4px; margin: 0 0 8px 0; }
.wc-gen-buttons button { min-width: 0; }
#wc-fix-undo { white-space: nowrap; }
"""


def _badge_card(tone: str, badge: str, title: str, body: str = "") -> str:
    return (f'<div class="wc-report"><div class="wc-card wc-{tone}">'
            f'<p class="wc-headline"><span class="wc-badge">{escape(badge)}</span>'
            f'<span>{escape(title)}</span></p>{body}</div></div>')


def render_notice(message: str, tone: str = "unknown", badge: str = "i") -> str:
    """A one-line card: tone is "ok", "bad" or "unknown"."""
    return _badge_card(tone, badge, message)


def render_sentences(title: str, sentences: list[str], details: str = "", badge: str = "✗",
                     tone: str = "bad") -> str:
    """A card with a headline and plain sentences (e.g. what blocks a generation)."""
    body = "".join(f'<p class="wc-remedy">{escape(s)}</p>' for s in sentences)
    if details:
        body += ('<details class="wc-details"><summary>Technical details</summary>'
                 f"<pre>{escape(details)}</pre></details>")
    return _badge_card(tone, badge, title, body)


def _plan_headline(plan) -> str:
    from wan_ui.common import placement_words  # no gradio there either
    e = plan.estimate
    if plan.device == "cuda":
        use = f"peak about {_gib(e.peak_vram_mb)} of GPU memory ({_gib(plan.usable_vram_mb or 0)} usable)"
    else:
        use = f"needs about {_gib(e.peak_ram_mb)} of RAM"
        if plan.usable_ram_mb:
            use += f" ({_gib(plan.usable_ram_mb)} available)"
    words = placement_words(plan)
    return f"{words[:1].upper()}{words[1:]} — {use}"


_gib = format_mib


def render_plan(plan, title: str | None = None, fold: bool = False) -> str:
    """An OptimizationPlan: fits or not, the estimate and one reason per choice.

    ``fold``: the reasons go into a closed "Why this plan" fold, so that only the headline,
    the size and (when it does not fit) the remedy take room (the Generate tab).
    """
    if plan is None:
        return render_notice("Choose a Wan model to see its memory plan for this computer.")
    r = plan.request
    size = f"{r.width}x{r.height}, {r.num_frames} frames, {r.num_inference_steps} steps"
    lines = "".join(f"<li>{escape(line)}</li>" for line in plan.summary_lines())
    if plan.fits:
        badge, tone = "✓ Fits", "ok"
    else:
        badge, tone = "✗ Does not fit", "bad"
    body = f'<p class="wc-path">{escape(title or "Memory plan")}: {escape(size)}</p>'
    if not plan.fits and plan.remedy:
        body += f'<p class="wc-remedy"><b>What to do:</b> {escape(plan.remedy)}</p>'
    if fold:
        body += (f'<details class="wc-details wc-plan-fold"><summary>Why this plan</summary>'
                 f'<ul class="wc-plan-lines">{lines}</ul></details>')
    else:
        body += f'<ul class="wc-plan-lines">{lines}</ul>'
    return _badge_card(tone, badge, _plan_headline(plan), body)


def render_fit(report: ModelReport, plan) -> str:
    """The Model Check card "Fits this machine?" for one Wan model (empty for others)."""
    if plan is None or report.is_collection or not report.is_wan:
        return ""
    html = render_plan(plan, title="On this computer at the model's default settings")
    return html.replace('<div class="wc-report">', '<div class="wc-report wc-fit">', 1)


def render_model_info(report: ModelReport | None, badge: tuple[str, str] | None = None) -> str:
    """One line for the Generate tab: what the chosen model is, its task and its fit badge."""
    if report is None:
        return '<p class="wc-prompt">Choose a model above, or type the path of a model folder.</p>'
    tone, words = badge or ("unknown", "")
    task = ""
    if report.task:
        short, long = TASK_NAMES.get(report.task, (report.task, ""))
        task = f"{short} ({long})" if long else short
    sub = " · ".join(x for x in (task, LAYOUT_NAMES[report.layout], report.registry_id or "") if x)
    return (f'<div class="wc-report wc-model-info"><div class="wc-card wc-{tone}">'
            f'<p class="wc-headline"><span class="wc-badge">{escape(words)}</span>'
            f"<span>{escape(headline(report))}</span></p>"
            f'<p class="wc-path">{escape(report.path)}</p><p class="wc-sub">{escape(sub)}</p></div></div>')


def render_progress(view) -> str:
    """The live progress panel of a generation (``view``: wan_ui.generate.ProgressView)."""
    pct = max(0.0, min(100.0, float(view.percent or 0.0)))
    fill = "wc-bar-fill" + (" wc-bar-done" if view.state == "done" else
                            " wc-bar-bad" if view.state in ("failed", "cancelled") else "")
    facts = []
    if view.step is not None and view.steps:
        facts.append(f"<li>Step <b>{view.step}</b> of <b>{view.steps}</b></li>")
    if view.expert:
        facts.append(f"<li>{escape(view.expert)}</li>")
    if view.seconds_per_step:
        facts.append(f"<li><b>{escape(view.seconds_per_step)}</b> s/step</li>")
    if view.eta:
        facts.append(f"<li>ETA <b>{escape(view.eta)}</b></li>")
    if view.elapsed is not None:
        facts.append(f"<li>{view.elapsed:.0f} s elapsed</li>")
    log = "\n".join(view.log[-5:])
    return (f'<div class="wc-progress" data-state="{escape(view.state)}">'
            f'<div class="wc-progress-head"><span class="wc-stage">{escape(view.stage)}</span>'
            f'<span class="wc-pct">{pct:.0f}%</span></div>'
            f'<div class="wc-bar" role="progressbar" aria-valuenow="{pct:.0f}" aria-valuemin="0" '
            f'aria-valuemax="100"><div class="{fill}" style="width:{pct:.1f}%"></div></div>'
            f'<ul class="wc-facts">{"".join(facts)}</ul>'
            f'<pre class="wc-log">{escape(log)}</pre></div>')


def render_result(result: dict) -> str:
    """The card under a finished (or failed, or cancelled) generation."""
    if not result:
        return ""
    if result.get("cancelled"):
        return render_notice("Cancelled after the current step; no video was written.", "unknown", "■ Cancelled")
    if not result.get("success"):
        errors = result.get("errors") or ["The generation failed."]
        return render_sentences("The video could not be made.", list(errors), result.get("details", ""))
    s = result.get("settings") or {}
    model = s.get("model") or os.path.basename(str(s.get("model_path") or result.get("model_path") or ""))
    facts = [f"{result.get('width')}x{result.get('height')}", f"{result.get('frames')} frames",
             f"{s.get('num_inference_steps', '?')} steps", f"seed {s.get('seed', '?')}",
             f"{result.get('fps')} fps"]
    if result.get("seconds_per_step") is not None:
        facts.append(f"{result['seconds_per_step']:.2f} s/step")
    total = (result.get("seconds") or {}).get("total")
    if total is not None:
        facts.append(f"{total:.1f} s in all")
    peak_vram, peak_ram = result.get("peak_vram_mb"), result.get("peak_ram_mb")
    if isinstance(peak_vram, (int, float)) and peak_vram > 0:
        facts.append(f"peak GPU memory {_gib(peak_vram)}")
    elif isinstance(peak_ram, (int, float)) and peak_ram > 0:
        facts.append(f"peak RAM {_gib(peak_ram)}")         # unknown (e.g. a gallery pick): left out
    if model:
        facts.insert(0, model)
    body = (f'<p class="wc-path">{escape(str(result.get("output_path") or ""))}</p>'
            f'<p class="wc-sub">{escape(" · ".join(facts))}</p>')
    for w in result.get("warnings") or []:
        body += f'<p class="wc-note">Note: {escape(w)}</p>'
    prompt = s.get("prompt") or ""
    return _badge_card("ok", "✓ Done", f"“{prompt[:120]}”" if prompt else "Video ready", body)


def _count(n: int, word: str) -> str:
    """'1 warning', '2 warnings', 'no problems'."""
    return f"no {word}s" if n == 0 else f"{n} {word}{'s' if n != 1 else ''}"


def render_doctor(report) -> str:
    """core.doctor's DoctorReport as a table: each check, its status and remedy."""
    marks = {"ok": '<span class="wc-yes">✓</span>', "warning": '<span class="wc-no">!</span>',
             "error": '<span class="wc-no">✗</span>'}
    rows = []
    for c in report.checks:
        remedy = (f'<div class="wc-remedy"><b>What to do:</b> {escape(c.remedy)}</div>' if c.remedy else "")
        rows.append(f'<tr class="wc-doctor-row"><td class="wc-mark">{marks.get(c.status, "?")}</td>'
                    f"<td>{escape(c.name)}</td><td>{escape(c.summary)}{remedy}</td></tr>")
    errors = sum(c.status == "error" for c in report.checks)
    warnings = sum(c.status == "warning" for c in report.checks)
    if errors:
        title = f"{_count(errors, 'problem')} and {_count(warnings, 'warning')} on this computer"
        tone, badge = "bad", "✗ Problems"
    elif warnings:
        tone, badge, title = "unknown", "! Warnings", f"Ready, with {_count(warnings, 'warning')}"
    else:
        tone, badge, title = "ok", "✓ Ready", "This computer is ready"
    table = ('<table class="wc-table"><thead><tr><th class="wc-mark"></th><th>Check</th><th>Result</th>'
             f'</tr></thead><tbody>{"".join(rows)}</tbody></table>')
    return _badge_card(tone, badge, title, table)
