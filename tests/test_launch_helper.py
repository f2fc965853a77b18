"""launcher/launch_helper.py, the logic launch.sh and launch.bat share, and launch.sh using it.

The index choice and the post-install check are driven by a fake ``nvidia-smi`` on PATH
(only PyPI is reachable here); the check runs the CPU-only torch installed in ``.venv``.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from launcher import launch_helper as helper
from tests.test_launch import FAKE_PYTHON, clean_path, launch, pip_calls, project  # noqa: F401 - fixtures

ROOT = Path(__file__).resolve().parent.parent
CU126 = "https://download.pytorch.org/whl/cu126"
CU130 = "https://download.pytorch.org/whl/cu130"


def fake_nvidia_smi(folder: Path, query: str, header_cuda: str = "", code: int = 0) -> None:
    """Put an ``nvidia-smi`` in ``folder`` that answers the query with ``query``.

    Without ``compute_cap`` in ``query`` it behaves like a driver before 510, which refuses that field.
    """
    folder.mkdir(parents=True, exist_ok=True)
    old = "compute_cap" not in query and "," not in query
    script = folder / "nvidia-smi"
    script.write_text(
        "#!/bin/sh\n"
        'case "$*" in\n'
        + ("  *compute_cap*) echo 'Field \"compute_cap\" is not a valid field to query.'; exit 2 ;;\n" if old else "")
        + f"  *--query-gpu*) printf '%s\\n' '{query}'; exit {code} ;;\n"
        f"  '') echo '| NVIDIA-SMI {query.split(',')[0]}  CUDA Version: {header_cuda} |'; exit {code} ;;\n"
        "esac\n")
    script.chmod(0o755)


# --- the index choice -------------------------------------------------------------------------

@pytest.mark.parametrize(("driver", "capability", "platform", "index"), [
    (581, (8, 9), "win32", CU130),       # CUDA 13.0 driver, Ada
    (580, (7, 5), "linux", CU130),       # the lowest cu130 driver, Turing
    (576, (8, 6), "win32", CU126),       # CUDA 12.9 driver: no cu128 build since torch 2.12
    (570, (12, 0), "linux", CU126),
    (590, (6, 1), "win32", CU126),       # Pascal: cu130 dropped it
    (590, (7, 0), "linux", CU126),       # Volta
    (470, None, "win32", CU126),         # too old for any build: cuda-check says so
    (581, (8, 9), "darwin", ""),
])
def test_index_for_driver_and_gpu(driver: int, capability: tuple[int, int] | None, platform: str,
                                  index: str) -> None:
    nvidia = helper.NvidiaInfo(f"{driver}.10", helper.driver_cuda(driver), (capability,) if capability else ())
    assert helper.choose_index(nvidia, platform) == index


def test_no_gpu_means_pypi_and_the_user_setting_wins() -> None:
    assert helper.choose_index(None, "win32") == "" and helper.choose_index(None, "linux") == ""
    gpu = helper.NvidiaInfo("581.15", "13.0", ((8, 9),))
    assert helper.requested_index({"TORCH_INDEX_URL": CU126}, gpu, "win32") == CU126
    assert helper.requested_index({"TORCH_INDEX_URL": "PyPI"}, gpu, "win32") == ""
    assert helper.requested_index({"TORCH_INDEX_URL": f'"{CU126}"'}, None, "win32") == CU126


def test_nvidia_smi_output_is_read_for_every_gpu() -> None:
    info = helper.parse_nvidia_smi("581.15, 8.9\n581.15, 6.1\n")
    assert info == helper.NvidiaInfo("581.15", "13.0", ((8, 9), (6, 1)))
    assert info.oldest_capability == (6, 1)
    assert helper.parse_nvidia_smi("470.82.01\n").cuda == "11.0"
    assert helper.parse_nvidia_smi("No devices were found\n") is None


@pytest.mark.parametrize(("query", "code", "index"), [
    ("575.57.08, 8.6", 0, CU126),
    ("581.15, 8.9", 0, CU130),
    ("470.82.01", 0, CU126),                                # a driver that does not know compute_cap
    ("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.", 9, ""),
])
def test_index_command_asks_nvidia_smi_on_path(tmp_path: Path, query: str, code: int, index: str) -> None:
    fake_nvidia_smi(tmp_path / "bin", query, code=code)
    env = {k: v for k, v in os.environ.items() if k != "TORCH_INDEX_URL"}
    env["PATH"] = f"{tmp_path / 'bin'}{os.pathsep}{env['PATH']}"
    run = subprocess.run([sys.executable, str(ROOT / "launcher" / "launch_helper.py"), "index"],
                         capture_output=True, text=True, env=env, timeout=60)
    assert run.returncode == 0 and run.stdout == index + "\n"
    if not index:
        assert "reports no working GPU" in run.stderr


def test_build_differs_only_for_a_known_other_build() -> None:
    assert helper.build_differs("2.13.0+cpu", CU130)
    assert helper.build_differs("2.13.0", CU126)
    assert not helper.build_differs("2.13.0+cu126", CU126 + "/")
    assert not helper.build_differs("2.13.0+cpu", "")                       # PyPI: keep
    assert not helper.build_differs("2.13.0+cpu", "https://mirror.example/simple")
    assert not helper.build_differs(None, CU126)


# --- the post-install check ------------------------------------------------------------------

def test_cuda_problem_names_driver_build_and_index() -> None:
    nvidia = helper.NvidiaInfo("575.57.08", "12.9", ((8, 6),))
    message = helper.cuda_problem(nvidia, {"version": "2.13.0", "cuda": "13.0", "available": False}, "")
    assert "torch 2.13.0 is built for CUDA 13.0" in message
    assert "driver 575.57.08, which supports CUDA up to 12.9" in message
    assert f"TORCH_INDEX_URL={CU126}" in message and "580 or newer" in message
    assert helper.cuda_problem(nvidia, {"available": True}, "") == ""
    assert helper.cuda_problem(None, {"available": False}, "") == ""


def test_launch_sh_picks_the_index_for_the_driver_and_refuses_a_cpu_torch(project: Path) -> None:
    fake_nvidia_smi(project / "fakebin", "575.57.08, 8.6", header_cuda="12.9")
    run = launch(project, WAN_COMPAT_SETUP_ONLY="1")
    installed = importlib.metadata.version("torch")  # the CPU-only torch .venv holds here
    installs = [c for c in pip_calls(project) if c.startswith("install")]
    assert installs == [f"install --disable-pip-version-check torch==2.13.0 --index-url {CU126}"]
    assert run.returncode == 1
    assert "driver 575.57.08" in run.stderr and "CUDA up to 12.9" in run.stderr
    assert f"torch {installed} is" in run.stderr and f"TORCH_INDEX_URL={CU126}" in run.stderr
    assert "Traceback" not in run.stderr
    assert not (project / ".venv" / ".install-stamp").exists()

    allowed = launch(project, WAN_COMPAT_SETUP_ONLY="1", WAN_COMPAT_ALLOW_CPU="1")
    assert allowed.returncode == 0, allowed.stderr
    assert (project / ".venv" / ".install-stamp").exists()


def test_launch_sh_uses_cu130_for_a_new_driver_and_pypi_without_gpu(project: Path) -> None:
    fake_nvidia_smi(project / "fakebin", "581.15, 8.9", header_cuda="13.0")
    launch(project, WAN_COMPAT_SETUP_ONLY="1", WAN_COMPAT_ALLOW_CPU="1")
    assert f"torch==2.13.0 --index-url {CU130}" in pip_calls(project)[-2]
    (project / "fakebin" / "nvidia-smi").unlink()
    assert launch(project, WAN_COMPAT_SETUP_ONLY="1").returncode == 0
    assert pip_calls(project)[-2].endswith("torch==2.13.0"), "no GPU: PyPI, and the key changed"


# --- the folder and pip's failures ---------------------------------------------------------

def test_long_path_is_refused_with_the_command_and_onedrive_warned(tmp_path: Path) -> None:
    # The longest folder that fits: Windows' 259 less "\.venv\Lib\site-packages\" less torch's deepest file.
    longest = helper.WINDOWS_MAX_PATH - len("\\.venv\\Lib\\site-packages\\") - helper.TORCH_DEEPEST_FILE
    assert longest == 61
    base = Path(tempfile.mkdtemp(prefix="lp"))  # short, whatever pytest's own folder names are
    try:
        fits = base / ("x" * (longest - len(str(base)) - 1))
        long_root = base / ("y" * (longest + 1 - len(str(base)) - 1))
        fits.mkdir()
        long_root.mkdir()
        assert len(str(fits)) == longest and len(str(long_root)) == longest + 1
        assert helper.folder_problems(fits, "win32", {}, long_paths=False)[0] == []
        _check_long_root(long_root, tmp_path)
    finally:
        shutil.rmtree(base)


def _check_long_root(long_root: Path, tmp_path: Path) -> None:
    errors, _ = helper.folder_problems(long_root, "win32", {}, long_paths=False)
    assert len(errors) == 1 and "C:\\WanCompat" in errors[0] and helper.LONG_PATHS_COMMAND in errors[0]
    assert helper.folder_problems(long_root, "win32", {}, long_paths=True)[0] == []
    assert helper.folder_problems(long_root, "linux", {}, long_paths=False)[0] == []
    _, warnings = helper.folder_problems(tmp_path, "win32", {"OneDrive": str(tmp_path.parent)}, long_paths=True)
    assert len(warnings) == 1 and "OneDrive" in warnings[0] and "WinError 5 or 32" in warnings[0]


def test_unwritable_folder_is_named_not_blamed_on_python(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such"
    errors, _ = helper.folder_problems(missing, "linux", {})
    assert errors and f"Cannot write in {missing}" in errors[0] and "Python" not in errors[0]


@pytest.mark.parametrize(("output", "cause"), [
    ("OSError: [Errno 28] No space left on device", "disk is full"),
    ("OSError: [WinError 206] The filename or extension is too long", "path is too long"),
    ("PermissionError: [WinError 32] The process cannot access the file because it is being used "
     "by another process", "antivirus or OneDrive"),
    ("ERROR: No matching distribution found for torch==2.13.0", "no matching package"),
    ("WARNING: Retrying ... NewConnectionError('Failed to establish a new connection')", "internet connection"),
    ("ERROR: something new", "Likely causes"),
])
def test_pip_failures_are_explained_by_cause(output: str, cause: str) -> None:
    message = helper.explain_pip(output, "torch")
    assert message.startswith("Installing torch failed.") and cause in message
    if cause != "internet connection":
        assert "internet" not in message or cause == "Likely causes"


def test_launch_sh_explains_a_full_disk(project: Path) -> None:
    run = launch(project, WAN_COMPAT_SETUP_ONLY="1", FAKE_PIP_FAIL="1",
                 FAKE_PIP_ERROR="OSError: [Errno 28] No space left on device")
    assert run.returncode == 1 and "The disk is full" in run.stderr
    assert not (project / ".venv" / ".install-stamp").exists()


def test_install_key_matches_the_earlier_inline_hash(tmp_path: Path) -> None:
    (tmp_path / "r.txt").write_text("a\n")
    import hashlib
    expected = hashlib.sha256(b"app\ntorch=2.13.0 index=")
    expected.update(b"a\n")
    assert helper.install_key(["app", "torch=2.13.0 index="], [str(tmp_path / "r.txt")]) == expected.hexdigest()


# --- the virtual environment and Python ------------------------------------------------------

def fake_base_python(folder: Path, bits32: bool = False) -> Path:
    """A base ``python3`` whose ``-m venv DIR`` makes a .venv with the pip-faking Python."""
    folder.mkdir(parents=True, exist_ok=True)
    venv_python = FAKE_PYTHON % {"real": sys.executable}
    maxsize = "sys.maxsize = 2**31 - 1; " if bits32 else ""
    script = folder / "python3"
    script.write_text(
        "#!/usr/bin/env bash\n"
        'if [ "${1:-}" = "-m" ] && [ "${2:-}" = "venv" ]; then\n'
        '    mkdir -p "$3/bin" && cat > "$3/bin/python" <<\'EOF\'\n' + venv_python + "EOF\n"
        '    chmod +x "$3/bin/python"; exit 0\nfi\n'
        'if [ "${1:-}" = "-c" ]; then\n'
        f"    exec {sys.executable} -c 'import sys; {maxsize}code = sys.argv.pop(1); exec(code)' \"$2\"\n"
        "fi\n"
        f'exec {sys.executable} "$@"\n')
    script.chmod(0o755)
    return script


def test_venv_without_pip_is_recreated(project: Path) -> None:
    base = fake_base_python(project / "base")
    broken = launch(project, WAN_COMPAT_SETUP_ONLY="1", FAKE_PIP_MISSING="1", PYTHON=f'"{base}"')
    assert ".venv is incomplete" in broken.stderr and f"Creating .venv with {base}" in broken.stderr
    assert broken.returncode == 0, broken.stderr
    assert (project / ".venv" / ".install-stamp").exists()


def test_python_setting_that_does_not_run_is_said(project: Path) -> None:
    import shutil
    shutil.rmtree(project / ".venv")
    fake_base_python(project / "fakebin")
    run = launch(project, WAN_COMPAT_SETUP_ONLY="1", PYTHON="/no/such/python3.12")
    assert "PYTHON is set to /no/such/python3.12, which does not run" in run.stderr
    assert run.returncode == 0, run.stderr


def test_32bit_python_is_named_and_skipped(project: Path) -> None:
    import shutil
    shutil.rmtree(project / ".venv")
    base = fake_base_python(project / "base32", bits32=True)
    for tool in ("bash", "dirname", "rm", "grep", "id", "mktemp", "tail", "tee", "cat"):  # no other Python
        found = shutil.which(tool)
        if found:
            (project / "base32" / tool).symlink_to(found)
    run = launch(project, WAN_COMPAT_SETUP_ONLY="1", PYTHON=str(base), PATH=str(project / "base32"))
    assert run.returncode == 1
    assert f"{base} is a 32-bit Python" in run.stderr and "64-bit Python 3.10 or newer was not found" in run.stderr


def test_app_arguments_pass_intact(project: Path) -> None:
    run = launch(project, "--config", "a,b.yaml", "", "x=1;y")
    assert run.returncode == 3
    assert "APP ['--config', 'a,b.yaml', '', 'x=1;y']" in run.stdout
