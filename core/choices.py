"""The words a user may give for precision and offload: one list for config.yaml, the CLI and the UI.

Usage::

    from core.choices import DTYPES, OFFLOADS, PRECISIONS
    parser.add_argument("--precision", choices=PRECISIONS)     # auto, bf16, fp16, fp32
    parser.add_argument("--offload", choices=OFFLOADS)         # auto, none, model, group, sequential, disk
    assert plan.precision in DTYPES                            # what a plan settles on ("auto" resolved)

``core.run.optimize`` accepts a few more spellings in an ``optimization_config`` (``float16``,
``balanced``, ``placement=``); these lists are the words offered to people.
"""

from __future__ import annotations

DTYPES: tuple[str, ...] = ("bf16", "fp16", "fp32")
PRECISIONS: tuple[str, ...] = ("auto", *DTYPES)
OFFLOADS: tuple[str, ...] = ("auto", "none", "model", "group", "sequential", "disk")

#: A plan's placement in a few words (the Generate tab's fit badge, ``check``'s fit lines).
PLACEMENT_WORDS: dict[str, str] = {"all_on_device": "all on the GPU", "model_offload": "model offload",
                                   "group_offload": "group offload", "sequential_offload": "sequential offload",
                                   "balanced": "spread over the GPUs", "disk_offload": "offloaded to disk"}

__all__ = ["DTYPES", "OFFLOADS", "PLACEMENT_WORDS", "PRECISIONS"]
