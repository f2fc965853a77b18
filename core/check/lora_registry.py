"""The step-distillation LoRAs people use with Wan 2.1 / 2.2, and the settings each needs.

A distillation LoRA makes a video in a few steps without classifier-free guidance; with the
model's own 40-50 steps and guidance 5 it gives burnt, over-saturated frames. Each entry
says which files it is (patterns on the lower-cased file name), the base and expert it was
trained for, and the steps, guidance and scheduler shift its publisher recommends.

Usage::

    from core.check.lora_registry import distill_entry
    entry = distill_entry("Wan2.2-Lightning_T2V-A14B-4steps-lora_HIGH_fp16.safetensors")
    entry.steps, entry.guidance, entry.shift       # (4, 1.0, 5.0)
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class DistillLora:
    """One family of step-distillation LoRA files and the settings they need."""

    id: str
    title: str
    patterns: tuple[str, ...]     # regular expressions on the lower-cased file name (all must match)
    base: str                     # "wan-14b", "wan-5b", "wan-1.3b"
    task: str | None              # "t2v", "i2v" or None (either)
    steps: int
    guidance: float
    shift: float
    source: str                   # where the numbers come from

    def preset(self) -> dict[str, float | int]:
        """The settings it needs, in GenerationConfig's names (``flow_shift``: the scheduler's shift)."""
        return {"num_inference_steps": self.steps, "guidance_scale": self.guidance,
                "guidance_scale_2": self.guidance, "flow_shift": self.shift}


DISTILL_LORAS: tuple[DistillLora, ...] = (
    # lightx2v, Wan2.1 T2V 14B StepDistill-CfgDistill: 4 steps, no CFG (guidance 1), shift 5.
    # Source: https://huggingface.co/lightx2v/Wan2.1-T2V-14B-StepDistill-CfgDistill-Lightx2v (model card:
    # "4 steps ... without classifier-free guidance"; loras/Wan21_T2V_14B_lightx2v_cfg_step_distill_lora_rank64);
    # Kijai/WanVideo_comfy Lightx2v/lightx2v_T2V_14B_cfg_step_distill_v2_lora_rank128_bf16.
    DistillLora("lightx2v-wan21-t2v-14b", "lightx2v Wan2.1 T2V 14B step/CFG distill",
                (r"t2v", r"(step_?distill|lightx2v)", r"14b"), "wan-14b", "t2v", 4, 1.0, 5.0,
                "huggingface.co/lightx2v/Wan2.1-T2V-14B-StepDistill-CfgDistill-Lightx2v"),
    # lightx2v, Wan2.1 I2V 14B 480p: Kijai/WanVideo_comfy Lightx2v/lightx2v_I2V_14B_480p_cfg_step_distill_rank*_bf16
    # and lightx2v/Wan2.1-Distill-Loras wan2.1_i2v_lora_rank64_lightx2v_4step (4 steps, guidance 1).
    DistillLora("lightx2v-wan21-i2v-14b", "lightx2v Wan2.1 I2V 14B step/CFG distill",
                (r"i2v", r"(step_?distill|lightx2v)", r"(14b|wan2\.?1)"), "wan-14b", "i2v", 4, 1.0, 5.0,
                "huggingface.co/lightx2v/Wan2.1-Distill-Loras"),
    # Wan2.2-Lightning T2V A14B, one file per expert (..._HIGH_fp16 / ..._LOW_fp16): 4 steps (2 + 2), guidance 1,
    # shift 5. Source: https://huggingface.co/lightx2v/Wan2.2-Lightning (README, Wan2.2-T2V-A14B-4steps-lora-*);
    # Kijai/WanVideo_comfy Wan22-Lightning/Wan2.2-Lightning_T2V-A14B-4steps-lora_HIGH_fp16.
    DistillLora("lightning-wan22-t2v-a14b", "Wan2.2-Lightning T2V A14B",
                (r"lightning", r"t2v", r"a14b"), "wan-14b", "t2v", 4, 1.0, 5.0,
                "huggingface.co/lightx2v/Wan2.2-Lightning"),
    DistillLora("lightning-wan22-i2v-a14b", "Wan2.2-Lightning I2V A14B",
                (r"lightning", r"i2v", r"a14b"), "wan-14b", "i2v", 4, 1.0, 5.0,
                "huggingface.co/lightx2v/Wan2.2-Lightning"),
    # lightx2v Wan2.2 A14B 4-step LoRAs, one per expert:
    # lightx2v/Wan2.2-Distill-Loras wan2.2_i2v_A14b_high_noise_lora_rank64_lightx2v_4step_1022,
    # wan2.2_t2v_A14b_low_noise_lora_rank64_lightx2v_4step_1217 (4 steps, guidance 1).
    DistillLora("lightx2v-wan22-a14b", "lightx2v Wan2.2 A14B 4-step distill",
                (r"a14b", r"lightx2v", r"4_?step"), "wan-14b", None, 4, 1.0, 5.0,
                "huggingface.co/lightx2v/Wan2.2-Distill-Loras"),
    # Wan2.2 TI2V-5B: FastWan2.2-TI2V-5B (FastVideo, DMD distillation, full attention) makes a video in 3 steps
    # without CFG. Source: https://huggingface.co/FastVideo/FastWan2.2-TI2V-5B-FullAttn-Diffusers (model card:
    # "efficient 3-step inference") and the FastVideo blog post "FastWan" (2025-08); the LoRA extracted from it
    # is Kijai/WanVideo_comfy FastWan/Wan2_2_5B_FastWanFullAttn_lora_rank_128_bf16. Shift 3: Wan2GP's
    # defaults/ti2v_2_2_fastwan.json for that same LoRA (guidance_scale 1, flow_shift 3, 3 steps); FastVideo's
    # card gives no shift of its own. lightx2v publishes no 5B step-distillation LoRA (2025-11).
    DistillLora("fastwan-wan22-ti2v-5b", "FastWan2.2 TI2V-5B (3-step DMD)",
                (r"fastwan", r"5b"), "wan-5b", None, 3, 1.0, 3.0,
                "huggingface.co/FastVideo/FastWan2.2-TI2V-5B-FullAttn-Diffusers"),
)

_STEPS = re.compile(r"(?<![0-9])(\d{1,2})[ _-]?steps?(?![a-z])")
_DISTILL_WORDS = re.compile(r"distill|lightning|lightx2v|causvid|turbo|accvid|fastwan")


def distill_entry(file_name: str) -> DistillLora | None:
    """The registry entry a LoRA's file name belongs to, or None.

    >>> distill_entry("lightx2v_I2V_14B_480p_cfg_step_distill_rank128_bf16.safetensors").id
    'lightx2v-wan21-i2v-14b'
    """
    name = file_name.lower()
    for entry in DISTILL_LORAS:
        if all(re.search(p, name) for p in entry.patterns):
            return entry
    return None


def distill_steps(texts: list[str]) -> int | None:
    """A step count that a distillation LoRA's name or metadata states ("4steps", "4step", "8-steps").

    >>> distill_steps(["wan2.2_i2v_A14b_high_noise_lora_rank64_lightx2v_4step_1022"])
    4
    """
    for text in texts:
        low = text.lower()
        m = _STEPS.search(low)
        if m and 1 <= int(m.group(1)) <= 16:
            return int(m.group(1))
        if _DISTILL_WORDS.search(low):
            entry = distill_entry(low)
            if entry is not None:
                return entry.steps
    return None
