"""The FixPlan and its parts: what Fix would change (FixAction), what the person must do
(ManualStep), and ``FixPlan.execute``, which hands the plan to :mod:`core.fix.journal` (in
place) or to :mod:`core.fix.convert` (a conversion into a new folder).

Plans are made by :func:`core.fix.plan` (see :mod:`core.fix.planner`); nothing here decides.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.check.filesource import BACKUP_DIR
from core.check.report import ModelReport
from core.errors import WanError
from core.fix.journal import WAIT_SECONDS, execute_actions, execute_recovery
from core.fix.parts import FixAction, FixResult, ManualStep, inspect_path, is_ready
from core.progress import AnyCallback, Progress

if TYPE_CHECKING:  # pragma: no cover - for the annotation only: a plan in place never loads the converter
    from core.fix.convert import ConversionPlan

__all__ = ["FixAction", "FixPlan", "FixResult", "ManualStep"]


@dataclass(frozen=True)
class FixPlan:
    """Everything Fix would do to one model, computed before anything is touched.

    ``actions`` change the folder in place; ``conversion`` writes a new folder; ``manual_steps``
    are for the person; ``notes`` are remarks. ``execute()`` carries the plan out.
    """

    path: str
    actions: tuple[FixAction, ...]
    manual_steps: tuple[ManualStep, ...]
    report_before: ModelReport
    conversion: ConversionPlan | None = None
    notes: tuple[str, ...] = ()
    # (relative path, sha256 or None for absent) of every file the plan read or will change:
    # execute() refuses when the folder changed in between.
    preconditions: tuple[tuple[str, str | None], ...] = field(default=(), repr=False, compare=False)
    recovery_journal: str | None = field(default=None, repr=False, compare=False)

    @property
    def is_empty(self) -> bool:
        """Nothing to change here (manual steps may remain)."""
        return not self.actions and self.conversion is None

    def describe(self) -> list[str]:
        """The plan in plain lines, for the CLI and the Fix tab."""
        lines = [f"Fix plan for {self.path}"]
        if self.actions:
            lines.append("Changes in place:")
            for i, a in enumerate(self.actions, 1):
                lines.append(f"  {i}. {a.description}")
                for w in a.writes:
                    lines.append(f"       writes {w}")
                for src, dst in a.moves:
                    lines.append(f"       renames {src} -> {dst}")
            lines.append(f"  Every file replaced is first copied to {BACKUP_DIR}/<time>/ inside the model folder; "
                         "weights are never copied, only renamed.")
        if self.conversion is not None:
            lines.append("Conversion (the source files are not modified; --move moves the kept file):"
                         if self.conversion.moves
                         else "Conversion (the source is not modified):")
            lines += [f"  {line}" for line in self.conversion.describe()]
        if self.manual_steps:
            lines.append("Cannot be repaired here; download these:")
            for step in self.manual_steps:
                lines.append(f"  - {step.problem}")
                lines.append(f"      fetch: {step.fetch}")
                lines.append(f"      put it in: {step.where}")
                if step.command:
                    lines.append(f"      command: {step.command}")
        for note in self.notes:
            lines.append(f"Note: {note}")
        if self.is_empty and not self.manual_steps:
            ready = " The model is ready to load." if is_ready(self.report_before) else ""
            lines.append("Nothing to repair." + ready)
        return lines

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "is_empty": self.is_empty,
                "actions": [a.to_dict() for a in self.actions],
                "manual_steps": [m.to_dict() for m in self.manual_steps],
                "conversion": self.conversion.to_dict() if self.conversion is not None else None,
                "notes": list(self.notes), "report_before": self.report_before.to_dict()}

    def execute(self, progress_callback: AnyCallback = None, *, wait: float = WAIT_SECONDS) -> FixResult:
        """Carry the plan out: backups, then each action atomically, then Model Check again.

        ``progress_callback`` gets a ProgressEvent (stage ``"fix"``, or ``"convert"`` for a
        conversion), or ``(message, percent)`` for a callback written that way.
        Raises WanError when the folder changed since the plan was made, when another fix
        still holds it after ``wait`` seconds, or when the backups cannot be written (then
        nothing was changed). Errors after changes began are returned in ``FixResult.errors``.

        >>> plan.execute(lambda event: print(event.percent, event.message)).ok   # doctest: +SKIP
        """
        progress = Progress(progress_callback)
        if self.conversion is not None:
            return _execute_conversion(self, progress)
        if self.recovery_journal is not None:
            return execute_recovery(Path(self.path), Path(self.recovery_journal), self.actions[0].description,
                                    progress, wait)
        if not self.actions:
            return FixResult([], None, [], inspect_path(self.path))
        return execute_actions(Path(self.path), self.actions, self.preconditions, progress, wait)


def _execute_conversion(p: FixPlan, progress: Progress) -> FixResult:
    conversion = p.conversion
    assert conversion is not None
    if conversion.refusal:
        return FixResult([], None, [conversion.refusal], None, None)
    try:
        output = conversion.execute(progress_callback=progress)
    except WanError as err:
        return FixResult([], None, [f"{err.message} {err.remedy}".strip()], None, None)
    report = inspect_path(output)
    return FixResult(conversion.done(Path(output)), None, [], report, str(output))
