"""Carrying out a FixPlan in place: backups, the journal, the lock, recovery and undo.

:class:`FixResult` is what executing returns (``core.fix.FixPlan.execute`` and
:func:`undo_fix`); :func:`is_ready` says whether a report is a loadable diffusers model.

Safety: before anything changes, every file that will be replaced (small files only;
weights are never copied, only renamed) is copied to ``.wan_compat_backup/<time>/files/``
inside the model folder, beside a ``journal.json`` holding the planned contents. Every write
is atomic (temporary file, fsync, rename). If the process dies half-way, the next plan of
that folder is ``finish_interrupted_fix``, which brings it to exactly the planned state
(``undo_fix`` restores the backups instead). A dry run only reads. One fix or undo at a
time per folder (:class:`core.fix.lock.FixLock`); progress is sent as ProgressEvents of
stage ``"fix"``. Usage (``FixPlan.execute`` calls these)::

    result = execute_actions(root, plan.actions, plan.preconditions, Progress(callback))
    undo_fix(root).fixes_applied       # ['Restored 2 file(s) from .wan_compat_backup/...']

Test hook: ``WAN_COMPAT_FIX_PAUSE_AFTER=<point>`` makes ``execute`` print
``WAN_COMPAT_FIX_PAUSED <point>`` to stderr and sleep (``WAN_COMPAT_FIX_PAUSE_SECONDS``,
default 60) at that point, so a test can SIGKILL it there. Points: ``backup`` (backups
written, journal not yet committed), ``N`` (after action N; ``0`` = journal committed, no
action yet) and ``temp:N`` (inside action N's first write, temporary file complete, not yet
renamed).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import posixpath
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from core.atomic import atomic_rename, atomic_write_bytes, fsync_dir, temp_path_for
from core.check.filesource import BACKUP_DIR, JOURNAL_NAME
from core.check.journal_trust import journal_problem, unsafe_path
from core.errors import WanError, explain
from core.fix.lock import LOCK_NAME, WAIT_SECONDS, FixLock
from core.fix.parts import FixAction, FixResult, inspect_path, is_ready
from core.progress import AnyCallback, Progress

__all__ = ["FixResult", "LOCK_NAME", "PAUSE_ENV", "PAUSE_SECONDS_ENV", "SMALL_FILE_LIMIT", "WAIT_SECONDS",
           "check_preconditions", "execute_actions", "execute_recovery", "file_signature", "folder_state",
           "foreign_journal",
           "is_ready", "pending_journal", "read_trusted_journal", "sha256_of", "stat_signature", "undo_fix",
           "check_targets"]

SMALL_FILE_LIMIT = 16 * 2**20   # files larger than this are never copied or rewritten
PAUSE_ENV = "WAN_COMPAT_FIX_PAUSE_AFTER"
PAUSE_SECONDS_ENV = "WAN_COMPAT_FIX_PAUSE_SECONDS"
STAGE = "fix"                   # the ProgressEvent stage of applying, finishing and undoing
WAITING = "Waiting for another fix on this folder to finish"


# --------------------------------------------------------------------------- executing in place

def sha256_of(data: bytes) -> str:
    """The sha256 of ``data`` (hex)."""
    return hashlib.sha256(data).hexdigest()


def file_signature(path: Path) -> str | None:
    """sha256 of a small file; for a large one a signature of its size and time (never read)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    if st.st_size > SMALL_FILE_LIMIT:
        return stat_signature(path)
    return sha256_of(path.read_bytes())


