"""Read a .safetensors header (tensor names, dtypes, shapes) without reading tensor data.

A safetensors file is an 8-byte little-endian header length N, N bytes of JSON
(``{name: {"dtype", "shape", "data_offsets"}}`` plus an optional ``__metadata__``), then
the tensor data.

Usage::

    from core.check.safetensors_header import read_header
    header = read_header("transformer/diffusion_pytorch_model-00001-of-00012.safetensors")
    print(header.parameters, header.dominant_dtype, header.expected_file_size)
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from itertools import chain, repeat
from operator import eq, itemgetter, le, mul, sub
from typing import NamedTuple

from core.check.filesource import FileSource, LocalSource

MAX_HEADER_BYTES = 100 * 2**20  # the safetensors library refuses larger headers too

MAX_RANK = 16               # dimensions of one tensor (real ones have at most 5)
MAX_DIM = 2**48             # one dimension, and any byte offset (256 TB)

# Bits per element of every dtype the safetensors library knows (others it refuses).
DTYPE_BITS: Mapping[str, int] = {
    "F64": 64, "I64": 64, "U64": 64, "F32": 32, "I32": 32, "U32": 32, "F16": 16, "BF16": 16,
    "I16": 16, "U16": 16, "F8_E4M3": 8, "F8_E5M2": 8, "F8_E8M0": 8, "I8": 8, "U8": 8,
    "BOOL": 8, "F6_E2M3": 6, "F6_E3M2": 6, "F4": 4, "C64": 64,
}
DTYPE_BYTES: Mapping[str, float] = {d: b / 8 for d, b in DTYPE_BITS.items()}


class HeaderError(ValueError):
    """The file is not a readable safetensors file; ``reason`` is a stable code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class TensorInfo(NamedTuple):
    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class SafetensorsHeader:
    header_size: int
    tensors: Mapping[str, TensorInfo]
    metadata: Mapping[str, str] = field(default_factory=dict)
    parameters: int = 0                                   # elements over all tensors
    data_size: int = 0                                    # bytes of tensor data the header describes
    dtype_parameters: Mapping[str, int] = field(default_factory=dict)

    @property
    def expected_file_size(self) -> int:
        """How long the file must be to hold every tensor the header lists."""
        return 8 + self.header_size + self.data_size

    @property
    def dominant_dtype(self) -> str | None:
        """The dtype holding the most parameters (e.g. ``BF16``), or None when empty."""
        counts = self.dtype_parameters
        return max(counts, key=counts.__getitem__) if counts else None


def parse_header(source: FileSource, path: str, file_size: int) -> SafetensorsHeader:
    """Parse the header of ``path`` in ``source``; raise HeaderError with a plain reason."""
    prefix = source.read_head(path, 8)
    if len(prefix) < 8:
        raise HeaderError("too_short", f"is only {file_size} bytes long, too short for a safetensors file")
    (n,) = struct.unpack("<Q", prefix)
    if n > MAX_HEADER_BYTES or n > file_size - 8:
        raise HeaderError("bad_length", f"declares a header of {n:,} bytes but the file holds {file_size:,} bytes"
                          if n > file_size - 8 else f"declares a header of {n:,} bytes, more than any real file")
    raw = source.read_head(path, 8 + n)[8:]
    if len(raw) < n:
        raise HeaderError("too_short", "ends inside its header")
    return header_from_bytes(raw)


def header_from_bytes(raw: bytes) -> SafetensorsHeader:
    """Decode and validate the JSON header ``raw`` exactly as the safetensors library reads it.

    Strict UTF-8 (no byte-order mark), one JSON object (nested too deep is not JSON); raises HeaderError.

    >>> header_from_bytes(b'{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}').parameters
    2
    """
    if not raw.lstrip(b" \t\r\n").startswith(b"{"):
        raise HeaderError("not_json", "has a header that does not start with a JSON object "
                                      "(not a safetensors file, or damaged)")
    try:
        obj = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise HeaderError("not_json", "has a header that is not valid JSON (not a safetensors file, or damaged)") from None
    # Without a "-" anywhere in the header no dimension can be negative: skip that check.
    return header_from_json(obj, len(raw), may_be_negative=b"-" in raw)


