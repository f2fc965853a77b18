"""The speed choice of a plan: step cache per expert, attention kernel, compiled blocks, each with its reason.

Usage::

    from core.run.speed import plan_speed
    speed = plan_speed(report, hardware, request)      # request.overrides may hold the knobs below
    speed.preset.value, speed.preset.reason            # "balanced", "Balanced: ..."
    speed.caches["transformer"].kind                   # "magcache" (per expert: transformer, transformer_2)
    speed.attention.value, speed.compile.value         # "flash", False
    speed.notes                                        # settings that were ignored, and why

The knobs, in the optimization_config (``OptimizationRequest.overrides``):

- ``speed``: ``quality`` (every step computed, PyTorch's attention: as before), ``balanced``,
  ``fast`` or ``auto`` (what this machine runs best).
- ``cache``: ``none``, ``magcache``, ``fbcache`` (First Block Cache), ``taylorseer``;
  ``cache_threshold`` and ``cache_threshold_2`` (the low-noise expert of an A14B model).
- ``attention_backend``: a diffusers attention backend (``native``, ``flash``, ``sage``,
  ``_native_cudnn``, ...); ``compile``: true/false (``transformer.compile_repeated_blocks()``).

A knob this machine cannot run (a kernel whose package is not installed or whose GPU is too
old, compile without a GPU, triton or a C compiler, a threshold out of range) is ignored with
a note, so a run never fails half-way for it. Runs of 8 steps or fewer (distilled models and
LoRAs) run without a step cache. Pure planning: no torch, no diffusers (the package checks use
``importlib.util.find_spec``). :mod:`core.run.speed_run` applies the result to the loaded model.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

PRESETS = ("quality", "balanced", "fast", "auto")
CACHE_KINDS = ("none", "magcache", "fbcache", "taylorseer")
SPEED_KEYS = ("speed", "cache", "cache_threshold", "cache_threshold_2", "compile")
EXPERT_NAMES = ("transformer", "transformer_2")
#: Runs this short are distilled (Lightning, lightx2v, CausVid LoRAs): every step counts.
FEW_STEPS = 8
#: Words in a LoRA's name that mark a step-distillation LoRA.
DISTILL_WORDS = ("lightx2v", "lightning", "distill", "causvid", "4step", "4steps", "8step", "cfg_step", "turbo")

# --- defaults, from what the cache authors publish for Wan (not tuned to our bench) ---------
# MagCache (Ma et al., NeurIPS 2025; github.com/Zehong-Ma/MagCache, MagCache4Wan2.1/README.md):
# "E012K2R02" = threshold 0.12, at most K=2 skipped steps in a row, the first 20% of steps always
# computed: their Wan2.1-T2V-1.3B setting (189 s -> 87 s, 2.2x). "E024K6R02" (0.24, K=6, 0.2) is
# their Wan2.1 14B T2V/I2V setting (60 min -> 21.7 min, 2.8x).
MAGCACHE_BALANCED = {"threshold": 0.12, "max_skip_steps": 2, "retention_ratio": 0.2}
MAGCACHE_FAST = {"threshold": 0.24, "max_skip_steps": 6, "retention_ratio": 0.2}
# First Block Cache (ParaAttention, chengzeyi): the residual-difference threshold. diffusers'
# FirstBlockCacheConfig default is 0.05; for Wan2.1 the published FBCache ports report 0.04-0.07
# usable (testdummyvt/diffsynth-wan-cache: 14B 0.06 = 1.85x, 0.09 "not usable"). We take 0.05.
FBCACHE_THRESHOLD = 0.05
# TaylorSeer (Liu et al., arXiv 2503.06923): a full pass every N=5 steps after 3 warm-up steps,
# first-order prediction; diffusers' TaylorSeerCacheConfig defaults, the paper's video setting.
TAYLORSEER = {"cache_interval": 5, "disable_cache_before_step": 3, "max_order": 1}
#: Thresholds outside these bounds skip nearly everything (or nothing): ignored with a note.
THRESHOLD_RANGE = {"magcache": (0.0, 0.5), "fbcache": (0.0, 0.5)}


@dataclass(frozen=True)
class Knob:
    """One speed decision and the sentence that explains it (same shape as optimize.Choice)."""

    value: Any
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "reason": self.reason}


@dataclass(frozen=True)
class CacheSetting:
    """The step cache of one transformer (expert). ``calibrate``: a MagCache calibration run."""

    kind: str = "none"
    threshold: float | None = None
    max_skip_steps: int | None = None
    retention_ratio: float | None = None
    cache_interval: int | None = None
    calibrate: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None and v is not False}

    def words(self) -> str:
        if self.kind == "magcache":
            head = (f"MagCache (threshold {self.threshold:g}, at most {self.max_skip_steps} steps skipped in a row, "
                    f"the first {self.retention_ratio:.0%} of steps always computed)")
            return head + (", calibrating" if self.calibrate else "")
        if self.kind == "fbcache":
            return f"First Block Cache (threshold {self.threshold:g})"
        if self.kind == "taylorseer":
            return f"TaylorSeer (a full pass every {self.cache_interval} steps, predicted in between)"
        return "no step cache"


@dataclass(frozen=True)
class Kernels:
    """What this machine can run: packages (found, not imported) and a C compiler for compile."""

    flash_attn: bool = False
    flash_attn_3: bool = False
    sageattention: bool = False
    xformers: bool = False
    triton: bool = False
    compiler: str | None = None

    @classmethod
    def probe(cls) -> Kernels:
        """Look for the packages and a C compiler on PATH (no import, no compile)."""
        def found(name: str) -> bool:
            try:
                return importlib.util.find_spec(name) is not None
            except (ImportError, ValueError):
                return False
        names = ("cl",) if os.name == "nt" else ("cc", "gcc", "clang")
        compiler = next((shutil.which(n) for n in names if shutil.which(n)), None)
        triton = found("triton")
        return cls(flash_attn=found("flash_attn"), flash_attn_3=found("flash_attn_interface"),
                   sageattention=found("sageattention"), xformers=found("xformers"), triton=triton,
                   compiler=compiler)

    @classmethod
    def of(cls, hardware: Any) -> Kernels:
        """The machine's kernels: ``hardware.kernels`` when the caller described them, else probed."""
        given = getattr(hardware, "kernels", None)
        if isinstance(given, Kernels):
            return given
        if isinstance(given, Mapping):
            return cls(**{k: v for k, v in given.items() if k in cls.__dataclass_fields__})
        return cls.probe()


