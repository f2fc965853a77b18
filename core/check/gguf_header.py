"""Read a GGUF file's header (metadata and tensor infos) without reading tensor data.

A GGUF file is the magic ``GGUF``, a version (2 or 3), the tensor and key-value counts,
the metadata key-values (``general.architecture`` = ``"wan"`` for city96's and QuantStack's
Wan transformers), one info per tensor (name, dimensions innermost first, GGML type, offset
into the data section), padding to ``general.alignment`` (32), then the data. Only the
header is read, in growing pieces from the start of the file; every count, length and
offset is checked against the file before it is used, so an HTML page, a cut-short
download or a hostile file ends in a :class:`GGUFError` with a reason, never in a huge
allocation.

Usage::

    from core.check.gguf_header import read_gguf_header
    header = read_gguf_header("wan2.2_ti2v_5B-Q4_K_M.gguf")
    header.architecture, header.type_counts, header.bits_per_weight, header.expected_file_size
    header.tensor_infos()["patch_embedding.weight"].shape     # (3072, 48, 1, 2, 2): torch order

The quantization types the installed diffusers can run (:func:`supported_types`) are read
from diffusers' own table, without importing it (no torch needed to check a model).
"""

from __future__ import annotations

import importlib.util
import math
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from core.check.filesource import FileSource, LocalSource
from core.check.safetensors_header import TensorInfo
from core.units import format_bytes

MAGIC = b"GGUF"
FIRST_READ = 256 * 2**10         # a diffusion model's header fits (14B: about 120 KB)
MAX_HEADER_BYTES = 256 * 2**20  # an LLM's tokenizer arrays take tens of MB; more is not a header
MAX_DIMS = 8                    # GGML has 4; city96's Wan files carry one 5-D tensor
MAX_COUNT = 2**32               # tensors, key-values, array elements
MAX_DIM = 2**48
SMALL_ARRAY = 64                # arrays kept whole in ``metadata``; longer ones only counted
DEFAULT_ALIGNMENT = 32
ORIG_SHAPE_KEY = "comfy.gguf.orig_shape."   # ComfyUI-GGUF: the shape before a reshape for quantizing

# GGML tensor types: id -> (name, values per block, bytes per block) (ggml's type_traits).
GGML_TYPES: Mapping[int, tuple[str, int, int]] = {
    0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20), 6: ("Q5_0", 32, 22),
    7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34), 9: ("Q8_1", 32, 40), 10: ("Q2_K", 256, 84),
    11: ("Q3_K", 256, 110), 12: ("Q4_K", 256, 144), 13: ("Q5_K", 256, 176), 14: ("Q6_K", 256, 210),
    15: ("Q8_K", 256, 292), 16: ("IQ2_XXS", 256, 66), 17: ("IQ2_XS", 256, 74), 18: ("IQ3_XXS", 256, 98),
    19: ("IQ1_S", 256, 50), 20: ("IQ4_NL", 32, 18), 21: ("IQ3_S", 256, 110), 22: ("IQ2_S", 256, 82),
    23: ("IQ4_XS", 256, 136), 24: ("I8", 1, 1), 25: ("I16", 1, 2), 26: ("I32", 1, 4), 27: ("I64", 1, 8),
    28: ("F64", 1, 8), 29: ("IQ1_M", 256, 56), 30: ("BF16", 1, 2), 34: ("TQ1_0", 256, 54),
    35: ("TQ2_0", 256, 66), 39: ("MXFP4", 32, 17), 40: ("NVFP4", 64, 36), 41: ("Q1_0", 128, 18),
}
# Types diffusers runs as plain tensors (no dequantizing); the rest need its GGUF kernels.
PLAIN_TYPES = frozenset({"F32", "F16"})
# diffusers 0.42's table, for when the installed diffusers' file cannot be read.
DIFFUSERS_042_TYPES = frozenset({"BF16", "Q8_0", "Q5_1", "Q5_0", "Q4_1", "Q4_0", "Q6_K", "Q5_K", "Q4_K",
                                 "Q3_K", "Q2_K", "IQ4_NL", "IQ4_XS"})

# Metadata value types: id -> struct format (None: string, array).
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9


class GGUFError(ValueError):
    """Not a readable GGUF header; ``reason`` is a stable word: empty, bad_magic, bad_version,
    too_short (the header runs past the end of the file) or bad_header."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class GGUFTensor:
    """One tensor info: ``dims`` as stored (innermost first), ``shape`` in torch's order."""

    name: str
    type_id: int
    dims: tuple[int, ...]
    offset: int          # from the start of the data section
    nbytes: int
    shape: tuple[int, ...]

    @property
    def type_name(self) -> str:
        return GGML_TYPES.get(self.type_id, (f"type {self.type_id}", 1, 0))[0]

    @property
    def numel(self) -> int:
        return math.prod(self.dims)


