"""Issue 13 §2: ``generate --out`` (and the API's output_path, and the app's outputs folder) never
overwrite what is not ours, and never write into a model folder; refused before loading.

Real CLI runs (subprocess) on a copy of the demo T2V model: each refusal exits 2 with one
sentence, in seconds (no load), and the files are byte-identical afterwards. Videos written by
``write_mp4`` with our tag may be replaced; an MP4 without it may not.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from core.run.output_rules import output_problem, outputs_dir_problem
from tests.conftest import run_cli

WEIGHTS = "transformer/diffusion_pytorch_model.safetensors"


@pytest.fixture
def model(demo_models_dir: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "models" / "wan21_t2v"
    shutil.copytree(demo_models_dir / "wan21_t2v", folder)
    return folder


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _generate(model: Path, *extra: str) -> tuple[int, str, float]:
    start = time.monotonic()
    cli = run_cli("generate", str(model), "--prompt", "a fox", "--frames", "5", "--size", "64x64",
                  "--steps", "1", *extra)
    return cli.returncode, cli.stderr.strip(), time.monotonic() - start


@pytest.mark.parametrize("where", [WEIGHTS, "clip.mp4", "transformer/clip.mp4"])
def test_out_inside_the_model_folder_is_refused(model: Path, where: str) -> None:
    before = _digest(model / WEIGHTS)
    code, err, _ = _generate(model, "--out", str(model / where))
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert ("model folder" in err) or (".mp4" in err)
    assert _digest(model / WEIGHTS) == before
    assert not (model / where).with_suffix(".json").exists()


def test_out_over_a_document_or_without_mp4_is_refused(model: Path, tmp_path: Path) -> None:
    doc = tmp_path / "some_document.txt"
    doc.write_text("my notes\n")
    fake = tmp_path / "holiday.mp4"
    fake.write_bytes(b"\x00\x00\x00\x18ftypmp42 not ours")
    settings = tmp_path / "clip.json"
    settings.write_text('{"mine": true}')
    for out in (doc, tmp_path / "x.json", fake, tmp_path / "clip.mp4"):
        code, err, seconds = _generate(model, "--out", str(out))
        assert code == 2, (out, err)
        assert len(err.splitlines()) == 1 and "Traceback" not in err, err
        assert seconds < 60
    assert doc.read_text() == "my notes\n" and not (tmp_path / "some_document.json").exists()
    assert fake.read_bytes().endswith(b"not ours") and settings.read_text() == '{"mine": true}'
    assert not (tmp_path / "x.json").exists()


def test_outputs_dir_inside_a_model_folder_is_refused_by_the_cli(model: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"outputs_dir: {model / 'outputs'}\nmodels_dir: {tmp_path / 'models'}\n")
    import os
    env_before = os.environ.get("WAN_COMPAT_CONFIG")
    os.environ["WAN_COMPAT_CONFIG"] = str(cfg)
    try:
        code, err, _ = _generate(model)
    finally:
        if env_before is None:
            os.environ.pop("WAN_COMPAT_CONFIG")
        else:
            os.environ["WAN_COMPAT_CONFIG"] = env_before
    assert code == 2 and "outputs folder" in err and "outputs_dir" in err, err
    assert not (model / "outputs").exists()


def test_our_own_videos_may_be_replaced_others_not(tmp_path: Path, model: Path) -> None:
    from core.run.video import write_mp4
    frames = np.zeros((3, 16, 16, 3), dtype=np.uint8)
    ours = write_mp4(frames, tmp_path / "ours.mp4", fps=8, metadata={"app": "Wan Compat 0.0", "seed": 1})
    theirs = write_mp4(frames, tmp_path / "theirs.mp4", fps=8, metadata={"seed": 1})
    (tmp_path / "theirs.json").unlink()
    assert output_problem(ours, [model]) is None
    assert "not a video" in (output_problem(theirs, [model]) or "")
    assert output_problem(tmp_path / "new.mp4", [model]) is None
    assert "inside" in (output_problem(model / "new.mp4") or "")        # found without being told
    assert "end in .mp4" in (output_problem(tmp_path / "x.json") or "")
    assert "inside" in (outputs_dir_problem(model / "outputs", [model]) or "")
    assert outputs_dir_problem(tmp_path / "outputs", [model]) is None


def test_api_refuses_before_generating(model: Path) -> None:
    pytest.importorskip("diffusers")
    from core.check.detect import inspect
    from core.run.generation import GenerationConfig
    from core.run.load import load, plan_for_load
    report = inspect(model)
    before = _digest(model / WEIGHTS)
    wrapper = load(report, plan_for_load(report))
    result = wrapper.generate(GenerationConfig(prompt="a fox", num_frames=5, width=64, height=64,
                                               num_inference_steps=1, output_path=str(model / WEIGHTS)))
    assert not result.success and any(".mp4" in e for e in result.errors)
    result = wrapper.generate(GenerationConfig(prompt="a fox", num_frames=5, width=64, height=64,
                                               num_inference_steps=1, output_path=str(model / "vae" / "x.mp4")))
    assert not result.success and any("model folder" in e for e in result.errors)
    assert _digest(model / WEIGHTS) == before and not (model / "vae" / "x.mp4").exists()


def test_app_refuses_an_outputs_dir_inside_the_model(model: Path, tmp_path: Path) -> None:
    pytest.importorskip("gradio")
    from core import config
    from core.config import load_config
    from wan_ui import common
    from wan_ui import generate as tab
    cfg_file = tmp_path / "config.yaml"
    cfg_file.write_text(f"models_dir: {tmp_path / 'models'}\noutputs_dir: {model / 'outputs'}\n"
                        f"history_db: {tmp_path / 'history.db'}\nopen_browser: false\n")
    cfg = load_config(cfg_file)
    previous = config.use(cfg)
    common.configure(cfg)
    try:
        *_, last = list(tab.generate(str(model), "a fox", "", 64, 64, 5, 1, 5.0, None, 1, None, None,
                                     "auto", "auto", "auto", "auto"))
    finally:
        config.use(previous)
        common.configure(previous)
    result = last[2]
    assert not result["success"] and any("outputs folder" in e for e in result["errors"]), result
    assert not (model / "outputs").exists()
