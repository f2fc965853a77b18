"""The facts the detector recognises models by, kept as data (see WAN_FACTS.md).

Each table is read by a few lines in ``core.check.detect``; adding a model kind means adding
a row here, not a branch there.
"""

from __future__ import annotations

from core.check.report import ArchitectureType as A

# Tensor-name signals of a Wan DiT: (substring in original names, substring in diffusers
# names, feature). Names are matched after any prefix such as "model.diffusion_model.".
WAN_DIT_FEATURES: tuple[tuple[str, str, str], ...] = (
    ("head.modulation", "scale_shift_table", "wan_dit"),
    ("img_emb.proj.", "condition_embedder.image_embedder.", "image_branch"),
    ("img_emb.emb_pos", "condition_embedder.image_embedder.pos_embed", "flf2v"),
    ("vace_patch_embedding.", "vace_patch_embedding.", "vace"),
    ("casual_audio_encoder.", "audio_encoder.", "s2v"),
    ("face_adapter.", "face_adapter.", "animate"),
    ("motion_encoder.", "motion_encoder.", "animate"),
    ("control_adapter.conv.weight", "control_adapter.", "fun_camera"),
)

# The tensor whose shape gives width and input channels: [dim, C, 1, 2, 2].
PATCH_EMBEDDING = "patch_embedding.weight"
# The output projection: rows = out_channels x 4 (a 1x2x2 patch).
OUTPUT_HEADS = ("head.head.weight", "proj_out.weight")
# Text projection: [dim, text_dim] in its first linear.
TEXT_EMBEDDINGS = ("text_embedding.0.weight", "condition_embedder.text_embedder.linear_1.weight")

# Transformer width -> size class.
SIZE_CLASS_BY_DIM: dict[int, str] = {1536: "1.3B", 3072: "5B", 5120: "14B"}

# The first matching rule gives the task; (feature or "in_channels=N", task).
TASK_RULES: tuple[tuple[str, str], ...] = (
    ("animate", "animate"),
    ("s2v", "s2v"),
    ("vace", "vace"),
    ("flf2v", "flf2v"),
    ("in_channels=48", "ti2v"),
    ("in_channels=36", "i2v"),
    ("in_channels=16", "t2v"),
)

# Facts that settle the Wan version; checked in order, first match wins; None = undecided.
# Keys: task, size_class, experts, image_branch, has_boundary, named_22 (see below).
VERSION_RULES: tuple[tuple[dict[str, object], str], ...] = (
    ({"experts": 2}, "2.2"),
    ({"has_boundary": True}, "2.2"),
    ({"task": "ti2v"}, "2.2"),
    ({"task": "s2v"}, "2.2"),
    ({"task": "animate"}, "2.2"),
    ({"task": "i2v", "image_branch": False}, "2.2"),
    ({"task": "i2v", "image_branch": True}, "2.1"),
    ({"task": "flf2v"}, "2.1"),
    ({"task": "vace"}, "2.1"),
    ({"size_class": "1.3B"}, "2.1"),
    # One expert of Wan2.2 A14B has the very shapes of Wan2.1 T2V-14B: only a name tells.
    ({"task": "t2v", "named_22": True}, "2.2"),
    ({"task": "t2v", "experts": 1}, "2.1"),
)

# Words in a file or folder name that mark Wan2.2 (matched lower-case).
WAN22_NAME_MARKS = ("wan2.2", "wan22", "wan2_2", "wan_2.2", "a14b", "high_noise", "low_noise")

TASK_ARCHITECTURE: dict[str, A] = {
    "t2v": A.WAN_T2V, "i2v": A.WAN_I2V, "ti2v": A.WAN_TI2V, "flf2v": A.WAN_FLF2V,
    "vace": A.WAN_VACE, "s2v": A.WAN_S2V, "animate": A.WAN_ANIMATE,
}

# The diffusers pipeline for each task (None: diffusers has none).
TASK_PIPELINE: dict[str, str | None] = {
    "t2v": "WanPipeline", "ti2v": "WanPipeline", "i2v": "WanImageToVideoPipeline",
    "flf2v": "WanImageToVideoPipeline", "vace": "WanVACEPipeline", "animate": "WanAnimatePipeline",
    "s2v": None,
}

# Latent channels -> the VAE a transformer needs.
VAE_BY_Z_DIM: dict[int, str] = {16: "wan2.1", 48: "wan2.2"}

# Wan VAE tensors (original names): any of the first marks a Wan VAE; the second adds Wan2.2.
WAN_VAE_MARK = "decoder.middle.0.residual.0.gamma"
WAN22_VAE_MARK = "decoder.upsamples.0.upsamples.0.residual.2.weight"

