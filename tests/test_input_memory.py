"""The memory plan counts what a task's inputs add: full-size sparse layouts (VACE 14B, T2V 14B,
Animate 14B) planned for an H100 and a CPU machine, with real input files (a folder of 81 frames,
PNG reference images) checked by resolve()."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from core.check.detect import inspect
from core.run.generation import GenerationConfig, request_for, resolve
from core.run.optimize import plan_for
from tests.sparse.diffusers_layout import write_diffusers_layout
from tests.sparse.specs import BY_KEY
from tests.test_optimize import CPU_ONLY, H100, machine

W, H, F = 832, 480, 81


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("input_memory")
    keys = ("wan21_vace_14b", "wan21_t2v_14b", "wan22_animate_14b")
    return {k: inspect(write_diffusers_layout(BY_KEY[k], root / k)) for k in keys}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from PIL import Image
    root = tmp_path_factory.mktemp("input_memory_files")
    Image.new("RGB", (W, H), (90, 120, 30)).save(root / "ref.png")
    frames = root / "frames"
    frames.mkdir()
    for i in range(F):
        shutil.copyfile(root / "ref.png", frames / f"{i:03d}.png")
    return {"image": root / "ref.png", "video": frames}


def _plan(report, hardware, **inputs):
    settings, errors = resolve(GenerationConfig(prompt="a fox", width=W, height=H, num_frames=F,
                                                num_inference_steps=4, **inputs), report, inputs_required=False)
    assert not errors, errors
    return plan_for(report, hardware, request_for(settings))


def test_vace_reference_images_add_latent_frames_vram_and_ram(reports: dict, files: dict) -> None:
    vace = reports["wan21_vace_14b"]
    plain = _plan(vace, machine(H100), video=str(files["video"]))
    refs = _plan(vace, machine(H100), video=str(files["video"]), reference_images=[str(files["image"])] * 2)
    per_frame = (H // 16) * (W // 16)
    assert refs.estimate.latent_tokens == plain.estimate.latent_tokens + 2 * per_frame
    assert refs.estimate.stage_vram_mb["denoise"] > plain.estimate.stage_vram_mb["denoise"]
    assert refs.estimate.peak_ram_mb > plain.estimate.peak_ram_mb
    lines = "\n".join(refs.summary_lines())
    assert "2 reference images (2 more latent frames in every step)" in lines
    assert "VACE's control video encoded as 162 frames" in lines


def test_video_to_video_counts_the_encoded_source(reports: dict, files: dict) -> None:
    t2v = reports["wan21_t2v_14b"]
    text = _plan(t2v, machine(H100))
    v2v = _plan(t2v, machine(H100), video=str(files["video"]), strength=0.6)
    assert v2v.estimate.stage_vram_mb["encode"] > text.estimate.stage_vram_mb["encode"]
    decoded_mb = F * W * H * 3 / 2**20
    assert v2v.estimate.peak_ram_mb == pytest.approx(text.estimate.peak_ram_mb + decoded_mb, abs=1)
    assert "the source video encoded (81 frames)" in "\n".join(v2v.summary_lines())
    assert "Inputs counted" not in "\n".join(text.summary_lines())
    cpu_text, cpu_v2v = _plan(t2v, CPU_ONLY), _plan(t2v, CPU_ONLY, video=str(files["video"]), strength=0.6)
    assert cpu_v2v.estimate.peak_ram_mb > cpu_text.estimate.peak_ram_mb + decoded_mb


def test_animate_is_planned_per_segment(reports: dict, files: dict) -> None:
    animate = reports["wan22_animate_14b"]
    inputs = {"image": str(files["image"]), "pose_video": str(files["video"]), "face_video": str(files["video"])}
    long_segments = _plan(animate, machine(H100), **inputs)                          # 77 frames a segment
    short_segments = _plan(animate, machine(H100), segment_frame_length=21, **inputs)
    per_frame = (H // 16) * (W // 16)
    assert long_segments.estimate.latent_tokens == (20 + 1) * per_frame            # one segment + the character
    assert short_segments.estimate.latent_tokens == (6 + 1) * per_frame
    assert short_segments.estimate.stage_vram_mb["denoise"] < long_segments.estimate.stage_vram_mb["denoise"]
    assert "Animate in 2 segments of 77 frames" in "\n".join(long_segments.summary_lines())
    assert "Animate in 4 segments of 21 frames" in "\n".join(short_segments.summary_lines())
    replace = _plan(animate, machine(H100), mode="replace", background_video=str(files["video"]),
                    mask_video=str(files["video"]), **inputs)
    assert replace.estimate.peak_ram_mb > long_segments.estimate.peak_ram_mb
    assert replace.estimate.stage_vram_mb["encode"] > long_segments.estimate.stage_vram_mb["encode"]