def stat_signature(path: Path) -> str | None:
    """``stat:<size>:<mtime_ns>`` of ``path``, None when it is absent."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return f"stat:{st.st_size}:{st.st_mtime_ns}"


def _pause(point: str) -> None:
    """The crash-test hook (see the module docstring)."""
    if os.environ.get(PAUSE_ENV) == point:
        sys.stderr.write(f"WAN_COMPAT_FIX_PAUSED {point}\n")
        sys.stderr.flush()
        time.sleep(float(os.environ.get(PAUSE_SECONDS_ENV, "60")))


def _lock(root: Path, progress: Progress, wait: float) -> FixLock:
    return FixLock(root, wait, on_wait=lambda: progress.emit(STAGE, WAITING, 0))


def check_preconditions(root: Path, preconditions: tuple[tuple[str, str | None], ...]) -> None:
    """Raise WanError when a file the plan read has changed since (``FixPlan.preconditions``)."""
    changed = []
    for rel, sig in preconditions:
        target = root / rel
        now = stat_signature(target) if (sig or "").startswith("stat:") else file_signature(target)
        if now != sig:
            changed.append(rel)
    if changed:
        raise WanError(f"The model folder changed after this plan was made ({', '.join(changed[:3])}); "
                       "nothing was changed.", "Make the plan again (run Fix again) and apply the new one.")


def _backup_name(bdir: Path) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name, n = stamp, 1
    while (bdir / name).exists():
        n += 1
        name = f"{stamp}-{n}"
    return name


def _journal_entries(root: Path, actions: tuple[FixAction, ...]) -> tuple[list[dict[str, Any]], list[list[str]]]:
    """Each written file: its states along the plan (for recovery) and final content; and the moves."""
    files: dict[str, dict[str, Any]] = {}
    for a in actions:
        for rel, data in a.contents:
            entry = files.get(rel)
            if entry is None:
                before = file_signature(root / rel)
                entry = files[rel] = {"path": rel, "before": before, "states": [before]}
            entry["states"].append(sha256_of(data))
            entry["final"] = sha256_of(data)
            entry["final_b64"] = base64.b64encode(data).decode("ascii")
    moves = [[src, dst] for a in actions for src, dst in a.moves]
    return list(files.values()), moves


def _new_folders(root: Path, files: list[dict[str, Any]]) -> list[str]:
    """Folders the fix will create (for a scheduler/ that was missing), deepest first."""
    out: set[str] = set()
    for f in files:
        parent = posixpath.dirname(f["path"])
        while parent and not (root / parent).is_dir():
            out.add(parent)
            parent = posixpath.dirname(parent)
    return sorted(out, key=lambda d: -d.count("/"))


def _write_durable(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def execute_actions(root: Path, actions: tuple[FixAction, ...],
                    preconditions: tuple[tuple[str, str | None], ...], progress: Progress,
                    wait: float = WAIT_SECONDS) -> FixResult:
    """Back up, commit the journal, then carry out ``actions`` in ``root``; Model Check again.

    Raises WanError (nothing changed) when the folder changed since the plan, another fix
    holds it for longer than ``wait`` seconds, or the backups cannot be written.
    """
    check_targets(root, actions)
    check_preconditions(root, preconditions)   # before the lock, which creates .wan_compat_backup/
    total = len(actions)
    with _lock(root, progress, wait) as lock:
        check_preconditions(root, preconditions)  # again: another fix may have run while this one waited
        _remove_partials(lock.dir)
        progress.emit(STAGE, "Backing up the files that will change", 1)
        files, moves = _journal_entries(root, actions)
        name = _backup_name(lock.dir)
        partial = lock.dir / f".{name}.partial-{os.getpid()}"
        try:
            for entry in files:
                if entry["before"] is not None:
                    _write_durable(partial / "files" / entry["path"], (root / entry["path"]).read_bytes())
            journal = {"version": 1, "state": "applying", "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                       "actions": [a.to_dict() for a in actions], "files": files, "moves": moves,
                       "new_folders": _new_folders(root, files)}
            _write_durable(partial / JOURNAL_NAME, json.dumps(journal, indent=1).encode())
            for folder in sorted({q.parent for q in partial.rglob("*")} | {partial}, key=lambda q: -len(q.parts)):
                fsync_dir(folder)
            _pause("backup")
            backup = lock.dir / name
            os.rename(partial, backup)  # the commit point: from here on the journal finishes the fix
            fsync_dir(lock.dir)
        except OSError as exc:   # a full disk, a read-only folder: no journal was committed
            shutil.rmtree(partial, ignore_errors=True)
            err = explain(exc)
            raise WanError(f"Fix could not write its backups ({err.message.rstrip('.')}); nothing was changed: "
                           "the folder is as it was.", err.remedy or "Free some disk space and run Fix again.",
                           err.details) from exc
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        _pause("0")
        applied: list[str] = []
        errors: list[str] = []
        for i, action in enumerate(actions, 1):
            progress.emit(STAGE, action.description, 5 + 90 * (i - 1) / total, step=i, steps=total)
            try:
                _apply(root, action, i)
            except OSError as exc:
                err = explain(exc)
                errors.append(f"{action.description}: {err.message} {err.remedy}".strip())
                break
            applied.append(action.description)
            _pause(str(i))
        if errors:  # put back what was done; the journal says what that is
            try:
                undo_errors = _undo_journal(root, backup)
            except (OSError, WanError) as exc:   # the disk may still be full
                undo_errors = [f"Putting back the changes failed too: {explain(exc).message}"]
            errors += undo_errors
            state = folder_state(root, journal)  # what is on disk now, whatever the record could say
            if state == "before":
                applied = []
            errors.append(_state_sentence(root, backup, state, recorded=not undo_errors))
        else:
            try:
                _set_journal_state(backup, "done")
            except OSError as exc:               # every change is made; only the record is not marked
                errors.append(f"Marking the fix finished failed: {explain(exc).message}")
                errors.append(_state_sentence(root, backup, folder_state(root, journal), recorded=False))
    progress.emit(STAGE, "Checking the model again", 97)
    report = inspect_path(root)
    progress.emit(STAGE, "Done", 100)
    return FixResult(applied, str(backup), errors, report)


def folder_state(root: Path, journal: dict[str, Any]) -> str:
    """Where a folder stands against a fix's journal, read from disk: ``"before"`` (every file and
    name as it was), ``"final"`` (the fix fully applied) or ``"between"`` (part-way, or changed)."""
    states = set()
    for f in journal.get("files", []):
        if f["before"] == f["final"]:
            continue                        # a file the fix rewrites as it was tells nothing
        now = file_signature(root / f["path"])
        states.add("before" if now == f["before"] else "final" if now == f["final"] else "between")
    for src, dst in journal.get("moves", []):
        a, b = (root / src).exists(), (root / dst).exists()
        states.add("before" if a and not b else "final" if b and not a else "between")
    return states.pop() if len(states) == 1 else "between" if states else "before"


def _state_sentence(root: Path, backup: Path, state: str, recorded: bool) -> str:
    """The truth about the folder after a fix failed half-way (a full disk): which state, what to do."""
    again = f"`python -m core fix {root} --apply`"
    if state == "before":
        if recorded:
            return "The changes already made were undone; the folder is as it was."
        return (f"The folder is as it was (every file checked), but the fix's record in {backup} could not be "
                f"updated; free some disk space, then {again} finishes the fix from that record, or `--undo` "
                "keeps the folder as it is.")
    if state == "final":
        return (f"The fix is fully applied (every file checked), but its record in {backup} could not be marked "
                f"finished, so Model Check still calls the fix interrupted. Free some disk space and run {again} "
                "once more: it only marks the record, no file changes.")
    return (f"The folder is part-way: some changes are made, others not. Free some disk space and run {again} "
            f"again to finish the fix, or `--undo` to go back (the backups are in {backup}).")


def _apply(root: Path, action: FixAction, index: int) -> None:
    first = True
    for rel, data in action.contents:
        hook = (lambda: _pause(f"temp:{index}")) if first else None
        atomic_write_bytes(root / rel, data, before_replace=hook)
        first = False
    for src, dst in action.moves:
        atomic_rename(root / src, root / dst)


def _set_journal_state(backup: Path, state: str) -> None:
    path = backup / JOURNAL_NAME
    journal = json.loads(path.read_text())
    journal["state"] = state
    journal[state] = time.strftime("%Y-%m-%d %H:%M:%S")
    atomic_write_bytes(path, json.dumps(journal, indent=1).encode())


def _remove_partials(bdir: Path) -> None:
    """Backups that were never committed: under the lock, nobody else can be writing one."""
    for q in bdir.glob(".*.partial-*"):
        shutil.rmtree(q, ignore_errors=True)


def _journals(root: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Every committed journal under the folder's backups, oldest first."""
    out = []
    bdir = root / BACKUP_DIR
    if not bdir.is_dir():
        return out
    for q in sorted(bdir.iterdir()):
        if q.name.startswith(".") or not (q / JOURNAL_NAME).is_file():
            continue
        try:
            journal = json.loads((q / JOURNAL_NAME).read_text())
        except (OSError, ValueError, RecursionError):
            continue
        if isinstance(journal, dict):
            out.append((q, journal))
    return out


