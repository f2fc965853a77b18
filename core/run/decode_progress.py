"""The VAE decode's own progress: one event per decoded chunk (latent frame, per tile when tiled).

The Wan VAE (diffusers' ``AutoencoderKLWan``) decodes one latent frame at a time, and tile by
tile when tiling is on; on a CPU this is most of a short run. Without this, the bar sits at
the decode's first percent for all that time. A forward hook on ``vae.decoder`` counts the
chunks; the total is worked out from the latents' shape and the VAE's tiling settings when
``vae.decode`` is called, so the events say "chunk 3 of 12" with an ETA from the chunks so far::

    from core.run.decode_progress import decode_progress

    with decode_progress(pipe.vae, progress.span(91, 97)):     # around the pipeline call
        frames = pipe(**kwargs).frames[0]

A VAE without a ``decoder`` module (another family) is left alone.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from core.progress import Progress

MESSAGE = "Decoding the video (VAE)"


def decode_chunks(vae: Any, latents_shape: tuple[int, ...]) -> int:
    """How many times ``vae.decode`` runs ``vae.decoder`` for latents of this shape (batch, channels,
    frames, height, width): each latent frame, times the tiles when tiling applies, times the batch
    when slicing splits it."""
    batch, _, frames, height, width = (int(v) for v in latents_shape[:5])
    tiles = 1
    ratio = int(getattr(vae, "spatial_compression_ratio", 8) or 8)
    min_h = int(getattr(vae, "tile_sample_min_height", 0) or 0) // ratio
    min_w = int(getattr(vae, "tile_sample_min_width", 0) or 0) // ratio
    if getattr(vae, "use_tiling", False) and min_h and min_w and (width > min_w or height > min_h):
        stride_h = max(1, int(getattr(vae, "tile_sample_stride_height", min_h * ratio)) // ratio)
        stride_w = max(1, int(getattr(vae, "tile_sample_stride_width", min_w * ratio)) // ratio)
        tiles = math.ceil(height / stride_h) * math.ceil(width / stride_w)
    slices = batch if getattr(vae, "use_slicing", False) and batch > 1 else 1
    return max(1, frames * tiles * slices)


class _Counter:
    """Counts decoder calls of one ``vae.decode`` and sends an event after each."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.total = 0
        self.done = 0
        self.start = 0.0

    def begin(self, total: int) -> None:
        self.total, self.done, self.start = total, 0, time.perf_counter()
        self.progress.emit("decode", f"{MESSAGE} · part 1 of {total}", 0.0)

    def chunk(self, *_: Any) -> None:
        if not self.total:
            return
        self.done = min(self.total, self.done + 1)
        per_chunk = (time.perf_counter() - self.start) / self.done
        left = per_chunk * (self.total - self.done)
        where = f"part {min(self.done + 1, self.total)} of {self.total}" if self.done < self.total else "finishing"
        self.progress.emit("decode", f"{MESSAGE} · {where}", 100.0 * self.done / self.total, eta_seconds=left)


@contextmanager
def decode_progress(vae: Any, progress: Progress) -> Iterator[None]:
    """Report the decode of ``vae`` chunk by chunk to ``progress`` (its own 0-100) while inside."""
    decoder = getattr(vae, "decoder", None)
    if vae is None or decoder is None or not hasattr(decoder, "register_forward_hook"):
        yield
        return
    counter = _Counter(progress)
    own = vars(vae).get("decode")
    original = vae.decode

    def decode(z: Any, *args: Any, **kwargs: Any) -> Any:
        shape = tuple(getattr(z, "shape", ()))
        if len(shape) == 5:
            counter.begin(decode_chunks(vae, shape))
        return original(z, *args, **kwargs)

    hook = decoder.register_forward_hook(counter.chunk)
    vae.decode = decode
    try:
        yield
    finally:
        hook.remove()
        if own is not None:
            vae.decode = own
        else:
            del vae.decode
