"""Which models in a folder fit this computer's RAM, as their memory plans say (no torch, headers only).

The doctor reads it so that it never shows a green RAM tick on a machine too small for the
models the user has. Usage::

    from core.run.models_fit import ram_misfits
    for name, problem, remedy in ram_misfits(Path("models"), probe()):
        print(f"{name}: {problem} {remedy}")
"""

from __future__ import annotations

from pathlib import Path

from core.run.hardware import HardwareInfo

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
