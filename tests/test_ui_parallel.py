"""The Generate tab's GPUs choice run end to end: two real ranks over gloo on the CPU (issue 18).

The tab calls the same launcher as ``generate --gpus 2`` (core.run.parallel); this drives the tab's own
function, as the Generate button does, and judges what the page would show: the live step progress of
rank 0, a video at the output path, and its JSON naming the two GPUs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture()
def app_config(app_config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """conftest's app_config, with the ranks on gloo (CPU ranks: tests and CI only)."""
    monkeypatch.setenv("WAN_COMPAT_PARALLEL_BACKEND", "gloo")
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    return app_config


def test_the_tab_runs_one_generation_on_two_ranks(app_config, demo_models_dir: Path) -> None:
    from wan_ui.generate import generate
    model = demo_models_dir / "wan21_t2v"
    updates = list(generate(str(model), "a red fox in the snow", "", 64, 64, 5, 3, 5.0, None, 7, None, None,
                            "auto", "auto", "auto", "auto", gpus="2"))
    html = [u[0] for u in updates if isinstance(u[0], str)]
    *_, (_, video, result) = updates
    assert result["success"], result
    assert result["gpus"] == 2
    assert video and Path(video).is_file() and Path(video).parent == Path(app_config.outputs_dir)
    assert any("Step 2" in h or "step 2" in h for h in html), html[-3:]     # rank 0's steps reached the page
    import imageio.v3 as iio
    frames = iio.imread(video)
    assert frames.shape == (5, 64, 64, 3) and np.isfinite(frames).all()
    assert json.loads(Path(video).with_suffix(".json").read_text(encoding="utf-8"))["gpus"] == 2
