"""Issue 13 §1: a Fix journal found in a model folder is never executed when it points outside it.

A forged ``.wan_compat_backup/<time>/journal.json`` (state ``applying`` or ``done``) names an
absolute path, a ``../`` path, a path through a link, or restores from outside its own backup
folder. ``fix --apply`` (finish), ``fix --undo``, the Python API (``fix.plan``, ``FixPlan.execute``,
``undo_fix``) and the app's ``/fix_plan``, ``/fix_apply`` and ``/fix_undo`` all refuse, and the
canary files outside the model folder are untouched (same bytes, still there). A plan made while
the journal was honest and carried out after it was swapped is refused too (it is read again
under the lock). An index.json naming a shard ``../x`` is refused by the conversion.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from core import fix
from core.check.detect import inspect
from core.errors import WanError
from tests.conftest import run_cli
from tests.test_fix import tree_state

STAMP = "20260101-000000"
CANARY = b"the user's own document\n"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def model(demo_models_dir: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "models" / "wan21_t2v"
    shutil.copytree(demo_models_dir / "wan21_t2v", folder)
    return folder


def _canaries(tmp_path: Path) -> dict[str, Path]:
    out = {}
    for name in ("absolute.txt", "dotdot.txt", "moved.txt", "linked.txt"):
        p = tmp_path / "outside" / name
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(CANARY)
        out[name] = p
    return out


def _entry(rel: str, before: bytes | None, after: bytes) -> dict[str, object]:
    """A file entry as Fix writes it: the canary's current bytes are a state it "knows"."""
    sig = _sha(before) if before is not None else None
    return {"path": rel, "before": sig, "states": [sig, _sha(CANARY)], "final": _sha(after),
            "final_b64": base64.b64encode(after).decode()}


def _forge(model: Path, files: list[dict[str, object]], moves: list[list[str]] | None = None,
           state: str = "applying", name: str = STAMP) -> Path:
    backup = model / fix.BACKUP_DIR / name
    (backup / "files").mkdir(parents=True, exist_ok=True)
    journal = {"version": 1, "state": state, "started": "2026-01-01 00:00:00", "actions": [],
               "files": files, "moves": moves or [], "new_folders": []}
    (backup / "journal.json").write_text(json.dumps(journal))
    return backup


def _forged_outside(model: Path, canaries: dict[str, Path], state: str = "applying") -> Path:
    """Absolute and ../ paths: finishing would overwrite them, undoing would delete them."""
    rel_up = os.path.relpath(canaries["dotdot.txt"], model)
    moved = os.path.relpath(canaries["moved.txt"], model)
    return _forge(model, [_entry(str(canaries["absolute.txt"]), None, b"pwned\n"),
                          _entry(rel_up, None, b"pwned\n")], [[moved, "stolen.txt"]], state)


def _untouched(canaries: dict[str, Path]) -> None:
    for p in canaries.values():
        assert p.read_bytes() == CANARY, p


def test_model_check_calls_it_foreign(model: Path, tmp_path: Path) -> None:
    _forged_outside(model, _canaries(tmp_path))
    codes = {f.code for f in inspect(model).findings}
    assert "journal_foreign" in codes and "fix_interrupted" not in codes


def test_cli_apply_and_undo_refuse_a_foreign_journal(model: Path, tmp_path: Path) -> None:
    canaries = _canaries(tmp_path)
    _forged_outside(model, canaries)
    before = tree_state(model)
    applied = run_cli("fix", str(model), "--apply")
    assert applied.returncode != 0
    assert "points outside it" in applied.stdout and "Traceback" not in applied.stderr
    undone = run_cli("fix", str(model), "--undo")
    assert undone.returncode == 2, undone.stdout + undone.stderr
    assert "will not finish or undo it" in undone.stderr and "Traceback" not in undone.stderr
    _untouched(canaries)
    assert tree_state(model) == before and not (model / "stolen.txt").exists()


def test_api_refuses_finish_and_undo(model: Path, tmp_path: Path) -> None:
    canaries = _canaries(tmp_path)
    backup = _forged_outside(model, canaries)
    plan = fix.plan(inspect(model))
    assert plan.is_empty and plan.recovery_journal is None and "points outside it" in " ".join(plan.notes)
    with pytest.raises(WanError, match="will not finish or undo"):
        fix.undo_fix(model)
    result = fix.apply_wan_compatibility_fix(model)
    assert not result["fixes_applied"]
    from core.fix.journal import execute_recovery
    from core.progress import Progress
    with pytest.raises(WanError, match="points outside it"):   # the executor refuses on its own too
        execute_recovery(model, backup, "finish", Progress(None))
    _untouched(canaries)


def test_done_journal_cannot_delete_outside_by_undo(model: Path, tmp_path: Path) -> None:
    canaries = _canaries(tmp_path)
    _forged_outside(model, canaries, state="done")
    with pytest.raises(WanError, match="points outside it"):
        fix.undo_fix(model)
    _untouched(canaries)


