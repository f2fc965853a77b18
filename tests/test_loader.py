"""Load and generate with the demo models on the CPU: real pipelines, real MP4s."""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from core.errors import WanError
from core.run.generation import GenerationConfig
from core.run.load import WanPipelineLoader
from core.run.video import read_video_info
from tests.sparse.other_layouts import write_other_family

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def loaded(demo_models_dir: Path) -> dict:
    """Each demo model loaded once, with the progress messages of its loading."""
    out = {}
    for name in ("wan22_t2v_a14b", "wan22_ti2v_5b", "wan21_i2v"):
        messages: list[tuple[str, float]] = []
        wrapper = WanPipelineLoader().load_wan_pipeline(demo_models_dir / name,
                                                        progress_callback=lambda m, p, into=messages: into.append((m, p)))
        out[name] = (wrapper, messages)
    return out


def frames_of(path: str) -> np.ndarray:
    """Every frame of an MP4, decoded with the ffmpeg that imageio-ffmpeg ships."""
    import imageio_ffmpeg
    reader = imageio_ffmpeg.read_frames(path)
    width, height = next(reader)["size"]
    return np.stack([np.frombuffer(raw, dtype=np.uint8).reshape(height, width, 3) for raw in reader])


def test_loading_reports_each_component(loaded: dict) -> None:
    wrapper, messages = loaded["wan22_t2v_a14b"]
    text = [m for m, _ in messages]
    for name in ("transformer", "transformer_2", "vae", "text_encoder", "tokenizer", "scheduler"):
        assert any(m.startswith(f"Loading {name} (") for m in text), name
    percents = [p for _, p in messages]
    assert percents == sorted(percents) and percents[-1] == 100
    assert type(wrapper.pipeline).__name__ == "WanPipeline"
    assert wrapper.plan.device == "cpu" and wrapper.plan.precision.value == "fp32"
    assert wrapper.report.experts == 2


@pytest.mark.parametrize("name,size,extra", [
    ("wan22_t2v_a14b", (64, 48), {}),
    ("wan22_ti2v_5b", (64, 64), {}),
    ("wan21_i2v", (64, 48), {"image": "IMAGE"}),
])
def test_generate_writes_a_real_mp4(loaded: dict, tmp_path: Path, name: str, size: tuple[int, int],
                                    extra: dict) -> None:
    wrapper, _ = loaded[name]
    if extra.get("image") == "IMAGE":
        from PIL import Image
        image_path = tmp_path / "start.png"
        Image.new("RGB", (80, 60), (200, 30, 30)).save(image_path)
        extra = {"image": str(image_path)}
    out = tmp_path / "video.mp4"
    progress: list[tuple[str, float]] = []
    result = wrapper.generate(GenerationConfig(prompt="a red fox in the snow", width=size[0], height=size[1],
                                               num_frames=9, num_inference_steps=3, seed=7, output_path=str(out),
                                               **extra),
                              progress_callback=lambda m, p: progress.append((m, p)))
    assert result.success, result.errors
    info = read_video_info(out)
    assert (info.frames, info.width, info.height) == (9, size[0], size[1])
    assert info.metadata["prompt"] == "a red fox in the snow" and info.metadata["seed"] == 7
    assert (out.with_suffix(".json")).exists()
    assert result.frames == 9 and result.seconds_per_step > 0 and result.seconds["total"] > 0
    percents = [p for _, p in progress]
    assert percents == sorted(percents) and percents[-1] == 100
    assert [m for m, _ in progress if m.startswith("Step ")][-1].startswith("Step 3/3")
    assert any(m.startswith("Decoding") for m, _ in progress)


def test_expert_switch_happens_at_the_boundary(loaded: dict, tmp_path: Path) -> None:
    wrapper, _ = loaded["wan22_t2v_a14b"]
    steps = 8
    seen: list[str] = []
    result = wrapper.generate(GenerationConfig(prompt="waves", width=32, height=32, num_frames=5,
                                               num_inference_steps=steps, output_path=str(tmp_path / "v.mp4")),
                              progress_callback=lambda m, p: seen.append(m) if m.startswith("Step") else None)
    assert result.success, result.errors
    pipe = wrapper.pipeline
    pipe.scheduler.set_timesteps(steps)
    boundary = pipe.config.boundary_ratio * pipe.scheduler.config.num_train_timesteps
    expected = ["high" if float(t) >= boundary else "low" for t in pipe.scheduler.timesteps]
    assert "high" in expected and "low" in expected  # the switch falls inside this run
    assert ["high" if "high-noise" in m else "low" for m in seen] == expected


