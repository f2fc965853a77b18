"""Deciding what Fix does to one model: the actions in place, the manual steps, the conversion.

Everything here only reads (small JSON files, safetensors names and sizes) and returns a
:class:`~core.fix.plan.FixPlan`; :func:`core.fix.plan` picks which of these applies.

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
- ``finish_interrupted_fix``: completes a fix that was killed half-way (see
  :mod:`core.fix.journal`).

The original Wan-AI layout and single transformer files become a conversion
(``FixPlan.conversion``, :mod:`core.fix.convert`) into a new folder, ``PATH-diffusers`` unless
``out`` is given; the source is never modified. What cannot be repaired here (a missing
shard, a cut-short file, a wrong VAE, mismatched experts, a text encoder of the wrong width)
becomes a :class:`~core.fix.plan.ManualStep` naming the file, the Hugging Face repository and
the folder.
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import os
import posixpath
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.atomic import dumps_json
from core.check.codes import HEADER_DAMAGE, Code
from core.check.components import WEIGHT_STEMS, library_of
from core.check.filesource import BACKUP_DIR
from core.check.report import Finding, Layout, ModelReport, Severity
from core.errors import WanError
from core.fix.journal import SMALL_FILE_LIMIT, file_signature, foreign_journal, sha256_of, stat_signature
from core.fix.lock import is_locked
from core.fix.parts import FixAction, ManualStep
from core.fix.plan import FixPlan

if TYPE_CHECKING:  # pragma: no cover
    from core.check.registry import ModelRequirements

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


# --------------------------------------------------------------------------- diffusers folders: repairs in place

def plan_in_place(report: ModelReport, root: Path) -> FixPlan:
    """The repairs in place for the diffusers-layout Wan folder ``root`` (``report`` is its Model Check)."""
    return _Planner(report, root).run()


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
                self.read.setdefault(rel, file_signature(p))
                return None
            data = p.read_bytes()
        except FileNotFoundError:
            self.read.setdefault(rel, None)
            return None
        except OSError:
            return None
        self.read.setdefault(rel, sha256_of(data))
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
        rebuild = Code.MODEL_INDEX_MISSING in codes or Code.MODEL_INDEX_UNREADABLE in codes
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
        bad = [f for f in self.report.findings if (f.code in (Code.CONFIG_MISSING, Code.CONFIG_UNREADABLE) and f.path == rel)
               or (f.code == Code.COMPONENT_MISSING and f.path in ("scheduler", None) and "scheduler" in f.message)]
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
            self.read.setdefault(src, stat_signature(self.root / src))
            self._add("rename_weights",
                      f"Rename {src} to {wanted}: {library} loads a {role} only from that name "
                      "(renamed, not copied).", moves=[(src, dst)])
            self.handled.add((Code.WEIGHTS_MISNAMED, role))

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
            self.handled.add((Code.CLASS_NAME_MISMATCH, "model_index.json"))
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
                    self.handled.add((Code.COMPONENT_NOT_IN_INDEX, role))
                elif not _same_class(role, (entry[0], entry[1]), want):
                    code = "fix_tokenizer_class" if role == "tokenizer" and _transformers_has(entry[1]) is False \
                        else "fix_component_class"
                    edit(code, f"Set {role} in model_index.json to {want[1]} ({want[0]}): it says {entry[1]} "
                         f"({entry[0]}), but the {role}/ folder holds a {want[1]}.", role, list(want))
                    self.handled.add((Code.COMPONENT_CLASS_MISMATCH, role))
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
                    self.handled.add((Code.COMPONENT_MISSING, role))
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
                    self.handled.add((Code.BOUNDARY_RATIO_MISSING, None))
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
                self.handled.add((Code.EXPAND_TIMESTEPS_MISSING, None))
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
            self.handled |= {(Code.MODEL_INDEX_MISSING, rel), (Code.MODEL_INDEX_UNREADABLE, rel),
                             (Code.CLASS_NAME_MISMATCH, rel), (Code.BOUNDARY_RATIO_MISSING, None),
                             (Code.EXPAND_TIMESTEPS_MISSING, None)}
            self.handled |= {(Code.COMPONENT_NOT_IN_INDEX, role) for role in allowed}
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
        from core.check.registry import get_compatibility_registry
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


@functools.cache
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
    if code == Code.PERMISSION_DENIED:  # nothing to download: the file is there, only locked
        return ManualStep(f.message, "nothing to download: give your user read access to it (or fix a copy you own)",
                          str(Path(root) / path) if path else root)
    if path and (code in (Code.SHARD_MISSING, Code.FILE_TRUNCATED, Code.INDEX_UNREADABLE, Code.CONFIG_MISSING,
                          Code.CONFIG_UNREADABLE, Code.FILE_EXTRA_BYTES) or code in HEADER_DAMAGE):
        extra = " (delete the damaged copy first)" if code != Code.SHARD_MISSING and code != Code.CONFIG_MISSING else ""
        return ManualStep(f.message, f"{path}{extra} from {from_repo}", into(posixpath.dirname(path)),
                          repo, (path,), root)
    if code == Code.WEIGHTS_MISSING and path:
        return ManualStep(f.message, f"the weight files of {path}/ from {from_repo}", into(path),
                          repo, (f"{path}/*",), root)
    if code == Code.COMPONENT_MISSING:
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
    if code == Code.WEIGHTS_MISMATCH and path and not original:  # config and weights from one download
        return ManualStep(f.message, f"the whole {path}/ folder from {from_repo} (replace the one there)",
                          into(path), repo, (f"{path}/*",), root)
    if code == Code.VAE_MISMATCH:
        if original:
            vae = cands[0].vae if cands else ("wan2.2" if "Wan2.2 VAE" in f.message else "wan2.1")
            file = ORIGINAL_VAE_FILES.get(vae, "Wan2.1_VAE.pth")
            return ManualStep(f.message, f"{file} from {from_repo}", into(""), repo, (file,), root)
        return ManualStep(f.message, f"the whole vae/ folder from {from_repo} (replace the one there)", into("vae"),
                          repo, ("vae/*",), root)
    if code == Code.EXPERT_MISMATCH:
        folder = "low_noise_model" if original else "transformer_2"
        return ManualStep(f.message, f"the whole {folder}/ folder from {from_repo} (replace the one there)",
                          into(folder), repo, (f"{folder}/*",), root)
    if code == Code.TEXT_DIM_MISMATCH:
        if original:
            return ManualStep(f.message, f"{ORIGINAL_T5_FILE} from {from_repo}", into(""), repo,
                              (ORIGINAL_T5_FILE,), root)
        return ManualStep(f.message, f"the whole text_encoder/ folder from {from_repo} (replace the one there)",
                          into("text_encoder"), repo, ("text_encoder/*",), root)
    if code in (Code.NOT_A_MODEL, Code.ONLY_A_PART, Code.PICKLE_NOT_INSPECTED):
        return None
    return ManualStep(f.message, f.remedy or "see the Model Check report", into(posixpath.dirname(path or "")))


# --------------------------------------------------------------------------- conversions

def conversion_plan(report: ModelReport, out: str | os.PathLike[str] | None) -> FixPlan:
    """The original layout or a single file: a conversion into a new folder (core.fix.convert decides
    whether it can; it reads the pickled files the detector judges by size alone). When it
    cannot, the downloads that mend the source are listed as manual steps."""
    cands = registry_candidates(report)
    if not report.is_wan:
        return FixPlan(report.path, (), (), report, notes=("No Wan model was recognised here.",))
    steps = tuple(s for s in (manual_step_for(f, report, cands) for f in report.errors) if s is not None)
    try:
        from core.fix.convert import plan_conversion
    except ImportError:
        repo, from_repo = _repo_text(_diffusers_twins(cands))
        target = Path(out) if out is not None else Path(report.path).parent / (Path(report.path).name + "-diffusers")
        step = ManualStep("Converting this layout needs core.fix.convert, which this installation lacks.",
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
        from core.check.registry import get_compatibility_registry
        registry = get_compatibility_registry()
    except Exception:  # noqa: BLE001
        return []
    names = {e.name for e in cands}
    return [e for e in registry if e.layout == "diffusers" and e.name in names]


# --------------------------------------------------------------------------- an interrupted fix

def recovery_plan(root: Path, pending: tuple[Path, dict[str, Any]], report: ModelReport) -> FixPlan:
    """The one step that finishes the fix recorded in ``pending`` (see :func:`core.fix.journal.pending_journal`)."""
    backup, journal = pending
    problem = foreign_journal(root, backup, journal)
    if problem:  # never executed: its paths, not this computer's Fix, would decide what is written
        return FixPlan(report.path, (), (), report, notes=(
            f"This folder carries a repair record ({BACKUP_DIR}/{backup.name}/journal.json) that points outside it "
            f"({problem}); it was not written by this computer's Fix, so Fix will not finish or undo it, and "
            "changes nothing here while it is there.",
            f"Delete {backup / 'journal.json'} if you do not know where it came from, then run Fix again."))
    todo = [f["path"] for f in journal.get("files", []) if file_signature(root / f["path"]) != f.get("final")]
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
    if is_locked(root):
        notes.insert(0, "A fix is running on this folder right now; wait for it to finish.")
    return FixPlan(report.path, (action,), (), report, notes=tuple(notes), recovery_journal=str(backup))
