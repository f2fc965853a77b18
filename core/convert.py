"""Convert original Wan-AI checkpoints, or single files the user names, into a new diffusers folder.

The original is only ever read. The plan is computed first (cheap: JSON and safetensors
headers, no torch), shown, then carried out::

    from core.detector import inspect
    from core.convert import plan_assembly, plan_conversion

    plan = plan_conversion(inspect("/models/Wan2.2-T2V-A14B"))   # -> /models/Wan2.2-T2V-A14B-diffusers
    print("\\n".join(plan.describe()))
    if plan.refusal is None:
        out = plan.execute(lambda message, percent: print(f"{percent:5.1f}% {message}"))

    plan = plan_assembly(transformer="wan2.2_t2v_high_noise_14B_fp16.safetensors",
                         transformer_2="wan2.2_t2v_low_noise_14B_fp16.safetensors",
                         vae="wan_2.1_vae.safetensors", text_encoder="umt5_xxl_fp16.safetensors",
                         tokenizer="google/umt5-xxl", out="/models/Wan2.2-T2V-A14B-diffusers")

What is converted, and by whom:
- DiT (each expert; ``high_noise_model/`` becomes ``transformer/``): the tensor names come
  from diffusers' own ``convert_wan_transformer_to_diffusers``, run once on ``meta`` tensors
  of the checkpoint's names and shapes, so that the tensors themselves can be streamed.
- Wan2.1 VAE: likewise from diffusers' ``convert_wan_vae_to_diffusers``.
- Wan2.2 VAE and Wan's T5 encoder (to ``UMT5EncoderModel``): our tables in
  ``core.convert_keys`` (diffusers has no converter for them).
- Tokenizer files copied from ``google/umt5-xxl/``; scheduler and ``model_index.json`` from
  the registry's defaults (shift, boundary_ratio, expand_timesteps).
Before any weight is written, the converted names and shapes are checked against the
diffusers / transformers class built on the ``meta`` device.

Memory: tensors are read one at a time (safetensors by offset with plain reads; ``.pth``
with ``torch.load(weights_only=True, mmap=True)``, re-opened every ``PTH_WINDOW_BYTES`` so
that its mapped pages are let go) and written straight into the output shards, whose
headers are known in advance: peak memory is about the largest tensor, not the model.

Safety: a ``.pth`` is never unpickled beyond tensors (``weights_only=True``; a file that
would run code is refused with a sentence). Everything is written into
``.NAME.partial-PID`` beside the target and renamed to NAME only when complete; killed at
any moment, the target is absent or complete, and a partial folder left by a dead process
is removed by the next run. Free disk space is checked first.

Test hook: ``WAN_COMPAT_CONVERT_PAUSE_AFTER=N`` makes ``execute`` print
``WAN_COMPAT_CONVERT_PAUSED <N>`` to stderr after writing its N-th tensor and sleep
(``WAN_COMPAT_CONVERT_PAUSE_SECONDS``, default 600) so that a test can kill it there;
``=finish`` pauses when everything is written, just before the rename.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping

from core import signals
from core.atomic import fsync_dir
from core.convert_keys import (COMFY_PREFIXES, DIT_DIFFUSERS_MARK, DIT_MARK, IGNORED_TENSORS, T5_TO_UMT5,
                               TOKENIZER_CLASS, TOKENIZER_MAX_FILE, TOKENIZER_NEEDS_ONE_OF, UMT5_IDENTITY, UMT5_MARK,
                               VAE22_TO_DIFFUSERS, WAN22_VAE_MARK, WAN_T5_MARK, WAN_VAE_MARK, RenameTable,
                               rename, scheduler_config, transformer_config, umt5_config, vae21_config,
                               vae22_config)
from core.errors import WanError, explain
from core.report import Layout, ModelReport
from core.safetensors_header import DTYPE_BYTES, HeaderError, read_header

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["ConversionPlan", "plan_assembly", "plan_conversion", "ProgressCallback"]

ProgressCallback = Callable[[str, float], None]   # (message, percent 0..100)

MAX_SHARD_BYTES = 5 * 10**9          # like save_pretrained(max_shard_size="5GB")
PTH_WINDOW_BYTES = 1 << 30           # re-open a .pth after reading this much, to drop its mapped pages
PAUSE_ENV = "WAN_COMPAT_CONVERT_PAUSE_AFTER"
PAUSE_SECONDS_ENV = "WAN_COMPAT_CONVERT_PAUSE_SECONDS"
T5_PTH = "models_t5_umt5-xxl-enc-bf16.pth"
VAE_PTHS = ("Wan2.1_VAE.pth", "Wan2.2_VAE.pth")
TOKENIZER_DIR = "google/umt5-xxl"
SUPPORTED_TASKS = ("t2v", "ti2v", "i2v", "vace")
_FALLBACK_BOUNDARY = {"t2v": 0.875, "i2v": 0.9, "vace": 0.875}

# One table for the output of each role: folder, weights file stem, library and class.
_DIFFUSERS, _TRANSFORMERS = "diffusers", "transformers"
_STEM = {_DIFFUSERS: "diffusion_pytorch_model", _TRANSFORMERS: "model"}


# --------------------------------------------------------------------------- the plan

@dataclass(frozen=True)
class _Part:
    """One weights component to convert: where it comes from and what it becomes."""

    role: str                       # transformer, transformer_2, vae, text_encoder
    kind: str                       # dit, vae, t5
    files: tuple[str, ...]          # .safetensors shards, or one .pth
    label: str                      # how the source is named in messages
    bytes_out: int
    config: Mapping[str, Any] | None = None   # an original DiT's config.json


@dataclass(frozen=True)
class _Pipeline:
    pipeline_class: str
    boundary_ratio: float | None
    expand_timesteps: bool
    shift: float
    tokenizer: str


@dataclass(frozen=True)
class ConversionPlan:
    """What a conversion will do, computed without touching the target; ``execute`` does it.

    >>> plan = plan_conversion(inspect("/models/Wan2.2-TI2V-5B"))   # doctest: +SKIP
    >>> plan.fits_disk, plan.refusal
    (True, None)
    >>> plan.execute()                                            # doctest: +SKIP
    PosixPath('/models/Wan2.2-TI2V-5B-diffusers')
    """

    source: str
    target: str
    steps: tuple[str, ...]
    bytes_needed: int
    bytes_free: int
    fits_disk: bool
    refusal: str | None
    parts: tuple[_Part, ...] = field(default=(), repr=False, compare=False)
    pipeline: _Pipeline | None = field(default=None, repr=False, compare=False)

    def describe(self) -> list[str]:
        """The plan as sentences for a person, refusal last."""
        lines = [f"Convert {self.source}", f"into the new diffusers folder {self.target}:"]
        lines += [f"  {i}. {step}" for i, step in enumerate(self.steps, 1)]
        if self.bytes_needed:
            lines.append(f"Needs {_gb(self.bytes_needed)} of disk space; {_gb(self.bytes_free)} is free there.")
        if self.refusal:
            lines.append(f"Not possible: {self.refusal}")
        return lines

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "target": self.target, "steps": list(self.steps),
                "bytes_needed": self.bytes_needed, "bytes_free": self.bytes_free,
                "fits_disk": self.fits_disk, "refusal": self.refusal}

    def execute(self, progress_callback: ProgressCallback | None = None) -> Path:
        """Write the target folder and return it; raises WanError (a sentence and a remedy).

        On any failure the partial folder is removed and the target is not created.
        """
        if self.refusal:
            raise WanError(self.refusal)
        assert self.pipeline is not None
        report = progress_callback or (lambda message, percent: None)
        target = Path(self.target)
        target.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_partials(target)
        if os.path.lexists(target):
            raise WanError(f"{target} already exists.", "Move it away or choose another output folder.")
        free = _free_bytes(target)
        if self.bytes_needed > free:
            raise WanError(_no_space(self.bytes_needed, free, target), "Free some space or choose another output folder.")
        partial = target.parent / f".{target.name}.partial-{os.getpid()}"
        shutil.rmtree(partial, ignore_errors=True)
        try:
            partial.mkdir()
            _Writer(self, partial, report).run()
            _fsync_tree(partial)
            _pause_if_asked("finish")
            if os.path.lexists(target):
                raise WanError(f"{target} appeared while converting.", "Move it away and run the conversion again.")
            os.rename(partial, target)
            fsync_dir(target.parent)
        except BaseException as exc:
            shutil.rmtree(partial, ignore_errors=True)
            if isinstance(exc, (WanError, KeyboardInterrupt, SystemExit)):
                raise
            raise explain(exc) from exc
        report(f"Converted into {target}", 100.0)
        return target


# --------------------------------------------------------------------------- planning

def plan_conversion(report: ModelReport, target: str | os.PathLike[str] | None = None) -> ConversionPlan:
    """Plan converting an original Wan-AI model folder (Wan2.2 A14B with ``high_noise_model/``
    and ``low_noise_model/``, TI2V-5B, Wan2.1 T2V/VACE) into a diffusers folder.

    ``target`` defaults to ``<source>-diffusers`` beside the source. Anything that stops the
    conversion (a diffusers folder, a part missing, an unsupported model, too little disk)
    is a sentence in ``refusal``; the plan is still returned so that it can be shown.
    """
    source = Path(report.path).absolute()
    out = Path(target) if target is not None else source.with_name(f"{source.name}-diffusers")
    out = out.absolute()

    def refuse(reason: str) -> ConversionPlan:
        return ConversionPlan(str(source), str(out), (), 0, _free_bytes(out), False, reason)

    if report.is_collection:
        return refuse("This folder holds several models; point at the one to convert.")
    if report.layout is Layout.DIFFUSERS:
        return refuse("This model is already in the diffusers layout; there is nothing to convert "
                      "(`python -m core fix PATH` repairs it in place).")
    if report.layout is Layout.SINGLE_FILE:
        return refuse("A single transformer file is only one part of a model: a diffusers folder also needs the "
                      "VAE, the text encoder and the tokenizer. Name them: `python -m core fix --assemble "
                      f"--transformer {source} --vae FILE --text-encoder FILE --tokenizer DIR --out DIR`.")
    if report.layout is not Layout.WAN_ORIGINAL or not report.is_wan:
        return refuse("This is not an original-layout Wan model, so there is nothing this tool can convert.")
    # Parts that are missing, and .pth files (judged by the detector from name and size alone), are
    # checked below by reading them; the rest stops the conversion.
    checked_here = ("component_missing", "config_missing", "text_dim_mismatch")
    blocking = [f for f in report.errors if f.code not in checked_here
                and not (f.code == "file_truncated" and (f.path or "").endswith(".pth"))]
    if blocking:
        return refuse(f"{blocking[0].message} {blocking[0].remedy}".strip())
    try:
        parts, image_branch = _original_parts(source)
        problem = _unsupported(report.task, image_branch)
        if problem:
            raise _Refusal(problem)
        tokenizer = _tokenizer_folder(source / TOKENIZER_DIR, f"{TOKENIZER_DIR}/ in the model folder")
    except _Refusal as exc:
        return refuse(str(exc))
    defaults = _defaults(report.wan_version, report.task, len([p for p in parts if p.kind == "dit"]),
                         report.registry_id)
    pipeline = _Pipeline(*defaults, tokenizer=str(tokenizer))
    return _finish_plan(str(source), out, parts, pipeline, inside=source)


def plan_assembly(*, transformer: str | os.PathLike[str], vae: str | os.PathLike[str],
                  text_encoder: str | os.PathLike[str], out: str | os.PathLike[str],
                  transformer_2: str | os.PathLike[str] | None = None,
                  tokenizer: str | os.PathLike[str] | None = None) -> ConversionPlan:
    """Plan assembling ComfyUI-style single files into one diffusers folder ``out``.

    ``transformer`` (the high-noise expert for Wan2.2 A14B) and ``transformer_2`` (low noise)
    are DiT files with original names, with or without ``model.diffusion_model.``, fp8
    "scaled" ones included (they become bf16); ``vae`` is a Wan2.1 or Wan2.2 VAE
    (``.safetensors`` or the original ``.pth``); ``text_encoder`` is umT5-XXL in
    transformers' naming (ComfyUI's ``umt5_xxl_*``) or Wan's own ``.pth``; ``tokenizer`` is
    the ``google/umt5-xxl`` folder (looked for beside the text encoder when not given).
    """
    target = Path(out).absolute()
    named = {"transformer": transformer, "transformer_2": transformer_2, "vae": vae, "text_encoder": text_encoder}
    source = ", ".join(str(Path(p)) for p in named.values() if p is not None)

    def refuse(reason: str) -> ConversionPlan:
        return ConversionPlan(source, str(target), (), 0, _free_bytes(target), False, reason)

    try:
        parts: list[_Part] = []
        facts = []
        for role, path in named.items():
            if path is None:
                continue
            part, dit = _single_file_part(role, Path(path))
            parts.append(part)
            if dit is not None:
                facts.append(dit)
        main = facts[0]
        if len(facts) == 2 and facts[0].shape_key != facts[1].shape_key:
            raise _Refusal("The two transformer files differ in shape; they come from different models.")
        z = _vae_z(next(p for p in parts if p.role == "vae"))
        if z and main.out_channels and z != main.out_channels:
            need = "Wan2.2 VAE (z_dim 48)" if main.out_channels == 48 else "Wan2.1 VAE (z_dim 16)"
            raise _Refusal(f"The transformer works in {main.out_channels} latent channels and needs the {need}, "
                           f"but the VAE file has z_dim {z}.")
        problem = _unsupported(main.task, "image_branch" in main.features)
        if problem:
            raise _Refusal(problem)
        experts = len(facts)
        version = "2.2" if experts == 2 or main.task in ("ti2v", "i2v") else "2.1"
        tokenizer_dir = _tokenizer_folder(*_find_tokenizer(tokenizer, Path(text_encoder)))
    except _Refusal as exc:
        return refuse(str(exc))
    pipeline = _Pipeline(*_defaults(version, main.task, experts, None), tokenizer=str(tokenizer_dir))
    return _finish_plan(source, target, parts, pipeline, inside=None)


class _Refusal(Exception):
    """A plain sentence saying why a plan cannot be carried out."""


def _unsupported(task: str | None, image_branch: bool) -> str | None:
    if image_branch:
        return ("This Wan2.1 image-to-video model needs its CLIP image encoder, which this tool does not convert. "
                "Download the -Diffusers version of the model instead.")
    if task not in SUPPORTED_TASKS:
        return (f"Converting {(task or 'this kind of').upper()} models is not supported; "
                "download the -Diffusers version of the model instead.")
    return None


def _finish_plan(source: str, target: Path, parts: list[_Part], pipeline: _Pipeline,
                 inside: Path | None) -> ConversionPlan:
    steps = [_step(p) for p in parts]
    tokenizer = Path(pipeline.tokenizer)
    tok_bytes = sum(p.stat().st_size for p in _tokenizer_files(tokenizer))
    shown = tokenizer.relative_to(inside) if inside is not None and _is_within(tokenizer, inside) else tokenizer
    steps.append(f"Copy the tokenizer {shown}/ to tokenizer/ ({TOKENIZER_CLASS}).")
    extra = (f", boundary_ratio {pipeline.boundary_ratio}" if pipeline.boundary_ratio is not None else "") + \
            (", expand_timesteps true" if pipeline.expand_timesteps else "")
    steps.append(f"Write scheduler/ (UniPCMultistepScheduler, flow_shift {pipeline.shift:g}) and model_index.json "
                 f"({pipeline.pipeline_class}{extra}).")
    steps.append(f"Write everything into .{target.name}.partial-PID beside the target and rename it to "
                 f"{target.name} when complete; the source files are only read.")
    needed = sum(p.bytes_out for p in parts) + tok_bytes + 4 * 2**20   # headers, configs
    free = _free_bytes(target) + _stale_partial_bytes(target)
    refusal = None
    if inside is not None and _is_within(target, inside):
        refusal = "The output folder must be outside the model folder, which is never modified."
    elif os.path.lexists(target):
        refusal = f"{target} already exists. Move it away or choose another output folder (--out)."
    elif needed > free:
        refusal = f"{_no_space(needed, free, target)} Free some space or choose another output folder (--out)."
    return ConversionPlan(source, str(target), tuple(steps), needed, free, needed <= free, refusal,
                          tuple(parts), pipeline)


def _step(part: _Part) -> str:
    what = {"transformer": "transformer/ (WanTransformer3DModel)", "transformer_2": "transformer_2/ (WanTransformer3DModel)",
            "vae": "vae/ (AutoencoderKLWan)", "text_encoder": "text_encoder/ (UMT5EncoderModel)"}[part.role]
    if part.role.startswith("transformer") and part.config and part.config.get("_class_name") == "VaceWanModel":
        what = what.replace("WanTransformer3DModel", "WanVACETransformer3DModel")
    expert = {"transformer": ", the high-noise expert", "transformer_2": ", the low-noise expert"}
    note = expert.get(part.role, "") if any(x in part.label for x in ("high_noise", "low_noise")) else ""
    return f"Convert {part.label} to {what}{note}."


def _original_parts(root: Path) -> tuple[list[_Part], bool]:
    """The parts of an original folder, and whether its DiT has Wan2.1's CLIP image branch."""
    parts: list[_Part] = []
    image_branch = False
    folders = [d for d in ("high_noise_model", "low_noise_model") if (root / d).is_dir()]
    if len(folders) == 1:
        other = ({"high_noise_model", "low_noise_model"} - set(folders)).pop()
        raise _Refusal(f"{other}/ is missing: a Wan2.2 A14B model needs both experts. Download it from the model's page.")
    for role, folder in zip(("transformer", "transformer_2"), folders or [""]):
        where = root / folder if folder else root
        files = _dit_files(where)
        if not files:
            raise _Refusal(f"No transformer weights (.safetensors) found in {folder or 'the model folder'}.")
        config = _read_json(where / "config.json")
        if config is None:
            raise _Refusal(f"{folder + '/' if folder else ''}config.json is missing or unreadable; download it again.")
        try:
            headers = [read_header(f) for f in files]
        except (HeaderError, OSError) as exc:
            raise _Refusal(f"A transformer shard in {folder or 'the model folder'} cannot be read ({exc}); "
                           "download it again.") from None
        image_branch = image_branch or any("img_emb.proj.1.weight" in h.tensors for h in headers)
        out = sum(map(_tensor_bytes_out, headers))
        label = f"{folder + '/' if folder else 'the transformer'} ({len(files)} shard{'s' if len(files) != 1 else ''}, {_gb(out)})"
        parts.append(_Part(role, "dit", tuple(map(str, files)), label, out, config))
    vaes = [root / n for n in VAE_PTHS if (root / n).is_file()]
    if not vaes:
        raise _Refusal("The VAE (Wan2.1_VAE.pth or Wan2.2_VAE.pth) is missing; download it from the model's page.")
    if len(vaes) > 1:  # both present: the transformer's latent width decides
        heads = [read_header(f).tensors.get("head.head.weight") for f in map(Path, parts[0].files)]
        rows = next((h.shape[0] for h in heads if h is not None), 64)
        vaes = [v for v in vaes if ("2.2" in v.name) == (rows == 48 * 4)]
    vae = vaes[0]
    parts.append(_Part("vae", "vae", (str(vae),), f"{vae.name} ({_gb(vae.stat().st_size)})", vae.stat().st_size))
    t5 = root / T5_PTH
    if not t5.is_file():
        raise _Refusal(f"The text encoder {T5_PTH} is missing; download it from the model's page.")
    parts.append(_Part("text_encoder", "t5", (str(t5),), f"{T5_PTH} ({_gb(t5.stat().st_size)})", t5.stat().st_size))
    return parts, image_branch


