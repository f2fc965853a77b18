"""Seed name kept for scripts: the known models live in :mod:`core.check.registry`.

Usage::

    from core.registry import get_compatibility_registry
    req = get_compatibility_registry().get_pipeline_requirements("Wan-AI/Wan2.2-TI2V-5B-Diffusers")
    print(req.pipeline_class, req.vram_requirements["min_mb"])
"""

from core.check.registry import CompatibilityRegistry, ModelRequirements, RegistryError, get_compatibility_registry

__all__ = ["CompatibilityRegistry", "ModelRequirements", "RegistryError", "get_compatibility_registry"]
