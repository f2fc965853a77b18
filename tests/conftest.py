"""Shared fixtures. Everything that is slow to build is built once per session."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Loads and generations in tests record into a throwaway history, never the user's.
os.environ.setdefault("WAN_COMPAT_HISTORY_DB",
                      os.path.join(tempfile.mkdtemp(prefix="wan_compat_history_"), "history.db"))

REPO = Path(__file__).resolve().parent.parent


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``python -m core ...`` in a subprocess, as a person would, and capture its output."""
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONIOENCODING="utf-8")
    return subprocess.run([sys.executable, "-m", "core", *args], cwd=REPO, env=env, text=True,
                          capture_output=True, timeout=timeout)


def run_cli_unprivileged(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``python -m core ...`` as a user whom file permissions bind.

    Root reads every file whatever its mode, so as root this drops to "nobody" with the
    system Python (the venv's lives under /root, which nobody may enter). ``check`` needs
    only the standard library. Skips the test when that cannot be arranged here.
    """
    if os.geteuid() != 0:
        return run_cli(*args, timeout=timeout)
    python = "/usr/bin/python3"
    env = {"PYTHONPATH": str(REPO), "PYTHONIOENCODING": "utf-8", "PATH": "/usr/bin:/bin"}
    try:
        probe = subprocess.run([python, "-c", "import core.check.detect"], cwd="/", env=env, user=65534,
                               capture_output=True, timeout=timeout)
    except OSError as exc:
        pytest.skip(f"cannot run as an unprivileged user here: {exc}")
    if probe.returncode != 0:
        pytest.skip(f"an unprivileged user cannot import the project here: {probe.stderr[-200:]!r}")
    return subprocess.run([python, "-m", "core", *args], cwd="/", env=env, text=True, user=65534,
                          capture_output=True, timeout=timeout)


@pytest.fixture(scope="session")
def demo_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The four demo pipelines (core.demo), about 7.5 MB, written once per session."""
    from core.demo import write_demo_models
    out = tmp_path_factory.getbasetemp() / "wan_demo_models"
    write_demo_models(out)
    return out


@pytest.fixture()
def app_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A config.yaml of its own (models, outputs, history in tmp_path), in force as app.py puts it."""
    from core import config
    from core.config import load_config
    from wan_ui import common
    cfg_file = tmp_path / "config.yaml"
    cfg_file.write_text(f"models_dir: {tmp_path / 'models'}\noutputs_dir: {tmp_path / 'outputs'}\n"
                        f"history_db: {tmp_path / 'data' / 'history.db'}\nopen_browser: false\n")
    (tmp_path / "models").mkdir()
    monkeypatch.setenv("WAN_COMPAT_HISTORY_DB", str(tmp_path / "data" / "history.db"))
    cfg = load_config(cfg_file)
    previous = config.use(cfg)          # as app.py does: the process's one configuration
    common.configure(cfg)
    yield cfg
    common.configure(load_config(cfg_file))
    config.use(previous)
