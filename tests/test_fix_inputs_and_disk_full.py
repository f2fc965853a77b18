"""Issue 13 §6: the Fix tab's entry points check their input as /check does, and a full disk
during a Fix leaves only the lock file behind, which confuses neither Model Check nor the next fix.

The full disk is a file size limit (RLIMIT_FSIZE, SIGXFSZ ignored, so writes fail with EFBIG as
on a full disk) in a child process running the real ``fix --apply``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from core import fix
from core.check.detect import inspect
from tests.conftest import REPO
from tests.test_fix import tree_state
from tests.test_fix_crash import break_demo

BAD_PATHS = ["/tmp/a\0b", "/tmp/" + "a" * 5000]


@pytest.mark.parametrize("bad", BAD_PATHS)
def test_fix_endpoints_answer_a_sentence_for_bad_paths(bad: str) -> None:
    pytest.importorskip("gradio")
    from wan_ui.fix import apply_fix_api, plan_fix_api, undo_last
    from wan_ui.model_check import check_path
    answers = [plan_fix_api(bad)[1], plan_fix_api("/tmp", bad)[1], list(apply_fix_api(bad))[-1][2],
               undo_last(bad)[2], check_path(bad)[1]]
    for data in answers:
        assert "Something went wrong" not in data.get("error", ""), data
        assert data["error"].startswith("That path"), data


def test_bad_base64_in_a_manifest_is_a_sentence() -> None:
    pytest.importorskip("gradio")
    from wan_ui.model_check import check_manifest
    manifest = {"name": "x", "files": [{"path": "transformer/diffusion_pytorch_model.safetensors", "size": 100,
                                        "head_b64": "!!not base64!!"}]}
    _html, data = check_manifest(json.dumps(manifest))
    assert "Something went wrong" not in json.dumps(data)


LIMITED = r"""
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[2]), int(sys.argv[2])))
from core.__main__ import main
sys.exit(main(["fix", sys.argv[1], "--apply"]))
"""


def test_disk_full_during_a_fix_leaves_only_the_lock(demo_models_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "wan21_t2v"
    shutil.copytree(demo_models_dir / "wan21_t2v", folder)
    break_demo(folder)
    before = tree_state(folder)
    findings_before = sorted(f.code for f in inspect(folder).findings)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    run = subprocess.run([sys.executable, "-c", LIMITED, str(folder), "200"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 1, run.stderr
    assert "Traceback" not in run.stderr and "nothing was changed" in run.stderr.lower() + run.stdout.lower()
    assert tree_state(folder) == before                                   # as it was
    left = sorted(p.relative_to(folder).as_posix() for p in (folder / fix.BACKUP_DIR).rglob("*"))
    assert left == [f"{fix.BACKUP_DIR}/.lock"], left                      # no partial backup, no temp file
    assert not [p for p in folder.rglob("*") if ".partial" in p.name or p.name.endswith(".tmp")]
    assert sorted(f.code for f in inspect(folder).findings) == findings_before   # the lock is not a finding
    assert not fix.is_locked(folder)
    result = fix.plan(inspect(folder)).execute(wait=5)                    # the next fix is not confused
    assert result.ok and not result.errors