def _dit_files(folder: Path) -> list[Path]:
    index = _read_json(folder / "diffusion_pytorch_model.safetensors.index.json")
    if isinstance(index, dict) and isinstance(index.get("weight_map"), dict):
        names = sorted(set(map(str, index["weight_map"].values())))
        missing = [n for n in names if not (folder / n).is_file()]
        if missing:
            raise _Refusal(f"The shard {missing[0]} named in {folder.name}/'s index is missing; download it again.")
        return [folder / n for n in names]
    files = sorted(folder.glob("diffusion_pytorch_model*.safetensors"))
    return files or sorted(folder.glob("*.safetensors"))


def _single_file_part(role: str, path: Path) -> tuple[_Part, Any]:
    """One named file: check that it is what its role needs; the DiT facts for a transformer."""
    from core.dit import dit_facts_from_tensors
    flag = "--" + role.replace("_", "-")
    if not path.is_file():
        raise _Refusal(f"The file given as {flag} does not exist: {path}.")
    size = path.stat().st_size
    if path.suffix == ".pth" and role in ("vae", "text_encoder"):
        kind = {"vae": "vae", "text_encoder": "t5"}[role]
        return _Part(role, kind, (str(path),), f"{path.name} ({_gb(size)})", size), None
    if path.suffix != ".safetensors":
        raise _Refusal(f"The file given as {flag} is not a .safetensors file: {path.name}.")
    try:
        header = read_header(path)
    except (HeaderError, OSError) as exc:
        raise _Refusal(f"The file given as {flag} cannot be read ({path.name} {exc}).") from None
    names = header.tensors
    label = f"{path.name} ({_gb(size)})"
    if role.startswith("transformer"):
        facts = dit_facts_from_tensors(names)
        if facts is None or not facts.is_wan:
            raise _Refusal(f"The file given as {flag} is not a Wan transformer: {path.name}.")
        if any(n.endswith(DIT_DIFFUSERS_MARK) for n in names):
            raise _Refusal(f"{path.name} is already in diffusers' naming; put it in a transformer/ folder instead.")
        return _Part(role, "dit", (str(path),), label, _tensor_bytes_out(header)), facts
    if role == "vae":
        if not any(n.endswith(WAN_VAE_MARK) for n in names):
            raise _Refusal(f"The file given as --vae is not a Wan VAE: {path.name}.")
        return _Part(role, "vae", (str(path),), label, _tensor_bytes_out(header)), None
    if not any(n.endswith((WAN_T5_MARK, UMT5_MARK)) for n in names):
        raise _Refusal(f"The file given as --text-encoder is not the umT5 text encoder: {path.name}.")
    return _Part(role, "t5", (str(path),), label, _tensor_bytes_out(header)), None


