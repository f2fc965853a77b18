"""``python -m core check`` says whether a model fits this computer's RAM and GPU memory, with the numbers.

The verdict is the memory plan's at the model's default size (core.run.models_fit), the same the
app's Model Check card shows; it is advice and never changes check's exit code. On the command
line the machine is this one, or one with little RAM made real with ``ulimit -v`` (RLIMIT_AS, which
the hardware probe reads); the sentences for GPU machines are checked through the same function with
the machine described (RAM, GPU, free disk), as the doctor's tests do.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from core.check.detect import inspect
from core.run.models_fit import model_fit
from tests.conftest import REPO, run_cli
from tests.sparse.diffusers_layout import write_diffusers_layout
from tests.sparse.specs import BY_KEY
from tests.test_optimize import RTX_4090, machine


@pytest.fixture(scope="module")
def a14b(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_diffusers_layout(BY_KEY["wan22_t2v_a14b"], tmp_path_factory.mktemp("fit") / "Wan2.2-T2V-A14B")


def test_check_prints_the_fit_on_this_computer_and_json_carries_it(demo_models_dir: Path, a14b: Path) -> None:
    text = run_cli("check", str(demo_models_dir / "wan21_t2v"))
    assert text.returncode == 0, text.stderr
    assert "On this computer, at 832x480 with 81 frames and 50 steps (the model's defaults):" in text.stdout
    assert "✓ Fits:" in text.stdout and "RAM: about" in text.stdout and "available ✓" in text.stdout
    data = json.loads(run_cli("check", str(demo_models_dir / "wan21_t2v"), "--json").stdout)["fits"]
    assert data["fits"] is True and data["ram"] is True and data["peak_ram_mb"] <= data["usable_ram_mb"]
    assert (data["vram"] is None) == (data["device"] == "cpu")


def _check_with_little_ram(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m core check ...`` in a process that may use 1.5 GB (ulimit -v), as a person would run it."""
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (1536 * 2**20, 1536 * 2**20))
    return subprocess.run([sys.executable, "-m", "core", "check", *args], cwd=REPO, text=True,
                          env=dict(os.environ, PYTHONPATH=str(REPO), PYTHONIOENCODING="utf-8"),
                          capture_output=True, timeout=60, preexec_fn=limit)


def test_check_with_little_ram_says_it_does_not_fit_and_what_to_do(a14b: Path) -> None:
    words = _check_with_little_ram(str(a14b))
    assert "✗ Does not fit:" in words.stdout and "of RAM" in words.stdout, words.stdout + words.stderr
    assert "this process may use 1.5 GB (process limit, ulimit -v)" in words.stdout
    assert "✗ too little" in words.stdout and "What to do:" in words.stdout and "Traceback" not in words.stderr
    big = _check_with_little_ram(str(a14b), "--json")
    report, fit = json.loads(big.stdout), json.loads(big.stdout)["fits"]
    assert (fit["fits"], fit["ram"]) == (False, False) and fit["usable_ram_mb"] < 1536 < fit["peak_ram_mb"]
    assert "of RAM" in fit["refusal"] and fit["remedy"]
    assert big.returncode == words.returncode == (0 if report["loadable"] else 1)   # advice: the files decide


def test_the_words_for_a_gpu_with_too_little_ram(a14b: Path) -> None:
    report = inspect(a14b)
    short = model_fit(report, replace(machine(RTX_4090, ram_gb=48), offload_free_mb=40 * 1024))
    lines = "\n".join(short.lines())
    assert not short.plan.fits and short.to_dict()["ram"] is False, lines
    assert "✗ Does not fit:" in lines and "of RAM" in lines and "RAM: 40 GB available ✗ too little" in lines
    assert "GPU memory: 21 GB usable ✓ enough" in lines and "What to do:" in lines and "Q4_K_M" in lines
    on_disk = model_fit(report, replace(machine(RTX_4090, ram_gb=48), offload_free_mb=500 * 1024))
    assert on_disk.plan.fits and "✓ Fits only by offloading the weights to disk" in "\n".join(on_disk.lines())
    assert on_disk.to_dict()["disk_mb"] > 50 * 1024 and on_disk.to_dict()["vram"] is True
    roomy = model_fit(report, machine(RTX_4090, ram_gb=128)).to_dict()
    assert (roomy["fits"], roomy["ram"], roomy["vram"]) == (True, True, True) and roomy["disk_mb"] == 0
    cpu = "\n".join(model_fit(report, machine(ram_gb=32)).lines())
    assert "GPU memory: no GPU that can be used" in cpu and "✗ Does not fit" in cpu
