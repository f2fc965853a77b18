"""Convert original Wan-AI checkpoints, or single files the user names, into a new diffusers folder.

The original is only ever read. The plan is computed first (cheap: JSON and safetensors
headers, no torch), shown, then carried out::

    from core.check.detect import inspect
    from core.fix.convert import plan_assembly, plan_conversion

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
  ``core.fix.convert.keys`` (diffusers has no converter for them).
- Tokenizer files copied from ``google/umt5-xxl/``; scheduler and ``model_index.json`` from
  the registry's defaults (shift, boundary_ratio, expand_timesteps).

Each step has its module:
- :mod:`core.fix.convert.read`: the sources, one tensor at a time (safetensors by offset; ``.pth``
  only with ``torch.load(weights_only=True, mmap=True)``): peak memory is about the largest
  tensor, not the model.
- :mod:`core.fix.convert.build`: each component's names, shapes and config, checked against its
  diffusers / transformers class on the ``meta`` device before any weight is written.
- :mod:`core.fix.convert.write`: the shards, configs, tokenizer, scheduler and ``model_index.json``,
  written into ``.NAME.partial-PID`` beside the target and renamed to NAME only when complete;
  free disk space checked first; the ``WAN_COMPAT_CONVERT_PAUSE_AFTER`` test hook.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from core.check import signals
from core.check.codes import Code
from core.check.journal_trust import unsafe_path
from core.check.report import Layout, ModelReport
from core.check.safetensors_header import HeaderError, read_header
from core.errors import WanError
from core.fix.convert.build import strip_prefix
from core.fix.convert.keys import (
    DIT_DIFFUSERS_MARK,
    IGNORED_TENSORS,
    TOKENIZER_CLASS,
    TOKENIZER_NEEDS_ONE_OF,
    UMT5_MARK,
    WAN_T5_MARK,
    WAN_VAE_MARK,
)

# Re-exported (F401): PTH_WINDOW_BYTES, MAX_SHARD_BYTES and the PAUSE_* test hook, as tests import them from here.
from core.fix.convert.linked import KEPT, MOVED, fp8_scales_problem, is_quantized_file, linked_part, placed
from core.fix.convert.linked import step as linked_step
from core.fix.convert.read import FP8_DTYPES, PTH_WINDOW_BYTES, Part, read_json, tokenizer_files  # noqa: F401
from core.fix.convert.write import (  # noqa: F401
    MAX_SHARD_BYTES,
    PAUSE_ENV,
    PAUSE_SECONDS_ENV,
    ProgressCallback,
    _free_bytes,
    _gb,
    _no_space,
    _Pipeline,
    _stale_partial_bytes,
    write_folder,
)
from core.progress import AnyCallback, Progress

__all__ = ["ConversionPlan", "plan_assembly", "plan_conversion", "ProgressCallback"]

T5_PTH = "models_t5_umt5-xxl-enc-bf16.pth"
VAE_PTHS = ("Wan2.1_VAE.pth", "Wan2.2_VAE.pth")
TOKENIZER_DIR = "google/umt5-xxl"
SUPPORTED_TASKS = ("t2v", "ti2v", "i2v", "vace")
_FALLBACK_BOUNDARY = {"t2v": 0.875, "i2v": 0.9, "vace": 0.875}


# --------------------------------------------------------------------------- the plan

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
    parts: tuple[Part, ...] = field(default=(), repr=False, compare=False)
    pipeline: _Pipeline | None = field(default=None, repr=False, compare=False)
    verb: str = "Convert"            # "Assemble" for single files put together (fix --assemble)

    @property
    def moves(self) -> bool:
        """Whether a kept file is moved into the folder (fix --assemble --move)."""
        return any(p.kind == MOVED for p in self.parts)

    def describe(self) -> list[str]:
        """The plan as sentences for a person, refusal last."""
        lines = ([f"Assemble a diffusers folder in {self.target} from:", f"{self.source}:"]
                 if self.verb == "Assemble" else
                 [f"{self.verb} {self.source}", f"into the new diffusers folder {self.target}:"])
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

    def execute(self, progress_callback: AnyCallback = None) -> Path:
        """Write the target folder and return it; raises WanError (a sentence and a remedy).

        ``progress_callback`` gets ProgressEvents of stage ``"convert"`` (per tensor/shard), or
        ``(message, percent)`` for a callback written that way.

        On any failure the partial folder is removed and the target is not created.
        """
        if self.refusal:
            raise WanError(self.refusal)
        assert self.pipeline is not None
        return write_folder(Path(self.target), self.parts, self.pipeline, self.bytes_needed,
                            Progress(progress_callback))

    def done(self, output: Path) -> list[str]:
        """What was done, for a person, once :meth:`execute` wrote ``output``: one line, plus one per kept file
        (moved, hard-linked or linked symbolically)."""
        verb = "Assembled" if self.verb == "Assemble" else "Converted"
        return [f"{verb} {self.source} into {output}"] + [placed(output, p) for p in self.parts if p.kind in KEPT]


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
    checked_here = (Code.COMPONENT_MISSING, Code.CONFIG_MISSING, Code.TEXT_DIM_MISMATCH)
    blocking = [f for f in report.errors if f.code not in checked_here
                and not (f.code == Code.FILE_TRUNCATED and (f.path or "").endswith(".pth"))]
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
                  tokenizer: str | os.PathLike[str] | None = None, keep_fp8: bool = False,
                  move: bool = False) -> ConversionPlan:
    """Plan assembling ComfyUI-style single files into one diffusers folder ``out``.

    ``transformer`` (the high-noise expert for Wan2.2 A14B) and ``transformer_2`` (low noise)
    are DiT files with original names, with or without ``model.diffusion_model.``, fp8
    "scaled" ones included (they become bf16); ``vae`` is a Wan2.1 or Wan2.2 VAE
    (``.safetensors`` or the original ``.pth``); ``text_encoder`` is umT5-XXL in
    transformers' naming (ComfyUI's ``umt5_xxl_*``) or Wan's own ``.pth``; ``tokenizer`` is
    the ``google/umt5-xxl`` folder (looked for beside the text encoder when not given).

    A ``.gguf`` transformer (and an fp8 one with ``keep_fp8``) is kept as it is: linked into the
    folder beside a config.json from our tables (:mod:`core.fix.convert.linked`), loaded quantized;
    with ``move`` it is moved there instead (same disk only; its old name goes once the folder is complete).
    """
    target = Path(out).absolute()
    named = {"transformer": transformer, "transformer_2": transformer_2, "vae": vae, "text_encoder": text_encoder}
    source = ", ".join(str(Path(p)) for p in named.values() if p is not None)

    def refuse(reason: str) -> ConversionPlan:
        return ConversionPlan(source, str(target), (), 0, _free_bytes(target), False, reason, verb="Assemble")

    try:
        if transformer_2 is not None and _same_file(transformer, transformer_2):
            raise _Refusal(f"The same file is given as --transformer and --transformer-2 ({Path(transformer).name}); "
                           "Wan2.2 A14B needs its high-noise and its low-noise expert, two different files.")
        parts: list[Part] = []
        facts = []
        for role, path in named.items():
            if path is None:
                continue
            if role.startswith("transformer") and (problem := fp8_scales_problem(Path(path))):
                raise _Refusal(problem)
            if role.startswith("transformer") and (Path(path).suffix.lower() == ".gguf" or (
                    keep_fp8 and Path(path).is_file() and is_quantized_file(Path(path)))):
                try:
                    part, dit = linked_part(role, Path(path), target, move)
                except (WanError, OSError) as exc:
                    raise _Refusal(str(exc)) from None
            else:
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
    given = [Path(p) for p in named.values() if p is not None]         # in the order of parts
    source = ", ".join(f"{path} ({part.note})" if part.note else str(path) for path, part in zip(given, parts))
    return replace(_finish_plan(source, target, parts, pipeline, inside=None), verb="Assemble")


def _same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


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


def _finish_plan(source: str, target: Path, parts: list[Part], pipeline: _Pipeline,
                 inside: Path | None) -> ConversionPlan:
    steps = [_step(p) for p in parts]
    tokenizer = Path(pipeline.tokenizer)
    tok_bytes = sum(p.stat().st_size for p in tokenizer_files(tokenizer))
    shown = tokenizer.relative_to(inside) if inside is not None and _is_within(tokenizer, inside) else tokenizer
    steps.append(f"Copy the tokenizer {shown}/ to tokenizer/ ({TOKENIZER_CLASS}).")
    extra = (f", boundary_ratio {pipeline.boundary_ratio}" if pipeline.boundary_ratio is not None else "") + \
            (", expand_timesteps true" if pipeline.expand_timesteps else "")
    steps.append(f"Write scheduler/ (UniPCMultistepScheduler, flow_shift {pipeline.shift:g}) and model_index.json "
                 f"({pipeline.pipeline_class}{extra}).")
    moved = [Path(p.files[0]).name for p in parts if p.kind == MOVED]
    kept = (f"; {', '.join(moved)} then leave{'s' if len(moved) == 1 else ''} {'its' if len(moved) == 1 else 'their'} "
            "old place (a failure before that leaves every file where it was), the other source files are only read"
            if moved else "; the source files are only read")
    steps.append(f"Write everything into .{target.name}.partial-PID beside the target and rename it to "
                 f"{target.name} when complete{kept}.")
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


def _step(part: Part) -> str:
    if part.kind in KEPT:
        return linked_step(part)
    what = {"transformer": "transformer/ (WanTransformer3DModel)", "transformer_2": "transformer_2/ (WanTransformer3DModel)",
            "vae": "vae/ (AutoencoderKLWan)", "text_encoder": "text_encoder/ (UMT5EncoderModel)"}[part.role]
    if part.role.startswith("transformer") and part.config and part.config.get("_class_name") == "VaceWanModel":
        what = what.replace("WanTransformer3DModel", "WanVACETransformer3DModel")
    expert = {"transformer": ", the high-noise expert", "transformer_2": ", the low-noise expert"}
    note = expert.get(part.role, "") if any(x in part.label for x in ("high_noise", "low_noise")) else ""
    return f"Convert {part.label} to {what}{note}."


def _original_parts(root: Path) -> tuple[list[Part], bool]:
    """The parts of an original folder, and whether its DiT has Wan2.1's CLIP image branch."""
    parts: list[Part] = []
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
        config = read_json(where / "config.json")
        if config is None:
            raise _Refusal(f"{folder + '/' if folder else ''}config.json is missing or unreadable; download it again.")
        try:
            headers = [read_header(f) for f in files]
        except (HeaderError, OSError) as exc:
            raise _Refusal(f"A transformer shard in {folder or 'the model folder'} cannot be read ({exc}); "
                           "download it again.") from None
        image_branch = image_branch or any("img_emb.proj.1.weight" in h.tensors for h in headers)
        out = sum(map(_tensor_bytes_out, headers))
        shards = f"{len(files)} shard{'s' if len(files) != 1 else ''}"
        label = f"{folder + '/' if folder else 'the transformer'} ({shards}, {_gb(out)})"
        parts.append(Part(role, "dit", tuple(map(str, files)), label, out, config))
    vaes = [root / n for n in VAE_PTHS if (root / n).is_file()]
    if not vaes:
        raise _Refusal("The VAE (Wan2.1_VAE.pth or Wan2.2_VAE.pth) is missing; download it from the model's page.")
    if len(vaes) > 1:  # both present: the transformer's latent width decides
        heads = [read_header(f).tensors.get("head.head.weight") for f in map(Path, parts[0].files)]
        rows = next((h.shape[0] for h in heads if h is not None), 64)
        vaes = [v for v in vaes if ("2.2" in v.name) == (rows == 48 * 4)]
    vae = vaes[0]
    parts.append(Part("vae", "vae", (str(vae),), f"{vae.name} ({_gb(vae.stat().st_size)})", vae.stat().st_size))
    t5 = root / T5_PTH
    if not t5.is_file():
        raise _Refusal(f"The text encoder {T5_PTH} is missing; download it from the model's page.")
    parts.append(Part("text_encoder", "t5", (str(t5),), f"{T5_PTH} ({_gb(t5.stat().st_size)})", t5.stat().st_size))
    return parts, image_branch


