"""`python -m core doctor`: is this computer ready to run Wan models, and if not, why.

Usage::

    from core.config import load_config
    from core.doctor import run_doctor
    report = run_doctor(load_config())
    print(report.render_text())          # one line per check, remedies indented
    report.ok                            # False when any check is an error
    report.to_dict()                     # what `doctor --json` prints

torch is imported only in a child process (:func:`core.run.hardware.torch_facts_subprocess`),
so a broken install (Windows' "DLL load failed while importing _C") is reported with the
command that mends it instead of crashing the doctor.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from core.atomic import nearest_existing
from core.config import AppConfig, load_config
from core.run.hardware import HardwareInfo, probe, torch_facts_subprocess
from core.units import format_bytes, format_mib
from launcher.launch_helper import CUDA_BUILDS, PYTORCH_INDEX, cuda_tag_for

Status = Literal["ok", "warning", "error"]

MIN_PYTHON = (3, 10)
# Wan 2.2 (WanPipeline with transformer_2 and boundary_ratio, the z48 VAE) needs these.
MIN_VERSIONS = {"diffusers": (0, 35, 0), "transformers": (4, 51, 0)}
DEFAULT_TORCH_VERSION = "2.13.0"
# The driver -> CUDA build table (cu130 for 580+, else cu126) is the launchers' one, in
# launcher/launch_helper.py.

GB = 1024  # MB per GB


@dataclass(frozen=True)
class Check:
    """One line of the doctor's report. ``remedy`` is empty when nothing needs doing."""

    name: str
    status: Status
    summary: str
    remedy: str = ""


