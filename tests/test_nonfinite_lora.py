"""Black videos from a LoRA: a real peft LoRA with a wild scale is caught at its step, named, never retried.

Our API has no way to put a LoRA on yet (issue 10), so the test does what such a LoRA in the
pipeline amounts to: diffusers' ``load_lora_weights`` of a LoRA state dict with real Wan
(ComfyUI-style) key names on the loaded wrapper's pipeline, then ``set_adapters`` with a scale
that overflows fp32, before ``generate``. Real diffusers pipeline on the CPU, 64x64, 5 frames.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("peft")


def _wild_lora() -> dict:
    """A rank-4 LoRA on block 0's feed-forward in ComfyUI / Kijai key format, for the demo's widths."""
    import torch
    gen = torch.Generator().manual_seed(0)
    lora = {}
    for part, (width_in, width_out) in {"ffn.0": (24, 32), "ffn.2": (32, 24)}.items():
        key = f"diffusion_model.blocks.0.{part}"
        lora[f"{key}.lora_down.weight"] = torch.randn(4, width_in, generator=gen)
        lora[f"{key}.lora_up.weight"] = torch.randn(width_out, 4, generator=gen)
        lora[f"{key}.alpha"] = torch.tensor(4.0)
    return lora


def test_a_lora_with_a_wild_scale_is_named_and_the_run_stops_without_an_mp4(
        demo_models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from core.run.generation import GenerationConfig
    from core.run.load import WanPipelineLoader
    monkeypatch.setenv("WAN_COMPAT_HISTORY_DB", str(tmp_path / "history.db"))
    wrapper = WanPipelineLoader().load_wan_pipeline(demo_models_dir / "wan21_t2v")
    wrapper.pipeline.load_lora_weights(_wild_lora(), adapter_name="wild")
    wrapper.pipeline.set_adapters(["wild"], [1e36])
    events = []
    out = tmp_path / "out" / "lora.mp4"
    out.parent.mkdir()
    result = wrapper.generate(GenerationConfig(prompt="a fox", width=64, height=64, num_frames=5,
                                               num_inference_steps=3, seed=1, output_path=str(out)),
                              progress=events.append)
    assert not result.success
    [said] = result.errors
    assert said.startswith("Step 1 of 3 produced NaN latents; the run was stopped there.")
    assert "the LoRA on blocks.0.ffn.net.2 ('wild' at scale 1e+36) pushed it out of range." in said
    assert "Lower the LoRA's strength or remove it; it was not dropped for you." in said
    assert not any("Retried" in w for w in result.warnings)
    note = result.metadata["non_finite"]
    assert note["step"] == 1 and note["cause"]["kind"] == "lora" and note["retry"] is None
    messages = [getattr(e, "message", str(e)) for e in events]
    assert any(m.startswith("Step 1 of 3 produced NaN latents") for m in messages)   # said while it happens
    assert not any(e.stage in ("denoise", "decode") for e in events)    # not one more step, no decode
    assert not list(out.parent.iterdir())                                   # no MP4, no partial file
    # the LoRA is still there: never dropped for the user
    assert "wild" in wrapper.pipeline.transformer.blocks[0].ffn.net[2].lora_A
