"""`fix --apply --json` always prints its JSON object; a stale lock naming PID 1 does not block (real CLI runs)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core import fix
from tests.conftest import REPO
from tests.test_fix_crash import break_demo


def _fix(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONIOENCODING="utf-8")
    return subprocess.run([sys.executable, "-m", "core", "fix", *args, "--apply", "--json"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def broken(demo_models_dir: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "wan22_t2v_a14b"
    shutil.copytree(demo_models_dir / "wan22_t2v_a14b", folder)
    break_demo(folder)
    return folder


def test_a_lock_file_naming_pid_1_does_not_block(broken: Path) -> None:
    (broken / fix.BACKUP_DIR).mkdir()
    (broken / fix.BACKUP_DIR / ".lock").write_text("1")          # process 1 is alive, and is not a fix
    started = time.monotonic()
    out = _fix(str(broken))
    assert time.monotonic() - started < 60
    assert json.loads(out.stdout)["ok"] is True, out.stderr[-1000:]


def test_json_is_printed_when_the_folder_cannot_be_written(broken: Path) -> None:
    if subprocess.run(["chattr", "+i", str(broken)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not possible here (needed to make a folder that root cannot write)")
    try:
        out = _fix(str(broken))
    finally:
        subprocess.run(["chattr", "-i", str(broken)])
    assert out.returncode == 1
    result = json.loads(out.stdout)
    assert result["ok"] is False and result["errors"] and "Traceback" not in out.stderr


def test_json_is_printed_for_a_missing_path(tmp_path: Path) -> None:
    out = _fix(str(tmp_path / "gone"))
    assert out.returncode == 2
    assert json.loads(out.stdout)["ok"] is False
