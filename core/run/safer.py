"""The one retry after a non-finite step: a safer plan, counted like any other plan, and what changed.

fp16 becomes bf16 (fp32 on a GPU without bf16, and on the CPU, where fp32 is the usual
choice), the VAE runs in fp32, a non-native attention kernel becomes PyTorch's own, and the
model is loaded again, which drops any hook on the old modules. The new plan is made by
:func:`~core.run.optimize.plan_for`, so bf16/fp32 may need a stronger offload, and a plan that
does not fit is refused with its reason.

Usage::

    plan, said = safer_plan(wrapper.plan, report, hardware, cause)
    if plan is None:
        print(said)            # why there is no retry
    else:
        print(said)            # "retried in bf16 (was fp16), VAE in fp32, ..."
"""

from __future__ import annotations

from dataclasses import replace

from core.check.report import ModelReport
from core.run.cause import Cause
from core.run.hardware import HardwareInfo
from core.run.optimize import OptimizationPlan, plan_for


def _safe_precision(plan: OptimizationPlan, hardware: HardwareInfo) -> str:
    """bf16 where the GPU has it, else fp32 (and fp32 on the CPU)."""
    if plan.device != "cuda":
        return "fp32"
    gpus = [g for g in hardware.gpus if plan.gpu_index is None or g.index == plan.gpu_index] or hardware.gpus
    return "bf16" if gpus and gpus[0].bf16_supported else "fp32"


def safer_plan(plan: OptimizationPlan, report: ModelReport, hardware: HardwareInfo | None,
               cause: Cause) -> tuple[OptimizationPlan | None, str]:
    """(the retry's plan, what changed), or (None, why there is no retry)."""
    if not cause.retry:
        return None, "Not retried: a safer plan cannot mend this."
    hardware = hardware if hardware is not None else plan.hardware
    if hardware is None:
        return None, "Not retried: the machine this plan was made for is unknown."
    overrides = dict(plan.request.overrides)
    changes: list[str] = []
    precision = plan.precision.value
    if precision == "fp16":
        precision = _safe_precision(plan, hardware)
        changes.append(f"in {precision} (was fp16)")
    overrides["precision"] = precision
    if plan.vae_precision.value != "fp32":
        overrides["vae_precision"] = "fp32"
        changes.append(f"with the VAE in fp32 (was {plan.vae_precision.value})")
    attention = str(plan.attention_backend.value or "native")
    if not attention.startswith(("native", "_native")):
        overrides["attention_backend"] = "native"
        changes.append(f"with native attention (was {attention})")
    speed = getattr(plan, "speed", None)
    if speed is not None and speed.cache.value != "none":      # a skipped step reuses stale values
        overrides["cache"] = "none"
        changes.append(f"without the step cache (was {speed.cache.value})")
    if speed is not None and speed.compile.value:
        overrides["compile"] = False
        changes.append("without compiled blocks")
    if cause.kind in ("hook", "cache_hook", "attention_kernel"):
        changes.append("with the model loaded again, without hooks")
    if not changes:
        return None, f"Not retried: the plan is already the safest one ({precision}, native attention)."
    retry = plan_for(report, hardware, replace(plan.request, overrides=overrides))
    if retry.placement.value != plan.placement.value:
        changes.append(f"with {retry.placement.value.replace('_', ' ')} (was "
                       f"{plan.placement.value.replace('_', ' ')}) to fit {retry.precision.value}")
    if not retry.fits:
        return None, (f"Not retried: the safer plan ({', '.join(changes)}) does not fit this machine: "
                      f"{retry.refusal or 'not enough memory'}")
    return retry, "Retried " + ", ".join(changes) + "."
