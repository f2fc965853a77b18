"""Apply a plan's speed choice to the loaded transformers for one run, and count what really ran.

Everything here is diffusers' own: ``transformer.enable_cache(MagCacheConfig | FirstBlockCacheConfig |
TaylorSeerCacheConfig)`` per expert, ``transformer.set_attention_backend(name)`` and
``transformer.compile_repeated_blocks()``. The caches are set up for each run (MagCache needs the
number of steps each expert runs) and removed afterwards, so the loaded model is left plain::

    from core.run.speed_run import speed_run
    with speed_run(pipe, plan.speed, steps=20, report=report, warnings=warnings) as run:
        frames = pipe(...).frames[0]
    run.summary()   # {"preset": "fast", "transformer_calls": 17, "forward_calls": 40, ...}

``transformer_calls`` counts the passes in which the last transformer block really ran (a forward
hook on its self-attention's query projection, which a skipped or predicted step never reaches);
``forward_calls`` every call of a transformer. A kernel that fails to switch on falls back to
PyTorch's attention with a warning, never a failed run. A MagCache calibration run catches the
ratios diffusers measures and stores them (core.run.magcache_calibration).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from core.run.speed import EXPERT_NAMES, TAYLORSEER, CacheSetting, SpeedPlan

SIGNATURE_FRAMES, SIGNATURE_CELLS = 8, 8
#: The Wan block modules TaylorSeer predicts (diffusers' default patterns match no Wan module).
TAYLORSEER_WAN_MODULES = (r"blocks\.\d+\.attn1", r"blocks\.\d+\.attn2", r"blocks\.\d+\.ffn")


@dataclass
class SpeedRun:
    """What one run used and counted; ``summary()`` goes into the MP4's JSON and the history."""

    speed: SpeedPlan | None
    expert_steps: dict[str, int] = field(default_factory=dict)
    computed: dict[str, int] = field(default_factory=dict)      # expert -> passes through the last block
    calls: dict[str, int] = field(default_factory=dict)         # expert -> transformer forward calls
    attention: str = "native"
    compiled: bool = False
    calibrating: list[str] = field(default_factory=list)
    calibrated: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    signature: dict[str, Any] | None = None      # a thumbnail of the frames (see observe)

    @property
    def transformer_calls(self) -> int:
        return sum(self.computed.values())

    @property
    def forward_calls(self) -> int:
        return sum(self.calls.values())

    def summary(self) -> dict[str, Any]:
        speed = self.speed
        caches = {name: {**c.to_dict(), "steps": self.expert_steps.get(name)}
                  for name, c in (speed.caches.items() if speed else ())}
        return {"preset": speed.preset.value if speed else "quality",
                "cache": speed.cache.value if speed else "none", "caches": caches,
                "transformer_calls": self.transformer_calls, "forward_calls": self.forward_calls,
                "skipped_calls": self.forward_calls - self.transformer_calls,
                "attention": self.attention, "compile": self.compiled,
                "calibrating": self.calibrating, "calibrated": self.calibrated, "notes": self.notes,
                **({"signature": self.signature} if self.signature else {})}

    def observe(self, frames: Any, seed: int, prompt: str) -> None:
        """Keep a thumbnail of the frames (8 frames of 8x8 grey) and what made them, so that the
        Performance tab can say how far another preset's frames moved from quality's (same seed and prompt)."""
        import hashlib

        import numpy as np
        video = np.asarray(frames, dtype=np.float32)
        if video.ndim != 4 or not video.size:
            return
        picks = np.unique(np.linspace(0, video.shape[0] - 1, min(SIGNATURE_FRAMES, video.shape[0])).astype(int))
        grey = video[picks].mean(axis=-1)
        cells = [[[float(c.mean()) for c in np.array_split(row, SIGNATURE_CELLS, axis=1)]
                  for row in np.array_split(frame, SIGNATURE_CELLS, axis=0)] for frame in grey]
        self.signature = {"seed": int(seed), "prompt": hashlib.sha256(prompt.encode()).hexdigest()[:12],
                          "frames": int(video.shape[0]), "cells": np.round(np.asarray(cells), 4).ravel().tolist()}


