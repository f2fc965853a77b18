"""Fix: repair a Wan model folder in place, or convert it, without losing a byte.

A :class:`FixPlan` is computed first from a Model Check report (reading only small JSON
files), shown, and only then executed, like huggingface_hub's ``scan_cache_dir`` delete
strategies. Usage::

    from core.check.detect import inspect
    from core import fix

    plan = fix.plan(inspect("/models/Wan2.2-T2V-A14B-Diffusers"))
    print("\\n".join(plan.describe()))      # what would change; nothing has yet
    if not plan.is_empty:
        result = plan.execute(progress_callback=lambda event: print(f"{event.percent:5.1f}% {event.message}"))
        result.fixes_applied, result.backup_dir, result.report_after.loadable

    fix.apply_wan_compatibility_fix(path, dry_run=True)   # the seed guide's dict form

Repairs are made in place with backups (a model folder in the diffusers layout); the
original Wan-AI layout and single transformer files are converted into a new folder; what
cannot be repaired becomes a :class:`ManualStep`. ``undo_fix(path)`` puts the last fix back.

This module is the public face of Fix: the entry points (:func:`plan`, :func:`assemble`,
:func:`apply_wan_compatibility_fix`, :func:`undo_fix`, :func:`is_ready`) and the dataclasses
(:class:`FixPlan`, :class:`FixAction`, :class:`ManualStep`, :class:`FixResult`), all
importable from here. The work is done in:

- :mod:`core.fix.plan`: the FixPlan and its parts, ``FixPlan.execute``;
- :mod:`core.fix.planner`: deciding the actions and manual steps (the list of repairs);
- :mod:`core.fix.parts`: FixAction, ManualStep, FixResult (shared by plan, planner and journal);
- :mod:`core.fix.journal`: executing in place with backups, journal, crash recovery and
  undo (Safety, and the ``WAN_COMPAT_FIX_PAUSE_AFTER`` crash-test hook);
- :mod:`core.fix.lock`: one fix at a time per folder, across threads and processes.

Progress: ``execute`` and ``undo_fix`` send :class:`core.progress.ProgressEvent` (stage
``"fix"``, ``"convert"`` for a conversion); a ``(message, percent)`` callback still works.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from core.check.codes import Code
from core.check.filesource import BACKUP_DIR
from core.check.report import Layout, ModelReport
from core.errors import WanError
from core.fix.journal import PAUSE_ENV as PAUSE_ENV
from core.fix.journal import PAUSE_SECONDS_ENV as PAUSE_SECONDS_ENV
from core.fix.journal import SMALL_FILE_LIMIT as SMALL_FILE_LIMIT
from core.fix.journal import pending_journal, undo_fix

# Names that lived in this module before it was split, still importable from here.
from core.fix.lock import LOCK_NAME as LOCK_NAME
from core.fix.lock import WAIT_SECONDS, FixLock, is_locked
from core.fix.parts import FixAction, FixResult, ManualStep, inspect_path, is_ready
from core.fix.plan import FixPlan
from core.fix.planner import BOUNDARY_PIPELINES as BOUNDARY_PIPELINES
from core.fix.planner import CONFIG_FILES as CONFIG_FILES
from core.fix.planner import EXPAND_PIPELINES as EXPAND_PIPELINES
from core.fix.planner import ORIGINAL_T5_FILE as ORIGINAL_T5_FILE
from core.fix.planner import ORIGINAL_VAE_FILES as ORIGINAL_VAE_FILES
from core.fix.planner import PIPELINE_COMPONENTS as PIPELINE_COMPONENTS
from core.fix.planner import STANDARD_CLASSES as STANDARD_CLASSES
from core.fix.planner import UNIPC_FLOW_CONFIG as UNIPC_FLOW_CONFIG
from core.fix.planner import WEIGHTLESS as WEIGHTLESS
from core.fix.planner import conversion_plan, existing_tokenizer_class, plan_in_place, recovery_plan, registry_candidates
from core.fix.planner import manual_step_for as manual_step_for
from core.progress import AnyCallback

# --------------------------------------------------------------------------- planning

def plan(report: ModelReport, *, out: str | os.PathLike[str] | None = None) -> FixPlan:
    """The FixPlan for a Model Check report; reads only small JSON files, changes nothing.

    ``out`` is where a conversion writes (default ``<source>-diffusers`` beside the source).

    >>> p = plan(inspect("/models/broken"))        # doctest: +SKIP
    >>> [a.code for a in p.actions]                 # doctest: +SKIP
    ['write_scheduler_config', 'set_boundary_ratio']
    """
    if report.is_collection:
        paths = ", ".join(m.path for m in report.models)
        return FixPlan(report.path, (), (), report, notes=(
            f"This folder holds {len(report.models)} models; run Fix on each of them: {paths}.",))
    locked = [f for f in report.findings if f.code == Code.PERMISSION_DENIED]
    if locked:  # what cannot be read cannot be backed up or judged: change nothing
        return FixPlan(report.path, (), tuple(manual_step_for(f, report, []) for f in locked), report, notes=(
            "Some files or folders here cannot be read; Fix changes nothing until they can.",))
    root = Path(report.path)
    pending = pending_journal(root) if root.is_dir() else None
    if pending is not None:
        return recovery_plan(root, pending, report)
    if report.layout in (Layout.WAN_ORIGINAL, Layout.SINGLE_FILE):
        return conversion_plan(report, out)
    if report.layout is Layout.GGUF and report.is_wan:   # kept quantized: never converted, only assembled
        return FixPlan(report.path, (), (), report, notes=(
            "A GGUF transformer is used as it is (never dequantized on disk): assemble it with its VAE and text "
            "encoder into a model folder with `python -m core fix --assemble --transformer FILE.gguf "
            "[--transformer-2 LOW.gguf] --vae VAE --text-encoder TE --out DIR`.",))
    if report.layout is not Layout.DIFFUSERS or not report.is_wan:
        note = ("This is not a Wan model; Fix repairs and converts Wan 2.1/2.2 models only."
                if report.architecture_type.value != "unknown" or report.layout is Layout.DIFFUSERS
                else "No Wan model was recognised here, so there is nothing Fix can repair.")
        codes = {f.code for f in report.findings}
        if Code.ONLY_A_PART in codes:
            note = "This is one part of a model; run Fix on the folder above it (the one with model_index.json)."
        return FixPlan(report.path, (), (), report, notes=(note,))
    return plan_in_place(report, root)


def assemble(*, transformer: str | os.PathLike[str], vae: str | os.PathLike[str],
             text_encoder: str | os.PathLike[str], out: str | os.PathLike[str],
             transformer_2: str | os.PathLike[str] | None = None,
             tokenizer: str | os.PathLike[str] | None = None, keep_fp8: bool = False,
             move: bool = False) -> FixPlan:
    """A FixPlan that assembles ComfyUI-style single files into one diffusers folder ``out``.

    Raises OSError when the transformer file cannot be read, WanError when conversion is
    not available or the parts do not fit. A .gguf transformer (an fp8 one with ``keep_fp8``)
    is kept as it is, linked into the folder (moved there with ``move``; see :mod:`core.fix.convert.linked`).
    """
    report = inspect_path(transformer)
    try:
        from core.fix.convert import plan_assembly
    except ImportError as exc:
        raise WanError("Assembling single files needs core.fix.convert, which this installation lacks.",
                       "Update Wan Compat, or download the -Diffusers version of the model.") from exc
    conversion = plan_assembly(transformer=transformer, vae=vae, text_encoder=text_encoder, out=out,
                               transformer_2=transformer_2, tokenizer=tokenizer, keep_fp8=keep_fp8, move=move)
    return FixPlan(str(Path(transformer).resolve()), (), (), report, conversion=conversion)


def apply_wan_compatibility_fix(path: str | os.PathLike[str], dry_run: bool = False,
                                out: str | os.PathLike[str] | None = None,
                                progress_callback: AnyCallback = None) -> dict[str, Any]:
    """The seed guide's one-call fix: check, plan, and (unless ``dry_run``) execute.

    Returns ``{"fixes_applied", "fixes_planned", "manual_steps", "backup_dir", "errors",
    "output_path", "report_before", "report_after", "dry_run"}``; the reports are dicts
    (``report_after`` is None for a dry run).

    >>> apply_wan_compatibility_fix("/models/broken", dry_run=True)["fixes_planned"]   # doctest: +SKIP
    ['Write scheduler/scheduler_config.json: ...']
    """
    report = inspect_path(path)
    fix_plan = plan(report, out=out)
    planned = [a.description for a in fix_plan.actions]
    if fix_plan.conversion is not None:
        planned.append(f"Convert to {fix_plan.conversion.target}")
    result: dict[str, Any] = {
        "fixes_applied": [], "fixes_planned": planned,
        "manual_steps": [m.to_dict() for m in fix_plan.manual_steps], "notes": list(fix_plan.notes),
        "backup_dir": None, "errors": [], "output_path": None,
        "report_before": report.to_dict(), "report_after": None, "dry_run": dry_run,
    }
    if dry_run:
        return result
    done = fix_plan.execute(progress_callback)
    result.update(fixes_applied=list(done.fixes_applied), backup_dir=done.backup_dir, errors=list(done.errors),
                  output_path=done.output_path,
                  report_after=done.report_after.to_dict() if done.report_after is not None else None)
    return result


__all__ = ["BACKUP_DIR", "WAIT_SECONDS", "FixAction", "FixLock", "FixPlan", "FixResult", "ManualStep",
           "apply_wan_compatibility_fix", "assemble", "existing_tokenizer_class", "is_locked", "is_ready", "plan",
           "registry_candidates", "undo_fix"]
