"""What the tabs share: the app's folders, a cached hardware probe and reports, recent paths, fit badges.

No Gradio here (and no torch): plain functions the tab modules call, easy to test.

Usage::

    from wan_ui import common
    common.configure(load_config())            # app.py does this once
    ctx = common.context()
    ctx.outputs_dir, ctx.recent_file
    report = common.inspect_cached("/models/Wan2.2-TI2V-5B-Diffusers")
    plan = common.default_plan(report)         # plan_for at the model's default size
    common.fit_badge(report, plan)             # ("ok", "✓ fits: model offload")
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.check.report import ModelReport
from core.choices import PLACEMENT_WORDS
from core.errors import WanError
from core.run.hardware import HardwareInfo
from core.run.optimize import OptimizationPlan, OptimizationRequest

RECENT_FILE = "recent_models.json"
RECENT_MAX = 10
HARDWARE_TTL_S = 15.0
REPORT_TTL_S = 30.0
DEMO_MODEL = "wan21_t2v"      # the smallest demo pipeline: what the self-test builds


@dataclass(frozen=True)
class AppContext:
    """The folders the app works in (from config.yaml and the command line)."""

    models_dir: Path
    outputs_dir: Path
    history_db: Path
    precision: str = "auto"
    offload: str = "auto"
    config: Any = None

    @property
    def data_dir(self) -> Path:
        """The folder beside the history database: recent paths, demo models."""
        return self.history_db.parent

    @property
    def recent_file(self) -> Path:
        return self.data_dir / RECENT_FILE

    @property
    def demo_dir(self) -> Path:
        return self.data_dir / "demo-models"


_CONTEXT: AppContext | None = None
_LOCK = threading.Lock()


def configure(config: Any = None, models_dir: str | os.PathLike[str] | None = None) -> AppContext:
    """Set the app's folders from an AppConfig (None: config.yaml / WAN_COMPAT_CONFIG)."""
    global _CONTEXT
    if config is None:
        from core.config import current
        config = current()
    ctx = AppContext(models_dir=Path(models_dir) if models_dir else Path(config.models_dir),
                     outputs_dir=Path(config.outputs_dir), history_db=Path(config.history_db),
                     precision=config.precision, offload=config.offload, config=config)
    with _LOCK:
        _CONTEXT = ctx
        _REPORTS.clear()
    return ctx


def context() -> AppContext:
    """The configured context (configured from config.yaml on first use)."""
    if _CONTEXT is None:
        return configure()
    return _CONTEXT


# --- hardware and reports, cached briefly ---------------------------------------------------

_HARDWARE: tuple[float, HardwareInfo] | None = None
_REPORTS: dict[str, tuple[float, ModelReport]] = {}


def hardware() -> HardwareInfo:
    """core.run.hardware.probe() (no torch), at most HARDWARE_TTL_S old."""
    global _HARDWARE
    now = time.monotonic()
    with _LOCK:
        if _HARDWARE is not None and now - _HARDWARE[0] < HARDWARE_TTL_S:
            return _HARDWARE[1]
    from core.run.hardware import probe
    hw = probe(use_torch=False)
    with _LOCK:
        _HARDWARE = (now, hw)
    return hw


def inspect_cached(path: str) -> ModelReport:
    """core.check.detect.inspect(path), reused for REPORT_TTL_S; raises like inspect."""
    key = os.path.abspath(path)
    now = time.monotonic()
    with _LOCK:
        hit = _REPORTS.get(key)
        if hit is not None and now - hit[0] < REPORT_TTL_S:
            return hit[1]
    from core.check.detect import inspect
    report = inspect(key)
    with _LOCK:
        _REPORTS[key] = (now, report)
        if len(_REPORTS) > 64:
            _REPORTS.pop(next(iter(_REPORTS)))
    return report


def forget(path: str | None = None) -> None:
    """Drop cached reports (all, or those of ``path`` and below), e.g. after a fix."""
    with _LOCK:
        if path is None:
            _REPORTS.clear()
            return
        key = os.path.abspath(path)
        for k in [k for k in _REPORTS if k == key or k.startswith(key + os.sep)]:
            del _REPORTS[k]


# --- plans and fit badges -------------------------------------------------------------------

def overrides_from(precision: str | None = None, offload: str | None = None, vae_tiling: str | None = None,
                   text_encoder_on_cpu: str | None = None) -> dict[str, Any]:
    """The Advanced settings as an ``optimization_config`` ("auto" and empty are left out)."""
    out: dict[str, Any] = {}
    if precision and precision != "auto":
        out["precision"] = precision
    if offload and offload != "auto":
        out["offload"] = offload
    for key, value in (("vae_tiling", vae_tiling), ("text_encoder_on_cpu", text_encoder_on_cpu)):
        if value in ("on", "yes", True):
            out[key] = True
        elif value in ("off", "no", False):
            out[key] = False
    return out


def config_overrides() -> dict[str, Any]:
    """precision/offload from config.yaml, as an optimization_config."""
    ctx = context()
    return overrides_from(ctx.precision, ctx.offload)


