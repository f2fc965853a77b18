"""Tiny real Wan pipelines for every task, built with diffusers' own classes and saved with
``save_pretrained`` (sizes of diffusers' own Wan tests: each runs on a CPU in well under a second).

Usage (tests)::

    folders = write_task_models(tmp_path)          # {"t2v": Path, "ti2v": Path, "vace": Path, "animate": Path}
    pipe = diffusers.WanVACEPipeline.from_pretrained(folders["vace"])
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.check.signals import WAN22_LATENTS_MEAN, WAN22_LATENTS_STD

TASKS = ("t2v", "ti2v", "vace", "animate")
_TRANSFORMER = dict(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=16,
                    out_channels=16, text_dim=32, freq_dim=256, ffn_dim=32, num_layers=2, cross_attn_norm=True,
                    qk_norm="rms_norm_across_heads", rope_max_seq_len=32)
_VAE = dict(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True])


def _text_parts() -> dict[str, Any]:
    import torch
    from transformers import T5Tokenizer, UMT5Config, UMT5EncoderModel
    torch.manual_seed(0)
    encoder = UMT5EncoderModel(UMT5Config(vocab_size=64, d_model=32, d_kv=8, d_ff=32, num_layers=2, num_heads=4,
                                          relative_attention_num_buckets=8, decoder_start_token_id=0))
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [(chr(97 + i), -1.0 - i) for i in range(26)]
    pieces += [("\u2581" + chr(97 + i), -2.0 - i) for i in range(26)]
    tokenizer = T5Tokenizer(vocab=pieces, extra_ids=0)
    return {"text_encoder": encoder, "tokenizer": tokenizer}


def _scheduler() -> Any:
    from diffusers import UniPCMultistepScheduler
    return UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0)


def build_task_pipeline(task: str) -> Any:
    """The tiny pipeline for ``task`` (one of TASKS), in memory, deterministic."""
    import diffusers
    import torch
    from diffusers import AutoencoderKLWan
    parts = _text_parts()
    torch.manual_seed(0)
    if task == "ti2v":
        vae = AutoencoderKLWan(**{**_VAE, "z_dim": 48, "in_channels": 12, "out_channels": 12, "is_residual": True,
                                  "patch_size": 2, "scale_factor_spatial": 16,
                                  "latents_mean": list(WAN22_LATENTS_MEAN), "latents_std": list(WAN22_LATENTS_STD)})
        torch.manual_seed(0)
        transformer = diffusers.WanTransformer3DModel(**{**_TRANSFORMER, "in_channels": 48, "out_channels": 48})
        return diffusers.WanPipeline(transformer=transformer, vae=vae, scheduler=_scheduler(),
                                     expand_timesteps=True, **parts)
    vae = AutoencoderKLWan(**_VAE)
    torch.manual_seed(0)
    if task == "t2v":
        return diffusers.WanPipeline(transformer=diffusers.WanTransformer3DModel(**_TRANSFORMER), vae=vae,
                                     scheduler=_scheduler(), **parts)
    if task == "vace":
        transformer = diffusers.WanVACETransformer3DModel(**_TRANSFORMER, vace_layers=[0], vace_in_channels=96)
        return diffusers.WanVACEPipeline(transformer=transformer, vae=vae, scheduler=_scheduler(), **parts)
    if task == "animate":
        from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel
        channels = {str(2 ** k): 16 for k in range(2, 10)}
        transformer = diffusers.WanAnimateTransformer3DModel(
            **{**_TRANSFORMER, "in_channels": 36}, latent_channels=16, image_dim=4, motion_encoder_size=32,
            motion_encoder_channel_sizes=channels, motion_style_dim=16, motion_dim=4, motion_encoder_dim=16,
            face_encoder_hidden_dim=16, face_encoder_num_heads=2, inject_face_latents_blocks=1)
        torch.manual_seed(0)
        encoder = CLIPVisionModel(CLIPVisionConfig(hidden_size=4, projection_dim=4, num_hidden_layers=2,
                                                   num_attention_heads=2, image_size=32, intermediate_size=16,
                                                   patch_size=1))
        processor = CLIPImageProcessor(crop_size=32, size=32)
        return diffusers.WanAnimatePipeline(transformer=transformer, vae=vae, scheduler=_scheduler(),
                                            image_encoder=encoder, image_processor=processor, **parts)
    raise ValueError(f"no tiny pipeline for {task!r}")


def write_task_models(out: Path) -> dict[str, Path]:
    """Write every tiny task pipeline under ``out`` with ``save_pretrained``; {task: folder}."""
    folders = {}
    for task in TASKS:
        folder = Path(out) / f"tiny_{task}"
        if not (folder / "model_index.json").is_file():
            build_task_pipeline(task).save_pretrained(folder)
            _published_processor_name(folder / "model_index.json")
        folders[task] = folder
    return folders


def _published_processor_name(index_file: Path) -> None:
    """Without torchvision, transformers 5 saves ``CLIPImageProcessorPil``; the published
    repositories (and Model Check) say ``CLIPImageProcessor``, which loads the same files."""
    import json
    index = json.loads(index_file.read_text())
    if index.get("image_processor", [None, None])[1] == "CLIPImageProcessorPil":
        index["image_processor"][1] = "CLIPImageProcessor"
        index_file.write_text(json.dumps(index, indent=2))