@dataclass(frozen=True)
class GGUFHeader:
    """What a GGUF header says; built by :func:`parse_gguf_header`."""

    version: int
    metadata: Mapping[str, Any]
    tensors: Mapping[str, GGUFTensor]
    data_offset: int                     # where the data section starts (aligned)
    unknown_types: tuple[int, ...] = ()  # type ids this table does not know
    array_lengths: Mapping[str, int] = field(default_factory=dict)  # long arrays: only their length

    @property
    def architecture(self) -> str | None:
        value = self.metadata.get("general.architecture")
        return value if isinstance(value, str) else None

    @property
    def expected_file_size(self) -> int:
        """How long the file must be to hold every tensor the header lists."""
        return self.data_offset + max((t.offset + t.nbytes for t in self.tensors.values()), default=0)

    @property
    def parameters(self) -> int:
        return sum(t.numel for t in self.tensors.values())

    @property
    def data_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors.values())

    @property
    def type_counts(self) -> dict[str, int]:
        """Tensors per GGML type, e.g. ``{"F32": 727, "Q4_K": 298, "Q6_K": 70}``."""
        counts: dict[str, int] = {}
        for t in self.tensors.values():
            counts[t.type_name] = counts.get(t.type_name, 0) + 1
        return dict(sorted(counts.items()))

    @property
    def type_parameters(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for t in self.tensors.values():
            counts[t.type_name] = counts.get(t.type_name, 0) + t.numel
        return counts

    @property
    def dominant_dtype(self) -> str | None:
        """The type holding the most parameters (e.g. ``Q4_K``), as safetensors headers say it."""
        params = self.type_parameters
        return max(params, key=params.__getitem__) if params else None

    @property
    def bits_per_weight(self) -> float | None:
        """Stored bits per parameter over all tensors (Q8_0 8.5, Q4_K 4.5, F32 32)."""
        n = self.parameters
        return round(8 * self.data_bytes / n, 3) if n else None

    def tensor_infos(self) -> dict[str, TensorInfo]:
        """The tensors as :class:`TensorInfo` (GGML type name, torch-order shape, absolute byte range),
        so the safetensors signal tables (``core.check.dit``) read them unchanged."""
        return {n: TensorInfo(t.type_name, t.shape, self.data_offset + t.offset,
                              self.data_offset + t.offset + t.nbytes) for n, t in self.tensors.items()}


def quant_types_of(header: GGUFHeader) -> list[str]:
    """The types that need diffusers' GGUF kernels (everything but F32/F16), most parameters first."""
    params = header.type_parameters
    return sorted((t for t in params if t not in PLAIN_TYPES), key=lambda t: -params[t])


@cache
def supported_types() -> frozenset[str]:
    """The GGML types the installed diffusers can load (its ``dequantize_functions`` plus F32/F16).

    Read from diffusers' source text, not imported (Model Check works without torch); the
    table of diffusers 0.42 when that file cannot be found.
    """
    found: set[str] = set()
    try:
        spec = importlib.util.find_spec("diffusers")
        if spec is not None and spec.origin:
            text = (Path(spec.origin).parent / "quantizers" / "gguf" / "utils.py").read_text(encoding="utf-8")
            table = text.split("dequantize_functions", 1)[1].split("}", 1)[0] if "dequantize_functions" in text else ""
            found = set(re.findall(r"GGMLQuantizationType\.(\w+)\s*:", table))
    except (OSError, ValueError, ImportError):
        found = set()
    return frozenset(found or DIFFUSERS_042_TYPES) | PLAIN_TYPES


def what_it_is(head: bytes) -> str:
    """What the first bytes of a file that is not GGUF look like, for a sentence."""
    text = head[:512].lstrip().lower()
    if not head:
        return "an empty file"
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<?xml")) or b"<html" in text:
        return "a web page (HTML), probably a login or error page saved instead of the model"
    if text.startswith((b"{", b"[")):
        return "a JSON text, not model weights"
    if head[:2] == b"PK":
        return "a zip archive"
    if len(head) >= 8 and struct.unpack_from("<Q", head)[0] < 2**27 and head[8:9] == b"{":
        return "a .safetensors file under a .gguf name"
    if not head.strip(b"\0"):
        return "a file of zero bytes (a download that was preallocated and never filled)"
    return "not a GGUF file (it does not start with GGUF)"


class _NeedMore(Exception):
    """The piece read so far ends inside the header."""


class _Reader:
    def __init__(self, data: bytes, file_size: int) -> None:
        self.data, self.pos, self.file_size = data, 0, file_size

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > self.file_size:
            raise GGUFError("too_short", "ends inside its header (the file is cut short)")
        if self.pos + n > len(self.data):
            raise _NeedMore()
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str) -> Any:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def count(self, what: str) -> int:
        n = self.unpack("<Q")
        if n > MAX_COUNT:
            raise GGUFError("bad_header", f"claims {n:,} {what}; no real file has so many")
        return n

    def string(self) -> str:
        n = self.unpack("<Q")
        if n > self.file_size:
            raise GGUFError("bad_header", f"holds a text of {n:,} bytes, longer than the file")
        return self.take(n).decode("utf-8", "replace")

    def value(self, vtype: int, key: str, lengths: dict[str, int]) -> Any:
        if vtype in _SCALARS:
            return self.unpack(_SCALARS[vtype])
        if vtype == _STRING:
            return self.string()
        if vtype != _ARRAY:
            raise GGUFError("bad_header", f"has a metadata value of unknown type {vtype} ({key[:80]})")
        etype, n = self.unpack("<I"), self.count("array elements")
        if etype == _ARRAY:
            raise GGUFError("bad_header", f"nests arrays in {key[:80]}")
        if etype in _SCALARS and n > SMALL_ARRAY:   # skip without building a list
            self.take(n * struct.calcsize(_SCALARS[etype]))
            lengths[key] = n
            return None
        items = [self.value(etype, key, lengths) for _ in range(n)]
        if n > SMALL_ARRAY:
            lengths[key] = n
            return None
        return items


