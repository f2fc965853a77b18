"""Seed name kept for scripts: loading and generation live in :mod:`core.run`.

Usage::

    from core.loader import GenerationConfig, WanPipelineLoader
    wrapper = WanPipelineLoader().load_wan_pipeline("/models/Wan2.2-TI2V-5B-Diffusers")
    result = wrapper.generate(GenerationConfig(prompt="A red fox in the snow", num_frames=33))
"""

from core.run.generation import GenerationConfig, GenerationResult
from core.run.load import WanPipelineLoader, WanPipelineWrapper
from core.run.pipelines import PipelineManager

__all__ = ["GenerationConfig", "GenerationResult", "PipelineManager", "WanPipelineLoader", "WanPipelineWrapper"]