@dataclass(frozen=True)
class DoctorReport:
    checks: list[Check]
    hardware: HardwareInfo | None = None
    torch: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when no check is an error (warnings do not count)."""
        return all(c.status != "error" for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "checks": [{"name": c.name, "status": c.status, "summary": c.summary,
                        "remedy": c.remedy} for c in self.checks],
            "hardware": self.hardware.to_dict() if self.hardware else None,
            "torch": self.torch,
        }

    def render_text(self) -> str:
        marks = {"ok": "[ok]   ", "warning": "[warn] ", "error": "[ERROR]"}
        lines = []
        for c in self.checks:
            lines.append(f"{marks[c.status]} {c.name}: {c.summary}")
            for i, remedy_line in enumerate(c.remedy.splitlines()):
                lines.append(("        -> " if i == 0 else "           ") + remedy_line)
        errors = sum(c.status == "error" for c in self.checks)
        warnings = sum(c.status == "warning" for c in self.checks)
        if errors or warnings:
            lines.append(f"{errors} error(s), {warnings} warning(s).")
        else:
            lines.append("Everything is ready.")
        return "\n".join(lines)


def run_doctor(config: AppConfig | None = None, *, env: Mapping[str, str] | None = None,
               hardware: HardwareInfo | None = None, torch_timeout: float = 60) -> DoctorReport:
    """Run every check; never raises for what it finds and never imports torch here.

    ``env`` is the environment of the child process that imports torch and ``hardware`` a
    ready probe result; both are for tests.
    """
    from core.run.kernel_checks import check_kernels
    config = config or load_config()
    hw = hardware or probe(use_torch=False)
    facts = torch_facts_subprocess(timeout=torch_timeout, env=env)
    checks = [
        check_python(),
        check_config(config),
        check_torch(facts, hw),
        check_gpu(hw),
        *([check_vram(hw)] if hw.gpus else []),
        check_models_ram(check_ram(hw), config.models_dir, hw),
        check_disk("Disk (models)", config.models_dir, min_free_gb=30,
                   why="a Wan model takes from about 20 GB (1.3B) to over 100 GB (A14B)"),
        check_disk("Disk (outputs)", config.outputs_dir, min_free_gb=1,
                   why="videos and their frames are written there"),
        check_disk("Disk (offload)", config.offload_dir, min_free_gb=30,
                   why="when RAM cannot hold a model, offload: disk writes its weights there (20 GB and more)"),
        check_package("diffusers"),
        check_package("transformers"),
        check_ffmpeg(),
        *check_kernels(hw, facts),      # flash-attn, sageattention, triton, compile (core.run.kernel_checks)
    ]
    return DoctorReport(checks=checks, hardware=hw, torch=facts)


# --- the checks -------------------------------------------------------------------------

def check_python() -> Check:
    version = ".".join(map(str, sys.version_info[:3]))
    if sys.version_info[:2] < MIN_PYTHON:
        return Check("Python", "error", f"Python {version} is too old; 3.10 or newer is needed.",
                     "Install Python 3.11 or 3.12 from python.org, delete the .venv folder "
                     "and run the launcher again.")
    return Check("Python", "ok", f"Python {version} ({sys.executable})")


def check_config(config: AppConfig) -> Check:
    where = str(config.source) if config.source else "defaults (no config file found)"
    if config.warnings:
        return Check("Config", "warning", f"{where}: " + " ".join(config.warnings),
                     "Correct or remove the settings named above.")
    return Check("Config", "ok", where)


def check_torch(facts: Mapping[str, Any], hw: HardwareInfo) -> Check:
    if not facts.get("ok"):
        error = str(facts.get("error") or "unknown error").strip().splitlines()[0]
        if facts.get("error_type") == "ModuleNotFoundError" and "'torch'" in error:
            return Check("torch", "error", "torch is not installed.",
                         torch_install_commands(hw, uninstall=False))
        remedy = torch_install_commands(hw, uninstall=True)
        if "DLL load failed" in error or sys.platform == "win32":
            remedy += ("\nIf the error stays, install the latest Microsoft Visual C++ "
                       "Redistributable (x64) and restart.")
        return Check("torch", "error", f"torch is installed but cannot be imported: {error}",
                     remedy)
    version = facts.get("version", "?")
    if facts.get("cuda_available"):
        devices = facts.get("devices") or []
        build = f"CUDA {facts['cuda_version']}" if facts.get("cuda_version") else f"ROCm {facts.get('hip_version')}"
        return Check("torch", "ok", f"torch {version} with {build}; it sees {len(devices)} GPU(s).")
    if hw.gpus:
        built_for, driver_cuda = facts.get("cuda_version"), hw.driver_cuda_version
        if built_for and driver_cuda and _version_tuple(built_for) > _version_tuple(driver_cuda):
            summary = (f"torch {version} built for CUDA {built_for}, your driver supports up to "
                       f"{driver_cuda}: torch cannot use your NVIDIA GPU.")
        else:
            summary = (f"torch {version} cannot use your NVIDIA GPU (it is a CPU-only build, or "
                       "the driver is too old for it).")
        return Check("torch", "warning", summary, torch_install_commands(hw, uninstall=True))
    if facts.get("mps_available"):
        return Check("torch", "ok", f"torch {version} with Apple MPS.")
    return Check("torch", "ok", f"torch {version} (CPU).")


def check_gpu(hw: HardwareInfo) -> Check:
    if not hw.gpus:
        problems = " ".join(hw.problems)
        return Check("GPU", "warning",
                     "No NVIDIA GPU found: generation will run on the CPU and be very slow."
                     + (f" ({problems})" if problems else ""),
                     "If this computer has an NVIDIA GPU, install or update its driver "
                     "(`nvidia-smi` should then list it).")
    parts = []
    for g in hw.gpus:
        cap = f"compute {g.compute_capability[0]}.{g.compute_capability[1]}" if g.compute_capability else "compute ?"
        bf16 = {True: "bf16", False: "no bf16 (fp16 will be used)", None: "bf16 unknown"}[g.bf16_supported]
        parts.append(f"#{g.index} {g.name}, {format_mib(g.total_mb)}, {cap}, {bf16}")
    driver = f"; driver {hw.driver_version}" if hw.driver_version else ""
    cuda = f" (CUDA up to {hw.driver_cuda_version})" if hw.driver_cuda_version else ""
    status: Status = "warning" if hw.problems else "ok"
    return Check("GPU", status, "; ".join(parts) + driver + cuda + (
        " " + " ".join(hw.problems) if hw.problems else ""))


def check_vram(hw: HardwareInfo) -> Check:
    gpu = max(hw.gpus, key=lambda g: g.total_mb)
    total_gb = format_mib(gpu.total_mb)
    if gpu.free_mb is not None and gpu.total_mb - gpu.free_mb > max(GB, gpu.total_mb // 4):
        return Check("VRAM", "warning",
                     f"Other programs use {format_mib(gpu.total_mb - gpu.free_mb)} of the "
                     f"{total_gb} on {gpu.name}.",
                     "Close games, other AI tools or browsers with hardware acceleration before generating.")
    if gpu.total_mb < 8 * GB:
        return Check("VRAM", "warning",
                     f"{total_gb} of GPU memory is little: even Wan2.1 1.3B needs about 8 GB.",
                     "Use offload: sequential (slow), small sizes and few frames.")
    if gpu.total_mb < 24 * GB:
        return Check("VRAM", "ok", f"{total_gb}: enough for Wan2.1 1.3B; 5B and 14B models "
                                    "need offloading (group offload runs a 14B model in about 13 GB).")
    if gpu.total_mb < 64 * GB:
        return Check("VRAM", "ok", f"{total_gb}: TI2V-5B fits with the text encoder on the "
                                    "CPU; 14B and A14B models need offloading.")
    return Check("VRAM", "ok", f"{total_gb}: enough for every Wan model at 720p with "
                                "model offloading.")


def check_ram(hw: HardwareInfo) -> Check:
    if hw.ram_total_mb is None:
        return Check("RAM", "warning", "System memory could not be measured. " + " ".join(hw.problems),
                     "Install psutil: pip install psutil")
    summary = f"{format_mib(hw.ram_total_mb)} total, {format_mib(hw.ram_free_mb)} free now."
    if hw.ram_total_mb < 16 * GB:
        return Check("RAM", "warning", summary + " Loading Wan models may fail below 16 GB; the "
                     "text encoder alone is 11.4 GB in bf16.",
                     "Prefer Wan2.1 1.3B, or add memory or a larger page file / swap.")
    if hw.ram_free_mb is not None and hw.ram_free_mb < 4 * GB:
        return Check("RAM", "warning", summary, "Close other programs before loading a model.")
    if hw.ram_total_mb < 72 * GB:
        summary += " A14B models with offloading keep about 66 GB of weights in RAM."
    return Check("RAM", "ok", summary)


def check_models_ram(ram: Check, models_dir: Path, hw: HardwareInfo) -> Check:
    """The RAM line is no green tick while a model in the models folder does not fit this RAM."""
    if ram.status != "ok" or hw.ram_total_mb is None:
        return ram
    from core.run.models_fit import ram_misfits
    short = ram_misfits(Path(models_dir), hw)
    if not short:
        return ram
    name, problem, remedy = short[0]
    more = f" ({len(short) - 1} more model{'s' if len(short) > 2 else ''} too)" if len(short) > 1 else ""
    return Check("RAM", "warning", f"{ram.summary} Too little for {name}{more}: {problem}", remedy)


def check_disk(name: str, folder: Path, *, min_free_gb: float, why: str) -> Check:
    existing = nearest_existing(folder)
    note = "" if existing == folder else f" (not created yet; measured at {existing})"
    try:
        free = shutil.disk_usage(existing).free
    except OSError as exc:
        return Check(name, "warning", f"Free space in {folder} could not be measured: {exc}.",
                     "Check the path in config.yaml.")
    summary = f"{format_bytes(free)} free in {folder}{note}."
    if free < min_free_gb * 1e9:
        return Check(name, "warning", f"{summary} That is little: {why}.",
                     "Free some space, or point the folder in config.yaml at a larger disk.")
    return Check(name, "ok", summary)


def check_package(package: str) -> Check:
    minimum = ".".join(map(str, MIN_VERSIONS[package]))
    pip = f"{_python_cmd()} -m pip install -U \"{package}>={minimum}\""
    try:
        version = importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return Check(package, "error", f"{package} is not installed (Wan 2.2 needs {minimum} or newer).", pip)
    if _version_tuple(version) < MIN_VERSIONS[package]:
        return Check(package, "error", f"{package} {version} is too old for Wan 2.2 (needs {minimum} or newer).", pip)
    return Check(package, "ok", f"{package} {version} (Wan 2.2 needs {minimum} or newer).")


def check_ffmpeg(get_exe: Callable[[], str] | None = None) -> Check:
    remedy = f"{_python_cmd()} -m pip install --force-reinstall imageio-ffmpeg"
    try:
        if get_exe is None:
            import imageio_ffmpeg
            get_exe = imageio_ffmpeg.get_ffmpeg_exe
        exe = get_exe()
    except ImportError:
        return Check("ffmpeg", "error", "imageio-ffmpeg is not installed, so videos cannot be saved as MP4.", remedy)
    except Exception as exc:  # noqa: BLE001 - imageio-ffmpeg raises RuntimeError when its binary is missing
        return Check("ffmpeg", "error", f"ffmpeg was not found: {exc}", remedy)
    version = _ffmpeg_version(exe)          # runs it: a path that does not exist, or no ffmpeg, fails here
    if version is None:
        return Check("ffmpeg", "error", f"{exe} does not run as ffmpeg (`{exe} -version` failed or printed "
                     "no ffmpeg version), so videos cannot be saved.", remedy + " (and unset IMAGEIO_FFMPEG_EXE)")
    from core.run.video import trial_encode
    problem = trial_encode()
    if problem:
        return Check("ffmpeg", "error", f"{version} at {exe} runs, but a two-frame test video failed: {problem}",
                     remedy + " (and unset IMAGEIO_FFMPEG_EXE)")
    return Check("ffmpeg", "ok", f"{version} at {exe} (a test video was written and read back)")


# --- helpers ----------------------------------------------------------------------------

def torch_install_commands(hw: HardwareInfo, *, uninstall: bool) -> str:
    """The pip commands that (re)install the right torch build for this computer's GPU.

    ``TORCH_INDEX_URL`` and ``TORCH_VERSION`` override the choice, as in the launchers.
    """
    python = _python_cmd()
    version = os.environ.get("TORCH_VERSION") or _installed_torch_base() or DEFAULT_TORCH_VERSION
    index = os.environ.get("TORCH_INDEX_URL") or torch_index_for(hw)
    lines = []
    if uninstall:
        lines.append(f"{python} -m pip uninstall -y torch")
    lines.append(f"{python} -m pip install torch=={version}" + (f" --index-url {index}" if index else ""))
    if hw.gpus and _driver_major(hw) < CUDA_BUILDS[0][1]:
        supports = f"supports CUDA {hw.driver_cuda_version} only" if hw.driver_cuda_version else "is old"
        lines.append(f"Your NVIDIA driver {supports}: update the driver to {CUDA_BUILDS[0][1]} or "
                     "newer for torch's CUDA 13.0 build; the command above installs the build for "
                     "the driver you have.")
    return "\n".join(lines)


def torch_index_for(hw: HardwareInfo) -> str | None:
    """PyTorch's wheel index for this machine; None means the default (PyPI)."""
    if not hw.gpus:
        # PyPI's Linux wheel bundles CUDA (several GB); the CPU index is much smaller.
        return PYTORCH_INDEX + "cpu" if sys.platform.startswith("linux") else None
    capabilities = [g.compute_capability for g in hw.gpus if g.compute_capability]
    return PYTORCH_INDEX + cuda_tag_for(_driver_major(hw), tuple(min(capabilities)) if capabilities else None)


