"""Whether a model fits this computer's RAM and GPU memory, as its memory plan says (no torch, headers only).

``python -m core check`` prints one model's fit (:func:`model_fit`); the doctor reads
:func:`ram_misfits` so that it never shows a green RAM tick on a machine too small for the
models the user has. Usage::

    from core.run.models_fit import model_fit, ram_misfits
    fit = model_fit(inspect("/models/Wan2.2-TI2V-5B-Diffusers"), probe())
    print("\n".join(fit.lines()), fit.to_dict()["ram"])          # "RAM: about 34 GB of 45 GB available ✓", True
    for name, problem, remedy in ram_misfits(Path("models"), probe()):
        print(f"{name}: {problem} {remedy}")
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.check.report import ModelReport
from core.choices import PLACEMENT_WORDS
from core.run.hardware import HardwareInfo
from core.units import format_mib


@dataclass(frozen=True)
class ModelFit:
    """One model's memory plan at its default size on this computer, as fits and numbers.

    ``vram`` is None on a computer without a GPU; ``plan`` is the whole OptimizationPlan.
    """

    plan: Any

    @property
    def ram(self) -> bool:
        """Whether RAM is enough (when the plan does not fit: whether its refusal leaves RAM out)."""
        if not self.plan.fits:
            return "of RAM" not in (self.plan.refusal or "")
        return True

    @property
    def vram(self) -> bool | None:
        """Whether GPU memory is enough; None without a GPU."""
        if self.plan.device != "cuda":
            return None
        return self.plan.fits or "of GPU memory" not in (self.plan.refusal or "")

    def to_dict(self) -> dict[str, Any]:
        p, e, r = self.plan, self.plan.estimate, self.plan.request
        return {"fits": p.fits, "ram": self.ram, "vram": self.vram, "device": p.device,
                "placement": p.placement.value, "precision": p.precision.value,
                "size": {"width": r.width, "height": r.height, "num_frames": r.num_frames,
                         "num_inference_steps": r.num_inference_steps},
                "peak_ram_mb": round(e.peak_ram_mb, 1), "usable_ram_mb": _round(p.usable_ram_mb),
                "peak_vram_mb": round(e.peak_vram_mb, 1) if p.device == "cuda" else None,
                "usable_vram_mb": _round(p.usable_vram_mb), "disk_mb": round(e.disk_mb, 1),
                "refusal": p.refusal, "remedy": p.remedy}

    def lines(self) -> list[str]:
        """What ``check`` prints: the verdict, RAM and GPU memory with their numbers, the remedy."""
        p, e, r = self.plan, self.plan.estimate, self.plan.request
        lines = [f"On this computer, at {r.width}x{r.height} with {r.num_frames} frames and "
                 f"{r.num_inference_steps} steps (the model's defaults):"]
        where = "on the CPU" if p.device == "cpu" else PLACEMENT_WORDS.get(p.placement.value, p.placement.value)
        if p.fits and p.placement.value == "disk_offload":
            lines.append(f"  ✓ Fits only by offloading the weights to disk ({format_mib(e.disk_mb)} written to "
                         f"offload_dir; the slowest way), {p.precision.value}.")
        elif p.fits:
            lines.append(f"  ✓ Fits: {where}, {p.precision.value}.")
        else:
            lines.append(f"  ✗ Does not fit: {p.refusal}")
        have = (f"of {format_mib(p.usable_ram_mb)} available" if p.usable_ram_mb is not None
                else "(the free RAM could not be read)")
        gpu = format_mib(p.usable_vram_mb or 0)
        if p.fits:      # the numbers of the plan that runs
            lines.append(f"  RAM: about {format_mib(e.peak_ram_mb)} {have} ✓")
            if self.vram is not None:
                lines.append(f"  GPU memory: about {format_mib(e.peak_vram_mb)} of {gpu} usable ✓")
        else:           # the refusal above has the numbers of the placement it speaks of
            lines.append(f"  RAM: {format_mib(p.usable_ram_mb or 0)} available {_tick(self.ram)}")
            if self.vram is not None:
                lines.append(f"  GPU memory: {gpu} usable {_tick(self.vram)}")
        if self.vram is None:
            lines.append("  GPU memory: no GPU that can be used; everything runs on the CPU (slow).")
        if not p.fits and p.remedy:
            lines.append(f"  What to do: {p.remedy}")
        return lines


def _tick(ok: bool) -> str:
    return "✓ enough" if ok else "✗ too little"


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def model_fit(report: ModelReport, hardware: HardwareInfo,
              overrides: Mapping[str, Any] | None = None) -> ModelFit | None:
    """The fit of one Wan model at its default size (``overrides``: precision / offload); None for others."""
    if not report.is_wan or report.is_collection:
        return None
    from core.run.generation import default_request
    from core.run.optimize import plan_for
    try:
        return ModelFit(plan_for(report, hardware, default_request(report, overrides)))
    except (ValueError, KeyError, TypeError):     # a report the plan cannot read: no fit, the report stands
        return None

MAX_MODELS = 20   # a doctor run stays quick on a big models folder


def ram_misfits(folder: Path, hardware: HardwareInfo) -> list[tuple[str, str, str]]:
    """(model name, the plan's refusal, its remedy) for each Wan model in ``folder`` whose plan at its
    default size is short of RAM, or fits only by offloading to disk; [] when all fit or nothing is there."""
    from core.check.detect import inspect
    from core.check.wording import model_name
    from core.run.generation import default_request
    from core.run.optimize import plan_for

    if not folder.is_dir():
        return []
    try:
        found = inspect(folder)
    except OSError:
        return []
    reports = [m for m in (found.models or (found,)) if m.is_wan and m.part is None][:MAX_MODELS]
    short: list[tuple[str, str, str]] = []
    for report in reports:
        try:
            plan = plan_for(report, hardware, default_request(report))
        except (ValueError, KeyError, TypeError):
            continue
        name = f"{model_name(report)} ({Path(report.path).name})"
        if plan.fits and plan.placement.value == "disk_offload":
            faster = next((n for n in plan.notes if n.startswith("Faster than offloading")), "")
            short.append((name, "it runs only by offloading its weights to disk, the slowest way: "
                          + plan.placement.reason.split(": ", 1)[-1].split(" Each part")[0].strip(), faster))
            continue
        if plan.fits or plan.refusal is None or "of RAM" not in plan.refusal:
            continue
        short.append((name, plan.refusal, plan.remedy or ""))
    return short