def defaults(report: ModelReport) -> Any:
    """The registry entry whose defaults apply to ``report`` (or None)."""
    try:
        from core.run.generation import defaults_for
        return defaults_for(report)
    except Exception:  # noqa: BLE001 - a broken registry must not break the page
        return None


def default_request(report: ModelReport, overrides: dict[str, Any] | None = None) -> OptimizationRequest:
    """An OptimizationRequest at the model's default size, frames and steps (config.yaml's settings)."""
    from core.run.generation import default_request as model_defaults
    try:
        return model_defaults(report, overrides if overrides is not None else config_overrides())
    except Exception:  # noqa: BLE001 - a broken registry must not break the page: the fallback size
        from core.run.generation import FALLBACK
        width, height = FALLBACK["size"]
        return OptimizationRequest(width=width, height=height, num_frames=FALLBACK["frames"],
                                   num_inference_steps=FALLBACK["steps"],
                                   overrides=dict(overrides if overrides is not None else config_overrides()))


def plan(report: ModelReport | None, request: OptimizationRequest) -> OptimizationPlan | None:
    """core.run.optimize.plan_for on this machine; None for collections and non-Wan models.

    The Generate tab loads and runs with the very plan returned here (core.run.load.load).
    """
    if report is None or report.is_collection or not report.is_wan:
        return None
    from core.run.optimize import plan_for
    return plan_for(report, hardware(), request)


def default_plan(report: ModelReport | None) -> OptimizationPlan | None:
    """The plan at the model's default size, frames and steps (fit badges, Model Check)."""
    return plan(report, default_request(report)) if report is not None and report.is_wan else None




def placement_words(plan: OptimizationPlan | None) -> str:
    if plan is None:
        return ""
    if plan.device == "cpu":
        return f"on the CPU, {plan.precision.value}"
    return f"{PLACEMENT_WORDS.get(plan.placement.value, plan.placement.value)}, {plan.precision.value}"


def fit_badge(report: ModelReport | None, plan: OptimizationPlan | None) -> tuple[str, str]:
    """(tone, words) for a model on this machine: tone is "ok", "bad" or "unknown"."""
    if report is None:
        return "unknown", "? not checked"
    if report.errors:
        n = len(report.errors)
        return "bad", f"✗ needs fixing ({n} problem{'s' if n != 1 else ''})"
    if not report.is_wan:
        return "unknown", "? not a Wan model"
    if plan is None:
        return "unknown", "? fit unknown"
    if plan.fits:
        return "ok", f"✓ fits: {placement_words(plan)}"
    if plan.refusal and "of RAM" in plan.refusal:
        return "bad", "✗ too big for this RAM"
    return "bad", "✗ too big for this machine"


# --- recent paths ---------------------------------------------------------------------------

def recent_paths() -> list[str]:
    """Model paths used lately, newest first (a missing or damaged file gives [])."""
    try:
        data = json.loads(context().recent_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    paths = data.get("paths") if isinstance(data, dict) else None
    return [p for p in paths if isinstance(p, str)][:RECENT_MAX] if isinstance(paths, list) else []


def remember(path: str) -> None:
    """Put ``path`` first in the recent list (written atomically; failures are ignored)."""
    path = os.path.abspath(path)
    paths = [path] + [p for p in recent_paths() if p != path]
    file = context().recent_file
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        tmp = file.with_name(f".{file.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"paths": paths[:RECENT_MAX]}, indent=1), encoding="utf-8")
        os.replace(tmp, file)
    except OSError:
        pass


# --- the model picker -----------------------------------------------------------------------

@dataclass(frozen=True)
class ModelChoice:
    """One entry of the Generate tab's model picker."""

    path: str
    label: str
    tone: str


def model_choices() -> list[ModelChoice]:
    """Wan models in the models folder, the demo models built by the self-test, then recent paths."""
    from core.check.wording import TASK_NAMES, model_name, quant_label

    ctx = context()
    reports: list[Any] = []
    seen: set[str] = set()

    def add(report: Any) -> None:
        for model in (report.models if report.is_collection else (report,)):
            key = os.path.abspath(model.path)
            if model.is_wan and key not in seen:
                seen.add(key)
                reports.append(model)

    for folder in (ctx.models_dir, ctx.demo_dir):
        if folder.is_dir():
            try:
                add(inspect_cached(str(folder)))
            except (OSError, WanError):
                pass
    for path in recent_paths():
        if os.path.abspath(path) not in seen and os.path.exists(path):
            try:
                add(inspect_cached(path))
            except (OSError, WanError):
                pass
    choices = []
    for report in reports:
        try:
            tone, badge = fit_badge(report, default_plan(report))
        except Exception:  # noqa: BLE001 - one odd model must not empty the picker
            tone, badge = "unknown", "? fit unknown"
        task = TASK_NAMES.get(report.task or "", ((report.task or "?").upper(), ""))[0]
        quant = quant_label(report.quantization)      # GGUF Q4_K, fp8 scaled: kept quantized when loaded
        label = f"{Path(report.path).name} — {model_name(report)} · {task}{f' · {quant}' if quant else ''} · {badge}"
        choices.append(ModelChoice(report.path, label, tone))
    return choices
