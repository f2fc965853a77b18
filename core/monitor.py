"""Speed and memory history of every load and generation (SQLite), and alerts when it gets slower.

Usage::

    from core.monitor import get_performance_monitor
    monitor = get_performance_monitor()          # the app-wide one (config.yaml: history_db)

    with monitor.track("generation", model="Wan-AI/Wan2.2-TI2V-5B-Diffusers", width=832, height=480,
                       frames=33, steps=30, plan={"device": "cuda", "placement": "model_offload"}) as op:
        result = wrapper.generate(config)
        op.set(stage_seconds=result.seconds, seconds_per_step=result.seconds_per_step)
        op.success = result.success
    print(op.metrics.duration, op.metrics.memory_peak_mb)

    monitor.start_operation("gen-1", "generation")             # the seed guide's calls
    metrics = monitor.end_operation("gen-1", success=True)

    monitor.get_performance_summary(operation_type="generation")["duration_stats"]["median"]
    for alert in monitor.detect_performance_regressions():
        print(alert.message)
    monitor.optimization_effectiveness()         # time and peak memory per plan, for otherwise equal runs

``core.loader`` records every load ("load") and generation ("generation") by itself.

Switches: ``WAN_COMPAT_MONITOR=off`` (or ``monitor.enabled = False``) records nothing;
``WAN_COMPAT_HISTORY_DB=/path/history.db`` replaces config.yaml's ``history_db`` (tests).

Recording never breaks the work it measures: a monitor error becomes a warning (logged, and
kept in ``monitor.warnings``). A damaged or unreadable database file is renamed
``history.db.corrupt-<time>`` and a new one is started. torch is never imported here: GPU
memory comes from torch only when the caller already imported it and CUDA is in use, else
from nvidia-ml-py, else it is None.
"""

from __future__ import annotations

import csv
import functools
import itertools
import json
import logging
import os
import platform
import sqlite3
import statistics
import sys
import threading
import time
from collections import Counter
from contextlib import closing, contextmanager
from dataclasses import asdict, dataclass, field, is_dataclass
from datetime import datetime
from hashlib import sha256
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from core import __version__

log = logging.getLogger(__name__)

DB_ENV = "WAN_COMPAT_HISTORY_DB"
SWITCH_ENV = "WAN_COMPAT_MONITOR"            # "off", "0", "false" or "no": record nothing
LOAD, GENERATION = "load", "generation"      # the operation types core.loader records
MB = 2**20
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

# Plan settings that do not make runs incomparable: a change in them is reported as
# "what changed" (they often explain a slowdown) instead of starting a new comparison group.
PLAN_DETAILS = ("vae_tiling", "vae_slicing", "attention_backend")
# Parts of OptimizationPlan.to_dict() that describe the estimate, not the choice.
_PLAN_DROP = {"estimate", "request", "reasons", "notes", "refusal", "remedy", "fits",
              "usable_vram_mb", "usable_ram_mb"}
_COLUMNS = ("operation_id", "operation_type", "started_at", "duration_s", "success", "cancelled", "error",
            "memory_start_mb", "memory_peak_mb", "gpu_memory_peak_mb", "cpu_percent", "seconds_per_step",
            "stage_seconds", "model", "model_fingerprint", "width", "height", "frames", "steps", "plan",
            "hardware", "versions", "context")
METRICS = ("duration", "seconds_per_step", "memory_peak_mb", "gpu_memory_peak_mb")


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


@dataclass(frozen=True)
class RegressionAlert:
    """A metric that got worse between comparable runs, with the evidence.

    ``baseline``/``current`` are medians; ``confidence`` (0..1) is the share of (recent,
    baseline) run pairs in which the recent run was worse; ``what_changed`` maps a
    version, the driver or a plan setting to its (before, after) values.
    """

    metric_name: str
    operation_type: str
    model: str | None
    size: str | None
    frames: int | None
    steps: int | None
    plan: str
    baseline: float
    current: float
    change_percent: float
    threshold_percent: float                  # the change this group's noise allows
    baseline_runs: int
    current_runs: int
    confidence: float
    confidence_label: str                     # "high", "medium" or "low"
    what_changed: dict[str, tuple[Any, Any]] = field(default_factory=dict)

    @property
    def message(self) -> str:
        """One sentence for people."""
        what = ", ".join(x for x in (self.model, self.size, f"{self.frames} frames" if self.frames else None,
                                     f"{self.steps} steps" if self.steps else None) if x)
        worse = "slower" if self.metric_name in ("duration", "seconds_per_step") else "more memory"
        changed = "; ".join(f"{k} {a} -> {b}" for k, a, b in ((k, *v) for k, v in self.what_changed.items()))
        return (f"{self.operation_type} of {what or 'an unnamed model'}: {self.metric_name} {self.change_percent:+.0f}% "
                f"({worse}; median {_fmt(self.metric_name, self.baseline)} over {self.baseline_runs} runs -> "
                f"{_fmt(self.metric_name, self.current)} over the last {self.current_runs}; confidence "
                f"{self.confidence_label}). " + (f"Changed: {changed}." if changed else "No version or plan changed."))

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["what_changed"] = {k: list(v) for k, v in self.what_changed.items()}
        out["message"] = self.message
        return out


class Operation:
    """An open operation inside ``monitor.track(...)``: add facts before it closes.

    >>> with monitor.track("generation", model="m") as op:
    ...     op.set(seconds_per_step=0.5, stage_seconds={"denoise": 10.0})
    ...     op.success = False          # e.g. the result says it failed; default: True unless it raised
    >>> op.metrics.success
    False
    """

    def __init__(self, operation_id: str) -> None:
        self.operation_id = operation_id
        self.success: bool | None = None
        self.metrics: OperationMetrics | None = None
        self.extra: dict[str, Any] = {}

    def set(self, **values: Any) -> None:
        """Context or metrics to record (the same names as ``end_operation``'s keywords)."""
        self.extra.update(values)


