"""The history on read-only storage and a damaged one moved aside with its -wal and -shm (real SQLite, real files)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.monitor import PerformanceMonitor
from tests.conftest import REPO


def _record(db: Path) -> None:
    monitor = PerformanceMonitor(db)
    with monitor.track("generation", model="m"):
        time.sleep(0.01)


def _perf(db: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO), WAN_COMPAT_HISTORY_DB=str(db), PYTHONIOENCODING="utf-8")
    return subprocess.run([sys.executable, "-m", "core", "perf"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=60)


def test_a_healthy_history_on_read_only_storage_is_not_damaged(tmp_path: Path) -> None:
    db = tmp_path / "data" / "history.db"
    db.parent.mkdir()
    _record(db)
    before = sorted(p.name for p in db.parent.iterdir())
    if subprocess.run(["chattr", "+i", str(db.parent)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not possible here (needed for storage that root cannot write)")
    try:
        out = _perf(db)
        after = sorted(p.name for p in db.parent.iterdir())
    finally:
        subprocess.run(["chattr", "-i", str(db.parent)])
    said = out.stdout + out.stderr
    assert "damaged" not in said and "moved" not in said and "corrupt" not in said, said
    assert after == before


def test_a_damaged_history_is_moved_aside_with_its_wal_and_shm(tmp_path: Path) -> None:
    db = tmp_path / "history.db"
    db.write_bytes(b"not a database at all" * 100)
    Path(f"{db}-wal").write_bytes(b"w" * 100)
    Path(f"{db}-shm").write_bytes(b"s" * 100)
    monitor = PerformanceMonitor(db)
    with monitor.track("generation", model="m"):
        pass
    aside = sorted(p.name for p in tmp_path.glob("history.db.corrupt-*"))
    assert len(aside) == 3 and {a.rsplit("-", 1)[-1] for a in aside if a.endswith(("-wal", "-shm"))} == {"wal", "shm"}
    said = " ".join(monitor.warnings)
    assert "with its -wal and -shm files" in said and "WAN_COMPAT_HISTORY_DB=" in said and "core perf" in said


def test_rows_from_the_future_keep_their_recorded_order_and_are_flagged(tmp_path: Path) -> None:
    import sqlite3
    db = tmp_path / "history.db"
    monitor = PerformanceMonitor(db)
    for n in range(4):
        with monitor.track("generation", model=f"m{n}"):
            pass
    with sqlite3.connect(db) as conn:          # the first two were written while the clock was a year ahead
        conn.execute("UPDATE operations SET started_at = started_at + 365 * 86400 WHERE model IN ('m0', 'm1')")
    again = PerformanceMonitor(db)
    assert [o.model for o in again.operations()] == ["m0", "m1", "m2", "m3"]
    assert any("2 run(s) in the performance history are dated in the future" in w for w in again.warnings)
