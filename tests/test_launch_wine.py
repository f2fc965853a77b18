"""launch.bat's control flow, run by Wine's cmd with stub python.exe and py.exe programs.

The stubs (tests/wine/stub.c, built with mingw-w64) pass each call to this test through
files; the test answers it on the Linux side: ``-m venv`` makes a .venv whose python.exe is
the stub, ``-m pip`` is recorded (and fails when asked), ``launch_helper.py`` runs for real
with a fake Linux ``nvidia-smi`` on PATH and the CPU-only torch of .venv, ``app.py``
prints its arguments. The project sits in a folder named with a space, ``(x86)``, ``&``,
``!`` and ``é``. ``./launch.sh test`` installs wine and mingw-w64 when it runs as root.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_launch_helper import CU126, fake_nvidia_smi

ROOT = Path(__file__).resolve().parent.parent
NO_WINE = os.environ.get("WAN_COMPAT_NO_WINE") or (
    "" if shutil.which("wine") and shutil.which("x86_64-w64-mingw32-gcc") and sys.platform.startswith("linux")
    else "wine or mingw-w64 is missing (sudo apt-get install wine gcc-mingw-w64-x86-64-win32)")
pytestmark = pytest.mark.skipif(bool(NO_WINE), reason=NO_WINE or "-")
PASSED_ENV = ("TORCH_", "WAN_COMPAT_", "FAKE_", "HF_", "GRADIO_", "OneDrive")
# Run the helper as on Windows: its folder checks take the win32 branch (long paths off).
HELPER_AS_WINDOWS = (
    "import runpy, sys; sys.path.insert(0, sys.argv.pop(1) + '/launcher'); import launch_helper as h; "
    "h.folder_problems.__defaults__ = ('win32', None, False); sys.exit(h.main(sys.argv[1:]))")


def to_linux(path: str) -> str:
    """Z:\\tmp\\x -> /tmp/x (Wine's Z: drive is the Linux root)."""
    return "/" + path[3:].replace("\\", "/") if path[:2].upper() == "Z:" else path


class Bridge:
    """Answers the stubs' requests in a thread; ``calls`` lists (program, args) in order."""

    def __init__(self, folder: Path, stub: Path, nvidia_bin: Path) -> None:
        self.folder, self.stub, self.nvidia_bin = folder, stub, nvidia_bin
        self.calls: list[tuple[str, list[str]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _serve(self) -> None:
        while not self._stop.is_set():
            for request in sorted(self.folder.glob("*.req")):
                self._answer(request)
            time.sleep(0.005)

    def _answer(self, request: Path) -> None:
        fields = request.read_bytes().decode("utf-8", "replace").split("\0")
        exe, cwd, argc = fields[0], fields[1], int(fields[3])
        argv = fields[4:4 + argc]
        env = dict(e.split("=", 1) for e in fields[4 + argc:] if "=" in e[1:])
        program = exe.replace("\\", "/").rsplit("/", 1)[-1].lower().removesuffix(".exe")
        args = argv[1:]
        if program == "py" and args and args[0].startswith("-"):
            args = args[1:]  # py -3.12 ...
        self.calls.append((program if "\\.venv\\" not in exe else "venv-python", args))
        code, out, err = self._run(args, to_linux(cwd), env)
        base = request.with_suffix("")
        Path(f"{base}.out").write_bytes(out)
        Path(f"{base}.err").write_bytes(err)
        Path(f"{base}.rc.tmp").write_text(str(code))
        os.replace(f"{base}.rc.tmp", f"{base}.rc")
        request.unlink()

    def _run(self, args: list[str], cwd: str, env: dict[str, str]) -> tuple[int, bytes, bytes]:
        run_env = {k: v for k, v in os.environ.items() if not k.startswith(PASSED_ENV)}
        run_env.update({k: v for k, v in env.items() if k.startswith(PASSED_ENV)})
        run_env["PATH"] = f"{self.nvidia_bin}{os.pathsep}{os.environ['PATH']}"
        if args[:1] == ["-c"]:
            patch = "sys.maxsize = 2**31 - 1; " if env.get("FAKE_32BIT") else ""
            command = [sys.executable, "-c", f"import sys; {patch}exec(sys.argv.pop(1))", args[1], *args[2:]]
        elif args[:2] == ["-m", "venv"]:
            scripts = Path(to_linux(args[2])) / "Scripts"
            scripts.mkdir(parents=True, exist_ok=True)
            shutil.copy2(self.stub, scripts / "python.exe")
            return 0, b"", b""
        elif args[:2] == ["-m", "pip"]:
            if args[2:3] == ["--version"]:
                return (1, b"", b"No module named pip\n") if env.get("FAKE_PIP_MISSING") else (0, b"pip 24.0\n", b"")
            if env.get("FAKE_PIP_FAIL") and args[2] == "install":
                return 1, b"", env.get("FAKE_PIP_ERROR", "ERROR: failed").encode() + b"\n"
            return 0, f"pip {' '.join(args[2:])}\n".encode(), b""
        elif args and args[0].lower().endswith("launch_helper.py"):
            command = [sys.executable, "-c", HELPER_AS_WINDOWS, cwd, *map(to_linux, args[1:])]
        elif args[:1] == ["app.py"]:
            return 3, f"APP {args[1:]}\n".encode(), b""
        else:
            return 9, b"", f"stub: unexpected call {args}\n".encode()
        done = subprocess.run(command, cwd=cwd, env=run_env, capture_output=True, timeout=120)
        return done.returncode, done.stdout, done.stderr


@pytest.fixture(scope="module")
def wine() -> Iterator[dict[str, str]]:
    """Environment for ``wine``: its own prefix, the stubs on WINEPATH; the stub in ``STUB_EXE``.

    The folder is short (/tmp/wcXXXX): launch.bat refuses project paths over about 62
    characters while Windows' long paths are off, as the helper assumes under Wine.
    """
    base = Path(tempfile.mkdtemp(prefix="wc", dir="/tmp"))
    stub = base / "stub.exe"
    subprocess.run(["x86_64-w64-mingw32-gcc", "-municode", "-O2", "-o", str(stub),
                    str(ROOT / "tests" / "wine" / "stub.c")], check=True, timeout=120)
    winbin = base / "winbin"
    winbin.mkdir()
    for name in ("python.exe", "py.exe"):
        shutil.copy2(stub, winbin / name)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TORCH_", "WAN_COMPAT_", "DISPLAY"))}
    env.update(WINEPREFIX=str(base / "prefix"), WINEDEBUG="-all", WINEDLLOVERRIDES="mscoree,mshtml=",
               WINEPATH="Z:" + str(winbin).replace("/", "\\"), STUB_EXE=str(stub), WINE_BASE=str(base))
    subprocess.run(["wine", "cmd", "/c", "echo", "ready"], env=env, capture_output=True, timeout=300)
    yield env
    subprocess.run(["wineserver", "-k"], env=env, capture_output=True, timeout=60)
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture()
def bat_project(wine: dict[str, str], tmp_path: Path) -> Iterator[tuple[Path, Bridge]]:
    """A copy of the project in a folder with awkward characters, and the stubs' bridge."""
    project = Path(wine["WINE_BASE"]) / f"p{tmp_path.name[-6:]}" / "Wan Compat (x86) & é!"
    project.mkdir(parents=True)
    for name in ("launch.bat", "requirements.txt", "requirements-test.txt"):
        shutil.copy2(ROOT / name, project / name)
    shutil.copytree(ROOT / "launcher", project / "launcher")
    bridge_dir = project.parent / "bridge"
    bridge_dir.mkdir()
    bridge = Bridge(bridge_dir, Path(wine["STUB_EXE"]), project.parent / "nvidia")
    yield project, bridge
    bridge.close()


def run_bat(project: Path, bridge: Bridge, wine: dict[str, str], *args: str, **env: str) -> tuple[int, str]:
    """Run launch.bat under Wine's cmd; returns its exit code and its output."""
    full = dict(wine, STUB_BRIDGE="Z:" + str(bridge.folder).replace("/", "\\"), **env)
    done = subprocess.run(["wine", "cmd", "/c", "launch.bat", *args], cwd=project, env=full,
                          input=b"\r\n\r\n", capture_output=True, timeout=300)
    return done.returncode, (done.stdout + done.stderr).decode("utf-8", "replace")


def pip_installs(bridge: Bridge) -> list[list[str]]:
    return [args[3:] for _, args in bridge.calls if args[:3] == ["-m", "pip", "install"]]


def test_first_start_with_an_old_driver_refuses_cpu_torch_then_installs_and_skips(bat_project, wine) -> None:
    project, bridge = bat_project
    fake_nvidia_smi(project.parent / "nvidia", "575.57.08, 8.6", header_cuda="12.9")
    code, out = run_bat(project, bridge, wine)
    assert code == 1, out
    expected = ["--disable-pip-version-check", "torch==2.13.0", "--index-url", CU126]
    assert pip_installs(bridge)[:1] == [expected], (out, bridge.calls)
    assert "driver 575.57.08" in out and f"TORCH_INDEX_URL={CU126}" in out and "Traceback" not in out
    assert "Press any key" in out, "a failed double-click start pauses so the message can be read"
    assert not (project / ".venv" / ".install-stamp").exists()
    assert len(pip_installs(bridge)) == 1, "no requirements after a failed check"

    code, out = run_bat(project, bridge, wine, "--config", "a,b.yaml", "", "x=1;y", WAN_COMPAT_ALLOW_CPU="1")
    assert code == 3, out
    assert "APP ['--config', 'a,b.yaml', '', 'x=1;y']" in out
    assert pip_installs(bridge)[-1][:2] == ["-q", "--disable-pip-version-check"]
    assert len((project / ".venv" / ".install-stamp").read_text().split()) == 1

    before = len(bridge.calls)
    code, out = run_bat(project, bridge, wine, "--port", "7861")
    assert code == 3 and "APP ['--port', '7861']" in out
    assert not any(args[:2] == ["-m", "pip"] and args[2] != "--version" for _, args in bridge.calls[before:])


def _windows_python_path(wine) -> str:
    """The stub python.exe on WINEPATH as Windows writes it (Z:\\...\\python.exe)."""
    folder = Path(wine["WINEPATH"][2:].replace("\\", "/"))
    return "Z:" + str(folder / "python.exe").replace("/", "\\")


def test_broken_venv_is_recreated_and_pip_failure_explained(bat_project, wine) -> None:
    project, bridge = bat_project
    (project / ".venv" / "Scripts").mkdir(parents=True)
    shutil.copy2(wine["STUB_EXE"], project / ".venv" / "Scripts" / "python.exe")
    code, out = run_bat(project, bridge, wine, FAKE_PIP_MISSING="1", FAKE_PIP_FAIL="1",
                        FAKE_PIP_ERROR="OSError: [Errno 28] No space left on device",
                        PYTHON='"' + _windows_python_path(wine) + '"')
    assert code == 1, out
    assert ".venv is incomplete" in out and "Creating .venv with" in out
    assert [args[:2] for _, args in bridge.calls].count(["-m", "venv"]) == 1
    assert "PYTHON is set to" not in out, "quotes around PYTHON are stripped"
    assert "The disk is full" in out and "internet" not in out


def test_32bit_python_is_named(bat_project, wine) -> None:
    project, bridge = bat_project
    code, out = run_bat(project, bridge, wine, FAKE_32BIT="1", PYTHON="C:\\no\\python.exe")
    assert code == 1, out
    assert 'PYTHON is set to "C:\\no\\python.exe", which does not run' in out
    assert "is a 32-bit Python, and torch exists only for 64-bit Python" in out
    assert not (project / ".venv").exists()


def test_long_path_is_refused_before_anything_is_installed(wine, tmp_path: Path) -> None:
    project = Path(wine["WINE_BASE"]) / ("long-" + "x" * 60) / "Wan Compat"
    project.mkdir(parents=True)
    for name in ("launch.bat", "requirements.txt", "requirements-test.txt"):
        shutil.copy2(ROOT / name, project / name)
    shutil.copytree(ROOT / "launcher", project / "launcher")
    (project.parent / "bridge").mkdir()
    bridge = Bridge(project.parent / "bridge", Path(wine["STUB_EXE"]), project.parent / "nvidia")
    try:
        code, out = run_bat(project, bridge, wine)
    finally:
        bridge.close()
    assert code == 1, out
    assert "long paths are off" in out and "LongPathsEnabled /t REG_DWORD /d 1" in out and "C:\\WanCompat" in out
    assert not (project / ".venv").exists()
