"""Read a .safetensors header (tensor names, dtypes, shapes) without reading tensor data.

A safetensors file is an 8-byte little-endian header length N, N bytes of JSON
(``{name: {"dtype", "shape", "data_offsets"}}`` plus an optional ``__metadata__``), then
the tensor data.

Usage::

    from core.safetensors_header import read_header
    header = read_header("transformer/diffusion_pytorch_model-00001-of-00012.safetensors")
    print(header.parameters, header.dominant_dtype, header.expected_file_size)
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections import Counter
from dataclasses import dataclass, field
from typing import Mapping

from core.filesource import FileSource, LocalSource

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


@dataclass(frozen=True)
class TensorInfo:
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

    @property
    def data_size(self) -> int:
        return max((t.end for t in self.tensors.values()), default=0)

    @property
    def expected_file_size(self) -> int:
        """How long the file must be to hold every tensor the header lists."""
        return 8 + self.header_size + self.data_size

    @property
    def parameters(self) -> int:
        return sum(t.numel for t in self.tensors.values())

    @property
    def dominant_dtype(self) -> str | None:
        """The dtype holding the most parameters (e.g. ``BF16``), or None when empty."""
        counts: Counter[str] = Counter()
        for t in self.tensors.values():
            counts[t.dtype] += t.numel
        return counts.most_common(1)[0][0] if counts else None


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
    return header_from_json(obj, n)


def header_from_json(obj: object, header_size: int) -> SafetensorsHeader:
    """Validate a decoded header and build a SafetensorsHeader (raises HeaderError)."""
    if not isinstance(obj, dict):
        raise HeaderError("bad_shape", "has a header that is not a JSON object")
    tensors: dict[str, TensorInfo] = {}
    metadata: dict[str, str] = {}
    for name, spec in obj.items():
        if name == "__metadata__":
            if isinstance(spec, dict):
                metadata = {str(k): str(v) for k, v in spec.items()}
            continue
        try:
            dtype, shape, (start, end) = spec["dtype"], spec["shape"], spec["data_offsets"]
            ok = (isinstance(dtype, str) and isinstance(shape, list)
                  and all(isinstance(d, int) and d >= 0 for d in shape)
                  and isinstance(start, int) and isinstance(end, int) and 0 <= start <= end)
        except (TypeError, KeyError, ValueError):
            ok = False
        if not ok:
            raise HeaderError("bad_shape", f"has a malformed entry for tensor {name!r}")
        tensors[name] = TensorInfo(dtype, tuple(shape), start, end)
    return SafetensorsHeader(header_size, tensors, metadata)


def read_header(path: str | os.PathLike[str]) -> SafetensorsHeader:
    """Read the header of a local .safetensors file."""
    src = LocalSource(os.fspath(path))
    return parse_header(src, src.files[0].path, src.files[0].size)
