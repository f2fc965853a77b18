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

``core.run.load`` records every load ("load") and generation ("generation") by itself.

The app-wide monitor records into the configuration's ``history_db`` and records nothing
when its ``record_history`` is False (``WAN_COMPAT_MONITOR=off``; see core.config): pass an
``AppConfig`` to :func:`get_performance_monitor`, or it uses ``core.config.current()``,
read once per process. ``monitor.enabled = False`` switches one monitor off.

Recording never breaks the work it measures: a monitor error becomes a warning (logged, and
kept in ``monitor.warnings``). A damaged or unreadable database file is renamed
``history.db.corrupt-<time>`` and a new one is started. torch is never imported here: GPU
memory comes from torch only when the caller already imported it and CUDA is in use, else
from nvidia-ml-py, else it is None.

This module is the recorder (``PerformanceMonitor``, ``Operation``) and the app-wide
accessors; its parts live beside it, and every name below is importable from here:
``core.monitor.context`` (model fingerprint, plan label, hardware, versions, GPU peaks),
``core.monitor.store`` (``OperationMetrics`` and the SQLite file: schema, migrations,
rows, damage) and ``core.monitor.stats`` (summaries, regressions, effectiveness, the
``perf`` report).
"""

from __future__ import annotations

import csv
import itertools
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from core.config import HISTORY_DB_ENV, MONITOR_ENV, AppConfig
from core.config import current as current_config
from core.monitor.context import (
    MB,
    Nvml,
    compact_plan,
    cuda_version,
    hardware_summary,
    model_fingerprint,
    package_versions,
    plan_label,
    reset_torch_peak,
    this_machine,
    torch_cuda,
    torch_peak_mb,
)
from core.monitor.stats import (
    METRICS,
    PLAN_DETAILS,
    RegressionAlert,
    comparable_key,
    describe,
    effectiveness,
    find_regressions,
    percentile,
    render_text,
    what_changed,
)
from core.monitor.store import (
    BUSY_TIMEOUT_S,
    COLUMNS,
    INSERT_SQL,
    MIGRATIONS,
    SCHEMA_VERSION,
    OperationMetrics,
    SchemaMismatch,
    connect,
    from_row,
    is_damage,
    jsonable,
    move_aside,
    prepare,
    to_row,
    while_busy,
)

__all__ = [  # what other code imports from core.monitor; the three modules above hold the parts
    "BUSY_TIMEOUT_S", "DB_ENV", "GENERATION", "LOAD", "MB", "METRICS", "MIGRATIONS", "PLAN_DETAILS", "SCHEMA_VERSION",
    "SWITCH_ENV", "Operation", "OperationMetrics", "PerformanceMonitor", "RegressionAlert", "comparable_key",
    "compact_plan", "describe", "effectiveness", "find_regressions", "get_performance_monitor", "hardware_summary",
    "history_db_path", "model_fingerprint", "percentile", "plan_label", "render_text", "track", "what_changed",
]

log = logging.getLogger(__name__)

DB_ENV = HISTORY_DB_ENV                      # read by core.config when it loads, nowhere else
SWITCH_ENV = MONITOR_ENV
FUTURE_SLACK_S = 3600.0                     # a run dated more than this ahead of now: the clock was wrong
LOAD, GENERATION = "load", "generation"      # the operation types core.run.load records


# --- an open operation -------------------------------------------------------------------

class Operation:
    """An open operation inside ``monitor.track(...)``: add facts before it closes.

    >>> with monitor.track("generation", model="m") as op:
    ...     op.set(seconds_per_step=0.5, stage_seconds={"denoise": 10.0})
    ...     op.success = False          # e.g. the result says it failed; default: True unless it raised
    >>> op.metrics.success
    False
    """

    def __init__(self, operation_id: str, monitor: PerformanceMonitor | None = None) -> None:
        self.operation_id = operation_id
        self.success: bool | None = None
        self.metrics: OperationMetrics | None = None
        self.extra: dict[str, Any] = {}
        self._monitor = monitor

    def set(self, **values: Any) -> None:
        """Context or metrics to record (the same names as ``end_operation``'s keywords)."""
        self.extra.update(values)

    def ram_peak_mb(self) -> float | None:
        """The process's RAM peak since the operation started (sampled, and measured now), or None
        when nothing is recorded. A result that reports this number and gives it back as
        ``set(memory_peak_mb=...)`` shows the history's very number."""
        return self._monitor.ram_peak_mb(self.operation_id) if self._monitor is not None else None


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
        self.unusable: str | None = None      # why this version cannot use the file (SchemaMismatch), else None
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
        self._nvml = Nvml()
        self._ids = itertools.count(1)

    # --- switches ---------------------------------------------------------------------------

    @property
    def enabled(self) -> bool:
        """False after ``monitor.enabled = False`` (or built from a config with ``record_history`` off)."""
        return self._enabled

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
            reset_torch_peak()
        op.t0 = time.perf_counter()
        return operation_id

    def ram_peak_mb(self, operation_id: str) -> float | None:
        """An open operation's RAM peak so far (the samples and one taken now); None when not recording."""
        rss = self._rss_mb()
        with self._lock:
            op = self._open.get(operation_id)
            if op is None or not op.recording:
                return None
            op.observe(rss, None)
            return op.rss_peak

    def end_operation(self, operation_id: str, success: bool, **extra: Any) -> OperationMetrics:
        """Close an operation, store it and return its metrics.

        Keywords (here or in ``start_operation``/``track``): ``model``, ``model_fingerprint``
        or ``report`` (a ModelReport, giving both), ``width``, ``height``, ``frames``,
        ``steps``, ``plan`` (an OptimizationPlan, its ``to_dict()`` or any dict/str),
        ``hardware`` (a HardwareInfo or a str), ``stage_seconds``, ``seconds_per_step``,
        ``cancelled``, ``error``, ``gpu_memory_peak_mb`` and ``memory_peak_mb`` (override the measurement),
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
        gpu = torch_peak_mb()
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
        op = Operation(operation_id or f"{operation_type}-{os.getpid()}-{next(self._ids)}-{time.time_ns()}", self)
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
            gpu = None if torch_cuda() is not None else self._nvml.used_mb()
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
        """The monitor's connection (call with ``_db_lock`` held). It stays open (see ``connect``)."""
        if self._conn is None or self._conn_pid != os.getpid():
            self._conn, self._conn_pid = connect(self.db_path), os.getpid()
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
                while_busy(self._prepare)
                self._ready = True
                return True
            except (sqlite3.Error, OSError) as exc:
                self._disconnect()
                if isinstance(exc, SchemaMismatch):        # a newer version's file: the truth, left alone
                    self.unusable = exc.describe(self.db_path)
                    self._warn(self.unusable)
                    return False
                if attempt == 1 and is_damage(exc, self.db_path) and self._move_aside(exc):
                    continue
                self._warn(f"The performance history {self.db_path} cannot be used ({exc}); "
                           "this run is not recorded.")
                return False
        return False

    def _prepare(self) -> None:
        prepare(self._connection(), self._warn)

    def _move_aside(self, reason: BaseException) -> bool:
        """``move_aside`` for this monitor's file; what it says goes to ``warnings``."""
        return move_aside(self.db_path, reason, self._warn)

    def _store(self, metrics: OperationMetrics) -> None:
        row = to_row(metrics)
        with self._db_lock:
            for attempt in (1, 2):
                if not self._ensure_ready(create=True):
                    return
                try:
                    while_busy(self._execute, INSERT_SQL, row)
                    return
                except sqlite3.Error as exc:
                    self._disconnect()
                    if attempt == 1 and is_damage(exc, self.db_path) and self._move_aside(exc):
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
        sql = (f"SELECT {', '.join(COLUMNS)} FROM operations" + (f" WHERE {' AND '.join(where)}" if where else "")
               + " ORDER BY id")      # insertion order: a clock that was ahead cannot reorder the runs
        with self._db_lock:
            for attempt in (1, 2):
                if not self._ensure_ready(create=False):
                    return []
                try:
                    ops = [from_row(r) for r in while_busy(self._execute, sql, args)]
                    ahead = sum(o.started_at > time.time() + FUTURE_SLACK_S for o in ops)
                    if ahead:
                        self._warn(f"{ahead} run(s) in the performance history are dated in the future (the "
                                   "clock was ahead when they were recorded); they are kept in the order they "
                                   "were recorded.")
                    return ops
                except sqlite3.Error as exc:
                    self._disconnect()
                    if attempt == 1 and is_damage(exc, self.db_path) and self._move_aside(exc):
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


# --- one operation's record ----------------------------------------------------------------

def _build_metrics(operation_id: str, op: _Open, duration: float, success: bool, cpu: float | None,
                   gpu: float | None, fields: dict[str, Any]) -> OperationMetrics:
    """One closed operation's record: its measurements and the caller's keywords (see end_operation)."""
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
    versions = {**package_versions(), "cuda": cuda_version()}
    if hardware is None:
        hardware, versions["driver"] = this_machine()
    else:
        versions["driver"] = getattr(hardware, "driver_version", None) if not isinstance(hardware, (str, dict)) \
            else (hardware.get("driver_version") if isinstance(hardware, dict) else None)
        hardware = hardware_summary(hardware)
    versions.update(fields.pop("versions", None) or {})
    override = fields.pop("gpu_memory_peak_mb", None)
    ram = fields.pop("memory_peak_mb", None)
    error = fields.pop("error", None)
    return OperationMetrics(
        operation_id=operation_id, operation_type=op.operation_type, started_at=op.started_at,
        duration=duration, success=success, cancelled=bool(fields.pop("cancelled", False)),
        error=str(error) if error else None, memory_start_mb=op.rss_start,
        memory_peak_mb=float(ram) if isinstance(ram, (int, float)) else op.rss_peak,
        gpu_memory_peak_mb=override if override is not None else gpu, cpu_percent=cpu,
        stage_seconds={str(k): float(v) for k, v in (fields.pop("stage_seconds", None) or {}).items()
                       if isinstance(v, (int, float))},
        seconds_per_step=_float(fields.pop("seconds_per_step", None)), model=None if model is None else str(model),
        model_fingerprint=fingerprint, width=_int(width), height=_int(height), frames=_int(frames),
        steps=_int(steps), plan=compact_plan(fields.pop("plan", None)), hardware=hardware, versions=versions,
        context=json.loads(json.dumps(fields, default=jsonable)))


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


# --- the app-wide monitor --------------------------------------------------------------------

_instance: PerformanceMonitor | None = None
_instance_key: tuple[Path, bool] | None = None
_instance_lock = threading.Lock()


def history_db_path(config: AppConfig | None = None) -> Path:
    """The history database of ``config`` (default: this process's, ``core.config.current()``)."""
    return Path((config or current_config()).history_db)


def get_performance_monitor(config: AppConfig | None = None) -> PerformanceMonitor:
    """The app-wide monitor for ``config`` (default: this process's configuration).

    A new one when the database or ``record_history`` changed (e.g. in tests).

    >>> get_performance_monitor().get_performance_summary()["operations"]
    42
    """
    global _instance, _instance_key
    config = config or current_config()
    key = (Path(config.history_db), config.record_history)
    with _instance_lock:
        if _instance is None or _instance_key != key:
            if _instance is not None:
                _instance.close()
            _instance, _instance_key = PerformanceMonitor(key[0], enabled=key[1]), key
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