def _driver_major(hw: HardwareInfo) -> int:
    """The NVIDIA driver's major version ("575.57.08" -> 575); from its CUDA when unknown."""
    if hw.driver_version and re.match(r"\d+", hw.driver_version):
        return int(re.match(r"\d+", hw.driver_version).group())
    return 580 if _version_tuple(hw.driver_cuda_version or "0") >= (13, 0) else 0


def _installed_torch_base() -> str | None:
    """The installed torch version without its build tag (read from metadata, no import)."""
    try:
        return importlib.metadata.version("torch").split("+")[0]
    except importlib.metadata.PackageNotFoundError:
        return None


def _version_tuple(version: str) -> tuple[int, ...]:
    match = re.match(r"(\d+)(?:\.(\d+))?(?:\.(\d+))?", version)
    if not match:
        return (0,)
    return tuple(int(x or 0) for x in match.groups())


def _python_cmd() -> str:
    exe = sys.executable or "python"
    return f'"{exe}"' if " " in exe else exe


def _ffmpeg_version(exe: str) -> str | None:
    try:
        out = subprocess.run([exe, "-version"], capture_output=True, text=True, timeout=15,
                             errors="replace").stdout
    except (OSError, subprocess.SubprocessError):
        return None
    first = out.splitlines()[0] if out else ""
    match = re.match(r"(ffmpeg version \S+)", first)
    return match.group(1) if match else None
