"""What launch.sh and launch.bat share: the torch index, the checks, the install key.

Standard library only, and runnable by any Python 3.10+ (the base Python, before ``.venv``
exists, or the one in ``.venv``). Each sub-command prints one plain answer for the
launcher and exits 0, or prints a sentence with a remedy and exits 1::

    python launcher/launch_helper.py index          # TORCH_INDEX_URL, or the index for this GPU; empty: PyPI
    python launcher/launch_helper.py key test 2.13.0 URL requirements.txt requirements-test.txt
    python launcher/launch_helper.py build-differs URL        # exit 0: the installed torch is another build
    python launcher/launch_helper.py preflight FOLDER          # writable, long paths, OneDrive
    python launcher/launch_helper.py cuda-check URL            # after installing: does torch see the GPU?
    python launcher/launch_helper.py explain-pip LOG torch     # why pip failed, from its output
    python launcher/launch_helper.py run-tests test -k fast    # pytest on tests/, arguments as typed

The driver-to-build table (``CUDA_BUILDS``) is the one place where the launchers' choice of
torch build is written; ``core``'s doctor reads it too.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

PYTORCH_INDEX = "https://download.pytorch.org/whl/"
# PyTorch's CUDA builds of torch 2.12/2.13, newest first: (tag, lowest driver major, lowest
# compute capability). cu130 needs driver 580+ and a Turing or newer GPU; cu126 is the
# "legacy" build that still runs Maxwell, Pascal and Volta. There is no cu128 since 2.12.
CUDA_BUILDS: tuple[tuple[str, int, tuple[int, int]], ...] = (
    ("cu130", 580, (7, 5)),
    ("cu126", 525, (5, 0)),
)
# The newest CUDA each driver supports (NVIDIA's CUDA release notes, Linux and Windows
# drivers share the major number); used when nvidia-smi does not print it.
DRIVER_CUDA: tuple[tuple[int, str], ...] = (
    (580, "13.0"), (575, "12.9"), (570, "12.8"), (560, "12.6"), (555, "12.5"), (550, "12.4"),
    (545, "12.3"), (535, "12.2"), (530, "12.1"), (525, "12.0"), (520, "11.8"), (450, "11.0"),
)
# Files in torch 2.13's wheel reach 173 characters below site-packages.
TORCH_DEEPEST_FILE = 173
WINDOWS_MAX_PATH = 259  # 260 with the terminating NUL
LONG_PATHS_COMMAND = ('reg add "HKLM\\SYSTEM\\CurrentControlSet\\Control\\FileSystem" '
                      '/v LongPathsEnabled /t REG_DWORD /d 1 /f')


@dataclass(frozen=True)
class NvidiaInfo:
    """What ``nvidia-smi`` says: driver version, newest CUDA it supports, GPUs' compute capability.

    >>> info = NvidiaInfo("575.57.08", "12.9", ((8, 6),))
    >>> info.driver_major, info.oldest_capability
    (575, (8, 6))
    """

    driver: str
    cuda: str
    capabilities: tuple[tuple[int, int], ...] = ()

    @property
    def driver_major(self) -> int:
        match = re.match(r"\d+", self.driver)
        return int(match.group()) if match else 0

    @property
    def oldest_capability(self) -> tuple[int, int] | None:
        return min(self.capabilities) if self.capabilities else None


# --- the torch build ----------------------------------------------------------------------

def driver_cuda(driver_major: int) -> str:
    """The newest CUDA a driver supports, from its major version.

    >>> driver_cuda(576), driver_cuda(560), driver_cuda(300)
    ('12.9', '12.6', '')
    """
    for minimum, cuda in DRIVER_CUDA:
        if driver_major >= minimum:
            return cuda
    return ""


def cuda_tag_for(driver_major: int, capability: tuple[int, int] | None = None) -> str:
    """The PyTorch CUDA build for a driver and the oldest GPU (None: assume a new GPU).

    >>> cuda_tag_for(580), cuda_tag_for(575), cuda_tag_for(590, (6, 1)), cuda_tag_for(470)
    ('cu130', 'cu126', 'cu126', 'cu126')
    """
    for tag, min_driver, min_capability in CUDA_BUILDS:
        if driver_major >= min_driver and (capability is None or capability >= min_capability):
            return tag
    return CUDA_BUILDS[-1][0]  # the oldest build; cuda-check says when the driver is too old


def choose_index(nvidia: NvidiaInfo | None, platform: str = sys.platform) -> str:
    """The index to install torch from with ``--index-url``; "" means PyPI.

    With an NVIDIA GPU, PyTorch's own index of the build for the driver, so that a missing
    build fails instead of pip taking PyPI's (CPU-only on Windows, CUDA 13.0 on Linux).

    >>> choose_index(None, "win32"), choose_index(NvidiaInfo("581.15", "13.0"), "darwin")
    ('', '')
    >>> choose_index(NvidiaInfo("581.15", "13.0"), "win32")
    'https://download.pytorch.org/whl/cu130'
    >>> choose_index(NvidiaInfo("560.94", "12.6"), "linux")
    'https://download.pytorch.org/whl/cu126'
    """
    if nvidia is None or platform == "darwin":
        return ""
    return PYTORCH_INDEX + cuda_tag_for(nvidia.driver_major, nvidia.oldest_capability)


def requested_index(environ: dict, nvidia: NvidiaInfo | None, platform: str = sys.platform) -> str:
    """``TORCH_INDEX_URL`` when set ("pypi" means PyPI), else the index for this computer.

    >>> requested_index({"TORCH_INDEX_URL": "pypi"}, NvidiaInfo("581.15", "13.0"), "win32")
    ''
    """
    wanted = environ.get("TORCH_INDEX_URL", "").strip().strip('"')
    if wanted:
        return "" if wanted.lower() == "pypi" else wanted
    return choose_index(nvidia, platform)


def index_tag(index_url: str) -> str | None:
    """The build tag of a PyTorch index ("cu126", "cpu"), "" for PyPI, None when unknown.

    >>> index_tag("https://download.pytorch.org/whl/cu126/"), index_tag(""), index_tag("https://mirror/simple")
    ('cu126', '', None)
    """
    if not index_url:
        return ""
    tag = index_url.rstrip("/").rsplit("/", 1)[-1]
    return tag if re.fullmatch(r"cu\d+|cpu|rocm[\d.]+|xpu", tag) else None


def build_differs(installed: str | None, index_url: str) -> bool:
    """Whether an installed torch (e.g. "2.13.0+cpu") is another build than the index serves.

    pip calls ``torch==2.13.0`` "already satisfied" by any 2.13.0 build, so the launchers
    remove a differing one first. PyPI ("") and unknown indexes never replace a torch.

    >>> build_differs("2.13.0+cpu", "https://download.pytorch.org/whl/cu130")
    True
    >>> build_differs("2.13.0+cu126", ""), build_differs("2.13.0+cu126", "https://download.pytorch.org/whl/cu126")
    (False, False)
    """
    tag = index_tag(index_url)
    if installed is None or not tag:
        return False
    return not installed.endswith("+" + tag)


def parse_nvidia_smi(query_output: str, header: str = "") -> NvidiaInfo | None:
    """Read ``nvidia-smi --query-gpu=driver_version,compute_cap --format=csv,noheader``.

    ``header`` is the plain ``nvidia-smi`` output, whose "CUDA Version: 12.9" is exact.

    >>> parse_nvidia_smi("575.57.08, 8.6\\n575.57.08, 6.1\\n", "| CUDA Version: 12.9 |")
    NvidiaInfo(driver='575.57.08', cuda='12.9', capabilities=((8, 6), (6, 1)))
    >>> parse_nvidia_smi("NVIDIA-SMI has failed because it couldn't communicate with the driver") is None
    True
    """
    driver, capabilities = "", []
    for line in query_output.splitlines():
        fields = [f.strip() for f in line.split(",")]
        if not re.fullmatch(r"\d+(\.\d+)+", fields[0]):
            continue
        driver = driver or fields[0]
        cap = re.fullmatch(r"(\d+)\.(\d+)", fields[1]) if len(fields) > 1 else None
        if cap:
            capabilities.append((int(cap.group(1)), int(cap.group(2))))
    if not driver:
        return None
    found = re.search(r"CUDA Version\s*:\s*(\d+\.\d+)", header)
    info = NvidiaInfo(driver, "", tuple(capabilities))
    return NvidiaInfo(driver, found.group(1) if found else driver_cuda(info.driver_major), info.capabilities)


def _run(command: Sequence[str]) -> tuple[int, str]:
    """Run a program, returning its exit code and output; (127, "") when it cannot start."""
    try:
        done = subprocess.run(list(command), capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return 127, ""
    return done.returncode, done.stdout + done.stderr


def probe_nvidia(exact_cuda: bool = False) -> NvidiaInfo | None:
    """Ask ``nvidia-smi`` on PATH; None when it is missing or sees no GPU.

    ``exact_cuda`` also runs plain ``nvidia-smi`` for its "CUDA Version" (a second call).
    """
    smi = shutil.which("nvidia-smi")
    if not smi:
        return None
    code, out = _run([smi, "--query-gpu=driver_version,compute_cap", "--format=csv,noheader"])
    if code != 0:  # drivers before 510 do not know compute_cap
        code, out = _run([smi, "--query-gpu=driver_version", "--format=csv,noheader"])
    header = _run([smi])[1] if exact_cuda and code == 0 else ""
    info = parse_nvidia_smi(out, header) if code == 0 else None
    if info is None:
        say(f"nvidia-smi is installed but reports no working GPU ({first_line(out) or 'no output'}); "
            "installing torch without CUDA. Reinstall the NVIDIA driver if this computer has an NVIDIA GPU.")
    return info


# --- the checks -----------------------------------------------------------------------------

def cuda_problem(nvidia: NvidiaInfo | None, torch_facts: dict, index_url: str) -> str:
    """The message when torch cannot use an NVIDIA GPU that ``nvidia-smi`` sees; "" when fine.

    >>> cuda_problem(NvidiaInfo("575.57.08", "12.9"), {"version": "2.13.0+cpu", "cuda": None,
    ...              "available": False}, "https://download.pytorch.org/whl/cu126")[:70]
    'torch 2.13.0+cpu is a CPU-only build, so it cannot use your NVIDIA GPU'
    """
    if nvidia is None or torch_facts.get("available"):
        return ""
    version, built_for = torch_facts.get("version", "?"), torch_facts.get("cuda")
    build = f"built for CUDA {built_for}" if built_for else "a CPU-only build"
    wanted = index_url or PYTORCH_INDEX + cuda_tag_for(nvidia.driver_major, nvidia.oldest_capability)
    supports = f"supports CUDA up to {nvidia.cuda}" if nvidia.cuda else "is too old for any torch CUDA build"
    lines = [f"torch {version} is {build}, so it cannot use your NVIDIA GPU "
             f"(driver {nvidia.driver}, which {supports})."]
    if torch_facts.get("error"):
        lines.append(f"torch says: {torch_facts['error']}")
    if nvidia.driver_major < CUDA_BUILDS[0][1]:
        lines.append(f"Update the NVIDIA driver to {CUDA_BUILDS[0][1]} or newer "
                     "(https://www.nvidia.com/drivers), or install the build for your driver from "
                     f"{wanted} (set TORCH_INDEX_URL={wanted}), then start again.")
    else:
        lines.append(f"Install the build from {wanted}: set TORCH_INDEX_URL={wanted} and start again.")
    lines.append("To use the CPU anyway (very slow), set WAN_COMPAT_ALLOW_CPU=1.")
    return "\n".join(lines)


def torch_facts() -> dict:
    """Import torch in this Python and report its version, CUDA build and whether it sees a GPU."""
    try:
        import torch  # noqa: PLC0415 - the check is whether this works
    except Exception as exc:  # noqa: BLE001 - a broken install raises anything (OSError for DLLs)
        return {"version": "(cannot be imported)", "cuda": None, "available": False,
                "error": first_line(str(exc)) or type(exc).__name__}
    return {"version": torch.__version__, "cuda": torch.version.cuda,
            "available": bool(torch.cuda.is_available())}


def folder_problems(root: Path, platform: str = sys.platform, environ: dict | None = None,
                    long_paths: bool | None = None) -> tuple[list[str], list[str]]:
    """(errors, warnings) about installing into ``root``: writable, path length, OneDrive.

    >>> errors, warnings = folder_problems(Path("C:/Users/ann/OneDrive/Desktop/" + "x" * 40), "win32",
    ...                                    {"OneDrive": "C:/Users/ann/OneDrive"}, long_paths=False)
    >>> any("long paths are off" in e for e in errors), len(warnings)
    (True, 1)
    """
    environ = os.environ if environ is None else environ
    errors: list[str] = []
    warnings: list[str] = []
    if not writable(root):
        errors.append(f"Cannot write in {root}. Move the Wan Compat folder to a folder of your own "
                      "(e.g. C:\\WanCompat or your home folder), or give yourself write permission "
                      "there, then start again.")
    if platform == "win32":
        deepest = len(str(root)) + len("\\.venv\\Lib\\site-packages\\") + TORCH_DEEPEST_FILE
        if long_paths is None:
            long_paths = windows_long_paths_enabled()
        if not long_paths and deepest > WINDOWS_MAX_PATH:
            errors.append(
                f"The folder {root} is too long a path ({len(str(root))} characters) for torch's "
                f"files while Windows' long paths are off: paths would reach {deepest} characters, "
                f"Windows allows {WINDOWS_MAX_PATH}. Move the Wan Compat folder to a short path such "
                "as C:\\WanCompat, or enable long paths: open a Command Prompt as administrator, run\n"
                f"    {LONG_PATHS_COMMAND}\nthen start again.")
        onedrive = [environ.get(k, "") for k in ("OneDrive", "OneDriveConsumer", "OneDriveCommercial")]
        text = str(root).lower()
        if any(d and text.startswith(d.lower().rstrip("\\/")) for d in onedrive) or "\\onedrive" in text:
            warnings.append(
                f"{root} is inside OneDrive, which would upload the 5 GB .venv folder and can lock "
                "files while they are installed (WinError 5 or 32). Better: move the Wan Compat "
                "folder out of OneDrive, e.g. to C:\\WanCompat.")
    return errors, warnings


def writable(folder: Path) -> bool:
    """Whether a file can be created in ``folder``."""
    probe = Path(folder) / f".wan-compat-write-test-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError:
        return False
    return True


def windows_long_paths_enabled() -> bool:
    """Windows' LongPathsEnabled registry value (False when unreadable or not Windows)."""
    try:
        import winreg  # noqa: PLC0415 - Windows only
        with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, r"SYSTEM\CurrentControlSet\Control\FileSystem") as key:
            return winreg.QueryValueEx(key, "LongPathsEnabled")[0] == 1
    except (ImportError, OSError):
        return False


