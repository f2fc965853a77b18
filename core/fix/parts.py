"""The parts of a Fix plan and its result, shared by the plan, the journal and the planner.

:class:`FixAction` (one change to the folder), :class:`ManualStep` (what the person must
download), :class:`FixResult` (what executing did) and :func:`is_ready`. Nothing here
decides or executes; :mod:`core.fix.plan` and :mod:`core.fix.journal` both import this
module and neither imports the other's types through it. Usage::

    from core.fix.parts import FixAction, FixResult, ManualStep, is_ready

    action = FixAction("set_boundary_ratio", "Set boundary_ratio to 0.875", ("model_index.json",))
    action.to_dict()["code"]          # 'set_boundary_ratio'
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from core.check.report import Layout, ModelReport


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
class FixResult:
    """What ``FixPlan.execute`` (or ``undo_fix``) did."""

    fixes_applied: list[str]
    backup_dir: str | None
    errors: list[str]
    report_after: ModelReport | None
    output_path: str | None = None

    @property
    def ok(self) -> bool:
        """No errors and the model (or the converted one) is ready to load."""
        return not self.errors and self.report_after is not None and is_ready(self.report_after)

    def to_dict(self) -> dict[str, Any]:
        return {"fixes_applied": list(self.fixes_applied), "backup_dir": self.backup_dir,
                "errors": list(self.errors), "output_path": self.output_path, "ok": self.ok,
                "report_after": self.report_after.to_dict() if self.report_after else None}


def is_ready(report: ModelReport) -> bool:
    """A Wan model in the diffusers layout that Model Check finds complete: the loader takes it."""
    return report.is_wan and report.layout is Layout.DIFFUSERS and report.loadable


def inspect_path(path: str | os.PathLike[str]) -> ModelReport:
    """Model Check of ``path`` (imported when first needed: planning a fix does not need it)."""
    from core.check.detect import inspect
    return inspect(path)