def pending_journal(root: Path) -> tuple[Path, dict[str, Any]] | None:
    """The backup folder and journal of a fix that was interrupted (state ``applying``), if any."""
    pending = [(q, j) for q, j in _journals(root) if j.get("state") == "applying"]
    return pending[-1] if pending else None


def _inside(base: str, target: str) -> bool:
    return os.path.commonpath([base, target]) == base


def _entry_problem(entry: dict[str, Any]) -> str | None:
    """Why one file entry of a journal is malformed (its signatures and contents must be text)."""
    sigs = [entry.get("before"), entry.get("final"), *entry.get("states", [])]
    if not all(s is None or isinstance(s, str) for s in sigs) or not isinstance(entry.get("final_b64", ""), str):
        return "one of its file entries is malformed"
    try:
        base64.b64decode(entry.get("final_b64", ""), validate=True)
    except ValueError:
        return "one of its file entries holds contents that are not base64"
    return None


def foreign_journal(root: Path, backup: Path, journal: Any) -> str | None:
    """Why the journal in ``backup`` must not be finished or undone in ``root``, or None when it may be.

    Every path it names must stay inside ``root`` after links are followed
    (:func:`core.check.journal_trust.journal_problem`), the backups folder, ``backup`` and its
    journal must not be links, and every file it restores must come from ``backup/files/``.

    >>> foreign_journal(Path("/m"), Path("/m/.wan_compat_backup/1"), {"files": [{"path": "/etc/x"}]})   # doctest: +SKIP
    'it names /etc/x, and it is an absolute path'
    """
    problem = journal_problem(journal, root)
    if problem:
        return problem
    real_root = os.path.realpath(root)
    bdir = os.path.join(real_root, BACKUP_DIR)
    if os.path.realpath(root / BACKUP_DIR) != bdir:
        return f"its {BACKUP_DIR} folder is a link to somewhere else"
    real_backup = os.path.realpath(backup)
    if os.path.dirname(real_backup) != bdir or os.path.islink(backup / JOURNAL_NAME):
        return "its backup folder is a link to somewhere else"
    for entry in journal.get("files", []):
        why = _entry_problem(entry)
        if why:
            return why
        if entry.get("before") is not None:
            source = os.path.realpath(os.path.join(real_backup, "files", *entry["path"].replace("\\", "/").split("/")))
            if not _inside(os.path.join(real_backup, "files"), source):
                return f"it restores {str(entry['path'])[:80]} from outside its own backup folder"
    return None