# Likely causes of a failed pip run, from its output: (pattern, sentence with a remedy).
PIP_CAUSES: tuple[tuple[str, str], ...] = (
    (r"No space left on device|Errno 28|not enough space on the disk|WinError 112",
     "The disk is full: free some space (torch needs about 5 GB) and start again."),
    (r"WinError 206|filename (or extension )?is too long|File name too long",
     "A path is too long: move the Wan Compat folder to a short path such as C:\\WanCompat, or "
     f"enable long paths (as administrator: {LONG_PATHS_COMMAND}), then start again."),
    (r"WinError 5\b|WinError 32\b|Access is denied|being used by another process|PermissionError",
     "A file was locked or access was denied: an antivirus or OneDrive may be holding it. Close other "
     "windows using this folder, pause OneDrive or add an antivirus exception for this folder "
     "(or move it, e.g. to C:\\WanCompat), then start again."),
    (r"No matching distribution found|Could not find a version that satisfies",
     "pip found no matching package for this Python and computer: check TORCH_VERSION and "
     "TORCH_INDEX_URL, and use 64-bit Python 3.10 to 3.13."),
    (r"NewConnectionError|Max retries exceeded|Temporary failure in name resolution|ProxyError|"
     r"SSLError|ConnectTimeout|Read timed out|ConnectionResetError|Network is unreachable|getaddrinfo failed",
     "The download failed: check your internet connection (and proxy or firewall), then start again; "
     "the download resumes from the start."),
    (r"HashMismatch|THESE PACKAGES DO NOT MATCH THE HASHES",
     "A download arrived damaged: start again; if it repeats, your connection or proxy alters files."),
)


