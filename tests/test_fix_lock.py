"""One Fix at a time per folder: threads and processes applying and undoing one demo model.

A demo-model copy broken in seven ways (``break_demo``: three small files rewritten, one
weights file renamed) is applied and undone at once by several threads (the app runs up to
four events together) and by several processes. Afterwards the folder is exactly the broken
original or exactly the fixed one, every journal is closed (``done`` or ``undone``), every
undo that ran restored everything, and no two runs were ever inside the lock together: the
progress events each run sends while it holds the lock never interleave with another's.
A lock file left behind (holding "1", a process id that is alive) never blocks; a lock held
by a live process makes a second Fix wait and then refuses it, naming the lock file.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from core import fix
from core.check.detect import inspect
from core.errors import WanError
from core.fix.journal import WAITING
from core.progress import ProgressEvent
from tests.conftest import REPO
from tests.test_fix import tree_state
from tests.test_fix_crash import break_demo

OUTSIDE_THE_LOCK = {WAITING, "Checking the model again", "Done"}

# One process's share of the stress test: apply or undo ROUNDS times, print each in-lock event.
WORKER = r"""
import json, sys, time
from core import fix
from core.check.detect import inspect
from core.errors import WanError
folder, who, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
def record(event):
    print(json.dumps({"t": time.time(), "who": who, "message": event.message}), flush=True)
for i in range(rounds):
    try:
        if (i + int(who[-1])) % 2:
            result = fix.undo_fix(folder, progress_callback=record, wait=120)
        else:
            result = fix.plan(inspect(folder)).execute(record, wait=120)
        print(json.dumps({"who": who, "errors": result.errors}), flush=True)
    except WanError as err:
        print(json.dumps({"who": who, "refused": err.message}), flush=True)
