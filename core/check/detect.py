"""Model Check: ``inspect(path) -> ModelReport`` for any model folder or file.

It reads ``model_index.json``, ``config.json`` files, safetensors headers and file sizes,
never tensor data, and never unpickles anything. Problems become Findings, so a check
always finishes.

Usage::

    from core.check.detect import inspect
    report = inspect("/models/Wan2.2-T2V-A14B-Diffusers")
    report.architecture_type.value   # "wan_t2v"
    report.loadable                  # True when complete and consistent

The seed guide's names work too::

    arch = ArchitectureDetector().detect_model_architecture(path)
    arch.architecture_type.value, arch.signature.is_wan_architecture()
"""

from __future__ import annotations

import gc
import os
import posixpath
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from operator import attrgetter
from typing import Any

from core.check import signals
from core.check.codes import Code
from core.check.components import PICKLE_SUFFIXES, PartReading, read_component_folder, read_json, read_safetensors, read_weights
from core.check.dit import DitFacts, dit_facts, dit_facts_from_config, dit_facts_from_tensors, vae_z_dim_from_tensors, wan_version
from core.check.filesource import BACKUP_DIR, JOURNAL_NAME, FileEntry, FileSource, LocalSource, SubSource, display_name
from core.check.journal_trust import journal_problem
from core.check.lora import looks_like_lora, lora_report
from core.check.quantization import (
    fp8_findings,
    fp8_quantization,
    gguf_not_wan,
    gguf_quantization,
    quantization_of,
    read_gguf,
)
from core.check.report import ArchitectureType, ComponentReport, Finding, Layout, ModelReport, Severity
from core.check.safetensors_header import TensorInfo
from core.check.wording import EMPTY_FOLDER, NOT_A_MODEL_FILE
from core.units import format_bytes

ERROR, WARNING, INFO = Severity.ERROR, Severity.WARNING, Severity.INFO
A = ArchitectureType
_SNAPSHOT = re.compile(r"^(?:(.*)/)?(models--[^/]+)/snapshots/([^/]+)$")
_SHAPE = attrgetter("shape")
MAX_MODELS = 100  # models one check reports (a folder of thousands is not one to check at once)
MODEL_ROLES = ("transformer", "transformer_2", "vae", "text_encoder", "tokenizer", "scheduler")


def inspect(path: str | os.PathLike[str] | FileSource, *, name_hint: str | None = None) -> ModelReport:
    """Inspect a model folder, a single file, a Hugging Face cache folder or a folder of models.

    Raises FileNotFoundError / PermissionError / OSError only when ``path`` itself cannot
    be opened; everything found inside becomes a Finding.
    """
    src = path if not isinstance(path, (str, os.PathLike)) else LocalSource(os.fspath(path))
    shown = src.name
    hint = f"{name_hint or ''} {shown}"
    with _no_gc_pauses():
        if getattr(src, "is_file", False):
            report = _inspect_single_file(src, src.files[0], shown, hint)
        else:
            report = _inspect_tree(src, shown, hint)
    scan = [Finding(WARNING, Code.SCAN_TRUNCATED if src.truncated else Code.SCAN_PROBLEM, p,
                    "Point the check at the model folder itself." if src.truncated else "")
            for p in src.problems]
    scan += _interrupted_fixes(src)
    return replace(report, findings=tuple(scan) + report.findings, bytes_read=src.bytes_read)


def _interrupted_fixes(src: FileSource) -> list[Finding]:
    """A Fix that was stopped half-way leaves its journal open: say so, and how to finish it."""
    found = []
    for entry in src.files:
        parts = entry.path.split("/")
        if len(parts) < 3 or parts[-3] != BACKUP_DIR or parts[-1] != JOURNAL_NAME:
            continue
        journal, _ = read_json(src, entry.path, "A Fix journal")
        if isinstance(journal, dict) and journal.get("state") == "applying":
            model = "/".join(parts[:-3]) or "."
            root = getattr(src, "root", None) if not getattr(src, "is_file", False) else None
            problem = journal_problem(journal, os.path.join(root, *parts[:-3]) if root else None)
            if problem:
                found.append(Finding(ERROR, Code.JOURNAL_FOREIGN,
                                     f"{display_name(model)} carries a repair record that points outside it "
                                     f"({problem}); it was not written by this computer's Fix.",
                                     f"Do not run Fix's finish or undo on it; delete {display_name(entry.path)} "
                                     "if you do not know where it came from.", entry.path))
                continue
            found.append(Finding(ERROR, Code.FIX_INTERRUPTED,
                                 f"A repair of {display_name(model)} was interrupted (started "
                                 f"{journal.get('started', 'earlier')}); some of its files are changed, others not yet.",
                                 "Run `python -m core fix PATH --apply` to finish it, or `--undo` to go back.",
                                 entry.path))
    return found


