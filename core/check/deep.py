"""Model Check ``--deep``: read every tensor of every safetensors file, streaming, in bounded RAM.

Finds what a header cannot show: tensors holding NaN or Inf (``tensor_not_finite``) and long
runs of exact zero bytes (``zero_filled``: a preallocated file whose download stopped, so its
end was never written), each by file and tensor name. Plain Model Check stays header-only;
this reads every byte, so it takes as long as reading the files once.

RAM stays at two buffers of :data:`CHUNK` bytes whatever the model's size. NaN/Inf is found
from the bits (exponent all ones), so it needs numpy but not torch.

Usage::

    from core.check.deep import deep_check

    result = deep_check("/models/Wan2.2-TI2V-5B-Diffusers",
                        progress=lambda e: print(f"{e.percent:5.1f}% {e.message}"))
    for finding in result.findings:
        print(finding.message, finding.remedy)
    result.ok            # False when a tensor is damaged
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.check.codes import Code
from core.check.report import Finding, Severity
from core.check.safetensors_header import HeaderError, TensorInfo, read_header
from core.progress import AnyCallback, Progress
from core.units import format_bytes

CHUNK = 16 * 2**20          # bytes read at a time (two such buffers: the data and a scratch copy)
PAGE = 4096                 # zero runs are found in whole 4 KiB pages
MIN_ZERO_RUN = 16 * 1024    # this many zero bytes in a row cannot be trained weights
# dtype -> (unsigned view, exponent mask): the value is NaN or Inf when (bits & mask) == mask
# and NaN (not Inf) when a mantissa bit is set too; e4m3 has no Inf
_NON_FINITE = {"F64": ("<u8", 0x7FF0000000000000), "F32": ("<u4", 0x7F800000), "F16": ("<u2", 0x7C00),
               "BF16": ("<u2", 0x7F80), "F8_E5M2": ("u1", 0x7C), "F8_E4M3": ("u1", 0x7F)}
_MANTISSA = {"F64": 0x000FFFFFFFFFFFFF, "F32": 0x007FFFFF, "F16": 0x03FF, "BF16": 0x007F, "F8_E5M2": 0x03,
             "F8_E4M3": 0x7F}
_SKIP = (".wan_compat_backup",)


@dataclass(frozen=True)
class DeepCheckResult:
    """What reading every byte found: findings (by file and tensor), bytes read, seconds, cancelled."""

    path: str
    findings: list[Finding] = field(default_factory=list)
    files: int = 0
    bytes_read: int = 0
    seconds: float = 0.0
    cancelled: bool = False
    damaged: list[dict[str, Any]] = field(default_factory=list)  # {"file", "tensor", "problem", ...}

    @property
    def ok(self) -> bool:
        return not self.cancelled and not any(f.severity is Severity.ERROR for f in self.findings)

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "ok": self.ok, "files": self.files, "bytes_read": self.bytes_read,
                "seconds": round(self.seconds, 3), "cancelled": self.cancelled, "damaged": self.damaged,
                "findings": [f.to_dict() for f in self.findings]}


def weight_files(path: Path) -> list[Path]:
    """The safetensors files a deep check reads: ``path`` itself, or every one under the folder."""
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*.safetensors")
                  if p.is_file() and not any(part in _SKIP for part in p.relative_to(path).parts))


def deep_check(path: str | os.PathLike[str], progress: AnyCallback = None,
               cancel: threading.Event | None = None) -> DeepCheckResult:
    """Read every tensor under ``path`` (see the module's docstring); ``cancel`` stops between chunks."""
    root = Path(path)
    events = Progress(progress)
    files = weight_files(root)
    total = sum(f.stat().st_size for f in files) or 1
    buffer = bytearray(CHUNK)
    scratch = bytearray(CHUNK)
    start = time.perf_counter()
    findings: list[Finding] = []
    damaged: list[dict[str, Any]] = []
    done = 0
    for file in files:
        name = file.name if root.is_file() else file.relative_to(root).as_posix()
        events.emit("check", f"Reading {name} ({format_bytes(done)} of {format_bytes(total)})", 100 * done / total)
        try:
            header = read_header(file)
        except (OSError, HeaderError) as exc:
            findings.append(Finding(Severity.ERROR, Code.FILE_UNREADABLE, f"{name} cannot be read: {exc}.",
                                    "Download it again.", name))
            done += file.stat().st_size
            continue
        scan = _FileScan(name, header.tensors, 8 + header.header_size)
        read = scan.run(file, buffer, scratch, cancel,
                        lambda n, name=name, done=done: events.emit(
                            "check", f"Reading {name} ({format_bytes(done + n)} of {format_bytes(total)})",
                            100 * (done + n) / total))
        done += read
        findings += scan.findings
        damaged += scan.damaged
        if cancel is not None and cancel.is_set():
            return DeepCheckResult(str(root), findings, len(files), done, time.perf_counter() - start, True, damaged)
    seconds = time.perf_counter() - start
    said = "no NaN, Inf or zero-filled regions" if not findings else f"{len(findings)} problem(s)"
    events.emit("done", f"Read {format_bytes(done)} in {len(files)} file(s) in {seconds:.1f} s: {said}", 100)
    return DeepCheckResult(str(root), findings, len(files), done, seconds, False, damaged)


class _FileScan:
    """One file: chunks of whole tensors (a large tensor in CHUNK-sized pieces), checked as they are read."""

    def __init__(self, name: str, tensors: Any, data_start: int) -> None:
        self.name, self.data_start = name, data_start
        self.tensors = sorted(((k, v) for k, v in tensors.items() if v.end > v.start), key=lambda kv: kv[1].start)
        self.findings: list[Finding] = []
        self.damaged: list[dict[str, Any]] = []
        self.zero_runs: list[list[int]] = []     # [start, end) in data bytes

    def _pieces(self) -> list[tuple[int, int, list[tuple[str, TensorInfo]]]]:
        """(start, end, tensors) byte ranges of at most CHUNK bytes, split only inside a tensor."""
        pieces: list[tuple[int, int, list[tuple[str, TensorInfo]]]] = []
        group: list[tuple[str, TensorInfo]] = []
        g0 = g1 = 0
        for key, info in self.tensors:
            size = info.end - info.start
            if group and (info.start != g1 or info.end - g0 > CHUNK):
                pieces.append((g0, g1, group))
                group = []
            if size > CHUNK:
                for s in range(info.start, info.end, CHUNK):
                    pieces.append((s, min(info.end, s + CHUNK), [(key, info)]))
                continue
            if not group:
                g0 = info.start
            group.append((key, info))
            g1 = info.end
        if group:
            pieces.append((g0, g1, group))
        return pieces

    def run(self, file: Path, buffer: bytearray, scratch: bytearray, cancel: threading.Event | None,
            tick: Any) -> int:
        import numpy as np
        read = 0
        last_tick = time.perf_counter()
        with open(file, "rb", buffering=0) as handle:
            for a, b, group in self._pieces():
                if cancel is not None and cancel.is_set():
                    break
                handle.seek(self.data_start + a)
                view = memoryview(buffer)[:b - a]
                got = handle.readinto(view)
                if got < b - a:
                    self.findings.append(Finding(Severity.ERROR, Code.FILE_TRUNCATED, f"{self.name} ends early: "
                                                 f"its header describes {self.data_start + b:,} bytes.",
                                                 f"Download {self.name} again.", self.name))
                    break
                data = np.frombuffer(buffer, dtype=np.uint8, count=b - a)
                self._zeros(data, a)
                self._non_finite(data, a, group, scratch)
                read += b - a
                if time.perf_counter() - last_tick > 0.2:
                    tick(read)
                    last_tick = time.perf_counter()
        self._report_zero_runs()
        return read

    def _zeros(self, data: Any, offset: int) -> None:
        """Whole 4 KiB pages of zeros (counted from the piece's start), merged into runs across pieces."""
        import numpy as np
        pages = len(data) // PAGE
        if pages:
            words = data[:pages * PAGE].view(np.uint64).reshape(pages, PAGE // 8)
            candidates = np.flatnonzero(words[:, 0] == 0)      # one word per page: nearly free
            if len(candidates):
                zero = np.zeros(pages, dtype=bool)
                zero[candidates] = words[candidates].max(axis=1) == 0
                edges = np.flatnonzero(np.diff(np.concatenate(([0], zero.view(np.int8), [0]))))  # run starts, ends
                for s, e in zip(edges[0::2], edges[1::2], strict=False):
                    self._add_run(offset + int(s) * PAGE, offset + int(e) * PAGE)
        tail = data[pages * PAGE:]
        if len(tail) and not tail.any():
            self._add_run(offset + pages * PAGE, offset + len(data))

    def _add_run(self, start: int, end: int) -> None:
        if self.zero_runs and self.zero_runs[-1][1] >= start - PAGE:   # continues the last run
            self.zero_runs[-1][1] = max(self.zero_runs[-1][1], end)
        else:
            self.zero_runs.append([start, end])

    def _non_finite(self, data: Any, offset: int, group: list[tuple[str, TensorInfo]], scratch: bytearray) -> None:
        import numpy as np
        i = 0
        while i < len(group):   # runs of adjacent tensors of one float dtype, checked at once
            dtype = group[i][1].dtype
            j = i
            while j + 1 < len(group) and group[j + 1][1].dtype == dtype:
                j += 1
            if dtype in _NON_FINITE:
                view, mask = _NON_FINITE[dtype]
                s = max(group[i][1].start, offset) - offset
                e = min(group[j][1].end, offset + len(data)) - offset
                bits = data[s:e].view(view)
                masked = np.frombuffer(scratch, dtype=view, count=len(bits))
                np.bitwise_and(bits, mask, out=masked)
                if masked.max(initial=0) == mask:
                    for key, info in group[i:j + 1]:
                        self._name_tensor(key, info, data, offset)
            i = j + 1

    def _name_tensor(self, key: str, info: TensorInfo, data: Any, offset: int) -> None:
        """Count NaN and Inf in one tensor's bytes of this piece and add a finding for it."""
        import numpy as np
        view, mask = _NON_FINITE[info.dtype]
        s, e = max(info.start, offset) - offset, min(info.end, offset + len(data)) - offset
        bits = data[s:e].view(view)
        bad = (bits & mask) == mask
        if not bad.any():
            return
        nan = int(np.count_nonzero(bits[bad] & np.array(_MANTISSA[info.dtype], dtype=view)))
        inf = int(bad.sum()) - nan
        what = " and ".join(p for p in (f"{nan:,} NaN" if nan else "", f"{inf:,} Inf" if inf else "") if p)
        existing = next((d for d in self.damaged if d["tensor"] == key and d["problem"] == "not_finite"), None)
        if existing is not None:   # a large tensor read in pieces: one finding
            existing["nan"] += nan
            existing["inf"] += inf
            return
        self.damaged.append({"file": self.name, "tensor": key, "problem": "not_finite", "nan": nan, "inf": inf})
        self.findings.append(Finding(Severity.ERROR, Code.TENSOR_NOT_FINITE,
                                     f"{self.name}, tensor {key} holds {what} values: the file is damaged.",
                                     f"Download {self.name} again.", self.name))

    def _report_zero_runs(self) -> None:
        for start, end in self.zero_runs:
            if end - start < MIN_ZERO_RUN:
                continue
            hit = [k for k, v in self.tensors if v.start < end and v.end > start]
            named = ", ".join(hit[:3]) + (f" and {len(hit) - 3} more" if len(hit) > 3 else "")
            data_end = self.tensors[-1][1].end if self.tensors else end
            to = "the end of the file" if end >= data_end else f"byte {self.data_start + end:,}"
            self.damaged += [{"file": self.name, "tensor": k, "problem": "zero_filled",
                              "start": self.data_start + start, "end": self.data_start + end} for k in hit]
            self.findings.append(Finding(
                Severity.ERROR, Code.ZERO_FILLED,
                f"{self.name} holds {format_bytes(end - start)} of zeros from byte {self.data_start + start:,} "
                f"to {to} (tensor {named}): trained weights are never zero for that long; the download "
                "stopped in a file that was allocated in full first.",
                f"Download {self.name} again.", self.name))


def render_deep(result: DeepCheckResult) -> str:
    """The deep check for a terminal: a headline, then each problem with its remedy."""
    if result.cancelled:
        return f"Deep check cancelled after {format_bytes(result.bytes_read)}; nothing was changed."
    head = (f"Deep check: read {format_bytes(result.bytes_read)} in {result.files} file(s) in "
            f"{result.seconds:.1f} s: ")
    if not result.findings:
        return head + "every tensor is finite and no region is zero-filled."
    lines = [head + f"{len(result.findings)} problem(s)."]
    lines += [f"  ✗ {f.message}\n    → {f.remedy}" for f in result.findings]
    return "\n".join(lines)
