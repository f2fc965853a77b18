"""Running out of memory, however it is worded, and the one sentence that says the need and the limit.

torch, the C++ allocator, the safetensors loader and the kernel each say "no memory" differently:
CUDA's ``OutOfMemoryError``, "DefaultCPUAllocator: can't allocate memory", ``MemoryError``,
``std::bad_alloc``, "failed to map segment from shared object", ``OSError(ENOMEM)``, or (the
kernel's OOM killer) a worker ended by SIGKILL without a word. All of them are one failure.

Usage::

    from core.run.memory_failure import is_memory_failure, memory_sentence, killed_by_system
    if is_memory_failure(exc):
        ...                                    # retry once with a stronger plan
    print(memory_sentence(9_728, hardware))    # "needs about 9.5 GB of RAM; this process may use
                                               #  8.0 GB (container limit)"
    err = killed_by_system(-9, plan, report)   # the jobs' worker was killed: WanError with what fits
    killed_sentence(-9, report, request)       # the same, planned again without torch (the CLI's watcher)
"""

from __future__ import annotations

import signal
from dataclasses import replace
from typing import TYPE_CHECKING

from core.errors import MEMORY_WORDS, WanError, is_memory_failure, is_memory_text
from core.units import format_mib

__all__ = ["MEMORY_WORDS", "is_memory_failure", "is_memory_text", "killed_by_system", "killed_sentence", "limit_words",
           "memory_sentence", "out_of_memory_error", "what_would_fit"]

if TYPE_CHECKING:
    from core.check.report import ModelReport
    from core.run.hardware import HardwareInfo
    from core.run.optimize import OptimizationPlan, OptimizationRequest

def _now(hardware: HardwareInfo | None) -> HardwareInfo | None:
    """``hardware`` with the RAM limit read again: a plan's probe may predate a ulimit or a cgroup move."""
    from core.run.ram_limit import ram_limit
    if hardware is None:
        return None
    limit = ram_limit(hardware.ram_free_mb)
    return replace(hardware, ram_usable_mb=limit.usable_mb, ram_limit_mb=limit.limit_mb,
                   ram_limit_source=limit.source if limit.limit_mb is not None else None)


def limit_words(hardware: HardwareInfo | None) -> str:
    """What this process may use, and why: "this process may use 8.0 GB (container limit)"."""
    if hardware is None:
        return "the free memory is unknown"
    limit = getattr(hardware, "ram_limit_mb", None)
    source = getattr(hardware, "ram_limit_source", None)
    if limit is not None and source:
        return f"this process may use {format_mib(limit)} ({source})"
    free = getattr(hardware, "ram_usable_mb", None) or hardware.ram_free_mb
    return f"this computer has {format_mib(free)} of RAM free" if free is not None else "the free RAM is unknown"


def memory_sentence(need_mb: float | None, hardware: HardwareInfo | None, gpu: bool = False) -> str:
    """ "needs about 9.5 GB of RAM; this process may use 8.0 GB (container limit)" (GPU: its usable memory)."""
    if gpu and hardware is not None and hardware.gpus:
        free = max((g.free_mb if g.free_mb is not None else g.total_mb) for g in hardware.gpus)
        has = f"the GPU has {format_mib(free)} free"
        return f"needs about {format_mib(need_mb)} of GPU memory; {has}" if need_mb else has
    has = limit_words(hardware)
    return f"needs about {format_mib(need_mb)} of RAM; {has}" if need_mb else has


def out_of_memory_error(plan: OptimizationPlan | None, stage: str = "generating",
                        exc: BaseException | None = None) -> WanError:
    """The WanError for an allocation failure that the one retry did not mend (exit 1 in the CLI)."""
    hardware = _now(plan.hardware if plan is not None else None)
    gpu = bool(plan is not None and plan.device == "cuda" and exc is not None
               and (type(exc).__name__ == "OutOfMemoryError" or "cuda" in str(exc).lower()))
    need = None
    if plan is not None:
        need = plan.estimate.peak_vram_mb if gpu else plan.estimate.peak_ram_mb
    said = memory_sentence(need, hardware, gpu=gpu)
    return WanError(f"Ran out of memory while {stage}: this {said}.",
                    "Choose a smaller size or fewer frames, or a stronger offload setting; close other programs.",
                    f"{type(exc).__name__}: {exc}" if exc is not None else "")


def killed_by_system(returncode: int | None, plan: OptimizationPlan | None,
                     report: ModelReport | None = None) -> WanError:
    """A worker the kernel ended (exit -9 / 137: SIGKILL) as a memory failure, with what would fit.

    ``plan`` is the plan the worker ran (its estimate and ``plan.hardware``); with ``report`` the
    request is planned again for a machine where that estimate does not fit, so the remedy is the
    optimizer's own nearest request or placement that fits.

    >>> killed_by_system(-9, None).message     # doctest: +ELLIPSIS
    'The generation was killed by the system (SIGKILL), ...'
    """
    number = -returncode if returncode is not None and returncode < 0 else (
        returncode - 128 if returncode is not None and returncode > 128 else None)
    name = signal.Signals(number).name if number in {s.value for s in signal.Signals} else f"exit {returncode}"
    hardware = _now(plan.hardware if plan is not None else None)
    need = plan.estimate.peak_ram_mb if plan is not None else None
    message = (f"The generation was killed by the system ({name}), most likely because it ran out of memory: "
               f"it {memory_sentence(need, hardware)}.")
    remedy = "Choose a smaller size or fewer frames, or a stronger offload setting; close other programs."
    fitting = what_would_fit(plan, report) if plan is not None and report is not None else None
    return WanError(message, fitting or remedy, "")


def killed_sentence(returncode: int | None, report: ModelReport, request: OptimizationRequest) -> str:
    """:func:`killed_by_system` as one sentence for ``request`` on ``report``, planned again here
    without torch (the process that planned it is gone); without the numbers if planning fails.

    >>> killed_sentence(-9, report, request_for(settings, overrides))     # doctest: +SKIP
    'The generation was killed by the system (SIGKILL), most likely because it ran out of memory: ...'
    """
    from core.run.hardware import probe
    from core.run.optimize import plan_for
    try:
        plan: OptimizationPlan | None = plan_for(report, probe(use_torch=False), request)
    except Exception:  # noqa: BLE001 - the sentence is still said, without the numbers
        plan = None
    err = killed_by_system(returncode, plan, report if plan is not None else None)
    return f"{err.message} {err.remedy}".strip()


def what_would_fit(plan: OptimizationPlan, report: ModelReport) -> str | None:
    """Plan again believing the killed plan's RAM peak did not fit: the stronger placement or smaller size."""
    from core.run.optimize import plan_for
    hardware = plan.hardware
    if hardware is None:
        return None
    seen = plan.estimate.peak_ram_mb
    ceiling = int(min(seen * 0.9, hardware.ram_usable_mb or seen, hardware.ram_limit_mb or seen))
    tighter = replace(hardware, ram_usable_mb=ceiling, ram_free_mb=min(ceiling, hardware.ram_free_mb or ceiling))
    again = plan_for(report, tighter, plan.request)
    if again.fits and again.placement.value != plan.placement.value:
        return (f"Use {again.placement.value.replace('_', ' ')} (about {format_mib(again.estimate.peak_ram_mb)} "
                "of RAM), or a smaller size or fewer frames.")
    return again.remedy if not again.fits else None