def test_the_same_seed_gives_the_same_frames(loaded: dict, tmp_path: Path) -> None:
    wrapper, _ = loaded["wan22_ti2v_5b"]
    videos = []
    for i, seed in enumerate((3, 3, 4)):
        out = tmp_path / f"v{i}.mp4"
        result = wrapper.generate(GenerationConfig(prompt="a lighthouse", width=64, height=64, num_frames=5,
                                                   num_inference_steps=2, seed=seed, output_path=str(out)))
        assert result.success, result.errors
        videos.append(frames_of(str(out)))
    assert np.array_equal(videos[0], videos[1])
    assert not np.array_equal(videos[0], videos[2])


def test_cancel_stops_after_the_current_step_and_writes_nothing(loaded: dict, tmp_path: Path) -> None:
    wrapper, _ = loaded["wan22_t2v_a14b"]
    cancel = threading.Event()
    steps_seen: list[str] = []

    def on_progress(message: str, percent: float) -> None:
        if message.startswith("Step"):
            steps_seen.append(message)
            if len(steps_seen) == 2:
                cancel.set()

    out = tmp_path / "cancelled.mp4"
    result = wrapper.generate(GenerationConfig(prompt="rain", width=32, height=32, num_frames=5,
                                               num_inference_steps=6, output_path=str(out)),
                              progress_callback=on_progress, cancel=cancel)
    assert result.cancelled and not result.success
    assert len(steps_seen) == 2
    assert os.listdir(tmp_path) == []  # no MP4, no JSON, no temporary file
    again = wrapper.generate(GenerationConfig(prompt="rain", width=32, height=32, num_frames=5,
                                              num_inference_steps=2, output_path=str(out)))
    assert again.success  # the pipeline is usable after a cancel


@pytest.mark.parametrize("config,expected", [
    (dict(prompt="   "), "prompt is empty"),
    (dict(prompt="x", width=100), "use 96 or 112 instead of 100"),
    (dict(prompt="x", num_frames=10), "use 9 or 13 instead of 10"),
    (dict(prompt="x", num_inference_steps=0), "at least 1"),
    (dict(prompt="x", image="whatever.png"), "takes no image"),
])
def test_validation_messages(loaded: dict, config: dict, expected: str) -> None:
    wrapper, _ = loaded["wan22_t2v_a14b"]
    result = wrapper.generate(GenerationConfig(**config))
    assert not result.success and any(expected in e for e in result.errors), result.errors


def test_ti2v_sizes_are_multiples_of_32_and_i2v_needs_an_image(loaded: dict) -> None:
    ti2v, _ = loaded["wan22_ti2v_5b"]
    result = ti2v.generate(GenerationConfig(prompt="x", width=48, height=64))
    assert any("multiple of 32" in e and "32 or 64" in e for e in result.errors)
    i2v, _ = loaded["wan21_i2v"]
    assert any("starting image" in e for e in i2v.generate(GenerationConfig(prompt="x")).errors)


def test_not_a_wan_model_raises_value_error(tmp_path: Path) -> None:
    folder = write_other_family("StableDiffusionXLPipeline", tmp_path / "sdxl")
    with pytest.raises(ValueError, match="not a Wan architecture"):
        WanPipelineLoader().load_wan_pipeline(folder)