@dataclass
class _Open:
    operation_type: str
    context: dict[str, Any]
    started_at: float
    t0: float
    recording: bool
    rss_start: float | None = None
    rss_peak: float | None = None
    cpu_start: float | None = None
    nvml_peak: float | None = None

    def observe(self, rss: float | None, gpu: float | None) -> None:
        if rss is not None:
            self.rss_peak = rss if self.rss_peak is None else max(self.rss_peak, rss)
        if gpu is not None:
            self.nvml_peak = gpu if self.nvml_peak is None else max(self.nvml_peak, gpu)


# --- the monitor ---------------------------------------------------------------------------

class PerformanceMonitor:
    """Records operations into ``db_path`` and analyses the history.

    >>> monitor = PerformanceMonitor(tmp_path / "history.db")
    >>> with monitor.track("load", model="demo"):
    ...     time.sleep(0.1)
    >>> monitor.get_performance_summary()["duration_stats"]["count"]
    1

    Nothing touches the disk until the first operation ends or the first query runs. Safe
    to use from several threads and, through SQLite's WAL mode, several processes.
    """

    def __init__(self, db_path: str | os.PathLike[str], enabled: bool = True, sample_interval: float = 0.1) -> None:
        self.db_path = Path(db_path).expanduser()
        self.sample_interval = sample_interval
        self.warnings: list[str] = []
        self._enabled = enabled
        self._lock = threading.Lock()
        self._db_lock = threading.Lock()
        self._open: dict[str, _Open] = {}
        self._sampler: threading.Thread | None = None
        self._wake = threading.Event()
        self._closed = False
        self._ready = False
        self._conn: sqlite3.Connection | None = None      # one per monitor, kept open (see _execute)
        self._conn_pid = -1
        self._process: Any = None
        self._process_pid = -1
        self._nvml = _Nvml()
        self._ids = itertools.count(1)

    # --- switches ---------------------------------------------------------------------------

    @property
    def enabled(self) -> bool:
        """False after ``monitor.enabled = False`` or with WAN_COMPAT_MONITOR=off: nothing is recorded."""
        return self._enabled and os.environ.get(SWITCH_ENV, "").strip().lower() not in ("off", "0", "false", "no")

    @enabled.setter
    def enabled(self, value: bool) -> None:
        self._enabled = bool(value)

    def close(self) -> None:
        """Stop the sampling thread (open operations keep their start and end samples) and
        close the database now; a later operation starts and opens them again."""
        with self._lock:
            self._closed = True
            sampler = self._sampler
        self._wake.set()
        if sampler is not None and sampler is not threading.current_thread():
            sampler.join(timeout=5)
        with self._lock:
            self._closed = False
        with self._db_lock:
            self._disconnect()

    # --- recording --------------------------------------------------------------------------

    def start_operation(self, operation_id: str, operation_type: str, **context: Any) -> str:
        """Open an operation; ``context`` as for :meth:`end_operation`. Returns ``operation_id``.

        Raises ValueError when an operation with this id is already open.
        """
        recording = self.enabled
        op = _Open(operation_type, context, time.time(), time.perf_counter(), recording)
        if recording:
            op.rss_start = op.rss_peak = self._rss_mb()
            op.cpu_start = self._cpu_seconds()
        with self._lock:
            if operation_id in self._open:
                raise ValueError(f"An operation named {operation_id!r} is already open.")
            first = not any(o.recording for o in self._open.values())
            self._open[operation_id] = op
            if recording and not self._closed:
                self._ensure_sampler()
        if recording and first:
            _reset_torch_peak()
        op.t0 = time.perf_counter()
        return operation_id

    def end_operation(self, operation_id: str, success: bool, **extra: Any) -> OperationMetrics:
        """Close an operation, store it and return its metrics.

        Keywords (here or in ``start_operation``/``track``): ``model``, ``model_fingerprint``
        or ``report`` (a ModelReport, giving both), ``width``, ``height``, ``frames``,
        ``steps``, ``plan`` (an OptimizationPlan, its ``to_dict()`` or any dict/str),
        ``hardware`` (a HardwareInfo or a str), ``stage_seconds``, ``seconds_per_step``,
        ``cancelled``, ``error``, ``gpu_memory_peak_mb`` (overrides the measurement),
        ``versions`` (added to the detected ones); anything else is kept in ``context``.
        Raises KeyError for an id that is not open; a storage failure is only a warning.
        """
        end = time.perf_counter()
        with self._lock:
            op = self._open.pop(operation_id, None)
        if op is None:
            raise KeyError(f"No operation named {operation_id!r} is open.")
        duration = end - op.t0
        fields = {**op.context, **extra}
        if not op.recording:
            return OperationMetrics(operation_id, op.operation_type, op.started_at, duration, bool(success))
        op.observe(self._rss_mb(), None)
        cpu_end = self._cpu_seconds()
        cpu = None if cpu_end is None or op.cpu_start is None or duration <= 0 else \
            100.0 * (cpu_end - op.cpu_start) / duration
        gpu = _torch_peak_mb()
        if gpu is None:
            gpu = op.nvml_peak
        metrics = _build_metrics(operation_id, op, duration, bool(success), cpu, gpu, fields)
        self._store(metrics)
        return metrics

    @contextmanager
    def track(self, operation_type: str, operation_id: str | None = None, **context: Any) -> Iterator[Operation]:
        """Record the ``with`` block as one operation; an exception in it records success False.

        Monitor errors never escape: they become warnings. ``op.metrics`` holds the result
        after the block (None when the monitor failed).
        """
        op = Operation(operation_id or f"{operation_type}-{os.getpid()}-{next(self._ids)}-{time.time_ns()}")
        started = self._quietly("start", self.start_operation, op.operation_id, operation_type, **context)
        try:
            yield op
        except BaseException as exc:
            if started is not None:
                failure = {"error": f"{type(exc).__name__}: {exc}"[:500],
                           "cancelled": isinstance(exc, KeyboardInterrupt)}
                op.metrics = self._quietly("end", self.end_operation, op.operation_id, False,
                                           **{**op.extra, **failure})
            raise
        if started is not None:
            op.metrics = self._quietly("end", self.end_operation, op.operation_id,
                                       True if op.success is None else op.success, **op.extra)

    def _quietly(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - recording must never break the work
            self._warn(f"The performance monitor could not {what} an operation: {type(exc).__name__}: {exc}")
            return None

    # --- sampling ---------------------------------------------------------------------------

    def _ensure_sampler(self) -> None:
        """Start the one sampling thread if it is not running (call with ``_lock`` held)."""
        if self._sampler is not None and self._sampler.is_alive():
            return
        self._wake.clear()
        self._sampler = threading.Thread(target=self._sample_loop, name="wan-compat-monitor", daemon=True)
        self._sampler.start()

    def _sample_loop(self) -> None:
        """Sample RSS (and NVML without torch CUDA) while operations are open; then end."""
        me = threading.current_thread()
        while True:
            with self._lock:
                ops = [o for o in self._open.values() if o.recording]
                if not ops or self._closed:
                    if self._sampler is me:
                        self._sampler = None
                    return
            rss = self._rss_mb()
            gpu = None if _torch_cuda() is not None else self._nvml.used_mb()
            with self._lock:
                for o in ops:
                    o.observe(rss, gpu)
            self._wake.wait(self.sample_interval)

    def _psutil_process(self) -> Any:
        if self._process is None or self._process_pid != os.getpid():
            try:
                import psutil
                self._process, self._process_pid = psutil.Process(), os.getpid()
            except Exception:  # noqa: BLE001 - psutil missing: no memory figures
                return None
        return self._process

    def _rss_mb(self) -> float | None:
        proc = self._psutil_process()
        try:
            return proc.memory_info().rss / MB if proc is not None else None
        except Exception:  # noqa: BLE001
            return None

    def _cpu_seconds(self) -> float | None:
        proc = self._psutil_process()
        try:
            times = proc.cpu_times() if proc is not None else None
        except Exception:  # noqa: BLE001
            return None
        return None if times is None else times.user + times.system

    # --- storage ----------------------------------------------------------------------------

    def _warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)
            log.warning(message)

    def _connection(self) -> sqlite3.Connection:
        """The monitor's connection (call with ``_db_lock`` held). It stays open: closing the
        last connection to a WAL database checkpoints and deletes the WAL, an fsync each time."""
        if self._conn is None or self._conn_pid != os.getpid():
            conn = sqlite3.connect(self.db_path, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                                   check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            conn.execute("PRAGMA synchronous = NORMAL")   # WAL: durable at checkpoints, no fsync per run
            self._conn, self._conn_pid = conn, os.getpid()
        return self._conn

    def _disconnect(self) -> None:
        conn, self._conn, self._ready = self._conn, None, False
        if conn is not None and self._conn_pid == os.getpid():   # never close a parent's connection
            try:
                conn.close()
            except sqlite3.Error:
                pass

    def _ensure_ready(self, create: bool) -> bool:
        """Open (creating or migrating) the database; move a damaged one aside. False: unusable now."""
        if self._ready:
            return True
        if not create and not self.db_path.exists():
            return False
        for attempt in (1, 2):
            try:
                self.db_path.parent.mkdir(parents=True, exist_ok=True)
                _while_busy(self._prepare)
                self._ready = True
                return True
            except (sqlite3.Error, OSError) as exc:
                self._disconnect()
                if attempt == 1 and _is_damage(exc, self.db_path) and self._move_aside(exc):
                    continue
                self._warn(f"The performance history {self.db_path} cannot be used ({exc}); "
                           "this run is not recorded.")
                return False
        return False

    def _prepare(self) -> None:
        conn = self._connection()
        conn.execute("PRAGMA journal_mode = WAL")
        _migrate(conn, self._warn)
        check = conn.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise sqlite3.DatabaseError(f"database disk image is malformed: {check}")

    def _move_aside(self, reason: BaseException) -> bool:
        """Rename a damaged database ``<name>.corrupt-<time>`` (with its WAL); False if it cannot be."""
        path = self.db_path
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
            for suffix in ("-wal", "-journal"):
                side = Path(f"{path}{suffix}")
                if side.exists():
                    os.replace(side, Path(f"{target}{suffix}"))
            Path(f"{path}-shm").unlink(missing_ok=True)
        except OSError as exc:
            self._warn(f"The performance history {path} is damaged ({reason}) and could not be moved aside: {exc}.")
            return False
        self._warn(f"The performance history {path} could not be read ({reason}); it was moved to "
                   f"{target.name} and a new one was started.")
        return True

    def _store(self, metrics: OperationMetrics) -> None:
        row = _to_row(metrics)
        sql = f"INSERT INTO operations ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"
        with self._db_lock:
            for attempt in (1, 2):
                if not self._ensure_ready(create=True):
                    return
                try:
                    _while_busy(self._execute, sql, row)
                    return
                except sqlite3.Error as exc:
                    self._disconnect()
                    if attempt == 1 and _is_damage(exc, self.db_path) and self._move_aside(exc):
                        continue
                    self._warn(f"The performance history {self.db_path} could not record a run: {exc}.")
                    return

    def _execute(self, sql: str, args: Sequence[Any]) -> list[Any]:
        return self._connection().execute(sql, args).fetchall()

    def operations(self, operation_type: str | None = None, model: str | None = None,
                   since: float | datetime | None = None, include_failed: bool = True) -> list[OperationMetrics]:
        """Recorded operations, oldest first. ``model`` matches the name or the fingerprint;
        ``since`` is a datetime or Unix time."""
        where, args = [], []
        if operation_type is not None:
            where.append("operation_type = ?")
            args.append(operation_type)
        if model is not None:
            where.append("(model = ? OR model_fingerprint = ?)")
            args += [model, model]
        if since is not None:
            where.append("started_at >= ?")
            args.append(since.timestamp() if isinstance(since, datetime) else float(since))
        if not include_failed:
            where.append("success = 1")
        sql = (f"SELECT {', '.join(_COLUMNS)} FROM operations" + (f" WHERE {' AND '.join(where)}" if where else "")
               + " ORDER BY started_at, id")
        with self._db_lock:
            for attempt in (1, 2):
                if not self._ensure_ready(create=False):
                    return []
                try:
                    return [_from_row(r) for r in _while_busy(self._execute, sql, args)]
                except sqlite3.Error as exc:
                    self._disconnect()
                    if attempt == 1 and _is_damage(exc, self.db_path) and self._move_aside(exc):
                        continue
                    self._warn(f"The performance history {self.db_path} could not be read: {exc}.")
                    return []
        return []

    # --- analysis ---------------------------------------------------------------------------

    def get_performance_summary(self, operation_type: str | None = None, model: str | None = None,
                                since: float | datetime | None = None) -> dict[str, Any]:
        """Counts and statistics of the recorded runs (statistics over successful runs only).

        >>> s = monitor.get_performance_summary(operation_type="generation")
        >>> s["duration_stats"]     # also memory_stats, gpu_memory_stats, seconds_per_step_stats
        {'count': 12, 'mean': 31.2, 'median': 30.9, 'p95': 35.0, 'min': 29.8, 'max': 36.1}
        """
        ops = self.operations(operation_type, model, since)
        good = [o for o in ops if o.success]
        by_type: dict[str, list[OperationMetrics]] = {}
        for o in good:
            by_type.setdefault(o.operation_type, []).append(o)
        return {
            "operation_type": operation_type, "model": model,
            "since": since.timestamp() if isinstance(since, datetime) else since,
            "operations": len(ops), "succeeded": len(good), "failed": sum(not o.success and not o.cancelled for o in ops),
            "cancelled": sum(o.cancelled for o in ops),
            "duration_stats": describe(o.duration for o in good),
            "memory_stats": describe(o.memory_peak_mb for o in good),
            "gpu_memory_stats": describe(o.gpu_memory_peak_mb for o in good),
            "seconds_per_step_stats": describe(o.seconds_per_step for o in good),
            "by_type": {t: describe(o.duration for o in group) for t, group in sorted(by_type.items())},
            "models": sorted({o.model for o in good if o.model}),
        }

    def detect_performance_regressions(self, recent_runs: int = 3, baseline_runs: int = 10,
                                       min_baseline_runs: int = 3, min_change_percent: float = 10.0,
                                       noise_factor: float = 3.0, operation_type: str | None = None,
                                       since: float | datetime | None = None) -> list[RegressionAlert]:
        """Metrics that got worse between comparable runs (see :func:`find_regressions` for the rule)."""
        return find_regressions(self.operations(operation_type, since=since, include_failed=False),
                                recent_runs, baseline_runs, min_baseline_runs, min_change_percent, noise_factor)

    def optimization_effectiveness(self, operation_type: str | None = None) -> list[dict[str, Any]]:
        """For runs that differ only in plan: one row per plan with its median time and peak memory."""
        return effectiveness(self.operations(operation_type, include_failed=False))

    def export_csv(self, path: str | os.PathLike[str]) -> int:
        """Write every recorded operation as one CSV row; returns the number of rows. Raises OSError."""
        ops = self.operations()
        stages = sorted({k for o in ops for k in o.stage_seconds})
        versions = sorted({k for o in ops for k in o.versions})
        header = ["started", "operation_type", "operation_id", "success", "cancelled", "error", "duration_s",
                  "seconds_per_step", "memory_peak_mb", "gpu_memory_peak_mb", "cpu_percent", "model",
                  "model_fingerprint", "size", "frames", "steps", "plan", "hardware",
                  *(f"{s}_s" for s in stages), *(f"version_{v}" for v in versions)]
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            for o in ops:
                writer.writerow([datetime.fromtimestamp(o.started_at).isoformat(timespec="seconds"),
                                 o.operation_type, o.operation_id, o.success, o.cancelled, o.error or "",
                                 _round(o.duration), _round(o.seconds_per_step), _round(o.memory_peak_mb),
                                 _round(o.gpu_memory_peak_mb), _round(o.cpu_percent), o.model or "",
                                 o.model_fingerprint or "", o.size or "", o.frames or "", o.steps or "",
                                 o.plan_label, o.hardware or "",
                                 *(_round(o.stage_seconds.get(s)) for s in stages),
                                 *(o.versions.get(v) or "" for v in versions)])
        return len(ops)


# --- the app-wide monitor --------------------------------------------------------------------

_instance: PerformanceMonitor | None = None
_instance_lock = threading.Lock()


def history_db_path() -> Path:
    """WAN_COMPAT_HISTORY_DB if set, else config.yaml's ``history_db``."""
    env = os.environ.get(DB_ENV, "").strip()
    if env:
        return Path(env).expanduser().absolute()
    return _configured_db(os.environ.get("WAN_COMPAT_CONFIG"))


@functools.lru_cache(maxsize=8)
def _configured_db(config_env: str | None) -> Path:
    from core.config import load_config
    return Path(load_config().history_db)


def get_performance_monitor() -> PerformanceMonitor:
    """The app-wide monitor (a new one when the database path changed, e.g. in tests).

    >>> get_performance_monitor().get_performance_summary()["operations"]
    42
    """
    global _instance
    path = history_db_path()
    with _instance_lock:
        if _instance is None or _instance.db_path != path:
            if _instance is not None:
                _instance.close()
            _instance = PerformanceMonitor(path)
        return _instance


def track(operation_type: str, **context: Any) -> Any:
    """``get_performance_monitor().track(...)`` that never raises from the monitor's side.

    >>> with track("load", model="demo") as op:
    ...     op.set(plan=plan)
    """
    try:
        return get_performance_monitor().track(operation_type, **context)
    except Exception as exc:  # noqa: BLE001 - e.g. config.yaml unreadable: work goes on unrecorded
        log.warning("The performance monitor is unavailable: %s", exc)
        return _untracked()


@contextmanager
def _untracked() -> Iterator[Operation]:
    yield Operation("untracked")


# --- context: model, plan, hardware, versions -------------------------------------------------

def model_fingerprint(report: Any) -> str:
    """A 16-hex-digit hash of a model's component files and sizes (from a ModelReport).

    Two runs with the same fingerprint used the same files; a re-download of a changed
    file or another quantisation gives another fingerprint.
    """
    items = sorted((c.name, sorted(c.files), int(c.size_bytes)) for c in getattr(report, "components", ()))
    basis = items if items else [str(getattr(report, "path", report))]
    return sha256(json.dumps(basis).encode()).hexdigest()[:16]


def compact_plan(plan: Any) -> dict[str, Any]:
    """The values of a plan's choices: from an OptimizationPlan, its to_dict(), a dict or a str."""
    if plan is None:
        return {}
    if isinstance(plan, str):
        return {"name": plan}
    if hasattr(plan, "to_dict"):
        plan = plan.to_dict()
    if not isinstance(plan, dict):
        return {"name": str(plan)}
    out: dict[str, Any] = {}
    for key, value in plan.items():
        if key in _PLAN_DROP:
            continue
        if isinstance(value, dict) and "value" in value:
            value = value["value"]
        if value is not None:
            out[key] = value
    return out


def plan_label(plan: dict[str, Any]) -> str:
    """A short name for a compact plan, e.g. "cuda bf16, model offload, VAE tiles"."""
    if not plan:
        return "default"
    if set(plan) == {"name"}:
        return str(plan["name"])
    head = " ".join(str(plan[k]) for k in ("device", "precision") if k in plan)
    parts = [head] if head else []
    if "placement" in plan:
        parts.append(str(plan["placement"]).replace("_", " "))
    if plan.get("group_offload_type"):
        parts.append(f"{plan['group_offload_type']} groups".replace("_", " "))
    if plan.get("vae_tiling"):
        parts.append("VAE tiles")
    if plan.get("vae_slicing"):
        parts.append("VAE slices")
    if plan.get("attention_backend") not in (None, "native"):
        parts.append(f"attention {plan['attention_backend']}")
    if plan.get("text_encoder_on_cpu"):
        parts.append("text encoder on CPU")
    known = {"device", "precision", "vae_precision", "placement", "group_offload_type", "vae_tiling",
             "vae_slicing", "attention_backend", "text_encoder_on_cpu", "gpu_index", "device_map", "max_memory_mb"}
    parts += [f"{k}={v}" for k, v in sorted(plan.items()) if k not in known]
    return ", ".join(parts)


def hardware_summary(hardware: Any) -> str:
    """"2 CPUs, 8 GB RAM, no GPU" from a HardwareInfo (or its dict); a str is kept as it is."""
    if isinstance(hardware, str):
        return hardware
    data = hardware.to_dict() if hasattr(hardware, "to_dict") else dict(hardware)
    parts = []
    if data.get("cpu_count"):
        parts.append(f"{data['cpu_count']} CPUs")
    if data.get("ram_total_mb"):
        parts.append(f"{round(data['ram_total_mb'] / 1024)} GB RAM")
    gpus = Counter(f"{g['name']} ({round(g['total_mb'] / 1024)} GB)" for g in data.get("gpus") or [])
    parts += [f"{n}x {name}" for name, n in sorted(gpus.items())] or ["no GPU"]
    return ", ".join(parts)


@functools.lru_cache(maxsize=1)
def _this_machine() -> tuple[str, str | None]:
    """(hardware summary, driver version) of this computer, probed once (no torch)."""
    from core.hardware import probe
    hw = probe()
    return hardware_summary(hw), hw.driver_version


@functools.lru_cache(maxsize=1)
def _package_versions() -> dict[str, str | None]:
    """Versions from the installed packages' metadata (never by importing them)."""
    from importlib import metadata
    out: dict[str, str | None] = {"app": __version__, "python": platform.python_version()}
    for name in ("torch", "diffusers", "transformers", "accelerate"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _cuda_version() -> str | None:
    torch = sys.modules.get("torch")
    version = getattr(torch, "version", None) if torch is not None else None
    return (getattr(version, "cuda", None) or getattr(version, "hip", None)) if version is not None else None


def _torch_cuda() -> Any:
    """torch.cuda when the caller imported torch and CUDA is initialised, else None."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    try:
        cuda = torch.cuda
        return cuda if cuda.is_available() and cuda.is_initialized() else None
    except Exception:  # noqa: BLE001 - a half-broken torch
        return None


def _reset_torch_peak() -> None:
    cuda = _torch_cuda()
    if cuda is not None:
        try:
            for i in range(cuda.device_count()):
                cuda.reset_peak_memory_stats(i)
        except Exception:  # noqa: BLE001
            pass


def _torch_peak_mb() -> float | None:
    cuda = _torch_cuda()
    if cuda is None:
        return None
    try:
        return sum(cuda.max_memory_allocated(i) for i in range(cuda.device_count())) / MB
    except Exception:  # noqa: BLE001
        return None


class _Nvml:
    """This process's GPU memory from nvidia-ml-py; None where there is no NVIDIA driver."""

    def __init__(self) -> None:
        self._handles: list[Any] | None = None
        self._pynvml: Any = None
        self._failed = False

    def used_mb(self) -> float | None:
        if self._failed:
            return None
        try:
            if self._handles is None:
                import pynvml
                pynvml.nvmlInit()
                self._pynvml = pynvml
                self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
            pid, total = os.getpid(), 0
            for handle in self._handles:
                for proc in self._pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
                    if proc.pid == pid:
                        total += proc.usedGpuMemory or 0
            return total / MB
        except Exception:  # noqa: BLE001 - no driver, no library: no GPU figure
            self._failed = True
            return None


def _build_metrics(operation_id: str, op: _Open, duration: float, success: bool, cpu: float | None,
                   gpu: float | None, fields: dict[str, Any]) -> OperationMetrics:
    fields = dict(fields)
    report = fields.pop("report", None)
    model = fields.pop("model", None)
    fingerprint = fields.pop("model_fingerprint", None)
    if report is not None:
        model = getattr(report, "registry_id", None) or Path(str(getattr(report, "path", ""))).name or model
        fingerprint = fingerprint or model_fingerprint(report)
    size = fields.pop("size", None)
    width, height = fields.pop("width", None), fields.pop("height", None)
    if size and not (width and height):
        width, height = (int(v) for v in (size.lower().split("x") if isinstance(size, str) else size))
    frames, steps = fields.pop("frames", None), fields.pop("steps", None)
    num_frames, num_steps = fields.pop("num_frames", None), fields.pop("num_inference_steps", None)
    frames = num_frames if frames is None else frames
    steps = num_steps if steps is None else steps
    hardware = fields.pop("hardware", None)
    versions = {**_package_versions(), "cuda": _cuda_version()}
    if hardware is None:
        hardware, versions["driver"] = _this_machine()
    else:
        versions["driver"] = getattr(hardware, "driver_version", None) if not isinstance(hardware, (str, dict)) \
            else (hardware.get("driver_version") if isinstance(hardware, dict) else None)
        hardware = hardware_summary(hardware)
    versions.update(fields.pop("versions", None) or {})
    override = fields.pop("gpu_memory_peak_mb", None)
    error = fields.pop("error", None)
    return OperationMetrics(
        operation_id=operation_id, operation_type=op.operation_type, started_at=op.started_at,
        duration=duration, success=success, cancelled=bool(fields.pop("cancelled", False)),
        error=str(error) if error else None, memory_start_mb=op.rss_start, memory_peak_mb=op.rss_peak,
        gpu_memory_peak_mb=override if override is not None else gpu, cpu_percent=cpu,
        stage_seconds={str(k): float(v) for k, v in (fields.pop("stage_seconds", None) or {}).items()
                       if isinstance(v, (int, float))},
        seconds_per_step=_float(fields.pop("seconds_per_step", None)), model=None if model is None else str(model),
        model_fingerprint=fingerprint, width=_int(width), height=_int(height), frames=_int(frames),
        steps=_int(steps), plan=compact_plan(fields.pop("plan", None)), hardware=hardware, versions=versions,
        context=json.loads(json.dumps(fields, default=_jsonable)))


# --- storage helpers -------------------------------------------------------------------------

def _migrate(conn: sqlite3.Connection, warn: Any) -> None:
    """Bring the schema to SCHEMA_VERSION; two processes doing it at once is safe (BEGIN IMMEDIATE)."""
    if _schema_version(conn) == SCHEMA_VERSION:
        return
    conn.execute("BEGIN IMMEDIATE")      # one migrator at a time; the others wait, then see it done
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        version = _schema_version(conn)
        if version > SCHEMA_VERSION:
            warn(f"The performance history was written by a newer Wan Compat (schema {version}, this one knows "
                 f"{SCHEMA_VERSION}); runs are still recorded.")
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


def _while_busy(fn: Any, *args: Any) -> Any:
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


def _is_damage(exc: BaseException, path: Path) -> bool:
    """A damaged or unreadable file (worth moving aside), not a busy or full disk."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")):
        return True
    text = str(exc).lower()
    if "not a database" in text or "malformed" in text:
        return True
    exists = path.exists()
    if exists and name.startswith(("SQLITE_CANTOPEN", "SQLITE_READONLY", "SQLITE_PERM")):
        return True
    return isinstance(exc, IsADirectoryError) or (exists and path.is_dir())


def _healthy(path: Path) -> bool:
    try:
        with closing(sqlite3.connect(path, timeout=BUSY_TIMEOUT_S)) as conn:
            return conn.execute("PRAGMA quick_check").fetchone()[0] == "ok" and _schema_version(conn) > 0
    except (sqlite3.Error, OSError):
        return False


def _to_row(m: OperationMetrics) -> tuple[Any, ...]:
    return (m.operation_id, m.operation_type, m.started_at, m.duration, int(m.success), int(m.cancelled), m.error,
            m.memory_start_mb, m.memory_peak_mb, m.gpu_memory_peak_mb, m.cpu_percent, m.seconds_per_step,
            json.dumps(m.stage_seconds), m.model, m.model_fingerprint, m.width, m.height, m.frames, m.steps,
            json.dumps(m.plan, sort_keys=True, default=_jsonable), m.hardware, json.dumps(m.versions, sort_keys=True),
            json.dumps(m.context, sort_keys=True, default=_jsonable))


def _from_row(row: Sequence[Any]) -> OperationMetrics:
    r = dict(zip(_COLUMNS, row))
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


def _jsonable(value: Any) -> Any:
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    return str(value)


def _int(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def _float(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def _round(value: float | None, digits: int = 4) -> float | str:
    return "" if value is None else round(value, digits)


# --- statistics ------------------------------------------------------------------------------

def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-th percentile with linear interpolation between ranks (numpy's default).

    >>> percentile([1, 2, 3, 4], 95)
    3.85
    """
    if not sorted_values:
        raise ValueError("percentile of no values")
    pos = (len(sorted_values) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def describe(values: Iterable[float | None]) -> dict[str, Any]:
    """``{"count", "mean", "median", "p95", "min", "max"}`` of the values that are not None."""
    xs = sorted(float(v) for v in values if v is not None)
    if not xs:
        return {"count": 0, "mean": None, "median": None, "p95": None, "min": None, "max": None}
    return {"count": len(xs), "mean": statistics.fmean(xs), "median": statistics.median(xs),
            "p95": percentile(xs, 95), "min": xs[0], "max": xs[-1]}


def _split_plan(plan: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(the part of a plan that defines comparability, as JSON; the details)."""
    key = {k: v for k, v in plan.items() if k not in PLAN_DETAILS}
    return json.dumps(key, sort_keys=True, default=str), {k: plan[k] for k in PLAN_DETAILS if k in plan}


def comparable_key(o: OperationMetrics, with_plan: bool = True) -> tuple[Any, ...]:
    """Runs with the same key did the same work on the same machine with the same memory plan."""
    base = (o.operation_type, o.model_fingerprint or o.model, o.width, o.height, o.frames, o.steps, o.hardware)
    return base + (_split_plan(o.plan)[0],) if with_plan else base


def find_regressions(ops: Sequence[OperationMetrics], recent_runs: int = 3, baseline_runs: int = 10,
                     min_baseline_runs: int = 3, min_change_percent: float = 10.0,
                     noise_factor: float = 3.0) -> list[RegressionAlert]:
    """Alerts for metrics that got worse, from successful runs in time order.

    The rule, per group of comparable runs (:func:`comparable_key`) and per metric
    (duration, seconds per step, peak RAM, peak GPU memory): the *current* window is the
    last ``recent_runs`` runs, the *baseline* the up to ``baseline_runs`` runs before them
    (at least ``min_baseline_runs``). With ``b`` the baseline median, ``s`` its spread
    (1.4826 x the median absolute deviation, a standard deviation that outliers do not
    inflate) and ``c`` the current median, it is a regression when

        c - b > max(min_change_percent% of b, noise_factor x s).

    The median of the current window means at least two of three recent runs must be
    worse, so one noisy run never alerts. Confidence is the share of (current, baseline)
    pairs in which the current run was worse (ties count half): "high" at >= 0.95 with at
    least 5 baseline and 3 current runs, "medium" at >= 0.8, else "low".
    """
    groups: dict[tuple[Any, ...], list[OperationMetrics]] = {}
    for o in ops:
        if o.success:
            groups.setdefault(comparable_key(o), []).append(o)
    alerts = []
    for runs in groups.values():
        runs.sort(key=lambda o: o.started_at)
        for metric in METRICS:
            have = [o for o in runs if o.value(metric) is not None]
            if len(have) < recent_runs + min_baseline_runs:
                continue
            current_ops = have[-recent_runs:]
            baseline_ops = have[:-recent_runs][-baseline_runs:]
            alert = _compare(metric, baseline_ops, current_ops, min_change_percent, noise_factor)
            if alert is not None:
                alerts.append(alert)
    return sorted(alerts, key=lambda a: -a.change_percent)


def _compare(metric: str, baseline_ops: list[OperationMetrics], current_ops: list[OperationMetrics],
             min_change_percent: float, noise_factor: float) -> RegressionAlert | None:
    base = [o.value(metric) for o in baseline_ops]
    cur = [o.value(metric) for o in current_ops]
    b, c = statistics.median(base), statistics.median(cur)
    if b <= 0:
        return None
    spread = 1.4826 * statistics.median(abs(x - b) for x in base)
    threshold = max(b * min_change_percent / 100, noise_factor * spread)
    if c - b <= threshold:
        return None
    pairs = [(1.0 if x > y else 0.5 if x == y else 0.0) for x in cur for y in base]
    confidence = sum(pairs) / len(pairs)
    label = ("high" if confidence >= 0.95 and len(base) >= 5 and len(cur) >= 3
             else "medium" if confidence >= 0.8 else "low")
    last = current_ops[-1]
    return RegressionAlert(
        metric_name=metric, operation_type=last.operation_type, model=last.model, size=last.size,
        frames=last.frames, steps=last.steps, plan=plan_label({k: v for k, v in last.plan.items()
                                                               if k not in PLAN_DETAILS}),
        baseline=b, current=c, change_percent=100 * (c - b) / b, threshold_percent=100 * threshold / b,
        baseline_runs=len(base), current_runs=len(cur), confidence=round(confidence, 3),
        confidence_label=label, what_changed=what_changed(baseline_ops, current_ops))


def what_changed(before: Sequence[OperationMetrics], after: Sequence[OperationMetrics]) -> dict[str, tuple[Any, Any]]:
    """Versions (app, torch, CUDA, driver, diffusers, ...) and plan details whose most common
    value differs between two sets of runs: ``{name: (before, after)}``."""
    def facts(o: OperationMetrics) -> dict[str, Any]:
        return {**o.versions, **{f"plan.{k}": v for k, v in _split_plan(o.plan)[1].items()}}

    def mode(runs: Sequence[OperationMetrics], key: str) -> Any:
        return Counter(json.dumps(facts(o).get(key), default=str) for o in runs).most_common(1)[0][0]

    keys = sorted({k for o in [*before, *after] for k in facts(o)})
    out = {}
    for key in keys:
        a, b = mode(before, key), mode(after, key)
        if a != b:
            out[key] = (json.loads(a), json.loads(b))
    return out


def effectiveness(ops: Sequence[OperationMetrics]) -> list[dict[str, Any]]:
    """For groups of successful runs that differ only in plan (two plans or more), one row per
    plan: runs, median duration, seconds per step, peak RAM and GPU memory, and time relative
    to the fastest plan of the group (1.0 = the fastest)."""
    groups: dict[tuple[Any, ...], dict[str, list[OperationMetrics]]] = {}
    for o in ops:
        if o.success:
            plan = json.dumps(o.plan, sort_keys=True, default=str)
            groups.setdefault(comparable_key(o, with_plan=False), {}).setdefault(plan, []).append(o)
    rows: list[dict[str, Any]] = []
    for plans in groups.values():
        if len(plans) < 2:
            continue
        group_rows = []
        for runs in plans.values():
            first = runs[-1]
            group_rows.append({
                "operation_type": first.operation_type, "model": first.model, "size": first.size,
                "frames": first.frames, "steps": first.steps, "plan": first.plan_label, "plan_settings": first.plan,
                "runs": len(runs), "median_duration": statistics.median(o.duration for o in runs),
                "median_seconds_per_step": describe(o.seconds_per_step for o in runs)["median"],
                "median_memory_peak_mb": describe(o.memory_peak_mb for o in runs)["median"],
                "median_gpu_memory_peak_mb": describe(o.gpu_memory_peak_mb for o in runs)["median"]})
        fastest = min(r["median_duration"] for r in group_rows) or 1e-9
        for r in sorted(group_rows, key=lambda r: r["median_duration"]):
            r["time_vs_fastest"] = r["median_duration"] / fastest
            rows.append(r)
    return rows


def _fmt(metric: str, value: float) -> str:
    if metric.endswith("_mb"):
        return f"{value / 1024:.2f} GB" if value >= 1024 else f"{value:.0f} MB"
    return f"{value:.2f} s" if value < 100 else f"{value:.0f} s"


def render_text(db_path: str | os.PathLike[str], summary: dict[str, Any], alerts: Sequence[RegressionAlert],
                rows: Sequence[dict[str, Any]]) -> str:
    """What ``python -m core perf`` prints: the summary, the alerts, the effectiveness table."""
    if not summary["operations"]:
        return (f"No runs recorded yet in {db_path}.\n"
                "Every load and generation (app or command line) is recorded as it happens.")
    lines = [f"Performance history: {db_path}",
             f"  {summary['operations']} runs: {summary['succeeded']} succeeded, {summary['failed']} failed, "
             f"{summary['cancelled']} cancelled"]
    for kind, stats in summary["by_type"].items():
        runs = f"{stats['count']} run{'s' if stats['count'] != 1 else ''}"
        lines.append(f"  {kind}: {runs}, median {_fmt('duration', stats['median'])} "
                     f"(p95 {_fmt('duration', stats['p95'])}, min {_fmt('duration', stats['min'])}, "
                     f"max {_fmt('duration', stats['max'])})")
    for label, key, metric in (("seconds per step", "seconds_per_step_stats", "duration"),
                               ("peak RAM", "memory_stats", "memory_peak_mb"),
                               ("peak GPU memory", "gpu_memory_stats", "gpu_memory_peak_mb")):
        stats = summary[key]
        if stats["count"]:
            lines.append(f"  {label}: median {_fmt(metric, stats['median'])} (p95 {_fmt(metric, stats['p95'])}, "
                         f"max {_fmt(metric, stats['max'])})")
    lines.append("")
    if alerts:
        lines.append(f"Regressions ({len(alerts)}):")
        lines += [f"  - {a.message}" for a in alerts]
    else:
        lines.append("No regressions: comparable runs are not slower or larger than before "
                     "(an alert needs 3 earlier and 3 recent comparable runs).")
    if rows:
        lines += ["", "Optimization effectiveness (same model, size, frames, steps and machine; different plans):"]
        table = [("model", "size", "frames", "steps", "plan", "runs", "median", "vs fastest", "s/step", "peak RAM",
                  "peak GPU")]
        for r in rows:
            table.append((str(r["model"] or "-"), r["size"] or "-", str(r["frames"] or "-"), str(r["steps"] or "-"),
                          r["plan"], str(r["runs"]), _fmt("duration", r["median_duration"]),
                          f"{r['time_vs_fastest']:.2f}x",
                          "-" if r["median_seconds_per_step"] is None else _fmt("duration", r["median_seconds_per_step"]),
                          "-" if r["median_memory_peak_mb"] is None else _fmt("mb", r["median_memory_peak_mb"]),
                          "-" if r["median_gpu_memory_peak_mb"] is None else _fmt("mb", r["median_gpu_memory_peak_mb"])))
        widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
        lines += ["  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in table]
    return "\n".join(lines)