@dataclass(frozen=True)
class SpeedPlan:
    """The speed part of an OptimizationPlan: the preset and each knob, with reasons."""

    preset: Knob
    cache: Knob                                    # value: the kind(s) in words, e.g. "magcache"
    attention: Knob
    compile: Knob
    caches: Mapping[str, CacheSetting] = field(default_factory=dict)    # per expert component
    notes: tuple[str, ...] = ()

    @property
    def choices(self) -> dict[str, Knob]:
        return {"speed": self.preset, "cache": self.cache, "compile": self.compile}

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.preset.value, "reason": self.preset.reason, "cache": self.cache.to_dict(),
                "caches": {k: c.to_dict() for k, c in self.caches.items()},
                "attention": self.attention.value, "compile": self.compile.to_dict(), "notes": list(self.notes)}


# --- attention backends: what each needs ----------------------------------------------------

# name -> (package attribute of Kernels or None, lowest compute capability, what it brings)
BACKENDS: dict[str, tuple[str | None, tuple[int, int], str]] = {
    "native": (None, (0, 0), "PyTorch's scaled_dot_product_attention"),
    "_native_cudnn": (None, (8, 0), "PyTorch's cuDNN attention kernel"),
    "_native_flash": (None, (8, 0), "PyTorch's built-in FlashAttention kernel"),
    "_native_efficient": (None, (5, 0), "PyTorch's memory-efficient attention kernel"),
    "_native_math": (None, (0, 0), "PyTorch's reference attention (slowest)"),
    "flash": ("flash_attn", (8, 0), "FlashAttention 2"),
    "flash_varlen": ("flash_attn", (8, 0), "FlashAttention 2 (variable length)"),
    "_flash_3": ("flash_attn_3", (9, 0), "FlashAttention 3 (Hopper)"),
    "sage": ("sageattention", (8, 0), "SageAttention (8-bit Q/K, about 2x FlashAttention 2)"),
    "sage_varlen": ("sageattention", (8, 0), "SageAttention (variable length)"),
    "xformers": ("xformers", (5, 0), "xformers memory-efficient attention"),
    "flex": (None, (8, 0), "PyTorch flex attention"),
}
PACKAGE_NAMES = {"flash_attn": "flash-attn", "flash_attn_3": "flash-attn 3 (flash_attn_interface)",
                 "sageattention": "sageattention", "xformers": "xformers"}


