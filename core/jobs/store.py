"""Generation jobs kept in the SQLite history database (table ``jobs``), so the queue outlives the app.

A job is one generation request (a model folder, the GenerationConfig fields, the memory-plan
overrides) and what became of it: its state, its last progress, its video or its sentence.

Usage::

    from core.jobs.store import JobStore

    store = JobStore()                                   # config.yaml's history_db (the same file as the monitor)
    job_id = store.add("/models/Wan2.1-T2V-1.3B-Diffusers", {"prompt": "a fox", "num_frames": 17})
    store.get(job_id).state                              # 'queued'
    [job.to_api() for job in store.list()]               # [{"id", "state", "percent", "message", "output_path", "error"}]

States: queued -> running -> done | failed | cancelled; a job that was running when its app
died is ``interrupted`` (:meth:`JobStore.recover`) and :meth:`JobStore.requeue` puts it back.
The table lives beside the performance history's ``operations`` (core.monitor.store's
connection settings: WAL, busy timeout); it is created when first used.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.monitor.store import connect, jsonable, while_busy

STATES = ("queued", "running", "done", "failed", "cancelled", "interrupted")
FINISHED = ("done", "failed", "cancelled", "interrupted")
REQUEUEABLE = ("failed", "cancelled", "interrupted")

_SCHEMA = """CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    state TEXT NOT NULL,
    position INTEGER NOT NULL,             -- queue order: lowest runs first
    created_at REAL NOT NULL,              -- Unix time
    started_at REAL,
    finished_at REAL,
    model TEXT NOT NULL,                   -- the model folder
    request TEXT NOT NULL DEFAULT '{}',    -- JSON: config (GenerationConfig fields), overrides, gpus, outputs_dir
    label TEXT NOT NULL DEFAULT '',        -- "a red fox · 64x64 · 9 frames" for people
    percent REAL NOT NULL DEFAULT 0,
    message TEXT NOT NULL DEFAULT '',
    event TEXT,                            -- JSON: the last ProgressEvent (core.progress) of a running job
    output_path TEXT,
    error TEXT,
    result TEXT,                           -- JSON: the finished generation's result
    owner TEXT,                            -- "pid:start time" of the app process running it
    cancel INTEGER NOT NULL DEFAULT 0      -- Cancel was pressed (any process may ask)
)"""
_COLUMNS = ("id", "state", "position", "created_at", "started_at", "finished_at", "model", "request", "label",
            "percent", "message", "event", "output_path", "error", "result", "owner", "cancel")
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM jobs"


@dataclass(frozen=True)
class Job:
    """One row of the ``jobs`` table."""

    id: int
    state: str
    position: int
    created_at: float
    model: str
    request: dict[str, Any] = field(default_factory=dict)
    label: str = ""
    percent: float = 0.0
    message: str = ""
    event: dict[str, Any] | None = None
    output_path: str | None = None
    error: str | None = None
    result: dict[str, Any] | None = None
    started_at: float | None = None
    finished_at: float | None = None
    owner: str | None = None
    cancel_requested: bool = False

    @property
    def finished(self) -> bool:
        return self.state in FINISHED

    def to_api(self) -> dict[str, Any]:
        """What ``/jobs``, ``/job`` and ``python -m core jobs --json`` return for this job."""
        return {"id": self.id, "state": self.state, "percent": round(self.percent, 1), "message": self.message,
                "output_path": self.output_path, "error": self.error}


def _job(row: tuple[Any, ...]) -> Job:
    r = dict(zip(_COLUMNS, row))
    return Job(id=r["id"], state=r["state"], position=r["position"], created_at=r["created_at"], model=r["model"],
               request=_json(r["request"]) or {}, label=r["label"], percent=r["percent"], message=r["message"],
               event=_json(r["event"]), output_path=r["output_path"], error=r["error"], result=_json(r["result"]),
               started_at=r["started_at"], finished_at=r["finished_at"], owner=r["owner"],
               cancel_requested=bool(r["cancel"]))


def _json(text: str | None) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None


def this_process() -> str:
    """This process as a job's owner: its PID and start time (a PID alone may be reused)."""
    return f"{os.getpid()}:{_start_time(os.getpid())}"


def _start_time(pid: int) -> str:
    try:
        import psutil
        return f"{psutil.Process(pid).create_time():.2f}"
    except Exception:  # noqa: BLE001 - gone, or psutil missing: the PID alone
        return ""


