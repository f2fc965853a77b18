"""How fast Model Check is, against the floor of only reading every safetensors header.

Builds full-size sparse layouts (real headers, no weights: a few MB on disk) and times
``core.check.detect.inspect`` warm against opening each ``.safetensors`` file and reading its
header, and ``python -m core check`` on the A14B folder from a cold interpreter.

    .venv/bin/python bench/detect.py [--runs 15] [--json]

The floor is the safetensors library opening every file and reading its header (each
tensor's name and shape, parsed and checked in Rust); two lower bounds are printed beside
it: reading and decoding each header's JSON in Python, and only reading its bytes.
Targets: ratio within 2x of the floor, under 100 ms for the A14B folder warm, and the
command under 1.5 s wall. With --json the last line is
``{"cases": [{"name", "seconds", "bytes_read", "floor_seconds", "ratio"}, ...], "cli_check_seconds": x}``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from core.check.detect import inspect  # noqa: E402
from tests.sparse.diffusers_layout import write_diffusers_layout  # noqa: E402
from tests.sparse.original_layout import write_original_layout  # noqa: E402
from tests.sparse.specs import BY_KEY  # noqa: E402


def read_headers_floor(folder: Path, parse: bool = True) -> int:
    """Open every .safetensors file and read its header (and, with ``parse``, decode its JSON).

    This is what any detector that looks at the tensors must do; decoding is part of
    reading a header, since the header is JSON. ``parse=False`` is the bare I/O floor.
    """
    total = 0
    for path in folder.rglob("*.safetensors"):
        with open(path, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            raw = fh.read(n)
            total += 8 + len(raw)
            if parse:
                json.loads(raw)
    return total


def safetensors_floor(folder: Path) -> None:
    """The safetensors library's own way to open every file and read its header (names, shapes)."""
    from safetensors import safe_open
    for path in folder.rglob("*.safetensors"):
        with safe_open(path, "np") as fh:
            for name in fh.keys():
                fh.get_slice(name).get_shape()


def median_seconds(fn, runs: int) -> float:
    fn()  # warm the page cache and the imports
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="wan-bench-") as tmp:
        root = Path(tmp)
        cases = {
            "Wan2.2-T2V-A14B-Diffusers": write_diffusers_layout(BY_KEY["wan22_t2v_a14b"], root / "a14b"),
            "Wan2.2-TI2V-5B-Diffusers": write_diffusers_layout(BY_KEY["wan22_ti2v_5b"], root / "ti2v"),
            "Wan2.2-T2V-A14B (original)": write_original_layout(BY_KEY["wan22_t2v_a14b"], root / "a14b-orig"),
        }
        results = []
        for name, folder in cases.items():
            report = inspect(folder)
            assert report.loadable, name
            seconds = median_seconds(lambda f=folder: inspect(f), args.runs)
            floor = median_seconds(lambda f=folder: safetensors_floor(f), args.runs)
            decode_floor = median_seconds(lambda f=folder: read_headers_floor(f), args.runs)
            io_floor = median_seconds(lambda f=folder: read_headers_floor(f, parse=False), args.runs)
            size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
            results.append({"name": name, "seconds": round(seconds, 5), "bytes_read": report.bytes_read,
                            "floor_bytes": read_headers_floor(folder), "floor_seconds": round(floor, 5),
                            "ratio": round(seconds / floor, 2), "decode_floor_seconds": round(decode_floor, 5),
                            "decode_ratio": round(seconds / decode_floor, 2), "io_floor_seconds": round(io_floor, 5),
                            "apparent_gb": round(size / 1e9, 1)})
        env = dict(os.environ, PYTHONPATH=str(REPO))
        cli = []
        for _ in range(5):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "core", "check", str(cases["Wan2.2-T2V-A14B-Diffusers"])],
                           env=env, capture_output=True, check=True)
            cli.append(time.perf_counter() - start)
        cli_seconds = round(statistics.median(cli), 3)
    for r in results:
        print(f"{r['name']:<30} {r['apparent_gb']:>6} GB  inspect {r['seconds'] * 1000:7.1f} ms  "
              f"floor {r['floor_seconds'] * 1000:5.1f} ms  ratio {r['ratio']:.2f}  "
              f"(read+decode {r['decode_floor_seconds'] * 1000:.1f} ms: {r['decode_ratio']:.2f}x; "
              f"bare read {r['io_floor_seconds'] * 1000:.1f} ms)  "
              f"read {r['bytes_read'] / 1e6:.2f} MB (floor {r['floor_bytes'] / 1e6:.2f} MB)")
    print(f"python -m core check (A14B, cold interpreter): {cli_seconds:.2f} s")
    if args.json:
        print(json.dumps({"cases": results, "cli_check_seconds": cli_seconds}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