def explain_pip(output: str, what: str) -> str:
    """Plain sentences naming the likely causes of a failed ``pip install``.

    >>> print(explain_pip("OSError: [Errno 28] No space left on device", "torch"))
    Installing torch failed. The disk is full: free some space (torch needs about 5 GB) and start again.
    """
    causes = [sentence for pattern, sentence in PIP_CAUSES if re.search(pattern, output, re.I)]
    if not causes:
        causes = ["See pip's message above. Likely causes: no internet connection, a full disk, "
                  "an antivirus locking files, or a path too long for Windows."]
    return f"Installing {what} failed. " + "\n".join(causes)


def install_key(parts: Sequence[str], files: Sequence[str]) -> str:
    """The sha256 of what an install depends on; a stamp holding it means nothing changed.

    >>> len(install_key(["app", "torch=2.13.0", "index="], []))
    64
    """
    digest = hashlib.sha256("\n".join(parts).encode())
    for name in files:
        digest.update(Path(name).read_bytes())
    return digest.hexdigest()


# --- small things -----------------------------------------------------------------------------

def say(message: str) -> None:
    """Print a launcher message to stderr, each line prefixed like the launchers' own."""
    for line in message.splitlines():
        print(f"[launch] {line}", file=sys.stderr, flush=True)


def first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def installed_torch() -> str | None:
    """The installed torch's version from its metadata (no import), or None."""
    import importlib.metadata  # noqa: PLC0415 - only this sub-command needs it
    try:
        return importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return None


