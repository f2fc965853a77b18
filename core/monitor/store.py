"""The performance history's SQLite file: the recorded row, schema and migrations, conversion.

``OperationMetrics`` is one recorded operation (one row of the ``operations`` table).
``core.monitor.PerformanceMonitor`` keeps the connection and the locks; this module holds
what it does with the file:

    conn = connect(path)                       # WAL, busy timeout, no fsync per run
    while_busy(prepare, conn, warn)            # create or migrate to SCHEMA_VERSION, quick_check
    while_busy(conn.execute, INSERT_SQL, to_row(metrics))
    ops = [from_row(r) for r in conn.execute(f"SELECT {', '.join(COLUMNS)} FROM operations")]

A damaged file (``is_damage(exc, path)``) is renamed ``<name>.corrupt-<time>`` (its ``-wal`` and
``-shm`` too; a sound file on read-only storage is not damaged) by
``move_aside(path, exc, warn)``, and a new one is started. A sound file whose table lacks
columns this version uses (a newer version's) raises ``SchemaMismatch`` and is left alone.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any

from core.monitor.context import plan_label

BUSY_TIMEOUT_S = 15.0                        # how long a writer waits for another process's write

# Schema migrations, applied in order to a database whose schema_version is lower.
# Never edit a released step: append a new one (an ALTER TABLE ... ADD COLUMN, an index).
MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (1, (
        """CREATE TABLE operations (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            operation_id TEXT NOT NULL,
            operation_type TEXT NOT NULL,
            started_at REAL NOT NULL,          -- Unix time
            duration_s REAL NOT NULL,
            success INTEGER NOT NULL,
            cancelled INTEGER NOT NULL DEFAULT 0,
            error TEXT,
            memory_start_mb REAL,              -- process RSS, MiB
            memory_peak_mb REAL,
            gpu_memory_peak_mb REAL,
            cpu_percent REAL,                  -- process CPU time / wall time; 100 = one core
            seconds_per_step REAL,
            stage_seconds TEXT NOT NULL DEFAULT '{}',   -- JSON {stage: seconds}
            model TEXT,                        -- registry id or folder name
            model_fingerprint TEXT,            -- hash of file names and sizes
            width INTEGER, height INTEGER, frames INTEGER, steps INTEGER,
            plan TEXT NOT NULL DEFAULT '{}',   -- JSON of the plan's choices
            hardware TEXT,                     -- e.g. "16 CPUs, 125 GB RAM, 1x NVIDIA H100 (80 GB)"
            versions TEXT NOT NULL DEFAULT '{}',  -- JSON: app, python, torch, cuda, driver, ...
            context TEXT NOT NULL DEFAULT '{}'    -- JSON: anything else the caller gave
        )""",
        "CREATE INDEX operations_by_type_time ON operations (operation_type, started_at)",
        "CREATE INDEX operations_by_model ON operations (model_fingerprint, model)",
    )),
)
SCHEMA_VERSION = MIGRATIONS[-1][0]
COLUMNS = ("operation_id", "operation_type", "started_at", "duration_s", "success", "cancelled", "error",
           "memory_start_mb", "memory_peak_mb", "gpu_memory_peak_mb", "cpu_percent", "seconds_per_step",
           "stage_seconds", "model", "model_fingerprint", "width", "height", "frames", "steps", "plan",
           "hardware", "versions", "context")
INSERT_SQL = f"INSERT INTO operations ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"


# --- what one operation measured ------------------------------------------------------------

@dataclass(frozen=True)
class OperationMetrics:
    """One finished operation, as recorded. Memory in MiB, times in seconds.

    >>> m = monitor.end_operation("gen-1", success=True)
    >>> f"{m.duration:.1f} s, {m.memory_peak_mb:.0f} MB RAM, {m.size}"
    '12.3 s, 2100 MB RAM, 832x480'
    """

    operation_id: str
    operation_type: str
    started_at: float                         # Unix time
    duration: float
    success: bool
    cancelled: bool = False
    error: str | None = None
    memory_start_mb: float | None = None      # process RSS when it started
    memory_peak_mb: float | None = None       # process RSS peak, sampled on a background thread
    gpu_memory_peak_mb: float | None = None   # torch's peak allocated (CUDA), else NVML, else None
    cpu_percent: float | None = None          # process CPU time over wall time; 100 = one core busy
    stage_seconds: dict[str, float] = field(default_factory=dict)
    seconds_per_step: float | None = None
    model: str | None = None                  # registry id, else the folder name
    model_fingerprint: str | None = None      # see model_fingerprint()
    width: int | None = None
    height: int | None = None
    frames: int | None = None
    steps: int | None = None
    plan: dict[str, Any] = field(default_factory=dict)   # the plan's choices, values only
    hardware: str | None = None
    versions: dict[str, str | None] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> str | None:
        return f"{self.width}x{self.height}" if self.width and self.height else None

    @property
    def plan_label(self) -> str:
        return plan_label(self.plan)

    def value(self, metric: str) -> float | None:
        """A metric by its name in METRICS ("duration", "seconds_per_step", ...)."""
        return self.duration if metric == "duration" else getattr(self, metric)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "size": self.size, "plan_label": self.plan_label}


# --- the file ------------------------------------------------------------------------------

def connect(path: Path) -> sqlite3.Connection:
    """A connection for a monitor to keep open (autocommit, any thread). Closing the last
    connection to a WAL database checkpoints and deletes the WAL, an fsync each time."""
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
    conn.execute("PRAGMA synchronous = NORMAL")   # WAL: durable at checkpoints, no fsync per run
    return conn


class SchemaMismatch(sqlite3.DatabaseError):
    """A sound history this version cannot write or read: its table lacks columns we use
    (a newer Wan Compat renamed or dropped them). Not damage: the file is left as it is.

    >>> SchemaMismatch(2, ["duration_s"]).describe(Path("history.db"))
    'The performance history history.db was written by a newer Wan Compat (schema 2; this one knows 1): ...'
    """

    def __init__(self, version: int, missing: Sequence[str]) -> None:
        self.version, self.missing = version, tuple(missing)
        super().__init__(f"schema {version}, operations table without {', '.join(self.missing)}")

    def describe(self, path: Path) -> str:
        """One sentence for the user: what the file is, what this version does with it, the remedy."""
        columns = ", ".join(self.missing)
        who = (f"was written by a newer Wan Compat (schema {self.version}; this one knows {SCHEMA_VERSION})"
               if self.version > SCHEMA_VERSION else "was changed by another program")
        return (f"The performance history {path} {who}: its operations table has no column {columns}, which this "
                f"version writes, so runs are NOT recorded there and it cannot be shown. The file is left as it is. "
                f"Update Wan Compat to use it, or keep it aside and start a new history: mv {path} {path}.newer "
                f"(or set WAN_COMPAT_HISTORY_DB to another file).")


def prepare(conn: sqlite3.Connection, warn: Callable[[str], None]) -> None:
    """WAL mode, the schema at SCHEMA_VERSION, and a quick check (DatabaseError if it fails;
    SchemaMismatch when the table lacks columns this version uses)."""
    conn.execute("PRAGMA journal_mode = WAL")
    migrate(conn, warn)
    check = conn.execute("PRAGMA quick_check").fetchone()[0]
    if check != "ok":
        raise sqlite3.DatabaseError(f"database disk image is malformed: {check}")
    have = {row[1] for row in conn.execute("PRAGMA table_info(operations)")}
    missing = [c for c in ("id", *COLUMNS) if c not in have]
    version = _schema_version(conn)
    if missing:
        raise SchemaMismatch(version, missing)
    if version > SCHEMA_VERSION:
        warn(f"The performance history was written by a newer Wan Compat (schema {version}, this one knows "
             f"{SCHEMA_VERSION}); it has every column this version uses, so runs are still recorded.")


def move_aside(path: Path, reason: BaseException, warn: Callable[[str], None]) -> bool:
    """Rename a damaged database ``<name>.corrupt-<time>`` (with its WAL); False if it cannot be."""
    if not path.exists():
        return True
    if _healthy(path):     # another process replaced it already
        return True
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    try:
        os.replace(path, target)
        for suffix in ("-wal", "-shm", "-journal"):      # the old file's own, kept with it
            side = Path(f"{path}{suffix}")
            if side.exists():
                os.replace(side, Path(f"{target}{suffix}"))
    except OSError as exc:
        warn(f"The performance history {path} is damaged ({reason}) and could not be moved aside: {exc}.")
        return False
    warn(f"The performance history {path} could not be read ({reason}); it was moved to "
         f"{target.name} (with its -wal and -shm files) and a new one was started. To look at the old one: "
         f"WAN_COMPAT_HISTORY_DB={target} python -m core perf")
    return True


def migrate(conn: sqlite3.Connection, warn: Callable[[str], None]) -> None:
    """Bring the schema to SCHEMA_VERSION; two processes doing it at once is safe (BEGIN IMMEDIATE)."""
    if _schema_version(conn) == SCHEMA_VERSION:
        return
    conn.execute("BEGIN IMMEDIATE")      # one migrator at a time; the others wait, then see it done
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        version = _schema_version(conn)
        for number, statements in MIGRATIONS:
            if number > version:
                for statement in statements:
                    conn.execute(statement)
        if version < SCHEMA_VERSION:
            conn.execute("DELETE FROM schema_version")
            conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def while_busy(fn: Any, *args: Any) -> Any:
    """Call ``fn``, retrying while another process holds the database (up to BUSY_TIMEOUT_S).

    SQLite's busy handler covers most waits, but not all: switching to WAL or recovering
    a WAL index while another connection does the same answers "database is locked" at once.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    delay = 0.005
    while True:
        try:
            return fn(*args)
        except sqlite3.OperationalError as exc:
            name = getattr(exc, "sqlite_errorname", "") or ""
            busy = name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in str(exc)
            if not busy or time.monotonic() > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def _schema_version(conn: sqlite3.Connection) -> int:
    try:
        row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return 0
        raise
    return int(row[0] or 0)