def header_from_json(obj: object, header_size: int, may_be_negative: bool = True) -> SafetensorsHeader:
    """Validate a decoded header and build a SafetensorsHeader (raises HeaderError).

    The rules are the safetensors library's: every dimension a non-negative whole number
    (checked before any arithmetic, and bounded), a known dtype, each tensor's bytes exactly
    its elements times its dtype's size, the tensors contiguous from offset 0 with no gap or
    overlap, ``__metadata__`` a map of strings. Every check reads thousands of tensors (about
    2,600 for an A14B folder), so the header is read column by column with C-level ``map``
    calls instead of a Python loop per tensor: this is most of Model Check's time.
    """
    if not isinstance(obj, dict):
        raise HeaderError("bad_shape", "has a header that is not a JSON object")
    raw_meta = obj.pop("__metadata__", None)
    if raw_meta is not None and not (isinstance(raw_meta, dict) and all(isinstance(v, str) for v in raw_meta.values())):
        raise HeaderError("bad_shape", "has __metadata__ that is not a map of texts (the safetensors library refuses it)")
    metadata = dict(raw_meta or {})
    specs = list(obj.values())
    try:
        dtypes = list(map(itemgetter("dtype"), specs))
        shapes = list(map(tuple, map(itemgetter("shape"), specs)))
        offsets = list(map(tuple, map(itemgetter("data_offsets"), specs)))
        starts, ends = (list(col) for col in zip(*offsets, strict=False)) if offsets else ([], [])
        dims = list(chain.from_iterable(shapes))
        # Types and bounds first: math.prod of a string or a 10**4000 must never run.
        ok = (set(map(type, dims)) <= {int} and set(map(type, starts + ends)) <= {int}
              and set(map(type, dtypes)) <= {str} and set(map(len, offsets)) <= {2}
              and max(map(len, shapes), default=0) <= MAX_RANK
              and max(dims, default=0) <= MAX_DIM and max(ends, default=0) <= MAX_DIM
              and (not may_be_negative or min(dims, default=0) >= 0)
              and all(map(le, starts, ends)) and min(starts, default=0) >= 0
              and set(dtypes) <= DTYPE_BITS.keys())
    except (TypeError, KeyError, ValueError, AttributeError):
        ok = False
    if not ok:
        raise HeaderError("bad_shape", "has a malformed tensor entry in its header")
    numels = list(map(math.prod, shapes))
    bits = list(map(DTYPE_BITS.__getitem__, dtypes))
    # Each tensor's bytes are exactly its elements times its dtype's size ...
    if not all(map(eq, map(mul, numels, bits), map(mul, map(sub, ends, starts), repeat(8)))):
        raise HeaderError("bad_shape", "has a tensor whose byte range does not match its shape and dtype")
    # ... and the tensors follow each other from offset 0 with no gap and no overlap.
    spans = sorted(zip(starts, ends, strict=False))
    if spans and (spans[0][0] != 0 or not all(map(eq, map(itemgetter(0), spans[1:]), map(itemgetter(1), spans)))):
        raise HeaderError("bad_shape", "has tensors whose byte ranges leave gaps or overlap")
    dtype_parameters: dict[str, int] = {}
    if len(set(dtypes)) == 1:   # the usual case, without a Python loop
        dtype_parameters[dtypes[0]] = sum(numels)
    else:
        for dtype, numel in zip(dtypes, numels, strict=False):
            dtype_parameters[dtype] = dtype_parameters.get(dtype, 0) + numel
    make = partial(tuple.__new__, TensorInfo)  # C-level, unlike TensorInfo._make
    tensors = dict(zip(obj, map(make, zip(dtypes, shapes, starts, ends, strict=False)), strict=False))
    return SafetensorsHeader(header_size, tensors, metadata, sum(numels), max(ends, default=0), dtype_parameters)


def read_header(path: str | os.PathLike[str]) -> SafetensorsHeader:
    """Read the header of a local .safetensors file."""
    src = LocalSource(os.fspath(path))
    return parse_header(src, src.files[0].path, src.files[0].size)
