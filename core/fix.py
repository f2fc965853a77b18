"""Fix: repair a Wan model folder in place, or convert it, without losing a byte.

A :class:`FixPlan` is computed first from a Model Check report (reading only small JSON
files), shown, and only then executed, like huggingface_hub's ``scan_cache_dir`` delete
strategies. Usage::

    from core.detector import inspect
    from core import fix

    plan = fix.plan(inspect("/models/Wan2.2-T2V-A14B-Diffusers"))
    print("\\n".join(plan.describe()))      # what would change; nothing has yet
    if not plan.is_empty:
        result = plan.execute(progress_callback=lambda msg, pct: print(f"{pct:5.1f}% {msg}"))
        result.fixes_applied, result.backup_dir, result.report_after.loadable

    fix.apply_wan_compatibility_fix(path, dry_run=True)   # the seed guide's dict form

Repairs in place (``FixAction.code``):

- ``rebuild_model_index``: a missing or unreadable ``model_index.json`` rebuilt from the
  component folders (classes from each folder's config, the pipeline from detection,
  ``boundary_ratio`` / ``expand_timesteps`` from detection and the registry, unused slots
  ``[null, null]`` as the published repositories have them);
- ``set_pipeline_class``: a wrong pipeline ``_class_name``;
- ``fix_component_class``: an entry naming the wrong class or library for its folder;
- ``add_component_entry``: a component folder that model_index.json leaves out or sets to null;
- ``null_missing_component``: an entry for an absent folder the pipeline does not need;
- ``set_boundary_ratio`` / ``set_expand_timesteps``: Wan2.2 switches missing;
- ``write_scheduler_config``: a missing or unreadable scheduler config, from the registry
  (UniPCMultistepScheduler, flow_prediction, flow sigmas, the model's shift);
- ``fix_tokenizer_class``: a tokenizer class the installed transformers lacks;
- ``rename_weights``: a single weights file under a name diffusers/transformers do not load
  (``model.safetensors`` in a diffusers folder, an ``.fp16`` variant without a plain file);
- ``finish_interrupted_fix``: completes a fix that was killed half-way (see Safety).

The original Wan-AI layout and single transformer files become a conversion
(``FixPlan.conversion``, :mod:`core.convert`) into a new folder, ``PATH-diffusers`` unless
``out`` is given; the source is never modified. What cannot be repaired here (a missing
shard, a cut-short file, a wrong VAE, mismatched experts, a text encoder of the wrong width)
becomes a :class:`ManualStep` naming the file, the Hugging Face repository and the folder.

Safety: before anything changes, every file that will be replaced (small files only;
weights are never copied, only renamed) is copied to ``.wan_compat_backup/<time>/files/``
inside the model folder, beside a ``journal.json`` holding the planned contents. Every write
is atomic (temporary file, fsync, rename). If the process dies half-way, the next plan of
that folder is ``finish_interrupted_fix``, which brings it to exactly the planned state
(``undo_fix`` restores the backups instead). A dry run only reads.

Test hook: ``WAN_COMPAT_FIX_PAUSE_AFTER=<point>`` makes ``execute`` print
``WAN_COMPAT_FIX_PAUSED <point>`` to stderr and sleep (``WAN_COMPAT_FIX_PAUSE_SECONDS``,
default 60) at that point, so a test can SIGKILL it there. Points: ``backup`` (backups
written, journal not yet committed), ``N`` (after action N; ``0`` = journal committed, no
action yet) and ``temp:N`` (inside action N's first write, temporary file complete, not yet
renamed).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import importlib.metadata
import json
import os
import posixpath
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

from core.atomic import atomic_rename, atomic_write_bytes, dumps_json, fsync_dir, temp_path_for
from core.components import WEIGHT_STEMS, library_of
from core.errors import WanError, explain
from core.filesource import BACKUP_DIR, JOURNAL_NAME
from core.report import Finding, Layout, ModelReport, Severity

if TYPE_CHECKING:  # pragma: no cover
    from core.convert import ConversionPlan
    from core.registry import ModelRequirements

ProgressCallback = Callable[[str, float], None]

LOCK_NAME = ".lock"
SMALL_FILE_LIMIT = 16 * 2**20   # files larger than this are never copied or rewritten
PAUSE_ENV = "WAN_COMPAT_FIX_PAUSE_AFTER"
PAUSE_SECONDS_ENV = "WAN_COMPAT_FIX_PAUSE_SECONDS"

# The components each Wan pipeline takes (its __init__ arguments in diffusers 0.42).
PIPELINE_COMPONENTS: dict[str, tuple[str, ...]] = {
    "WanPipeline": ("tokenizer", "text_encoder", "vae", "scheduler", "transformer", "transformer_2"),
    "WanImageToVideoPipeline": ("tokenizer", "text_encoder", "vae", "scheduler", "image_processor",
                                "image_encoder", "transformer", "transformer_2"),
    "WanVACEPipeline": ("tokenizer", "text_encoder", "vae", "scheduler", "transformer", "transformer_2"),
    "WanAnimatePipeline": ("tokenizer", "text_encoder", "vae", "scheduler", "image_processor",
                           "image_encoder", "transformer"),
}
# Pipelines that take boundary_ratio / expand_timesteps.
BOUNDARY_PIPELINES = ("WanPipeline", "WanImageToVideoPipeline", "WanVACEPipeline")
EXPAND_PIPELINES = ("WanPipeline", "WanImageToVideoPipeline")
# What a published -Diffusers repository has in each slot.
STANDARD_CLASSES: dict[str, tuple[str, str]] = {
    "transformer": ("diffusers", "WanTransformer3DModel"),
    "transformer_2": ("diffusers", "WanTransformer3DModel"),
    "vae": ("diffusers", "AutoencoderKLWan"),
    "text_encoder": ("transformers", "UMT5EncoderModel"),
    "tokenizer": ("transformers", "T5TokenizerFast"),
    "scheduler": ("diffusers", "UniPCMultistepScheduler"),
    "image_encoder": ("transformers", "CLIPVisionModel"),
    "image_processor": ("transformers", "CLIPImageProcessor"),
}
CONFIG_FILES = {"tokenizer": "tokenizer_config.json", "scheduler": "scheduler_config.json",
                "image_processor": "preprocessor_config.json"}
WEIGHTLESS = ("tokenizer", "scheduler", "image_processor")
# UniPCMultistepScheduler as the -Diffusers repositories save it (diffusers 0.42.1 keys);
# prediction_type, use_flow_sigmas and flow_shift are what make it a Wan scheduler.
UNIPC_FLOW_CONFIG: dict[str, Any] = {
    "_class_name": "UniPCMultistepScheduler", "beta_end": 0.02, "beta_schedule": "linear",
    "beta_start": 0.0001, "disable_corrector": [], "dynamic_thresholding_ratio": 0.995,
    "final_sigmas_type": "zero", "flow_shift": 5.0, "lower_order_final": True,
    "num_train_timesteps": 1000, "predict_x0": True, "prediction_type": "flow_prediction",
    "rescale_betas_zero_snr": False, "sample_max_value": 1.0, "shift_terminal": None,
    "sigma_max": None, "sigma_min": None, "solver_order": 2, "solver_p": None, "solver_type": "bh2",
    "steps_offset": 0, "thresholding": False, "time_shift_type": "exponential",
    "timestep_spacing": "linspace", "trained_betas": None, "use_beta_sigmas": False,
    "use_dynamic_shifting": False, "use_exponential_sigmas": False, "use_flow_sigmas": True,
    "use_karras_sigmas": False,
}
ORIGINAL_VAE_FILES = {"wan2.1": "Wan2.1_VAE.pth", "wan2.2": "Wan2.2_VAE.pth"}
ORIGINAL_T5_FILE = "models_t5_umt5-xxl-enc-bf16.pth"
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
class FixResult:
    """What ``FixPlan.execute`` did."""

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
    root = Path(report.path)
    pending = _pending_journal(root) if root.is_dir() else None
    if pending is not None:
        return _recovery_plan(root, pending, report)
    if report.layout in (Layout.WAN_ORIGINAL, Layout.SINGLE_FILE):
        return _conversion_plan(report, out)
    if report.layout is not Layout.DIFFUSERS or not report.is_wan:
        note = ("This is not a Wan model; Fix repairs and converts Wan 2.1/2.2 models only."
                if report.architecture_type.value != "unknown" or report.layout is Layout.DIFFUSERS
                else "No Wan model was recognised here, so there is nothing Fix can repair.")
        codes = {f.code for f in report.findings}
        if "only_a_part" in codes:
            note = "This is one part of a model; run Fix on the folder above it (the one with model_index.json)."
        return FixPlan(report.path, (), (), report, notes=(note,))
    return _Planner(report, root).run()


def assemble(*, transformer: str | os.PathLike[str], vae: str | os.PathLike[str],
             text_encoder: str | os.PathLike[str], out: str | os.PathLike[str],
             transformer_2: str | os.PathLike[str] | None = None,
             tokenizer: str | os.PathLike[str] | None = None) -> FixPlan:
    """A FixPlan that assembles ComfyUI-style single files into one diffusers folder ``out``.

    Raises OSError when the transformer file cannot be read, WanError when conversion is
    not available or the parts do not fit.
    """
    report = _inspect(transformer)
    try:
        from core.convert import plan_assembly
    except ImportError as exc:
        raise WanError("Assembling single files needs core.convert, which this installation lacks.",
                       "Update Wan Compat, or download the -Diffusers version of the model.") from exc
    conversion = plan_assembly(transformer=transformer, vae=vae, text_encoder=text_encoder, out=out,
                               transformer_2=transformer_2, tokenizer=tokenizer)
    return FixPlan(str(Path(transformer).resolve()), (), (), report, conversion=conversion)


def apply_wan_compatibility_fix(path: str | os.PathLike[str], dry_run: bool = False,
                                out: str | os.PathLike[str] | None = None,
                                progress_callback: ProgressCallback | None = None) -> dict[str, Any]:
    """The seed guide's one-call fix: check, plan, and (unless ``dry_run``) execute.

    Returns ``{"fixes_applied", "fixes_planned", "manual_steps", "backup_dir", "errors",
    "output_path", "report_before", "report_after", "dry_run"}``; the reports are dicts
    (``report_after`` is None for a dry run).

    >>> apply_wan_compatibility_fix("/models/broken", dry_run=True)["fixes_planned"]   # doctest: +SKIP
    ['Write scheduler/scheduler_config.json: ...']
    """
    report = _inspect(path)
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


def _inspect(path: str | os.PathLike[str]) -> ModelReport:
    from core.detector import inspect
    return inspect(path)


class _Planner:
    """Works out the actions for one diffusers-layout Wan folder (on an in-memory copy of its JSON)."""

    def __init__(self, report: ModelReport, root: Path) -> None:
        self.report, self.root = report, root
        self.actions: list[FixAction] = []
        self.manual: list[ManualStep] = []
        self.notes: list[str] = []
        self.handled: set[tuple[str, str | None]] = set()   # (finding code, path) covered by an action
        self.read: dict[str, str | None] = {}               # file -> sha256 when planned
        self.pipeline = report.pipeline_class
        self.candidates = registry_candidates(report)
        self.components = {c.name: c for c in report.components if c.present}

    # --- reading --------------------------------------------------------------------

    def _bytes(self, rel: str) -> bytes | None:
        p = self.root / rel
        try:
            if p.stat().st_size > SMALL_FILE_LIMIT:
                self.read.setdefault(rel, _sha_file(p))
                return None
            data = p.read_bytes()
        except FileNotFoundError:
            self.read.setdefault(rel, None)
            return None
        except OSError:
            return None
        self.read.setdefault(rel, _sha(data))
        return data

    def _json(self, rel: str) -> Any:
        data = self._bytes(rel)
        if data is None:
            return None
        try:
            return json.loads(data.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            return None

    def _has_files(self, role: str) -> bool:
        folder = self.root / role
        try:
            return folder.is_dir() and any(p.is_file() for p in folder.iterdir())
        except OSError:
            return False

    def _config(self, role: str) -> dict[str, Any] | None:
        comp = self.components.get(role)
        if comp is not None and comp.config:
            return comp.config
        obj = self._json(f"{role}/{CONFIG_FILES.get(role, 'config.json')}")
        return obj if isinstance(obj, dict) else None

    def _files(self, role: str) -> list[str]:
        folder = self.root / role
        try:
            return sorted(p.name for p in folder.iterdir() if p.is_file())
        except OSError:
            return []

    # --- the plan ---------------------------------------------------------------------

    def run(self) -> FixPlan:
        r = self.report
        codes = {f.code for f in r.findings}
        if self.pipeline not in PIPELINE_COMPONENTS:
            self.notes.append(f"diffusers has no pipeline for this {r.task or 'Wan'} model, so Fix cannot set up "
                              "model_index.json for it.")
        self._scheduler()
        self._tokenizer_config()
        self._weight_names()
        raw = self._bytes("model_index.json")
        rebuild = "model_index_missing" in codes or "model_index_unreadable" in codes
        index: dict[str, Any] | None = None
        if not rebuild and raw is not None:
            try:
                obj = json.loads(raw.decode("utf-8"))
                index = obj if isinstance(obj, dict) else None
            except (ValueError, UnicodeDecodeError):
                index = None
            rebuild = index is None
        if raw is None and not rebuild and (self.root / "model_index.json").exists():
            self.notes.append("model_index.json is too large to be a real one; it was left alone.")
        elif self.pipeline in PIPELINE_COMPONENTS:
            self._model_index(index if not rebuild else None, raw)
        self._manual_steps()
        return FixPlan(r.path, tuple(self.actions), tuple(self.manual), r, None, tuple(self.notes),
                       preconditions=tuple(sorted(self.read.items())))

    def _add(self, code: str, description: str, contents: dict[str, bytes] | None = None,
             moves: Iterable[tuple[str, str]] = ()) -> None:
        contents = contents or {}
        self.actions.append(FixAction(code, description, tuple(contents), tuple(moves), True,
                                      tuple(contents.items())))

    # --- scheduler ----------------------------------------------------------------------

    def _scheduler(self) -> None:
        rel = "scheduler/scheduler_config.json"
        bad = [f for f in self.report.findings if (f.code in ("config_missing", "config_unreadable") and f.path == rel)
               or (f.code == "component_missing" and f.path in ("scheduler", None) and "scheduler" in f.message)]
        config = self._json(rel)
        if not bad and isinstance(config, dict) and config.get("_class_name"):
            return
        shift, source = self._registry_value("shift", 5.0)
        config = dict(UNIPC_FLOW_CONFIG, flow_shift=float(shift), _diffusers_version=_diffusers_version())
        config = dict(sorted(config.items()))
        old = (self.root / rel).exists()
        self._add("write_scheduler_config",
                  f"{'Replace the unreadable' if old else 'Write the missing'} {rel}: UniPCMultistepScheduler with "
                  f"flow_prediction, flow sigmas and flow_shift {shift:g} ({source}).",
                  {rel: dumps_json(config)})
        for f in bad:
            self.handled.add((f.code, f.path))

    # --- tokenizer -------------------------------------------------------------------

    def _tokenizer_config(self) -> None:
        rel = "tokenizer/tokenizer_config.json"
        config = self._json(rel)
        if not isinstance(config, dict) or not isinstance(config.get("tokenizer_class"), str):
            return
        name = config["tokenizer_class"]
        replacement = existing_tokenizer_class(name, prefer_fast=False)
        if replacement is None or replacement == name:
            return
        new = dict(config, tokenizer_class=replacement)
        self._add("fix_tokenizer_class",
                  f"Set tokenizer_class in {rel} to {replacement}: the installed transformers has no {name}.",
                  {rel: dumps_json(new)})

    # --- weights under the wrong name ---------------------------------------------------

    def _weight_names(self) -> None:
        for role, comp in sorted(self.components.items()):
            if role in WEIGHTLESS or role not in STANDARD_CLASSES:
                continue
            library = library_of(comp.config) if comp.config else None
            if library is None:
                continue
            names = self._files(role)
            weights = [n for n in names if n.endswith(".safetensors")]
            if len(weights) != 1 or any(n.endswith(".index.json") for n in names):
                continue
            wanted = f"{WEIGHT_STEMS[library]}.safetensors"
            if weights[0] == wanted:
                continue
            src, dst = f"{role}/{weights[0]}", f"{role}/{wanted}"
            self.read.setdefault(dst, None)
            self.read.setdefault(src, _stat_sig(self.root / src))
            self._add("rename_weights",
                      f"Rename {src} to {wanted}: {library} loads a {role} only from that name "
                      "(renamed, not copied).", moves=[(src, dst)])
            self.handled.add(("weights_misnamed", role))

    # --- model_index.json -----------------------------------------------------------

    def _model_index(self, index: dict[str, Any] | None, raw: bytes | None) -> None:
        rebuild = index is None
        edits: list[tuple[str, str]] = []
        work: dict[str, Any] = dict(index) if index is not None else {
            "_class_name": self.pipeline, "_diffusers_version": _diffusers_version()}
        sorted_keys = rebuild or list(work) == sorted(work)
        snapshots: list[tuple[str, str, bytes]] = []

        def edit(code: str, description: str, key: str, value: Any, short: str | None = None) -> None:
            if key in work:
                work[key] = value
            elif sorted_keys:
                work[key] = value
                items = sorted(work.items())
                work.clear()
                work.update(items)
            else:
                work[key] = value
            edits.append((code, short or description))
            snapshots.append((code, description, dumps_json(work)))

        pipeline = self.pipeline
        declared = work.get("_class_name")
        if not rebuild and declared != pipeline and not isinstance(declared, list):
            edit("set_pipeline_class", f"Set the pipeline class in model_index.json to {pipeline} "
                 f"(it says {declared or 'nothing'}).", "_class_name", pipeline)
            self.handled.add(("class_name_mismatch", "model_index.json"))
        allowed = PIPELINE_COMPONENTS[pipeline]
        needs_image = self.report.task == "animate" or (
            self.report.task in ("i2v", "flf2v") and self.report.wan_version == "2.1")
        needs_t2 = isinstance(work.get("boundary_ratio"), (int, float)) or (
            bool(self.candidates) and all(e.experts == 2 for e in self.candidates))
        for role in allowed:
            entry = work.get(role)
            is_null = entry == [None, None]
            named = isinstance(entry, list) and len(entry) == 2 and not is_null
            if self._has_files(role):
                # an unreadable config (a manual step) still gets the standard entry in a rebuild
                want = self._class_for(role) or (STANDARD_CLASSES.get(role) if rebuild else None)
                if want is None:
                    continue
                if rebuild:
                    edit("add_component_entry", f"{role}: {want[1]}", role, list(want))
                elif not named:
                    if is_null and role == "transformer_2" and not any(
                            n.endswith(".safetensors") for n in self._files(role)):
                        continue
                    how = "sets it to null" if is_null else "does not name it"
                    edit("add_component_entry", f"Add {role} ({want[1]}) to model_index.json: the {role}/ folder "
                         f"is there but model_index.json {how}.", role, list(want))
                    self.handled.add(("component_not_in_index", role))
                elif not _same_class(role, (entry[0], entry[1]), want):
                    code = "fix_tokenizer_class" if role == "tokenizer" and _transformers_has(entry[1]) is False \
                        else "fix_component_class"
                    edit(code, f"Set {role} in model_index.json to {want[1]} ({want[0]}): it says {entry[1]} "
                         f"({entry[0]}), but the {role}/ folder holds a {want[1]}.", role, list(want))
                    self.handled.add(("component_class_mismatch", role))
                continue
            # no folder
            optional = (role == "transformer_2" and not needs_t2) or (
                role in ("image_encoder", "image_processor") and not needs_image)
            if role == "scheduler":
                want = self._class_for(role)  # the scheduler action writes it
                if want is not None and (not named or tuple(entry) != want):
                    edit("add_component_entry" if not named else "fix_component_class",
                         f"{role}: {want[1]}" if rebuild else f"Name the scheduler ({want[1]}) in model_index.json.",
                         role, list(want))
            elif optional:
                slot_used = (pipeline in BOUNDARY_PIPELINES if role == "transformer_2"
                             else pipeline == "WanImageToVideoPipeline")
                if named:
                    edit("null_missing_component", f"Set {role} to [null, null] in model_index.json: its folder is "
                         "missing and this model does not need it.", role, [None, None])
                    self.handled.add(("component_missing", role))
                elif rebuild and slot_used:
                    edit("add_component_entry", f"{role}: none", role, [None, None])
            elif rebuild and role in STANDARD_CLASSES:
                # a needed folder is missing: name it anyway, so the download drops into place
                # (the manual steps say what to fetch)
                want = STANDARD_CLASSES[role]
                edit("add_component_entry", f"{role}: {want[1]} (folder missing)", role, list(want))
        # expert switch and timestep expansion
        experts = sum(1 for role in ("transformer", "transformer_2")
                      if isinstance(work.get(role), list) and work[role] != [None, None] and self._has_files(role))
        if pipeline in BOUNDARY_PIPELINES:
            ratio = work.get("boundary_ratio")
            if experts == 2 and not isinstance(ratio, (int, float)):
                value, source = self._registry_value("boundary_ratio", None, experts=2)
                if value is not None:
                    edit("set_boundary_ratio", f"Set boundary_ratio to {value:g} in model_index.json ({source}): "
                         "without it the second expert is never used.", "boundary_ratio", value,
                         short=f"boundary_ratio: {value:g} ({source})")
                    self.handled.add(("boundary_ratio_missing", None))
                else:
                    self.notes.append("Two experts but no known boundary_ratio for this model: set boundary_ratio in "
                                      "model_index.json by hand (0.875 for T2V-A14B, 0.9 for I2V-A14B).")
            elif rebuild and "boundary_ratio" not in work:
                edit("add_component_entry", "boundary_ratio: null", "boundary_ratio", None)
        if pipeline in EXPAND_PIPELINES:
            want_expand = self.report.task == "ti2v"
            if want_expand and work.get("expand_timesteps") is not True:
                edit("set_expand_timesteps", "Set expand_timesteps to true in model_index.json: a TI2V-5B model "
                     "needs it.", "expand_timesteps", True, short="expand_timesteps: true (TI2V-5B)")
                self.handled.add(("expand_timesteps_missing", None))
            elif rebuild and "expand_timesteps" not in work:
                edit("add_component_entry", "expand_timesteps: false", "expand_timesteps", False)
        if not edits:
            return
        rel = "model_index.json"
        if rebuild:
            parts = [d for c, d in edits]
            why = "is missing" if raw is None else "cannot be read"
            self._add("rebuild_model_index",
                      f"Rebuild model_index.json (it {why}) from the component folders: {pipeline}; "
                      + "; ".join(parts) + ".", {rel: dumps_json(work)})
            self.handled |= {("model_index_missing", rel), ("model_index_unreadable", rel),
                             ("class_name_mismatch", rel), ("boundary_ratio_missing", None),
                             ("expand_timesteps_missing", None)}
            self.handled |= {("component_not_in_index", role) for role in allowed}
        else:
            for code, description, content in snapshots:
                self._add(code, description, {rel: content})

    def _class_for(self, role: str) -> tuple[str, str] | None:
        """(library, class) that model_index.json should name for the folder ``role``."""
        if role == "scheduler" and any(a.code == "write_scheduler_config" for a in self.actions):
            return STANDARD_CLASSES["scheduler"]
        config = self._config(role)
        if not config:
            return None
        if role == "tokenizer":
            name = config.get("tokenizer_class")
            if not isinstance(name, str):
                return STANDARD_CLASSES["tokenizer"]
            name = existing_tokenizer_class(name, prefer_fast=False) or name
            if "tokenizer.json" in self._files(role):
                fast = name if name.endswith("Fast") else name + "Fast"
                if _transformers_has(fast) is not False:
                    name = fast
            return ("transformers", name)
        if role == "image_processor":
            name = config.get("image_processor_type")
            return ("transformers", name) if isinstance(name, str) else STANDARD_CLASSES["image_processor"]
        if isinstance(config.get("_class_name"), str):
            return ("diffusers", config["_class_name"])
        arch = config.get("architectures")
        if isinstance(arch, list) and arch and isinstance(arch[0], str):
            return ("transformers", arch[0])
        return None

    def _registry_value(self, name: str, default: Any, experts: int | None = None) -> tuple[Any, str]:
        cands = self.candidates if experts is None else registry_candidates(self.report, experts=experts)
        values = [getattr(e, name) for e in cands]
        if values:
            label = cands[0].name if len(set(values)) == 1 and len(cands) == 1 else None
            if len(set(values)) == 1:
                return values[0], f"registry: {label or ', '.join(e.name for e in cands)}"
            return values[0], f"registry: {cands[0].name}; models of this kind differ, the first listed was used"
        return default, "default"

    # --- what it cannot repair ---------------------------------------------------------

    def _manual_steps(self) -> None:
        planned_writes = {w for a in self.actions for w in a.writes}
        for f in self.report.findings:
            if f.severity is not Severity.ERROR or (f.code, f.path) in self.handled:
                continue
            if f.path in planned_writes:
                continue
            step = manual_step_for(f, self.report, self.candidates)
            if step is not None and step not in self.manual:
                self.manual.append(step)


def _same_class(role: str, declared: tuple[str | None, str | None], want: tuple[str, str]) -> bool:
    lib, cls = declared
    if lib != want[0] or not isinstance(cls, str):
        return False
    if role == "tokenizer":
        return _transformers_has(cls) is not False and cls.removesuffix("Fast") == want[1].removesuffix("Fast")
    return cls == want[1]


# --------------------------------------------------------------------------- registry and libraries

def registry_candidates(report: ModelReport, experts: int | None = None) -> list[ModelRequirements]:
    """Registry entries this model may be: its own entry, else those of its kind and layout."""
    try:
        from core.registry import get_compatibility_registry
        registry = get_compatibility_registry()
    except Exception:  # noqa: BLE001 - a broken registry must not stop a fix plan
        return []
    if report.registry_id and experts is None:
        entry = registry.get(report.registry_id)
        if entry is not None:
            return [entry]
    layouts = ("diffusers",) if report.layout is Layout.DIFFUSERS else ("wan_original", "single_file")
    found = [e for e in registry if e.task == report.task and e.layout in layouts
             and (report.size_class is None or e.size_class == report.size_class)]
    if experts is not None:
        return [e for e in found if e.experts == experts]
    found = [e for e in found if report.wan_version is None or e.wan_version == report.wan_version]
    if report.experts and len({e.experts for e in found}) > 1:
        found = [e for e in found if e.experts == report.experts]
    return found


def _diffusers_version() -> str:
    try:
        return importlib.metadata.version("diffusers")
    except importlib.metadata.PackageNotFoundError:
        return "0.35.0"


@functools.lru_cache(maxsize=None)
def _transformers_has(name: str) -> bool | None:
    """Whether the installed transformers has class ``name``; None when transformers cannot tell."""
    try:
        importlib.metadata.version("transformers")
    except importlib.metadata.PackageNotFoundError:
        return None
    try:
        import transformers
        return hasattr(transformers, name)
    except Exception:  # noqa: BLE001 - a broken install cannot judge class names
        return None


def existing_tokenizer_class(name: str, *, prefer_fast: bool) -> str | None:
    """``name`` when the installed transformers has it, else the nearest class it has.

    Wan's tokenizer is google/umt5-xxl's, a T5 tokenizer, so T5 is the last resort.
    Returns None when transformers is not installed (nothing can be judged).
    """
    has = _transformers_has(name)
    if has is None:
        return None
    if has:
        return name
    base = name.removesuffix("Fast")
    order = [base + "Fast", base] if prefer_fast else [base, base + "Fast"]
    order += ["T5TokenizerFast", "T5Tokenizer"] if prefer_fast else ["T5Tokenizer", "T5TokenizerFast"]
    return next((c for c in order if _transformers_has(c)), None)


# --------------------------------------------------------------------------- manual steps

def _repo_text(cands: list[ModelRequirements]) -> tuple[str | None, str]:
    if len(cands) == 1:
        return cands[0].model_id, f"the Hugging Face repository {cands[0].model_id}"
    if cands:
        ids = ", ".join(e.model_id for e in cands)
        return None, f"the Hugging Face repository this model came from (one of {ids})"
    return None, "the Hugging Face repository this model came from"


def manual_step_for(f: Finding, report: ModelReport, cands: list[ModelRequirements]) -> ManualStep | None:
    """The download that mends finding ``f``, or a plain step when nothing can be downloaded."""
    root = report.path
    repo, from_repo = _repo_text(cands)
    original = report.layout is not Layout.DIFFUSERS

    def into(folder: str) -> str:
        return str(Path(root) / folder) + os.sep if folder else str(Path(root)) + os.sep

    code, path = f.code, f.path
    if path and (code in ("shard_missing", "file_truncated", "index_unreadable", "config_missing",
                          "config_unreadable") or code.startswith("header_")):
        extra = " (delete the damaged copy first)" if code != "shard_missing" and code != "config_missing" else ""
        return ManualStep(f.message, f"{path}{extra} from {from_repo}", into(posixpath.dirname(path)),
                          repo, (path,), root)
    if code == "weights_missing" and path:
        return ManualStep(f.message, f"the weight files of {path}/ from {from_repo}", into(path),
                          repo, (f"{path}/*",), root)
    if code == "component_missing":
        if original:
            vae = cands[0].vae if cands else "wan2.1"
            file = ORIGINAL_VAE_FILES.get(vae, "Wan2.1_VAE.pth") if "VAE" in f.message else ORIGINAL_T5_FILE
            return ManualStep(f.message, f"{file} from {from_repo}", into(""), repo, (file,), root)
        role = path or next((r for r in STANDARD_CLASSES if f"the {r}" in f.message.lower()), "")
        if role == "image_encoder" and "image_processor" in f.message:
            return ManualStep(f.message, f"the whole image_encoder/ and image_processor/ folders from {from_repo}",
                              into(""), repo, ("image_encoder/*", "image_processor/*"), root)
        if role:
            return ManualStep(f.message, f"the whole {role}/ folder from {from_repo}", into(role), repo,
                              (f"{role}/*",), root)
    if code == "vae_mismatch":
        if original:
            vae = cands[0].vae if cands else ("wan2.2" if "Wan2.2 VAE" in f.message else "wan2.1")
            file = ORIGINAL_VAE_FILES.get(vae, "Wan2.1_VAE.pth")
            return ManualStep(f.message, f"{file} from {from_repo}", into(""), repo, (file,), root)
        return ManualStep(f.message, f"the whole vae/ folder from {from_repo} (replace the one there)", into("vae"),
                          repo, ("vae/*",), root)
    if code == "expert_mismatch":
        folder = "low_noise_model" if original else "transformer_2"
        return ManualStep(f.message, f"the whole {folder}/ folder from {from_repo} (replace the one there)",
                          into(folder), repo, (f"{folder}/*",), root)
    if code == "text_dim_mismatch":
        if original:
            return ManualStep(f.message, f"{ORIGINAL_T5_FILE} from {from_repo}", into(""), repo,
                              (ORIGINAL_T5_FILE,), root)
        return ManualStep(f.message, f"the whole text_encoder/ folder from {from_repo} (replace the one there)",
                          into("text_encoder"), repo, ("text_encoder/*",), root)
    if code in ("not_a_model", "only_a_part", "pickle_not_inspected"):
        return None
    return ManualStep(f.message, f.remedy or "see the Model Check report", into(posixpath.dirname(path or "")))


# --------------------------------------------------------------------------- conversions

def _conversion_plan(report: ModelReport, out: str | os.PathLike[str] | None) -> FixPlan:
    """The original layout or a single file: a conversion into a new folder (core.convert decides
    whether it can; it reads the pickled files the detector judges by size alone). When it
    cannot, the downloads that mend the source are listed as manual steps."""
    cands = registry_candidates(report)
    if not report.is_wan:
        return FixPlan(report.path, (), (), report, notes=("No Wan model was recognised here.",))
    steps = tuple(s for s in (manual_step_for(f, report, cands) for f in report.errors) if s is not None)
    try:
        from core.convert import plan_conversion
    except ImportError:
        repo, from_repo = _repo_text(_diffusers_twins(cands))
        target = Path(out) if out is not None else Path(report.path).parent / (Path(report.path).name + "-diffusers")
        step = ManualStep("Converting this layout needs core.convert, which this installation lacks.",
                          f"the -Diffusers version of this model: {from_repo}", str(target) + os.sep,
                          repo, (), str(target))
        return FixPlan(report.path, (), steps + (step,), report)
    try:
        conversion = plan_conversion(report, target=out)
    except WanError as err:
        return FixPlan(report.path, (), steps, report, notes=(f"{err.message} {err.remedy}".strip(),))
    # a refusal is in the conversion's own describe(); then the downloads say how to mend it
    return FixPlan(report.path, (), steps if conversion.refusal else (), report, conversion=conversion)


def _diffusers_twins(cands: list[ModelRequirements]) -> list[ModelRequirements]:
    """The -Diffusers registry entries of the same models."""
    try:
        from core.registry import get_compatibility_registry
        registry = get_compatibility_registry()
    except Exception:  # noqa: BLE001
        return []
    names = {e.name for e in cands}
    return [e for e in registry if e.layout == "diffusers" and e.name in names]


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


# --------------------------------------------------------------------------- executing in place

def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _sha_file(path: Path) -> str | None:
    """sha256 of a small file; for a large one a signature of its size and time (never read)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    if st.st_size > SMALL_FILE_LIMIT:
        return _stat_sig(path)
    return _sha(path.read_bytes())