def owner_alive(owner: str | None) -> bool:
    """Whether the process named by a job's ``owner`` ("pid:start time") still runs."""
    if not owner:
        return False
    pid_text, _, started = owner.partition(":")
    try:
        pid = int(pid_text)
        os.kill(pid, 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        pass                      # someone else's process: alive, but not ours if the start time differs
    return not started or _start_time(pid) == started


class JobStore:
    """The ``jobs`` table of one history database; safe to share between threads and processes."""

    def __init__(self, db_path: str | os.PathLike[str] | None = None) -> None:
        if db_path is None:
            from core.monitor import history_db_path
            db_path = history_db_path()
        self.db_path = Path(db_path).expanduser()
        self._conn: sqlite3.Connection | None = None
        self._pid = 0
        self._lock = threading.RLock()

    # --- the connection ----------------------------------------------------------------------

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._conn is None or self._pid != os.getpid():     # a forked child opens its own
                self.db_path.parent.mkdir(parents=True, exist_ok=True)
                conn = connect(self.db_path)
                while_busy(conn.execute, "PRAGMA journal_mode = WAL")
                while_busy(conn.execute, _SCHEMA)
                self._conn, self._pid = conn, os.getpid()
            yield self._conn

    def _write(self, sql: str, *args: Any) -> sqlite3.Cursor:
        with self._db() as conn:
            return while_busy(conn.execute, sql, args)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    @property
    def jobs_dir(self) -> Path:
        """Where jobs keep their own copies of input files (beside the database)."""
        return self.db_path.parent / "jobs"

    # --- adding and reading ------------------------------------------------------------------

    def add(self, model: str, config: dict[str, Any], overrides: dict[str, Any] | None = None,
            label: str = "", **extra: Any) -> int:
        """Queue a job at the end; its id. ``extra`` (gpus, outputs_dir) is kept with the request."""
        request = {"config": config, "overrides": dict(overrides or {}), **extra}
        with self._db() as conn:
            def insert() -> int:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    last = conn.execute("SELECT COALESCE(MAX(position), 0) FROM jobs").fetchone()[0]
                    cursor = conn.execute(
                        "INSERT INTO jobs (state, position, created_at, model, request, label, message) "
                        "VALUES ('queued', ?, ?, ?, ?, ?, 'Waiting in the queue')",
                        (last + 1, time.time(), str(model), json.dumps(request, default=jsonable), label))
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                return int(cursor.lastrowid)
            return while_busy(insert)

    def set_request(self, job_id: int, request: dict[str, Any]) -> None:
        """Replace a job's request (e.g. with its own copies of the input files)."""
        self._write("UPDATE jobs SET request = ? WHERE id = ?", json.dumps(request, default=jsonable), job_id)

    def get(self, job_id: int | str) -> Job | None:
        """The job with this id, or None."""
        try:
            key = int(job_id)
        except (TypeError, ValueError):
            return None
        with self._db() as conn:
            row = while_busy(lambda: conn.execute(f"{_SELECT} WHERE id = ?", (key,)).fetchone())
        return _job(row) if row else None

    def list(self, limit: int = 200) -> list[Job]:
        """Running and queued jobs first (in queue order), then the finished ones, newest first."""
        with self._db() as conn:
            rows = while_busy(lambda: conn.execute(
                f"{_SELECT} ORDER BY CASE state WHEN 'running' THEN 0 WHEN 'queued' THEN 1 ELSE 2 END, "
                "CASE WHEN state IN ('running', 'queued') THEN position ELSE -COALESCE(finished_at, created_at) END "
                "LIMIT ?", (limit,)).fetchall())
        return [_job(r) for r in rows]

    def running(self) -> Job | None:
        """The job running now (the first, if several apps share the database)."""
        with self._db() as conn:
            row = while_busy(lambda: conn.execute(f"{_SELECT} WHERE state = 'running' ORDER BY position LIMIT 1"
                                                  ).fetchone())
        return _job(row) if row else None

    # --- the runner's side -------------------------------------------------------------------

    def claim_next(self, owner: str) -> Job | None:
        """Mark the first queued job running for ``owner`` and return it (None: the queue is empty)."""
        with self._db() as conn:
            def claim() -> int | None:
                conn.execute("BEGIN IMMEDIATE")        # two apps on one database never take the same job
                try:
                    row = conn.execute("SELECT id FROM jobs WHERE state = 'queued' ORDER BY position LIMIT 1"
                                       ).fetchone()
                    if row is not None:
                        conn.execute("UPDATE jobs SET state = 'running', owner = ?, started_at = ?, finished_at = NULL, "
                                      "percent = 0, message = 'Starting', event = NULL, error = NULL, "
                                      "output_path = NULL, result = NULL, cancel = 0 WHERE id = ?",
                                      (owner, time.time(), row[0]))
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                return row[0] if row else None
            job_id = while_busy(claim)
        return self.get(job_id) if job_id is not None else None

    def progress(self, job_id: int, event: dict[str, Any]) -> bool:
        """Record a running job's last ProgressEvent (``event.to_dict()``); True if Cancel was asked."""
        self._write("UPDATE jobs SET percent = ?, message = ?, event = ? WHERE id = ? AND state = 'running'",
                    float(event.get("percent") or 0.0), str(event.get("message") or ""),
                    json.dumps(event, default=jsonable), job_id)
        job = self.get(job_id)
        return bool(job and job.cancel_requested)

    def finish(self, job_id: int, state: str, *, output_path: str | None = None, error: str | None = None,
               result: dict[str, Any] | None = None, message: str = "") -> None:
        """A job ended: done (with its video), failed (with its sentence) or cancelled."""
        percent = "100" if state == "done" else "percent"
        self._write(f"UPDATE jobs SET state = ?, finished_at = ?, output_path = ?, error = ?, result = ?, "
                    f"message = ?, percent = {percent} WHERE id = ?", state, time.time(), output_path, error,
                    json.dumps(result, default=jsonable) if result is not None else None, message, job_id)

    def recover(self) -> list[int]:
        """Running jobs whose app is gone become ``interrupted``; their ids."""
        with self._db() as conn:
            rows = while_busy(lambda: conn.execute("SELECT id, owner FROM jobs WHERE state = 'running'").fetchall())
        lost = [job_id for job_id, owner in rows if not owner_alive(owner)]
        for job_id in lost:
            self._write("UPDATE jobs SET state = 'interrupted', finished_at = ?, message = ?, error = ? "
                        "WHERE id = ? AND state = 'running'", time.time(), "Interrupted",
                        "The app stopped while this job was running; no video was written. "
                        "Press Re-queue to run it again.", job_id)
        return lost

    # --- what people do with the queue -------------------------------------------------------

    def request_cancel(self, job_id: int) -> str | None:
        """Cancel: a queued job is cancelled at once; a running one is flagged (its runner stops it).
        The state it had, or None when there is no such job."""
        job = self.get(job_id)
        if job is None:
            return None
        if job.state == "queued":
            self._write("UPDATE jobs SET state = 'cancelled', finished_at = ?, message = 'Cancelled' "
                        "WHERE id = ? AND state = 'queued'", time.time(), job.id)
        elif job.state == "running":
            self._write("UPDATE jobs SET cancel = 1 WHERE id = ?", job.id)
        return job.state

    def remove(self, job_id: int) -> bool:
        """Delete a job that is not running (a queued one leaves the queue); False if none was removed."""
        return self._write("DELETE FROM jobs WHERE id = ? AND state != 'running'", int(job_id)).rowcount > 0

    def requeue(self, job_id: int) -> bool:
        """Put an interrupted, failed or cancelled job at the end of the queue again."""
        with self._db() as conn:
            last = while_busy(lambda: conn.execute("SELECT COALESCE(MAX(position), 0) FROM jobs").fetchone()[0])
        marks = ", ".join("?" * len(REQUEUEABLE))
        return self._write(
            f"UPDATE jobs SET state = 'queued', position = ?, percent = 0, message = 'Waiting in the queue', "
            f"event = NULL, error = NULL, output_path = NULL, result = NULL, finished_at = NULL, started_at = NULL, "
            f"cancel = 0 WHERE id = ? AND state IN ({marks})", last + 1, int(job_id), *REQUEUEABLE).rowcount > 0

    def move(self, job_id: int, offset: int) -> bool:
        """Move a queued job ``offset`` places (-1: one earlier); False when it cannot move."""
        with self._db() as conn:
            queued = [r[0] for r in while_busy(lambda: conn.execute(
                "SELECT id FROM jobs WHERE state = 'queued' ORDER BY position").fetchall())]
            if int(job_id) not in queued:
                return False
            at = queued.index(int(job_id))
            to = max(0, min(len(queued) - 1, at + offset))
            if to == at:
                return False
            queued.insert(to, queued.pop(at))

            def renumber() -> None:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    base = conn.execute("SELECT COALESCE(MIN(position), 0) FROM jobs WHERE state = 'queued'"
                                        ).fetchone()[0]
                    for n, jid in enumerate(queued):
                        conn.execute("UPDATE jobs SET position = ? WHERE id = ? AND state = 'queued'", (base + n, jid))
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
            while_busy(renumber)
        return True
