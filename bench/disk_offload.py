"""Offloading to disk: peak RAM against the weights, the plan's estimate against it, and what it costs in time.

A real-size TI2V-5B transformer (bf16 safetensors, about 10 GB of random values: ``bench/quantized.py``'s
folder) is loaded and made to generate one step at 64x64 twice, each in a fresh process:
once with the weights in RAM (the plan's ordinary placement, bf16) and once with ``offload: disk``
(bf16; written to a temporary offload_dir, read back block by block). Prints one JSON object as its
last line with ``--json``::

    {"file_gb", "disk": {"peak_gb", "peak_vs_file", "estimate_vs_peak", "resident_after_load_gb",
                         "generate_peak_gb", "written_gb", "load_s", "generate_s"},
     "ram": {"peak_gb", "generate_peak_gb", "peak_vs_file", "load_s", "generate_s"}, "generate_ratio": disk / ram}

The peak of a disk-offload run is the load's: a component is read whole before it is written out
(the transformer here); ``generate_peak_gb`` is the peak while generating (VmHWM reset after the load).

Run: ``.venv/bin/python bench/disk_offload.py --json`` (needs about 2 x 10 GB of free disk and 12 GB of RAM).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

CHILD = r"""
import json, resource, sys, time
from dataclasses import replace
from pathlib import Path
sys.path.insert(0, sys.argv[2])
import torch
torch.set_num_threads(int(sys.argv[5]))
from core import config
config.use(replace(config.current(), offload_dir=Path(sys.argv[4])))
from core.check.detect import inspect
from core.run.generation import GenerationConfig
from core.run.hardware import probe
from core.run.load import load, plan_for_load
from core.run.optimize import OptimizationRequest
import threading
peaks = {"RssAnon": 0, "RssFile": 0}
def sample():    # anonymous memory cannot be given back; file pages (mapped weights) the kernel can drop
    while True:
        for line in open("/proc/self/status"):
            key = line.split(":")[0]
            if key in peaks:
                peaks[key] = max(peaks[key], int(line.split()[1]) * 1024)
        time.sleep(0.02)
threading.Thread(target=sample, daemon=True).start()
report = inspect(sys.argv[1])
overrides = {"precision": "bf16", **({"offload": "disk"} if sys.argv[3] == "disk" else {})}
plan = plan_for_load(report, probe(use_torch=True), OptimizationRequest(64, 64, 5, 1, overrides=overrides))
start = time.perf_counter()
wrapper = load(report, plan)
load_s = time.perf_counter() - start
written = wrapper.offload_folder.size_mb() * 2**20 if wrapper.offload_folder else 0
after_load = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
resident = status("VmRSS")
open("/proc/self/clear_refs", "w").write("5")     # resets VmHWM: the peak from here on is the generation's
start = time.perf_counter()
frames, result = wrapper.generate_frames(GenerationConfig(prompt="a boat", width=64, height=64, num_frames=5,
                                                          num_inference_steps=1, seed=1), plan=plan)
assert result.success, result.errors
generate_s = time.perf_counter() - start
peak = max(after_load, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)   # clear_refs reset it too
print(json.dumps({"placement": plan.placement.value, "estimate": plan.estimate.peak_ram_mb * 2**20,
                  "after_load": after_load, "peak": peak, "written": written, "load_s": load_s,
                  "resident_after_load": resident, "generate_peak": status("VmHWM"),
                  "anon_peak": peaks["RssAnon"], "file_peak": peaks["RssFile"],
                  "generate_s": generate_s}))
"""


def run_child(folder: Path, mode: str, offload_dir: Path, threads: int) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-c", CHILD, str(folder), str(REPO), mode, str(offload_dir), str(threads)],
                          capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(REPO)))
    if proc.returncode != 0:
        raise SystemExit(f"{mode} run failed: {(proc.stderr or proc.stdout).strip()[-1500:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=30, help="transformer blocks (30: the real TI2V-5B)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    from bench.quantized import real_size_folder
    with tempfile.TemporaryDirectory(prefix="wan_disk_bench_", dir=str(REPO / "data")) as tmp:
        start = time.perf_counter()
        folder, file_bytes = real_size_folder(Path(tmp), args.layers)
        print(f"wrote a {file_bytes / 1e9:.2f} GB bf16 TI2V-5B transformer in {time.perf_counter() - start:.0f} s",
              flush=True)
        disk = run_child(folder, "disk", Path(tmp) / "offload", args.threads)
        ram = run_child(folder, "ram", Path(tmp) / "offload", args.threads)
        left = list((Path(tmp) / "offload").iterdir()) if (Path(tmp) / "offload").exists() else []
    out = {"file_gb": round(file_bytes / 1e9, 3), "offload_files_left": len(left),
           "disk": {"placement": disk["placement"], "peak_gb": round(disk["peak"] / 1e9, 3),
                    "peak_after_load_gb": round(disk["after_load"] / 1e9, 3),
                    "peak_vs_file": round(disk["peak"] / file_bytes, 4),
                    "estimate_vs_peak": round(disk["estimate"] / disk["peak"], 4),
                    "anon_peak_gb": round(disk["anon_peak"] / 1e9, 3),
                    "file_pages_peak_gb": round(disk["file_peak"] / 1e9, 3),
                    "estimate_vs_anon_peak": round(disk["estimate"] / disk["anon_peak"], 4),
                    "resident_after_load_gb": round(disk["resident_after_load"] / 1e9, 3),
                    "generate_peak_gb": round(disk["generate_peak"] / 1e9, 3),
                    "written_gb": round(disk["written"] / 1e9, 3),
                    "load_s": round(disk["load_s"], 1), "generate_s": round(disk["generate_s"], 1)},
           "ram": {"placement": ram["placement"], "peak_gb": round(ram["peak"] / 1e9, 3),
                   "generate_peak_gb": round(ram["generate_peak"] / 1e9, 3),
                   "anon_peak_gb": round(ram["anon_peak"] / 1e9, 3),
                   "peak_vs_file": round(ram["peak"] / file_bytes, 4),
                   "load_s": round(ram["load_s"], 1), "generate_s": round(ram["generate_s"], 1)}}
    out["generate_ratio"] = round(disk["generate_s"] / max(ram["generate_s"], 1e-9), 2)
    print(f"offload to disk: peak RAM {out['disk']['peak_gb']} GB for a {out['file_gb']} GB transformer "
          f"({out['disk']['peak_vs_file']}x; estimate {out['disk']['estimate_vs_peak']}x the peak), "
          f"{out['disk']['written_gb']} GB written; while generating {out['disk']['generate_peak_gb']} GB against "
          f"{out['ram']['generate_peak_gb']} GB with the weights in RAM (peak {out['ram']['peak_gb']} GB); one step "
          f"{out['disk']['generate_s']} s vs {out['ram']['generate_s']} s ({out['generate_ratio']}x)", flush=True)
    if args.json:
        print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
