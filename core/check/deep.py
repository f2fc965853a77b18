"""Model Check ``--deep``: read every tensor of every safetensors file, streaming, in bounded RAM.

Finds what a header cannot show: tensors holding NaN or Inf (``tensor_not_finite``) and long
runs of exact zero bytes (``zero_filled``: a preallocated file whose download stopped, so its
end was never written), each by file and tensor name. Plain Model Check stays header-only;
this reads every byte, so it takes as long as reading the files once.

RAM stays at one mapped window of :data:`WINDOW` bytes whatever the model's size. The file is
mapped rather than read (no copy out of the page cache), in pieces of :data:`CHUNK` bytes that
stay in the CPU's L2 cache while each is looked at twice without writing anything: NaN/Inf
from the bits (two read-only maxima, see :func:`_has_non_finite`) and zero pages from one
sampled word per 4 KiB page. So the scan costs about what reading the bytes costs; it needs
numpy but not torch.

Usage::

    from core.check.deep import deep_check

    result = deep_check("/models/Wan2.2-TI2V-5B-Diffusers",
                        progress=lambda e: print(f"{e.percent:5.1f}% {e.message}"))
    for finding in result.findings:
        print(finding.message, finding.remedy)
    result.ok            # False when a tensor is damaged
"""

from __future__ import annotations

import mmap
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

