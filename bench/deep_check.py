"""`check --deep` against reading the same bytes with `cat`, and its peak RAM.

Writes a bf16 safetensors file of --mb MB (random finite values, in 64 MB tensors) into a
temporary folder, reads it once to warm the page cache, then times `cat FILE > /dev/null` and
``core.check.deep.deep_check(FILE)`` (medians over --runs), each in its own process; the deep
check's time is the scan itself, after Python and numpy have started. ``--cold`` empties the
page cache before every run instead (what a user sees the first time; needs root:
``sync; echo 3 > /proc/sys/vm/drop_caches``).

    .venv/bin/python bench/deep_check.py [--mb 1024] [--runs 3] [--cold] [--json]

Prints the ratio deep/cat (target <= 1.5) and the deep check's peak RSS against the file's
size. With --json the last line is ``{"ratio": x, "deep_s": s, "cat_s": s, "peak_rss_mb": m, "file_mb": n}``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TENSOR_MB = 64


def write_file(path: Path, mb: int) -> None:
    """A bf16 safetensors file of ``mb`` MB, written 64 MB at a time (the bench stays small)."""
    import numpy as np
    count = max(1, mb // TENSOR_MB)
    numel = TENSOR_MB * 2**20 // 2
    header = {f"blocks.{i}.weight": {"dtype": "BF16", "shape": [numel // 4096, 4096],
                                     "data_offsets": [i * numel * 2, (i + 1) * numel * 2]} for i in range(count)}
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    rng = np.random.default_rng(0)
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", len(raw)) + raw)
        for _ in range(count):
            bits = rng.integers(0, 2**16, numel, dtype=np.uint16) & np.uint16(0xBFFF)  # exponent never all ones
            handle.write(bits.tobytes())


def drop_caches() -> None:
    """Empty the page cache (root only), so that the next read comes from the disk."""
    subprocess.run(["sync"], check=True)
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def timed(command: list[str], cold: bool = False) -> tuple[float, int, str]:
    """Seconds, the children's peak RSS so far (KiB) and the output of one run."""
    if cold:
        drop_caches()
    t0 = time.perf_counter()
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cold", action="store_true", help="empty the page cache before each run (root)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="wan_deep_bench_") as tmp:
        file = Path(tmp) / "model.safetensors"
        write_file(file, args.mb)
        size_mb = file.stat().st_size / 2**20
        code = (f"import sys, time, numpy; sys.path.insert(0, {str(REPO)!r}); "
                "from core.check.deep import deep_check; "
                f"t = time.perf_counter(); r = deep_check({str(file)!r}); "
                "assert r.ok, r.findings; print(time.perf_counter() - t)")
        subprocess.run(["cat", str(file)], check=True, stdout=subprocess.DEVNULL)   # warm the page cache
        cat_s = [timed(["sh", "-c", f"cat '{file}' > /dev/null"], args.cold)[0] for _ in range(args.runs)]
        deep = [timed([sys.executable, "-c", code], args.cold) for _ in range(args.runs)]
        deep_s = [float(out.strip()) for _, _, out in deep]     # the read itself, without Python's start
        peak_mb = max(kib for _, kib, _ in deep) / 1024         # the largest child: a deep check
    ratio = statistics.median(deep_s) / statistics.median(cat_s)
    print(f"file: {size_mb:.0f} MB (bf16, page cache {'emptied before each run' if args.cold else 'warm'})")
    print(f"cat:        {statistics.median(cat_s):.3f} s ({size_mb / statistics.median(cat_s):.0f} MB/s)")
    print(f"deep check: {statistics.median(deep_s):.3f} s ({size_mb / statistics.median(deep_s):.0f} MB/s), "
          f"ratio {ratio:.2f} (target <= 1.5)")
    print(f"peak RSS of the deep check's process: {peak_mb:.0f} MB for a {size_mb:.0f} MB file")
    if args.json:
        print(json.dumps({"cache": "cold" if args.cold else "warm",
                          "ratio": round(ratio, 3), "deep_s": round(statistics.median(deep_s), 3),
                          "cat_s": round(statistics.median(cat_s), 3), "peak_rss_mb": round(peak_mb, 1),
                          "file_mb": round(size_mb)}))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
