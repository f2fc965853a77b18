"""Read one model part (a diffusers component folder, a set of shards, a pickled file).

Everything here reads configs, safetensors headers and sizes through a FileSource and
returns what it found plus Findings; nothing raises for a broken file.
"""

from __future__ import annotations

import json
import posixpath
import re
from dataclasses import dataclass, field
from typing import Any

from core.check.codes import Code, header_code
from core.check.expected import BadConfig, compare, expected_tensors
from core.check.filesource import FileEntry, FileSource, display_name
from core.check.report import ComponentReport, Finding, Severity
from core.check.safetensors_header import HeaderError, SafetensorsHeader, TensorInfo, parse_header
from core.units import format_bytes

ERROR, WARNING, INFO = Severity.ERROR, Severity.WARNING, Severity.INFO

# Where each kind of diffusers component keeps its configuration.
CONFIG_FILE_BY_COMPONENT = {
    "tokenizer": "tokenizer_config.json", "tokenizer_2": "tokenizer_config.json",
    "tokenizer_3": "tokenizer_config.json", "scheduler": "scheduler_config.json",
    "image_processor": "preprocessor_config.json", "feature_extractor": "preprocessor_config.json",
}
# Components that hold no weights.
WEIGHTLESS = frozenset({"tokenizer", "tokenizer_2", "tokenizer_3", "scheduler", "image_processor",
                        "feature_extractor"})
PICKLE_SUFFIXES = (".bin", ".pth", ".pt", ".ckpt")
_VARIANT = re.compile(r"^[^.]+\.([A-Za-z0-9_]+)\.safetensors$")  # model.fp16.safetensors


@dataclass
class PartReading:
    """What was read of one part: its component report, its tensors and its findings."""

    component: ComponentReport
    tensors: dict[str, TensorInfo] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)


def read_json(src: FileSource, path: str, what: str) -> tuple[Any, Finding | None]:
    """Parse a JSON file; return (object, None) or (None, a Finding saying what is wrong)."""
    shown = display_name(path)
    try:
        text = src.read_text(path)
    except FileNotFoundError:
        return None, Finding(ERROR, Code.CONFIG_MISSING, f"{what} is missing: {shown}.",
                             "Download the file again from the model's page.", path)
    except PermissionError:
        return None, Finding(ERROR, Code.PERMISSION_DENIED, f"{what} cannot be read ({shown}): permission denied.",
                             "Give your user read access to the model folder (or check a copy you own).", path)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        return None, Finding(ERROR, Code.CONFIG_UNREADABLE, f"{what} cannot be read ({shown}): {_reason(exc)}.",
                             "Check the file's permissions, or download it again.", path)
    try:
        return json.loads(text), None
    except ValueError as exc:
        return None, Finding(ERROR, Code.CONFIG_UNREADABLE, f"{what} is not valid JSON ({shown}): {exc}.",
                             "Download the file again; if you edited it, repair the JSON.", path)
    except RecursionError:
        return None, Finding(ERROR, Code.CONFIG_UNREADABLE,
                             f"{what} ({shown}) nests brackets thousands deep; no real config does.",
                             "Download the file again; if you edited it, repair the JSON.", path)


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc)


def read_safetensors(src: FileSource, entry: FileEntry, into: dict[str, TensorInfo],
                     findings: list[Finding]) -> SafetensorsHeader | None:
    """Read one file's header into ``into``; report an unreadable or cut-short file."""
    shown = display_name(entry.path)
    try:
        header = parse_header(src, entry.path, entry.size)
    except HeaderError as exc:
        findings.append(Finding(ERROR, header_code(exc.reason),
                                f"{shown} {exc}.",
                                "Download this file again; it is damaged or not a safetensors file.", entry.path))
        return None
    except OSError as exc:
        findings.append(unreadable(entry, exc))
        return None
    if entry.size < header.expected_file_size:
        findings.append(cut_short(entry, header.expected_file_size))
    elif entry.size > header.expected_file_size:
        findings.append(Finding(
            ERROR, Code.FILE_EXTRA_BYTES,
            f"{shown} is {entry.size - header.expected_file_size:,} bytes longer than its header describes; "
            "the safetensors library refuses such a file.",
            "Delete this file and download it again.", entry.path))
    into.update(header.tensors)
    return header