def is_damage(exc: BaseException, path: Path) -> bool:
    """A damaged or unreadable file (worth moving aside), not a busy or full disk."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")):
        return True
    text = str(exc).lower()
    if "not a database" in text or "malformed" in text:
        return True
    exists = path.exists()
    if exists and name.startswith(("SQLITE_CANTOPEN", "SQLITE_READONLY", "SQLITE_PERM")):
        return not _healthy_read_only(path)     # read-only storage holding a good file is not damage
    return isinstance(exc, IsADirectoryError) or (exists and path.is_dir())


def _healthy_read_only(path: Path) -> bool:
    """Whether the file reads as a sound history when opened read-only (immutable: no WAL, no -shm)."""
    try:
        uri = f"{path.resolve().as_uri()}?mode=ro&immutable=1"
        with closing(sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S)) as conn:
            return conn.execute("PRAGMA quick_check").fetchone()[0] == "ok" and _schema_version(conn) > 0
    except (sqlite3.Error, OSError, ValueError):
        return False


def _healthy(path: Path) -> bool:
    try:
        with closing(sqlite3.connect(path, timeout=BUSY_TIMEOUT_S)) as conn:
            return conn.execute("PRAGMA quick_check").fetchone()[0] == "ok" and _schema_version(conn) > 0
    except (sqlite3.Error, OSError):
        return False


# --- rows ----------------------------------------------------------------------------------

def to_row(m: OperationMetrics) -> tuple[Any, ...]:
    return (m.operation_id, m.operation_type, m.started_at, m.duration, int(m.success), int(m.cancelled), m.error,
            m.memory_start_mb, m.memory_peak_mb, m.gpu_memory_peak_mb, m.cpu_percent, m.seconds_per_step,
            json.dumps(m.stage_seconds), m.model, m.model_fingerprint, m.width, m.height, m.frames, m.steps,
            json.dumps(m.plan, sort_keys=True, default=jsonable), m.hardware, json.dumps(m.versions, sort_keys=True),
            json.dumps(m.context, sort_keys=True, default=jsonable))


def from_row(row: Sequence[Any]) -> OperationMetrics:
    r = dict(zip(COLUMNS, row))
    return OperationMetrics(
        operation_id=r["operation_id"], operation_type=r["operation_type"], started_at=r["started_at"],
        duration=r["duration_s"], success=bool(r["success"]), cancelled=bool(r["cancelled"]), error=r["error"],
        memory_start_mb=r["memory_start_mb"], memory_peak_mb=r["memory_peak_mb"],
        gpu_memory_peak_mb=r["gpu_memory_peak_mb"], cpu_percent=r["cpu_percent"],
        stage_seconds=_json(r["stage_seconds"]), seconds_per_step=r["seconds_per_step"], model=r["model"],
        model_fingerprint=r["model_fingerprint"], width=r["width"], height=r["height"], frames=r["frames"],
        steps=r["steps"], plan=_json(r["plan"]), hardware=r["hardware"], versions=_json(r["versions"]),
        context=_json(r["context"]))


def _json(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def jsonable(value: Any) -> Any:
    """``json.dumps``'s ``default`` for plans and context: ``to_dict()``, a dataclass's fields, else ``str``."""
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    return str(value)