def _refusal(root: Path, backup: Path, problem: str) -> WanError:
    return WanError(f"{root} carries a repair record ({BACKUP_DIR}/{backup.name}/{JOURNAL_NAME}) that points outside "
                    f"it ({problem}); it was not written by this computer's Fix, so Fix will not finish or undo it. "
                    "Nothing was changed.",
                    f"Delete {backup / JOURNAL_NAME} if you do not know where it came from, then run Fix again.")


def read_trusted_journal(root: Path, backup: Path) -> dict[str, Any]:
    """The journal in ``backup``, read again from disk; raises WanError when it may not be executed.

    Read under the lock, just before acting, so a journal swapped after the plan was made is
    judged too.
    """
    try:
        journal = json.loads((backup / JOURNAL_NAME).read_text())
    except (OSError, ValueError) as exc:
        raise WanError(f"The repair record {backup / JOURNAL_NAME} cannot be read; nothing was changed.",
                       "Delete it if you do not know where it came from.", str(exc)) from exc
    problem = foreign_journal(root, backup, journal)
    if problem:
        raise _refusal(root, backup, problem)
    return journal


def check_targets(root: Path, actions: tuple[FixAction, ...]) -> None:
    """Raise WanError when an action would write or rename outside ``root`` (names come from disk)."""
    for action in actions:
        for rel in [*(r for r, _ in action.contents), *(p for m in action.moves for p in m)]:
            why = unsafe_path(rel, root)
            if why:
                raise WanError(f"The fix would write {str(rel)[:80]}, and {why}; nothing was changed.",
                               "A file in the model folder names that path; check where the folder came from.")


def execute_recovery(root: Path, backup: Path, description: str, progress: Progress,
                     wait: float = WAIT_SECONDS) -> FixResult:
    """Finish the interrupted fix recorded in ``backup`` (``finish_interrupted_fix``)."""
    with _lock(root, progress, wait):
        progress.emit(STAGE, "Finishing the interrupted fix", 5)
        errors = _finish_journal(root, backup)
    progress.emit(STAGE, "Checking the model again", 97)
    report = inspect_path(root)
    progress.emit(STAGE, "Done", 100)
    applied = [] if errors else [description]
    return FixResult(applied, str(backup), errors, report)


