"""The header reader agrees with the safetensors library and refuses malformed headers."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from core.check.safetensors_header import HeaderError, header_from_json, read_header

torch = pytest.importorskip("torch")


def test_matches_the_safetensors_library(tmp_path: Path) -> None:
    from safetensors import safe_open
    from safetensors.torch import save_file
    tensors = {"a.weight": torch.zeros(3, 4, dtype=torch.bfloat16), "b": torch.zeros(5, dtype=torch.float32),
               "scalar": torch.zeros((), dtype=torch.float16), "empty": torch.zeros(0, 7)}
    path = tmp_path / "m.safetensors"
    save_file(tensors, path, metadata={"format": "pt"})
    header = read_header(path)
    with safe_open(path, "pt") as fh:
        assert set(fh.keys()) == set(header.tensors)
        for name in fh.keys():
            assert tuple(fh.get_slice(name).get_shape()) == header.tensors[name].shape
    assert header.metadata == {"format": "pt"}
    assert header.parameters == sum(t.numel() for t in tensors.values())
    assert header.expected_file_size == path.stat().st_size
    assert header.dominant_dtype == "BF16"
    assert header.dtype_parameters == {"BF16": 12, "F32": 5, "F16": 1}


@pytest.mark.parametrize("entry", [
    {"dtype": "F32", "shape": [2, "x"], "data_offsets": [0, 8]},
    {"dtype": "F32", "shape": [-2, 2], "data_offsets": [0, 16]},
    {"dtype": "F32", "shape": [2.0], "data_offsets": [0, 8]},
    {"dtype": "F32", "shape": [2], "data_offsets": [0, 9]},
    {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]},
    {"dtype": "F32", "shape": [2], "data_offsets": [0, 8, 9]},
    {"dtype": 7, "shape": [2], "data_offsets": [0, 8]},
    {"shape": [2], "data_offsets": [0, 8]},
    [1, 2],
    "text",
])
def test_malformed_entries_are_refused(entry: object) -> None:
    with pytest.raises(HeaderError) as info:
        header_from_json({"t": entry}, 64)
    assert info.value.reason == "bad_shape"


def test_header_larger_than_the_file(tmp_path: Path) -> None:
    path = tmp_path / "short.safetensors"
    body = json.dumps({"t": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    path.write_bytes(struct.pack("<Q", len(body) + 100) + body)
    with pytest.raises(HeaderError) as info:
        read_header(path)
    assert info.value.reason == "bad_length"