CHUNK = 512 * 1024         # bytes scanned at a time (stays in L2 between the scan's two passes)
WINDOW = 32 * 2**20        # bytes of a file mapped at a time (the RAM a deep check holds)
AHEAD = 128 * 2**20        # bytes the disk is asked to read ahead of the window (page cache, reclaimable)
PAGE = 4096                 # zero runs are found in whole 4 KiB pages (counted from the data's start)
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
        read = scan.run(file, cancel,
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


class _Window:
    """A read-only mapping of up to :data:`WINDOW` bytes of a file, from ``start`` rounded down to a page.

    Mapping instead of ``read`` spares the copy from the page cache into a buffer (the deep
    check then costs about what ``cat`` costs); unmapping each window keeps the RAM bounded.
    The caller checks the file's size first: a mapping past the end would not be readable.
    """

    def __init__(self, fd: int, start: int, size: int, np: Any) -> None:
        self.start = start - start % mmap.ALLOCATIONGRANULARITY
        self.end = min(size, max(self.start + WINDOW, start + CHUNK))
        self.map = mmap.mmap(fd, self.end - self.start, prot=mmap.PROT_READ, offset=self.start,
                             flags=mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0))
        self.array = np.frombuffer(self.map, dtype=np.uint8)
        if hasattr(os, "posix_fadvise") and self.end < size:   # the disk reads the next window meanwhile
            os.posix_fadvise(fd, self.end, min(AHEAD, size - self.end), os.POSIX_FADV_WILLNEED)

    def holds(self, start: int, end: int) -> bool:
        return self.start <= start and end <= self.end

    def bytes(self, start: int, end: int) -> Any:
        """The file's bytes [start, end) as a uint8 array (a view: nothing is copied)."""
        return self.array[start - self.start:end - self.start]

    def close(self) -> None:
        del self.array
        self.map.close()


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

    def run(self, file: Path, cancel: threading.Event | None, tick: Any) -> int:
        import numpy as np
        read = 0
        last_tick = time.perf_counter()
        window: _Window | None = None
        with open(file, "rb", buffering=0) as handle:
            size = os.fstat(handle.fileno()).st_size
            for a, b, group in self._pieces():
                if cancel is not None and cancel.is_set():
                    break
                if self.data_start + b > size:
                    self.findings.append(Finding(Severity.ERROR, Code.FILE_TRUNCATED, f"{self.name} ends early: "
                                                 f"its header describes {self.data_start + b:,} bytes.",
                                                 f"Download {self.name} again.", self.name))
                    break
                if window is None or not window.holds(self.data_start + a, self.data_start + b):
                    if window is not None:
                        window.close()
                    window = _Window(handle.fileno(), self.data_start + a, size, np)
                self._scan(window.bytes(self.data_start + a, self.data_start + b), a, group)
                read += b - a
                if time.perf_counter() - last_tick > 0.2:
                    tick(read)
                    last_tick = time.perf_counter()
            if window is not None:
                window.close()
        self._report_zero_runs()
        return read

    def _scan(self, data: Any, offset: int, group: list[tuple[str, TensorInfo]]) -> None:
        """One piece: zero pages and NaN/Inf (no reference to ``data`` outlives the call)."""
        self._zeros(data, offset)
        self._non_finite(data, offset, group)

    def _zeros(self, data: Any, offset: int) -> None:
        """Whole 4 KiB pages of zeros (counted from the data's start), merged into runs across pieces.

        One word per page is sampled (nearly free); only pages whose first word is zero are read
        in full. The partial pages at the piece's ends are checked whole. With the piece on a page
        boundary and no page's first word zero (nearly always), one count is the whole check.
        """
        import numpy as np
        pages = len(data) // PAGE
        if offset % PAGE == 0 and np.count_nonzero(data[:pages * PAGE].view(np.uint64)[::PAGE // 8]) == pages:
            tail = data[len(data) // PAGE * PAGE:]
            if len(tail) and not tail.any():
                self._add_run(offset + len(data) - len(tail), offset + len(data))
            return
        head = min(len(data), -offset % PAGE)
        pages = (len(data) - head) // PAGE
        if head and not data[:head].any():
            self._add_run(offset, offset + head)
        if pages:
            words = data[head:head + pages * PAGE].view(np.uint64).reshape(pages, PAGE // 8)
            candidates = np.flatnonzero(words[:, 0] == 0)
            if len(candidates):
                zero = np.zeros(pages, dtype=bool)
                zero[candidates] = words[candidates].max(axis=1) == 0
                edges = np.flatnonzero(np.diff(np.concatenate(([0], zero.view(np.int8), [0]))))  # run starts, ends
                for s, e in zip(edges[0::2], edges[1::2], strict=False):
                    self._add_run(offset + head + int(s) * PAGE, offset + head + int(e) * PAGE)
        tail = data[head + pages * PAGE:]
        if len(tail) and not tail.any():
            self._add_run(offset + len(data) - len(tail), offset + len(data))

    def _add_run(self, start: int, end: int) -> None:
        if self.zero_runs and self.zero_runs[-1][1] >= start - PAGE:   # continues the last run
            self.zero_runs[-1][1] = max(self.zero_runs[-1][1], end)
        else:
            self.zero_runs.append([start, end])

    def _non_finite(self, data: Any, offset: int, group: list[tuple[str, TensorInfo]]) -> None:
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
                if _has_non_finite(data[s:e].view(view), mask):
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


def _has_non_finite(bits: Any, mask: int) -> bool:
    """Whether any value of ``bits`` (an unsigned view of floats) is NaN or Inf: two read-only maxima.

    A non-finite value has every exponent bit set. Read as signed integers, the positive ones
    (``0x7F80..0x7FFF`` for bf16) are above every finite value, so the signed maximum reaches the
    mask; read as unsigned, the negative ones (``0xFF80..0xFFFF``) are above every other value, so
    the unsigned maximum reaches sign | mask. Nothing is written, and the second pass reads cache.

        >>> import numpy as np
        >>> _has_non_finite(np.array([0x3F80, 0xBF80], dtype="<u2"), 0x7F80)   # bf16 1.0, -1.0
        False
        >>> _has_non_finite(np.array([0x3F80, 0xFF80], dtype="<u2"), 0x7F80)   # bf16 -inf
        True
    """
    if not len(bits):
        return False
    sign = 1 << (8 * bits.dtype.itemsize - 1)
    return bool(bits.view(f"<i{bits.dtype.itemsize}").max() >= mask or bits.max() >= sign | mask)


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