def _vae_z(part: _Part) -> int | None:
    """The latent width of a VAE file: from a .pth's name, or from the header of a .safetensors."""
    path = Path(part.files[0])
    if path.suffix == ".pth":
        return 48 if "2.2" in path.name else 16 if "2.1" in path.name else None
    specs = {n: (t.dtype, t.shape) for n, t in read_header(path).tensors.items()}
    conv2 = specs.get(_strip_prefix(specs, WAN_VAE_MARK) + "conv2.weight")
    return conv2[1][0] if conv2 else None


def _find_tokenizer(given: str | os.PathLike[str] | None, text_encoder: Path) -> tuple[Path, str]:
    if given is not None:
        return Path(given), "the folder given as --tokenizer"
    for near in (text_encoder.parent / TOKENIZER_DIR, text_encoder.parent / "tokenizer"):
        if near.is_dir():
            return near, f"{near}"
    raise _Refusal("No tokenizer was named: give the google/umt5-xxl tokenizer folder (with tokenizer.json or "
                   "spiece.model) with --tokenizer DIR.")


def _tokenizer_folder(folder: Path, what: str) -> Path:
    if not folder.is_dir():
        raise _Refusal(f"The tokenizer folder ({what}) is missing; download google/umt5-xxl/ from the model's page "
                       "or name it with --tokenizer DIR.")
    if not any((folder / n).is_file() for n in TOKENIZER_NEEDS_ONE_OF):
        raise _Refusal(f"The tokenizer folder ({what}) has neither tokenizer.json nor spiece.model; download it again.")
    return folder.absolute()


