"""Seed name kept for scripts: Model Check lives in :mod:`core.check`.

Usage::

    from core.detector import ArchitectureDetector
    arch = ArchitectureDetector().detect_model_architecture("/models/Wan2.2-TI2V-5B-Diffusers")
    print(arch.architecture_type.value, arch.signature.is_wan_architecture())
"""

from core.check.detect import ArchitectureDetector, ModelArchitecture, ModelSignature, inspect
from core.check.report import ArchitectureType, Finding, ModelReport, Severity

__all__ = ["ArchitectureDetector", "ArchitectureType", "Finding", "ModelArchitecture", "ModelReport",
           "ModelSignature", "Severity", "inspect"]