def expert_steps(pipe: Any, steps: int) -> dict[str, int]:
    """How many of ``steps`` each expert runs (A14B: timesteps at or above the boundary go to ``transformer``)."""
    names = [n for n in EXPERT_NAMES if getattr(pipe, n, None) is not None]
    ratio = getattr(pipe.config, "boundary_ratio", None)
    if ratio is None or len(names) < 2:
        return {names[0]: steps} if names else {}
    scheduler = copy.deepcopy(pipe.scheduler)
    scheduler.set_timesteps(steps, device="cpu")
    boundary = ratio * pipe.scheduler.config.num_train_timesteps
    high = int((scheduler.timesteps >= boundary).sum())
    return {"transformer": high, "transformer_2": steps - high}


def set_attention(pipe: Any, backend: str, warnings: list[str] | None = None) -> str:
    """Switch every transformer to ``backend``; on failure PyTorch's attention, with a warning. Returns the one used."""
    used = backend or "native"
    for name in EXPERT_NAMES:
        module = getattr(pipe, name, None)
        if module is None or not hasattr(module, "set_attention_backend"):
            continue
        if used == getattr(module, "_wan_compat_attention", "native"):
            continue          # already in force (diffusers warns on every switch)
        try:
            module.set_attention_backend(used)
            module._wan_compat_attention = used
        except Exception as exc:  # noqa: BLE001 - a kernel that will not start must not stop the run
            if warnings is not None:
                warnings.append(f"The {used} attention kernel could not be used ({str(exc).strip()[:200]}); "
                                "PyTorch's built-in attention was used instead.")
            used = "native"
            for other in EXPERT_NAMES:
                m = getattr(pipe, other, None)
                if m is not None and hasattr(m, "set_attention_backend"):
                    with contextlib.suppress(Exception):
                        m.set_attention_backend("native")
                        m._wan_compat_attention = "native"
            break
    return used


def _cache_config(setting: CacheSetting, steps: int, ratios: Any, dtype: Any) -> Any:
    from diffusers.hooks import FirstBlockCacheConfig, MagCacheConfig, TaylorSeerCacheConfig
    if setting.kind == "magcache":
        if setting.calibrate or ratios is None:
            return MagCacheConfig(calibrate=True, num_inference_steps=max(1, steps))
        return MagCacheConfig(threshold=setting.threshold, max_skip_steps=setting.max_skip_steps,
                              retention_ratio=setting.retention_ratio, num_inference_steps=max(1, steps),
                              mag_ratios=list(ratios))
    if setting.kind == "fbcache":
        return FirstBlockCacheConfig(threshold=setting.threshold)
    if setting.kind == "taylorseer":
        return TaylorSeerCacheConfig(cache_interval=setting.cache_interval or TAYLORSEER["cache_interval"],
                                     disable_cache_before_step=TAYLORSEER["disable_cache_before_step"],
                                     max_order=TAYLORSEER["max_order"], taylor_factors_dtype=dtype,
                                     cache_identifiers=list(TAYLORSEER_WAN_MODULES))
    return None


def _counting_hooks(run: SpeedRun, modules: dict[str, Any]) -> list[Any]:
    handles = []
    for name, module in modules.items():
        run.computed[name] = run.calls[name] = 0

        def on_call(_m: Any, _a: Any, _o: Any, name: str = name) -> None:
            run.calls[name] += 1

        def on_compute(_m: Any, _a: Any, _o: Any, name: str = name) -> None:
            run.computed[name] += 1
        handles.append(module.register_forward_hook(on_call))
        blocks = getattr(module, "blocks", None)
        last = blocks[-1] if blocks is not None and len(blocks) else None
        probe = getattr(getattr(last, "attn1", None), "to_q", None) or last
        if probe is not None:
            handles.append(probe.register_forward_hook(on_compute))
    return handles