_gb = format_bytes


def unreadable(entry: FileEntry, exc: OSError) -> Finding:
    """A weights file the operating system will not read (permissions, I/O error)."""
    return Finding(ERROR, Code.FILE_UNREADABLE, f"{display_name(entry.path)} cannot be read: {_reason(exc)}.",
                   "Check the file's permissions, or download it again.", entry.path)


def cut_short(entry: FileEntry, expected_size: int) -> Finding:
    """A weights file shorter than its header describes: an interrupted download."""
    return Finding(ERROR, Code.FILE_TRUNCATED,
                   f"{display_name(entry.path)} is cut short: {_gb(entry.size)} on disk, but its header describes "
                   f"{_gb(expected_size)} (an interrupted download).",
                   "Delete this file and download it again.", entry.path)


def weight_files(files: list[FileEntry], folder: str, findings: list[Finding], src: FileSource
                 ) -> tuple[list[FileEntry], list[str]]:
    """The safetensors files a component loads, and shards that an index names but are absent.

    With an ``*.safetensors.index.json`` the shards are the ones its ``weight_map`` names;
    without one, the ``.safetensors`` files in the folder (a variant such as ``.fp16`` only
    when there is no plain file).
    """
    base = folder + "/" if folder else ""
    here = {e.path[len(base):]: e for e in files if e.path.startswith(base) and "/" not in e.path[len(base):]}
    indexes = sorted(n for n in here if n.endswith(".safetensors.index.json"))
    if indexes:
        index_name = next((n for n in indexes if n.count(".") == 3), indexes[0])  # prefer non-variant
        index, problem = read_json(src, base + index_name, "The shard index")
        if problem or not isinstance(index, dict) or not isinstance(index.get("weight_map"), dict):
            findings.append(problem or Finding(
                ERROR, Code.INDEX_UNREADABLE, f"The shard index {display_name(base + index_name)} has no weight_map.",
                "Download the index file again.", base + index_name))
            return [here[n] for n in sorted(here) if n.endswith(".safetensors")], []
        shard_names = sorted({str(v) for v in index["weight_map"].values()})
        present = [here[n] for n in shard_names if n in here]
        missing = [base + n for n in shard_names if n not in here]
        return present, missing
    plain = [here[n] for n in sorted(here) if n.endswith(".safetensors") and not _VARIANT.match(n)]
    variants = [here[n] for n in sorted(here) if n.endswith(".safetensors") and _VARIANT.match(n)]
    return plain or variants, []


def read_weights(src: FileSource, name: str, folder: str, class_name: str | None, library: str | None,
                 config: dict[str, Any], needs_weights: bool = True) -> PartReading:
    """Read a folder's weights (shards, headers, sizes) into a component report."""
    findings: list[Finding] = []
    tensors: dict[str, TensorInfo] = {}
    shards, missing = weight_files(src.files, folder, findings, src)
    for path in missing:
        findings.append(Finding(ERROR, Code.SHARD_MISSING,
                                f"{display_name(path)} is missing: the shard index names it but it is not on disk.",
                                "Download this shard again (an interrupted or partial download).", path))
    dtypes: dict[str, int] = {}
    parameters = 0
    for entry in shards:
        header = read_safetensors(src, entry, tensors, findings)
        if header is not None:
            parameters += header.parameters
            for dtype, count in header.dtype_parameters.items():
                dtypes[dtype] = dtypes.get(dtype, 0) + count
    base = folder + "/" if folder else ""
    folder_files = [e for e in src.files if e.path.startswith(base)]
    pickles = [e for e in folder_files if e.path.endswith(PICKLE_SUFFIXES) and "/" not in e.path[len(base):]]
    if not shards and not missing:
        if pickles:
            findings.append(Finding(INFO, Code.PICKLE_WEIGHTS,
                                    f"{name} has only pickled weights ({', '.join(display_name(p.path) for p in pickles)}); "
                                    "judged by name and size, never opened.",
                                    "Prefer the .safetensors files of this model where they exist.", folder or None))
        elif needs_weights:
            findings.append(Finding(ERROR, Code.WEIGHTS_MISSING, f"The {name} folder has no weight files.",
                                    f"Download the {name} weights into {display_name(folder or '.')}/.", folder or None))
    complete = not any(f.severity is ERROR for f in findings)
    comp = ComponentReport(
        name=name, class_name=class_name, library=library, folder=folder,
        files=tuple(e.path for e in folder_files),
        size_bytes=sum(e.size for e in folder_files),
        dtype=max(dtypes, key=dtypes.__getitem__) if dtypes else None,
        parameters=parameters if shards else None,
        present=True, complete=complete, config=config)
    return PartReading(comp, tensors, findings)