# --- the sub-commands -----------------------------------------------------------------------

def main(argv: Sequence[str]) -> int:
    """Run one sub-command (see the module docstring); returns the exit code."""
    if not argv:
        say(__doc__ or "")
        return 2
    command, args = argv[0], list(argv[1:])
    if command == "index":
        wanted = os.environ.get("TORCH_INDEX_URL", "").strip()
        print(requested_index(os.environ, None if wanted else probe_nvidia()))
        return 0
    if command == "key":
        mode, version, index, *files = args
        print(install_key([mode, f"torch={version} index={index}"], files))
        return 0
    if command == "build-differs":
        return 0 if build_differs(installed_torch(), args[0] if args else "") else 1
    if command == "preflight":
        errors, warnings = folder_problems(Path(args[0] if args else ".").resolve())
        for message in warnings + errors:
            say(message)
        return 1 if errors else 0
    if command == "cuda-check":
        if os.environ.get("WAN_COMPAT_ALLOW_CPU") == "1":
            return 0
        nvidia = probe_nvidia(exact_cuda=True)
        problem = cuda_problem(nvidia, torch_facts() if nvidia else {}, args[0] if args else "")
        if problem:
            say(problem)
            return 1
        return 0
    if command == "explain-pip":
        text = Path(args[0]).read_text(errors="replace") if args and Path(args[0]).exists() else ""
        say(explain_pip(text, args[1] if len(args) > 1 else "the packages"))
        return 0
    if command == "run-tests":  # launch.bat: %* arrives intact, "test" first
        import pytest  # noqa: PLC0415 - only installed with the test extras
        return int(pytest.main(["-q", "tests", *args[1:]]))
    say(f"Unknown command {command!r}.")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
