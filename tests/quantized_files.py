"""Quantized Wan transformer files for tests and benchmarks: GGUF (real and sparse) and ComfyUI fp8.

GGUF files follow city96's ComfyUI-GGUF converter for Wan (``general.architecture`` "wan",
original tensor names, 1-D tensors, ``.modulation`` and small tensors and the 5-D
``patch_embedding.weight`` in F32, matrices in the chosen type, rows that do not fill a
block in F16). gguf-py quantizes Q8_0 / Q4_0 itself; it cannot write K-quants, so Q4_K
blocks are built here (256 values in 144 bytes: fp16 d, fp16 dmin, 12 bytes of 6-bit
scales and mins, 128 bytes of 4-bit values), exactly as diffusers' ``dequantize_blocks_Q4_K``
reads them. fp8 files follow ComfyUI's ``*_fp8_e4m3fn`` and ``*_fp8_scaled`` files
(a ``scale_weight`` scalar beside each fp8 matrix, a ``scaled_fp8`` marker).

Usage::

    state = tiny_dit(spec, seed)                                   # original names, float32
    write_gguf(tmp / "wan-Q4_K.gguf", state, "Q4_K")
    write_fp8(tmp / "wan_fp8_scaled.safetensors", state, scaled=True, prefix="model.diffusion_model.")
    write_sparse_gguf(tmp / "wan2.1-14B-Q4_K_M.gguf", gguf_types(wan_dit_keys(spec), "Q4_K"))
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from core.check.gguf_header import GGML_TYPES

TYPE_IDS = {name: tid for tid, (name, _, _) in GGML_TYPES.items()}
HIGH_PRECISION = (".modulation", "patch_embedding.")   # kept F32 like city96's converter (keys_hiprec)


def type_for(name: str, shape: tuple[int, ...], qtype: str) -> str:
    """The GGML type city96's converter gives a tensor of ``shape`` when quantizing to ``qtype``."""
    if len(shape) == 1 or math.prod(shape) <= 1024 or any(m in name for m in HIGH_PRECISION) or len(shape) > 4:
        return "F32"
    block = GGML_TYPES[TYPE_IDS[qtype]][1]
    return qtype if shape[-1] % block == 0 else "F16"


def gguf_types(specs: Mapping[str, tuple[str, tuple[int, ...]]], qtype: str) -> dict[str, tuple[str, tuple[int, ...]]]:
    """``{name: (dtype, shape)}`` -> ``{name: (GGML type, shape)}`` by :func:`type_for`."""
    return {n: (type_for(n, shape, qtype), shape) for n, (_, shape) in specs.items()}


# --------------------------------------------------------------------------- K-quant blocks by hand

def quantize_q4_k(values: np.ndarray) -> np.ndarray:
    """float rows (last dim a multiple of 256) -> Q4_K bytes, shape (..., last // 256 * 144)."""
    rows = values.reshape(-1, 8, 32).astype(np.float32)             # super-blocks of 8 sub-blocks of 32
    lo = np.minimum(rows.min(axis=2), 0.0)
    hi = rows.max(axis=2)
    scale = np.maximum(hi - lo, 1e-12) / 15.0                        # per sub-block step
    minimum = -lo                                                    # value = d*sc*q - dmin*m
    d = (scale.max(axis=1) / 63.0).astype(np.float16).astype(np.float32)
    dmin = (minimum.max(axis=1) / 63.0).astype(np.float16).astype(np.float32)
    d_safe = np.where(d > 0, d, 1.0)[:, None]
    dmin_safe = np.where(dmin > 0, dmin, 1.0)[:, None]
    sc = np.clip(np.round(scale / d_safe), 1, 63).astype(np.uint8)
    m = np.clip(np.round(minimum / dmin_safe), 0, 63).astype(np.uint8)
    step = (d[:, None] * sc)[:, :, None]
    offset = (dmin[:, None] * m)[:, :, None]
    q = np.clip(np.round((rows + offset) / np.where(step > 0, step, 1.0)), 0, 15).astype(np.uint8)
    scales = np.zeros((rows.shape[0], 12), np.uint8)
    scales[:, 0:4] = (sc[:, :4] & 0x3F) | ((sc[:, 4:] >> 4) << 6)
    scales[:, 4:8] = (m[:, :4] & 0x3F) | ((m[:, 4:] >> 4) << 6)
    scales[:, 8:12] = (sc[:, 4:] & 0x0F) | ((m[:, 4:] & 0x0F) << 4)
    qs = (q[:, 0::2, :] | (q[:, 1::2, :] << 4)).reshape(-1, 128)     # pairs of sub-blocks share bytes
    blocks = np.concatenate([d.astype(np.float16).view(np.uint8).reshape(-1, 2),
                             dmin.astype(np.float16).view(np.uint8).reshape(-1, 2), scales, qs], axis=1)
    return blocks.reshape(*values.shape[:-1], values.shape[-1] // 256 * 144)


def quantize(values: np.ndarray, ggml_type: str) -> np.ndarray:
    """float32 array -> the bytes (or floats) gguf-py's writer takes for ``ggml_type``."""
    import gguf
    if ggml_type == "F32":
        return values.astype(np.float32)
    if ggml_type == "F16":
        return values.astype(np.float16)
    if ggml_type == "Q4_K":
        return quantize_q4_k(values)
    return gguf.quants.quantize(values.astype(np.float32), gguf.GGMLQuantizationType[ggml_type])


def write_gguf(path: Path, state: Mapping[str, Any], qtype: str, prefix: str = "",
               architecture: str = "wan", types: Mapping[str, str] | None = None) -> dict[str, str]:
    """Write ``state`` (name -> torch tensor or array) as a GGUF file; returns name -> GGML type used."""
    import gguf
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(path), architecture)
    used: dict[str, str] = {}
    for name, value in state.items():
        array = value.float().numpy() if hasattr(value, "numpy") else np.asarray(value, np.float32)
        ggml = (types or {}).get(name) or type_for(name, tuple(array.shape), qtype)
        data = quantize(array, ggml)
        raw = None if ggml in ("F32", "F16") else gguf.GGMLQuantizationType[ggml]
        writer.add_tensor(prefix + name, data, raw_dtype=raw)
        used[name] = ggml
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return used