@contextmanager
def _no_gc_pauses() -> Iterator[None]:
    """Hold the cyclic garbage collector while headers are parsed.

    A check builds tens of thousands of small acyclic objects (JSON headers); the
    collector's passes over them otherwise cost more than the parsing itself.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _inspect_tree(src: FileSource, shown: str, hint: str) -> ModelReport:
    roots = find_model_roots(src)
    if not roots:
        return _not_a_model(src, shown)
    if roots == [""]:
        return _inspect_folder(src, shown, hint)
    skipped = len(roots) - MAX_MODELS
    roots = roots[:MAX_MODELS]
    reports = []
    for root in roots:
        entry = next((e for e in src.files if e.path == root), None)
        sub_hint = f"{hint} {_hf_repo_name(root) or root}"
        if entry is not None:  # a loose .safetensors file
            reports.append(_inspect_single_file(src, entry, f"{shown}/{display_name(root)}", sub_hint))
        else:
            reports.append(_inspect_folder(SubSource(src, root), f"{shown}/{display_name(root)}", sub_hint))
    if len(reports) == 1:
        only = reports[0]
        note = Finding(INFO, Code.FOUND_IN_SUBFOLDER, f"The model is in the subfolder {display_name(roots[0])}.",
                       f"Next time point at {only.path} directly.")
        return replace(only, findings=(note,) + only.findings)
    loras = sum(1 for r in reports if r.lora is not None)    # LoRA files are no models (core.check.lora)
    models = len(reports) - loras
    what = " and ".join(f"{n} {word}{'s' if n != 1 else ''}" for n, word in ((models, "model"), (loras, "LoRA file"))
                        if n or not loras)
    note = Finding(INFO, Code.COLLECTION, f"This folder holds {what}; each is reported below.", "")
    if skipped > 0:
        note = Finding(WARNING, Code.SCAN_TRUNCATED,
                       f"This folder holds {len(reports) + skipped:,} models or loose weight files; only the first "
                       f"{MAX_MODELS} are reported below.", "Point the check at one model folder at a time.")
    return ModelReport(path=shown, findings=(note,), models=tuple(reports))


# --------------------------------------------------------------------------- finding models

def find_model_roots(src: FileSource) -> list[str]:
    """Folders (or loose .safetensors files) that are models, shallowest first, none nested.

    A folder is a model when it has ``model_index.json``, two or more diffusers component
    folders, Wan's ``high_noise_model/`` / ``low_noise_model/``, Wan's pickled VAE or T5, or
    a ``config.json`` beside weights. In a Hugging Face cache only the snapshot that
    ``refs/main`` names counts.
    """
    files_in: dict[str, set[str]] = {}
    subdirs: dict[str, set[str]] = {}
    for e in src.files:
        folder, name = posixpath.split(e.path)
        files_in.setdefault(folder, set()).add(name)
        while folder:
            parent, child = posixpath.split(folder)
            subdirs.setdefault(parent, set()).add(child)
            folder = parent
    chosen_snapshots = _chosen_snapshots(src, subdirs)
    roots: list[str] = []
    for folder in sorted(set(files_in) | set(subdirs), key=lambda d: (d.count("/") if d else -1, d)):
        if any(folder == r or folder.startswith(r + "/") for r in roots if r) or (roots == [""]):
            continue
        m = _SNAPSHOT.match(folder)
        if m and chosen_snapshots.get(m.group(2) if not m.group(1) else f"{m.group(1)}/{m.group(2)}") != m.group(3):
            continue
        names, dirs = files_in.get(folder, set()), subdirs.get(folder, set())
        if _is_model_folder(folder, names, dirs, files_in):
            roots.append(folder)
        elif not folder or posixpath.basename(folder) not in signals.KNOWN_COMPONENT_FOLDERS:
            roots.extend(posixpath.join(folder, n) for n in sorted(names) if n.endswith((".safetensors", ".gguf")))
    return roots


def _is_model_folder(folder: str, names: set[str], dirs: set[str], files_in: dict[str, set[str]]) -> bool:
    if "model_index.json" in names or dirs & {"high_noise_model", "low_noise_model"}:
        return True
    if names & set(signals.ORIGINAL_PICKLES):
        return True
    components = [d for d in dirs & signals.KNOWN_COMPONENT_FOLDERS
                  if files_in.get(posixpath.join(folder, d))]
    if len(components) >= 2:
        return True
    has_weights = any(n.endswith(".safetensors") for n in names)
    return "config.json" in names and has_weights and (
        not folder or posixpath.basename(folder) not in signals.KNOWN_COMPONENT_FOLDERS)


def _chosen_snapshots(src: FileSource, subdirs: dict[str, set[str]]) -> dict[str, str]:
    """For each ``models--*`` cache folder: the snapshot ``refs/main`` names (else the last one)."""
    chosen: dict[str, str] = {}
    for folder, children in subdirs.items():
        if "snapshots" not in children or not posixpath.basename(folder).startswith("models--"):
            continue
        snaps = sorted(subdirs.get(posixpath.join(folder, "snapshots"), set()))
        ref = None
        try:
            ref = src.read_text(posixpath.join(folder, "refs/main")).strip()
        except (OSError, ValueError, UnicodeDecodeError):
            pass
        if snaps:
            chosen[folder] = ref if ref in snaps else snaps[-1]
    return chosen


def _hf_repo_name(path: str) -> str | None:
    """``models--Wan-AI--Wan2.2-TI2V-5B/snapshots/abc`` -> ``Wan-AI/Wan2.2-TI2V-5B``."""
    m = re.search(r"models--([^/]+?)--([^/]+)", path)
    return f"{m.group(1)}/{m.group(2)}" if m else None


def _not_a_model(src: FileSource, shown: str) -> ModelReport:
    pickles = [e.path for e in src.files if e.path.endswith(PICKLE_SUFFIXES)]
    if pickles:
        message = (f"No model this tool can read: only pickled files ({', '.join(display_name(p) for p in pickles[:3])}"
                   f"{' ...' if len(pickles) > 3 else ''}), which are judged by name only and never opened.")
    elif not src.files:
        message = EMPTY_FOLDER
    else:
        message = f"No model found among {len(src.files):,} files: no model_index.json, config.json or .safetensors weights."
    return ModelReport(path=shown, findings=(Finding(
        ERROR, Code.NOT_A_MODEL, message,
        "Point at the folder that holds model_index.json (diffusers) or the model's config.json and weights, "
        "or at a single .safetensors file."),))


# --------------------------------------------------------------------------- one folder

def _inspect_folder(src: FileSource, shown: str, hint: str) -> ModelReport:
    hint = f"{hint} {_hf_repo_name(shown) or ''}"
    names = {e.path for e in src.files}
    dirs = {e.path.split("/", 1)[0] for e in src.files if "/" in e.path}
    if "model_index.json" in names or dirs & signals.KNOWN_COMPONENT_FOLDERS - {"tokenizer"}:
        return _inspect_diffusers(src, shown, hint)
    if "config.json" in names and not dirs & {"high_noise_model", "low_noise_model"}:
        config, _ = read_json(src, "config.json", "config.json")
        if isinstance(config, dict) and config.get("_class_name") in signals.COMPONENT_FAMILIES:
            return _inspect_lone_component(src, shown, hint, config)
    return _inspect_original(src, shown, hint)


def _inspect_lone_component(src: FileSource, shown: str, hint: str, config: dict[str, Any]) -> ModelReport:
    """A diffusers component folder (``transformer/``, ``vae/``) checked on its own."""
    d = _Draft(shown, Layout.DIFFUSERS, hint)
    cls = config["_class_name"]
    role = "vae" if cls.startswith("Autoencoder") else "transformer"
    reading = d.add(read_weights(src, role, "", cls, "diffusers", config))
    _note_part(d, role, reading)
    d.findings.append(Finding(ERROR, Code.ONLY_A_PART,
                              f"This folder is one component of a diffusers model ({cls}), not a whole model.",
                              "Point at the folder above it, the one that holds model_index.json."))
    family = signals.COMPONENT_FAMILIES[cls] if role == "transformer" else A.UNKNOWN
    return _finish(d, family, None)


@dataclass
class _Draft:
    """Mutable working state while one model is inspected; frozen into a ModelReport at the end."""

    path: str
    layout: Layout
    hint: str
    components: list[ComponentReport] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    experts: list[DitFacts] = field(default_factory=list)
    expert_tensors: list[dict[str, TensorInfo]] = field(default_factory=list)
    vae_kind: str | None = None
    vae_z_dim: int | None = None
    text_width: int | None = None
    boundary_ratio: float | None = None
    expand_timesteps: bool | None = None
    pipeline_class: str | None = None
    custom_code: bool = False
    extra_parameters: int = 0
    part: str | None = None

    def add(self, reading: PartReading) -> PartReading:
        self.components.append(reading.component)
        self.findings.extend(reading.findings)
        return reading


def _inspect_diffusers(src: FileSource, shown: str, hint: str) -> ModelReport:
    d = _Draft(shown, Layout.DIFFUSERS, hint)
    index: dict[str, Any] = {}
    if any(e.path == "model_index.json" for e in src.files):
        obj, problem = read_json(src, "model_index.json", "model_index.json")
        if problem and problem.code is Code.PERMISSION_DENIED:
            d.findings.append(problem)  # nothing to rebuild: the file is there, only locked
        elif problem:
            d.findings.append(replace(problem, code=Code.MODEL_INDEX_UNREADABLE,
                                      remedy="Run Fix (`python -m core fix PATH`) to rebuild it from the component folders."))
        elif not isinstance(obj, dict):
            d.findings.append(Finding(ERROR, Code.MODEL_INDEX_UNREADABLE,
                                      f"model_index.json holds a JSON {type(obj).__name__}, not an object.",
                                      "Run Fix (`python -m core fix PATH`) to rebuild it from the component folders.",
                                      "model_index.json"))
        else:
            index = obj
    else:
        d.findings.append(Finding(ERROR, Code.MODEL_INDEX_MISSING,
                                  "There is no model_index.json, so diffusers does not know which pipeline this is.",
                                  "Run Fix (`python -m core fix PATH`) to rebuild it from the component folders.",
                                  "model_index.json"))
    declared_pipeline = index.get("_class_name")
    if index and not (isinstance(declared_pipeline, str) and declared_pipeline or _is_entry(declared_pipeline)
                      and None not in declared_pipeline):
        d.findings.append(Finding(ERROR, Code.MODEL_INDEX_UNREADABLE,
                                  f"model_index.json's _class_name is {str(declared_pipeline)[:60]}, not a pipeline "
                                  "class; diffusers cannot load the pipeline.",
                                  "Run Fix (`python -m core fix PATH`) to rebuild it from the component folders.",
                                  "model_index.json"))
        declared_pipeline = None
    if isinstance(declared_pipeline, list):  # [module, class]: code shipped with the model
        d.custom_code = True
        d.findings.append(Finding(WARNING, Code.CUSTOM_CODE,
                                  f"model_index.json asks for custom pipeline code ({declared_pipeline}); "
                                  "it would run Python code from the model folder.",
                                  "Wan models need no custom code; allow it only for models you trust."))
        declared_pipeline = declared_pipeline[-1] if declared_pipeline else None
    declared: dict[str, tuple[str | None, str | None] | None] = {}
    for key, value in index.items():
        if not key.startswith("_") and not _is_entry(value) and (
                isinstance(value, list) or key in signals.KNOWN_COMPONENT_FOLDERS):
            d.findings.append(Finding(ERROR, Code.MODEL_INDEX_UNREADABLE,
                                      f"model_index.json sets {display_name(key)} to {str(value)[:60]}, not a "
                                      "[library, class] pair; diffusers cannot load the pipeline.",
                                      "Run Fix (`python -m core fix PATH`) to rebuild it from the component folders.",
                                      "model_index.json"))
            continue
        if key.startswith("_") or not isinstance(value, list):
            continue
        if value == [None, None]:
            declared[key] = None
        else:
            declared[key] = (value[0], value[1])
            if value[0] not in (None, "diffusers", "transformers"):
                d.custom_code = True
                d.findings.append(Finding(WARNING, Code.CUSTOM_CODE,
                                          f"model_index.json loads {key} from the Python module {value[0]!r}, "
                                          "which would run code from outside diffusers and transformers.",
                                          "Wan models need no custom code; allow it only for models you trust.",
                                          "model_index.json"))
    folders = sorted({e.path.split("/", 1)[0] for e in src.files if "/" in e.path}
                     | {d for d in getattr(src, "unreadable", ()) if d and "/" not in d})
    present = [f for f in folders if f in signals.KNOWN_COMPONENT_FOLDERS or f in declared]
    for name in sorted(set(present) | {k for k, v in declared.items() if v is not None}, key=_component_order):
        if name in declared and declared[name] is None:
            if any(e.path.startswith(name + "/") and e.path.endswith(".safetensors") for e in src.files):
                d.findings.append(Finding(WARNING, Code.COMPONENT_NOT_IN_INDEX,
                                          f"The {name}/ folder holds weights, but model_index.json sets {name} to null, "
                                          "so it will not be loaded.",
                                          "Run Fix to add it to model_index.json, or delete the folder if it is stray.",
                                          name))
            continue
        reading = d.add(read_component_folder(src, name, declared.get(name)))
        if index and name not in declared and reading.component.present:
            d.findings.append(Finding(WARNING, Code.COMPONENT_NOT_IN_INDEX,
                                      f"The {name}/ folder is not named in model_index.json and will be ignored.",
                                      "Run Fix to add it to model_index.json.", name))
        _note_part(d, name, reading)
    if isinstance(index.get("boundary_ratio"), (int, float)):
        d.boundary_ratio = float(index["boundary_ratio"])
    if isinstance(index.get("expand_timesteps"), bool):
        d.expand_timesteps = index["expand_timesteps"]
    family = _diffusers_family(d, declared_pipeline)
    report = _finish(d, family, declared_pipeline if isinstance(declared_pipeline, str) else None)
    quantized = quantization_of(d.expert_tensors[0]) if d.expert_tensors else None
    return replace(report, quantization=quantized) if quantized else report


def _is_entry(value: Any) -> bool:
    """``[library, class]`` (two texts) or ``[null, null]``: what diffusers reads from model_index.json."""
    return isinstance(value, list) and len(value) == 2 and (
        value == [None, None] or all(isinstance(v, str) and v for v in value))


def _component_order(name: str) -> tuple[int, str]:
    return (MODEL_ROLES.index(name) if name in MODEL_ROLES else len(MODEL_ROLES), name)


def _note_part(d: _Draft, name: str, reading: PartReading) -> None:
    """Pull what later checks need (DiT facts, VAE z_dim, text width) out of one component."""
    comp, tensors = reading.component, reading.tensors
    if name.startswith("transformer"):
        facts = dit_facts(tensors, comp.config)
        if facts is not None:
            d.experts.append(facts)
            d.expert_tensors.append(tensors)
            disagreements = _config_disagreements(comp, facts) if tensors and comp.config else []
            if disagreements:  # says which number differs: clearer than the per-tensor weights_mismatch
                d.findings[:] = [f for f in d.findings
                                 if not (f.code is Code.WEIGHTS_MISMATCH and f.path == comp.name)]
                d.findings.extend(disagreements)
    elif name == "vae":
        z = comp.config.get("z_dim")
        if isinstance(z, int):
            d.vae_z_dim = z
            d.vae_kind = signals.VAE_BY_Z_DIM.get(z)
        elif tensors:
            d.vae_kind, d.vae_z_dim = vae_z_dim_from_tensors(tensors)
    elif name == "text_encoder":
        width = comp.config.get("d_model") or comp.config.get("hidden_size")
        if not isinstance(width, int):
            width = next((tensors[n].shape[-1] for n in signals.TEXT_ENCODER_EMBEDDINGS if n in tensors), None)
        d.text_width = width


_FACT_WORDS = (("dim", "width"), ("in_channels", "input channels"), ("out_channels", "output channels"),
               ("num_layers", "layers"), ("text_dim", "text width"))


def _config_disagreements(comp: ComponentReport, weights: DitFacts) -> list[Finding]:
    """A config.json that describes other shapes than the weights beside it hold."""
    configured = dit_facts_from_config(comp.config)
    if configured is None:
        return []
    for field_name, words in _FACT_WORDS:
        said, held = getattr(configured, field_name), getattr(weights, field_name)
        if said and held and said != held:
            where = f"{comp.folder}/config.json" if comp.folder else "config.json"
            return [Finding(ERROR, Code.CONFIG_MISMATCH,
                            f"{where} describes a transformer with {words} {said}, but its weights have {words} "
                            f"{held}; it would not load.",
                            f"Download {where} again from the same model as the weights.", where)]
    return []


def _diffusers_family(d: _Draft, declared_pipeline: Any) -> ArchitectureType:
    """The family the components show, checked against the pipeline model_index.json names."""
    classes = {c.name: c.class_name for c in d.components}
    from_components = A.UNKNOWN
    for cls in classes.values():
        family = signals.COMPONENT_FAMILIES.get(cls or "")
        if family is not None and (from_components is A.UNKNOWN or family.is_wan):
            from_components = family
    if any(f.is_wan for f in d.experts):
        from_components = A.WAN_T2V
    if from_components is A.STABLE_DIFFUSION and "text_encoder_2" in classes:
        from_components = A.STABLE_DIFFUSION_XL
    from_name = A.DIFFUSERS_OTHER if isinstance(declared_pipeline, str) else A.UNKNOWN
    for prefix, family in signals.PIPELINE_FAMILIES:
        if isinstance(declared_pipeline, str) and declared_pipeline.startswith(prefix):
            from_name = family
            break
    wan_name = isinstance(declared_pipeline, str) and declared_pipeline.startswith("Wan")
    if from_components is not A.UNKNOWN and (
            (from_components.is_wan and not wan_name and from_name is not A.UNKNOWN)
            or (not from_components.is_wan and (wan_name or from_name not in (A.UNKNOWN, A.DIFFUSERS_OTHER, from_components)))):
        shown = ", ".join(sorted({c for c in classes.values() if c}))
        d.findings.append(Finding(
            ERROR, Code.CLASS_NAME_MISMATCH,
            f"model_index.json names {declared_pipeline}, but the components are {shown}.",
            "Run Fix (`python -m core fix PATH`) to set the right pipeline class.", "model_index.json"))
    if from_components is not A.UNKNOWN:
        return from_components
    return A.WAN_T2V if wan_name else from_name


# --------------------------------------------------------------------------- original Wan layout

def _inspect_original(src: FileSource, shown: str, hint: str) -> ModelReport:
    d = _Draft(shown, Layout.WAN_ORIGINAL, hint)
    names = {e.path for e in src.files}
    expert_dirs = [x for x in ("high_noise_model", "low_noise_model") if any(n.startswith(x + "/") for n in names)]
    for folder in expert_dirs or [""]:
        config: dict[str, Any] = {}
        cfg_path = f"{folder}/config.json" if folder else "config.json"
        if cfg_path in names:
            obj, problem = read_json(src, cfg_path, f"The {folder or 'model'} configuration")
            if problem:
                d.findings.append(problem)
            elif isinstance(obj, dict):
                config = obj
        elif folder or any(n.endswith(".safetensors") and "/" not in n for n in names):
            d.findings.append(Finding(ERROR, Code.CONFIG_MISSING, f"{cfg_path} is missing.",
                                      "Download it again from the model's page.", cfg_path))
        name = {"high_noise_model": "transformer", "low_noise_model": "transformer_2"}.get(folder, "transformer")
        cls = config.get("_class_name") if isinstance(config.get("_class_name"), str) else "WanModel"
        reading = read_weights(src, name, folder, cls, "wan", config, needs_weights=True)
        if not folder:  # root-level model: the component is only the DiT's own files
            own = tuple(p for p in reading.component.files if "/" not in p and (
                p.endswith(".safetensors") or p.endswith(".safetensors.index.json") or p == "config.json"))
            reading.component = replace(reading.component, files=own,
                                         size_bytes=sum(e.size for e in src.files if e.path in own))
        d.add(reading)
        _note_part(d, name, reading)
    for file_name, (role, bytes_per_param, expected) in signals.ORIGINAL_PICKLES.items():
        entry = next((e for e in src.files if e.path == file_name), None)
        if entry is None:
            continue
        complete = entry.size >= expected * signals.PICKLE_MIN_SHARE
        d.components.append(ComponentReport(name=role, class_name=file_name.split(".pth")[0], library="wan",
                                            files=(file_name,), size_bytes=entry.size, dtype=None,
                                            parameters=None, present=True, complete=complete))
        d.extra_parameters += entry.size // bytes_per_param
        if role == "vae":
            d.vae_kind = "wan2.2" if "2.2" in file_name else "wan2.1"
            d.vae_z_dim = 48 if d.vae_kind == "wan2.2" else 16
        if role == "text_encoder":
            d.text_width = 4096
        if not complete:
            d.findings.append(Finding(
                ERROR, Code.FILE_TRUNCATED,
                f"{file_name} is {format_bytes(entry.size)}, but the official file is about {format_bytes(expected)} "
                "(an interrupted download).", "Delete it and download it again.", file_name))
    for role, what in (("vae", "the VAE (Wan2.1_VAE.pth or Wan2.2_VAE.pth)"),
                       ("text_encoder", "the T5 text encoder (models_t5_umt5-xxl-enc-bf16.pth)")):
        if not any(c.name == role for c in d.components):
            d.findings.append(Finding(ERROR, Code.COMPONENT_MISSING, f"{what[0].upper() + what[1:]} is missing.",
                                      f"Download {what.split('(')[1].rstrip(')')} from the model's page into this folder."))
    if not any(n.startswith("google/umt5-xxl/") for n in names):
        d.findings.append(Finding(WARNING, Code.TOKENIZER_MISSING, "The tokenizer folder google/umt5-xxl/ is missing.",
                                  "Download the google/umt5-xxl folder from the model's page."))
    d.findings.append(Finding(WARNING, Code.NEEDS_CONVERSION,
                              "This is the original Wan-AI layout; diffusers cannot load it as it is.",
                              "Convert it with Fix (`python -m core fix PATH`), or download the -Diffusers version."))
    family = A.WAN_T2V if any(f.is_wan for f in d.experts) else A.UNKNOWN
    if not d.experts and not d.components:
        return _not_a_model(src, shown)
    return _finish(d, family, None)


# --------------------------------------------------------------------------- single files

def _inspect_single_file(src: FileSource, entry: FileEntry, shown: str, hint: str) -> ModelReport:
    findings: list[Finding] = []
    tensors: dict[str, TensorInfo] = {}
    gguf = entry.path.lower().endswith(".gguf")
    if not entry.path.endswith(".safetensors") and not gguf:
        if entry.path.endswith(PICKLE_SUFFIXES):
            return ModelReport(path=shown, layout=Layout.SINGLE_FILE, findings=(Finding(
                ERROR, Code.PICKLE_NOT_INSPECTED,
                "This is a pickled checkpoint, not a .safetensors model file; it is judged by name only and never opened",
                "Use the .safetensors version of the model, or point at the model folder."),))
        suffix = posixpath.splitext(entry.path)[1]
        return ModelReport(path=shown, findings=(Finding(
            ERROR, Code.NOT_A_MODEL,
            f"{NOT_A_MODEL_FILE}{f' (a {suffix} file)' if suffix else ''}: model weights are .safetensors files.",
            "Point at a .safetensors file or at the model's folder."),))
    if gguf:   # a GGUF transformer (city96, QuantStack): its header only (core.check.quantization)
        return _inspect_gguf(src, entry, shown, hint)
    header = read_safetensors(src, entry, tensors, findings)
    if header is not None and looks_like_lora(tensors):   # a LoRA: not a model, used with one (core.check.lora)
        def read_bytes(t: TensorInfo) -> bytes:
            return src.read_head(entry.path, 8 + header.header_size + t.end)[8 + header.header_size + t.start:]
        return lora_report(shown, entry.path, entry.size, header, findings, read_bytes)
    d = _Draft(shown, Layout.SINGLE_FILE, f"{hint} {entry.path}")
    d.findings.extend(findings)
    lower = entry.path.lower()
    facts = dit_facts_from_tensors(tensors) if tensors else None
    role = "transformer"
    family = A.UNKNOWN
    umt5 = False
    if facts is not None and facts.is_wan:
        d.experts.append(facts)
        family = A.WAN_T2V
        _expert_note(d, lower)
    else:
        kind, z = vae_z_dim_from_tensors(tensors)
        if kind:
            role, d.vae_kind, d.vae_z_dim = "vae", kind, z
        elif any(n.endswith(signals.TEXT_ENCODER_EMBEDDINGS) for n in tensors):
            role = "text_encoder"
            umt5 = any(n.endswith(signals.TEXT_ENCODER_EMBEDDINGS) and t.shape[:1] == (256384,)
                       for n, t in tensors.items())
        for mark, fam in signals.SINGLE_FILE_FAMILIES:
            if any(mark in n for n in tensors):
                family = fam
                role = "checkpoint"
                break
    d.add(PartReading(ComponentReport(
        name=role, folder="", files=(entry.path,), size_bytes=entry.size,
        dtype=header.dominant_dtype if header else None, parameters=header.parameters if header else None,
        complete=not any(f.severity is ERROR for f in findings))))
    if role in ("vae", "text_encoder") and header is not None:
        what = {"vae": f"a {'Wan2.2' if d.vae_kind == 'wan2.2' else 'Wan2.1'} VAE (z_dim {d.vae_z_dim})",
                "text_encoder": "a text encoder" + (" (UMT5-XXL, the one Wan uses)" if umt5 else "")}[role]
        d.findings.append(Finding(ERROR, Code.ONLY_A_PART, f"This file is {what}, one part of a model, not a whole model.",
                                  "Check the transformer file instead; Fix can assemble the parts into a diffusers folder."))
        d.part = role if (role == "vae" or umt5) else None
    elif family.is_wan:
        d.findings.extend(fp8_findings(tensors, entry.path, "scaled" in lower))
        _transformer_only(d)
    elif header is not None and family is A.UNKNOWN:
        d.findings.append(Finding(ERROR, Code.NOT_A_MODEL, "This .safetensors file holds no model this tool recognises.",
                                  "Point at a Wan model file or folder."))
    report = _finish(d, family, None)
    if d.part in ("vae", "text_encoder"):  # the VAE's shapes tell its version; the UMT5 encoder serves both
        report = replace(report, wan_version={"wan2.2": "2.2", "wan2.1": "2.1"}.get(d.vae_kind or ""))
    if family.is_wan:
        report = replace(report, quantization=fp8_quantization(tensors))
    return report


def _expert_note(d: _Draft, lower: str) -> None:
    lower = lower.replace("-", "").replace("_", "")      # high_noise, HighNoise (QuantStack), high-noise
    if "highnoise" in lower or "lownoise" in lower:
        d.findings.append(Finding(INFO, Code.ONE_EXPERT,
                                  f"This file is the {'high' if 'highnoise' in lower else 'low'}-noise expert of "
                                  "a two-expert Wan2.2 A14B model; the other expert is a separate file.",
                                  "Keep both files together; Fix can assemble them into a diffusers folder."))


def _transformer_only(d: _Draft) -> None:
    d.findings.append(Finding(WARNING, Code.SINGLE_FILE,
                              "This file is only the transformer: to generate you also need the VAE, the text "
                              "encoder and the tokenizer.",
                              "Fix can assemble the parts into a diffusers folder (`python -m core fix --assemble`)."))
    d.part = "transformer"


def _inspect_gguf(src: FileSource, entry: FileEntry, shown: str, hint: str) -> ModelReport:
    """A .gguf file: a Wan transformer in GGUF blocks (read from its header), or findings saying what it is."""
    findings: list[Finding] = []
    tensors: dict[str, TensorInfo] = {}
    header = read_gguf(src, entry, tensors, findings)
    d = _Draft(shown, Layout.GGUF, f"{hint} {entry.path}")
    d.findings.extend(findings)
    facts = dit_facts_from_tensors(tensors) if tensors else None
    wan = facts is not None and facts.is_wan
    if wan:
        d.experts.append(facts)
        _expert_note(d, entry.path.lower())
        _transformer_only(d)
    elif header is not None:
        d.findings.append(gguf_not_wan(header, entry.path))
    d.add(PartReading(ComponentReport(
        name="transformer", folder="", files=(entry.path,), size_bytes=entry.size,
        dtype=header.dominant_dtype if header else None, parameters=header.parameters if header else None,
        complete=not any(f.severity is ERROR for f in findings))))
    report = _finish(d, A.WAN_T2V if wan else A.UNKNOWN, None)
    return replace(report, quantization=gguf_quantization(header) if header is not None else None)


# --------------------------------------------------------------------------- shared ending

def _finish(d: _Draft, family: ArchitectureType, declared_pipeline: str | None) -> ModelReport:
    """Decide task, version, pipeline; run the consistency checks; freeze the report."""
    task = version = size_class = None
    arch = family
    pipeline = declared_pipeline
    wan = family.is_wan or any(f.is_wan for f in d.experts)
    main = d.experts[0] if d.experts else None
    experts = len([c for c in d.components if c.name.startswith("transformer") and c.present])
    if wan and main is not None:
        task = main.task or ("vace" if family is A.WAN_VACE else "animate" if family is A.WAN_ANIMATE else None)
        size_class = main.size_class
        version = wan_version(task, size_class, experts, "image_branch" in main.features,
                              has_boundary=d.boundary_ratio is not None, name=d.hint)
        if version is None and d.vae_kind == "wan2.2":
            version = "2.2"
        arch = signals.TASK_ARCHITECTURE.get(task or "", family if family.is_wan else A.WAN_T2V)
        expected_pipeline = signals.TASK_PIPELINE.get(task or "")
        if d.layout is Layout.DIFFUSERS and declared_pipeline and declared_pipeline.startswith("Wan") \
                and expected_pipeline and declared_pipeline != expected_pipeline:
            d.findings.append(Finding(ERROR, Code.CLASS_NAME_MISMATCH,
                                      f"model_index.json names {declared_pipeline}, but this is a {task.upper()} model "
                                      f"that needs {expected_pipeline}.",
                                      "Run Fix (`python -m core fix PATH`) to set the right pipeline class.",
                                      "model_index.json"))
        pipeline = expected_pipeline
        _wan_checks(d, task, version)
    elif wan:
        arch = family
        pipeline = None
    elif family in (A.STABLE_DIFFUSION, A.STABLE_DIFFUSION_XL, A.STABLE_DIFFUSION_3, A.FLUX, A.DIFFUSERS_OTHER):
        pipeline = declared_pipeline or {A.STABLE_DIFFUSION: "StableDiffusionPipeline",
                                         A.STABLE_DIFFUSION_XL: "StableDiffusionXLPipeline",
                                         A.STABLE_DIFFUSION_3: "StableDiffusion3Pipeline",
                                         A.FLUX: "FluxPipeline"}.get(family)
        d.findings.append(Finding(INFO, Code.NOT_WAN, f"This is not a Wan model: it is {_family_name(family)}"
                                  + (f", loaded with {pipeline}." if pipeline else "."),
                                  "Load it with diffusers' DiffusionPipeline.from_pretrained; "
                                  "Wan Compat generates only with Wan models."))
    known = [c.parameters for c in d.components if c.parameters is not None]
    parameters = (sum(known) + d.extra_parameters) if (known or d.extra_parameters) else None
    registry_id = _registry_id(d.layout, version, task, size_class, d.hint) if arch.is_wan else None
    return ModelReport(
        path=d.path, layout=d.layout, architecture_type=arch, wan_version=version, task=task,
        size_class=size_class, pipeline_class=pipeline, experts=experts if arch.is_wan else 0,
        boundary_ratio=d.boundary_ratio, expand_timesteps=d.expand_timesteps, vae_kind=d.vae_kind,
        vae_z_dim=d.vae_z_dim, components=tuple(d.components), parameters=parameters,
        registry_id=registry_id, custom_code=d.custom_code, part=d.part, findings=tuple(d.findings))


def _family_name(family: ArchitectureType) -> str:
    names = {A.STABLE_DIFFUSION: "a Stable Diffusion (1.x/2.x) model", A.STABLE_DIFFUSION_XL: "a Stable Diffusion XL model",
             A.STABLE_DIFFUSION_3: "a Stable Diffusion 3 model", A.FLUX: "a Flux model"}
    return names.get(family, "a diffusers model of another kind")


def _wan_checks(d: _Draft, task: str | None, version: str | None) -> None:
    """Consistency between the parts of a Wan model."""
    main = d.experts[0]
    # With a shard missing an expert's tensors are partial: the shard finding says it already.
    experts_whole = all(c.complete for c in d.components if c.name.startswith("transformer"))
    if len(d.experts) == 2 and experts_whole and d.experts[0].shape_key != d.experts[1].shape_key:
        d.findings.append(Finding(ERROR, Code.EXPERT_MISMATCH,
                                  f"The two experts differ in shape ({_facts_str(d.experts[0])} vs {_facts_str(d.experts[1])}); "
                                  "they come from different models.",
                                  "Download transformer_2 (the low-noise expert) of the same model again."))
    elif len(d.expert_tensors) == 2 and experts_whole and all(d.expert_tensors):
        a, b = d.expert_tensors
        same = a.keys() == b.keys() and list(map(_SHAPE, a.values())) == list(map(_SHAPE, map(b.__getitem__, a)))
        if not same:
            diff = next((n for n in a if n not in b or a[n].shape != b[n].shape), None) or next(iter(b.keys() - a.keys()))
            d.findings.append(Finding(ERROR, Code.EXPERT_MISMATCH,
                                      f"The two experts differ at tensor {diff}; they come from different models.",
                                      "Download both experts of the same model again."))
    needed_z = main.out_channels
    if d.vae_z_dim and needed_z and d.vae_z_dim != needed_z:
        needs = signals.VAE_BY_Z_DIM.get(needed_z, f"a z_dim {needed_z}")
        d.findings.append(Finding(ERROR, Code.VAE_MISMATCH,
                                  f"The transformer works in {needed_z} latent channels and needs the "
                                  f"{needs.replace('wan', 'Wan')} VAE, but the VAE here has z_dim {d.vae_z_dim}"
                                  f" ({(d.vae_kind or '?').replace('wan', 'Wan')}).",
                                  f"Replace the VAE with the {needs.replace('wan', 'Wan')} VAE "
                                  f"({'Wan2.2_VAE / wan2.2_vae' if needed_z == 48 else 'Wan2.1_VAE / wan_2.1_vae'})."))
    if d.text_width and main.text_dim and d.text_width != main.text_dim:
        d.findings.append(Finding(ERROR, Code.TEXT_DIM_MISMATCH,
                                  f"The text encoder gives {d.text_width}-wide embeddings but the transformer expects "
                                  f"text_dim {main.text_dim}.",
                                  "Use the UMT5-XXL text encoder that came with this model."))
    if d.layout is not Layout.DIFFUSERS:
        return
    names = {c.name for c in d.components}
    for role in ("vae", "text_encoder", "tokenizer", "scheduler"):
        if role not in names:
            d.findings.append(Finding(ERROR, Code.COMPONENT_MISSING, f"The {role} is missing (no {role}/ folder).",
                                      f"Download the {role}/ folder of this model, or run Fix for a scheduler.", role))
    if "image_branch" in main.features and not {"image_encoder", "image_processor"} <= names:
        d.findings.append(Finding(ERROR, Code.COMPONENT_MISSING,
                                  "This Wan2.1 image-to-video model needs image_encoder/ and image_processor/, "
                                  "which are missing.", "Download both folders of this model again.", "image_encoder"))
    if len(d.experts) == 2 and d.boundary_ratio is None:
        d.findings.append(Finding(WARNING, Code.BOUNDARY_RATIO_MISSING,
                                  "There are two experts but model_index.json has no boundary_ratio, so the second "
                                  "expert would never be used.",
                                  "Run Fix to set boundary_ratio (0.875 for T2V-A14B, 0.9 for I2V-A14B)."))
    if task == "ti2v" and d.expand_timesteps is not True:
        d.findings.append(Finding(WARNING, Code.EXPAND_TIMESTEPS_MISSING,
                                  "A TI2V-5B model needs expand_timesteps true in model_index.json; without it the "
                                  "video comes out wrong.", "Run Fix to set expand_timesteps."))


def _facts_str(f: DitFacts) -> str:
    return f"width {f.dim}, {f.in_channels} in / {f.out_channels} out channels, {f.num_layers} layers"


def _registry_id(layout: Layout, version: str | None, task: str | None, size_class: str | None,
                 hint: str) -> str | None:
    """The registry entry for these facts; the registry failing never fails a check."""
    try:
        from core.check.registry import get_compatibility_registry
        entry = get_compatibility_registry().match(wan_version=version, task=task, size_class=size_class,
                                                   layout=layout.value, name_hint=hint)
    except Exception:  # noqa: BLE001 - a broken user registry must not break Model Check
        return None
    return entry.model_id if entry is not None else None


# --------------------------------------------------------------------------- the seed guide's API

@dataclass(frozen=True)
class ModelSignature:
    """What the seed guide calls a model's signature."""

    report: ModelReport

    def is_wan_architecture(self) -> bool:
        return self.report.is_wan

    @property
    def has_transformer_2(self) -> bool:
        return self.report.experts >= 2

    @property
    def has_boundary_ratio(self) -> bool:
        return self.report.boundary_ratio is not None

    @property
    def vae_dimensions(self) -> int:
        """3 for Wan's video VAE, 2 for image VAEs."""
        return 3 if self.report.vae_kind else 2

    @property
    def component_classes(self) -> dict[str, str | None]:
        return {c.name: c.class_name for c in self.report.components}

    @property
    def pipeline_class(self) -> str | None:
        return self.report.pipeline_class


@dataclass(frozen=True)
class ModelArchitecture:
    architecture_type: ArchitectureType
    signature: ModelSignature
    report: ModelReport


class ArchitectureDetector:
    """The seed guide's detector, on top of :func:`inspect`.

    >>> arch = ArchitectureDetector().detect_model_architecture("path/to/wan/model")  # doctest: +SKIP
    >>> arch.architecture_type.value, arch.signature.is_wan_architecture()           # doctest: +SKIP
    ('wan_t2v', True)
    """

    def detect_model_architecture(self, model_path: str | os.PathLike[str]) -> ModelArchitecture:
        report = inspect(model_path)
        return ModelArchitecture(report.architecture_type, ModelSignature(report), report)