"""


@pytest.fixture
def broken(demo_models_dir: Path, tmp_path: Path) -> tuple[Path, dict[str, str], dict[str, str]]:
    """A broken demo copy, its state, and the state a fix gives it (from a twin fixed alone)."""
    twin = tmp_path / "twin" / "wan22_t2v_a14b"
    folder = tmp_path / "models" / "wan22_t2v_a14b"
    for target in (twin, folder):
        shutil.copytree(demo_models_dir / "wan22_t2v_a14b", target)
        break_demo(target)
    assert fix.plan(inspect(twin)).execute().ok
    return folder, tree_state(folder), tree_state(twin)


def assert_whole(folder: Path, original: dict[str, str], fixed: dict[str, str]) -> None:
    """The folder is the original or the fixed one, and every fix on it is closed."""
    state = tree_state(folder)
    assert state in (original, fixed), "the folder is neither the original nor the fixed one"
    report = inspect(folder)
    assert fix.is_ready(report) == (state == fixed)
    journals = [json.loads(j.read_text())["state"] for j in (folder / fix.BACKUP_DIR).glob("*/journal.json")]
    assert journals and set(journals) <= {"done", "undone"}, journals
    assert not fix.is_locked(folder)
    assert not list((folder / fix.BACKUP_DIR).glob(".*.partial-*"))


def assert_never_side_by_side(events: list[tuple[float, str, str]]) -> None:
    """Once a run's in-lock events stop, they never resume after another run's began."""
    finished: set[str] = set()
    current = None
    for _t, who, message in sorted(events):
        if message in OUTSIDE_THE_LOCK:
            continue
        if who != current:
            assert who not in finished, f"{who} ran beside {current}"
            if current is not None:
                finished.add(current)
            current = who
    assert finished, "the runs sent no events"


def test_threads_applying_and_undoing_never_run_side_by_side(broken) -> None:
    folder, original, fixed = broken
    events: list[tuple[float, str, str]] = []
    outcomes: list[tuple[str, str, list[str]]] = []
    guard = threading.Lock()
    start = threading.Barrier(6)

    def run(n: int) -> None:
        for round_ in range(3):
            who = f"t{n}.{round_}"      # each run its own name: one thread's runs follow each other

            def record(event: ProgressEvent, who: str = who) -> None:
                with guard:
                    events.append((time.monotonic(), who, event.message))
            if round_ == 0:
                start.wait()
            try:
                if (n + round_) % 3 == 2:
                    result = fix.undo_fix(folder, progress_callback=record, wait=120)
                    kind = "undo"
                else:
                    result = fix.plan(inspect(folder)).execute(record, wait=120)
                    kind = "apply"
                with guard:
                    outcomes.append((kind, who, result.errors))
            except WanError as err:  # planned before another run changed the folder; nothing to undo
                assert "changed after this plan" in err.message or "no fix to undo" in err.message, err.message
                with guard:
                    outcomes.append(("refused", who, []))

    threads = [threading.Thread(target=run, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads)
    assert len(outcomes) == 18
    assert all(not errors for _kind, _who, errors in outcomes), outcomes
    assert {kind for kind, _who, _e in outcomes} >= {"apply", "undo"}
    assert_never_side_by_side(events)
    assert_whole(folder, original, fixed)


@pytest.mark.skipif(sys.platform == "win32", reason="the worker's output is read line by line; POSIX only")
def test_processes_and_threads_never_run_side_by_side(broken) -> None:
    folder, original, fixed = broken
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONIOENCODING="utf-8")
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(folder), f"p{n}", "4"], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for n in range(3)]
    events: list[tuple[float, str, str]] = []
    mine: list[tuple[float, str, str]] = []

    def record(event: ProgressEvent) -> None:
        mine.append((time.time(), f"main{len([e for e in mine if e[2] == 'Done'])}", event.message))
    for _ in range(3):  # this process joins in while the others run
        try:
            fix.plan(inspect(folder)).execute(record, wait=120)
        except WanError as err:
            assert "changed after this plan" in err.message, err.message
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
        for line in out.splitlines():
            item = json.loads(line)
            if "t" in item:
                events.append((item["t"], item["who"], item["message"]))
            else:
                results.append(item)
    assert len(results) == 12 and all(not r.get("errors") for r in results), results
    assert_never_side_by_side(_split_runs(events) + mine)
    assert_whole(folder, original, fixed)


def _split_runs(events: list[tuple[float, str, str]]) -> list[tuple[float, str, str]]:
    """Name each run of a worker apart (``p0#1``, ``p0#2`` ...): a run ends with its "Done"."""
    out, runs = [], {}
    for t, who, message in sorted(events):
        out.append((t, f"{who}#{runs.get(who, 0)}", message))
        if message == "Done":
            runs[who] = runs.get(who, 0) + 1
    return out


def test_a_lock_file_left_behind_does_not_block(broken) -> None:
    """A crash leaves .lock behind; whatever it holds (here "1", process 1, which is alive) it is not held."""
    folder, original, fixed = broken
    p = fix.plan(inspect(folder))
    (folder / fix.BACKUP_DIR).mkdir()
    (folder / fix.BACKUP_DIR / ".lock").write_text("1")
    assert not fix.is_locked(folder)
    started = time.monotonic()
    result = p.execute(wait=60)
    assert result.ok and time.monotonic() - started < 30
    assert tree_state(folder) == fixed


def test_a_second_fix_waits_for_the_first_then_runs(broken) -> None:
    folder, original, fixed = broken
    p = fix.plan(inspect(folder))
    events: list[ProgressEvent] = []
    waiting = threading.Event()

    def record(event: ProgressEvent) -> None:
        events.append(event)
        if event.message == WAITING:
            waiting.set()
    box = {}
    with fix.FixLock(folder):
        worker = threading.Thread(target=lambda: box.update(result=p.execute(record, wait=60)))
        worker.start()
        assert waiting.wait(timeout=30), "the second fix did not say it waits"
        time.sleep(0.3)
        assert tree_state(folder) == original and fix.is_locked(folder)
        assert events[0].stage == "fix" and [e.message for e in events] == [WAITING]
    worker.join(timeout=60)
    assert box["result"].ok and tree_state(folder) == fixed


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_a_fix_held_by_another_process_is_refused_naming_the_lock_file(broken) -> None:
    folder, original, fixed = broken
    p = fix.plan(inspect(folder))
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from core.fix import FixLock\n"
                               "with FixLock(sys.argv[1]):\n    print('held', flush=True); time.sleep(120)",
         str(folder)], cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert fix.is_locked(folder)
        with pytest.raises(WanError) as refused:
            p.execute(wait=0.5)
        lock_file = str(folder / fix.BACKUP_DIR / ".lock")
        assert "Another fix is running on this folder" in refused.value.message
        assert lock_file in refused.value.message and refused.value.remedy
        with pytest.raises(WanError, match="Another fix is running"):
            fix.undo_fix(folder, wait=0.5)
        assert tree_state(folder) == original
    finally:
        holder.send_signal(signal.SIGKILL)   # dies holding it: the system lets go, the file stays
        holder.wait(timeout=30)
    assert (folder / fix.BACKUP_DIR / ".lock").exists() and not fix.is_locked(folder)
    assert p.execute(wait=5).ok and tree_state(folder) == fixed