def _stat_sig(path: Path) -> str | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return f"stat:{st.st_size}:{st.st_mtime_ns}"


def _pause(point: str) -> None:
    """The crash-test hook (see the module docstring)."""
    if os.environ.get(PAUSE_ENV) == point:
        sys.stderr.write(f"WAN_COMPAT_FIX_PAUSED {point}\n")
        sys.stderr.flush()
        time.sleep(float(os.environ.get(PAUSE_SECONDS_ENV, "60")))


class _Lock:
    """One fix at a time per folder: ``.wan_compat_backup/.lock`` holds the owner's process id."""

    def __init__(self, root: Path) -> None:
        self.dir = root / BACKUP_DIR
        self.path = self.dir / LOCK_NAME
        self.created_dir = False

    def __enter__(self) -> "_Lock":
        if not self.dir.exists():
            self.dir.mkdir()
            self.created_dir = True
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    pid = int(self.path.read_text().strip() or 0)
                except (OSError, ValueError):
                    pid = 0
                if pid and pid != os.getpid() and _alive(pid):
                    raise WanError(f"Another fix is running on this folder (process {pid}).",
                                   "Wait for it to finish, then plan again.") from None
                self.path.unlink(missing_ok=True)  # left by a process that died
                continue
            with os.fdopen(fd, "w") as fh:
                fh.write(str(os.getpid()))
            return self
        raise WanError("Could not take the fix lock.", "Try again.")

    def __exit__(self, *exc: Any) -> None:
        self.path.unlink(missing_ok=True)
        try:
            self.dir.rmdir()  # only when empty: nothing was backed up
        except OSError:
            pass


