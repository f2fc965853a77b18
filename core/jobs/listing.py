"""``python -m core jobs [--json]``: the generation jobs in the history database, as people and scripts read them.

The objects are those of the app's ``/jobs`` API: ``{"id", "state", "percent", "message",
"output_path", "error"}``, running and queued jobs first (in queue order), then the finished
ones, newest first.
"""

from __future__ import annotations

import json
from typing import Any

from core.jobs.store import Job, JobStore


def jobs_text(jobs: list[Job]) -> str:
    """One line per job: id, state, percent, what it is, and its video or its sentence."""
    if not jobs:
        return "No generation jobs yet: the app's Generate tab (Generate, or Add to queue) and its /enqueue API add them."
    lines = []
    for job in jobs:
        done = f"{job.percent:5.1f}%" if job.state == "running" else " " * 6
        tail = job.output_path or job.error or job.message
        lines.append(f"{job.id:>5}  {job.state:<11} {done}  {job.label or job.model}")
        if tail:
            lines.append(f"{'':>5}  {tail}")
    return "\n".join(lines)


def list_jobs(as_json: bool, store: JobStore | None = None) -> tuple[str, int]:
    """The text (or JSON array) to print, and the exit code (2: the database cannot be read)."""
    import sqlite3
    store = store or JobStore()
    try:
        jobs = store.list()
    except (sqlite3.Error, OSError) as exc:
        return (f"The job list in {store.db_path} cannot be read ({exc}). Point config.yaml's history_db (or "
                "WAN_COMPAT_HISTORY_DB) at the app's history database, e.g. data/history.db."), 2
    finally:
        store.close()
    if as_json:
        payload: list[dict[str, Any]] = [job.to_api() for job in jobs]
        return json.dumps(payload, indent=2), 0
    return jobs_text(jobs), 0
