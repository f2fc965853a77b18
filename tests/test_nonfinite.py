"""Black videos: a step that goes NaN is caught at that step, its cause named, and retried or refused.

Each fault is injected into a copy of a demo model (real files with real NaN bytes, a real
forward hook); the runs are real diffusers pipelines on the CPU at 64x64, 5 frames, 3 steps.
fp16 runs on the CPU with torch 2.13 (the demo transformer's Linear layers compute in fp16),
so the fp16-overflow fault is the real one.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import struct
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_cli
from tests.test_loader import frames_of

ARGS = ("--prompt", "a red fox in the snow", "--size", "64x64", "--frames", "5", "--steps", "3", "--seed", "7")


@pytest.fixture(scope="module")
def faults(demo_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Faulty copies of the Wan2.1 T2V demo model, built once for this module."""
    from safetensors.torch import load_file, save_file

    from core.check.safetensors_header import read_header
    base = tmp_path_factory.mktemp("faults")
    src = demo_models_dir / "wan21_t2v"
    out = {}
    # 1. fp16 overflow: one FFN weight scaled up (about 5e4 at most: finite in fp16 itself, but
    #    the layer's output reaches about 2e5, beyond fp16's 65504; fine in fp32 and bf16).
    out["overflow"] = shutil.copytree(src, base / "overflow")
    file = out["overflow"] / "transformer" / "diffusion_pytorch_model.safetensors"
    weights = load_file(file)
    weights["blocks.0.ffn.net.2.weight"] = weights["blocks.0.ffn.net.2.weight"] * 3e5
    save_file(weights, file, metadata={"format": "pt"})
    # 2. NaN bytes written into one tensor of the file, in place.
    out["nan"] = shutil.copytree(src, base / "nan")
    file = out["nan"] / "transformer" / "diffusion_pytorch_model.safetensors"
    header = read_header(file)
    info = header.tensors["blocks.1.attn1.to_q.weight"]
    assert info.dtype == "F32"
    with open(file, "r+b") as handle:
        handle.seek(8 + header.header_size + info.start + 4 * 5)
        handle.write(struct.pack("<3f", float("nan"), float("nan"), float("inf")))
    return out


def _history(path: Path) -> list[dict]:
    with sqlite3.connect(path) as db:
        db.row_factory = sqlite3.Row
        rows = db.execute("SELECT * FROM operations WHERE operation_type = 'generation' ORDER BY id").fetchall()
    return [dict(r, context=json.loads(r["context"] or "{}")) for r in rows]


def test_fp16_overflow_is_caught_at_step_1_named_and_retried_into_a_real_video(
        faults: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "fox.mp4"
    monkeypatch.setenv("WAN_COMPAT_HISTORY_DB", str(tmp_path / "history.db"))
    result = run_cli("generate", str(faults["overflow"]), *ARGS, "--precision", "fp16", "--out", str(out), timeout=300)
    assert result.returncode == 0, result.stderr
    said = result.stderr
    assert "Step 1 of 3 produced NaN latents; the run was stopped there." in said
    assert "fp16 overflowed in block 0's feed-forward (blocks.0.ffn.net.2)" in said
    assert "Retried in fp32 (was fp16)" in said and "Traceback" not in said
    assert "Step 2/3" not in said.split("Retried")[0]           # stopped at the first step, no decode
    assert said.index("Retried") < said.index("Decoding")        # the only decode is the retry's
    frames = frames_of(str(out))
    assert frames.shape[0] == 5 and frames.mean() > 8            # a real video, not black frames
    rows = _history(tmp_path / "history.db")
    failed = [r for r in rows if not r["success"]]
    assert len(failed) == 1 and "fp16 overflowed" in failed[0]["error"]
    assert failed[0]["context"]["non_finite"]["step"] == 1
    assert failed[0]["context"]["non_finite"]["cause"]["kind"] == "fp16_overflow"
    done = [r for r in rows if r["success"]]
    assert len(done) == 1 and done[0]["context"]["non_finite"]["retry"].startswith("Retried in fp32")


def test_nan_in_a_file_is_named_by_file_and_tensor_and_never_retried(faults: dict, tmp_path: Path) -> None:
    out = tmp_path / "never.mp4"
    result = run_cli("generate", str(faults["nan"]), *ARGS, "--out", str(out), timeout=300)
    assert result.returncode == 1, result.stderr
    assert ("transformer/diffusion_pytorch_model.safetensors, tensor blocks.1.attn1.to_q.weight holds NaN: "
            "the file is damaged.") in result.stderr
    assert "Download transformer/diffusion_pytorch_model.safetensors again" in result.stderr
    assert "Step 1 of 3 produced NaN" in result.stderr and "Retried" not in result.stderr
    assert "Decoding" not in result.stderr and not out.exists() and not list(tmp_path.iterdir())


def test_an_attention_hook_that_goes_nan_from_step_2_is_caught_there_and_retried(demo_models_dir: Path,
                                                                                tmp_path: Path) -> None:
    """A misbehaving attention kernel, imitated by a real forward hook: the Python API says it."""
    from core.run.generation import GenerationConfig
    from core.run.load import WanPipelineLoader
    wrapper = WanPipelineLoader().load_wan_pipeline(demo_models_dir / "wan21_t2v")
    calls = []

    def bad_kernel(module, args, output):   # two calls per step (guidance): NaN from the third on
        calls.append(1)
        return output * float("nan") if len(calls) > 2 else output

    wrapper.pipeline.transformer.blocks[0].attn1.register_forward_hook(bad_kernel)
    out = tmp_path / "hooked.mp4"
    result = wrapper.generate(GenerationConfig(prompt="a fox", width=64, height=64, num_frames=5,
                                               num_inference_steps=3, seed=1, output_path=str(out)))
    assert result.success, result.errors
    said = " ".join(result.warnings)
    assert "Step 2 of 3 produced NaN latents" in said
    assert "block 0's self-attention (blocks.0.attn1)" in said and "forward hook" in said
    assert "Retried with the model loaded again, without hooks." in said
    assert result.metadata["non_finite"]["step"] == 2 and result.metadata["non_finite"]["cause"]["kind"] == "hook"
    assert frames_of(str(out)).mean() > 8
    assert not any(b.attn1._forward_hooks for b in wrapper.pipeline.transformer.blocks)


def test_decoded_frames_are_checked_before_writing(demo_models_dir: Path, tmp_path: Path) -> None:
    """A VAE decode that goes NaN writes nothing and says so (the VAE is already fp32: no retry)."""
    from core.run.generation import GenerationConfig
    from core.run.load import WanPipelineLoader
    wrapper = WanPipelineLoader().load_wan_pipeline(demo_models_dir / "wan21_t2v")
    wrapper.pipeline.vae.decoder.register_forward_hook(lambda module, args, output: output * float("nan"))
    out = tmp_path / "vae.mp4"
    result = wrapper.generate(GenerationConfig(prompt="a fox", width=64, height=64, num_frames=5,
                                               num_inference_steps=2, seed=1, output_path=str(out)))
    assert not result.success and not out.exists()
    assert "The VAE decode turned finite latents into NaN" in result.errors[0]
    assert np.isnan(np.nan) and result.metadata["non_finite"]["where"] == "frames"
