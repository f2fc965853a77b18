"""What recording into the performance history costs a generation.

On a demo model (128x128, 33 frames, 4 steps, same seed), ``wrapper.generate_frames`` with
the app-wide monitor recording against the same call with it off (``monitor.enabled =
False``, the switch that ``WAN_COMPAT_MONITOR=off`` also flips), interleaved ABBA so that
drift in the machine hits both alike.

    .venv/bin/python bench/monitor_overhead.py [--runs 10] [--model wan21_t2v] [--json]

Prints the median generation time of each and their ratio (monitored over unmonitored;
target < 1.01), and, as a steadier figure, the monitor's own cost per operation (an
empty ``track`` block: opening, sampling thread, closing, one SQLite insert) against the
median generation time. The history goes to a temporary database, never the user's.
With --json the last line is ``{"overhead_ratio": x}``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from core.demo import write_demo_model  # noqa: E402
from core.monitor import get_performance_monitor  # noqa: E402
from core.run.generation import GenerationConfig  # noqa: E402
from core.run.load import WanPipelineLoader  # noqa: E402

CONFIG = GenerationConfig(prompt="a red fox running through deep snow", negative_prompt="blurry", width=128,
                          height=128, num_frames=33, num_inference_steps=4, guidance_scale=5.0, seed=1234)


def generation_seconds(wrapper: object, monitored: bool) -> float:
    monitor = get_performance_monitor()
    monitor.enabled = monitored
    start = time.perf_counter()
    _, result = wrapper.generate_frames(CONFIG)  # type: ignore[attr-defined]
    seconds = time.perf_counter() - start
    assert result.success, result.errors
    return seconds


def per_operation_seconds(repeats: int = 50) -> float:
    """Median cost of one empty recorded operation (start, sampler, end, insert)."""
    monitor = get_performance_monitor()
    monitor.enabled = True
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        with monitor.track("bench", model="empty"):
            pass
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="pairs of runs (default 10)")
    parser.add_argument("--model", default="wan21_t2v")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    with tempfile.TemporaryDirectory(prefix="wan-monitor-overhead-") as tmp:
        os.environ["WAN_COMPAT_HISTORY_DB"] = str(Path(tmp) / "history.db")
        os.environ.pop("WAN_COMPAT_MONITOR", None)
        folder = write_demo_model(args.model, Path(tmp))
        wrapper = WanPipelineLoader().load_wan_pipeline(folder)
        generation_seconds(wrapper, True), generation_seconds(wrapper, False)  # warm-up: caches, first insert
        on: list[float] = []
        off: list[float] = []
        for i in range(args.runs):
            for monitored in ((True, False) if i % 2 == 0 else (False, True)):
                (on if monitored else off).append(generation_seconds(wrapper, monitored))
        fixed = per_operation_seconds()
        monitor = get_performance_monitor()
        monitor.enabled = True
        recorded = len(monitor.operations("generation"))
        monitor.close()
    ratio = statistics.median(on) / statistics.median(off)
    print(f"model {args.model}, {CONFIG.width}x{CONFIG.height}, {CONFIG.num_frames} frames, "
          f"{CONFIG.num_inference_steps} steps, {args.runs} interleaved pairs (medians)")
    print(f"generate: monitor off {statistics.median(off):.3f} s   on {statistics.median(on):.3f} s   "
          f"ratio {ratio:.4f} (target < 1.01)")
    print(f"the monitor's own cost per operation: {fixed * 1000:.2f} ms "
          f"= {100 * fixed / statistics.median(off):.3f}% of one generation here")
    print(f"generations recorded: {recorded} (expected {args.runs + 1}, the monitored runs and one warm-up)")
    if args.json:
        print(json.dumps({"overhead_ratio": round(ratio, 4)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
