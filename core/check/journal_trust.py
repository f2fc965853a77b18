"""Whether a Fix journal found in a model folder may be acted on: every path it names stays inside.

A model folder can arrive with ``.wan_compat_backup/<time>/journal.json`` in it (a download,
a zip, a shared drive). Finishing or undoing a fix writes, renames and deletes at the paths
the journal names, so a journal is trusted only when each of them is relative, has no
``..``, is not inside the backup folder, and (for a folder on disk) still resolves inside the
model folder after following links. Used by Model Check (a ``journal_foreign`` finding) and
by Fix before it finishes or undoes anything.

Usage::

    from core.check.journal_trust import journal_problem
    problem = journal_problem(journal_dict, root="/models/Wan2.1-T2V-1.3B")
    if problem:
        print("not ours:", problem)
"""

from __future__ import annotations

import os
from typing import Any

BACKUP_DIR = ".wan_compat_backup"


def unsafe_path(rel: Any, root: str | os.PathLike[str] | None = None) -> str | None:
    """Why ``rel`` may not be written from a journal, or None when it stays inside ``root``.

    >>> unsafe_path("vae/config.json"), unsafe_path("../notes.txt"), unsafe_path("/etc/passwd")
    (None, 'it leaves the model folder', 'it is an absolute path')
    """
    if not isinstance(rel, str) or not rel or "\0" in rel or len(rel) > 4096:
        return "it is not a path"
    clean = rel.replace("\\", "/")
    if clean.startswith("/") or (len(clean) > 1 and clean[1] == ":") or os.path.isabs(rel):
        return "it is an absolute path"
    parts = clean.split("/")
    if ".." in parts:
        return "it leaves the model folder"
    if parts[0] == BACKUP_DIR:
        return "it points into the backups"
    if root is not None:
        base = os.path.realpath(root)
        target = os.path.realpath(os.path.join(base, *parts))
        if os.path.commonpath([base, target]) != base:
            return "it leads outside the model folder through a link"
    return None


def journal_problem(journal: Any, root: str | os.PathLike[str] | None = None) -> str | None:
    """A sentence saying why ``journal`` must not be executed in ``root``, or None when it may be.

    >>> journal_problem({"state": "applying", "files": [{"path": "../x", "before": None, "states": []}]})
    'it names ../x, and it leaves the model folder'
    """
    if not isinstance(journal, dict):
        return "it is not a journal"
    files, moves = journal.get("files", []), journal.get("moves", [])
    folders = journal.get("new_folders", [])
    if not isinstance(files, list) or not isinstance(moves, list) or not isinstance(folders, list):
        return "its lists of files are malformed"
    paths: list[Any] = []
    for entry in files:
        if not isinstance(entry, dict) or not isinstance(entry.get("states", []), list):
            return "one of its file entries is malformed"
        paths.append(entry.get("path"))
    for move in moves:
        if not (isinstance(move, list) and len(move) == 2):
            return "one of its renames is malformed"
        paths.extend(move)
    paths.extend(folders)
    for rel in paths:
        why = unsafe_path(rel, root)
        if why:
            return f"it names {str(rel)[:80]}, and {why}"
    return None