def backend_problem(name: str, device: str, capability: tuple[int, int] | None, kernels: Kernels) -> str | None:
    """Why ``name`` cannot run here, or None when it can."""
    if name not in BACKENDS:
        return f"it is not an attention backend this app knows (use one of {', '.join(sorted(BACKENDS))})"
    package, lowest, _ = BACKENDS[name]
    if device != "cuda" and name not in ("native", "_native_math"):
        return "that attention kernel needs an NVIDIA GPU; PyTorch's built-in attention runs on the CPU"
    if package is not None and not getattr(kernels, package):
        return f"the {PACKAGE_NAMES[package]} package is not installed (python -m core doctor says how)"
    if capability is not None and capability < lowest:
        return (f"it needs a GPU of compute capability {lowest[0]}.{lowest[1]} or newer; "
                f"this one is {capability[0]}.{capability[1]}")
    return None


def compile_problem(device: str, kernels: Kernels) -> str | None:
    """Why torch.compile of the transformer blocks cannot help here, or None."""
    if device != "cuda":
        return ("compiling targets the GPU; on the CPU its minutes of warm-up cost more than a "
                "generation gains")
    if not kernels.triton:
        return "torch.compile needs triton for the GPU, and it is not installed (python -m core doctor says how)"
    if not kernels.compiler:
        return "torch.compile needs a C compiler (gcc, clang or Visual Studio's cl), and none was found on PATH"
    return None


# --- planning -------------------------------------------------------------------------------

def plan_speed(report: Any, hardware: Any, request: Any, *, experts: tuple[str, ...] | None = None,
               calibrations: Mapping[str, Any] | None = None) -> SpeedPlan:
    """The speed choice for one request on one machine, each knob with its reason.

    ``experts``: the transformer components (default: from the report: ``transformer`` and, for
    A14B, ``transformer_2``). ``calibrations``: expert -> stored MagCache calibration (default:
    looked up in the history database by the model's fingerprint).

    >>> plan_speed(report, probe(), OptimizationRequest(832, 480, 81, 50, overrides={"speed": "fast"}))  # doctest: +SKIP
    """
    raw = dict(getattr(request, "overrides", {}) or {})
    notes: list[str] = []
    device = "cuda" if getattr(hardware, "gpus", None) else "cpu"
    gpu = _gpu(hardware)
    capability = gpu.compute_capability if gpu is not None else None
    kernels = Kernels.of(hardware)
    experts = experts or _experts(report)

    preset = _word(raw.get("speed"), PRESETS, "speed", notes) or "quality"
    said_preset = "speed" in raw and _word(raw.get("speed"), PRESETS, "speed", []) is not None

    # attention: the fastest kernel the preset allows and this machine runs
    attention = _attention(preset, raw.get("attention_backend"), device, capability, kernels, notes)
    compile_knob = _compile(preset, raw.get("compile"), device, kernels, notes)

    # the step cache
    kind = _word(raw.get("cache"), CACHE_KINDS, "cache", notes)
    steps = int(getattr(request, "num_inference_steps", 0) or 0)
    loras = _distill_loras(request)
    if kind is None:
        kind = {"quality": "none", "balanced": "magcache", "fast": "magcache", "auto": "magcache"}[preset]
    level = MAGCACHE_FAST if preset == "fast" else MAGCACHE_BALANCED
    thresholds = {name: _threshold(raw, key, kind, notes)
                  for name, key in zip(EXPERT_NAMES, ("cache_threshold", "cache_threshold_2"), strict=True)}
    if thresholds["transformer_2"] is None:
        thresholds["transformer_2"] = thresholds["transformer"]
    caches: dict[str, CacheSetting] = {}
    if kind != "none" and (steps <= FEW_STEPS or loras):
        why = (f"a distill LoRA ({', '.join(loras)})" if loras else f"a {steps}-step run")
        cache = Knob("none", f"Off: {why} changes the video a lot at every step (distilled models and LoRAs "
                             f"such as Lightning or lightx2v run 4-8 steps); skipping any would cost quality "
                             f"and save little, so every step is computed.")
        kind = "none"
    else:
        if calibrations is None and kind == "magcache":
            calibrations = _stored_calibrations(report)
        for name in experts:
            caches[name] = _setting(kind, thresholds.get(name), level, (calibrations or {}).get(name))
        cache = Knob(kind, _cache_reason(kind, preset, caches, experts, calibrations or {}))
    preset_reason = _preset_reason(preset, said_preset, device)
    return SpeedPlan(preset=Knob(preset, preset_reason), cache=cache, attention=attention,
                     compile=compile_knob, caches=caches, notes=tuple(notes))