def _dit_files(folder: Path) -> list[Path]:
    index = read_json(folder / "diffusion_pytorch_model.safetensors.index.json")
    if isinstance(index, dict) and isinstance(index.get("weight_map"), dict):
        names = sorted(set(map(str, index["weight_map"].values())))
        outside = [n for n in names if unsafe_path(n, folder)]
        if outside:  # the index is data found on disk: it does not choose what is read
            raise _Refusal(f"{folder.name}/'s index names the shard {outside[0][:80]}, which is not a file in that "
                           "folder; download the index again.")
        missing = [n for n in names if not (folder / n).is_file()]
        if missing:
            raise _Refusal(f"The shard {missing[0]} named in {folder.name}/'s index is missing; download it again.")
        return [folder / n for n in names]
    files = sorted(folder.glob("diffusion_pytorch_model*.safetensors"))
    return files or sorted(folder.glob("*.safetensors"))


def _single_file_part(role: str, path: Path) -> tuple[Part, Any]:
    """One named file: check that it is what its role needs; the DiT facts for a transformer."""
    from core.check.dit import dit_facts_from_tensors
    flag = "--" + role.replace("_", "-")
    if not path.is_file():
        raise _Refusal(f"The file given as {flag} does not exist: {path}.")
    size = path.stat().st_size
    if path.suffix == ".pth" and role in ("vae", "text_encoder"):
        kind = {"vae": "vae", "text_encoder": "t5"}[role]
        return Part(role, kind, (str(path),), f"{path.name} ({_gb(size)})", size), None
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
        return Part(role, "dit", (str(path),), label, _tensor_bytes_out(header)), facts
    if role == "vae":
        if not any(n.endswith(WAN_VAE_MARK) for n in names):
            raise _Refusal(f"The file given as --vae is not a Wan VAE: {path.name}.")
        return Part(role, "vae", (str(path),), label, _tensor_bytes_out(header)), None
    if not any(n.endswith((WAN_T5_MARK, UMT5_MARK)) for n in names):
        raise _Refusal(f"The file given as --text-encoder is not the umT5 text encoder: {path.name}.")
    return Part(role, "t5", (str(path),), label, _tensor_bytes_out(header)), None


def _vae_z(part: Part) -> int | None:
    """The latent width of a VAE file: from a .pth's name, or from the header of a .safetensors."""
    path = Path(part.files[0])
    if path.suffix == ".pth":
        return 48 if "2.2" in path.name else 16 if "2.1" in path.name else None
    specs = {n: (t.dtype, t.shape) for n, t in read_header(path).tensors.items()}
    conv2 = specs.get(strip_prefix(specs, WAN_VAE_MARK) + "conv2.weight")
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


def _defaults(version: str | None, task: str | None, experts: int,
              registry_id: str | None) -> tuple[str, float | None, bool, float]:
    """(pipeline class, boundary_ratio, expand_timesteps, shift) from the registry's entry."""
    pipeline = signals.TASK_PIPELINE.get(task or "") or "WanPipeline"
    entry = None
    try:
        from core.check.registry import get_compatibility_registry
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


def _tensor_bytes_out(header: Any) -> int:
    return sum(int((t.end - t.start) * (2 if t.dtype in FP8_DTYPES else 1)) for n, t in header.tensors.items()
               if not n.endswith((".scale_weight", *IGNORED_TENSORS)))


def _is_within(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False
