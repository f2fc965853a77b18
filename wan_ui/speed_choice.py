"""The Generate tab's speed controls: the preset (quality, balanced, fast, auto) and, in Advanced, each knob.

The words go into the plan's ``optimization_config`` (core.run.speed plans and explains them;
a knob this computer cannot run is ignored there with its reason, shown with the plan)::

    from wan_ui.speed_choice import speed_radio, speed_knobs, speed_overrides
    speed = speed_radio()                 # in the form
    knobs = speed_knobs()                 # inside the Advanced fold: cache, thresholds, attention, compile
    speed_overrides("fast", "auto", None, None, "auto", "auto")    # {"speed": "fast"}; quality gives {}

No torch or diffusers: only the words.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

PRESET_CHOICES = [("Quality", "quality"), ("Balanced", "balanced"), ("Fast", "fast"), ("Auto", "auto")]
PRESET_INFO = ("Quality computes every step. Balanced and Fast skip steps that barely change the video "
               "(MagCache; the first run of a model calibrates it) and use a faster attention kernel where one is "
               "installed; Auto takes what this computer runs best. The plan below says what each choice does.")
CACHE_CHOICES = [("Preset's", "auto"), ("None", "none"), ("MagCache", "magcache"),
                 ("First Block Cache", "fbcache"), ("TaylorSeer", "taylorseer")]
ATTENTION_CHOICES = [("Preset's", "auto"), ("PyTorch (native)", "native"), ("FlashAttention 2", "flash"),
                     ("SageAttention", "sage"), ("cuDNN", "_native_cudnn"), ("xformers", "xformers")]
COMPILE_CHOICES = [("Preset's", "auto"), ("On", "on"), ("Off", "off")]


def speed_radio() -> Any:
    """The preset control (quality by default: the video as diffusers makes it)."""
    return gr.Radio(label="Speed", choices=PRESET_CHOICES, value="quality", info=PRESET_INFO,
                    elem_id="wc-gen-speed")


def speed_knobs() -> list[Any]:
    """Advanced: step cache, its threshold per expert, attention kernel, compile (in this order)."""
    with gr.Row():
        cache = gr.Dropdown(label="Step cache", choices=CACHE_CHOICES, value="auto", elem_id="wc-gen-cache")
        threshold = gr.Number(label="Cache threshold", value=None, minimum=0, step=0.01,
                              info="MagCache or First Block Cache; empty: the preset's", elem_id="wc-gen-threshold")
        threshold_2 = gr.Number(label="Threshold, low-noise expert", value=None, minimum=0, step=0.01,
                                info="A14B models; empty: as the first", elem_id="wc-gen-threshold-2")
    with gr.Row():
        attention = gr.Dropdown(label="Attention kernel", choices=ATTENTION_CHOICES, value="auto",
                                elem_id="wc-gen-attention")
        compile_ = gr.Radio(label="Compile the transformer blocks", choices=COMPILE_CHOICES, value="auto",
                            elem_id="wc-gen-compile")
    return [cache, threshold, threshold_2, attention, compile_]


def speed_overrides(speed: Any = None, cache: Any = None, threshold: Any = None, threshold_2: Any = None,
                    attention: Any = None, compile_: Any = None) -> dict[str, Any]:
    """The controls as ``optimization_config`` keys (quality, the default, and "auto" knobs are left out)."""
    out: dict[str, Any] = {}
    if speed not in (None, "", "quality"):
        out["speed"] = speed
    for key, value in (("cache", cache), ("cache_threshold", threshold),
                       ("cache_threshold_2", threshold_2), ("attention_backend", attention)):
        if value not in (None, "", "auto"):
            out[key] = value
    if compile_ in ("on", "off"):
        out["compile"] = compile_ == "on"
    return out