def _setting(kind: str, threshold: float | None, level: Mapping[str, Any], calibration: Any) -> CacheSetting:
    if kind == "magcache":
        return CacheSetting("magcache", threshold if threshold is not None else level["threshold"],
                            level["max_skip_steps"], level["retention_ratio"], calibrate=calibration is None)
    if kind == "fbcache":
        return CacheSetting("fbcache", threshold if threshold is not None else FBCACHE_THRESHOLD)
    if kind == "taylorseer":
        return CacheSetting("taylorseer", cache_interval=TAYLORSEER["cache_interval"])
    return CacheSetting()


def _cache_reason(kind: str, preset: str, caches: Mapping[str, CacheSetting], experts: tuple[str, ...],
                  calibrations: Mapping[str, Any]) -> str:
    if kind == "none":
        return "Off: every step is computed (quality)." if preset == "quality" else "Off (cache=none, your setting)."
    first = caches[experts[0]]
    both = " on both experts" if len(experts) > 1 else ""
    differ = len({c.threshold for c in caches.values()}) > 1
    per = (" (" + ", ".join(f"{'high' if n == 'transformer' else 'low'}-noise expert {c.threshold:g}"
                            for n, c in caches.items()) + ")") if differ else ""
    text = f"{first.words()}{both}{per}"
    if kind == "magcache":
        source = ("the MagCache authors' Wan2.1 14B setting E024K6R02 (2.8x there)" if first.max_skip_steps == 6
                  else "the MagCache authors' Wan2.1 1.3B setting E012K2R02 (2.2x there)")
        if any(c.calibrate for c in caches.values()):
            return (f"{text}: {source}. This model has no MagCache calibration yet, so this run calibrates it "
                    "(every step computed, as quality) and stores it in the history; later runs skip steps.")
        when = ", ".join(f"{_expert_words(n, len(caches))}{_calibration_words(calibrations[n])}" for n in caches)
        return f"{text}: {source}; calibrated for this model ({when})."
    if kind == "fbcache":
        return (f"{text}: skips the other blocks while the first block's output barely changes "
                "(ParaAttention's First Block Cache; 0.04-0.07 reported usable for Wan2.1).")
    return f"{text}: TaylorSeer's published setting (N=5, first order); no calibration needed."


def _expert_words(name: str, experts: int) -> str:
    if experts < 2:
        return ""
    return {"transformer": "high-noise expert ", "transformer_2": "low-noise expert "}.get(name, f"{name} ")


