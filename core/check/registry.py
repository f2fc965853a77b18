"""Known Wan 2.1 / 2.2 models and what each needs: pipeline, defaults, memory.

Usage::

    from core.check.registry import get_compatibility_registry
    registry = get_compatibility_registry()          # built-in list + the user's file
    req = registry.get_pipeline_requirements("Wan-AI/Wan2.2-TI2V-5B-Diffusers")
    req.pipeline_class                 # 'WanPipeline'
    req.vram_requirements["min_mb"]    # 8192, with req.vram_requirements["min_assumes"]
    req.default_size, req.frames, req.steps, req.guidance, req.shift
    registry.match(wan_version="2.1", task="i2v", size_class="14B", layout="diffusers",
                   name_hint="Wan2.1-I2V-14B-720P-Diffusers").model_id
    for sentence in registry.problems:  # malformed user entries: reported, then skipped
        print(sentence)

The data lives in ``core/known_models.yaml`` (its header documents every field). A user
registry file (``config.yaml``: ``user_registry``) uses the same fields and either adds
models or overrides fields of known ones by id::

    # data/user_models.yaml: a list, or a mapping of id -> fields
    - id: me/Wan2.1-T2V-14B-finetune          # new: needs name, wan_version, task,
      name: My fine-tune                      #   size_class, pipeline_class, vram, sizes
      wan_version: "2.1"
      task: t2v
      size_class: 14B
      pipeline_class: WanPipeline
      sizes: [832x480]
      vram: {min_mb: 14000, recommended_mb: 40000}
    - id: Wan-AI/Wan2.2-TI2V-5B-Diffusers     # override: only the fields given change
      vram: {min_mb: 10000}

Loading never raises for bad data; it reads no weights and imports neither torch nor
diffusers, so it runs on every ``python -m core check``.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from core.errors import WanError

__all__ = ["BUILTIN_PATH", "CompatibilityRegistry", "ModelRequirements", "RegistryError",
           "get_compatibility_registry"]

BUILTIN_PATH = Path(__file__).with_name("known_models.yaml")

TASKS = ("t2v", "i2v", "ti2v", "flf2v", "vace", "s2v", "animate")
LAYOUTS = ("diffusers", "wan_original", "single_file")
WAN_VERSIONS = ("2.1", "2.2")
TRANSFORMER_DIMS = ("dim", "in_channels", "out_channels", "num_layers", "ffn_dim", "heads")
# Keys a user entry must give when it adds a model (an override may give any subset).
REQUIRED_FOR_NEW = ("name", "wan_version", "task", "size_class", "pipeline_class", "vram")

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class RegistryError(WanError):
    """A model id the registry does not know (the message lists near matches)."""


@dataclass(frozen=True)
class ModelRequirements:
    """What one repository (one id, one layout) is and needs.

    >>> req = get_compatibility_registry().get_pipeline_requirements("Wan-AI/Wan2.2-T2V-A14B")
    >>> req.experts, req.boundary_ratio, req.layout
    (2, 0.875, 'wan_original')

    Mapping fields (``vram_requirements``, ``parameters``, ``transformer``) are read-only;
    ``to_dict()`` gives plain JSON-ready values. Sizes are ``(width, height)``.
    """

    model_id: str
    name: str
    wan_version: str
    task: str
    size_class: str
    layout: str
    pipeline_class: str | None
    min_diffusers: str | None
    experts: int
    boundary_ratio: float | None
    expand_timesteps: bool
    vae: str                                  # "wan2.1" or "wan2.2"
    vae_z_dim: int
    transformer: Mapping[str, Any] = field(hash=False)  # dim, in_channels, out_channels, num_layers, ffn_dim, heads, ...
    default_size: tuple[int, int]
    sizes: tuple[tuple[int, int], ...]
    frames: int
    fps: int
    steps: int
    guidance: float                           # guidance_scale: `transformer` (high noise)
    guidance_2: float | None                  # guidance_scale_2: `transformer_2` (low noise)
    shift: float
    parameters: Mapping[str, int] = field(hash=False)   # transformer (per expert), text_encoder, vae, ...
    vram_requirements: Mapping[str, Any] = field(hash=False)  # min_mb, recommended_mb, min_assumes, recommended_assumes
    supported_optimizations: tuple[str, ...]
    dependencies: tuple[str, ...]
    notes: str = ""
    source: str = field(default="builtin", compare=False)  # "builtin" or the user file

    @property
    def repo_name(self) -> str:
        """The id without its organisation: ``Wan2.2-TI2V-5B-Diffusers``."""
        return self.model_id.rsplit("/", 1)[-1]

    @property
    def total_parameters(self) -> int:
        """All weights: every expert, the text encoder, the VAE and any other encoder."""
        total = sum(self.parameters.values())
        return total + (self.experts - 1) * self.parameters.get("transformer", 0)

    def to_dict(self) -> dict[str, Any]:
        """Plain values for JSON (tuples become lists)."""
        return {
            "model_id": self.model_id, "name": self.name, "wan_version": self.wan_version,
            "task": self.task, "size_class": self.size_class, "layout": self.layout,
            "pipeline_class": self.pipeline_class, "min_diffusers": self.min_diffusers,
            "experts": self.experts, "boundary_ratio": self.boundary_ratio,
            "expand_timesteps": self.expand_timesteps, "vae": self.vae, "vae_z_dim": self.vae_z_dim,
            "transformer": {k: list(v) if isinstance(v, tuple) else v for k, v in self.transformer.items()},
            "default_size": list(self.default_size), "sizes": [list(s) for s in self.sizes],
            "frames": self.frames, "fps": self.fps, "steps": self.steps, "guidance": self.guidance,
            "guidance_2": self.guidance_2, "shift": self.shift, "parameters": dict(self.parameters),
            "total_parameters": self.total_parameters,
            "vram_requirements": dict(self.vram_requirements),
            "supported_optimizations": list(self.supported_optimizations),
            "dependencies": list(self.dependencies), "notes": self.notes, "source": self.source,
        }


class CompatibilityRegistry:
    """The known models, one entry per repository id.

    Build it with :func:`get_compatibility_registry` (cached, app-wide) or directly in
    tests: ``CompatibilityRegistry(builtin_path=..., user_path=tmp / "user.yaml")``.
    """

    def __init__(self, builtin_path: str | os.PathLike[str] = BUILTIN_PATH,
                 user_path: str | os.PathLike[str] | None = None) -> None:
        self.problems: list[str] = []
        self._raw: dict[str, dict[str, Any]] = {}        # lower id -> merged fields
        self._by_id: dict[str, ModelRequirements] = {}   # lower id -> entry, in listed order
        self._vaes: dict[str, dict[str, Any]] = {}
        self._defaults: dict[str, Any] = {}
        self._load_builtin(Path(builtin_path))
        if user_path is not None:
            self._load_user(Path(user_path))

    # --- lookups ------------------------------------------------------------------------

    @property
    def entries(self) -> tuple[ModelRequirements, ...]:
        """Every entry: built-in ones in file order, then the user's new ones."""
        return tuple(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[ModelRequirements]:
        return iter(self._by_id.values())

    def __contains__(self, model_id: object) -> bool:
        return isinstance(model_id, str) and self.get(model_id) is not None

    def get(self, model_id: str) -> ModelRequirements | None:
        """The entry for ``model_id`` (any case; the organisation may be left out), or None."""
        key = model_id.strip().lower()
        if key in self._by_id:
            return self._by_id[key]
        if "/" not in key:
            hits = [e for e in self._by_id.values() if e.repo_name.lower() == key]
            if len(hits) == 1:
                return hits[0]
        return None

    def get_pipeline_requirements(self, model_id: str) -> ModelRequirements:
        """The entry for ``model_id``; an unknown id raises :class:`RegistryError`.

        >>> get_compatibility_registry().get_pipeline_requirements("wan-ai/wan2.1-t2v-1.3b").pipeline_class
        'WanPipeline'
        """
        entry = self.get(model_id)
        if entry is not None:
            return entry
        import difflib  # only on this path: keeps the import of this module quick

        ids = [e.model_id for e in self._by_id.values()]
        lowered = {i.lower(): i for i in ids}
        near = difflib.get_close_matches(model_id.strip().lower(), list(lowered), n=5, cutoff=0.6)
        if "/" not in model_id:
            names = {i.rsplit("/", 1)[-1].lower(): i for i in ids}
            near += [names[n] for n in difflib.get_close_matches(model_id.strip().lower(), list(names),
                                                                   n=5, cutoff=0.6)]
        suggestions = list(dict.fromkeys(lowered.get(n, n) for n in near))
        hint = f" Did you mean: {', '.join(suggestions)}?" if suggestions else ""
        raise RegistryError(
            f"'{model_id}' is not a known Wan model.{hint}",
            "Check the spelling (ids look like Wan-AI/Wan2.2-TI2V-5B-Diffusers), or add the model "
            "to your user registry file (config.yaml: user_registry).",
            "Known ids: " + ", ".join(ids))

    def match(self, *, wan_version: str | None, task: str | None, size_class: str | None,
              layout: str | None, name_hint: str | None = None) -> ModelRequirements | None:
        """The entry that fits a detected model, or None.

        ``layout`` "diffusers" matches diffusers repositories; "wan_original" and
        "single_file" match the original ones; None or "unknown" matches either.
        ``wan_version`` None means any. When several fit (I2V 480P and 720P), the one whose
        name appears in ``name_hint`` (a folder or file name) wins, else the first listed.

        >>> get_compatibility_registry().match(wan_version="2.1", task="i2v", size_class="14B",
        ...     layout="diffusers", name_hint="models--Wan-AI--Wan2.1-I2V-14B-720P-Diffusers").model_id
        'Wan-AI/Wan2.1-I2V-14B-720P-Diffusers'
        """
        if layout == "diffusers":
            layouts: tuple[str, ...] = ("diffusers",)
        elif layout in ("wan_original", "single_file", "gguf"):
            layouts = ("wan_original", "single_file")
        else:
            layouts = LAYOUTS
        size = (size_class or "").strip().lower()
        found = [e for e in self._by_id.values()
                 if e.task == task and e.size_class.lower() == size and e.layout in layouts
                 and (wan_version is None or e.wan_version == str(wan_version))]
        if len(found) <= 1 or not name_hint:
            return found[0] if found else None
        hint = name_hint.lower()
        hint_tokens = set(_tokens(hint))

        def score(entry: ModelRequirements) -> tuple[int, int]:
            name = entry.repo_name.lower()
            bare = re.sub(r"-diffusers$", "", name)
            substring = int(name in hint or bare in hint)
            return substring, len(set(_tokens(bare)) & hint_tokens)

        return max(found, key=score)  # max keeps the first listed among equals

    # --- loading ------------------------------------------------------------------------

    def _load_builtin(self, path: Path) -> None:
        doc = self._read_yaml(path)
        if doc is None:
            return
        if not isinstance(doc, dict) or not isinstance(doc.get("models"), list):
            self.problems.append(f"{_show(path)}: must be a mapping with a 'models' list; no models loaded.")
            return
        self._vaes = {k: v for k, v in (doc.get("vaes") or {}).items() if isinstance(v, dict)}
        defaults = doc.get("defaults") or {}
        self._defaults = defaults if isinstance(defaults, dict) else {}
        for index, item in enumerate(doc["models"]):
            for model_id, layout, fields in self._expand(path, index, item):
                self._add(path, model_id, layout, fields, source="builtin", new=True)

    def _load_user(self, path: Path) -> None:
        if not path.exists():
            return
        doc = self._read_yaml(path)
        if doc is None:
            return
        if isinstance(doc, dict) and isinstance(doc.get("models"), list):
            items: list[Any] = doc["models"]
        elif isinstance(doc, list):
            items = doc
        elif isinstance(doc, dict):
            items = [{**v, "id": k} if isinstance(v, dict) else v for k, v in doc.items()]
        else:
            self.problems.append(f"{_show(path)}: must be a list of models or a mapping of model id "
                                 "to fields; the file was ignored.")
            return
        for index, item in enumerate(items):
            for model_id, layout, fields in self._expand(path, index, item):
                known = model_id.lower() in self._raw
                self._add(path, model_id, layout, fields, source=_show(path), new=not known)

    def _read_yaml(self, path: Path) -> Any:
        """The parsed file, or None with a problem recorded. An empty file is ``{}``."""
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            self.problems.append(f"{_show(path)}: is not UTF-8 text; the file was ignored.")
            return None
        except OSError as exc:
            self.problems.append(f"{_show(path)}: cannot be read ({exc.strerror or exc}); the file was ignored.")
            return None
        try:
            doc = yaml.load(text, Loader=_Loader)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            self.problems.append(f"{_show(path)}: is not valid YAML{where} ({problem}); the file was ignored.")
            return None
        return {} if doc is None else doc

    def _expand(self, path: Path, index: int, item: Any) -> list[tuple[str, str | None, dict[str, Any]]]:
        """One model item -> (id, layout or None, fields) for each of its repositories."""
        label = f"{_show(path)}: entry {index + 1}"
        if not isinstance(item, dict):
            self.problems.append(f"{label}: must be a mapping of fields, not {_kind(item)}; skipped.")
            return []
        fields = {k: v for k, v in item.items() if k not in ("id", "repos", "layout")}
        if "repos" in item:
            repos = item["repos"]
            if not isinstance(repos, dict) or not repos:
                self.problems.append(f"{label}, key 'repos': must map a layout ({', '.join(LAYOUTS)}) "
                                     "to an id; skipped.")
                return []
            out = []
            for layout, repo in repos.items():
                extra: dict[str, Any] = {}
                if isinstance(repo, dict):
                    extra = {k: v for k, v in repo.items() if k != "id"}
                    repo = repo.get("id")
                if layout not in LAYOUTS or not isinstance(repo, str) or not repo.strip():
                    self.problems.append(f"{label}, key 'repos': '{layout}' must be one of "
                                         f"{', '.join(LAYOUTS)} with an id as its value; skipped.")
                    continue
                out.append((repo.strip(), layout, _merge(fields, extra)))
            return out
        model_id = item.get("id")
        if not isinstance(model_id, str) or not model_id.strip():
            self.problems.append(f"{label}: needs an 'id' (or 'repos'); skipped.")
            return []
        return [(model_id.strip(), item.get("layout"), fields)]

    def _add(self, path: Path, model_id: str, layout: Any, fields: dict[str, Any], *,
             source: str, new: bool) -> None:
        """Merge, check and store one entry; a bad one is reported and leaves things as they were."""
        key = model_id.lower()
        where = f"{_show(path)}: entry '{model_id}'"
        if new:
            missing = [k for k in REQUIRED_FOR_NEW if k not in fields]
            if missing:
                for k in missing:
                    self.problems.append(f"{where}, key '{k}': is required for a new model; entry skipped.")
                return
            if layout is None:
                layout = "diffusers" if key.endswith("-diffusers") else "wan_original"
            merged = _merge(self._defaults, fields)
            canonical = model_id
        else:
            merged = _merge(self._raw[key], fields)
            canonical = self._by_id[key].model_id
            layout = layout if layout is not None else self._by_id[key].layout
        merged["layout"] = layout
        entry, errors = self._build(canonical, merged, source)
        unknown = [k for k in fields if k not in _FIELDS and k not in ("layout",)]
        for k in unknown:
            self.problems.append(f"{where}, key '{k}': is not a known field (ignored).")
        if entry is None:
            self.problems.extend(f"{where}, key '{k}': {msg}; entry skipped." for k, msg in errors)
            return
        self._raw[key] = merged
        self._by_id[key] = entry

    def _build(self, model_id: str, raw: dict[str, Any], source: str
               ) -> tuple[ModelRequirements | None, list[tuple[str, str]]]:
        values: dict[str, Any] = {}
        errors: list[tuple[str, str]] = []
        for name, convert in _FIELDS.items():
            try:
                values[name] = convert(raw.get(name), self)
            except ValueError as exc:
                errors.append((name, str(exc)))
        try:
            values["layout"] = _choice(LAYOUTS)(raw.get("layout"), self)
        except ValueError as exc:
            errors.append(("layout", str(exc)))
        if not errors:
            errors += _cross_check(values)
        if errors:
            return None, errors
        sizes = values["sizes"] or (values["default_size"],)
        params = dict(values["parameters"])
        params.setdefault("vae", int(self._vaes[values["vae"]].get("parameters", 0)))
        return ModelRequirements(
            model_id=model_id, name=values["name"], wan_version=values["wan_version"],
            task=values["task"], size_class=values["size_class"], layout=values["layout"],
            pipeline_class=values["pipeline_class"], min_diffusers=values["min_diffusers"],
            experts=values["experts"], boundary_ratio=values["boundary_ratio"],
            expand_timesteps=values["expand_timesteps"], vae=values["vae"],
            vae_z_dim=int(self._vaes[values["vae"]].get("z_dim", 0)),
            transformer=MappingProxyType(values["transformer"]),
            default_size=values["default_size"] or sizes[0], sizes=sizes,
            frames=values["frames"], fps=values["fps"], steps=values["steps"],
            guidance=values["guidance"], guidance_2=values["guidance_2"], shift=values["shift"],
            parameters=MappingProxyType(params), vram_requirements=MappingProxyType(values["vram"]),
            supported_optimizations=values["supported_optimizations"],
            dependencies=values["dependencies"], notes=values["notes"], source=source,
        ), []


# --- the app-wide instance ------------------------------------------------------------------

_CACHE: dict[str | None, CompatibilityRegistry] = {}
_CACHE_LOCK = threading.Lock()


def get_compatibility_registry(user_path: str | os.PathLike[str] | None = None, *,
                               reload: bool = False) -> CompatibilityRegistry:
    """The registry for this process: built-in models plus the user registry file.

    ``user_path`` defaults to the process's configuration's ``user_registry``
    (``core.config.current()``, read once); when the configuration cannot be read the
    built-in list is used alone (with a sentence in ``problems``). The result is cached
    per file; ``reload=True`` reads the registry files again.
    """
    note = None
    path: str | os.PathLike[str] | None = user_path
    if path is None:
        path, note = _configured_user_path()
    key = None if path is None else str(path)
    with _CACHE_LOCK:
        if reload or key not in _CACHE:
            registry = CompatibilityRegistry(user_path=path)
            if note:
                registry.problems.append(note)
            _CACHE[key] = registry
        return _CACHE[key]


def _configured_user_path() -> tuple[Path | None, str | None]:
    from core.config import current
    try:
        return Path(current().user_registry), None
    except WanError as exc:  # a broken config.yaml: the built-in list still works
        reason = exc.message
        return None, f"The user registry was not read because the configuration could not be: {reason}"


# --- checking fields ------------------------------------------------------------------------
# Each converter takes the raw YAML value (None when absent) and returns the clean value or
# raises ValueError("must be ...").

Converter = Callable[[Any, "CompatibilityRegistry"], Any]
_SIZE = re.compile(r"^\s*(\d+)\s*[x*×]\s*(\d+)\s*$", re.IGNORECASE)


def _text(default: str | None = None) -> Converter:
    def convert(value: Any, _: Any) -> str:
        if value is None:
            if default is not None:
                return default
            raise ValueError("is missing")
        if not isinstance(value, str) or not (value.strip() or default is not None):
            raise ValueError(f"must be a non-empty text, not {_kind(value)}")
        return value.strip()
    return convert


def _choice(options: tuple[str, ...]) -> Converter:
    def convert(value: Any, _: Any) -> str:
        if isinstance(value, float):  # wan_version: 2.1 written without quotes
            value = str(value)
        if value not in options:
            raise ValueError(f"must be one of {', '.join(options)}, not {value!r}")
        return value
    return convert


def _size_class(value: Any, _: Any) -> str:
    if isinstance(value, str) and re.fullmatch(r"\d+(\.\d+)?[bB]", value.strip()):
        return value.strip()[:-1] + "B"
    raise ValueError(f"must be a size such as 1.3B, 5B or 14B, not {value!r}")


def _pipeline_class(value: Any, _: Any) -> str | None:
    if value is None or (isinstance(value, str) and value.isidentifier()):
        return value
    raise ValueError(f"must be a diffusers class name such as WanPipeline, or null, not {value!r}")


def _version(value: Any, _: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str) and re.fullmatch(r"\d+(\.\d+){0,3}", value.strip()):
        return value.strip()
    raise ValueError(f"must be a version in quotes such as \"0.35.0\", or null, not {value!r}")


def _integer(lo: int, hi: int | None = None, default: int | None = None) -> Converter:
    def convert(value: Any, _: Any) -> int:
        if value is None and default is not None:
            return default
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < lo or (hi is not None and value > hi):
            span = f"from {lo} to {hi}" if hi is not None else f"{lo} or more"
            raise ValueError(f"must be a whole number {span}, not {value!r}")
        return value
    return convert


def _number(optional: bool = False, below_one: bool = False) -> Converter:
    def convert(value: Any, _: Any) -> float | None:
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 \
                or (below_one and not 0 < value < 1):
            what = "a number between 0 and 1" if below_one else "a number of 0 or more"
            raise ValueError(f"must be {what}{', or null' if optional else ''}, not {value!r}")
        return float(value)
    return convert


def _flag(value: Any, _: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, not {value!r}")
    return value


def _vae(value: Any, registry: CompatibilityRegistry) -> str:
    if value not in registry._vaes:
        raise ValueError(f"must be one of {', '.join(registry._vaes) or '(none defined)'}, not {value!r}")
    return value


def _one_size(value: Any) -> tuple[int, int]:
    if isinstance(value, str) and (m := _SIZE.match(value)):
        w, h = int(m.group(1)), int(m.group(2))
    elif isinstance(value, (list, tuple)) and len(value) == 2 and all(type(v) is int for v in value):
        w, h = value
    else:
        raise ValueError(f"must be WIDTHxHEIGHT such as 832x480, not {value!r}")
    if w <= 0 or h <= 0 or w % 16 or h % 16:
        raise ValueError(f"must have a width and height that are multiples of 16, not {value!r}")
    return w, h


def _default_size(value: Any, _: Any) -> tuple[int, int] | None:
    return None if value is None else _one_size(value)


def _sizes(value: Any, _: Any) -> tuple[tuple[int, int], ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not value:
        raise ValueError(f"must be a list of WIDTHxHEIGHT sizes, not {_kind(value)}")
    return tuple(_one_size(v) for v in value)


def _transformer(value: Any, _: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"must be a mapping of dimension names to numbers, not {_kind(value)}")
    missing = [k for k in TRANSFORMER_DIMS if k not in value]
    if missing:
        raise ValueError(f"must give {', '.join(TRANSFORMER_DIMS)} (missing {', '.join(missing)})")
    out: dict[str, Any] = {}
    for k, v in value.items():
        if isinstance(v, list) and all(type(i) is int for i in v):
            out[str(k)] = tuple(v)
        elif type(v) is int and v > 0:
            out[str(k)] = v
        else:
            raise ValueError(f"must hold whole numbers (or lists of them); '{k}' is {v!r}")
    return out


def _parameters(value: Any, _: Any) -> dict[str, int]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"must be a mapping of component names to parameter counts, not {_kind(value)}")
    out = {}
    for k, v in value.items():
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        if type(v) is not int or v < 0:
            raise ValueError(f"must hold whole numbers of 0 or more; '{k}' is {v!r}")
        out[str(k)] = v
    return out


def _vram(value: Any, _: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"must be a mapping with min_mb and recommended_mb (MiB), not {_kind(value)}")
    out: dict[str, Any] = {}
    for k in ("min_mb", "recommended_mb"):
        v = value.get(k)
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        if type(v) is not int or v <= 0:
            raise ValueError(f"must give {k} as a whole number of MiB above 0, not {v!r}")
        out[k] = v
    if out["min_mb"] > out["recommended_mb"]:
        raise ValueError(f"must have min_mb ({out['min_mb']}) no larger than recommended_mb "
                         f"({out['recommended_mb']})")
    for k in ("min_assumes", "recommended_assumes"):
        v = value.get(k, "")
        if not isinstance(v, str):
            raise ValueError(f"must give {k} as text, not {v!r}")
        out[k] = v.strip()
    unknown = sorted(set(value) - set(out))
    if unknown:
        raise ValueError(f"has unknown keys {', '.join(map(str, unknown))} (allowed: {', '.join(out)})")
    return out


def _text_list(value: Any, _: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ValueError(f"must be a list of texts, not {value!r}")
    return tuple(v.strip() for v in value)


_FIELDS: dict[str, Converter] = {
    "name": _text(),
    "wan_version": _choice(WAN_VERSIONS),
    "task": _choice(TASKS),
    "size_class": _size_class,
    "pipeline_class": _pipeline_class,
    "min_diffusers": _version,
    "experts": _integer(1, 2, default=1),
    "boundary_ratio": _number(optional=True, below_one=True),
    "expand_timesteps": _flag,
    "vae": _vae,
    "transformer": _transformer,
    "default_size": _default_size,
    "sizes": _sizes,
    "frames": _integer(1),
    "fps": _integer(1),
    "steps": _integer(1),
    "guidance": _number(),
    "guidance_2": _number(optional=True),
    "shift": _number(),
    "parameters": _parameters,
    "vram": _vram,
    "supported_optimizations": _text_list,
    "dependencies": _text_list,
    "notes": _text(default=""),
}


def _cross_check(values: dict[str, Any]) -> list[tuple[str, str]]:
    """Rules between fields, as (key, sentence) pairs."""
    errors = []
    if not values["sizes"] and values["default_size"] is None:
        errors.append(("sizes", "is required (or default_size) for a new model"))
    elif values["default_size"] and values["sizes"] and values["default_size"] not in values["sizes"]:
        errors.append(("default_size", "must be one of sizes"))
    if values["experts"] == 2 and values["boundary_ratio"] is None:
        errors.append(("boundary_ratio", "must be given for a model with two experts"))
    if values["experts"] == 1 and values["boundary_ratio"] is not None:
        errors.append(("boundary_ratio", "must be null for a model with one expert"))
    return errors


# --- small helpers --------------------------------------------------------------------------

def _merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``extra``; mapping fields (vram, parameters ...) merge one level."""
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = {**out[k], **v}
        else:
            out[k] = v
    return out


def _tokens(text: str) -> list[str]:
    return [t for t in re.split(r"[^a-z0-9]+", text.lower()) if t]


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a text", bool: "true/false",
            type(None): "empty"}.get(type(value), type(value).__name__)


def _show(path: Path) -> str:
    """A path as people wrote it: relative to the working folder when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(path)