def read_component_folder(src: FileSource, name: str, declared: tuple[str | None, str | None] | None
                          ) -> PartReading:
    """Read a diffusers component folder ``name/``: its config, class and weights."""
    folder_files = [e for e in src.files if e.path.startswith(name + "/")]
    library, declared_class = declared or (None, None)
    if not folder_files and name in getattr(src, "unreadable", ()):
        comp = ComponentReport(name=name, class_name=declared_class, library=library, folder=name, complete=False)
        return PartReading(comp, findings=[Finding(
            ERROR, Code.PERMISSION_DENIED, f"The {name}/ folder is there but cannot be read: permission denied.",
            "Give your user read access to the model folder (or check a copy you own).", name)])
    if not folder_files:
        comp = ComponentReport(name=name, class_name=declared_class, library=library, folder=name,
                               present=False, complete=False)
        return PartReading(comp, findings=[Finding(
            ERROR, Code.COMPONENT_MISSING,
            f"model_index.json names a {name} ({declared_class or 'unknown class'}), but the {name}/ folder "
            "is missing or empty.",
            f"Download the {name}/ folder of this model again.", name)])
    config_name = CONFIG_FILE_BY_COMPONENT.get(name, "config.json")
    findings: list[Finding] = []
    config: dict[str, Any] = {}
    if any(e.path == f"{name}/{config_name}" for e in folder_files):
        obj, problem = read_json(src, f"{name}/{config_name}", f"The {name} configuration")
        if problem:
            findings.append(problem)
        elif isinstance(obj, dict):
            config = obj
        else:
            findings.append(Finding(ERROR, Code.CONFIG_UNREADABLE, f"{name}/{config_name} is not a JSON object.",
                                    "Download the file again.", f"{name}/{config_name}"))
    elif name not in WEIGHTLESS or name == "scheduler":
        findings.append(Finding(ERROR, Code.CONFIG_MISSING, f"{name}/{config_name} is missing.",
                                f"Download {name}/{config_name} again, or run Fix to rebuild it.",
                                f"{name}/{config_name}"))
    class_name = (config.get("_class_name") or _first(config.get("architectures"))
                  or config.get("tokenizer_class") or config.get("image_processor_type") or declared_class)
    if not isinstance(class_name, str):
        class_name = declared_class
    quantized = None
    if name.startswith("transformer") and not findings:   # a GGUF / fp8 file kept as it is (fix --assemble)
        from core.check.quantization import read_quantized_folder
        quantized = read_quantized_folder(src, name, class_name, library, config)
    if name not in WEIGHTLESS:
        findings.extend(f for f in _declared_class_problems(name, (library, declared_class), class_name,
                                                            library_of(config) or library, folder_files)
                        if quantized is None or f.code is not Code.WEIGHTS_MISNAMED)
    elif declared_class and not _fits_weightless(name, library, declared_class, class_name):
        findings.append(Finding(
            ERROR, Code.COMPONENT_CLASS_MISMATCH,
            f"model_index.json loads {name}/ as {library}.{declared_class}, but the folder holds a {class_name}; "
            "diffusers cannot load it so.", "Run Fix (`python -m core fix PATH`) to name the right class.", name))
    if quantized is not None:
        quantized.findings[:0] = findings
        return quantized
    reading = read_weights(src, name, name, class_name, library, config, needs_weights=name not in WEIGHTLESS)
    if config and not findings and not any(f.severity is ERROR for f in reading.findings):
        findings.extend(_class_problems(name, config_name, class_name, config, reading.tensors))
    reading.findings[:0] = findings
    if findings:
        reading.component = _replace(reading.component, complete=False)
    return reading


