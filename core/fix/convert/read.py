"""Reading a conversion's sources: the tensors of .safetensors and .pth files, one at a time.

Usage (inside :mod:`core.fix.convert.write`; torch is imported only when tensors are loaded)::

    from core.fix.convert.read import open_part

    source = open_part(part)                  # a planned Part: .safetensors shards, or one .pth
    try:
        dtype, shape = source.specs[name]  # every tensor's safetensors dtype and shape
        tensor = source.read(name)         # that one tensor, on the CPU
    finally:
        source.close()

Memory: tensors are read one at a time (safetensors by offset with plain reads; ``.pth``
with ``torch.load(weights_only=True, mmap=True)``, re-opened every ``PTH_WINDOW_BYTES`` so
that its mapped pages are let go): peak memory is about the largest tensor, not the model.

Safety: a ``.pth`` is never unpickled beyond tensors (``weights_only=True``; a file that
would run code is refused with a sentence).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.check.safetensors_header import HeaderError, read_header
from core.errors import WanError
from core.fix.convert.keys import TOKENIZER_MAX_FILE

if TYPE_CHECKING:  # pragma: no cover
    import torch

PTH_WINDOW_BYTES = 1 << 30           # re-open a .pth after reading this much, to drop its mapped pages


@dataclass(frozen=True)
class Part:
    """One weights component to convert: where it comes from and what it becomes."""

    role: str                       # transformer, transformer_2, vae, text_encoder
    kind: str                       # dit, vae, t5
    files: tuple[str, ...]          # .safetensors shards, or one .pth
    label: str                      # how the source is named in messages
    bytes_out: int
    config: Mapping[str, Any] | None = None   # an original DiT's config.json
    note: str = ""                  # a file kept as it is: "kept as GGUF Q4_K, hard-linked" (plan header)


ST_TO_TORCH = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
                "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool",
                "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2"}
FP8_DTYPES = ("F8_E4M3", "F8_E5M2")


def torch_dtype(name: str) -> torch.dtype:
    import torch
    if name not in ST_TO_TORCH:
        raise WanError(f"Tensors of type {name} cannot be converted.", "Use a float16, bfloat16 or float32 file.")
    return getattr(torch, ST_TO_TORCH[name])


def _st_dtype(dtype: torch.dtype) -> str:
    name = str(dtype).removeprefix("torch.")
    for st, tn in ST_TO_TORCH.items():
        if tn == name:
            return st
    raise WanError(f"Tensors of type {name} cannot be converted.", "Use a float16, bfloat16 or float32 file.")


class _SafetensorsSource:
    """Tensors of one or more .safetensors files, each read on its own by offset (no mmap)."""

    def __init__(self, files: tuple[str, ...]) -> None:
        self._handles: list[Any] = []
        self._where: dict[str, tuple[Any, int, int, str, tuple[int, ...]]] = {}
        self.specs: dict[str, tuple[str, tuple[int, ...]]] = {}
        try:
            self._open(files)
        except BaseException:
            self.close()
            raise

    def _open(self, files: tuple[str, ...]) -> None:
        for path in files:
            try:
                header = read_header(path)
            except HeaderError as exc:
                raise WanError(f"{Path(path).name} is not a readable safetensors file: {exc}.",
                               "Download it again.") from None
            if os.path.getsize(path) < header.expected_file_size:
                raise WanError(f"{Path(path).name} is shorter than its header says (an interrupted download).",
                               "Delete it and download it again.")
            fh = open(path, "rb", buffering=0)  # noqa: SIM115 - closed in close()
            self._handles.append(fh)
            base = 8 + header.header_size
            for name, info in header.tensors.items():
                self._where[name] = (fh, base + info.start, info.end - info.start, info.dtype, info.shape)
                self.specs[name] = (info.dtype, info.shape)

    def read(self, name: str) -> torch.Tensor:
        import torch
        fh, offset, n, dtype, shape = self._where[name]
        buf = torch.empty(n, dtype=torch.uint8)
        view = memoryview(buf.numpy())
        done = 0
        while done < n:
            fh.seek(offset + done)
            got = fh.readinto(view[done:])
            if not got:
                raise WanError(f"{Path(fh.name).name} ended early while reading {name}.", "Download it again.")
            done += got
        return buf.view(torch_dtype(dtype)).reshape(shape)

    def close(self) -> None:
        for fh in self._handles:
            fh.close()


class _PickleSource:
    """The tensors of a ``torch.save`` file, loaded only with ``weights_only=True, mmap=True``.

    The file is re-opened after every ``PTH_WINDOW_BYTES`` read, so that the pages already
    copied out are unmapped and do not pile up in this process's memory.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._state: dict[str, Any] | None = _load_pth(path)
        self.specs = {k: (_st_dtype(t.dtype), tuple(t.shape)) for k, t in self._state.items()}
        self._read = 0

    def read(self, name: str) -> torch.Tensor:
        if self._state is None or self._read > PTH_WINDOW_BYTES:
            self._state = None   # the last reference to the old mapping: it is unmapped here
            self._state = _load_pth(self.path)
            self._read = 0
        tensor = self._state[name]
        self._read += tensor.numel() * tensor.element_size()
        return tensor

    def close(self) -> None:
        self._state = None


def _load_pth(path: str) -> dict[str, Any]:
    """A state dict from a .pth with ``torch.load(weights_only=True, mmap=True)``; never more."""
    import pickle

    import torch
    name = Path(path).name
    with open(path, "rb") as fh:
        if fh.read(4) != b"PK\x03\x04":
            raise WanError(f"{name} is not a PyTorch checkpoint archive (torch.save zip), so it was not opened.",
                           "Download it again from the model's page.")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[-1][:200] if str(exc).strip() else type(exc).__name__
        raise WanError(f"{name} holds more than tensors: loading it would run code stored in it, so it was not "
                       f"loaded ({first}).",
                       "Delete it and download the official file again; do not load it with other tools either.") from None
    except (RuntimeError, OSError, EOFError, ValueError) as exc:
        raise WanError(f"{name} cannot be read ({str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}); "
                       "it is damaged or incompletely downloaded.", "Delete it and download it again.") from None
    if isinstance(obj, dict) and len(obj) == 1 and isinstance(next(iter(obj.values())), dict):
        obj = next(iter(obj.values()))   # {"state_dict": {...}} or {"model": {...}}
    if not isinstance(obj, dict) or not obj or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                       for k, v in obj.items()):
        raise WanError(f"{name} is not a state dict of named tensors.", "Download it again from the model's page.")
    return obj


def open_part(part: Part) -> _SafetensorsSource | _PickleSource:
    if part.files[0].endswith(".pth"):
        return _PickleSource(part.files[0])
    return _SafetensorsSource(part.files)


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def tokenizer_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.stat().st_size <= TOKENIZER_MAX_FILE)