@pytest.fixture
def demo_copy(demo_models_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "wan21_t2v"
    shutil.copytree(demo_models_dir / "wan21_t2v", copy)
    return copy


def test_a_shard_of_random_bytes_is_named(demo_copy: Path) -> None:
    shard = demo_copy / "transformer" / "diffusion_pytorch_model.safetensors"
    shard.write_bytes(os.urandom(shard.stat().st_size))
    with pytest.raises(WanError) as info:
        WanPipelineLoader().load_wan_pipeline(demo_copy)
    assert "diffusion_pytorch_model.safetensors" in str(info.value)


def test_a_truncated_shard_is_named(demo_copy: Path) -> None:
    shard = demo_copy / "vae" / "diffusion_pytorch_model.safetensors"
    with open(shard, "r+b") as fh:
        fh.truncate(shard.stat().st_size - 1000)
    with pytest.raises(WanError) as info:
        WanPipelineLoader().load_wan_pipeline(demo_copy)
    assert "diffusion_pytorch_model.safetensors" in info.value.message
    assert "interrupted download" in info.value.message


def test_weights_that_do_not_fit_the_config_are_explained(demo_copy: Path) -> None:
    import json
    config_path = demo_copy / "transformer" / "config.json"
    config = json.loads(config_path.read_text())
    config["ffn_dim"] = 64  # the weights were saved with 32
    config_path.write_text(json.dumps(config))
    with pytest.raises(WanError) as info:
        WanPipelineLoader().load_wan_pipeline(demo_copy)
    message = info.value.message  # caught by Model Check's tables before any weight is read
    assert message.startswith("The model cannot be loaded: The weights in transformer/ do not fit "
                              "WanTransformer3DModel as its config describes it"), message
    assert "blocks.0.ffn.net.0.proj.weight is [32, 24] in the weights but [64, 24] by the config" in message
    assert "low_cpu_mem_usage" not in message  # no library advice


def test_a_config_that_describes_other_shapes_is_caught_before_loading(demo_copy: Path) -> None:
    import json

    from core.check.detect import inspect
    config_path = demo_copy / "transformer" / "config.json"
    config = json.loads(config_path.read_text())
    config["num_attention_heads"] *= 2
    config_path.write_text(json.dumps(config))
    finding = next(f for f in inspect(demo_copy).findings if f.code == "config_mismatch")
    assert "transformer/config.json" in finding.message and "width 48" in finding.message and "24" in finding.message
    with pytest.raises(WanError) as info:
        WanPipelineLoader().load_wan_pipeline(demo_copy)
    assert "transformer/config.json describes" in info.value.message


def test_generate_command(demo_models_dir: Path, tmp_path: Path) -> None:
    from tests.conftest import run_cli
    out = tmp_path / "cli.mp4"
    result = run_cli("generate", str(demo_models_dir / "wan22_ti2v_5b"), "--prompt", "a paper boat",
                     "--size", "64x32", "--frames", "5", "--steps", "2", "--seed", "3", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(out) and read_video_info(out).frames == 5
    assert "Step 2/2" in result.stderr and "Traceback" not in result.stderr
    bad = run_cli("generate", str(demo_models_dir / "wan22_ti2v_5b"), "--prompt", "x", "--size", "48x32")
    assert bad.returncode == 2 and "multiple of 32" in bad.stderr and "Loading" not in bad.stderr
    missing = run_cli("generate", str(tmp_path / "nowhere"), "--prompt", "x")
    assert missing.returncode == 2 and "Not found" in missing.stderr


def test_a_module_named_in_model_index_is_never_imported_without_permission(demo_copy: Path, tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import json
    import sys
    module = tmp_path / "plugin_dir" / "evil_scheduler.py"
    module.parent.mkdir()
    marker = tmp_path / "imported"
    module.write_text(f"open({str(marker)!r}, 'w').write('x')\n")
    monkeypatch.syspath_prepend(str(module.parent))
    index = json.loads((demo_copy / "model_index.json").read_text())
    index["scheduler"] = ["evil_scheduler", "UniPCMultistepScheduler"]
    (demo_copy / "model_index.json").write_text(json.dumps(index))
    from core.check.detect import inspect
    assert "custom_code" in {f.code for f in inspect(demo_copy).findings}
    with pytest.raises(WanError) as info:
        WanPipelineLoader().load_wan_pipeline(demo_copy)
    assert "trust_remote_code" in info.value.remedy
    assert not marker.exists() and "evil_scheduler" not in sys.modules


def test_seconds_per_step_leave_out_prompt_encoding(loaded: dict, tmp_path: Path) -> None:
    import time
    wrapper, _ = loaded["wan22_ti2v_5b"]
    pipe = wrapper.pipeline
    original = pipe.encode_prompt

    def slow_encode(*args, **kwargs):  # a text encoder that takes a while, as UMT5-XXL does
        time.sleep(1.0)
        return original(*args, **kwargs)

    pipe.encode_prompt = slow_encode
    try:
        result = wrapper.generate(GenerationConfig(prompt="x", width=32, height=32, num_frames=5,
                                                   num_inference_steps=2, output_path=str(tmp_path / "v.mp4")))
    finally:
        del pipe.encode_prompt
    assert result.success, result.errors
    seconds = result.seconds
    assert seconds["encode"] >= 1.0
    # Denoising is timed from the end of encoding: the two never overlap, however busy the machine is.
    assert seconds["encode"] + seconds["denoise"] <= seconds["total"] + 0.01, seconds
    assert result.seconds_per_step == pytest.approx(seconds["denoise"] / 2)


def test_settings_that_would_fail_late_are_refused_first(loaded: dict, tmp_path: Path) -> None:
    wrapper, _ = loaded["wan22_ti2v_5b"]
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    cases = [(dict(output_path=str(blocker / "v.mp4")), "is a file"),
             (dict(image=str(tmp_path / "missing.png")), "does not exist"),
             (dict(image=str(blocker)), "cannot be read as an image"),
             (dict(guidance_scale=float("nan")), "must be a number of 0 or more"),
             (dict(guidance_scale=float("inf")), "must be a number of 0 or more")]
    for extra, expected in cases:
        result = wrapper.generate(GenerationConfig(prompt="x", width=32, height=32, num_frames=5, **extra))
        assert not result.success and not result.seconds, extra  # refused before any work
        assert any(expected in e for e in result.errors), (extra, result.errors)


def test_an_empty_folder_is_explained_not_sent_to_diffusers(tmp_path: Path) -> None:
    with pytest.raises(ValueError) as info:
        WanPipelineLoader().load_wan_pipeline(tmp_path)
    assert "not a Wan architecture" in str(info.value) and "The folder is empty" in str(info.value)
