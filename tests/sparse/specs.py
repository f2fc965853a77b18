"""The full-size shapes of every Wan model in the registry, for sparse test layouts.

One entry per model (not per repository): the original and ``-Diffusers`` repositories
of a model share these numbers. Helpers in this package turn them into files.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelSpec:
    key: str                     # short name used by tests, e.g. "wan22_t2v_a14b"
    original_id: str | None      # registry id of the original Wan-AI repository
    diffusers_id: str | None     # registry id of the -Diffusers repository
    wan_version: str
    task: str                    # t2v, i2v, ti2v, flf2v, vace, s2v, animate
    dim: int                     # transformer width (heads x 128)
    ffn_dim: int
    num_layers: int
    in_channels: int
    out_channels: int
    experts: int = 1
    image_branch: bool = False   # Wan2.1 I2V/FLF2V CLIP branch (image_dim 1280)
    flf2v: bool = False          # FLF2V positional embedding for two images
    vace_layers: tuple[int, ...] = ()
    vae: str = "wan2.1"          # "wan2.1" (z 16) or "wan2.2" (z 48)
    boundary_ratio: float | None = None
    expand_timesteps: bool = False
    pipeline_class: str = "WanPipeline"

    @property
    def heads(self) -> int:
        return self.dim // 128


SPECS: tuple[ModelSpec, ...] = (
    ModelSpec("wan22_t2v_a14b", "Wan-AI/Wan2.2-T2V-A14B", "Wan-AI/Wan2.2-T2V-A14B-Diffusers", "2.2", "t2v",
              5120, 13824, 40, 16, 16, experts=2, boundary_ratio=0.875),
    ModelSpec("wan22_i2v_a14b", "Wan-AI/Wan2.2-I2V-A14B", "Wan-AI/Wan2.2-I2V-A14B-Diffusers", "2.2", "i2v",
              5120, 13824, 40, 36, 16, experts=2, boundary_ratio=0.9, pipeline_class="WanImageToVideoPipeline"),
    ModelSpec("wan22_ti2v_5b", "Wan-AI/Wan2.2-TI2V-5B", "Wan-AI/Wan2.2-TI2V-5B-Diffusers", "2.2", "ti2v",
              3072, 14336, 30, 48, 48, vae="wan2.2", expand_timesteps=True),
    ModelSpec("wan21_t2v_1_3b", "Wan-AI/Wan2.1-T2V-1.3B", "Wan-AI/Wan2.1-T2V-1.3B-Diffusers", "2.1", "t2v",
              1536, 8960, 30, 16, 16),
    ModelSpec("wan21_t2v_14b", "Wan-AI/Wan2.1-T2V-14B", "Wan-AI/Wan2.1-T2V-14B-Diffusers", "2.1", "t2v",
              5120, 13824, 40, 16, 16),
    ModelSpec("wan21_i2v_14b_480p", "Wan-AI/Wan2.1-I2V-14B-480P", "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers", "2.1",
              "i2v", 5120, 13824, 40, 36, 16, image_branch=True, pipeline_class="WanImageToVideoPipeline"),
    ModelSpec("wan21_i2v_14b_720p", "Wan-AI/Wan2.1-I2V-14B-720P", "Wan-AI/Wan2.1-I2V-14B-720P-Diffusers", "2.1",
              "i2v", 5120, 13824, 40, 36, 16, image_branch=True, pipeline_class="WanImageToVideoPipeline"),
    ModelSpec("wan21_flf2v_14b", "Wan-AI/Wan2.1-FLF2V-14B-720P", "Wan-AI/Wan2.1-FLF2V-14B-720P-diffusers", "2.1",
              "flf2v", 5120, 13824, 40, 36, 16, image_branch=True, flf2v=True,
              pipeline_class="WanImageToVideoPipeline"),
    ModelSpec("wan21_vace_1_3b", "Wan-AI/Wan2.1-VACE-1.3B", "Wan-AI/Wan2.1-VACE-1.3B-diffusers", "2.1", "vace",
              1536, 8960, 30, 16, 16, vace_layers=tuple(range(0, 30, 2)), pipeline_class="WanVACEPipeline"),
    ModelSpec("wan21_vace_14b", "Wan-AI/Wan2.1-VACE-14B", "Wan-AI/Wan2.1-VACE-14B-diffusers", "2.1", "vace",
              5120, 13824, 40, 16, 16, vace_layers=tuple(range(0, 40, 5)), pipeline_class="WanVACEPipeline"),
    # S2V and Animate: the helpers that write their layouts add the extra tensor groups
    # (audio encoder; face adapter and motion encoder) from the original repositories.
    ModelSpec("wan22_s2v_14b", "Wan-AI/Wan2.2-S2V-14B", None, "2.2", "s2v",
              5120, 13824, 40, 16, 16, pipeline_class=""),
    ModelSpec("wan22_animate_14b", "Wan-AI/Wan2.2-Animate-14B", "Wan-AI/Wan2.2-Animate-14B-Diffusers", "2.2",
              "animate", 5120, 13824, 40, 36, 16, image_branch=True, pipeline_class="WanAnimatePipeline"),
)

BY_KEY = {s.key: s for s in SPECS}
