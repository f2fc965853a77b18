"""`fix --apply --json` always prints its JSON object; a stale lock naming PID 1 does not block (real CLI runs)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
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


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MB tmpfs mounted for this test (a disk that really fills: ENOSPC)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if made.returncode != 0:
        pytest.skip(f"a small tmpfs cannot be mounted here ({made.stderr.strip()}), needed for a disk that fills")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def _fill(disk: Path) -> Path:
    """Write a file until the disk is full; returns it (delete it to free the space)."""
    filler = disk / "filler"
    with open(filler, "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    return filler


def _fix_filling_the_disk_after(folder: Path, point: str) -> dict:
    """``fix --apply --json`` that pauses at ``point`` while the disk is filled, then goes on."""
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONIOENCODING="utf-8",
               **{fix.PAUSE_ENV: point, fix.PAUSE_SECONDS_ENV: "1"})
    proc = subprocess.Popen([sys.executable, "-m", "core", "fix", str(folder), "--apply", "--json"], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    for line in proc.stderr:
        if line.startswith(f"WAN_COMPAT_FIX_PAUSED {point}"):
            break
    _fill(folder.parent)
    out, err = proc.communicate(timeout=120)
    assert "Traceback" not in err, err[-2000:]
    return json.loads(out)


def test_a_disk_that_fills_during_a_fix_is_told_with_the_state_of_the_folder(demo_models_dir: Path,
                                                                            small_disk: Path) -> None:
    from core.check.detect import inspect
    from tests.test_fix import tree_state
    # full after the first of six repairs: the second cannot be written, the first cannot be put back
    folder = small_disk / "wan21_t2v"
    shutil.copytree(demo_models_dir / "wan21_t2v", folder)
    break_demo(folder)
    before = tree_state(folder)
    result = _fix_filling_the_disk_after(folder, "1")
    said = " ".join(result["errors"])
    assert result["ok"] is False and tree_state(folder) != before
    assert "The folder is part-way" in said and "--apply` again to finish" in said and "is as it was" not in said
    (small_disk / "filler").unlink()
    again = fix.plan(inspect(folder)).execute()                    # run Fix again, as told: finished
    assert again.ok, again.errors
    finished = tree_state(folder)
    shutil.rmtree(folder)
    # full after the last repair: every change is made, only the record cannot be marked finished
    shutil.copytree(demo_models_dir / "wan21_t2v", folder)
    break_demo(folder)
    result = _fix_filling_the_disk_after(folder, "6")
    said = " ".join(result["errors"])
    assert "The fix is fully applied" in said and "part-way" not in said, said
    assert tree_state(folder) == finished
    assert [f["code"] for f in result["report_after"]["findings"] if f["severity"] == "error"] == ["fix_interrupted"]
    (small_disk / "filler").unlink()
    again = fix.plan(inspect(folder)).execute()
    assert again.ok and tree_state(folder) == finished            # only marked