def _tokenizer_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.stat().st_size <= TOKENIZER_MAX_FILE)


def _defaults(version: str | None, task: str | None, experts: int,
              registry_id: str | None) -> tuple[str, float | None, bool, float]:
    """(pipeline class, boundary_ratio, expand_timesteps, shift) from the registry's entry."""
    pipeline = signals.TASK_PIPELINE.get(task or "") or "WanPipeline"
    entry = None
    try:
        from core.registry import get_compatibility_registry
        registry = get_compatibility_registry()
        entry = registry.get(registry_id) if registry_id else None
        if entry is None:
            entry = next((e for e in registry if e.wan_version == version and e.task == task
                          and e.experts == experts), None)
    except Exception:  # noqa: BLE001 - a broken user registry falls back to the published defaults
        entry = None
    if entry is not None:
        boundary = entry.boundary_ratio if experts == 2 else None
        return pipeline, boundary, bool(entry.expand_timesteps), float(entry.shift)
    boundary = _FALLBACK_BOUNDARY.get(task or "") if experts == 2 else None
    return pipeline, boundary, task == "ti2v", 12.0 if (experts == 2 and task == "t2v") else 5.0


# --------------------------------------------------------------------------- reading tensors

_ST_TO_TORCH = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
                "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool",
                "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2"}
