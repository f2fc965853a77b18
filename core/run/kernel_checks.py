"""The doctor's kernel lines: flash-attn, sageattention, triton and compile, what each brings, how to install it.

Usage::

    from core.run.kernel_checks import check_kernels
    for check in check_kernels(probe(), torch_facts_subprocess()):
        print(check.name, check.status, check.summary, check.remedy)

Nothing is imported to find out: packages by ``importlib.util.find_spec`` (core.run.speed.Kernels),
versions from package metadata, the C compiler from PATH, torch's CUDA build from the doctor's
torch facts (a child process). A missing kernel is never an error (PyTorch's own attention always
works); its line says what it would bring and gives the pip line for this torch and CUDA.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import sys
from collections.abc import Mapping
from typing import Any

from core.run.speed import Kernels

# Latest releases on PyPI when this was written (the doctor names them in install lines).
FLASH_ATTN = "2.8.3.post2"
SAGEATTENTION = "1.0.6"          # PyPI's SageAttention 1 (Triton kernels); SageAttention 2 builds from source


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _python() -> str:
    return f'"{sys.executable}"' if " " in sys.executable else sys.executable


def _torch_triton_pin() -> str | None:
    """The triton version this torch wheel asks for (Linux CUDA wheels pin it), from torch's metadata."""
    try:
        requires = importlib.metadata.requires("torch") or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for line in requires:
        match = re.match(r"\s*triton\s*==\s*([\w.]+)", line)
        if match:
            return match.group(1)
    return None


def check_kernels(hw: Any, facts: Mapping[str, Any], kernels: Kernels | None = None) -> list[Any]:
    """One doctor Check per kernel (flash-attn, sageattention, triton, compile) for this machine.

    ``facts``: the doctor's torch facts (``version``, ``cuda_version``, ``devices``); ``kernels``:
    what is installed (default: looked up, or ``hw.kernels`` when given).
    """
    from core.doctor import Check
    kernels = kernels or Kernels.of(hw)
    python = _python()
    torch_version = str(facts.get("version") or "") if facts.get("ok") else ""
    cuda = facts.get("cuda_version") if facts.get("ok") else None
    capabilities = [tuple(d.get("compute_capability") or ()) for d in facts.get("devices") or []] or \
        [g.compute_capability for g in getattr(hw, "gpus", []) if g.compute_capability]
    cc = min(capabilities) if capabilities else None
    gpu = bool(getattr(hw, "gpus", None))
    windows = os.name == "nt"
    build = f"torch {torch_version.split('+')[0]} with CUDA {cuda}" if cuda else f"torch {torch_version or '?'}"
    no_gpu = ("needs an NVIDIA GPU and a CUDA build of torch; on this computer PyTorch's own attention is used."
              if not (gpu and cuda) else "")
    ampere = cc is None or tuple(cc) >= (8, 0)
    old_gpu = "" if ampere else f" It needs compute capability 8.0 (RTX 30 series) or newer; this GPU is {cc[0]}.{cc[1]}."

    def line(name: str, installed: bool, brings: str, install: str) -> Any:
        if installed:
            usable = "" if not no_gpu and ampere else " (not usable here: " + (no_gpu or old_gpu.strip()) + ")"
            version = _version(name) or (_version("triton-windows") if name == "triton" else None)
            return Check(name, "ok", f"{name}{' ' + version if version else ''} installed: {brings}{usable}")
        if no_gpu:
            return Check(name, "ok", f"not installed; {no_gpu}")
        return Check(name, "ok", f"not installed. {brings}{old_gpu}", install if ampere else "")

    checks = []
    flash_install = ("No official Windows wheels: use sageattention or PyTorch's attention." if windows else
                     f"{python} -m pip install flash-attn=={FLASH_ATTN} --no-build-isolation\n"
                     f"(a prebuilt wheel exists only for some torch/CUDA/Python combinations; otherwise it compiles "
                     f"against {build}, which needs nvcc {cuda or ''} and 30-60 minutes)")
    checks.append(line("flash-attn", kernels.flash_attn,
                       "FlashAttention 2: exact attention, faster than PyTorch's on long videos; the balanced, "
                       "fast and auto presets use it.", flash_install))
    checks.append(line("sageattention", kernels.sageattention,
                       "SageAttention: 8-bit Q and K, about 2x FlashAttention 2 (close to, not exactly, the same "
                       "frames); the fast and auto presets use it.",
                       f"{python} -m pip install sageattention=={SAGEATTENTION}   (needs triton)"))
    pin = _torch_triton_pin()
    triton_install = (f"{python} -m pip install \"triton-windows<3.9\"   (the release line matching {build})"
                      if windows else f"{python} -m pip install triton" + (f"=={pin}" if pin else "")
                      + f"   ({'the version ' + build + ' pins' if pin else 'torch CUDA wheels usually bring it'})")
    checks.append(line("triton", kernels.triton,
                       "GPU kernels written in Python: torch.compile and sageattention need it.", triton_install))
    if not (gpu and cuda):
        checks.append(Check("compile", "ok", "off: compiling the transformer blocks targets an NVIDIA GPU."))
    elif not kernels.triton:
        checks.append(Check("compile", "ok", "not available: torch.compile needs triton (see above). It would make "
                                             "steps about 10-30% faster after a warm-up of a minute or more."))
    elif not kernels.compiler:
        checks.append(Check("compile", "ok", "not available: torch.compile needs a C compiler on PATH.",
                            "Install Visual Studio Build Tools (C++)." if windows else
                            "sudo apt install build-essential   (or your system's gcc package)"))
    else:
        checks.append(Check("compile", "ok", f"available (triton and {kernels.compiler}): the fast and auto presets "
                                             "compile the transformer blocks (about 10-30% faster steps after a "
                                             "warm-up of a minute or more)."))
    return checks
