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
from functools import partial
from operator import itemgetter, le
from dataclasses import dataclass, field
from typing import Mapping, NamedTuple

from core.check.filesource import FileSource, LocalSource

MAX_HEADER_BYTES = 100 * 2**20  # the safetensors library refuses larger headers too

DTYPE_BYTES: Mapping[str, float] = {
    "F64": 8, "I64": 8, "U64": 8, "F32": 4, "I32": 4, "U32": 4, "F16": 2, "BF16": 2,
    "I16": 2, "U16": 2, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1, "I8": 1, "U8": 1,
    "BOOL": 1, "F6_E2M3": 0.75, "F6_E3M2": 0.75, "F4": 0.5, "C64": 8,
}


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
    try:
        obj = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        raise HeaderError("not_json", "has a header that is not valid JSON (not a safetensors file, or damaged)") from None
    # Without a "-" anywhere in the header no dimension can be negative: skip that check.
    return header_from_json(obj, n, may_be_negative=b"-" in raw)


def header_from_json(obj: object, header_size: int, may_be_negative: bool = True) -> SafetensorsHeader:
    """Validate a decoded header and build a SafetensorsHeader (raises HeaderError).

    Every check reads thousands of tensors (about 2,600 for an A14B folder), so the
    header is read column by column with C-level ``map`` calls instead of a Python loop
    per tensor: this is most of Model Check's time.
    """
    if not isinstance(obj, dict):
        raise HeaderError("bad_shape", "has a header that is not a JSON object")
    raw_meta = obj.pop("__metadata__", None)
    metadata = {str(k): str(v) for k, v in raw_meta.items()} if isinstance(raw_meta, dict) else {}
    specs = list(obj.values())
    try:
        dtypes = list(map(itemgetter("dtype"), specs))
        shapes = list(map(tuple, map(itemgetter("shape"), specs)))
        offsets = list(map(tuple, map(itemgetter("data_offsets"), specs)))
        starts, ends = (list(col) for col in zip(*offsets)) if offsets else ([], [])
        numels = list(map(math.prod, shapes))  # a non-number in a shape gives a non-int, or TypeError
        ok = (set(map(type, numels)) <= {int} and set(map(type, starts + ends)) <= {int}
              and set(map(type, dtypes)) <= {str} and set(map(len, offsets)) <= {2}
              and (not may_be_negative or min(map(min, filter(None, shapes)), default=0) >= 0)
              and all(map(le, starts, ends)) and min(starts, default=0) >= 0)
        dtype_parameters: dict[str, int] = {}
        spans: dict[str, int] = {}  # bytes each dtype's offsets cover
        if len(set(dtypes)) == 1:   # the usual case, without a Python loop
            dtype_parameters[dtypes[0]] = sum(numels)
            spans[dtypes[0]] = sum(ends) - sum(starts)
        else:
            for dtype, numel, start, end in zip(dtypes, numels, starts, ends):
                dtype_parameters[dtype] = dtype_parameters.get(dtype, 0) + numel
                spans[dtype] = spans.get(dtype, 0) + end - start
        # Each dtype's tensors must fill exactly the bytes their offsets span.
        ok = ok and all(int(count * DTYPE_BYTES[d]) == spans[d]
                        for d, count in dtype_parameters.items() if d in DTYPE_BYTES)
    except (TypeError, KeyError, ValueError, AttributeError):
        ok = False
    if not ok:
        raise HeaderError("bad_shape", "has a malformed tensor entry in its header")
    make = partial(tuple.__new__, TensorInfo)  # C-level, unlike TensorInfo._make
    tensors = dict(zip(obj, map(make, zip(dtypes, shapes, starts, ends))))
    return SafetensorsHeader(header_size, tensors, metadata, sum(numels), max(ends, default=0), dtype_parameters)


def read_header(path: str | os.PathLike[str]) -> SafetensorsHeader:
    """Read the header of a local .safetensors file."""
    src = LocalSource(os.fspath(path))
    return parse_header(src, src.files[0].path, src.files[0].size)