_FP8 = ("F8_E4M3", "F8_E5M2")


def _torch_dtype(name: str) -> "torch.dtype":
    import torch
    if name not in _ST_TO_TORCH:
        raise WanError(f"Tensors of type {name} cannot be converted.", "Use a float16, bfloat16 or float32 file.")
    return getattr(torch, _ST_TO_TORCH[name])


def _st_dtype(dtype: "torch.dtype") -> str:
    name = str(dtype).removeprefix("torch.")
    for st, tn in _ST_TO_TORCH.items():
        if tn == name:
            return st
    raise WanError(f"Tensors of type {name} cannot be converted.", "Use a float16, bfloat16 or float32 file.")


class _SafetensorsSource:
    """Tensors of one or more .safetensors files, each read on its own by offset (no mmap)."""

    def __init__(self, files: tuple[str, ...]) -> None:
        self._handles: list[Any] = []
        self._where: dict[str, tuple[Any, int, int, str, tuple[int, ...]]] = {}
        self.specs: dict[str, tuple[str, tuple[int, ...]]] = {}
        try:
            self._open(files)
        except BaseException:
            self.close()
            raise

    def _open(self, files: tuple[str, ...]) -> None:
        for path in files:
            try:
                header = read_header(path)
            except HeaderError as exc:
                raise WanError(f"{Path(path).name} is not a readable safetensors file: {exc}.",
                               "Download it again.") from None
            if os.path.getsize(path) < header.expected_file_size:
                raise WanError(f"{Path(path).name} is shorter than its header says (an interrupted download).",
                               "Delete it and download it again.")
            fh = open(path, "rb", buffering=0)  # noqa: SIM115 - closed in close()
            self._handles.append(fh)
            base = 8 + header.header_size
            for name, info in header.tensors.items():
                self._where[name] = (fh, base + info.start, info.end - info.start, info.dtype, info.shape)
                self.specs[name] = (info.dtype, info.shape)

    def read(self, name: str) -> "torch.Tensor":
        import torch
        fh, offset, n, dtype, shape = self._where[name]
        buf = torch.empty(n, dtype=torch.uint8)
        view = memoryview(buf.numpy())
        done = 0
        while done < n:
            fh.seek(offset + done)
            got = fh.readinto(view[done:])
            if not got:
                raise WanError(f"{Path(fh.name).name} ended early while reading {name}.", "Download it again.")
            done += got
        return buf.view(_torch_dtype(dtype)).reshape(shape)

    def close(self) -> None:
        for fh in self._handles:
            fh.close()


