"""config.yaml, the user registry and the outputs folder are checked once at start, before any loading."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO

_GEN = ("--prompt", "a cat", "--size", "64x64", "--frames", "9", "--steps", "2")


def _cli(tmp_path: Path, config: str, *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    file = tmp_path / "config.yaml"
    file.write_text(config)
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONIOENCODING="utf-8", WAN_COMPAT_CONFIG=str(file))
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "core", *args], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=120)
    return out, time.perf_counter() - start


def test_a_bad_value_stops_generate_before_loading(demo_models_dir: Path, tmp_path: Path) -> None:
    out, _ = _cli(tmp_path, f"outputs_dir: {tmp_path / 'o'}\nport: seventy\n", "generate",
                  str(demo_models_dir / "wan21_t2v"), *_GEN)
    assert out.returncode == 2, out.stderr
    assert "config.yaml, line 2: `port` must be a whole number from 1 to 65535, not 'seventy'" in out.stderr
    assert "Loading" not in out.stderr and not (tmp_path / "o").exists()


def test_every_command_refuses_a_broken_config(demo_models_dir: Path, tmp_path: Path) -> None:
    for args in (("check", str(demo_models_dir / "wan21_t2v")), ("perf",)):
        out, _ = _cli(tmp_path, "precision: fp64\n", *args)
        assert out.returncode == 2 and "`precision` must be one of" in out.stderr, (args, out.stderr)


def test_an_unknown_key_is_named_with_the_nearest(demo_models_dir: Path, tmp_path: Path) -> None:
    out, _ = _cli(tmp_path, f"outputs_dir: {tmp_path / 'o'}\nmodles_dir: /models\n", "check",
                  str(demo_models_dir / "wan21_t2v"))
    assert "line 2: unknown setting `modles_dir` is ignored: did you mean `models_dir`?" in out.stderr


def test_a_broken_user_registry_is_reported(demo_models_dir: Path, tmp_path: Path) -> None:
    registry = tmp_path / "user_models.yaml"
    registry.write_text("- id: me/model\n  task: [unclosed\n")
    out, _ = _cli(tmp_path, f"user_registry: {registry}\n", "check", str(demo_models_dir / "wan21_t2v"))
    assert out.returncode == 2
    assert "The user registry is broken" in out.stderr and "user_models.yaml" in out.stderr
    assert "not valid YAML at line" in out.stderr


def _immutable(folder: Path) -> None:
    folder.mkdir()
    if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not possible here (needed to make a folder that root cannot write)")


def test_an_unwritable_outputs_dir_is_refused_before_loading(demo_models_dir: Path, tmp_path: Path) -> None:
    outputs = tmp_path / "outputs"
    _immutable(outputs)
    try:
        out, seconds = _cli(tmp_path, f"outputs_dir: {outputs}\n", "generate", str(demo_models_dir / "wan21_t2v"),
                            *_GEN)
    finally:
        subprocess.run(["chattr", "-i", str(outputs)])
    assert out.returncode == 2, out.stderr
    assert f"Videos cannot be written to {outputs}" in out.stderr and "nothing was loaded" in out.stderr
    assert "Loading" not in out.stderr


def test_the_app_refuses_an_unwritable_outputs_dir(tmp_path: Path) -> None:
    outputs = tmp_path / "outputs"
    _immutable(outputs)
    config = tmp_path / "config.yaml"
    config.write_text(f"outputs_dir: {outputs}\nmodels_dir: {tmp_path}\nopen_browser: false\n")
    try:
        out = subprocess.run([sys.executable, "app.py", "--no-browser", "--config", str(config)], cwd=REPO,
                             env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, text=True, timeout=120)
    finally:
        subprocess.run(["chattr", "-i", str(outputs)])
    assert out.returncode == 2
    assert out.stderr.startswith("Wan Compat cannot start: Videos cannot be written to")


def test_an_outputs_dir_that_cannot_be_made_is_refused_and_nothing_is_left(tmp_path: Path) -> None:
    from core.run.startup import outputs_problem
    said = outputs_problem(Path("/proc/wan_compat_nope/videos"))      # root passes os.access(/proc), mkdir fails
    assert said is not None and said.startswith("Videos cannot be written to /proc/wan_compat_nope/videos")
    assert outputs_problem(tmp_path / "new" / "deeper") is None
    assert list(tmp_path.iterdir()) == []                              # the folders made for the test are gone