def test_journal_swapped_after_the_plan_is_refused(model: Path, tmp_path: Path) -> None:
    """Planned with an honest journal (a scheduler config to finish), executed after a swap."""
    canaries = _canaries(tmp_path)
    rel = "scheduler/scheduler_config.json"
    old = (model / rel).read_bytes()
    backup = _forge(model, [{"path": rel, "before": _sha(old), "states": [_sha(old)], "final": _sha(b"{}"),
                             "final_b64": base64.b64encode(b"{}").decode()}])
    (backup / "files" / "scheduler").mkdir(parents=True)
    (backup / "files" / rel).write_bytes(old)
    plan = fix.plan(inspect(model))
    assert plan.recovery_journal is not None and plan.actions
    _forged_outside(model, canaries)                     # same backup folder, new journal
    with pytest.raises(WanError, match="points outside it"):
        plan.execute()
    _untouched(canaries)
    assert (model / rel).read_bytes() == old


def test_links_out_of_the_folder_and_out_of_the_backup_are_refused(model: Path, tmp_path: Path) -> None:
    canaries = _canaries(tmp_path)
    os.symlink(canaries["linked.txt"].parent, model / "link")
    _forge(model, [_entry("link/linked.txt", None, b"pwned\n")])
    assert "through a link" in " ".join(fix.plan(inspect(model)).notes)
    with pytest.raises(WanError, match="through a link"):
        fix.undo_fix(model)
    _untouched(canaries)
    (model / "link").unlink()
    shutil.rmtree(model / fix.BACKUP_DIR)
    # restores from a files/ folder that is a link to somewhere else
    rel = "scheduler/scheduler_config.json"
    current = (model / rel).read_bytes()
    backup = _forge(model, [{"path": rel, "before": _sha(CANARY), "states": [_sha(CANARY), _sha(current)],
                             "final": _sha(current), "final_b64": base64.b64encode(current).decode()}], state="done")
    shutil.rmtree(backup / "files")
    outside = tmp_path / "outside_files"
    (outside / "scheduler").mkdir(parents=True)
    (outside / rel).write_bytes(CANARY)
    os.symlink(outside, backup / "files")
    with pytest.raises(WanError, match="outside its own backup folder"):
        fix.undo_fix(model)
    assert (model / rel).read_bytes() == current


def test_backup_folder_that_is_a_link_is_refused(model: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, model / fix.BACKUP_DIR)
    with pytest.raises(WanError, match="link"):
        fix.undo_fix(model)
    assert list(elsewhere.iterdir()) == []         # not even a lock file was written there


def test_app_endpoints_refuse(model: Path, tmp_path: Path) -> None:
    pytest.importorskip("gradio")
    from wan_ui.fix import apply_fix_api, plan_fix_api, undo_last
    canaries = _canaries(tmp_path)
    _forged_outside(model, canaries)
    html, data = plan_fix_api(str(model))
    assert not data["actions"] and "points outside it" in html
    *_, last = list(apply_fix_api(str(model)))
    assert not last[2].get("fixes_applied")
    _html, _after, result = undo_last(str(model))
    assert "will not finish or undo" in result["error"]
    _untouched(canaries)


def _sparse_copy(src: Path, dst: Path) -> None:
    """The safetensors header of ``src`` and a hole to its full size (copying GBs of zeros took 47 s)."""
    with open(src, "rb") as f:
        head = f.read(8)
        head += f.read(int.from_bytes(head, "little"))
    dst.write_bytes(head)
    os.truncate(dst, src.stat().st_size)


def test_shard_named_outside_the_folder_is_refused_by_the_conversion(tmp_path: Path) -> None:
    from tests.sparse.original_layout import write_original_layout
    from tests.sparse.specs import BY_KEY
    folder = write_original_layout(BY_KEY["wan22_ti2v_5b"], tmp_path / "Wan2.2-TI2V-5B")
    index_path = folder / "diffusion_pytorch_model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    first = next(iter(index["weight_map"]))
    shard = index["weight_map"][first]
    outside = tmp_path / "stolen.safetensors"
    _sparse_copy(folder / shard, outside)         # a real file, so only the name can refuse it
    index["weight_map"][first] = "../stolen.safetensors"
    index_path.write_text(json.dumps(index))
    plan = fix.plan(inspect(folder))
    text = " ".join([*plan.notes, str(getattr(plan.conversion, "refusal", "") or "")])
    # Model Check already calls it missing (it is not in the folder); the conversion's own guard
    # (core.fix.convert: a shard name that leaves the folder) says it is not a file there
    assert "../stolen.safetensors" in text and ("not a file in that folder" in text or "missing" in text), text
    assert not (tmp_path / "Wan2.2-TI2V-5B-diffusers").exists()
