"""A LoRA checked against a model before anything loads: where it goes, what applies, what not.

The prediction runs diffusers' own code on the LoRA's tensor *names and shapes* (meta
tensors, no data): ``WanLoraLoaderMixin.lora_state_dict`` (the ComfyUI and musubi
converters), ``_maybe_expand_t2v_lora_for_i2v`` (zero image layers for a T2V LoRA on an I2V
model), then peft's rule for which modules an adapter lands on (a module named in the
converted state dict that the model has, checked shape by shape). The model's modules come
from its transformer headers. So the counts are those peft then attaches
(tests/test_lora_match.py loads every format into the demo pipelines and compares).

Usage::

    from core.check.lora_match import match_loras, parse_lora
    choice = parse_lora("Wan2.2-Lightning_T2V-A14B-4steps-lora_HIGH_fp16.safetensors:0.8@high")
    [m] = match_loras(report, [choice])
    m.target, m.applied, m.not_applied, [f.message for f in m.findings]

torch and diffusers are imported inside :func:`match_loras` only.
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.check.codes import Code
from core.check.lora import BASE_NAMES, LoraInfo, lora_from_header, normalise_names, split_name
from core.check.lora_registry import DISTILL_LORAS
from core.check.report import Finding, Layout, ModelReport, Severity
from core.check.safetensors_header import HeaderError, TensorInfo, read_header

ERROR, WARNING, INFO = Severity.ERROR, Severity.WARNING, Severity.INFO
EXPERTS = {"high": "transformer", "low": "transformer_2"}
_STRENGTH = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
MAX_STRENGTH = 10.0


@dataclass(frozen=True)
class LoraChoice:
    """One LoRA asked for: its file, strength and (Wan2.2 A14B) expert; ``None`` lets the file decide."""

    path: str
    strength: float = 1.0
    expert: str | None = None          # "high" | "low" | None

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "strength": self.strength, "expert": self.expert}


def parse_lora(text: str) -> LoraChoice:
    """``FILE[:STRENGTH][@high|@low]`` -> LoraChoice; ValueError with a sentence when it is not that.

    >>> parse_lora("style.safetensors:0.7@low")
    LoraChoice(path='style.safetensors', strength=0.7, expert='low')
    """
    rest, expert = text.strip(), None
    at = rest.rsplit("@", 1)
    if len(at) == 2 and at[1].lower() in ("high", "low", "both") and not os.path.exists(rest):
        rest, expert = at[0], (None if at[1].lower() == "both" else at[1].lower())
    elif len(at) == 2 and re.fullmatch(r"[A-Za-z]+", at[1]) and not os.path.exists(rest):
        raise ValueError(f"@{at[1]} in {text!r} names no expert; write @high or @low (the Wan2.2 A14B experts), "
                         "or nothing for both.")
    strength = 1.0
    colon = rest.rsplit(":", 1)
    if len(colon) == 2 and not re.search(r"[\\/]", colon[1]) and not os.path.exists(rest):
        if not _STRENGTH.match(colon[1].strip()):
            raise ValueError(f"The LoRA strength {colon[1]!r} in {text!r} is not a number; write it as "
                             "FILE:0.8 (FILE[:STRENGTH][@high|@low]).")
        rest, strength = colon[0], float(colon[1])
        if not -MAX_STRENGTH <= strength <= MAX_STRENGTH:
            raise ValueError(f"The LoRA strength {strength:g} in {text!r} is out of range; use a number between "
                             f"{-MAX_STRENGTH:g} and {MAX_STRENGTH:g} (1 is the LoRA as trained).")
    if not rest:
        raise ValueError(f"{text!r} names no LoRA file; write FILE[:STRENGTH][@high|@low].")
    return LoraChoice(rest, strength, expert)


def duplicate_problems(choices: Sequence[LoraChoice]) -> list[str]:
    """The same file asked for twice on the same expert: one sentence each (per-expert strengths are fine)."""
    seen: dict[tuple[str, str | None], str] = {}
    problems = []
    for c in choices:
        key = os.path.realpath(c.path)
        experts = [c.expert] if c.expert else ["high", "low", None]
        for e in experts:
            clash = seen.get((key, e)) or (seen.get((key, None)) if e else None)
            if clash is not None:
                problems.append(f"The LoRA {Path(c.path).name} is given twice ({clash} and {c.path}"
                                f"{'@' + c.expert if c.expert else ''}); give it once, or once per expert "
                                "with @high and @low.")
                break
        for e in experts:
            seen[(key, e)] = c.path + (f"@{c.expert}" if c.expert else "")
    return problems


@dataclass(frozen=True)
class LoraMatch:
    """What one LoRA will do on one model, predicted from headers (nothing loaded)."""

    choice: LoraChoice
    info: LoraInfo | None
    targets: tuple[str, ...] = ()       # components it is loaded into: "transformer", "transformer_2"
    applied: int | None = None          # its layers that get the LoRA, on each target
    not_applied: int | None = None      # its layers that do not (no such layer, or dropped by diffusers)
    padded: int = 0                     # zero image layers diffusers adds for a T2V LoRA on an I2V model
    skipped: tuple[str, ...] = ()       # examples of the layers not applied
    findings: tuple[Finding, ...] = ()
    size_bytes: int = 0
    fingerprint: str | None = None

    @property
    def ok(self) -> bool:
        return not any(f.severity is ERROR for f in self.findings)

    @property
    def target(self) -> str | None:
        """'high', 'low' or 'both' on a two-expert model; 'transformer' on one expert; None if nowhere."""
        if set(self.targets) == {"transformer", "transformer_2"}:
            return "both"
        if self.targets == ("transformer_2",):
            return "low"
        if self.targets == ("transformer",):
            return "transformer" if not self.choice.expert and not self._two_experts else "high"
        return None

    _two_experts: bool = field(default=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """One entry of ``check --json``'s ``"loras"``."""
        info = self.info
        return {"path": self.choice.path, "strength": self.choice.strength,
                "format": info.format if info else None, "base": info.base if info else None,
                "expert": info.expert if info else None, "target": self.target, "components": list(self.targets),
                "applied": self.applied, "not_applied": self.not_applied, "padded": self.padded,
                "skipped": list(self.skipped), "distill_steps": info.distill_steps if info else None,
                "size_bytes": self.size_bytes, "fingerprint": self.fingerprint,
                "findings": [f.to_dict() for f in self.findings]}


