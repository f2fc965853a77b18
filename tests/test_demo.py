"""Tests for core.demo: tiny random-weight Wan pipelines written offline.

Run: ``HF_HUB_OFFLINE=1 .venv/bin/python -m pytest -q tests/test_demo.py`` (about 20 s on 2 cores).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from core import demo  # noqa: E402  (after the environment is set)
from core.errors import WanError  # noqa: E402

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

EXPECTED_CLASS = {
    "wan22_t2v_a14b": "WanPipeline",
    "wan22_ti2v_5b": "WanPipeline",
    "wan21_t2v": "WanPipeline",
    "wan21_i2v": "WanImageToVideoPipeline",
}
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def demo_dir(demo_models_dir: Path) -> Path:
    return demo_models_dir


@pytest.fixture(scope="module")
def loaded(demo_dir: Path) -> dict:
    """Each demo folder loaded once with DiffusionPipeline.from_pretrained."""
    from diffusers import DiffusionPipeline

    return {name: DiffusionPipeline.from_pretrained(demo_dir / name) for name in demo.DEMO_MODELS}


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _generate(pipe, name: str, seed: int = 0, steps: int = 2, size: int = 64):
    kwargs = dict(prompt="a cat walking on the beach at sunset", negative_prompt="blurry",
                  height=size, width=size, num_frames=5, num_inference_steps=steps,
                  output_type="np", generator=torch.Generator().manual_seed(seed))
    if name == "wan21_i2v":
        from PIL import Image

        kwargs["image"] = Image.new("RGB", (size, size), (200, 40, 30))
    return pipe(**kwargs).frames


def test_import_does_not_import_torch() -> None:
    code = ("import sys, core.demo; "
            "sys.exit(int(any(m in sys.modules for m in ('torch', 'diffusers', 'transformers'))))")
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode == 0


def test_all_models_written_with_marker(demo_dir: Path) -> None:
    assert sorted(p.name for p in demo_dir.iterdir()) == sorted(demo.DEMO_MODELS)  # no partial leftovers
    for name in demo.DEMO_MODELS:
        folder = demo_dir / name
        assert demo.is_complete(name, folder)
        index = json.loads((folder / "model_index.json").read_text())
        assert index["_class_name"] == EXPECTED_CLASS[name]
        assert index["tokenizer"] == ["transformers", "T5TokenizerFast"]
        weights = list(folder.rglob("*.safetensors"))
        assert weights and not list(folder.rglob("*.bin")) and not list(folder.rglob("*.pt*"))
        assert sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) < 8_000_000


@pytest.mark.parametrize("name", demo.DEMO_MODELS)
def test_loads_to_right_pipeline(loaded: dict, name: str) -> None:
    pipe = loaded[name]
    assert type(pipe).__name__ == EXPECTED_CLASS[name]
    assert type(pipe.transformer).__name__ == "WanTransformer3DModel"
    assert type(pipe.vae).__name__ == "AutoencoderKLWan"
    assert type(pipe.text_encoder).__name__ == "UMT5EncoderModel"
    assert type(pipe.scheduler).__name__ == "UniPCMultistepScheduler"
    assert pipe.scheduler.config.prediction_type == "flow_prediction"
    assert pipe.scheduler.config.use_flow_sigmas
    # widths that must agree for the pipeline to run
    assert pipe.transformer.config.text_dim == pipe.text_encoder.config.d_model
    assert pipe.text_encoder.config.vocab_size >= len(pipe.tokenizer)
    z_dim = pipe.vae.config.z_dim
    assert len(pipe.vae.config.latents_mean) == len(pipe.vae.config.latents_std) == z_dim
    assert pipe.transformer.config.out_channels == z_dim
    ids = pipe.tokenizer(["a cat"], padding="max_length", max_length=512, truncation=True).input_ids
    assert len(ids[0]) == 512 and max(ids[0]) < pipe.text_encoder.config.vocab_size


def test_a14b_has_two_different_experts(loaded: dict) -> None:
    pipe = loaded["wan22_t2v_a14b"]
    assert pipe.transformer_2 is not None
    assert pipe.config.boundary_ratio == 0.875 and pipe.config.expand_timesteps is False
    assert pipe.vae.config.z_dim == 16 and pipe.transformer.config.in_channels == 16
    first, second = pipe.transformer.state_dict(), pipe.transformer_2.state_dict()
    assert first.keys() == second.keys()
    assert not torch.equal(first["patch_embedding.weight"], second["patch_embedding.weight"])


def test_a14b_uses_both_experts(loaded: dict) -> None:
    pipe = loaded["wan22_t2v_a14b"]
    calls = {"transformer": 0, "transformer_2": 0}
    def counter(key: str):
        return lambda *args: calls.__setitem__(key, calls[key] + 1)

    hooks = [getattr(pipe, key).register_forward_hook(counter(key)) for key in calls]
    try:
        _generate(pipe, "wan22_t2v_a14b", steps=6)
    finally:
        for hook in hooks:
            hook.remove()
    assert calls["transformer"] > 0 and calls["transformer_2"] > 0


def test_ti2v_uses_wan22_vae(loaded: dict) -> None:
    pipe = loaded["wan22_ti2v_5b"]
    assert pipe.transformer_2 is None and pipe.config.boundary_ratio is None
    assert pipe.config.expand_timesteps is True
    vae = pipe.vae.config
    assert (vae.z_dim, vae.is_residual, vae.patch_size, vae.scale_factor_spatial) == (48, True, 2, 16)
    assert pipe.transformer.config.in_channels == pipe.transformer.config.out_channels == 48


def test_wan21_models(loaded: dict) -> None:
    t2v, i2v = loaded["wan21_t2v"], loaded["wan21_i2v"]
    assert t2v.transformer_2 is None and t2v.config.boundary_ratio is None
    assert t2v.transformer.config.in_channels == 16 and t2v.vae.config.z_dim == 16
    assert type(i2v.image_encoder).__name__ == "CLIPVisionModel"
    assert i2v.image_processor is not None
    assert i2v.transformer.config.in_channels == 36
    assert i2v.transformer.config.image_dim == i2v.image_encoder.config.hidden_size
    assert i2v.transformer.config.added_kv_proj_dim is not None


@pytest.mark.parametrize("name", demo.DEMO_MODELS)
def test_generates_frames(loaded: dict, name: str) -> None:
    frames = _generate(loaded[name], name)
    assert frames.shape == (1, 5, 64, 64, 3)
    assert (frames >= 0).all() and (frames <= 1).all()


def test_same_seed_same_frames(loaded: dict) -> None:
    pipe = loaded["wan21_t2v"]
    first, again = _generate(pipe, "wan21_t2v", seed=3), _generate(pipe, "wan21_t2v", seed=3)
    assert (first == again).all()
    assert not (first == _generate(pipe, "wan21_t2v", seed=4)).all()


def test_two_writes_are_byte_identical(demo_dir: Path, tmp_path: Path) -> None:
    again = demo.write_demo_models(tmp_path)
    for name in demo.DEMO_MODELS:
        assert _files(again[name]) == _files(demo_dir / name), name


def test_complete_model_is_skipped_and_damaged_one_rewritten(demo_dir: Path, tmp_path: Path) -> None:
    messages: list[tuple[str, float]] = []
    folder = demo.write_demo_model("wan21_t2v", tmp_path, lambda m, p: messages.append((m, p)))
    assert messages[-1] == ("wan21_t2v: written", 100.0)
    assert [p for _, p in messages] == sorted(p for _, p in messages)
    weights = folder / "transformer" / "diffusion_pytorch_model.safetensors"
    before = weights.stat().st_mtime_ns
    messages.clear()
    demo.write_demo_model("wan21_t2v", tmp_path, lambda m, p: messages.append((m, p)))
    assert messages == [("wan21_t2v: already complete", 100.0)] and weights.stat().st_mtime_ns == before
    weights.write_bytes(weights.read_bytes()[:100])  # an interrupted copy
    assert not demo.is_complete("wan21_t2v", folder)
    demo.write_demo_model("wan21_t2v", tmp_path)
    assert _files(folder) == _files(demo_dir / "wan21_t2v")
    assert [p.name for p in tmp_path.iterdir()] == ["wan21_t2v"]


def test_foreign_folder_is_never_replaced(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    mine = tmp_path / "wan21_t2v"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(WanError, match="not a demo model"):
        demo.write_demo_model("wan21_t2v", tmp_path)
    assert demo.main([str(tmp_path), "--only", "wan21_t2v"]) == 1
    assert "not a demo model" in capsys.readouterr().err
    assert [p.name for p in mine.iterdir()] == ["notes.txt"] and (mine / "notes.txt").read_text() == "keep me"
    assert [p.name for p in tmp_path.iterdir()] == ["wan21_t2v"]


def test_interrupted_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from diffusers import DiffusionPipeline

    real_save = DiffusionPipeline.save_pretrained

    def save_then_fail(self, directory, *args, **kwargs):
        real_save(self, directory, *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(DiffusionPipeline, "save_pretrained", save_then_fail)
    with pytest.raises(KeyboardInterrupt):
        demo.write_demo_model("wan21_t2v", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_write_demo_models_progress_and_names(tmp_path: Path) -> None:
    seen: list[float] = []
    paths = demo.write_demo_models(tmp_path, names=["wan21_t2v", "wan21_t2v"],
                                   progress_callback=lambda m, p: seen.append(p))
    assert list(paths) == ["wan21_t2v"] and seen[0] == 0.0 and seen[-1] == 100.0
    with pytest.raises(ValueError, match="wan22_t2v_a14b"):
        demo.write_demo_models(tmp_path, names=["wan9_nope"])
    with pytest.raises(ValueError, match="Unknown demo model"):
        demo.build_demo_pipeline("nope")


def test_main_writes_and_prints_one_line_per_model(demo_dir: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    assert demo.main([str(tmp_path / "new"), "--only", "wan21_i2v"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and lines[0].startswith("wan21_i2v: written ")
    assert _files(tmp_path / "new" / "wan21_i2v") == _files(demo_dir / "wan21_i2v")
    assert demo.main([str(demo_dir)]) == 0  # all complete: nothing rebuilt
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == list(demo.DEMO_MODELS)
    assert all("already complete" in line for line in lines)


def test_main_bad_out_dir(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    for bad in (a_file, a_file / "below"):
        assert demo.main([str(bad)]) == 2
        err = capsys.readouterr().err
        assert err.strip().endswith(".") and "Traceback" not in err and str(a_file) in err
    assert demo.main([str(tmp_path), "--only", "wan3_nope"]) == 2
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.skipif(not (REPO / "core" / "__main__.py").exists(), reason="no command line yet")
def test_python_m_core_demo(demo_dir: Path, tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    run = subprocess.run([sys.executable, "-m", "core", "demo", str(tmp_path), "--only", "wan21_t2v"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[-1].startswith("wan21_t2v: written ")
    assert _files(tmp_path / "wan21_t2v") == _files(demo_dir / "wan21_t2v")
    a_file = str(tmp_path / "wan21_t2v" / "model_index.json")
    bad = subprocess.run([sys.executable, "-m", "core", "demo", a_file],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "not a folder" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can write anywhere")
def test_main_unwritable_out_dir(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        assert demo.main([str(locked)]) == 2
        assert "not writable" in capsys.readouterr().err
    finally:
        locked.chmod(0o700)
