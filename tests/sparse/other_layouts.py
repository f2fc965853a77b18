"""Diffusers folders of other families (Stable Diffusion, SDXL, SD3, Flux), for detection tests.

Only what the detector reads is real: ``model_index.json``, component configs and small
safetensors headers. The weights are tiny sparse files.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.sparse.writer import write_sparse_safetensors

# pipeline class -> {component: [library, class]}
FAMILIES: dict[str, dict[str, list[str]]] = {
    "StableDiffusionPipeline": {
        "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
        "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
        "scheduler": ["diffusers", "PNDMScheduler"], "safety_checker": [None, None],
        "feature_extractor": ["transformers", "CLIPImageProcessor"]},
    "StableDiffusionXLPipeline": {
        "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
        "text_encoder": ["transformers", "CLIPTextModel"], "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
        "tokenizer": ["transformers", "CLIPTokenizer"], "tokenizer_2": ["transformers", "CLIPTokenizer"],
        "scheduler": ["diffusers", "EulerDiscreteScheduler"]},
    "StableDiffusion3Pipeline": {
        "transformer": ["diffusers", "SD3Transformer2DModel"], "vae": ["diffusers", "AutoencoderKL"],
        "text_encoder": ["transformers", "CLIPTextModelWithProjection"],
        "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
        "text_encoder_3": ["transformers", "T5EncoderModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
        "tokenizer_2": ["transformers", "CLIPTokenizer"], "tokenizer_3": ["transformers", "T5TokenizerFast"],
        "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"]},
    "FluxPipeline": {
        "transformer": ["diffusers", "FluxTransformer2DModel"], "vae": ["diffusers", "AutoencoderKL"],
        "text_encoder": ["transformers", "CLIPTextModel"], "text_encoder_2": ["transformers", "T5EncoderModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"], "tokenizer_2": ["transformers", "T5TokenizerFast"],
        "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"]},
}
WEIGHTLESS = {"tokenizer", "tokenizer_2", "tokenizer_3", "scheduler", "feature_extractor"}
CONFIG_NAME = {"scheduler": "scheduler_config.json", "feature_extractor": "preprocessor_config.json"}


def write_other_family(pipeline_class: str, root: Path) -> Path:
    """Write a diffusers folder of ``pipeline_class`` (a key of FAMILIES) under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    components = FAMILIES[pipeline_class]
    index = {"_class_name": pipeline_class, "_diffusers_version": "0.30.0", **components}
    (root / "model_index.json").write_text(json.dumps(index, indent=2))
    for name, (library, cls) in components.items():
        if cls is None:
            continue
        folder = root / name
        folder.mkdir(exist_ok=True)
        if name.startswith("tokenizer"):
            (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": cls}))
            continue
        key = "_class_name" if library == "diffusers" else "architectures"
        config = {key: cls if library == "diffusers" else [cls]}
        (folder / CONFIG_NAME.get(name, "config.json")).write_text(json.dumps(config))
        if name not in WEIGHTLESS:
            stem = "diffusion_pytorch_model" if library == "diffusers" else "model"
            write_sparse_safetensors(folder / f"{stem}.safetensors", {"weight": ("F16", (320, 4, 3, 3))})
    return root
