"""What surrounds one recorded run: the model, the plan, the machine, the versions, GPU memory.

Part of the performance monitor (``core.monitor``), which turns these into one
``OperationMetrics``; nothing here touches the history database.

    >>> plan_label(compact_plan(plan))        # an OptimizationPlan, its to_dict(), a dict or a str
    'cuda bf16, model offload, VAE tiles'
    >>> model_fingerprint(report)             # a ModelReport: the same files give the same hash
    '3f9c0e1a7b2d4c65'
    >>> hardware_summary(probe())
    '16 CPUs, 125 GB RAM, 1x NVIDIA H100 80GB HBM3 (80 GB)'

torch is never imported here: GPU peaks come from torch only when the caller already
imported it and CUDA is in use (``torch_peak_mb``), else from nvidia-ml-py (``Nvml``),
else they are None. Versions come from package metadata, never by importing the package.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import sys
from collections import Counter
from hashlib import sha256
from typing import Any

from core import __version__

MB = 2**20                                    # bytes in a MiB (memory figures are MiB)

# Parts of OptimizationPlan.to_dict() that describe the estimate, not the choice.
_PLAN_DROP = {"estimate", "request", "reasons", "notes", "refusal", "remedy", "fits",
              "usable_vram_mb", "usable_ram_mb"}


def model_fingerprint(report: Any) -> str:
    """A 16-hex-digit hash of a model's component files and sizes (from a ModelReport).

    Two runs with the same fingerprint used the same files; a re-download of a changed
    file or another quantisation gives another fingerprint.
    """
    items = sorted((c.name, sorted(c.files), int(c.size_bytes)) for c in getattr(report, "components", ()))
    basis = items if items else [str(getattr(report, "path", report))]
    return sha256(json.dumps(basis).encode()).hexdigest()[:16]


def compact_plan(plan: Any) -> dict[str, Any]:
    """The values of a plan's choices: from an OptimizationPlan, its to_dict(), a dict or a str."""
    if plan is None:
        return {}
    if isinstance(plan, str):
        return {"name": plan}
    if hasattr(plan, "to_dict"):
        plan = plan.to_dict()
    if not isinstance(plan, dict):
        return {"name": str(plan)}
    out: dict[str, Any] = {}
    for key, value in plan.items():
        if key in _PLAN_DROP:
            continue
        if isinstance(value, dict) and "value" in value:
            value = value["value"]
        if key == "speed" and value == "quality":    # as before presets: such runs stay comparable
            continue
        if value is not None:
            out[key] = value
    request = plan.get("request") if isinstance(plan.get("request"), dict) else {}
    if int(request.get("ranks") or 1) > 1:    # generate --gpus N: N ranks, FSDP2 or not
        out["gpus"] = int(request["ranks"])
        out["fsdp"] = bool(request.get("shard_weights"))
    return out


def plan_label(plan: dict[str, Any]) -> str:
    """A short name for a compact plan, e.g. "cuda bf16, model offload, VAE tiles"."""
    if not plan:
        return "default"
    if set(plan) == {"name"}:
        return str(plan["name"])
    head = " ".join(str(plan[k]) for k in ("device", "precision") if k in plan)
    parts = [head] if head else []
    if "placement" in plan:
        parts.append(str(plan["placement"]).replace("_", " "))
    if plan.get("group_offload_type"):
        parts.append(f"{plan['group_offload_type']} groups".replace("_", " "))
    if plan.get("vae_tiling"):
        parts.append("VAE tiles")
    if plan.get("vae_slicing"):
        parts.append("VAE slices")
    if plan.get("attention_backend") not in (None, "native"):
        parts.append(f"attention {plan['attention_backend']}")
    if plan.get("text_encoder_on_cpu"):
        parts.append("text encoder on CPU")
    if plan.get("gpus"):
        parts.append(f"{plan['gpus']} GPUs (Ulysses{' + FSDP2' if plan.get('fsdp') else ''})")
    if plan.get("speed") not in (None, "quality"):        # core.run.speed's preset
        parts.append(f"speed {plan['speed']}")
    if plan.get("loras"):                                  # core.run.lora's label: runs with LoRAs apart
        parts.append(f"LoRA {plan['loras']}")
    known = {"device", "precision", "vae_precision", "placement", "group_offload_type", "vae_tiling",
             "vae_slicing", "attention_backend", "text_encoder_on_cpu", "gpu_index", "device_map", "max_memory_mb",
             "gpus", "fsdp", "speed", "loras"}
    parts += [f"{k}={v}" for k, v in sorted(plan.items()) if k not in known]
    return ", ".join(parts)