def _calibration_words(calibration: Any) -> str:
    steps = getattr(calibration, "steps", None) or (calibration.get("steps") if isinstance(calibration, Mapping)
                                                    else None)
    return f"at {steps} steps" if steps else "stored"


def _preset_reason(preset: str, said: bool, device: str) -> str:
    yours = " (your setting)" if said else ""
    return {
        "quality": f"Quality{yours}: every step computed with PyTorch's attention, as diffusers runs it.",
        "balanced": f"Balanced{yours}: a conservative step cache and an exact faster attention kernel where "
                    "one is installed; the video changes little.",
        "fast": f"Fast{yours}: an aggressive step cache, the fastest attention kernel installed and compiled "
                "blocks on the GPU; expect visible differences from quality.",
        "auto": f"Auto{yours}: the balanced step cache with the fastest attention kernel and compile where "
                f"this {'GPU' if device == 'cuda' else 'computer'} runs them.",
    }[preset]


def _attention(preset: str, asked: Any, device: str, capability: tuple[int, int] | None, kernels: Kernels,
               notes: list[str]) -> Knob:
    if asked not in (None, "") and str(asked).strip().lower() != "auto":
        name = str(asked).strip()
        problem = backend_problem(name, device, capability, kernels)
        if problem is None:
            return Knob(name, f"{name}: {BACKENDS[name][2]} (attention_backend={name}, your setting).")
        notes.append(f"Ignored attention_backend={name}: {problem}.")
    if device != "cuda":
        return Knob("native", "native: PyTorch's built-in attention (SDPA); the other kernels need a GPU.")
    order = {"quality": (), "balanced": ("flash",), "fast": ("sage", "flash"), "auto": ("sage", "flash")}[preset]
    for name in order:
        if backend_problem(name, device, capability, kernels) is None:
            exact = "" if name == "flash" else "; it quantizes Q and K to 8 bits, close to but not exactly FlashAttention"
            return Knob(name, f"{name}: {BACKENDS[name][2]} is installed and this GPU runs it{exact}.")
    missing = [n for n in order if backend_problem(n, device, capability, kernels)]
    why = f" ({', '.join(missing)} cannot run here; python -m core doctor says why)" if missing else ""
    return Knob("native", "native: PyTorch's built-in attention (SDPA) picks a memory-efficient kernel by itself "
                          f"(flash attention on RTX 30 series and newer); nothing to install{why}.")


def _compile(preset: str, asked: Any, device: str, kernels: Kernels, notes: list[str]) -> Knob:
    want = _bool(asked)
    shown = str(asked).lower() if isinstance(asked, bool) else asked
    if asked not in (None, "") and str(asked).strip().lower() != "auto" and want is None:
        notes.append(f"Ignored compile={asked}: use true or false.")
    problem = compile_problem(device, kernels)
    if want is True:
        if problem is None:
            return Knob(True, f"On (compile={shown}, your setting): the repeated transformer blocks are compiled "
                              "with torch.compile; the first run warms up for a minute or more.")
        notes.append(f"Ignored compile={shown}: {problem}.")
        return Knob(False, f"Off: {problem}.")
    if want is False:
        return Knob(False, f"Off (compile={shown}, your setting).")
    if preset in ("fast", "auto") and problem is None:
        return Knob(True, "On: this GPU has triton and a C compiler; compile_repeated_blocks() compiles one "
                          "transformer block and reuses it (about 10-30% faster steps after a warm-up).")
    return Knob(False, "Off: " + (problem + "." if problem else f"the {preset} preset does not compile "
                                  "(the warm-up costs a minute or more per model and size)."))


def _threshold(raw: Mapping[str, Any], key: str, kind: str | None, notes: list[str]) -> float | None:
    value = raw.get(key)
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "auto")):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        notes.append(f"Ignored {key}={value}: use a number such as 0.12.")
        return None
    if kind in ("none", "taylorseer"):
        why = "TaylorSeer has no threshold" if kind == "taylorseer" else "no step cache is used"
        notes.append(f"Ignored {key}={value}: {why}.")
        return None
    low, high = THRESHOLD_RANGE.get(kind or "magcache", (0.0, 0.5))
    if not low < number <= high:
        notes.append(f"Ignored {key}={value}: a cache threshold must be above {low:g} and at most {high:g} "
                     "(higher skips nearly every step); the preset's value is used.")
        return None
    return number


