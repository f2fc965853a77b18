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

__all__ = ["DTYPES", "OFFLOADS", "PRECISIONS"]