class _PickleSource:
    """The tensors of a ``torch.save`` file, loaded only with ``weights_only=True, mmap=True``.

    The file is re-opened after every ``PTH_WINDOW_BYTES`` read, so that the pages already
    copied out are unmapped and do not pile up in this process's memory.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._state: dict[str, Any] | None = _load_pth(path)
        self.specs = {k: (_st_dtype(t.dtype), tuple(t.shape)) for k, t in self._state.items()}
        self._read = 0

    def read(self, name: str) -> "torch.Tensor":
        if self._state is None or self._read > PTH_WINDOW_BYTES:
            self._state = None   # the last reference to the old mapping: it is unmapped here
            self._state = _load_pth(self.path)
            self._read = 0
        tensor = self._state[name]
        self._read += tensor.numel() * tensor.element_size()
        return tensor

    def close(self) -> None:
        self._state = None


def _load_pth(path: str) -> dict[str, Any]:
    """A state dict from a .pth with ``torch.load(weights_only=True, mmap=True)``; never more."""
    import pickle

    import torch
    name = Path(path).name
    with open(path, "rb") as fh:
        if fh.read(4) != b"PK\x03\x04":
            raise WanError(f"{name} is not a PyTorch checkpoint archive (torch.save zip), so it was not opened.",
                           "Download it again from the model's page.")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[-1][:200] if str(exc).strip() else type(exc).__name__
        raise WanError(f"{name} holds more than tensors: loading it would run code stored in it, so it was not "
                       f"loaded ({first}).",
                       "Delete it and download the official file again; do not load it with other tools either.") from None
    except (RuntimeError, OSError, EOFError, ValueError) as exc:
        raise WanError(f"{name} cannot be read ({str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}); "
                       "it is damaged or incompletely downloaded.", "Delete it and download it again.") from None
    if isinstance(obj, dict) and len(obj) == 1 and isinstance(next(iter(obj.values())), dict):
        obj = next(iter(obj.values()))   # {"state_dict": {...}} or {"model": {...}}
    if not isinstance(obj, dict) or not obj or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                       for k, v in obj.items()):
        raise WanError(f"{name} is not a state dict of named tensors.", "Download it again from the model's page.")
    return obj


def _open(part: _Part) -> _SafetensorsSource | _PickleSource:
    if part.files[0].endswith(".pth"):
        return _PickleSource(part.files[0])
    return _SafetensorsSource(part.files)


# --------------------------------------------------------------------------- mapping names

@dataclass(frozen=True)
class _Out:
    """One output tensor: its name, dtype and shape, and how to make it from the source."""

    name: str
    src: str
    dtype: str
    shape: tuple[int, ...]
    view: tuple[tuple[int, ...], tuple[int, ...], int] | None = None   # as_strided of the source tensor
    scale: str | None = None                                          # a ComfyUI fp8 scale to multiply by

    @property
    def nbytes(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return int(n * DTYPE_BYTES[self.dtype])


@dataclass(frozen=True)
class _Component:
    folder: str
    library: str
    class_name: str
    config: dict[str, Any]
    outputs: tuple[_Out, ...]


def _strip_prefix(specs: Mapping[str, tuple[str, tuple[int, ...]]], mark: str) -> str:
    for prefix in ("", *COMFY_PREFIXES, "first_stage_model.", "vae."):
        if prefix + mark in specs:
            return prefix
    return ""


def _fp8_plan(specs: Mapping[str, tuple[str, tuple[int, ...]]], prefix: str
              ) -> tuple[dict[str, tuple[str, tuple[int, ...]]], dict[str, str]]:
    """Names without ``prefix`` -> (dtype, shape), leaving out ComfyUI's fp8 scales; and
    plain weight name -> the source name of its ``scale_weight``."""
    plain: dict[str, tuple[str, tuple[int, ...]]] = {}
    scales: dict[str, str] = {}
    for name, spec in specs.items():
        if not name.startswith(prefix) or name.endswith(IGNORED_TENSORS):
            continue
        short = name[len(prefix):]
        if short.endswith(".scale_weight"):
            scales[short[: -len(".scale_weight")] + ".weight"] = name
        else:
            plain[short] = spec
    return plain, scales


def _out_dtype(dtype: str) -> str:
    return "BF16" if dtype in _FP8 else dtype


def _traced(converter: Callable[[dict[str, Any]], dict[str, Any]],
            plain: Mapping[str, tuple[str, tuple[int, ...]]]) -> dict[str, tuple[str, Any]]:
    """Run a diffusers converter on meta tensors: new name -> (old name, as_strided view or None).

    Renamed tensors come back as the very same objects; split or reshaped ones as views of
    them, whose shape, stride and offset are replayed on the real tensor.
    """
    import torch
    meta = {k: torch.empty(shape, dtype=_torch_dtype(dtype), device="meta") for k, (dtype, shape) in plain.items()}
    by_id = {id(t): k for k, t in meta.items()}
    converted = converter(dict(meta))
    traced: dict[str, tuple[str, Any]] = {}
    for new, t in converted.items():
        if id(t) in by_id:
            traced[new] = (by_id[id(t)], None)
        elif getattr(t, "_base", None) is not None and id(t._base) in by_id:
            traced[new] = (by_id[id(t._base)], (tuple(t.shape), tuple(t.stride()), t.storage_offset()))
        else:
            raise WanError(f"diffusers' converter computes {new} in a way that cannot be streamed.",
                           "Report this model; download its -Diffusers version meanwhile.")
    return traced


def _renamed(table: RenameTable, plain: Mapping[str, tuple[str, tuple[int, ...]]], what: str) -> dict[str, tuple[str, Any]]:
    out: dict[str, tuple[str, Any]] = {}
    unknown = []
    for name in plain:
        new = rename(name, table)
        if new is None:
            unknown.append(name)
        elif new in out:   # e.g. both shared.weight and encoder.embed_tokens.weight: the same tied tensor
            continue
        else:
            out[new] = (name, None)
    if unknown:
        raise WanError(f"The {what} has tensors this tool does not know: {', '.join(unknown[:3])}"
                       f"{' ...' if len(unknown) > 3 else ''}.", "Check that the file is the right part of a Wan model.")
    return out


def _component(part: _Part, specs: Mapping[str, tuple[str, tuple[int, ...]]]) -> tuple[_Component, Any]:
    """Names, shapes and config of one converted component, checked against its class (built on
    the meta device, and returned)."""
    if part.kind == "dit":
        from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers
        prefix = _strip_prefix(specs, DIT_MARK)
        plain, scales = _fp8_plan(specs, prefix)
        try:
            config = transformer_config({k: s for k, (_, s) in plain.items()}, part.config)
        except (KeyError, ValueError) as exc:
            raise WanError(f"{part.label}: {exc if isinstance(exc, ValueError) else f'{exc} is missing'}",
                           "Check that the file is a whole Wan transformer.") from None
        mapping = _traced(convert_wan_transformer_to_diffusers, plain)
        vace = "vace_layers" in config
        library, cls = _DIFFUSERS, "WanVACETransformer3DModel" if vace else "WanTransformer3DModel"
    elif part.kind == "vae":
        prefix = _strip_prefix(specs, WAN_VAE_MARK)
        plain, scales = _fp8_plan(specs, prefix)
        shapes = {k: s for k, (_, s) in plain.items()}
        if WAN22_VAE_MARK in plain:
            config, mapping = vae22_config(shapes), _renamed(VAE22_TO_DIFFUSERS, plain, "Wan2.2 VAE")
        else:
            from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers
            config, mapping = vae21_config(shapes), _traced(convert_wan_vae_to_diffusers, plain)
        library, cls = _DIFFUSERS, "AutoencoderKLWan"
    else:
        prefix = ""
        plain, scales = _fp8_plan(specs, prefix)
        original = WAN_T5_MARK in plain
        shapes = {k: s for k, (_, s) in plain.items()}
        config = umt5_config(shapes, original)
        mapping = _renamed(T5_TO_UMT5 if original else UMT5_IDENTITY, plain, "text encoder")
        library, cls = _TRANSFORMERS, "UMT5EncoderModel"
    outputs = []
    for new, (old, view) in mapping.items():
        dtype, shape = plain[old]
        outputs.append(_Out(new, prefix + old, _out_dtype(dtype), tuple(view[0]) if view else shape,
                            view, scales.get(old)))
    comp = _Component(part.role, library, cls, config, tuple(outputs))
    return comp, _check_against_class(comp, part.label)


def _empty_model(comp: _Component) -> Any:
    """The component's class built on the meta device: names, shapes and config, no memory."""
    import torch
    if comp.library == _TRANSFORMERS:
        import transformers
        config = transformers.UMT5Config(**comp.config)
        with torch.device("meta"):
            return getattr(transformers, comp.class_name)(config)
    import diffusers
    with torch.device("meta"):
        return getattr(diffusers, comp.class_name)(**comp.config)