def _alive(pid: int) -> bool:
    try:
        import psutil
        return psutil.pid_exists(pid)
    except ImportError:  # pragma: no cover - psutil is a requirement
        return True


def _check_preconditions(root: Path, p: FixPlan) -> None:
    changed = []
    for rel, sig in p.preconditions:
        target = root / rel
        now = _stat_sig(target) if (sig or "").startswith("stat:") else _sha_file(target)
        if now != sig:
            changed.append(rel)
    if changed:
        raise WanError(f"The model folder changed after this plan was made ({', '.join(changed[:3])}); "
                       "nothing was changed.", "Make the plan again (run Fix again) and apply the new one.")


def _backup_name(bdir: Path) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name, n = stamp, 1
    while (bdir / name).exists():
        n += 1
        name = f"{stamp}-{n}"
    return name


def _journal_entries(root: Path, actions: tuple[FixAction, ...]) -> tuple[list[dict[str, Any]], list[list[str]]]:
    """Each written file: its states along the plan (for recovery) and final content; and the moves."""
    files: dict[str, dict[str, Any]] = {}
    for a in actions:
        for rel, data in a.contents:
            entry = files.get(rel)
            if entry is None:
                before = _sha_file(root / rel)
                entry = files[rel] = {"path": rel, "before": before, "states": [before]}
            entry["states"].append(_sha(data))
            entry["final"] = _sha(data)
            entry["final_b64"] = base64.b64encode(data).decode("ascii")
    moves = [[src, dst] for a in actions for src, dst in a.moves]
    return list(files.values()), moves


