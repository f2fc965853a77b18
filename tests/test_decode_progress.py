"""The VAE decode reports its own progress: one event per decoded chunk, tiled or not (issue 12 §1)."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.progress import Progress, ProgressEvent
from core.run.decode_progress import decode_chunks, decode_progress

torch = pytest.importorskip("torch")


def _vae(demo_models_dir: Path, name: str):
    from diffusers import AutoencoderKLWan
    return AutoencoderKLWan.from_pretrained(demo_models_dir / name / "vae")


@pytest.mark.parametrize("name,tiled", [("wan21_t2v", False), ("wan21_t2v", True), ("wan22_ti2v_5b", True)])
def test_each_decoded_chunk_moves_the_bar(demo_models_dir: Path, name: str, tiled: bool) -> None:
    vae = _vae(demo_models_dir, name)
    ratio = vae.spatial_compression_ratio
    if tiled:        # tiles of 32 px with a 16 px stride: the 64x96 frame is decoded in 4 x 6 tiles
        vae.enable_tiling(tile_sample_min_height=32, tile_sample_min_width=32,
                          tile_sample_stride_height=16, tile_sample_stride_width=16)
    latents = torch.randn(1, vae.config.z_dim, 3, 64 // ratio, 96 // ratio)
    events: list[ProgressEvent] = []
    calls = []
    hook = vae.decoder.register_forward_hook(lambda *_: calls.append(1))
    with torch.no_grad(), decode_progress(vae, Progress(events.append)):
        vae.decode(latents)
    hook.remove()
    total = decode_chunks(vae, tuple(latents.shape))
    assert total == len(calls) == (3 * 4 * 6 if tiled else 3)     # latent frames x tiles
    percents = [e.percent for e in events]
    assert len(set(percents)) == len(calls) + 1 and percents == sorted(percents) and percents[-1] == 100
    assert all(e.stage == "decode" for e in events)
    assert events[1].message.startswith("Decoding the video (VAE) · part 2 of")
    assert events[1].eta_seconds is not None and events[-1].eta_seconds == 0
    assert "decode" not in vars(vae)          # the class's own method again


def test_a_generation_reports_the_decode_in_parts(demo_models_dir: Path, tmp_path: Path) -> None:
    from core.run.generation import GenerationConfig
    from core.run.load import WanPipelineLoader
    wrapper = WanPipelineLoader().load_wan_pipeline(demo_models_dir / "wan21_t2v")
    events: list[ProgressEvent] = []
    result = wrapper.generate(GenerationConfig(prompt="a fox", width=64, height=64, num_frames=17,
                                               num_inference_steps=2, output_path=str(tmp_path / "v.mp4")),
                              progress=events.append)
    assert result.success, result.errors
    decode = [e for e in events if e.stage == "decode"]
    assert len({e.percent for e in decode}) >= 5          # 17 frames: 5 latent frames, one event each
    assert 91 <= decode[0].percent and decode[-1].percent <= 97
    assert [e.stage for e in events].index("decode") > max(i for i, e in enumerate(events) if e.stage == "denoise")