@contextlib.contextmanager
def speed_run(pipe: Any, speed: SpeedPlan | None, steps: int, report: Any = None,
              warnings: list[str] | None = None, db: Any = None) -> Iterator[SpeedRun]:
    """Caches, attention and compile on for the run inside the ``with``; counters; calibrations stored after.

    ``speed`` None (a plan made before speed presets) runs plainly but still counts the calls.
    """
    warnings = warnings if warnings is not None else []
    run = SpeedRun(speed)
    modules = {n: getattr(pipe, n) for n in EXPERT_NAMES if getattr(pipe, n, None) is not None}
    run.expert_steps = expert_steps(pipe, steps)
    run.attention = set_attention(pipe, speed.attention.value if speed else "native", warnings)
    if speed is not None and speed.compile.value:
        run.compiled = _compile(modules, warnings)
    stored: dict[str, Any] = {}
    if speed is not None and any(c.kind == "magcache" for c in speed.caches.values()) and report is not None:
        from core.run.magcache_calibration import stored_for
        stored = stored_for(report, db)
    enabled = []
    for name, module in modules.items():
        setting = speed.caches.get(name) if speed is not None else None
        if setting is None or setting.kind == "none" or run.expert_steps.get(name, 0) <= 0:
            continue
        calibration = stored.get(name)
        config = _cache_config(setting, run.expert_steps[name], calibration.ratios if calibration else None,
                               getattr(module, "dtype", None))
        if getattr(config, "calibrate", False):
            run.calibrating.append(name)
        if getattr(module, "is_cache_enabled", False):
            module.disable_cache()
        module.enable_cache(config)
        enabled.append(module)
    handles = _counting_hooks(run, modules)
    try:
        if run.calibrating:
            from core.run.magcache_calibration import RatioCapture
            with RatioCapture() as capture:
                yield run
            _store_calibrations(run, capture.results, report, db, warnings)
        else:
            yield run
    finally:
        for handle in handles:
            handle.remove()
        for module in enabled:
            with contextlib.suppress(Exception):
                module.disable_cache()


def _store_calibrations(run: SpeedRun, results: list[list[float]], report: Any, db: Any,
                        warnings: list[str]) -> None:
    """Pair the logged ratio lists with the experts (in the order they finished) and store them."""
    from core.run.magcache_calibration import combine, store
    passes_per_step = {n: run.calls.get(n, 0) // max(1, run.expert_steps.get(n, 1)) for n in run.calibrating}
    cursor = 0
    for name in run.calibrating:
        count = max(1, passes_per_step[name])     # 2 with classifier-free guidance (cond + uncond)
        mine = [r for r in results[cursor:cursor + count] if len(r) == run.expert_steps[name]]
        cursor += count
        if not mine:
            run.notes.append(f"MagCache calibration of {name} did not finish; the next run calibrates again.")
            continue
        if report is not None and store(report, name, combine(mine), run.expert_steps[name], db):
            run.calibrated.append(name)
    if run.calibrated:
        warnings.append("MagCache calibrated for this model (every step was computed this time); "
                        "the next runs with this preset skip steps.")


def _compile(modules: dict[str, Any], warnings: list[str]) -> bool:
    """compile_repeated_blocks() once per transformer; a compile error later falls back to eager."""
    try:
        import torch._dynamo
        torch._dynamo.config.suppress_errors = True    # a graph that fails to compile runs uncompiled
        for module in modules.values():
            if not getattr(module, "_wan_compat_compiled", False):
                module.compile_repeated_blocks()
                module._wan_compat_compiled = True
        return True
    except Exception as exc:  # noqa: BLE001 - compile is an optimization, never a reason to fail
        warnings.append(f"Compiling the transformer blocks failed ({str(exc)[:200]}); the run is not compiled.")
        return False