def _new_folders(root: Path, files: list[dict[str, Any]]) -> list[str]:
    """Folders the fix will create (for a scheduler/ that was missing), deepest first."""
    out: set[str] = set()
    for f in files:
        parent = posixpath.dirname(f["path"])
        while parent and not (root / parent).is_dir():
            out.add(parent)
            parent = posixpath.dirname(parent)
    return sorted(out, key=lambda d: -d.count("/"))


def _write_durable(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _execute_actions(p: FixPlan, progress: ProgressCallback) -> FixResult:
    root = Path(p.path)
    total = len(p.actions)
    with _Lock(root) as lock:
        _check_preconditions(root, p)
        _remove_stale_partials(lock.dir)
        progress("Backing up the files that will change", 1)
        files, moves = _journal_entries(root, p.actions)
        name = _backup_name(lock.dir)
        partial = lock.dir / f".{name}.partial-{os.getpid()}"
        try:
            for entry in files:
                if entry["before"] is not None:
                    _write_durable(partial / "files" / entry["path"], (root / entry["path"]).read_bytes())
            journal = {"version": 1, "state": "applying", "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                       "actions": [a.to_dict() for a in p.actions], "files": files, "moves": moves,
                       "new_folders": _new_folders(root, files)}
            _write_durable(partial / JOURNAL_NAME, json.dumps(journal, indent=1).encode())
            for folder in sorted({q.parent for q in partial.rglob("*")} | {partial}, key=lambda q: -len(q.parts)):
                fsync_dir(folder)
            _pause("backup")
            backup = lock.dir / name
            os.rename(partial, backup)  # the commit point: from here on the journal finishes the fix
            fsync_dir(lock.dir)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        _pause("0")
        applied: list[str] = []
        errors: list[str] = []
        for i, action in enumerate(p.actions, 1):
            progress(action.description, 5 + 90 * (i - 1) / total)
            try:
                _apply(root, action, i)
            except OSError as exc:
                err = explain(exc)
                errors.append(f"{action.description}: {err.message} {err.remedy}".strip())
                break
            applied.append(action.description)
            _pause(str(i))
        if errors:  # put back what was done; the journal says what that is
            undo_errors = _undo_journal(root, backup)
            errors += undo_errors
            if not undo_errors:
                errors.append("The changes already made were undone; the folder is as it was.")
                applied = []
        else:
            _set_journal_state(backup, "done")
    progress("Checking the model again", 97)
    report = _inspect(root)
    progress("Done", 100)
    return FixResult(applied, str(backup), errors, report)


def _apply(root: Path, action: FixAction, index: int) -> None:
    first = True
    for rel, data in action.contents:
        hook = (lambda: _pause(f"temp:{index}")) if first else None
        atomic_write_bytes(root / rel, data, before_replace=hook)
        first = False
    for src, dst in action.moves:
        atomic_rename(root / src, root / dst)


def _set_journal_state(backup: Path, state: str) -> None:
    path = backup / JOURNAL_NAME
    journal = json.loads(path.read_text())
    journal["state"] = state
    journal[state] = time.strftime("%Y-%m-%d %H:%M:%S")
    atomic_write_bytes(path, json.dumps(journal, indent=1).encode())


def _remove_stale_partials(bdir: Path) -> None:
    for q in bdir.glob(".*.partial-*"):
        pid = q.name.rsplit("-", 1)[-1]
        if pid.isdigit() and (int(pid) == os.getpid() or not _alive(int(pid))):
            shutil.rmtree(q, ignore_errors=True)


def _journals(root: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Every committed journal under the folder's backups, oldest first."""
    out = []
    bdir = root / BACKUP_DIR
    if not bdir.is_dir():
        return out
    for q in sorted(bdir.iterdir()):
        if q.name.startswith(".") or not (q / JOURNAL_NAME).is_file():
            continue
        try:
            out.append((q, json.loads((q / JOURNAL_NAME).read_text())))
        except (OSError, ValueError):
            continue
    return out


def _pending_journal(root: Path) -> tuple[Path, dict[str, Any]] | None:
    pending = [(q, j) for q, j in _journals(root) if j.get("state") == "applying"]
    return pending[-1] if pending else None


def _recovery_plan(root: Path, pending: tuple[Path, dict[str, Any]], report: ModelReport) -> FixPlan:
    backup, journal = pending
    todo = [f["path"] for f in journal.get("files", []) if _sha_file(root / f["path"]) != f.get("final")]
    moves = [tuple(m) for m in journal.get("moves", []) if (root / m[0]).exists()]
    parts = []
    if todo:
        parts.append("write " + ", ".join(todo))
    if moves:
        parts.append("rename " + ", ".join(f"{a} -> {b}" for a, b in moves))
    left = "; ".join(parts) or "only its record is left to close"
    action = FixAction("finish_interrupted_fix",
                       f"Finish the fix that was interrupted (started {journal.get('started', '?')}, backups in "
                       f"{BACKUP_DIR}/{backup.name}/): {left}.", tuple(todo), tuple(moves), True)
    notes = ["These are the remaining changes of the earlier fix; plan again afterwards to check for anything else."]
    try:
        pid = int((root / BACKUP_DIR / LOCK_NAME).read_text().strip() or 0)
    except (OSError, ValueError):
        pid = 0
    if pid and pid != os.getpid() and _alive(pid):
        notes.insert(0, f"A fix is running on this folder right now (process {pid}); wait for it to finish.")
    return FixPlan(report.path, (action,), (), report, notes=tuple(notes), recovery_journal=str(backup))


def _execute_recovery(p: FixPlan, progress: ProgressCallback) -> FixResult:
    root = Path(p.path)
    backup = Path(p.recovery_journal or "")
    with _Lock(root):
        progress("Finishing the interrupted fix", 5)
        errors = _finish_journal(root, backup)
    report = _inspect(root)
    progress("Done", 100)
    applied = [] if errors else [p.actions[0].description]
    return FixResult(applied, str(backup), errors, report)


def _finish_journal(root: Path, backup: Path) -> list[str]:
    """Roll an interrupted fix forward to its planned state; conflicts are reported, not overwritten."""
    journal = json.loads((backup / JOURNAL_NAME).read_text())
    errors = []
    for f in journal.get("files", []):
        target = root / f["path"]
        temp_path_for(target).unlink(missing_ok=True)
        now = _sha_file(target)
        if now == f["final"]:
            continue
        if now in f["states"]:
            atomic_write_bytes(target, base64.b64decode(f["final_b64"]))
        else:
            errors.append(f"{f['path']} was changed by something else since the fix began; it was left as it is "
                          f"(its original is in {backup / 'files' / f['path']}).")
    for src, dst in journal.get("moves", []):
        a, b = root / src, root / dst
        if a.exists() and not b.exists():
            atomic_rename(a, b)
        elif not (b.exists() and not a.exists()):
            errors.append(f"Cannot finish renaming {src} to {dst}: both or neither exist.")
    _set_journal_state(backup, "done" if not errors else "conflict")
    return errors


def _undo_journal(root: Path, backup: Path) -> list[str]:
    """Put every file the journal changed back as it was (the files' current state must be known to it)."""
    journal = json.loads((backup / JOURNAL_NAME).read_text())
    errors = []
    for src, dst in reversed(journal.get("moves", [])):
        a, b = root / src, root / dst
        if b.exists() and not a.exists():
            atomic_rename(b, a)
        elif not (a.exists() and not b.exists()):
            errors.append(f"Cannot rename {dst} back to {src}: both or neither exist.")
    for f in reversed(journal.get("files", [])):
        target = root / f["path"]
        temp_path_for(target).unlink(missing_ok=True)
        now = _sha_file(target)
        if now == f["before"]:
            continue
        if now not in f["states"]:
            errors.append(f"{f['path']} was changed since the fix; it was left as it is "
                          f"(the original is in {backup / 'files' / f['path']}).")
            continue
        if f["before"] is None:
            target.unlink(missing_ok=True)
            fsync_dir(target.parent)
        else:
            atomic_write_bytes(target, (backup / "files" / f["path"]).read_bytes())
    for folder in journal.get("new_folders", []):
        try:
            (root / folder).rmdir()  # only when empty
        except OSError:
            pass
    _set_journal_state(backup, "undone" if not errors else "conflict")
    return errors


def undo_fix(path: str | os.PathLike[str], backup_dir: str | os.PathLike[str] | None = None) -> FixResult:
    """Undo a fix from its backups (the latest one unless ``backup_dir`` names another).

    Files written by the fix are restored (or removed, if the fix created them) and renames
    reversed; a file changed since the fix is left alone and named in ``errors``.

    >>> undo_fix("/models/Wan2.2-T2V-A14B-Diffusers").fixes_applied     # doctest: +SKIP
    ['Restored 2 file(s) from .wan_compat_backup/20261126-120102']
    """
    root = Path(path)
    with _Lock(root):
        journals = [(q, j) for q, j in _journals(root) if j.get("state") in ("done", "applying")]
        if backup_dir is not None:
            journals = [(q, j) for q, j in journals if q.resolve() == Path(backup_dir).resolve()]
        if not journals:
            raise WanError(f"There is no fix to undo in {root}.", "Nothing was changed.")
        backup, journal = journals[-1]
        errors = _undo_journal(root, backup)
    n = len(journal.get("files", [])) + len(journal.get("moves", []))
    applied = [] if errors else [f"Restored {n} file(s) from {BACKUP_DIR}/{backup.name}"]
    return FixResult(applied, str(backup), errors, _inspect(root))


__all__ = ["BACKUP_DIR", "FixAction", "FixPlan", "FixResult", "ManualStep", "apply_wan_compatibility_fix",
           "assemble", "existing_tokenizer_class", "is_ready", "plan", "registry_candidates", "undo_fix"]