def parse_gguf_header(src: FileSource, path: str, size: int) -> GGUFHeader:
    """Parse the header of ``path`` (``size`` bytes long) from ``src``; raises GGUFError or OSError."""
    want = min(size, FIRST_READ)
    while True:
        data = src.read_head(path, want)
        try:
            return _parse(data, size)
        except _NeedMore:
            if len(data) < want or want >= min(size, MAX_HEADER_BYTES):
                if want >= MAX_HEADER_BYTES:
                    raise GGUFError("bad_header", f"has a header larger than {format_bytes(MAX_HEADER_BYTES)}") from None
                raise GGUFError("too_short", "ends inside its header (the file is cut short)") from None
            want = min(size, MAX_HEADER_BYTES, want * 4)


def read_gguf_header(path: str | Path) -> GGUFHeader:
    """The header of one GGUF file on disk (see :func:`parse_gguf_header`)."""
    src = LocalSource(str(path))
    return parse_gguf_header(src, src.files[0].path, src.files[0].size)


def _parse(data: bytes, file_size: int) -> GGUFHeader:
    if file_size == 0:
        raise GGUFError("empty", "is empty (0 bytes)")
    if data[:4] != MAGIC:
        if file_size < 4 and MAGIC.startswith(data):
            raise GGUFError("too_short", "ends inside its header (the file is cut short)")
        raise GGUFError("bad_magic", f"is {what_it_is(data)}")
    r = _Reader(data, file_size)
    r.take(4)
    version = r.unpack("<I")
    if version not in (2, 3):
        raise GGUFError("bad_version", f"is GGUF version {version}; only versions 2 and 3 are in use")
    n_tensors, n_kv = r.count("tensors"), r.count("metadata entries")
    metadata: dict[str, Any] = {}
    lengths: dict[str, int] = {}
    for _ in range(n_kv):
        key = r.string()
        metadata[key] = r.value(r.unpack("<I"), key, lengths)
    alignment = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or isinstance(alignment, bool) or not 0 < alignment <= 2**16 \
            or alignment & (alignment - 1):
        raise GGUFError("bad_header", f"has an alignment of {alignment!r}, not a power of two")
    infos: list[tuple[str, tuple[int, ...], int, int]] = []
    for _ in range(n_tensors):
        name = r.string()
        n_dims = r.unpack("<I")
        if not 0 < n_dims <= MAX_DIMS:
            raise GGUFError("bad_header", f"gives tensor {name[:80]} {n_dims} dimensions")
        dims = tuple(r.unpack("<Q") for _ in range(n_dims))
        if any(d > MAX_DIM for d in dims):
            raise GGUFError("bad_header", f"gives tensor {name[:80]} an impossible size {list(dims)}")
        infos.append((name, dims, r.unpack("<I"), r.unpack("<Q")))
    data_offset = -(-r.pos // alignment) * alignment
    tensors: dict[str, GGUFTensor] = {}
    unknown: set[int] = set()
    for name, dims, type_id, offset in infos:
        _, block, type_size = GGML_TYPES.get(type_id, ("", 1, 0))
        if type_id not in GGML_TYPES:
            unknown.add(type_id)
        elif dims[0] % block:
            raise GGUFError("bad_header", f"stores tensor {name[:80]} in blocks of {block} but its rows hold "
                                          f"{dims[0]} values")
        nbytes = math.prod(dims) // block * type_size
        if offset > MAX_DIM or offset % alignment:
            raise GGUFError("bad_header", f"puts tensor {name[:80]} at a misaligned or impossible offset")
        orig = metadata.get(ORIG_SHAPE_KEY + name)
        shape = tuple(reversed(dims))
        if isinstance(orig, list) and orig and all(isinstance(d, int) and 0 < d <= MAX_DIM for d in orig) \
                and math.prod(orig) == math.prod(dims):
            shape = tuple(orig)
        tensors[name] = GGUFTensor(name, type_id, dims, offset, nbytes, shape)
    return GGUFHeader(version, metadata, tensors, data_offset, tuple(sorted(unknown)), lengths)
