"""launch.sh's set-up logic, run in a copy whose `.venv/bin/python` fakes pip.

The fake interpreter records every `python -m pip ...` call instead of running it and
hands everything else to the real Python, so these tests install nothing and take seconds.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="launch.sh is for Linux and macOS")

FAKE_PYTHON = """#!/usr/bin/env bash
if [ "${1:-}" = "-m" ] && [ "${2:-}" = "pip" ] && [ "${3:-}" = "--version" ]; then
    [ -n "${FAKE_PIP_MISSING:-}" ] && { echo "No module named pip" >&2; exit 1; }
    echo "pip 24.0 from fake"; exit 0
fi
if [ "${1:-}" = "-m" ] && [ "${2:-}" = "pip" ]; then
    shift 2
    echo "$*" >> "$(dirname "$0")/../../pip.log"
    echo "WARNING: Location '/nowhere' is ignored: it is either a non-existing path or lacks a specific scheme." >&2
    if [ -n "${FAKE_PIP_FAIL:-}" ]; then
        echo "${FAKE_PIP_ERROR:-ERROR: No matching distribution found for torch}" >&2
        exit 1
    fi
    exit 0
fi
exec %(real)s "$@"
"""


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    for name in ("launch.sh", "requirements.txt", "requirements-test.txt", "pyproject.toml"):
        shutil.copy2(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "launcher", tmp_path / "launcher")
    fake = tmp_path / ".venv" / "bin" / "python"
    fake.parent.mkdir(parents=True)
    fake.write_text(FAKE_PYTHON % {"real": sys.executable}, encoding="utf-8")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    (tmp_path / "app.py").write_text("import sys\n\nprint('APP', sys.argv[1:])\nsys.exit(3)\n")
    return tmp_path


def path_without_nvidia_smi(folder: Path) -> str:
    """A PATH of links to every program on PATH but nvidia-smi, so a real GPU stays unseen.

    >>> os.environ["PATH"] = path_without_nvidia_smi(tmp_path / "bin")  # doctest: +SKIP
    """
    folder.mkdir(parents=True, exist_ok=True)
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        if not os.path.isdir(directory):
            continue
        for entry in os.scandir(directory):
            target = folder / entry.name
            if entry.name != "nvidia-smi" and not target.exists() and os.access(entry.path, os.X_OK):
                target.symlink_to(entry.path)
    return str(folder)


CLEAN_PATH: list[str] = []  # set once per session by the clean_path fixture


@pytest.fixture(scope="session", autouse=True)
def clean_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    if not CLEAN_PATH:
        CLEAN_PATH.append(path_without_nvidia_smi(tmp_path_factory.mktemp("path") / "bin"))
    return CLEAN_PATH[0]


def launch(project: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the project's launch.sh with ``env`` added; nvidia-smi only from ``project/fakebin``."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("TORCH_", "WAN_COMPAT_"))}
    full_env["PATH"] = f"{project / 'fakebin'}{os.pathsep}{CLEAN_PATH[0]}"
    full_env.update(env)
    return subprocess.run(["bash", str(project / "launch.sh"), *args], cwd=project, env=full_env,
                          capture_output=True, text=True, timeout=60)


def pip_calls(project: Path) -> list[str]:
    log = project / "pip.log"
    return log.read_text().splitlines() if log.exists() else []


def test_scripts_parse_and_are_executable() -> None:
    for script in ("launch.sh", ".ci/run"):
        subprocess.run(["bash", "-n", str(ROOT / script)], check=True)
        assert os.access(ROOT / script, os.X_OK), f"{script} is not executable"
    assert "exec ./launch.sh test" in (ROOT / ".ci" / "run").read_text()
    assert "playwright install" not in (ROOT / "launch.sh").read_text()


def test_launch_bat_is_crlf_and_every_jump_has_its_label() -> None:
    raw = (ROOT / "launch.bat").read_bytes()
    assert raw.count(b"\r\n") == raw.count(b"\n"), "cmd.exe mis-reads labels in LF-only batch files"
    text = raw.decode("ascii")
    labels = {m.lower() for m in re.findall(r"^:(\w+)", text, flags=re.M)}
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().lower().startswith("rem "))
    jumps = {m.lower() for m in re.findall(r"(?:goto|call) :?(\w+)", code, flags=re.I)}
    assert jumps - {"eof"} <= labels, jumps - labels
    for needed in ("launch_helper.py", "TORCH_INDEX_URL", "TORCH_VERSION", "--index-url",
                   "requirements-test.txt", "run-tests %*", "app.py %*", "pushd", "cuda-check",
                   "preflight", "explain-pip", "-m pip --version", "sys.maxsize > 2**32"):
        assert needed in text, needed
    # Hashing and matching need no certutil, findstr or where (blocked by policy on some
    # computers; no-ops under Wine); torch never comes from an extra index (PyPI fallback).
    for banned in ("certutil", "findstr", "where ", "--extra-index-url", "shift", "cu128"):
        assert banned not in code, banned


def test_second_start_skips_installation(project: Path) -> None:
    first = launch(project, WAN_COMPAT_SETUP_ONLY="1")
    assert first.returncode == 0, first.stderr
    calls = pip_calls(project)
    assert len(calls) == 2
    assert calls[0].startswith("install") and "torch==2.13.0" in calls[0] and "-r" not in calls[0]
    assert "-r requirements.txt" in calls[1] and "requirements-test.txt" not in calls[1]
    assert "-q" in calls[1] and "-q" not in calls[0].split(), "pip shows its progress for torch only"
    assert "is ignored" not in first.stderr, "pip's Location warnings must be filtered"
    stamp = project / ".venv" / ".install-stamp"
    assert re.fullmatch(r"[0-9a-f]{64}\n", stamp.read_text())

    started = time.monotonic()
    second = launch(project, WAN_COMPAT_SETUP_ONLY="1")
    assert second.returncode == 0 and second.stderr == ""
    assert pip_calls(project) == calls
    assert time.monotonic() - started < 5


def test_changes_trigger_a_new_install(project: Path) -> None:
    assert launch(project, WAN_COMPAT_SETUP_ONLY="1").returncode == 0
    with open(project / "requirements.txt", "a") as f:
        f.write("# changed\n")
    assert launch(project, WAN_COMPAT_SETUP_ONLY="1").returncode == 0
    assert len(pip_calls(project)) == 4

    cuda = "https://download.pytorch.org/whl/cu126"
    run = launch(project, WAN_COMPAT_SETUP_ONLY="1", TORCH_VERSION="2.13.0", TORCH_INDEX_URL=cuda)
    assert run.returncode == 0, run.stderr
    new = pip_calls(project)[4:]
    # The installed torch (a +cpu build here) is not the index's build, so it is removed first.
    torch_installed = subprocess.run([sys.executable, "-c", "import importlib.metadata as m; print(m.version('torch'))"],
                                     capture_output=True, text=True).stdout.strip()
    if torch_installed and not torch_installed.endswith("+cu126"):
        assert new[0].startswith("uninstall") and "torch" in new[0]
        new = new[1:]
    assert new[0].startswith("install") and f"--index-url {cuda}" in new[0] and "--extra-index-url" not in new[0]


def test_test_mode_installs_extras_and_satisfies_the_app_too(project: Path) -> None:
    run = launch(project, "test", WAN_COMPAT_SETUP_ONLY="1", WAN_COMPAT_NO_BROWSER="off in this test")
    assert run.returncode == 0, run.stderr
    assert "-r requirements-test.txt" in pip_calls(project)[-1]
    assert len((project / ".venv" / ".install-stamp").read_text().split()) == 2
    assert launch(project, WAN_COMPAT_SETUP_ONLY="1").returncode == 0
    assert len(pip_calls(project)) == 2


def test_failed_install_shows_the_error_and_leaves_no_stamp(project: Path) -> None:
    run = launch(project, WAN_COMPAT_SETUP_ONLY="1", FAKE_PIP_FAIL="1")
    assert run.returncode != 0
    assert "ERROR: No matching distribution found for torch" in run.stderr
    assert "Installing torch failed" in run.stderr and "is ignored" not in run.stderr
    assert not (project / ".venv" / ".install-stamp").exists()


def test_app_gets_its_arguments_and_exit_code(project: Path) -> None:
    run = launch(project, "--port", "7999")
    assert run.returncode == 3
    assert "APP ['--port', '7999']" in run.stdout


def test_test_mode_runs_pytest_offline_and_passes_its_exit_code(project: Path) -> None:
    tests = project / "tests"
    tests.mkdir()
    (tests / "test_env.py").write_text(
        "import os\n\n\n"
        "def test_env():\n"
        "    assert os.environ['HF_HUB_OFFLINE'] == '1'\n"
        "    assert os.environ['GRADIO_ANALYTICS_ENABLED'] == 'False'\n"
        "    assert os.environ['WAN_COMPAT_NO_BROWSER']\n"
        "def test_fails():\n"
        "    assert 1 == 2\n")
    run = launch(project, "test", "-k", "not fails", "-p", "no:cacheprovider", WAN_COMPAT_NO_BROWSER="off")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 passed" in run.stdout
    failing = launch(project, "test", "-p", "no:cacheprovider", WAN_COMPAT_NO_BROWSER="off")
    assert failing.returncode == 1


def test_test_mode_lints_with_ruff_and_still_runs_the_tests(project: Path) -> None:
    tests = project / "tests"
    tests.mkdir()
    (tests / "test_ok.py").write_text("import os\n\n\ndef test_ok():\n    assert True\n")  # os unused: F401
    run = launch(project, "test", "-p", "no:cacheprovider", WAN_COMPAT_NO_BROWSER="off")
    assert run.returncode == 1, run.stdout + run.stderr
    assert "F401" in run.stdout + run.stderr and "ruff found the problems above" in run.stderr
    assert "1 passed" in run.stdout
    (tests / "test_ok.py").write_text("def test_ok():\n    assert True\n")
    assert launch(project, "test", "-p", "no:cacheprovider", WAN_COMPAT_NO_BROWSER="off").returncode == 0


def test_no_python_is_a_clear_message(tmp_path: Path) -> None:
    for name in ("launch.sh", "requirements.txt"):
        shutil.copy2(ROOT / name, tmp_path / name)
    bin_dir = tmp_path / "bin"  # the tools launch.sh needs, and no Python
    bin_dir.mkdir()
    for tool in ("dirname", "rm", "grep", "id", "mktemp", "tail"):
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    bash = shutil.which("bash") or "/bin/bash"
    run = subprocess.run([bash, str(tmp_path / "launch.sh")], cwd=tmp_path, capture_output=True,
                         text=True, timeout=30, env={"PATH": str(bin_dir), "HOME": str(tmp_path)})
    assert run.returncode == 1
    assert "Python 3.10 or newer was not found" in run.stderr
    assert not (tmp_path / ".venv").exists()
