"""Crash safety of the conversion: killed with SIGKILL at several points, each in its own process.

Every run converts the same tiny Wan2.2 A14B original folder to its own target and is
paused by the documented hook ``WAN_COMPAT_CONVERT_PAUSE_AFTER`` (after the N-th tensor,
or ``finish``: everything written and flushed, just before the rename), then killed with
SIGKILL. Afterwards the source must be byte-identical, no target may exist, and the next
run must remove the dead run's partial folder and write a folder identical to an
uninterrupted conversion.

To keep this fast on two cores, one helper process imports torch, diffusers and
transformers once (no tensor work yet, so forking is safe) and forks one child per kill
point; the test kills those children by pid.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from core.check.detect import inspect  # noqa: E402
from core.fix.convert import PAUSE_ENV, plan_conversion  # noqa: E402
from tests.test_convert import tree_hash, write_tiny_original  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
PAUSED = "WAN_COMPAT_CONVERT_PAUSED "

# Imports everything a conversion needs, then forks one conversion per (target, pause point),
# prints the children's pids as JSON and waits for them.
_FORKER = r"""
import json, os, sys, traceback
import torch, diffusers, transformers, accelerate, psutil
torch.set_num_threads(1)   # no thread pool of any kind before the fork: a lock held by one hangs the children
from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers
from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanTransformer3DModel
from transformers import UMT5Config, UMT5EncoderModel
from core.fix.convert import PAUSE_ENV, plan_conversion
from core.check.detect import inspect
source, jobs = sys.argv[1], json.loads(sys.argv[2])
pids = []
for target, point in jobs:
    pid = os.fork()
    if pid == 0:
        os.environ[PAUSE_ENV] = point
        try:
            plan_conversion(inspect(source), target).execute()
            os._exit(0)
        except BaseException:
            traceback.print_exc()
            os._exit(1)
    pids.append(pid)
print(json.dumps(pids), flush=True)
for pid in pids:
    os.waitpid(pid, 0)
"""


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp("crash") / "Wan2.2-T2V-A14B"
    return root, write_tiny_original("a14b", root, seed=100)


def _kill_at(src: Path, jobs: dict[Path, str], timeout: float = 120) -> None:
    """Start one conversion per target, paused at its point; SIGKILL each once it has paused."""
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", PYTHONIOENCODING="utf-8",
               WAN_COMPAT_CONVERT_PAUSE_SECONDS="120", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               TOKENIZERS_PARALLELISM="false")
    env.pop(PAUSE_ENV, None)
    proc = subprocess.Popen([sys.executable, "-c", _FORKER, str(src), json.dumps([[str(t), p] for t, p in jobs.items()])],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pids: list[int] = []
    try:
        assert proc.stdout is not None and proc.stderr is not None
        line = proc.stdout.readline()
        if not line:
            pytest.fail(f"the helper failed: {proc.stderr.read()[-3000:]}")
        pids = json.loads(line)
        waiting, seen = set(jobs.values()), []
        deadline = time.monotonic() + timeout
        while waiting and time.monotonic() < deadline:
            text = proc.stderr.readline()
            if not text:
                break
            if text.startswith(PAUSED):
                waiting.discard(text[len(PAUSED):].strip())
            else:
                seen.append(text)
        assert not waiting, f"never paused at {sorted(waiting)}: {''.join(seen)[-3000:]}"
    finally:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait(timeout=60)
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()


def test_sigkill_at_any_point_leaves_nothing_or_a_complete_folder(source: Any, tmp_path: Path) -> None:
    src, weights = source
    before = tree_hash(src)
    n_dit = len(weights["high_noise_model"])
    total = 2 * n_dit + len(weights["vae"]) + len(weights["t5"])
    points = {"first_tensor": "1", "in_transformer_2": str(n_dit + 5), "in_vae": str(2 * n_dit + 10),
              "last_tensor": str(total), "before_rename": "finish"}
    _kill_at(src, {tmp_path / name: point for name, point in points.items()})

    assert tree_hash(src) == before, "the source changed"
    for name in points:
        assert not (tmp_path / name).exists(), f"killed at {name}, a target folder was left"
        assert len(list(tmp_path.glob(f".{name}.partial-*"))) == 1   # the dead run's work, hidden

    clean = plan_conversion(inspect(src), tmp_path / "uninterrupted").execute()
    expected = tree_hash(clean)
    for name in ("in_vae", "before_rename"):    # the next run cleans up and completes
        out = plan_conversion(inspect(src), tmp_path / name).execute()
        assert tree_hash(out) == expected
        assert not list(tmp_path.glob(f".{name}.partial-*"))
        assert inspect(out).loadable
    assert tree_hash(src) == before


def test_a_failing_conversion_removes_its_partial_folder(source: Any, tmp_path: Path) -> None:
    src, _ = source
    plan = plan_conversion(inspect(src), tmp_path / "out")

    def stop(message: str, percent: float) -> None:
        if percent > 30:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        plan.execute(stop)
    assert list(tmp_path.iterdir()) == []
