"""Write real safetensors headers with a sparse hole for the data.

The files have the full apparent size of the real model (so size checks see a complete
download) but take almost no disk: the header is written, then the file is truncated
up to its full length.

Usage::

    write_sparse_safetensors(path, {"proj_out.weight": ("BF16", (64, 5120))})
    write_sharded(folder, "diffusion_pytorch_model", tensors, max_shard_bytes=5 * 2**30)
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Mapping
from pathlib import Path

from core.check.safetensors_header import DTYPE_BYTES

TensorSpecs = Mapping[str, tuple[str, tuple[int, ...]]]  # name -> (safetensors dtype, shape)


def tensor_bytes(dtype: str, shape: tuple[int, ...]) -> int:
    return int(math.prod(shape) * DTYPE_BYTES[dtype])


def write_sparse_safetensors(path: str | os.PathLike[str], tensors: TensorSpecs,
                             metadata: Mapping[str, str] | None = None) -> int:
    """Write a header for ``tensors`` and extend the file to its full size; return that size."""
    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = dict(metadata)
    offset = 0
    for name, (dtype, shape) in tensors.items():
        n = tensor_bytes(dtype, shape)
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # safetensors pads the header to 8 bytes
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(raw)))
        fh.write(raw)
        fh.truncate(8 + len(raw) + offset)
    return 8 + len(raw) + offset


def split_into_shards(tensors: TensorSpecs, max_shard_bytes: int) -> list[dict[str, tuple[str, tuple[int, ...]]]]:
    """Group tensors, in order, into shards of at most ``max_shard_bytes`` (as save_pretrained does)."""
    shards: list[dict[str, tuple[str, tuple[int, ...]]]] = [{}]
    size = 0
    for name, (dtype, shape) in tensors.items():
        n = tensor_bytes(dtype, shape)
        if shards[-1] and size + n > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = (dtype, shape)
        size += n
    return shards


def write_sharded(folder: str | os.PathLike[str], stem: str, tensors: TensorSpecs,
                  max_shard_bytes: int = 5 * 2**30, index_name: str | None = None) -> list[str]:
    """Split ``tensors`` into shards of at most ``max_shard_bytes`` like ``save_pretrained``.

    Writes ``{stem}-0000i-of-0000n.safetensors`` and ``{stem}.safetensors.index.json``
    (or ``index_name``) with a ``weight_map``; a single shard is written as ``{stem}.safetensors``
    without an index. Returns the shard file names.
    """
    shards = split_into_shards(tensors, max_shard_bytes)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if len(shards) == 1:
        write_sparse_safetensors(folder / f"{stem}.safetensors", shards[0])
        return [f"{stem}.safetensors"]
    names = [f"{stem}-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    weight_map: dict[str, str] = {}
    total = 0
    for file_name, shard in zip(names, shards):
        write_sparse_safetensors(folder / file_name, shard)
        total += sum(tensor_bytes(d, s) for d, s in shard.values())
        weight_map.update({t: file_name for t in shard})
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / (index_name or f"{stem}.safetensors.index.json")).write_text(json.dumps(index, indent=2))
    return names
