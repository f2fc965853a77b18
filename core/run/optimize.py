"""The memory plan: precision, placement, VAE tiling, each with its reason, and refusals.

Usage::

    from core.check.detect import inspect
    from core.run.hardware import probe
    from core.run.optimize import OptimizationRequest, plan_for, check_request_fits, stronger_plan

    report = inspect("/models/Wan2.2-T2V-A14B-Diffusers")
    request = OptimizationRequest(width=1280, height=720, num_frames=81, num_inference_steps=40,
                                  overrides={"precision": "auto"})   # the user's optimization_config
    plan = plan_for(report, probe(), request)
    print("\\n".join(plan.summary_lines()))   # estimate + one reason per choice
    check_request_fits(plan)                  # WanError(refusal, remedy) when it cannot fit
    retry = stronger_plan(plan, report, probe())   # after an out-of-memory error; None: nothing stronger

Pure arithmetic on the :class:`~core.check.report.ModelReport` (exact parameter counts from the
safetensors headers) and the :class:`~core.run.hardware.HardwareInfo`: no torch, no diffusers.

What a placement means (what ``core.run.load`` applies)
----------------------------------------------------
- ``all_on_device``: every component on the GPU (on a CPU-only machine: everything in RAM).
- ``model_offload``: ``pipe.enable_model_cpu_offload()``; a whole component moves to the GPU
  while it runs (text encoder, then the transformer, at the expert switch ``transformer_2``
  replaces it, then the VAE). For image-to-video the VAE encodes the conditioning video before
  denoising and stays on the GPU until the end.
- ``group_offload``: each transformer ``enable_group_offload(offload_type=group_offload_type,
  num_blocks_per_group=1, use_stream=True)``; the text and image encoders group-offloaded by
  block; the VAE on the GPU whole.
- ``sequential_offload``: ``pipe.enable_sequential_cpu_offload()``: leaf modules one at a time.
- ``balanced``: ``from_pretrained(device_map="balanced", max_memory=plan.max_memory_mb)``:
  whole components spread over two or more GPUs (``plan.device_map`` is what we expect).
- ``text_encoder_on_cpu``: UMT5 stays in RAM and encodes there; only the embeddings move.
- ``disk_offload``: for computers whose RAM cannot hold the weights (on a GPU or the CPU): the
  transformers and the text encoder are written to a fresh folder under config.yaml's
  ``offload_dir`` as soon as each is loaded, and group offloading reads them back block by block
  (:mod:`core.run.disk_offload`); the VAE and image encoder stay whole. The last resort: slowest.

The estimate (MiB) behind each choice, its formulas, constants and their calibration against
measurements and published figures, is :mod:`core.run.memory_estimate`. This module chooses: the
user's ``optimization_config``, the set-ups tried from weakest to strongest memory saving, the
retry after running out of memory, the refusal with the nearest request that fits, and the
sentences.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from core.check.report import ModelReport
from core.choices import DTYPES
from core.errors import WanError
from core.run.hardware import HardwareInfo
from core.run.input_memory import InputLoad
from core.run.memory_estimate import (  # noqa: F401
    ACTIVATION_SLACK,
    BASE_RAM_MB,
    BYTES,
    CUDA_OVERHEAD_MB,
    DIT_DIM_FACTOR,
    DIT_FFN_FACTOR,
    DIT_PER_TOKEN_TIMESTEP_FACTOR,
    GROUP_OFFLOAD_BLOCKS_PER_GROUP,
    GROUP_OFFLOAD_RESIDENT_GROUPS,
    IMAGE_ENCODE_ACTIVATION_MB,
    MIB,
    PLACEMENTS,
    RAM_MARGIN,
    TEXT_ENCODE_ACTIVATION_MB,
    VAE_CHUNK_FACTOR,
    VAE_FRAME_FACTOR,
    VAE_TILE_PIXELS,
    VAE_TILED_FRAME_FACTOR,
    VRAM_MARGIN,
    MemoryEstimate,
    _dit_activation_mb,
    _Eval,
    _evaluate,
    _Facts,
    _facts,
    _Machine,
    _machine,
    _Setup,
    _vae_activation_mb,
    latent_tokens,
)

# Re-exported (F401): the estimate's constants and formulas, as tests and tools import them from here.
from core.run.ram_plan import smaller_quant_words
from core.run.speed import SPEED_KEYS, SpeedPlan, plan_speed, speed_lines
from core.units import format_mib

__all__ = ["PLACEMENTS", "PRECISIONS", "Choice", "MemoryEstimate", "OptimizationPlan",
           "OptimizationRequest", "check_request_fits", "plan_for", "stronger_plan"]

PRECISIONS = DTYPES   # the number formats a plan settles on (core.choices: the one list)
GROUP_OFFLOAD_TYPES = ("block_level", "leaf_level")
#: Shortest clip a refusal suggests before it gives up on a size.
MIN_SUGGESTED_FRAMES = 17


# --- the public dataclasses -----------------------------------------------------------------

@dataclass(frozen=True)
class OptimizationRequest:
    """What the user asks for: size, frames, steps, and their ``optimization_config``.

    >>> OptimizationRequest(width=832, height=480, num_frames=81, num_inference_steps=50,
    ...                     overrides={"precision": "fp16", "enable_cpu_offload": True}).num_frames
    81
    """

    width: int
    height: int
    num_frames: int
    num_inference_steps: int
    guidance: bool = True            # CFG: two transformer passes per step (one after the other)
    overrides: Mapping[str, Any] = field(default_factory=dict)
    inputs: InputLoad | None = None  # what the task's inputs add (core.run.input_memory)
    ranks: int = 1                   # one rank of N (--gpus N): each holds 1/N of the tokens (Ulysses)
    shard_weights: bool = False      # with ranks > 1: FSDP2, each GPU holds 1/N of every expert's weights

    def to_dict(self) -> dict[str, Any]:
        return {"width": self.width, "height": self.height, "num_frames": self.num_frames,
                "num_inference_steps": self.num_inference_steps, "guidance": self.guidance,
                "overrides": dict(self.overrides), **({"inputs": self.inputs.to_dict()} if self.inputs else {}),
                **({"ranks": self.ranks, "shard_weights": self.shard_weights} if self.ranks > 1 else {})}


@dataclass(frozen=True)
class Choice:
    """One decision and the sentence that explains it to a person."""

    value: Any
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "reason": self.reason}



@dataclass(frozen=True)
class OptimizationPlan:
    """How to load and run one model on this machine, each choice with its reason.

    ``gpu_index`` is the GPU single-GPU placements use (the one with the most free memory);
    ``device_map``/``max_memory_mb`` are set for ``balanced`` only; ``notes`` hold settings
    that were ignored; ``remedy`` says what to do when the request does not fit.
    """

    device: str
    precision: Choice
    vae_precision: Choice
    placement: Choice
    vae_tiling: Choice
    vae_slicing: Choice
    attention_backend: Choice
    text_encoder_on_cpu: Choice
    group_offload_type: str | None
    estimate: MemoryEstimate
    fits: bool
    refusal: str | None
    request: OptimizationRequest
    gpu_index: int | None = None
    usable_vram_mb: float | None = None
    usable_ram_mb: float | None = None
    device_map: Mapping[str, str] | None = None
    max_memory_mb: Mapping[int, int] | None = None
    notes: tuple[str, ...] = ()
    remedy: str | None = None
    #: The machine this plan was made for; the out-of-memory retry plans again for it without probing.
    hardware: HardwareInfo | None = field(default=None, compare=False, repr=False)
    #: Step cache per expert, attention kernel, compile (core.run.speed); None: plain diffusers.
    speed: SpeedPlan | None = None

    @property
    def choices(self) -> dict[str, Choice]:
        return {"precision": self.precision, "vae_precision": self.vae_precision,
                "placement": self.placement, "vae_tiling": self.vae_tiling,
                "vae_slicing": self.vae_slicing, "attention_backend": self.attention_backend,
                "text_encoder_on_cpu": self.text_encoder_on_cpu}

    @property
    def reasons(self) -> list[str]:
        """Every choice's reason, in order, then the ignored settings."""
        return [c.reason for c in self.choices.values()] + list(self.notes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values (for the CLI's --json, the UI and the history database)."""
        return {"device": self.device, **{k: c.to_dict() for k, c in self.choices.items()},
                "group_offload_type": self.group_offload_type, "gpu_index": self.gpu_index,
                "usable_vram_mb": _round(self.usable_vram_mb), "usable_ram_mb": _round(self.usable_ram_mb),
                "device_map": dict(self.device_map) if self.device_map is not None else None,
                "max_memory_mb": ({str(k): v for k, v in self.max_memory_mb.items()}
                                  if self.max_memory_mb is not None else None),
                "estimate": self.estimate.to_dict(), "fits": self.fits, "refusal": self.refusal,
                "remedy": self.remedy, "notes": list(self.notes), "reasons": self.reasons,
                "request": self.request.to_dict(), **({"speed": self.speed.to_dict()} if self.speed else {})}

    def summary_lines(self) -> list[str]:
        """The estimate, then one line per choice: what the CLI prints and the UI shows."""
        e, r = self.estimate, self.request
        where = f"{r.width}x{r.height}, {r.num_frames} frames"
        lines = []
        if self.device == "cuda":
            stages = ", ".join(f"{_STAGE_WORDS[s]} {_gb(v)}" for s, v in e.stage_vram_mb.items())
            lines.append(f"Estimated peak GPU memory: {_gb(e.peak_vram_mb)} of {_gb(self.usable_vram_mb or 0)} "
                         f"usable ({stages}).")
        lines.append(f"Estimated peak RAM: {_gb(e.peak_ram_mb)}"
                     + (f" of {_gb(self.usable_ram_mb)} available" if self.usable_ram_mb else "")
                     + (f" (while loading {_gb(e.load_ram_mb)})." if e.load_ram_mb else "."))
        weights = ", ".join(f"{k} {_gb(v)}" for k, v in e.weights_mb.items())
        lines.append(f"Weights: {weights}.")
        lines.append(f"One denoising step at {where}: {e.latent_tokens:,} latent tokens, "
                     f"about {_gb(e.activations_mb)} of activations.")
        lines += [f"{_LABELS[k]}: {c.reason}" for k, c in self.choices.items()]
        lines += speed_lines(self.speed) if self.speed else []
        lines += list(self.notes)
        if not self.fits and self.refusal:
            lines.append(f"Does not fit: {self.refusal}")
        return lines


def check_request_fits(plan: OptimizationPlan) -> None:
    """Raise :class:`WanError` with the refusal and a remedy when the plan does not fit.

    >>> check_request_fits(plan)   # doctest: +SKIP
    """
    if plan.fits:
        return
    raise WanError(plan.refusal or "This request does not fit this machine.",
                   plan.remedy or "Choose a smaller size or fewer frames, or a stronger offload setting.",
                   "\n".join(plan.summary_lines()))


# --- the user's optimization_config ---------------------------------------------------------

_PLACEMENT_WORDS = {"none": "all_on_device", "no": "all_on_device", "off": "all_on_device",
                    "gpu": "all_on_device", "model": "model_offload", "group": "group_offload",
                    "sequential": "sequential_offload", "balanced": "balanced", "disk": "disk_offload",
                    **{p: p for p in PLACEMENTS}}
_KNOWN_KEYS = ("precision", "enable_cpu_offload", "offload", "placement", "chunk_size", "vae_tiling",
               "vae_slicing", "attention_backend", "text_encoder_on_cpu", "group_offload_type",
               "vae_precision", "force_chunked_processing", *SPEED_KEYS, "loras")


@dataclass
class _Overrides:
    """The settings that bind the plan, each with the words that name it in reasons."""

    precision: str | None = None
    vae_precision: str | None = None
    placement: str | None = None
    allowed: tuple[str, ...] | None = None      # enable_cpu_offload: false
    group_type: str | None = None
    tiling: bool | None = None
    slicing: bool | None = None
    te_cpu: bool | None = None
    attention: str | None = None
    said: dict[str, str] = field(default_factory=dict)        # field -> "offload=model"
    notes: list[str] = field(default_factory=list)


def _parse_overrides(raw: Mapping[str, Any], machine: _Machine) -> _Overrides:
    o = _Overrides()
    cpu = machine.device == "cpu"
    for key, value in raw.items():
        k = str(key)
        if k not in _KNOWN_KEYS:
            near = difflib.get_close_matches(k, _KNOWN_KEYS, n=1)
            o.notes.append(f"Ignored unknown setting {k}" + (f" (did you mean {near[0]}?)." if near else "."))
            continue
        if value is None or (isinstance(value, str) and value.strip().lower() in ("", "auto")):
            continue
        shown = f"{k}={value}"
        if k in ("precision", "vae_precision"):
            v = str(value).strip().lower().replace("float32", "fp32").replace("float16", "fp16") \
                .replace("bfloat16", "bf16")
            if v not in PRECISIONS:
                o.notes.append(f"Ignored {shown}: use bf16, fp16, fp32 or auto.")
                continue
            setattr(o, k, v)
            o.said[k] = shown
        elif k in ("offload", "placement"):
            v = _PLACEMENT_WORDS.get(str(value).strip().lower())
            if v is None:
                o.notes.append(f"Ignored {shown}: use none, model, group, sequential, disk, balanced or auto.")
                continue
            if o.placement is not None and o.placement != v:
                o.notes.append(f"Ignored {o.said['placement']}: {shown} says otherwise and wins.")
            o.placement = v
            o.said["placement"] = shown
        elif k == "enable_cpu_offload":
            b = _bool(value)
            if b is None:
                o.notes.append(f"Ignored {shown}: use true or false.")
            elif "placement" in o.said and o.said["placement"].split("=")[0] in ("offload", "placement"):
                o.notes.append(f"Ignored {shown}: {o.said['placement']} is more specific and wins.")
            elif b:
                o.placement = "model_offload"
                o.said["placement"] = shown
            else:
                o.allowed = ("all_on_device", "balanced")
                o.said["placement"] = shown
        elif k == "group_offload_type":
            v = str(value).strip().lower().replace("-", "_")
            v = {"block": "block_level", "leaf": "leaf_level"}.get(v, v)
            if v not in GROUP_OFFLOAD_TYPES:
                o.notes.append(f"Ignored {shown}: use block_level or leaf_level.")
                continue
            o.group_type = v
            o.said["group_type"] = shown
        elif k in ("chunk_size", "force_chunked_processing"):
            on = _bool(value) if k == "force_chunked_processing" else _positive_int(value)
            if on is None or on is False:
                if on is None:
                    o.notes.append(f"Ignored {shown}: use a positive number of frames."
                                   if k == "chunk_size" else f"Ignored {shown}: use true or false.")
                continue
            for attr, name in (("tiling", "vae_tiling"), ("slicing", "vae_slicing")):
                if name not in raw:
                    setattr(o, attr, True)
                    o.said[attr] = shown
        elif k in ("vae_tiling", "vae_slicing", "text_encoder_on_cpu"):
            b = _bool(value)
            if b is None:
                o.notes.append(f"Ignored {shown}: use true or false.")
                continue
            attr = {"vae_tiling": "tiling", "vae_slicing": "slicing", "text_encoder_on_cpu": "te_cpu"}[k]
            setattr(o, attr, b)
            o.said[attr] = shown
        # attention_backend, speed, cache, compile: core.run.speed (plan_speed) checks and explains them
    if cpu:
        if o.placement not in (None, "all_on_device", "disk_offload"):
            o.notes.append(f"Ignored {o.said['placement']}: offloading moves weights between RAM and a GPU, "
                           "and this computer has no GPU (diffusers raises \"requires accelerator\").")
            o.placement = None
        if o.te_cpu:
            o.notes.append(f"{o.said['te_cpu']} changes nothing here: everything runs on the CPU.")
            o.te_cpu = None
        o.group_type = None
    elif o.placement == "balanced" and len(machine.gpus) < 2:
        o.notes.append(f"Ignored {o.said['placement']}: spreading a model over GPUs needs two or more, "
                       "and this computer has one.")
        o.placement = None
    return o


def _bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    text = str(value).strip().lower()
    if text in ("true", "yes", "on", "1"):
        return True
    if text in ("false", "no", "off", "0"):
        return False
    return None


def _positive_int(value: Any) -> bool | None:
    """chunk_size: True for a positive whole number, False for 0, None for anything else."""
    if isinstance(value, bool):
        return None
    try:
        n = int(value)
    except (TypeError, ValueError):
        return None
    return None if n < 0 else n > 0


# --- choosing -------------------------------------------------------------------------------

# Knobs tried at each placement, cheapest first: (VAE tiling, text encoder on CPU, VAE in the
# model's precision). Tiling costs seconds of decode; the CPU text encoder half a minute of
# encoding; a bf16 VAE some decode fidelity (diffusers advises fp32).
_KNOBS = ((False, False, False), (True, False, False), (False, True, False), (True, True, False),
          (True, False, True), (True, True, True))


#: Placements that keep FSDP2-sharded experts on the GPU (offload hooks would move their shards).
SHARDED_PLACEMENTS = ("all_on_device", "model_offload")


def _chain(machine: _Machine) -> list[tuple[str, str | None]]:
    """Placements from weakest to strongest memory saving, for this machine."""
    if machine.device == "cpu":
        return [("all_on_device", None), ("disk_offload", "block_level")]
    steps: list[tuple[str, str | None]] = [("all_on_device", None)]
    if len(machine.gpus) >= 2:
        steps.append(("balanced", None))
    steps += [("model_offload", None), ("group_offload", "block_level"), ("group_offload", "leaf_level"),
              ("sequential_offload", None), ("disk_offload", "block_level"), ("disk_offload", "leaf_level")]
    return steps


def _candidates(machine: _Machine, o: _Overrides, precision: str, start: int = 0,
                floor: _Setup | None = None) -> Iterator[_Setup]:
    """Set-ups in the order we prefer them, within the user's settings (and above ``floor``)."""
    chain = _chain(machine)
    default_vae = o.vae_precision or ("fp32" if machine.device == "cuda" else precision)
    for placement, group_type in chain[start:]:
        if o.placement is not None and placement != o.placement:
            continue
        if o.allowed is not None and placement not in o.allowed:
            continue
        if o.group_type is not None and group_type is not None and group_type != o.group_type:
            continue
        knobs: Iterable[tuple[bool, bool, bool]] = _KNOBS
        if placement == "all_on_device" and o.placement is None and o.allowed is None:
            knobs = _KNOBS[:2]     # before the CPU text encoder, model offload (seconds, not minutes)
        for tiling, te_cpu, low_vae in knobs:
            if (machine.device == "cpu" and (te_cpu or low_vae)) or (placement == "disk_offload" and te_cpu):
                continue    # offloaded to disk, the text encoder is read back block by block anyway
            if o.tiling is not None and tiling != o.tiling:
                continue
            if o.te_cpu is not None and te_cpu != o.te_cpu:
                continue
            if low_vae and (o.vae_precision is not None or default_vae == precision):
                continue
            if floor is not None and ((floor.tiling and not tiling) or (floor.te_cpu and not te_cpu)
                                      or (floor.vae_precision == precision and not low_vae
                                          and default_vae != precision)):
                continue
            yield _Setup(placement, group_type, tiling, te_cpu, precision if low_vae else default_vae)


def _auto_precision(machine: _Machine) -> tuple[str, str]:
    gpu = machine.gpu
    if gpu is None:
        return "fp32", "fp32: running on the CPU, where bf16 and fp16 are slow or missing for some layers."
    cc = f"compute capability {gpu.compute_capability[0]}.{gpu.compute_capability[1]}" \
        if gpu.compute_capability else "compute capability unknown"
    if gpu.bf16_supported is False:
        return "fp16", (f"fp16: your {gpu.name} ({cc}) has no fast bf16; fp16 halves the memory of "
                        "fp32 just as bf16 would.")
    if gpu.bf16_supported is None:
        return "bf16", ("bf16: the GPU's compute capability could not be read, so bf16 is assumed; "
                        "set precision to fp16 on GPUs older than the RTX 30 series.")
    return "bf16", f"bf16: your {gpu.name} supports it ({cc}); half the memory of fp32 at the same quality."


def _search(facts: _Facts, machine: _Machine, request: OptimizationRequest, o: _Overrides,
            precision: str, start: int = 0, floor: _Setup | None = None,
            size: tuple[int, int, int] | None = None) -> tuple[_Eval | None, list[_Eval]]:
    """The first set-up that fits, and every one tried."""
    tried = []
    w, h, f = size if size is not None else (request.width, request.height, request.num_frames)
    for setup in _candidates(machine, o, precision, start, floor):
        if request.shard_weights and setup.placement not in SHARDED_PLACEMENTS:
            continue
        ev = _evaluate(facts, machine, request, precision, setup, w, h, f)
        tried.append(ev)
        if ev.fits:
            return ev, tried
    return None, tried


def plan_for(report: ModelReport, hardware: HardwareInfo, request: OptimizationRequest) -> OptimizationPlan:
    """Choose precision, placement, VAE tiling/slicing, attention and text-encoder placement.

    >>> plan = plan_for(report, probe(), OptimizationRequest(832, 480, 81, 50))   # doctest: +SKIP
    >>> plan.placement.value, plan.fits, plan.estimate.peak_vram_mb              # doctest: +SKIP
    ('model_offload', True, 11873.2)
    """
    return _plan(report, hardware, request)


def stronger_plan(plan: OptimizationPlan, report: ModelReport,
                  hardware: HardwareInfo | None = None) -> OptimizationPlan | None:
    """The plan one step stronger than ``plan`` (for one retry after running out of memory).

    ``hardware`` defaults to the machine ``plan`` was made for (``plan.hardware``).

    Steps: all_on_device -> balanced (two or more GPUs) -> model_offload -> group_offload
    (block level) -> group_offload (leaf level) -> sequential_offload -> None. The retry keeps
    every saving ``plan`` had and decodes the VAE in tiles; a placement the user forced is
    dropped (the reason says so). The first stronger step whose estimate fits is returned,
    else the next step with ``fits`` False.
    """
    hardware = hardware if hardware is not None else plan.hardware
    if hardware is None:
        return None
    machine = _machine(hardware)
    chain = _chain(machine)
    current = (plan.placement.value, plan.group_offload_type if plan.placement.value in ("group_offload", "disk_offload")
               else None)
    if current not in chain:
        return None
    on_disk = current[0] == "disk_offload"   # the retry stays on its side of disk offloading (see _plan)
    if not any((p == "disk_offload") == on_disk for p, _ in chain[chain.index(current) + 1:]):
        return None
    floor = _Setup(plan.placement.value, plan.group_offload_type, True, bool(plan.text_encoder_on_cpu.value),
                   plan.vae_precision.value)
    return _plan(report, hardware, plan.request, start=chain.index(current) + 1, floor=floor,
                 retry_from=plan)


def _plan(report: ModelReport, hardware: HardwareInfo, request: OptimizationRequest, start: int = 0,
          floor: _Setup | None = None, retry_from: OptimizationPlan | None = None) -> OptimizationPlan:
    if report.models:
        raise ValueError("plan one model at a time: this report holds several (report.models)")
    facts = _facts(report)
    machine = _machine(hardware)
    o = _parse_overrides(request.overrides, machine)
    if retry_from is not None:      # the retry decides placement and tiling itself
        for attr in ("placement", "tiling"):
            if attr in o.said:
                o.notes.append(f"Ran out of memory with {_PLACEMENT_NAMES[retry_from.placement.value].lower()}; "
                               f"{o.said.pop(attr)} set aside for the retry.")
        o.placement = o.allowed = o.tiling = None
        # GPU memory ran out: offloading to disk saves RAM, not GPU memory, so the retry stays on its side of it
        on_disk = retry_from.placement.value == "disk_offload"
        o.allowed = tuple(p for p in PLACEMENTS if (p == "disk_offload") == on_disk)

    auto_precision, precision_reason = _auto_precision(machine)
    precision = o.precision or auto_precision
    if o.precision:
        precision_reason = f"{precision} ({o.said['precision']}, your setting)."
        if machine.gpu is not None and precision == "bf16" and machine.gpu.bf16_supported is False:
            precision_reason = (f"bf16 ({o.said['precision']}, your setting); your {machine.gpu.name} "
                                "has no fast bf16, so expect it to be slow.")
    found, tried = _search(facts, machine, request, o, precision, start, floor)
    on_disk = found is not None and found.setup.placement == "disk_offload"
    if (found is None or (on_disk and o.placement is None)) and machine.device == "cpu" and o.precision is None:
        in_ram, _ = _search(facts, machine, request, replace(o, allowed=("all_on_device",)), "bf16")
        fallback = in_ram or (None if found is not None else _search(facts, machine, request, o, "bf16")[0])
        if fallback is not None:
            need = tried[0].estimate.peak_ram_mb if tried else 0.0
            precision, found = "bf16", fallback
            precision_reason = (f"bf16: in fp32 the model needs {_gb(need)} of RAM and this computer has "
                                f"{_gb(machine.usable_ram or 0)} available; bf16 halves the weights "
                                "(slower on most CPUs).")
    chosen = found or _least_memory(tried) or _evaluate(
        facts, machine, request, precision, _Setup("all_on_device", vae_precision=o.vae_precision or precision))
    refusal = remedy = None
    if found is None:
        refusal, remedy = _refusal(facts, machine, request, o, precision, chosen)
    plan = _build(facts, machine, request, o, chosen, precision, precision_reason, found is not None,
                  refusal, remedy, retry_from)
    speed = plan_speed(report, hardware, request)
    return replace(plan, hardware=hardware, speed=speed, attention_backend=Choice(speed.attention.value,
                   speed.attention.reason), notes=plan.notes + speed.notes)


def _least_memory(tried: Sequence[_Eval]) -> _Eval | None:
    """Among set-ups that do not fit, the one closest to fitting (RAM first, then disk space, then VRAM)."""
    if not tried:
        return None
    return min(tried, key=lambda e: (not e.fits_ram, not e.fits_disk, e.estimate.peak_vram_mb, e.estimate.peak_ram_mb))


# --- refusals -------------------------------------------------------------------------------

def _refusal(facts: _Facts, machine: _Machine, request: OptimizationRequest, o: _Overrides,
             precision: str, best: _Eval) -> tuple[str, str]:
    """Why nothing fits, and the nearest request that would (checked with the same arithmetic)."""
    r = request
    at = f"At {r.width}x{r.height} with {r.num_frames} frames, {facts.name}"
    short_of_disk = _short_of_disk(facts, machine, request, o, precision)
    if short_of_disk is not None:
        return short_of_disk
    e = best.estimate
    if machine.device == "cpu":
        problem = (f"On the CPU, {facts.name} needs about {_gb(e.peak_ram_mb)} of RAM ({precision} weights "
                   f"{_gb(sum(e.weights_mb.values()))}); {machine.ram_words}.")
        return problem, ("Use a computer with more memory or an NVIDIA GPU, or a smaller model (Wan2.1 T2V-1.3B)"
                         + _smaller_quant(facts, machine, e) + ".")
    gpu = machine.gpus[0]
    usable = machine.usable_vram[gpu.index]
    has = f"your GPU has {_gb(gpu.total_mb)} ({_gb(usable)} usable)"
    ram_bound = [ev for ev in _search(facts, machine, request, o, precision)[1] if ev.fits_vram and not ev.fits_ram]
    if ram_bound and best.fits_ram:   # an offload would fit the GPU: RAM is what is short
        best = min(ram_bound, key=lambda ev: ev.estimate.peak_ram_mb)
        e = best.estimate
    if not best.fits_ram and best.fits_vram:
        keeps = ("which keeps address space for every weight (ulimit -v counts it even when the weights are on disk)"
                 if best.setup.placement == "disk_offload" else "which keeps the weights in RAM")
        problem = (f"{at} needs {_gb(e.peak_ram_mb)} of RAM with {_placement_words(best.setup)}, {keeps}; "
                   f"{machine.ram_words}.")
        return problem, (f"Close other programs to free RAM, use a computer with at least "
                         f"{_gb(e.peak_ram_mb / (1 - RAM_MARGIN))} of RAM, or a smaller model"
                         + _smaller_quant(facts, machine, e) + ".")
    problem = (f"{at} needs about {_gb(e.peak_vram_mb)} of GPU memory even with "
               f"{_placement_words(best.setup)}; {has}.")
    if not best.fits_ram:
        problem += (f" Offloading would also need {_gb(e.peak_ram_mb)} of RAM "
                    f"({_gb(machine.usable_ram or 0)} available).")
    binding = ("placement", "tiling", "te_cpu", "vae_precision", "group_type")
    bound = [v for k, v in o.said.items() if k in binding]
    if bound:
        free = _Overrides(precision=o.precision)
        relaxed, _ = _search(facts, machine, request, free, precision)
        if relaxed is not None:
            what = _placement_words(relaxed.setup)
            keys = ", ".join(dict.fromkeys(b.split("=")[0] for b in bound))
            return (problem + f" Without your setting {', '.join(bound)}, {what} fits "
                    f"(about {_gb(relaxed.estimate.peak_vram_mb)})."), \
                f"Remove {keys} from the optimization settings, or set it to auto."
        o = _Overrides(precision=o.precision)
    suggestion = _what_fits(facts, machine, request, o, precision)
    if suggestion is not None:
        (w, h, f), ev = suggestion
        return (problem + f" {w}x{h} with {f} frames fits with {_placement_words(ev.setup)} "
                f"(about {_gb(ev.estimate.peak_vram_mb)})."), \
            f"Generate at {w}x{h} with {f} frames, or use a GPU with more memory."
    w, h = _candidate_sizes(facts, request)[-1]
    _, tried = _search(facts, machine, request, o, precision, size=(w, h, 5))
    smallest = _least_memory(tried)
    if smallest is not None and smallest.fits_ram:
        problem += (f" Nothing smaller fits either: {w}x{h} with 5 frames needs about "
                    f"{_gb(smallest.estimate.peak_vram_mb)} with {_placement_words(smallest.setup)}.")
    return problem, "Use a GPU with more memory, a computer with more RAM, or a smaller model."


def _short_of_disk(facts: _Facts, machine: _Machine, request: OptimizationRequest, o: _Overrides,
                   precision: str) -> tuple[str, str] | None:
    """When offloading to disk would fit RAM and the GPU but the offload folder's disk is too full: why, and the remedy."""
    if o.placement not in (None, "disk_offload") or (o.allowed is not None and "disk_offload" not in o.allowed):
        return None
    _, tried = _search(facts, machine, request, replace(o, placement="disk_offload"), precision)
    short = [ev for ev in tried if ev.fits_vram and ev.fits_ram and not ev.fits_disk]
    if not short:
        return None
    from core.run.disk_offload import offload_root
    from core.run.memory_estimate import DISK_MARGIN_MB
    in_ram = [ev for ev in _search(facts, machine, request, replace(o, placement=None, allowed=None), precision)[1]
              if ev.setup.placement != "disk_offload" and ev.fits_vram]
    leanest = min(in_ram, key=lambda ev: ev.estimate.peak_ram_mb) if in_ram else short[0]
    need_ram = leanest.estimate.peak_ram_mb
    disk = short[0].estimate.disk_mb
    problem = (f"{facts.name} needs about {_gb(need_ram)} of RAM with its weights in memory; {machine.ram_words}. "
               f"Offloading the weights to disk would fit, but it writes {_gb(disk)} to {offload_root()}, whose disk "
               f"has {_gb(machine.disk_free_mb or 0)} free.")
    lack = disk + DISK_MARGIN_MB - (machine.disk_free_mb or 0)
    return problem, (f"Free at least {_gb(lack)} on that disk, or set offload_dir in config.yaml to a folder on a "
                     f"disk with {_gb(disk + DISK_MARGIN_MB)} free, or use a smaller model"
                     + _smaller_quant(facts, machine, leanest.estimate) + ".")


def _smaller_quant(facts: _Facts, machine: _Machine, e: MemoryEstimate) -> str:
    """", or a GGUF of the transformer that fits: Q4_K_M (about 8.8 GB of weights)" when one would."""
    if machine.usable_ram is None or not facts.experts:
        return ""
    experts = sum(e.weights_mb.get(n, 0.0) for n in facts.experts)
    budget = (machine.usable_ram - (e.peak_ram_mb - experts)) / len(facts.experts)
    words = smaller_quant_words(facts.parameters.get(facts.experts[0]), budget) if budget > 0 else ""
    each = " each" if len(facts.experts) > 1 else ""
    return f", or a GGUF of the transformer{each} that fits in RAM: {words}" if words else ""


def _candidate_sizes(facts: _Facts, request: OptimizationRequest) -> list[tuple[int, int]]:
    """The requested size, then the model's other sizes of the same orientation, smaller first after."""
    landscape = request.width >= request.height
    own = [(w, h) for (w, h) in facts.sizes
           if (w >= h) == landscape and w * h < request.width * request.height]
    if not own:
        d = facts.token_divisor
        own = [(832, 480) if landscape else (480, 832)]
        own = [(w // d * d, h // d * d) for w, h in own if w * h < request.width * request.height]
    return [(request.width, request.height)] + sorted(set(own), key=lambda s: -(s[0] * s[1]))


def _frames_down(frames: int, lowest: int) -> list[int]:
    top = (max(frames, 1) - 1) // 4 * 4 + 1
    return list(range(top, lowest - 1, -4))


def _what_fits(facts: _Facts, machine: _Machine, request: OptimizationRequest, o: _Overrides,
               precision: str) -> tuple[tuple[int, int, int], _Eval] | None:
    for lowest in (MIN_SUGGESTED_FRAMES, 5):
        for w, h in _candidate_sizes(facts, request):
            for f in _frames_down(request.num_frames, min(lowest, request.num_frames)):
                if (w, h, f) == (request.width, request.height, request.num_frames):
                    continue
                found, _ = _search(facts, machine, request, o, precision, size=(w, h, f))
                if found is not None:
                    return (w, h, f), found
    return None


# --- the plan and its sentences -------------------------------------------------------------

_PLACEMENT_NAMES = {"all_on_device": "All on the GPU", "model_offload": "Model offload",
                    "group_offload": "Group offload", "sequential_offload": "Sequential offload",
                    "balanced": "Balanced over the GPUs", "disk_offload": "Offload to disk"}
_STAGE_WORDS = {"encode": "encoding", "denoise": "denoising", "decode": "decoding"}
_LABELS = {"precision": "Precision", "vae_precision": "VAE precision", "placement": "Placement",
           "vae_tiling": "VAE tiling", "vae_slicing": "VAE slicing", "attention_backend": "Attention",
           "text_encoder_on_cpu": "Text encoder on the CPU"}


def _placement_words(setup: _Setup) -> str:
    words = {"all_on_device": "everything on the GPU", "model_offload": "model offload",
             "group_offload": f"group offload ({(setup.group_type or 'block_level').replace('_', ' ')})",
             "sequential_offload": "sequential offload", "balanced": "the model spread over the GPUs",
             "disk_offload": "the weights offloaded to disk"}
    parts = [words[setup.placement]] + [w for w, on in (("VAE tiling", setup.tiling),
                                                         ("the text encoder on the CPU", setup.te_cpu)) if on]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _build(facts: _Facts, machine: _Machine, request: OptimizationRequest, o: _Overrides, ev: _Eval,
           precision: str, precision_reason: str, fits: bool, refusal: str | None, remedy: str | None,
           retry_from: OptimizationPlan | None) -> OptimizationPlan:
    s, e = ev.setup, ev.estimate
    cpu = machine.device == "cpu"
    gpu = machine.gpu
    usable = machine.usable_vram[gpu.index] if gpu is not None else None

    # VAE precision
    vae_m = e.weights_mb.get("vae", 0.0)
    vae_params = facts.parameters.get("vae", 0)
    if o.vae_precision:
        vae_reason = f"{s.vae_precision} ({o.said['vae_precision']}, your setting)."
    elif cpu:
        vae_reason = f"{s.vae_precision}, like the rest of the model on the CPU."
    elif s.vae_precision == "fp32":
        vae_reason = (f"fp32: diffusers advises the Wan VAE in fp32 for clean decodes; it costs only "
                      f"{_gb(vae_m)} ({_count(vae_params)} parameters).")
    else:
        fp32 = _vae_activation_mb(facts, request.width, request.height, request.num_frames, True, "fp32")
        vae_reason = (f"{s.vae_precision}: even tiled, an fp32 decode would need {_gb(fp32 + 2 * vae_m)}, "
                      f"more than fits beside the rest; {s.vae_precision} halves it.")

    # placement
    placement_reason = _placement_reason(facts, machine, o, ev, precision, usable, fits)
    if retry_from is not None:
        placement_reason = (f"{placement_reason} Chosen for the retry after running out of memory with "
                            f"{_PLACEMENT_NAMES[retry_from.placement.value].lower()}.")

    # tiling and slicing
    untiled = _vae_activation_mb(facts, request.width, request.height, request.num_frames, False, s.vae_precision)
    tiled = _vae_activation_mb(facts, request.width, request.height, request.num_frames, True, s.vae_precision)
    size = f"{request.width}x{request.height} with {request.num_frames} frames"
    if "tiling" in o.said:
        tiling_reason = (f"{'On' if s.tiling else 'Off'} ({o.said['tiling']}, your setting): "
                         f"decoding {size} needs about {_gb(tiled if s.tiling else untiled)}.")
    elif retry_from is not None and s.tiling and not retry_from.vae_tiling.value:
        tiling_reason = (f"On for the retry after running out of memory: decoding {size} in 256 px tiles "
                         f"needs about {_gb(tiled)} instead of {_gb(untiled)}.")
    elif s.tiling:
        tiling_reason = (f"On: decoding {size} in one piece would need {_gb(untiled)}; "
                         f"in 256 px tiles about {_gb(tiled)}.")
    else:
        tiling_reason = f"Off: decoding {size} in one piece needs about {_gb(untiled)}, which fits."
    slicing = o.slicing if o.slicing is not None else s.tiling
    if "slicing" in o.said:
        slicing_reason = f"{'On' if slicing else 'Off'} ({o.said['slicing']}, your setting)."
    else:
        slicing_reason = (f"{'On' if slicing else 'Off'}: slicing decodes one video of a batch at a time; "
                          "with one video per prompt it changes nothing, so it follows tiling.")

    attention = Choice("native", "native: PyTorch's built-in attention (SDPA).")   # core.run.speed decides

    # text encoder
    te_m = e.weights_mb.get("text_encoder", 0.0)
    if cpu:
        te_reason = "No: everything runs on the CPU already."
    elif "te_cpu" in o.said:
        te_reason = f"{'Yes' if s.te_cpu else 'No'} ({o.said['te_cpu']}, your setting)."
    elif s.te_cpu and s.placement == "balanced":
        te_reason = (f"Yes: no GPU has room for the text encoder ({_gb(te_m)} in {precision}) beside the "
                     "components placed before it; it encodes the prompt on the CPU (about half a minute) "
                     "and only the embeddings move.")
    elif s.te_cpu:
        on_gpu = _evaluate(facts, machine, request, precision, replace(s, te_cpu=False))
        te_reason = (f"Yes: with the text encoder ({_gb(te_m)} in {precision}) on the GPU the peak would be "
                     f"{_gb(on_gpu.estimate.peak_vram_mb)} ({_gb(usable)} usable); encoding the prompt on the "
                     "CPU takes longer (about half a minute) and only the embeddings move.")
    elif te_m:
        when = "beside the rest" if s.placement in ("all_on_device", "balanced") else "while it encodes the prompt"
        te_reason = f"No: the text encoder ({_gb(te_m)} in {precision}) fits on the GPU {when}."
    else:
        te_reason = "No: this model has no text encoder to place."

    notes = list(o.notes)
    if s.placement == "disk_offload" and o.placement is None:
        in_ram = _evaluate(facts, machine, request, precision,
                           replace(s, placement="model_offload" if machine.device == "cuda" else "all_on_device"))
        quant = _smaller_quant(facts, machine, in_ram.estimate)
        notes.append("Faster than offloading to disk: a computer with more RAM" + (quant or ", or a smaller model")
                     + ".")
    if request.inputs:
        notes.append(f"Inputs counted: {request.inputs.words()}; their decoded frames take about "
                     f"{_gb(request.inputs.decoded_mb)} of RAM.")
    if not facts.wan:
        notes.append("Only the weights are counted: activations are estimated for Wan models only.")
    if facts.assumed:
        notes.append(f"Counted {', '.join(facts.assumed)} at the usual size: the model folder does not have "
                     f"{'it' if len(facts.assumed) == 1 else 'them'}.")
    device_map = ev.device_map if s.placement == "balanced" else None
    return OptimizationPlan(
        device=machine.device,
        precision=Choice(precision, precision_reason),
        vae_precision=Choice(s.vae_precision, vae_reason),
        placement=Choice(s.placement, placement_reason),
        vae_tiling=Choice(s.tiling, tiling_reason),
        vae_slicing=Choice(slicing, slicing_reason),
        attention_backend=attention,
        text_encoder_on_cpu=Choice(s.te_cpu, te_reason),
        group_offload_type=s.group_type if s.placement in ("group_offload", "disk_offload") else None,
        estimate=e, fits=fits, refusal=refusal, request=request,
        gpu_index=gpu.index if gpu is not None else None,
        usable_vram_mb=usable, usable_ram_mb=machine.usable_ram,
        device_map=device_map, max_memory_mb=ev.max_memory if s.placement == "balanced" else None,
        notes=tuple(notes), remedy=remedy)


def _placement_reason(facts: _Facts, machine: _Machine, o: _Overrides, ev: _Eval, precision: str,
                      usable: float | None, fits: bool) -> str:
    s, e = ev.setup, ev.estimate
    total = sum(e.weights_mb.values())
    if not fits:
        where = f"{_gb(e.peak_vram_mb)} on the GPU and " if machine.device == "cuda" else ""
        return (f"{_PLACEMENT_NAMES[s.placement]}: the closest this machine comes, at about {where}"
                f"{_gb(e.peak_ram_mb)} of RAM; it does not fit (see why below).")
    if s.placement == "disk_offload":
        return _disk_reason(facts, machine, o, ev, precision, total)
    if machine.device == "cpu":
        base = (f"All on the CPU: this computer has no GPU that torch can use, so the model runs in RAM "
                f"({_gb(total)} of weights in {precision}).")
        return base
    gpu = machine.gpus[0]
    has = f"your GPU has {_gb(gpu.total_mb)} ({_gb(usable or 0)} usable)"
    name = _PLACEMENT_NAMES[s.placement]
    if "placement" in o.said and (o.placement == s.placement or o.allowed):
        return f"{name} ({o.said['placement']}, your setting): peak about {_gb(e.peak_vram_mb)}; {has}."
    experts = [n for n in facts.experts]
    expert_m = max((e.weights_mb[n] for n in experts), default=0.0)
    what = _weights_phrase(facts)
    if s.placement == "all_on_device":
        return (f"{name}: the weights ({_gb(total - (e.weights_mb.get('text_encoder', 0.0) if s.te_cpu else 0.0))}"
                f" in {precision}) and a denoising step ({_gb(e.activations_mb)}) fit; {has}.")
    if s.placement == "balanced":
        spread = ", ".join(f"{n} on GPU {d.split(':')[1]}" for n, d in (ev.device_map or {}).items() if d != "cpu")
        return (f"{name}: {what} need {_gb(total)}, more than one GPU's {_gb(usable or 0)} usable; "
                f"{spread}.")
    if s.placement == "model_offload":
        moved = {k: v for k, v in e.weights_mb.items() if not (k == "text_encoder" and s.te_cpu)}
        largest = max(moved, key=lambda k: moved[k])
        return (f"{name}: {what} need {_gb(total)} in {precision}; {has}. Each part moves to the GPU only "
                f"while it runs (the largest, {largest}, {_gb(e.weights_mb[largest])}): "
                f"peak about {_gb(e.peak_vram_mb)}.")
    one = "one expert" if len(experts) > 1 else "the transformer"
    if s.placement == "group_offload":
        unit = "a block at a time" if s.group_type != "leaf_level" else "a layer at a time"
        return (f"{name}: {one} alone needs {_gb(expert_m)} in {precision} plus {_gb(e.activations_mb)} for a "
                f"denoising step; {has}. Its weights stream from RAM {unit}: peak about {_gb(e.peak_vram_mb)}.")
    return (f"{name}: even block by block it does not fit ({has}); every layer moves to the GPU only while "
            f"it runs (slowest): peak about {_gb(e.peak_vram_mb)}.")


def _disk_reason(facts: _Facts, machine: _Machine, o: _Overrides, ev: _Eval, precision: str, total: float) -> str:
    from core.run.disk_offload import offload_root
    e = ev.estimate
    mine = f" ({o.said['placement']}, your setting)" if o.placement == "disk_offload" else ""
    phrase = _weights_phrase(facts)
    why = "" if mine else (f" {phrase[:1].upper() + phrase[1:]} need {_gb(total)} in {precision} and would not fit "
                           f"in RAM ({machine.ram_words}).")
    free = f", {_gb(machine.disk_free_mb)} free" if machine.disk_free_mb is not None else ""
    unit = "a layer at a time" if ev.setup.group_type == "leaf_level" else "a block at a time"
    where = "to the GPU" if machine.device == "cuda" else "into RAM"
    return (f"Offload to disk{mine}:{why} The transformer and text encoder are written to {offload_root()} "
            f"({_gb(e.disk_mb)}"
            f"{free}) as soon as it is loaded, and read back {where} {unit} while it runs: peak RAM about "
            f"{_gb(e.peak_ram_mb)}. The slowest placement: every step reads the transformer from disk (an SSD helps); "
            "the files are deleted when the model is unloaded.")


def _weights_phrase(facts: _Facts) -> str:
    n = len(facts.experts)
    size = f"{facts.parameters[facts.experts[0]] / 1e9:.0f}B" if facts.experts else ""
    if n == 2:
        return f"the two {size} experts, the text encoder and the VAE"
    return "the transformer, text encoder and VAE"


# --- formatting -----------------------------------------------------------------------------

_gb = format_mib      # MiB as a person reads it: "681 MB", "3.4 GB", "27 GB"


def _count(n: int) -> str:
    return f"{n / 1e9:.1f} B" if n >= 1e9 else f"{n / 1e6:.0f} M" if n >= 1e6 else f"{n:,}"


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