def _finish_journal(root: Path, backup: Path) -> list[str]:
    """Roll an interrupted fix forward to its planned state; conflicts are reported, not overwritten."""
    journal = read_trusted_journal(root, backup)
    errors = []
    for f in journal.get("files", []):
        target = root / f["path"]
        temp_path_for(target).unlink(missing_ok=True)
        now = file_signature(target)
        if now == f["final"]:
            continue
        if now in f["states"]:
            atomic_write_bytes(target, base64.b64decode(f["final_b64"]))
        else:
            errors.append(f"{f['path']} was changed by something else since the fix began; it was left as it is "
                          f"(its original is in {backup / 'files' / f['path']}).")
    for src, dst in journal.get("moves", []):
        a, b = root / src, root / dst
        if a.exists() and not b.exists():
            atomic_rename(a, b)
        elif not (b.exists() and not a.exists()):
            errors.append(f"Cannot finish renaming {src} to {dst}: both or neither exist.")
    _set_journal_state(backup, "done" if not errors else "conflict")
    return errors


def _undo_journal(root: Path, backup: Path) -> list[str]:
    """Put every file the journal changed back as it was (the files' current state must be known to it)."""
    journal = read_trusted_journal(root, backup)
    errors = []
    for src, dst in reversed(journal.get("moves", [])):
        a, b = root / src, root / dst
        if b.exists() and not a.exists():
            atomic_rename(b, a)
        elif not (a.exists() and not b.exists()):
            errors.append(f"Cannot rename {dst} back to {src}: both or neither exist.")
    for f in reversed(journal.get("files", [])):
        target = root / f["path"]
        temp_path_for(target).unlink(missing_ok=True)
        now = file_signature(target)
        if now == f["before"]:
            continue
        if now not in f["states"]:
            errors.append(f"{f['path']} was changed since the fix; it was left as it is "
                          f"(the original is in {backup / 'files' / f['path']}).")
            continue
        if f["before"] is None:
            target.unlink(missing_ok=True)
            fsync_dir(target.parent)
        else:
            atomic_write_bytes(target, (backup / "files" / f["path"]).read_bytes())
    for folder in journal.get("new_folders", []):
        try:
            (root / folder).rmdir()  # only when empty
        except OSError:
            pass
    _set_journal_state(backup, "undone" if not errors else "conflict")
    return errors


def undoable_backup(path: str | os.PathLike[str]) -> Path | None:
    """The backup that :func:`undo_fix` would restore now (the latest applied fix), or None.

    Reads only the journals; takes no lock (the Fix tab shows Undo only when this is not None).

    >>> undoable_backup("/models/never-fixed") is None       # doctest: +SKIP
    True
    """
    journals = [q for q, j in _journals(Path(path)) if j.get("state") in ("done", "applying")]
    return journals[-1] if journals else None


def undo_fix(path: str | os.PathLike[str], backup_dir: str | os.PathLike[str] | None = None, *,
             progress_callback: AnyCallback = None, wait: float = WAIT_SECONDS) -> FixResult:
    """Undo a fix from its backups (the latest one unless ``backup_dir`` names another).

    Files written by the fix are restored (or removed, if the fix created them) and renames
    reversed; a file changed since the fix is left alone and named in ``errors``. Waits up to
    ``wait`` seconds for a fix running on the folder, then raises WanError.

    >>> undo_fix("/models/Wan2.2-T2V-A14B-Diffusers").fixes_applied     # doctest: +SKIP
    ['Restored 2 file(s) from .wan_compat_backup/20261126-120102']
    """
    root = Path(path)
    progress = Progress(progress_callback)
    nothing = WanError(f"There is no fix to undo in {root}.", "Nothing was changed.")
    os.stat(root)                          # a missing folder is said as such (OSError), not as "no fix"
    if not (root / BACKUP_DIR).is_dir():  # never fixed: the lock would create the folder for nothing
        raise nothing
    with _lock(root, progress, wait):
        journals = [(q, j) for q, j in _journals(root) if j.get("state") in ("done", "applying")]
        if backup_dir is not None:
            journals = [(q, j) for q, j in journals if q.resolve() == Path(backup_dir).resolve()]
        if not journals:
            raise nothing
        backup, journal = journals[-1]
        progress.emit(STAGE, f"Restoring the files from {BACKUP_DIR}/{backup.name}", 5)
        errors = _undo_journal(root, backup)
    progress.emit(STAGE, "Checking the model again", 97)
    report = inspect_path(root)
    progress.emit(STAGE, "Done", 100)
    n = len(journal.get("files", [])) + len(journal.get("moves", []))
    applied = [] if errors else [f"Restored {n} file(s) from {BACKUP_DIR}/{backup.name}"]
    return FixResult(applied, str(backup), errors, report)
