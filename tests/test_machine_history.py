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


def _newer_version(db: Path, change: str) -> None:
    """A history as a newer Wan Compat would leave it: schema 2 and ``change`` applied to its table."""
    import sqlite3
    _record(db)
    with sqlite3.connect(db) as conn:
        conn.execute(change)
        conn.execute("UPDATE schema_version SET version = 2")


def _record_after(db: Path) -> PerformanceMonitor:
    """A monitor on ``db`` that has tracked one generation of model "after"."""
    monitor = PerformanceMonitor(db)
    with monitor.track("generation", model="after"):
        pass
    return monitor


def test_a_newer_versions_history_with_a_renamed_column_is_named_and_left_alone(tmp_path: Path) -> None:
    import sqlite3
    db = tmp_path / "history.db"
    _newer_version(db, "ALTER TABLE operations RENAME COLUMN duration_s TO seconds")
    monitor = _record_after(db)
    said = " ".join(monitor.warnings)
    assert "still recorded" not in said
    assert "newer Wan Compat (schema 2; this one knows 1)" in said and "no column duration_s" in said, said
    assert "NOT recorded" in said and f"mv {db} {db}.newer" in said
    with sqlite3.connect(db) as conn:       # untouched: its one row, its column, nothing moved aside
        assert conn.execute("SELECT COUNT(*) FROM operations").fetchone()[0] == 1
    assert sorted(p.name for p in tmp_path.iterdir() if "corrupt" in p.name) == []
    out = _perf(db)
    assert out.returncode == 2 and "No runs recorded yet" not in out.stdout + out.stderr
    assert "no column duration_s" in out.stderr and "still recorded" not in out.stderr
    # the remedy works: moved aside as told, the next run is recorded in a new history
    os.replace(db, f"{db}.newer")
    again = _record_after(db)
    assert [o.model for o in again.operations()] == ["after"] and not again.warnings


def test_a_newer_versions_history_with_an_added_column_is_still_recorded(tmp_path: Path) -> None:
    db = tmp_path / "history.db"
    _newer_version(db, "ALTER TABLE operations ADD COLUMN energy_j REAL")
    monitor = _record_after(db)
    assert [o.model for o in monitor.operations()] == ["m", "after"]
    assert any("every column this version uses, so runs are still recorded" in w for w in monitor.warnings)


def test_the_performance_tab_says_a_newer_versions_history_cannot_be_used(app_config) -> None:
    pytest.importorskip("gradio")
    from core.monitor import get_performance_monitor
    from wan_ui.performance import refresh
    db = get_performance_monitor().db_path
    db.parent.mkdir(parents=True, exist_ok=True)
    _newer_version(db, "ALTER TABLE operations RENAME COLUMN duration_s TO seconds")
    note, _table, _speed, _memory, alerts, *_ = refresh("all")
    assert "No runs recorded yet" not in note + alerts
    assert "newer Wan Compat" in note and "This version cannot use the history file" in alerts