def _class_problems(name: str, config_name: str, class_name: str | None, config: dict[str, Any],
                    tensors: dict[str, TensorInfo]) -> list[Finding]:
    """The weights against what ``class_name`` builds from ``config`` (see core.check.expected)."""
    try:
        want = expected_tensors(class_name, config)
    except BadConfig as exc:
        return [Finding(ERROR, Code.CONFIG_UNREADABLE, f"{name}/{config_name} {exc}; the {class_name} cannot be built.",
                        f"Download {name}/{config_name} again from the model's page.", f"{name}/{config_name}")]
    problem = None if want is None else compare(want, tensors, class_name or "")
    if problem is None:
        return []
    return [Finding(ERROR, Code.WEIGHTS_MISMATCH,
                    f"The weights in {name}/ do not fit {class_name} as its config describes it: {problem}. "
                    "diffusers would fill the gaps with random numbers (a noise video) or refuse to load.",
                    f"Download the {name}/ folder of this model again (config and weights from the same model).",
                    name)]


# The weight file names each library's from_pretrained looks for.
WEIGHT_STEMS = {"diffusers": "diffusion_pytorch_model", "transformers": "model"}


def library_of(config: dict[str, Any]) -> str | None:
    """Which library wrote a component's config.json."""
    if "_class_name" in config or "_diffusers_version" in config:
        return "diffusers"
    if "architectures" in config or "model_type" in config:
        return "transformers"
    return None


def _declared_class_problems(name: str, declared: tuple[str | None, str | None], class_name: str | None,
                             library: str | None, folder_files: list[FileEntry]) -> list[Finding]:
    """model_index.json naming another class than the folder holds, or weights under a name the library skips."""
    found: list[Finding] = []
    declared_library, declared_class = declared
    if declared_class and class_name and (declared_class, declared_library) != (class_name, library):
        found.append(Finding(
            ERROR, Code.COMPONENT_CLASS_MISMATCH,
            f"model_index.json loads {name}/ as {declared_library}.{declared_class}, but the folder holds a "
            f"{library}.{class_name}; it would not load, or load with random weights.",
            "Run Fix (`python -m core fix PATH`) to name the right class.", name))
    stem = WEIGHT_STEMS.get(library or "")
    weights = [posixpath.basename(e.path) for e in folder_files
               if e.path.endswith(".safetensors") and posixpath.dirname(e.path) == name]
    if stem and weights and not any(w.startswith(stem + ".") or w.startswith(stem + "-") for w in weights):
        found.append(Finding(
            ERROR, Code.WEIGHTS_MISNAMED,
            f"{library} looks for {stem}*.safetensors in {name}/, but the weights there are named "
            f"{', '.join(sorted(weights)[:2])}.", "Run Fix to rename them (nothing is copied).", name))
    return found


# Classes that may load a weightless folder besides the one its config names.
WEIGHTLESS_CLASSES = {"tokenizer": ("T5Tokenizer", "T5TokenizerFast", "AutoTokenizer"),
                      "image_processor": ("CLIPImageProcessor", "CLIPImageProcessorFast", "CLIPImageProcessorPil",
                                          "AutoImageProcessor")}  # Pil: transformers 5 without torchvision


def _fits_weightless(name: str, library: str | None, declared: str, in_folder: str | None) -> bool:
    """Whether model_index.json's (library, class) can load a tokenizer, scheduler or processor folder."""
    if name == "scheduler":
        return library == "diffusers" and declared == in_folder
    return library == "transformers" and (declared == in_folder or declared in WEIGHTLESS_CLASSES.get(name, ()))


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, list) and value else None


def _replace(comp: ComponentReport, **changes: Any) -> ComponentReport:
    from dataclasses import replace
    return replace(comp, **changes)


def folder_of(path: str) -> str:
    return posixpath.dirname(path)
