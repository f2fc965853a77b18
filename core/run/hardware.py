"""What this computer has: GPUs, memory, and the torch/CUDA facts, without importing torch.

Usage::

    from core.run.hardware import probe, torch_facts_subprocess
    hw = probe()                          # nvidia-ml-py + psutil; never imports torch
    for gpu in hw.gpus:
        print(gpu.name, gpu.total_mb, gpu.bf16_supported)
    print(hw.ram_total_mb, hw.problems)
    facts = torch_facts_subprocess()      # imports torch in a child process
    if not facts["ok"]:
        print(facts["error"])             # e.g. "ImportError: DLL load failed while importing _C"

``probe(use_torch=True)`` also asks torch, but only when torch is already imported in
this process (the loader imports it; checking and the doctor must not).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from core.run.ram_limit import ram_limit

MB = 2**20


@dataclass(frozen=True)
class GpuInfo:
    """One GPU. ``free_mb`` is what other programs leave free right now."""

    index: int
    name: str
    total_mb: int
    free_mb: int | None
    compute_capability: tuple[int, int] | None
    bf16_supported: bool | None


@dataclass(frozen=True)
class HardwareInfo:
    """A snapshot of the machine. ``problems`` holds what could not be found out, and why."""

    gpus: list[GpuInfo] = field(default_factory=list)
    ram_total_mb: int | None = None
    ram_free_mb: int | None = None
    cpu_count: int | None = None
    torch_version: str | None = None      # only when torch was already imported
    cuda_version: str | None = None       # the CUDA torch was built with (torch imported)
    driver_version: str | None = None     # NVIDIA driver, e.g. "560.94"
    driver_cuda_version: str | None = None  # newest CUDA the driver supports, e.g. "12.6"
    problems: list[str] = field(default_factory=list)
    #: What this process may use now: the smallest of free RAM, the container (cgroup) limit and
    #: RLIMIT_AS (core.run.ram_limit). Plans read this; ``ram_limit_mb``/``ram_limit_source`` name the cap.
    ram_usable_mb: int | None = None
    ram_limit_mb: int | None = None
    ram_limit_source: str | None = None
    #: Attention kernels and compiler (core.run.speed.Kernels fields); None: looked up when planning.
    kernels: Mapping[str, Any] | None = None
    #: Free space (MiB) on the disk of config.yaml's ``offload_dir``, where ``offload: disk`` writes weights.
    offload_free_mb: int | None = None

    @property
    def has_gpu(self) -> bool:
        return bool(self.gpus)

    @property
    def max_vram_mb(self) -> int:
        """Memory of the largest GPU, 0 without one."""
        return max((g.total_mb for g in self.gpus), default=0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def probe(use_torch: bool = False) -> HardwareInfo:
    """Look at GPUs (NVML), RAM and CPUs (psutil); never fails, never imports torch.

    With ``use_torch=True`` and torch already imported, torch's version and CUDA build are
    added, and the GPUs are the ones torch can use when that differs from what NVML lists.
    """
    problems: list[str] = []
    gpus, driver, driver_cuda = _nvml_gpus(problems)
    ram_total, ram_free = _ram(problems)
    limit = ram_limit(ram_free)
    torch_version = cuda_version = None
    if use_torch and "torch" in sys.modules:
        torch_version, cuda_version, torch_gpus = _torch_facts_here(problems)
        # What torch can use decides where the model runs (ROCm, CUDA_VISIBLE_DEVICES, a CPU build).
        if torch_version is not None and len(torch_gpus) != len(gpus):
            if gpus and not torch_gpus:
                problems.append(f"The driver shows {len(gpus)} GPU(s) but torch cannot use them: a CPU-only "
                                "build of torch, or CUDA_VISIBLE_DEVICES hides them.")
            gpus = torch_gpus
    return HardwareInfo(gpus=gpus, ram_total_mb=ram_total, ram_free_mb=ram_free,
                        cpu_count=os.cpu_count(), torch_version=torch_version,
                        cuda_version=cuda_version, driver_version=driver,
                        driver_cuda_version=driver_cuda, problems=problems, ram_usable_mb=limit.usable_mb,
                        ram_limit_mb=limit.limit_mb, ram_limit_source=limit.source,
                        offload_free_mb=_offload_free_mb())


def _offload_free_mb() -> int:
    from core.run.disk_offload import free_mb, offload_root
    return free_mb(offload_root())


def bf16_from_capability(capability: tuple[int, int] | None) -> bool | None:
    """bf16 runs at full speed from Ampere (compute capability 8.0) on."""
    return None if capability is None else capability >= (8, 0)


def _nvml_gpus(problems: list[str]) -> tuple[list[GpuInfo], str | None, str | None]:
    try:
        import pynvml
    except ImportError:
        problems.append("nvidia-ml-py is not installed, so NVIDIA GPUs cannot be listed.")
        return [], None, None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError_LibraryNotFound:
        return [], None, None  # no NVIDIA driver: a normal result, not a problem
    except pynvml.NVMLError as exc:
        problems.append(f"The NVIDIA driver did not answer: {exc}.")
        return [], None, None
    gpus: list[GpuInfo] = []
    driver = driver_cuda = None
    try:
        driver = _text(pynvml.nvmlSystemGetDriverVersion())
        try:
            v = int(pynvml.nvmlSystemGetCudaDriverVersion())
            driver_cuda = f"{v // 1000}.{v % 1000 // 10}"
        except pynvml.NVMLError:
            pass
        for index in range(pynvml.nvmlDeviceGetCount()):
            try:
                gpus.append(_nvml_gpu(pynvml, index))
            except pynvml.NVMLError as exc:
                problems.append(f"GPU {index} could not be read: {exc}.")
    except pynvml.NVMLError as exc:
        problems.append(f"The NVIDIA driver did not answer: {exc}.")
    finally:
        try:
            pynvml.nvmlShutdown()
        except pynvml.NVMLError:
            pass
    return gpus, driver, driver_cuda


def _nvml_gpu(pynvml: Any, index: int) -> GpuInfo:
    handle = pynvml.nvmlDeviceGetHandleByIndex(index)
    mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
    try:
        capability: tuple[int, int] | None = tuple(pynvml.nvmlDeviceGetCudaComputeCapability(handle))  # type: ignore[assignment]
    except pynvml.NVMLError:
        capability = None
    return GpuInfo(index=index, name=_text(pynvml.nvmlDeviceGetName(handle)),
                   total_mb=int(mem.total) // MB, free_mb=int(mem.free) // MB,
                   compute_capability=capability, bf16_supported=bf16_from_capability(capability))


def _ram(problems: list[str]) -> tuple[int | None, int | None]:
    try:
        import psutil
    except ImportError:
        problems.append("psutil is not installed, so memory cannot be measured.")
        return None, None
    vm = psutil.virtual_memory()
    return int(vm.total) // MB, int(vm.available) // MB


def _torch_facts_here(problems: list[str]) -> tuple[str | None, str | None, list[GpuInfo]]:
    torch = sys.modules["torch"]
    gpus: list[GpuInfo] = []
    try:
        version = str(torch.__version__)
        cuda = getattr(torch.version, "cuda", None) or getattr(torch.version, "hip", None)
        if torch.cuda.is_available():
            for i in range(torch.cuda.device_count()):
                props = torch.cuda.get_device_properties(i)
                cap = (int(props.major), int(props.minor))
                free = int(torch.cuda.mem_get_info(i)[0]) // MB
                gpus.append(GpuInfo(i, str(props.name), int(props.total_memory) // MB, free,
                                    cap, bf16_from_capability(cap)))
        return version, cuda, gpus
    except Exception as exc:  # noqa: BLE001 - a half-broken torch must not break the probe
        problems.append(f"torch could not describe the GPUs: {type(exc).__name__}: {exc}.")
        return None, None, gpus


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


# --- torch in a child process -----------------------------------------------------------

_MARK = "@@WAN_COMPAT_TORCH_FACTS@@"

# Runs in the child. Any failure, including a broken import, becomes JSON on the last line.
_CHILD = r"""
import json, sys, traceback
out = {"ok": False}
try:
    import torch
    out.update(ok=True, version=str(torch.__version__),
               cuda_version=getattr(torch.version, "cuda", None),
               hip_version=getattr(torch.version, "hip", None),
               cuda_available=bool(torch.cuda.is_available()), devices=[])
    if out["cuda_available"]:
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            out["devices"].append({"name": p.name, "total_mb": p.total_memory // 2**20,
                                   "compute_capability": [p.major, p.minor]})
    mps = getattr(torch.backends, "mps", None)
    out["mps_available"] = bool(mps and mps.is_available())