def _word(value: Any, allowed: tuple[str, ...], key: str, notes: list[str]) -> str | None:
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return None
    word = str(value).strip().lower()
    if key == "cache" and word == "auto":
        return None
    word = {"first_block_cache": "fbcache", "fbc": "fbcache", "off": "none"}.get(word, word)
    if word not in allowed:
        notes.append(f"Ignored {key}={value}: use {', '.join(allowed)}.")
        return None
    return word


def _bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    return True if text in ("true", "yes", "on", "1") else False if text in ("false", "no", "off", "0") else None


def _gpu(hardware: Any) -> Any:
    gpus = list(getattr(hardware, "gpus", None) or [])
    return max(gpus, key=lambda g: g.free_mb if g.free_mb is not None else g.total_mb) if gpus else None


def _experts(report: Any) -> tuple[str, ...]:
    names = [c.name for c in getattr(report, "components", ()) if c.name in EXPERT_NAMES]
    if not names:
        return ("transformer", "transformer_2")[: max(1, int(getattr(report, "experts", 1) or 1))]
    return tuple(n for n in EXPERT_NAMES if n in names)


def _distill_loras(request: Any) -> list[str]:
    """Names of step-distillation LoRAs in the request (``loras`` in the request or its overrides)."""
    loras = getattr(request, "loras", None) or (getattr(request, "overrides", {}) or {}).get("loras") or ()
    names = []
    for lora in loras if isinstance(loras, (list, tuple)) else (loras,):
        name = str(getattr(lora, "name", None) or getattr(lora, "path", None) or
                   (lora.get("path") if isinstance(lora, Mapping) else lora))
        base = os.path.basename(name).lower()
        if any(w in base for w in DISTILL_WORDS):
            names.append(os.path.basename(name))
    return names


def _stored_calibrations(report: Any) -> dict[str, Any]:
    """expert -> stored MagCache calibration of this model (empty when none or unreadable)."""
    try:
        from core.run.magcache_calibration import stored_for
        return stored_for(report)
    except Exception:  # noqa: BLE001 - a missing or locked history must never stop planning
        return {}


def speed_lines(speed: SpeedPlan) -> list[str]:
    """The lines the CLI and the UI show under the memory plan (the ignored settings are the plan's notes)."""
    return [f"Speed: {speed.preset.reason}", f"Step cache: {speed.cache.reason}", f"Compile: {speed.compile.reason}"]



# --- the command line -----------------------------------------------------------------------

def add_speed_flags(parser: Any) -> None:
    """``--speed``, ``--cache``, ``--cache-threshold[-2]``, ``--attention``, ``--compile`` on an argparse parser."""
    import argparse
    parser.add_argument("--speed", choices=PRESETS, default=None,
                        help="quality (default: every step), balanced, fast, or auto (what this machine runs best)")
    parser.add_argument("--cache", choices=CACHE_KINDS, default=None, help="step cache instead of the preset's")
    parser.add_argument("--cache-threshold", default=None, metavar="X", help="the cache's threshold (high-noise expert)")
    parser.add_argument("--cache-threshold-2", default=None, metavar="X", help="threshold of the low-noise expert (A14B)")
    parser.add_argument("--attention", default=None, metavar="BACKEND",
                        help="diffusers attention backend: native, flash, sage, _native_cudnn, ...")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="compile the transformer blocks (GPU with triton and a C compiler)")


def speed_overrides(args: Any) -> dict[str, Any]:
    """The optimization_config keys the speed flags set (only those given)."""
    pairs = (("speed", args.speed), ("cache", args.cache), ("cache_threshold", args.cache_threshold),
             ("cache_threshold_2", args.cache_threshold_2), ("attention_backend", args.attention),
             ("compile", args.compile))
    return {k: v for k, v in pairs if v is not None}