def _check_against_class(comp: _Component, label: str) -> Any:
    model = _empty_model(comp)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    tied = set(getattr(model, "_tied_weights_keys", None) or ())
    mine = {o.name: o.shape for o in comp.outputs}
    missing = [k for k in expected if k not in mine and k not in tied]
    extra = [k for k in mine if k not in expected]
    wrong = [k for k in mine if k in expected and mine[k] != expected[k]]
    if missing or extra or wrong:
        detail = (f"{len(missing)} missing (e.g. {missing[0]})" if missing else "") + \
                 (f"{'; ' if missing else ''}{len(extra)} unexpected (e.g. {extra[0]})" if extra else "") + \
                 (f"{'; ' if missing or extra else ''}{len(wrong)} of the wrong shape (e.g. {wrong[0]} "
                  f"{mine[wrong[0]]} instead of {expected[wrong[0]]})" if wrong else "")
        raise WanError(f"{label} does not convert into a complete {comp.class_name}: {detail}.",
                       "The file is damaged, incomplete or not the part it was named as; download it again.")
    return model


# --------------------------------------------------------------------------- writing

class _Writer:
    """Carries out a plan into the partial folder: weights, configs, tokenizer, scheduler, index."""

    def __init__(self, plan: ConversionPlan, folder: Path, report: ProgressCallback) -> None:
        self.plan = plan
        self.folder = folder
        self.report = report
        self.total = max(1, sum(p.bytes_out for p in plan.parts))
        self.done = 0
        self.tensors = 0
        pause = os.environ.get(PAUSE_ENV, "").strip()
        self.pause_after = int(pause) if pause.isdigit() else None

    def run(self) -> None:
        planned = []
        for part in self.plan.parts:          # every name and shape checked before any weight is written
            source = _open(part)
            try:
                planned.append(_component(part, source.specs))
            finally:
                source.close()
        components = [comp for comp, _ in planned]
        self._check_pair(components)
        for part, (comp, model) in zip(self.plan.parts, planned):
            source = _open(part)
            try:
                self._write_component(comp, model, source, part)
            finally:
                source.close()
        self._write_rest(components)

    def _check_pair(self, comps: list[_Component]) -> None:
        dits = [c for c in comps if c.folder.startswith("transformer")]
        te = next((c for c in comps if c.folder == "text_encoder"), None)
        if dits and te and dits[0].config["text_dim"] != te.config["d_model"]:
            raise WanError(f"The text encoder gives {te.config['d_model']}-wide embeddings but the transformer expects "
                           f"{dits[0].config['text_dim']}.", "Use the umT5-XXL text encoder that came with the model.")

    def _write_component(self, comp: _Component, model: Any, source: Any, part: _Part) -> None:
        folder = self.folder / comp.folder
        folder.mkdir()
        if comp.library == _DIFFUSERS:
            model.save_config(folder)
        else:
            model.config.architectures = [comp.class_name]
            model.config.dtype = _ST_TO_TORCH.get(comp.outputs[0].dtype, "float32")
            model.config.save_pretrained(folder)
        stem = _STEM[comp.library]
        shards = _split(comp.outputs, MAX_SHARD_BYTES)
        names = ([f"{stem}.safetensors"] if len(shards) == 1 else
                 [f"{stem}-{i:05d}-of-{len(shards):05d}.safetensors" for i in range(1, len(shards) + 1)])
        weight_map: dict[str, str] = {}
        for file_name, shard in zip(names, shards):
            self._write_shard(folder / file_name, shard, source, part)
            weight_map.update({o.name: file_name for o in shard})
        if len(shards) > 1:
            index = {"metadata": {"total_size": sum(o.nbytes for o in comp.outputs)}, "weight_map": weight_map}
            _write_json(folder / f"{stem}.safetensors.index.json", index)

    def _write_shard(self, path: Path, shard: list[_Out], source: Any, part: _Part) -> None:
        header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
        offset = 0
        for o in shard:
            header[o.name] = {"dtype": o.dtype, "shape": list(o.shape), "data_offsets": [offset, offset + o.nbytes]}
            offset += o.nbytes
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)
        with open(path, "wb") as fh:
            fh.write(len(raw).to_bytes(8, "little"))
            fh.write(raw)
            for o in shard:
                tensor = _materialise(o, source)
                if tensor.numel():
                    fh.write(memoryview(tensor.reshape(-1).view(_torch_dtype("U8")).numpy()))
                del tensor
                self._tick(o, part)
            fh.flush()
            os.fsync(fh.fileno())

    def _tick(self, out: _Out, part: _Part) -> None:
        self.done += out.nbytes
        self.tensors += 1
        self.report(f"{part.role}: {out.name}", min(99.0, 100.0 * self.done / self.total))
        if self.pause_after is not None and self.tensors == self.pause_after:
            _pause_if_asked(str(self.tensors))

    def _write_rest(self, comps: list[_Component]) -> None:
        pipe = self.plan.pipeline
        assert pipe is not None
        self.report("Copying the tokenizer and writing the scheduler and model_index.json", 99.0)
        tok = self.folder / "tokenizer"
        tok.mkdir()
        for f in _tokenizer_files(Path(pipe.tokenizer)):
            shutil.copyfile(f, tok / f.name)
        config = _read_json(tok / "tokenizer_config.json")
        config = config if isinstance(config, dict) else {"eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}
        config["tokenizer_class"] = TOKENIZER_CLASS
        _write_json(tok / "tokenizer_config.json", config)
        from diffusers import UniPCMultistepScheduler
        UniPCMultistepScheduler(**scheduler_config(pipe.shift)).save_config(self.folder / "scheduler")
        _write_json(self.folder / "model_index.json", _model_index(pipe, comps))


def _model_index(pipe: _Pipeline, comps: list[_Component]) -> dict[str, Any]:
    import diffusers
    by_folder = {c.folder: [c.library, c.class_name] for c in comps}
    index: dict[str, Any] = {"_class_name": pipe.pipeline_class, "_diffusers_version": diffusers.__version__}
    if pipe.pipeline_class == "WanImageToVideoPipeline":
        index.update(image_encoder=[None, None], image_processor=[None, None])
    index.update(
        boundary_ratio=pipe.boundary_ratio,
        scheduler=[_DIFFUSERS, "UniPCMultistepScheduler"],
        text_encoder=by_folder["text_encoder"],
        tokenizer=[_TRANSFORMERS, TOKENIZER_CLASS],
        transformer=by_folder["transformer"],
        transformer_2=by_folder.get("transformer_2", [None, None]),
        vae=by_folder["vae"],
    )
    if pipe.pipeline_class != "WanVACEPipeline":
        index["expand_timesteps"] = pipe.expand_timesteps
    return dict(sorted(index.items()))


def _materialise(out: _Out, source: Any) -> "torch.Tensor":
    """The output tensor: read, viewed, dequantised or cast as planned; contiguous."""
    import torch
    tensor = source.read(out.src)
    if out.view is not None:
        tensor = tensor.as_strided(*out.view)
    target = _torch_dtype(out.dtype)
    if out.scale is not None:
        scale = source.read(out.scale).to(torch.float32)
        tensor = (tensor.to(torch.float32) * scale).to(target)
    elif tensor.dtype != target:
        tensor = tensor.to(target)
    tensor = tensor.contiguous()
    if tuple(tensor.shape) != out.shape:
        raise WanError(f"{out.src} has shape {tuple(tensor.shape)}, not {out.shape} as planned.", "Download the file again.")
    return tensor


def _split(outputs: tuple[_Out, ...], limit: int) -> list[list[_Out]]:
    """Shards in source order; within a shard, wider dtypes first so that every tensor is aligned."""
    shards: list[list[_Out]] = [[]]
    size = 0
    for o in outputs:
        if shards[-1] and size + o.nbytes > limit:
            shards.append([])
            size = 0
        shards[-1].append(o)
        size += o.nbytes
    return [sorted(s, key=lambda o: -DTYPE_BYTES[o.dtype]) for s in shards]


# --------------------------------------------------------------------------- small helpers

def _pause_if_asked(point: str) -> None:
    if os.environ.get(PAUSE_ENV, "").strip() != point:
        return
    print(f"WAN_COMPAT_CONVERT_PAUSED {point}", file=sys.stderr, flush=True)
    time.sleep(float(os.environ.get(PAUSE_SECONDS_ENV, "600")))


def _tensor_bytes_out(header: Any) -> int:
    return sum(int((t.end - t.start) * (2 if t.dtype in _FP8 else 1)) for n, t in header.tensors.items()
               if not n.endswith((".scale_weight", *IGNORED_TENSORS)))


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _gb(n: float) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


def _no_space(needed: int, free: int, target: Path) -> str:
    return (f"The converted model needs {_gb(needed)} ({needed:,} bytes) but only {_gb(free)} ({free:,} bytes) "
            f"is free on the disk of {target.parent}.")


def _existing_ancestor(path: Path) -> Path:
    for p in (path, *path.parents):
        if p.exists():
            return p
    return Path(os.sep)


def _free_bytes(target: Path) -> int:
    try:
        return shutil.disk_usage(_existing_ancestor(Path(target).parent)).free
    except OSError:
        return 0


def _is_within(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def _stale_partials(target: Path) -> Iterator[Path]:
    """``.NAME.partial-PID`` folders beside ``target`` whose process no longer runs."""
    import psutil
    parent = Path(target).parent
    if not parent.is_dir():
        return
    for p in parent.glob(f".{Path(target).name}.partial-*"):
        pid = p.name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not psutil.pid_exists(int(pid)):
            yield p


def _stale_partial_bytes(target: Path) -> int:
    return sum(f.stat().st_size for p in _stale_partials(target) for f in p.rglob("*") if f.is_file())


def _remove_stale_partials(target: Path) -> None:
    for p in list(_stale_partials(target)):
        shutil.rmtree(p, ignore_errors=True)


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())
        elif path.is_dir():
            fsync_dir(path)
    fsync_dir(folder)
