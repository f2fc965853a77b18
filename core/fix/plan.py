"""The FixPlan and its parts: what Fix would change (FixAction), what the person must do
(ManualStep), and ``FixPlan.execute``, which hands the plan to :mod:`core.fix.journal` (in
place) or to :mod:`core.fix.convert` (a conversion into a new folder).

Plans are made by :func:`core.fix.plan` (see :mod:`core.fix.planner`); nothing here decides.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from core.errors import WanError
from core.check.filesource import BACKUP_DIR
from core.fix.journal import FixResult, ProgressCallback, _execute_actions, _execute_recovery, _inspect, is_ready
from core.check.report import ModelReport

if TYPE_CHECKING:  # pragma: no cover
    from core.fix.convert import ConversionPlan


# --------------------------------------------------------------------------- the plan's parts

@dataclass(frozen=True)
class FixAction:
    """One change to the model folder: a sentence, the files it writes and the renames it makes.

    Paths are relative to the model folder, with ``/``. ``contents`` holds the new bytes of
    each written file (computed when the plan is made, so executing it decides nothing).
    """

    code: str
    description: str
    writes: tuple[str, ...] = ()
    moves: tuple[tuple[str, str], ...] = ()
    undoable: bool = True
    contents: tuple[tuple[str, bytes], ...] = field(default=(), repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "description": self.description, "writes": list(self.writes),
                "moves": [list(m) for m in self.moves], "undoable": self.undoable}


@dataclass(frozen=True)
class ManualStep:
    """Something Fix cannot repair: exactly what to download and where to put it.

    >>> step.command        # doctest: +SKIP
    'hf download Wan-AI/Wan2.2-T2V-A14B-Diffusers vae/diffusion_pytorch_model.safetensors --local-dir /models/W'
    """

    problem: str
    fetch: str
    where: str
    repo_id: str | None = None     # the Hugging Face repository, when the registry names one
    files: tuple[str, ...] = ()    # repository paths (``folder/*`` for a whole folder)
    local_dir: str | None = None   # the model folder the repository paths are relative to

    @property
    def command(self) -> str | None:
        """The ``hf download`` command that fetches it, when the repository is known."""
        if not self.repo_id or not self.local_dir:
            return None
        plain = [f for f in self.files if "*" not in f]
        patterns = [f for f in self.files if "*" in f]
        parts = ["hf", "download", self.repo_id, *plain]
        for p in patterns:
            parts += ["--include", f'"{p}"']
        parts += ["--local-dir", _quote(self.local_dir)]
        return " ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {"problem": self.problem, "fetch": self.fetch, "where": self.where, "repo_id": self.repo_id,
                "files": list(self.files), "command": self.command}


def _quote(path: str) -> str:
    return f'"{path}"' if any(c in path for c in " '\"$&;") else path


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
            lines.append("Conversion (the source is not modified):")
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

    def execute(self, progress_callback: ProgressCallback | None = None) -> FixResult:
        """Carry the plan out: backups, then each action atomically, then Model Check again.

        Raises WanError when the folder changed since the plan was made, when another fix is
        running on it, or when the backups cannot be written (then nothing was changed).
        Errors after changes began are returned in ``FixResult.errors``.
        """
        progress = progress_callback or (lambda message, percent: None)
        if self.conversion is not None:
            return _execute_conversion(self, progress)
        if self.recovery_journal is not None:
            return _execute_recovery(self, progress)
        if not self.actions:
            return FixResult([], None, [], _inspect(self.path))
        return _execute_actions(self, progress)


def _execute_conversion(p: FixPlan, progress: ProgressCallback) -> FixResult:
    conversion = p.conversion
    assert conversion is not None
    if conversion.refusal:
        return FixResult([], None, [conversion.refusal], None, None)
    try:
        output = conversion.execute(progress_callback=progress)
    except WanError as err:
        return FixResult([], None, [f"{err.message} {err.remedy}".strip()], None, None)
    report = _inspect(output)
    return FixResult([f"Converted {p.path} into {output}"], None, [], report, str(output))
