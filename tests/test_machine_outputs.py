"""Output names claimed once (threads, processes, simultaneous CLI runs), and a write stopped by a signal.

Real threads, real processes, a real (slowed) ffmpeg behind a wrapper script, real SIGTERM/SIGINT.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest

from core.run.output_claim import release, sweep
from core.run.video import default_output_path
from tests.conftest import REPO

NOW = datetime(2026, 11, 26, 11, 45, 2)
_GEN = ("--prompt", "a cat", "--seed", "7", "--size", "64x64", "--frames", "9", "--steps", "2")


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    config = tmp_path / "config.yaml"
    config.write_text(f"outputs_dir: {tmp_path / 'outputs'}\nmodels_dir: {tmp_path}\n")
    return dict(os.environ, PYTHONPATH=str(REPO), PYTHONIOENCODING="utf-8", WAN_COMPAT_CONFIG=str(config), **extra)


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) if folder.exists() else []


def test_threads_asking_in_the_same_second_get_distinct_names(tmp_path: Path) -> None:
    names: list[Path] = []
    start = threading.Barrier(8)

    def ask() -> None:
        start.wait()
        names.append(default_output_path(tmp_path, "a cat", 42, now=NOW))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(names)) == 8
    for name in names:
        release(name)
    assert _hidden(tmp_path) == []


_ASK = ("import sys, time; from datetime import datetime; from pathlib import Path\n"
        "from core.run.video import default_output_path\n"
        "while time.time() < float(sys.argv[2]): time.sleep(0.001)\n"
        "print(default_output_path(Path(sys.argv[1]), 'a cat', 42, now=datetime(2026, 11, 26, 11, 45, 2)).name)\n"
        "time.sleep(0.5)\n")


def test_processes_asking_at_once_get_distinct_names(tmp_path: Path) -> None:
    at = str(time.time() + 1.5)
    procs = [subprocess.Popen([sys.executable, "-c", _ASK, str(tmp_path), at], cwd=REPO, text=True,
                              stdout=subprocess.PIPE, env=dict(os.environ, PYTHONPATH=str(REPO))) for _ in range(4)]
    names = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert len(set(names)) == 4, names
    assert _hidden(tmp_path) == []            # each released its claim when it exited


def _leftovers(outputs: Path) -> None:
    """Hidden files of an earlier run whose process is gone (removed at start), and of a live one (kept)."""
    outputs.mkdir(exist_ok=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    for name in (f".v.mp4.partial-{dead.pid}-ab12cd", f".v.mp4.partial-{dead.pid}-ab12cd.ffmeta",
                 f".v.json.partial-{dead.pid}-ab12cd", f".old.mp4.partial-{os.getpid()}-ffffff"):
        (outputs / name).write_bytes(b"x" * 12_000)
    (outputs / ".w.mp4.claim").write_text(str(dead.pid))
    (outputs / ".mine.mp4.claim").write_text(str(os.getpid()))


def test_simultaneous_cli_runs_keep_their_videos(demo_models_dir: Path, tmp_path: Path) -> None:
    """Two CLI runs end to end (the race itself: four processes in one second above); also, each run's start
    removes the leftovers of dead runs and keeps those of a live one."""
    env = _env(tmp_path)
    _leftovers(tmp_path / "outputs")
    procs = [subprocess.Popen([sys.executable, "-m", "core", "generate", str(demo_models_dir / "wan21_t2v"), *_GEN],
                              cwd=REPO, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(2)]
    outs = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-500:] for o in outs]
    paths = {o[0].strip().splitlines()[-1] for o in outs}
    assert len(paths) == 2
    videos = sorted((tmp_path / "outputs").glob("*.mp4"))
    assert len(videos) == 2 and all(v.with_suffix(".json").is_file() for v in videos)
    outputs = tmp_path / "outputs"
    assert _hidden(outputs) == [".mine.mp4.claim", f".old.mp4.partial-{os.getpid()}-ffffff"]   # alive: kept
    assert sweep(outputs) == []


def _slow_ffmpeg(tmp_path: Path) -> tuple[Path, Path]:
    """A wrapper that runs the real ffmpeg but feeds it slowly, and writes the real ffmpeg's pid."""
    import imageio_ffmpeg
    real = imageio_ffmpeg.get_ffmpeg_exe()
    mark = tmp_path / "ffmpeg.pid"
    wrapper = tmp_path / "slow_ffmpeg"
    wrapper.write_text(f"#!{sys.executable}\n"
                       "import subprocess, sys, time\n"
                       f"p = subprocess.Popen([{real!r}] + sys.argv[1:], stdin=subprocess.PIPE)\n"
                       "if '-f' in sys.argv and 'rawvideo' in sys.argv:\n"
                       f"    open({str(mark)!r}, 'w').write(str(p.pid))\n"
                       "while True:\n"
                       "    chunk = sys.stdin.buffer.read(4096)\n"
                       "    if not chunk: break\n"
                       "    p.stdin.write(chunk); p.stdin.flush(); time.sleep(0.5)\n"
                       "p.stdin.close(); sys.exit(p.wait())\n")
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    return wrapper, mark


def _gone(pid: int, within: float = 10.0) -> bool:
    """The process has ended and been reaped (no zombie left), within a few seconds."""
    deadline = time.time() + within
    while Path(f"/proc/{pid}").exists():
        if time.time() > deadline:
            return False
        time.sleep(0.1)
    return True


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_during_the_mp4_write_leaves_nothing(demo_models_dir: Path, tmp_path: Path, signum: int,
                                                      code: int) -> None:
    wrapper, mark = _slow_ffmpeg(tmp_path)
    out = tmp_path / "outputs" / "v.mp4"
    proc = subprocess.Popen([sys.executable, "-m", "core", "generate", str(demo_models_dir / "wan21_t2v"), *_GEN,
                             "--out", str(out)], cwd=REPO, env=_env(tmp_path, IMAGEIO_FFMPEG_EXE=str(wrapper)),
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not mark.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    assert mark.exists(), proc.communicate()[1][-1000:]
    time.sleep(1.0)                               # ffmpeg has the partial file open by now
    partials = _hidden(out.parent)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err[-1000:]
    assert "no video was written" in err and "Traceback" not in err
    assert any(".partial-" in name for name in partials)      # there was something to clean up
    assert _hidden(out.parent) == [] and not out.exists()
    assert _gone(int(mark.read_text()))