except BaseException as exc:
    out.update(ok=False, error_type=type(exc).__name__, error=f"{type(exc).__name__}: {exc}",
               traceback=traceback.format_exc())
print(__MARK__ + json.dumps(out))
"""


def torch_facts_subprocess(timeout: float = 60, env: Mapping[str, str] | None = None,
                           python: str | None = None) -> dict[str, Any]:
    """Import torch in a fresh interpreter and report what it says, or why it failed.

    Returns ``{"ok": True, "version", "cuda_version", "hip_version", "cuda_available",
    "devices": [{"name", "total_mb", "compute_capability"}], "mps_available"}`` or
    ``{"ok": False, "error", "error_type", "traceback"}``. ``env`` replaces the child's
    environment (tests use it to put a broken torch first on ``PYTHONPATH``); ``python``
    defaults to this interpreter.
    """
    cmd = [python or sys.executable, "-c", _CHILD.replace("__MARK__", repr(_MARK))]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              env=dict(env) if env is not None else None,
                              encoding="utf-8", errors="replace")
    except subprocess.TimeoutExpired:
        return {"ok": False, "error_type": "TimeoutExpired",
                "error": f"importing torch took longer than {timeout:g} seconds", "traceback": ""}
    except OSError as exc:
        return {"ok": False, "error_type": type(exc).__name__,
                "error": f"could not start Python: {exc}", "traceback": ""}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(_MARK):
            try:
                return json.loads(line[len(_MARK):])
            except json.JSONDecodeError:
                break
    # The child died without reporting, e.g. a crash inside a native library.
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
    return {"ok": False, "error_type": "Crash",
            "error": f"Python exited with code {proc.returncode} while importing torch"
                     + (f": {' '.join(tail)}" if tail else ""),
            "traceback": proc.stderr}