# Diffusers pipelines of other families, by `_class_name` prefix in model_index.json.
PIPELINE_FAMILIES: tuple[tuple[str, A], ...] = (
    ("StableDiffusionXL", A.STABLE_DIFFUSION_XL),
    ("StableDiffusion3", A.STABLE_DIFFUSION_3),
    ("StableDiffusion", A.STABLE_DIFFUSION),
    ("Flux", A.FLUX),
    ("Wan", A.UNKNOWN),  # a Wan class name: the components decide which Wan task
)

# Component classes that identify a family when model_index.json is missing or wrong.
COMPONENT_FAMILIES: dict[str, A] = {
    "WanTransformer3DModel": A.WAN_T2V,
    "WanVACETransformer3DModel": A.WAN_VACE,
    "WanAnimateTransformer3DModel": A.WAN_ANIMATE,
    "AutoencoderKLWan": A.WAN_T2V,
    "SD3Transformer2DModel": A.STABLE_DIFFUSION_3,
    "FluxTransformer2DModel": A.FLUX,
    "UNet2DConditionModel": A.STABLE_DIFFUSION,
}

# Single-file checkpoints of other families: (tensor-name substring, family), first match wins.
SINGLE_FILE_FAMILIES: tuple[tuple[str, A], ...] = (
    ("double_blocks.0.img_attn", A.FLUX),
    ("joint_blocks.0.", A.STABLE_DIFFUSION_3),
    ("conditioner.embedders.1.", A.STABLE_DIFFUSION_XL),
    ("model.diffusion_model.input_blocks.0.0.weight", A.STABLE_DIFFUSION),
)

# Pipelines whose standard components live in these folders (for layouts without model_index.json).
KNOWN_COMPONENT_FOLDERS = frozenset({
    "transformer", "transformer_2", "vae", "text_encoder", "text_encoder_2", "text_encoder_3",
    "tokenizer", "tokenizer_2", "tokenizer_3", "scheduler", "unet", "image_encoder",
    "image_processor", "feature_extractor", "safety_checker",
})

# Original Wan-AI repositories: the pickled files, judged by name and size only
# (role, bytes per parameter, expected size in bytes from the official repositories).
ORIGINAL_PICKLES: dict[str, tuple[str, int, int]] = {
    "Wan2.1_VAE.pth": ("vae", 4, 507_609_880),
    "Wan2.2_VAE.pth": ("vae", 4, 2_818_839_970),
    "models_t5_umt5-xxl-enc-bf16.pth": ("text_encoder", 2, 11_361_920_418),
    "models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth": ("image_encoder", 2, 4_772_300_000),
}
# A pickled file shorter than this share of its expected size is an interrupted download.
PICKLE_MIN_SHARE = 0.9

# Transformers' UMT5 (diffusers layout) and Wan's own T5 (ComfyUI single files): the
# embedding whose width must equal the transformer's text_dim.
TEXT_ENCODER_EMBEDDINGS = ("shared.weight", "encoder.embed_tokens.weight", "token_embedding.weight")

# Wan2.2 VAE (z_dim 48) latent statistics, from Wan-AI/Wan2.2-TI2V-5B-Diffusers vae/config.json.
WAN22_LATENTS_MEAN = [
    -0.2289, -0.0052, -0.1323, -0.2339, -0.2799, 0.0174, 0.1838, 0.1557, -0.1382, 0.0542,
    0.2813, 0.0891, 0.157, -0.0098, 0.0375, -0.1825, -0.2246, -0.1207, -0.0698, 0.5109,
    0.2665, -0.2108, -0.2158, 0.2502, -0.2055, -0.0322, 0.1109, 0.1567, -0.0729, 0.0899,
    -0.2799, -0.123, -0.0313, -0.1649, 0.0117, 0.0723, -0.2839, -0.2083, -0.052, 0.3748,
    0.0152, 0.1957, 0.1433, -0.2944, 0.3573, -0.0548, -0.1681, -0.0667,
]
WAN22_LATENTS_STD = [
    0.4765, 1.0364, 0.4514, 1.1677, 0.5313, 0.499, 0.4818, 0.5013, 0.8158, 1.0344,
    0.5894, 1.0901, 0.6885, 0.6165, 0.8454, 0.4978, 0.5759, 0.3523, 0.7135, 0.6804,
    0.5833, 1.4146, 0.8986, 0.5659, 0.7069, 0.5338, 0.4889, 0.4917, 0.4069, 0.4999,
    0.6866, 0.4093, 0.5709, 0.6065, 0.6415, 0.4944, 0.5726, 1.2042, 0.5458, 1.6887,
    0.3971, 1.06, 0.3943, 0.5537, 0.5444, 0.4089, 0.7468, 0.7744,
]
