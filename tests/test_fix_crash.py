"""Crash safety of repairs in place: ``python -m core fix PATH --apply`` killed with SIGKILL.

The fix runs in a subprocess with the test hook ``WAN_COMPAT_FIX_PAUSE_AFTER=<point>``
(see ``core.fix``): it prints ``WAN_COMPAT_FIX_PAUSED <point>`` and sleeps there, and the
test kills it. Afterwards the folder (Fix's own ``.wan_compat_backup/`` aside) is either
byte-identical to before, fully repaired, or holds a committed journal; in that last case
the next plan is exactly "finish the interrupted fix", and running it leaves the folder
byte-identical to an uninterrupted fix. A third run finds nothing to do.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from core import fix
from core.check.detect import inspect
from tests.conftest import REPO
from tests.sparse.diffusers_layout import write_diffusers_layout
from tests.sparse.specs import BY_KEY
from tests.test_fix import _index, _misnamed_text_encoder, _tokenizer_class, assert_ready, tree_state

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")

CODES = ["write_scheduler_config", "fix_tokenizer_class", "rename_weights", "set_pipeline_class",
         "fix_tokenizer_class", "fix_component_class", "set_boundary_ratio"]


def break_demo(folder: Path) -> None:
    """Seven repairs, touching three small files and renaming one weights file."""
    _tokenizer_class(folder)
    _misnamed_text_encoder(folder)
    (folder / "scheduler" / "scheduler_config.json").write_text("not json")
    _index(_class_name="WanImageToVideoPipeline", boundary_ratio=..., vae=["diffusers", "AutoencoderKL"])(folder)


def run_until(folder: Path, point: str, timeout: float = 60) -> str:
    """Start ``fix --apply``, wait until it pauses at ``point``, SIGKILL it; returns its stderr so far."""
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONIOENCODING="utf-8",
               **{fix.PAUSE_ENV: point, fix.PAUSE_SECONDS_ENV: "120"})
    proc = subprocess.Popen([sys.executable, "-m", "core", "fix", str(folder), "--apply"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seen = []
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # the marker comes before the sleep
            seen.append(line)
            if line.startswith(f"WAN_COMPAT_FIX_PAUSED {point}"):
                break
        else:
            pytest.fail(f"the fix never paused at {point}: {''.join(seen)[-2000:]}")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=timeout)
    assert proc.returncode == -signal.SIGKILL
    return "".join(seen)


@pytest.fixture(scope="module")
def reference(demo_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The broken folder's state, and the state after an uninterrupted fix."""
    folder = tmp_path_factory.mktemp("reference") / "wan22_t2v_a14b"
    shutil.copytree(demo_models_dir / "wan22_t2v_a14b", folder)
    break_demo(folder)
    before = tree_state(folder)
    p = fix.plan(inspect(folder))
    assert [a.code for a in p.actions] == CODES
    assert p.execute().ok
    return {"before": before, "after": tree_state(folder)}


def pending(folder: Path) -> list[Path]:
    """Committed journals of unfinished fixes (a ``.NAME.partial-PID`` folder is not committed)."""
    return [j for j in (folder / fix.BACKUP_DIR).glob("*/journal.json")
            if not j.parent.name.startswith(".") and json.loads(j.read_text())["state"] == "applying"]


# backup: before the journal is committed; N: after N actions; temp:N: inside action N's
# write, the temporary file complete and not yet renamed over the target.
POINTS = ["backup", "0", "temp:2", "3", str(len(CODES))]


@pytest.mark.parametrize("point", POINTS)
def test_killed_fix_leaves_before_or_planned_and_the_next_run_completes(point: str, reference: dict,
                                                                        demo_models_dir: Path,
                                                                        tmp_path: Path) -> None:
    folder = tmp_path / "wan22_t2v_a14b"
    shutil.copytree(demo_models_dir / "wan22_t2v_a14b", folder)
    break_demo(folder)
    assert tree_state(folder) == reference["before"]
    run_until(folder, point)
    state = tree_state(folder)
    journals = pending(folder)
    if point == "backup":  # nothing committed: the folder is exactly as it was
        assert state == reference["before"] and not journals
    elif point == str(len(CODES)):  # every action done, only the journal left open
        assert state == reference["after"] and journals
    else:
        assert journals, "a fix killed half-way must leave its journal"
        if point.startswith("temp:"):
            leftovers = list(folder.rglob("*.wan_compat_tmp"))
            assert len(leftovers) == 1  # the killed write; its target still holds the old content
    # Model Check tells of the unfinished fix rather than calling a half-way folder healthy
    report = inspect(folder)
    assert ("fix_interrupted" in {f.code for f in report.findings}) == bool(journals)
    if journals:
        assert not report.loadable
    # the next plan finishes exactly the interrupted fix, then nothing is left
    p = fix.plan(report)
    if journals:
        assert [a.code for a in p.actions] == ["finish_interrupted_fix"], p.describe()
    result = p.execute()
    assert not result.errors, result.errors
    assert_ready(result.report_after)
    assert tree_state(folder) == reference["after"]
    assert not pending(folder)
    assert not list(folder.rglob("*.wan_compat_tmp"))
    assert not list((folder / fix.BACKUP_DIR).glob(".*.partial-*"))
    assert fix.plan(inspect(folder)).is_empty


def test_killed_fix_can_be_undone_instead(reference: dict, demo_models_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "wan22_t2v_a14b"
    shutil.copytree(demo_models_dir / "wan22_t2v_a14b", folder)
    break_demo(folder)
    run_until(folder, "temp:5")
    result = fix.undo_fix(folder)
    assert not result.errors, result.errors
    assert tree_state(folder) == reference["before"]
    assert not list(folder.rglob("*.wan_compat_tmp"))


def test_killed_fix_on_a_full_size_layout(tmp_path: Path) -> None:
    """A 126 GB sparse layout: the weights are renamed in place, never copied, even when killed."""
    folder = write_diffusers_layout(BY_KEY["wan22_t2v_a14b"], tmp_path / "Wan2.2-T2V-A14B-Diffusers")
    shutil.rmtree(folder / "scheduler")
    vae = folder / "vae" / "diffusion_pytorch_model.safetensors"
    os.rename(vae, vae.with_name("diffusion_pytorch_model.fp16.safetensors"))
    _index(boundary_ratio=None)(folder)
    inode = vae.with_name("diffusion_pytorch_model.fp16.safetensors").stat().st_ino
    p = fix.plan(inspect(folder))
    assert [a.code for a in p.actions] == ["write_scheduler_config", "rename_weights", "set_boundary_ratio"]
    run_until(folder, "2")
    assert vae.stat().st_ino == inode and pending(folder)
    result = fix.plan(inspect(folder)).execute()
    assert result.ok and vae.stat().st_ino == inode
    assert json.loads((folder / "model_index.json").read_text())["boundary_ratio"] == 0.875
    assert fix.plan(inspect(folder)).is_empty
