"""A broken ffmpeg is seen: garbage, silence and a missing path, with real wrapper scripts in its place."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

# Each wrapper reads all the frames (as ffmpeg would) and exits 0.
_GARBAGE = "open(sys.argv[-1], 'wb').write(b'garbage!')\n"      # 8 bytes where the MP4 should be
_SILENT = ""                                                     # writes nothing at all
_WRITE = r"""
import sys
import numpy as np
from core.run.video import write_mp4
try:
    write_mp4(np.zeros((9, 64, 64, 3), dtype=np.uint8), sys.argv[1], fps=16)
    print("saved")
except Exception as exc:
    print(type(exc).__name__, exc)
"""


def _wrapper(tmp_path: Path, body: str) -> Path:
    script = tmp_path / "ffmpeg"
    script.write_text(f"#!{sys.executable}\nimport sys\n"
                      "if '-version' in sys.argv: print('ffmpeg version 9.9-fake'); sys.exit(0)\n"
                      "while sys.stdin.buffer.read(65536): pass\n" + body + "sys.exit(0)\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def _run(code_or_args: list[str], exe: Path | str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO), IMAGEIO_FFMPEG_EXE=str(exe), PYTHONIOENCODING="utf-8")
    return subprocess.run([sys.executable, *code_or_args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize(("body", "said"), [(_GARBAGE, "it is not an MP4 (8 bytes"), (_SILENT, "no file was written")])
def test_a_broken_ffmpeg_is_not_a_saved_video(tmp_path: Path, body: str, said: str) -> None:
    out = tmp_path / "outputs" / "v.mp4"
    result = _run(["-c", _WRITE, str(out)], _wrapper(tmp_path, body))
    line = result.stdout.strip()
    assert line.startswith("WanError ffmpeg ("), result.stderr[-1000:]
    assert f"reported success, but {said}" in line
    assert "folder" not in line.split("reported success")[1].split(":")[0]      # not blamed on the folder
    assert sorted(p.name for p in out.parent.iterdir()) == []                  # nothing left behind


def test_cli_with_a_garbage_ffmpeg_exits_1_without_a_video(demo_models_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "v.mp4"
    result = _run(["-m", "core", "generate", str(demo_models_dir / "wan21_t2v"), "--prompt", "a cat", "--size",
                   "64x64", "--frames", "9", "--steps", "2", "--out", str(out)], _wrapper(tmp_path, _GARBAGE))
    assert result.returncode == 1, result.stderr[-1000:]
    assert "reported success, but it is not an MP4" in result.stderr
    assert not out.exists() and not out.with_suffix(".json").exists()


@pytest.mark.parametrize("kind", ["missing", "garbage"])
def test_doctor_runs_ffmpeg_once(tmp_path: Path, kind: str) -> None:
    exe = tmp_path / "no" / "ffmpeg" if kind == "missing" else _wrapper(tmp_path, _GARBAGE)
    result = _run(["-m", "core", "doctor", "--json"], exe)
    check = next(c for c in json.loads(result.stdout)["checks"] if c["name"] == "ffmpeg")
    assert check["status"] == "error", check
    assert ("does not run as ffmpeg" if kind == "missing" else "a two-frame test video failed") in check["summary"]