def hardware_summary(hardware: Any) -> str:
    """"2 CPUs, 8 GB RAM, no GPU" from a HardwareInfo (or its dict); a str is kept as it is."""
    if isinstance(hardware, str):
        return hardware
    data = hardware.to_dict() if hasattr(hardware, "to_dict") else dict(hardware)
    parts = []
    if data.get("cpu_count"):
        parts.append(f"{data['cpu_count']} CPUs")
    if data.get("ram_total_mb"):
        parts.append(f"{round(data['ram_total_mb'] / 1024)} GB RAM")
    gpus = Counter(f"{g['name']} ({round(g['total_mb'] / 1024)} GB)" for g in data.get("gpus") or [])
    parts += [f"{n}x {name}" for name, n in sorted(gpus.items())] or ["no GPU"]
    return ", ".join(parts)


@functools.lru_cache(maxsize=1)
def this_machine() -> tuple[str, str | None]:
    """(hardware summary, driver version) of this computer, probed once (no torch)."""
    from core.run.hardware import probe
    hw = probe()
    return hardware_summary(hw), hw.driver_version


@functools.lru_cache(maxsize=1)
def package_versions() -> dict[str, str | None]:
    """Versions from the installed packages' metadata (never by importing them)."""
    from importlib import metadata
    out: dict[str, str | None] = {"app": __version__, "python": platform.python_version()}
    for name in ("torch", "diffusers", "transformers", "accelerate"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def cuda_version() -> str | None:
    torch = sys.modules.get("torch")
    version = getattr(torch, "version", None) if torch is not None else None
    return (getattr(version, "cuda", None) or getattr(version, "hip", None)) if version is not None else None


def torch_cuda() -> Any:
    """torch.cuda when the caller imported torch and CUDA is initialised, else None."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    try:
        cuda = torch.cuda
        return cuda if cuda.is_available() and cuda.is_initialized() else None
    except Exception:  # noqa: BLE001 - a half-broken torch
        return None


def reset_torch_peak() -> None:
    cuda = torch_cuda()
    if cuda is not None:
        try:
            for i in range(cuda.device_count()):
                cuda.reset_peak_memory_stats(i)
        except Exception:  # noqa: BLE001
            pass


def torch_peak_mb() -> float | None:
    cuda = torch_cuda()
    if cuda is None:
        return None
    try:
        return sum(cuda.max_memory_allocated(i) for i in range(cuda.device_count())) / MB
    except Exception:  # noqa: BLE001
        return None


class Nvml:
    """This process's GPU memory from nvidia-ml-py; None where there is no NVIDIA driver."""

    def __init__(self) -> None:
        self._handles: list[Any] | None = None
        self._pynvml: Any = None
        self._failed = False

    def used_mb(self) -> float | None:
        if self._failed:
            return None
        try:
            if self._handles is None:
                import pynvml
                pynvml.nvmlInit()
                self._pynvml = pynvml
                self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
            pid, total = os.getpid(), 0
            for handle in self._handles:
                for proc in self._pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
                    if proc.pid == pid:
                        total += proc.usedGpuMemory or 0
            return total / MB
        except Exception:  # noqa: BLE001 - no driver, no library: no GPU figure
            self._failed = True
            return None