def dequantized(path: Path) -> dict[str, Any]:
    """What a GGUF file holds, dequantized to float32 torch tensors (by diffusers' own kernels)."""
    import gguf
    import torch
    from diffusers.quantizers.gguf.utils import GGUFParameter, dequantize_gguf_tensor
    out = {}
    for t in gguf.GGUFReader(str(path)).tensors:
        data = torch.from_numpy(t.data.copy())
        if t.tensor_type not in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16):
            data = dequantize_gguf_tensor(GGUFParameter(data, quant_type=t.tensor_type))
        out[t.name] = data.float()
    return out


# --------------------------------------------------------------------------- sparse GGUF (headers only)

def _gguf_string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("<Q", len(raw)) + raw


def write_sparse_gguf(path: Path, tensors: Mapping[str, tuple[str, tuple[int, ...]]], architecture: str = "wan",
                      truncate_to: int | None = None) -> int:
    """A GGUF header for ``{name: (GGML type, torch-order shape)}`` and a hole for the data; returns the size."""
    kv = _gguf_string("general.architecture") + struct.pack("<I", 8) + _gguf_string(architecture)
    kv += _gguf_string("general.quantization_version") + struct.pack("<I", 4) + struct.pack("<I", 2)
    infos = b""
    offset = 0
    for name, (ggml, shape) in tensors.items():
        _, block, size = GGML_TYPES[TYPE_IDS[ggml]]
        dims = tuple(reversed(shape))
        infos += _gguf_string(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        infos += struct.pack("<IQ", TYPE_IDS[ggml], offset)
        offset += -(-(math.prod(dims) // block * size) // 32) * 32
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), 2) + kv + infos
    head += b"\0" * (-len(head) % 32)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(head)
        fh.truncate(truncate_to if truncate_to is not None else len(head) + offset)
    return len(head) + offset


# --------------------------------------------------------------------------- ComfyUI fp8 files

def fp8_state(state: Mapping[str, Any], scaled: bool) -> dict[str, Any]:
    """ComfyUI's fp8 layout of an original-name state dict: 2-D ``.weight`` matrices of the blocks in
    float8_e4m3fn (with a ``scale_weight`` each and the ``scaled_fp8`` marker when ``scaled``), the rest fp16."""
    import torch
    out: dict[str, Any] = {"scaled_fp8": torch.zeros(0, dtype=torch.float8_e4m3fn)} if scaled else {}
    for name, value in state.items():
        if name.endswith(".weight") and value.ndim == 2 and name.startswith("blocks."):
            scale = value.abs().max().float() / 448 if scaled else torch.tensor(1.0)
            out[name] = (value.float() / scale).to(torch.float8_e4m3fn)
            if scaled:
                out[name[: -len("weight")] + "scale_weight"] = scale.reshape(())
        else:
            out[name] = value.to(torch.float16)
    return out


def write_fp8(path: Path, state: Mapping[str, Any], scaled: bool, prefix: str = "") -> Path:
    from safetensors.torch import save_file
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({prefix + k: v.contiguous() for k, v in fp8_state(state, scaled).items()}, str(path))
    return path
