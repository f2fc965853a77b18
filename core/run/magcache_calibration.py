"""MagCache ratios per model: measured once by a calibration run, kept in the history database, reused.

MagCache skips a step when the transformer's output residual is predicted to change little;
the prediction uses each step's magnitude ratio (mean of |residual_t| / |residual_t-1|), which
depends on the checkpoint. diffusers measures them with ``MagCacheConfig(calibrate=True)`` (every
step computed) and logs them at the end of the run; this module catches that log, averages the
cond and uncond passes, and stores the ratios with the model's fingerprint (the same files give
the same fingerprint) and the expert (``transformer`` / ``transformer_2`` of A14B models)::

    from core.run.magcache_calibration import stored_for, store, RatioCapture
    stored_for(report)                 # {"transformer": Calibration(steps=20, ratios=(1.0, 0.98, ...)), ...}
    with RatioCapture() as capture:    # around the pipeline call of a calibration run
        pipe(...)
    store(report, "transformer", capture.results[0], steps=20)

The table (``magcache_calibrations``) lives in the history database (``history_db``) beside
``operations``; it is created on first use, and a database that cannot be written only means
the next run calibrates again.
"""

from __future__ import annotations

import ast
import contextlib
import io
import logging
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.monitor.context import model_fingerprint

TABLE_SQL = """CREATE TABLE IF NOT EXISTS magcache_calibrations (
    model_fingerprint TEXT NOT NULL,      -- core.monitor.context.model_fingerprint
    expert TEXT NOT NULL,                 -- transformer | transformer_2
    steps INTEGER NOT NULL,               -- the expert's steps in the calibration run
    ratios TEXT NOT NULL,                 -- JSON list, one magnitude ratio per step
    model TEXT,
    created_at REAL NOT NULL,             -- Unix time
    PRIMARY KEY (model_fingerprint, expert))"""
#: diffusers' MagCache logger and the message it logs at the end of a calibration run.
LOGGER = "diffusers.hooks.mag_cache"
PREFIX = "MagCache Calibration Results:"


@dataclass(frozen=True)
class Calibration:
    """One expert's stored ratios."""

    expert: str
    steps: int
    ratios: tuple[float, ...]
    created_at: float
    model: str | None = None


def _db(db: str | Path | None) -> Path:
    if db is not None:
        return Path(db)
    from core.monitor import history_db_path
    return history_db_path()


def _fingerprint(model: Any) -> str:
    return model if isinstance(model, str) else model_fingerprint(model)


def stored_for(model: Any, db: str | Path | None = None) -> dict[str, Calibration]:
    """expert -> the stored calibration of ``model`` (a ModelReport or a fingerprint); {} when none.

    Never creates the database: a model never calibrated, or no history yet, gives {}.
    """
    path = _db(db)
    if not path.exists():
        return {}
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as conn:
            rows = conn.execute("SELECT expert, steps, ratios, created_at, model FROM magcache_calibrations "
                                "WHERE model_fingerprint = ?", (_fingerprint(model),)).fetchall()
    except sqlite3.Error:      # no table yet, or the file is busy or damaged: calibrate again
        return {}
    out = {}
    for expert, steps, ratios, created, name in rows:
        try:
            values = tuple(float(v) for v in ast.literal_eval(ratios))
        except (ValueError, SyntaxError, TypeError):
            continue
        if values and int(steps) > 0:
            out[str(expert)] = Calibration(str(expert), int(steps), values, float(created), name)
    return out


def store(model: Any, expert: str, ratios: Sequence[float], steps: int, db: str | Path | None = None) -> bool:
    """Keep ``ratios`` for ``model``'s ``expert`` (replacing an older calibration); False if it cannot be written."""
    path = _db(db)
    name = None if isinstance(model, str) else (getattr(model, "registry_id", None) or Path(str(model.path)).name)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        from core.monitor.store import connect
        with contextlib.closing(connect(path)) as conn:
            conn.execute(TABLE_SQL)
            conn.execute("INSERT OR REPLACE INTO magcache_calibrations VALUES (?, ?, ?, ?, ?, ?)",
                         (_fingerprint(model), expert, int(steps), repr([round(float(r), 6) for r in ratios]),
                          name, time.time()))
        return True
    except (sqlite3.Error, OSError):
        return False


def combine(passes: Sequence[Sequence[float]]) -> list[float]:
    """One ratio per step from the cond and uncond passes (their mean; diffusers keeps one list for both)."""
    length = min(len(p) for p in passes)
    return [sum(p[i] for p in passes) / len(passes) for i in range(length)]


class _Catch(logging.Handler):
    def __init__(self, results: list[list[float]]) -> None:
        super().__init__(logging.INFO)
        self.results = results

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if text.startswith(PREFIX):
            with contextlib.suppress(ValueError, SyntaxError):
                self.results.append([float(v) for v in ast.literal_eval(text[len(PREFIX):].strip())])


class RatioCapture:
    """Catch diffusers' MagCache calibration results during a run (in the order the passes finish).

    diffusers also prints them; that print is kept off the console (other output passes through).
    """

    def __init__(self) -> None:
        self.results: list[list[float]] = []
        self._handler = _Catch(self.results)
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> RatioCapture:
        logger = logging.getLogger(LOGGER)
        saved = (logger.level, logger.propagate)
        logger.addHandler(self._handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False

        def restore() -> None:
            logger.removeHandler(self._handler)
            logger.setLevel(saved[0])
            logger.propagate = saved[1]
        self._stack.callback(restore)
        self._stack.enter_context(_quiet_calibration_print())
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stack.close()


@contextlib.contextmanager
def _quiet_calibration_print() -> Iterator[None]:
    """Drop diffusers' "[MagCache] Calibration Complete ..." print (two lines) and pass the rest on."""
    import sys
    real = sys.stdout

    class _Filter(io.TextIOBase):
        dropping = False          # inside the print: its blank lines go too
        pending = False           # the list of ratios is still to come

        def write(self, text: str) -> int:
            if "[MagCache]" in text:
                self.dropping = self.pending = True
            elif self.dropping and not text.strip():
                pass
            elif self.dropping and self.pending and text.lstrip().startswith("["):
                self.pending = False
            else:
                self.dropping = False
                return real.write(text) if real is not None else len(text)
            return len(text)

        def flush(self) -> None:
            if real is not None:
                real.flush()

    sys.stdout = _Filter()
    try:
        yield
    finally:
        sys.stdout = real