def read_lora(path: str | os.PathLike[str]) -> tuple[LoraInfo | None, list[Finding], Any]:
    """(info, findings about the file, header) for one LoRA file; never raises for a bad file.

    Read once per file version (path, size, modification time): the check before loading and the
    loader read the same header.
    """
    try:
        st = os.stat(path)
        key: tuple[Any, ...] = (os.fspath(path), st.st_size, st.st_mtime_ns)
    except OSError:
        key = (os.fspath(path), None, None)
    info, findings, header = _read_lora(*key)
    return info, list(findings), header


@functools.lru_cache(maxsize=32)
def _read_lora(path: str, _size: int | None, _mtime: int | None) -> tuple[LoraInfo | None, tuple[Finding, ...], Any]:
    info, findings, header = _read_lora_now(path)
    return info, tuple(findings), header


def _read_lora_now(path: str) -> tuple[LoraInfo | None, list[Finding], Any]:
    shown = Path(path).name
    try:
        size = os.path.getsize(path)
        header = read_header(path)
    except FileNotFoundError:
        return None, [Finding(ERROR, Code.FILE_UNREADABLE, f"The LoRA file {path} does not exist.",
                              "Check the path (a .safetensors file).", str(path))], None
    except HeaderError as exc:
        from core.check.codes import header_code
        return None, [Finding(ERROR, header_code(exc.reason), f"The LoRA file {shown} {exc}.",
                              "Download it again; it is damaged or not a safetensors file.", str(path))], None
    except OSError as exc:
        return None, [Finding(ERROR, Code.FILE_UNREADABLE, f"The LoRA file {shown} cannot be read: "
                              f"{exc.strerror or exc}.", "Check the file's permissions.", str(path))], None
    findings: list[Finding] = []
    if size != header.expected_file_size:
        cut = size < header.expected_file_size
        findings.append(Finding(ERROR, Code.FILE_TRUNCATED if cut else Code.FILE_EXTRA_BYTES,
                                f"The LoRA file {shown} is {'cut short' if cut else 'longer than its header says'}: "
                                f"{size:,} bytes on disk, its header describes {header.expected_file_size:,}.",
                                "Download it again.", str(path)))

    def read_bytes(t: TensorInfo) -> bytes | None:
        with open(path, "rb") as fh:
            fh.seek(8 + header.header_size + t.start)
            return fh.read(t.end - t.start)

    info = lora_from_header(header, shown, read_bytes if not findings else None)
    return info, findings, header


def fingerprint(path: str | os.PathLike[str]) -> str | None:
    """A short fingerprint of a LoRA file: SHA-256 of its size, its header and three 1 MiB samples of its
    tensor data (start, middle, end). Two LoRAs of the same layout (Lightning's HIGH and LOW files, two
    versions of one training) have equal headers and sizes; their weights tell them apart. Cheap for a 1 GB file.
    """
    import hashlib
    import struct
    chunk = 2**20
    try:
        size = os.path.getsize(path)
        digest = hashlib.sha256(f"{size}:".encode())
        with open(path, "rb") as fh:
            head = fh.read(8)
            (n,) = struct.unpack("<Q", head) if len(head) == 8 else (0,)
            digest.update(head + fh.read(min(n, 100 * 2**20)))
            data = 8 + n
            for at in sorted({data, max(data, (data + size) // 2 - chunk // 2), max(data, size - chunk)}):
                fh.seek(at)
                digest.update(fh.read(chunk))
    except (OSError, struct.error):
        return None
    return digest.hexdigest()[:16]


def match_loras(report: ModelReport, choices: Iterable[LoraChoice]) -> list[LoraMatch]:
    """Check each LoRA against the model of ``report``, as diffusers and peft will then load it."""
    modules = model_modules(report)
    return [_match_one(report, c, modules) for c in choices]


@dataclass(frozen=True)
class _Expert:
    modules: Mapping[str, tuple[int, ...]]    # module name -> weight shape
    image_dim: int | None


def model_modules(report: ModelReport) -> dict[str, _Expert] | None:
    """Each transformer's module names and weight shapes, from its headers (diffusers layout), else None."""
    if report.layout is not Layout.DIFFUSERS:
        return None
    root = Path(report.path)
    experts: dict[str, _Expert] = {}
    for comp in report.components:
        if comp.name not in ("transformer", "transformer_2") or not comp.present:
            continue
        shapes: dict[str, tuple[int, ...]] = {}
        image_dim = None
        for rel in comp.files:
            path = root / rel
            try:
                if rel.endswith(".safetensors"):
                    for name, t in read_header(path).tensors.items():
                        if name.endswith(".weight"):
                            shapes[name[: -len(".weight")]] = t.shape
                elif rel.endswith("config.json"):
                    image_dim = json.loads(path.read_text(encoding="utf-8")).get("image_dim")
            except (OSError, ValueError):
                return None
        if "blocks.0.attn1.to_q" not in shapes:      # GGUF / fp8 kept as published: not diffusers' names
            shapes = _modules_from_config(root / comp.folder / "config.json") or shapes
        experts[comp.name] = _Expert(shapes, image_dim)
    return experts or None


def _modules_from_config(config: Path) -> dict[str, tuple[int, ...]] | None:
    """Module names and weight shapes of the transformer ``config`` describes, built on the meta device
    (no memory, no weights): for a transformer stored as GGUF or in ComfyUI's names, whose headers do
    not name diffusers' modules. None when the config cannot be read or built."""
    try:
        import torch
        from diffusers import WanTransformer3DModel
        with torch.device("meta"):
            model = WanTransformer3DModel.from_config(json.loads(config.read_text(encoding="utf-8")))
    except Exception:  # noqa: BLE001 - no torch/diffusers here, or a config they cannot build: no shapes from it
        return None
    return {name: tuple(m.weight.shape) for name, m in model.named_modules()
            if isinstance(getattr(m, "weight", None), torch.Tensor)}


def _model_width(report: ModelReport, modules: Mapping[str, _Expert] | None) -> int | None:
    if modules:
        shape = next(iter(modules.values())).modules.get("blocks.0.attn1.to_q")
        if shape:
            return shape[1]
    return {"1.3B": 1536, "5B": 3072, "14B": 5120}.get(report.size_class or "")


def _match_one(report: ModelReport, choice: LoraChoice, modules: Mapping[str, _Expert] | None) -> LoraMatch:
    info, findings, header = read_lora(choice.path)
    if info is None:
        return LoraMatch(choice, None, findings=tuple(findings))
    findings = findings + [f for f in info.findings if f.code is not Code.LORA_FILE]
    base = dict(choice=choice, info=info, size_bytes=os.path.getsize(choice.path), fingerprint=fingerprint(choice.path))
    if not info.usable or findings:
        return LoraMatch(**base, findings=tuple(findings))
    shown = Path(choice.path).name
    two = report.experts >= 2
    width = _model_width(report, modules)
    if info.width and width and info.width != width:
        lora_base = BASE_NAMES.get(info.base or "", "a model")
        model_base = BASE_NAMES.get({1536: "wan-1.3b", 3072: "wan-5b", 5120: "wan-14b"}.get(width, ""), "a model")
        findings.append(Finding(ERROR, Code.LORA_WRONG_BASE,
                                f"{shown} is a LoRA for {lora_base} (width {info.width}); this model is "
                                f"{model_base.replace('a model', 'one')} of width {width}, so its layers do not fit "
                                "and it cannot load.",
                                f"Use a LoRA made for {model_base.replace('a model', f'a model of width {width}')}."))
        return LoraMatch(**base, findings=tuple(findings), _two_experts=two)
    targets = _targets(choice, info, two, findings, shown, report)
    applied = not_applied = None
    padded = 0
    skipped: tuple[str, ...] = ()
    if modules is not None and header is not None:
        result = _predict(header, modules[targets[0]] if targets[0] in modules else None, shown)
        if isinstance(result, Finding):
            findings.append(result)
            return LoraMatch(**base, targets=targets, findings=tuple(findings), _two_experts=two)
        applied, padded, skipped = result
        not_applied = max(0, info.modules - applied)
        if applied == 0:
            findings.append(Finding(ERROR, Code.LORA_NOT_APPLIED,
                                    f"None of the {info.modules} layers of {shown} has a place in this model, so it "
                                    "would change nothing.", "Use a LoRA made for this model."))
        elif not_applied:
            examples = ", ".join(skipped[:3]) + (" ..." if len(skipped) > 3 else "")
            findings.append(Finding(WARNING if info.task != "i2v" or padded else INFO, Code.LORA_NOT_APPLIED,
                                    f"{not_applied} of the {info.modules} layers of {shown} are not applied: this "
                                    f"model has no such layer, or diffusers drops it ({examples}).",
                                    "Nothing to do if the LoRA works; else use one made for this model."))
    if padded or (report.task == "i2v" and info.task != "i2v" and modules is None and _has_image_branch(report)):
        findings.append(Finding(INFO, Code.LORA_T2V_ON_I2V,
                                f"{shown} is a text-to-video LoRA on an image-to-video model: it loads, and the "
                                "image layers stay as they are" + (f" ({padded} zero layers added)." if padded else "."),
                                ""))
    findings += _distill_findings(info, shown, two)
    return LoraMatch(**base, targets=targets, applied=applied, not_applied=not_applied, padded=padded,
                     skipped=skipped, findings=tuple(findings), _two_experts=two)


def _has_image_branch(report: ModelReport) -> bool:
    return report.component("image_encoder") is not None


def _targets(choice: LoraChoice, info: LoraInfo, two: bool, findings: list[Finding], shown: str,
             report: ModelReport) -> tuple[str, ...]:
    """The expert(s) a LoRA goes to: what was asked, else what the file says, else both."""
    if not two:
        if choice.expert:
            findings.append(Finding(WARNING, Code.LORA_EXPERT_MISMATCH,
                                    f"@{choice.expert} was asked for {shown}, but this model has one transformer; "
                                    "the LoRA goes to it.", "Leave out @high/@low for this model."))
        elif info.expert:
            findings.append(Finding(WARNING, Code.LORA_EXPERT_MISMATCH,
                                    f"{shown} was made for the {info.expert}-noise expert of Wan2.2 A14B; this "
                                    "model has one transformer, so it goes there and may not work as intended.",
                                    "Use a LoRA made for this model."))
        return ("transformer",)
    if choice.expert and info.expert and choice.expert != info.expert:
        findings.append(Finding(WARNING, Code.LORA_EXPERT_MISMATCH,
                                f"{shown} was made for the {info.expert}-noise expert but goes to the "
                                f"{choice.expert}-noise expert, as asked; it will likely spoil the video.",
                                f"Use @{info.expert}, or leave out @{choice.expert}."))
    if choice.expert or info.expert:
        return targets_for(choice, info, two)
    version = "Wan2.1 14B" if info.base == "wan-14b" else "Wan"
    findings.append(Finding(INFO, Code.LORA_BOTH_EXPERTS,
                            f"{shown} ({version} LoRA, no expert named) fits both experts of this model; it goes to "
                            "both, at the same strength.",
                            "Add @high or @low to put it on one expert only."))
    return ("transformer", "transformer_2")


def targets_for(choice: LoraChoice, info: LoraInfo | None, two_experts: bool) -> tuple[str, ...]:
    """The components a LoRA is loaded into: the one transformer; on Wan2.2 A14B the expert asked for
    (``@high``/``@low``), else the one the file names, else both. The loader uses this same rule.

    >>> targets_for(LoraChoice("x.safetensors"), None, True)
    ('transformer', 'transformer_2')
    """
    if not two_experts:
        return ("transformer",)
    wanted = choice.expert or (info.expert if info else None)
    return (EXPERTS[wanted],) if wanted else ("transformer", "transformer_2")


def _distill_findings(info: LoraInfo, shown: str, two_experts: bool) -> list[Finding]:
    if not info.distill_steps:
        return []
    entry = next((e for e in DISTILL_LORAS if e.id == info.registry_id), None)
    shift = f", scheduler shift {entry.shift:g}" if entry else ""
    guidance = entry.guidance if entry else 1.0
    return [Finding(INFO, Code.LORA_DISTILL,
                    f"{shown} is a {info.distill_steps}-step distillation LoRA: it needs {info.distill_steps} steps "
                    f"and guidance {guidance:g}{shift}; the model's own 40-50 steps and guidance 3-5 burn the video.",
                    f"Use --steps {info.distill_steps} --guidance {guidance:g}"
                    + (f" --guidance-2 {guidance:g}" if two_experts else "")
                    + (f" --shift {entry.shift:g}" if entry else "") + " (the Generate tab offers this preset).")]


def _predict(header: Any, expert: _Expert | None, shown: str) -> tuple[int, int, tuple[str, ...]] | Finding:
    """(applied, padded, skipped examples) as diffusers + peft will load the LoRA, or the error finding."""
    if expert is None:
        return 0, 0, ()
    try:
        converted = _converted(header, expert.image_dim)
    except ImportError as exc:   # the prediction runs diffusers' own converters: without them, no counts
        return Finding(WARNING, Code.LORA_NOT_LOADABLE,
                       f"The layers {shown} changes cannot be counted here: {exc}.",
                       "Run `python -m core doctor`: it says how to mend torch and diffusers.")
    except Exception as exc:  # noqa: BLE001 - diffusers' converters raise KeyError/ValueError/IndexError
        return Finding(ERROR, Code.LORA_NOT_LOADABLE,
                       f"diffusers cannot read {shown}: {_conversion_words(exc)}.",
                       "Use a LoRA in ComfyUI, diffusers or complete musubi format for Wan.")
    if converted is None:
        return Finding(ERROR, Code.LORA_NOT_LOADABLE,
                       f"diffusers refuses {shown}: some of its tensors are not LoRA weights (names without "
                       "'lora'), as in a ComfyUI file without the diffusion_model. prefix that also has .alpha "
                       "or .diff tensors.", "Use the LoRA as published, or one in diffusers format.")
    state, padded_names = converted
    wanted = {k.rsplit(".lora_", 1)[0] for k in state}
    targeted = sorted(wanted & expert.modules.keys())
    for module in targeted:
        a = state.get(f"{module}.lora_A.weight")
        b = state.get(f"{module}.lora_B.weight")
        shape = expert.modules[module]
        if (a is not None and len(shape) >= 2 and tuple(a.shape[1:2]) != tuple(shape[1:2])) or \
                (b is not None and b.shape[0] != shape[0]):
            return Finding(ERROR, Code.LORA_WRONG_BASE,
                           f"{shown} does not fit this model: its layer {module} is made for a weight of "
                           f"{_shape(a, b)}, the model's is {'x'.join(map(str, shape))}, so loading would fail.",
                           "Use a LoRA made for this model.")
    padded = len(set(targeted) & padded_names)
    applied = len(targeted) - padded
    skipped = tuple(sorted(wanted - expert.modules.keys() - padded_names))
    dropped = tuple(_dropped(header, state))
    return applied, padded, skipped + dropped


def _shape(a: Any, b: Any) -> str:
    out = b.shape[0] if b is not None else "?"
    inp = a.shape[1] if a is not None and len(a.shape) > 1 else "?"
    return f"{out}x{inp}"


def _converted(header: Any, image_dim: int | None) -> tuple[dict[str, Any], set[str]] | None:
    """diffusers' own conversion of the LoRA's names and shapes (meta tensors), as load_lora_weights does it.

    None when diffusers would refuse the keys ("Invalid LoRA checkpoint"). The keys come back
    without the ``transformer.`` prefix, as peft sees them.
    """
    import torch
    from diffusers.loaders.lora_pipeline import WanLoraLoaderMixin
    from diffusers.utils.state_dict_utils import convert_unet_state_dict_to_peft
    renamed = normalise_names(header.tensors)
    placeholders = {}
    for name, t in header.tensors.items():
        if split_name(name) is not None and split_name(name)[1] == "alpha":   # .item() is called on it
            placeholders[renamed[name]] = torch.ones(t.shape)
        else:
            placeholders[renamed[name]] = torch.empty(t.shape, device="meta")
    state = WanLoraLoaderMixin.lora_state_dict(placeholders)
    before = {k.rsplit(".lora_", 1)[0] for k in state}
    holder = _Holder(image_dim)
    state = WanLoraLoaderMixin._maybe_expand_t2v_lora_for_i2v(transformer=holder, state_dict=state)
    if not all("lora" in k for k in state):
        return None
    padded = {k.rsplit(".lora_", 1)[0].removeprefix("transformer.") for k in state} - \
        {m.removeprefix("transformer.") for m in before}
    state = {k.removeprefix("transformer."): v for k, v in state.items() if k.startswith("transformer.")}
    if state and "lora_A" not in next(iter(state)):
        state = convert_unet_state_dict_to_peft(state)
    return state, padded


class _Holder:
    """What ``_maybe_expand_t2v_lora_for_i2v`` reads of a transformer: ``config.image_dim`` and ``device``."""

    def __init__(self, image_dim: int | None) -> None:
        self.config = type("Config", (), {"image_dim": image_dim})()
        self.device = "meta"


def _dropped(header: Any, state: Mapping[str, Any]) -> list[str]:
    """File layers that the conversion dropped (norm and weight ``.diff`` tensors diffusers ignores)."""
    kept_parts = {"lora_down", "lora_up", "lora_A", "lora_B", "alpha", "diff_b"}
    out = []
    for name in header.tensors:
        sp = split_name(name)
        if sp and sp[1] not in kept_parts and not sp[0].endswith("head.head"):
            out.append(sp[0].removeprefix("diffusion_model."))
    return sorted(set(out))[:20] if state is not None else []


def _conversion_words(exc: BaseException) -> str:
    if isinstance(exc, KeyError):
        return f"it lacks the tensor {exc.args[0] if exc.args else '?'} that its format needs"
    text = str(exc).strip() or type(exc).__name__
    return text[:200]


def choices_from_args(texts: Iterable[str] | None) -> tuple[list[LoraChoice], list[str]]:
    """``--lora`` values -> (choices, problems): strengths that are not numbers, the same LoRA twice.

    >>> choices_from_args(["a.safetensors:x"])[1]
    ["The LoRA strength 'x' in 'a.safetensors:x' is not a number; write it as FILE:0.8 (FILE[:STRENGTH][@high|@low])."]
    """
    choices, problems = [], []
    for text in texts or []:
        try:
            choices.append(parse_lora(text))
        except ValueError as exc:
            problems.append(str(exc))
    return choices, problems + duplicate_problems(choices)


def lora_refusals(report: ModelReport, choices: Iterable[LoraChoice]) -> list[str]:
    """The error findings of each LoRA against the model, as sentences with their remedy: what refuses a
    request before it is queued or loaded (an empty list when every LoRA can go on).

    >>> lora_refusals(report, [LoraChoice("sdxl_style.safetensors")])
    ['sdxl_style.safetensors: This LoRA is for Stable Diffusion / SDXL, not for Wan: ... Use a LoRA made for Wan 2.1 / 2.2.']
    """
    return [f"{Path(m.choice.path).name}: {f.message} {f.remedy}".strip()
            for m in match_loras(report, choices) for f in m.findings if f.severity is ERROR]


def render_matches(matches: Sequence[LoraMatch]) -> str:
    """The LoRA lines of ``python -m core check MODEL --lora FILE``."""
    from core.check.wording import MARK
    lines = ["LoRAs:"]
    for m in matches:
        where = {"both": "both experts", "high": "the high-noise expert (transformer)",
                 "low": "the low-noise expert (transformer_2)", "transformer": "the transformer"}.get(m.target or "", "—")
        what = m.info.summary if m.info else "not readable"
        lines.append(f"  {Path(m.choice.path).name} (strength {m.choice.strength:g}): {what}")
        lines.append(f"    goes to: {where}" + (f"; {m.applied} layers applied, {m.not_applied} not"
                                                 if m.applied is not None else ""))
        for f in m.findings:
            lines.append(f"    {MARK[f.severity]} {f.severity.value}: {f.message}")
            if f.remedy:
                lines.append(f"        → {f.remedy}")
    return "\n".join(lines)
