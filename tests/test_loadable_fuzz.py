"""Fuzz: Model Check on a few hundred seeded mutations of the demo models, judged by the real loader.

``tests/fuzz_loadable.py`` mutates headers, configs and model_index.json in a subprocess
under a memory limit (no torch there) and checks each copy. Here every copy the check calls
``loadable: true`` is loaded for real: the component(s) the mutation touched with
``from_pretrained(..., output_loading_info=True)`` (the whole pipeline for model_index.json),
which must succeed with no missing, unexpected or mismatched weights. The check must never
crash, hang (2 s a copy) or outgrow the memory limit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("diffusers")

HERE = Path(__file__).resolve().parent
SEED = int(os.environ.get("WAN_COMPAT_FUZZ_SEED", "13"))      # another seed: more cases, same rules
COUNT = int(os.environ.get("WAN_COMPAT_FUZZ_COUNT", "400"))
MEMORY_MB, SECONDS_PER_CHECK = 1024, 2.0


def _load(folder: Path, touched: list[str]) -> None:
    """Load what a mutation touched the way diffusers would; raise AssertionError on any bad weight."""
    import diffusers
    import transformers
    index = json.loads((folder / "model_index.json").read_text())
    if touched == ["pipeline"]:
        diffusers.DiffusionPipeline.from_pretrained(folder)
        return
    for role in touched:
        library, cls = index[role]
        if library == "diffusers":
            _, info = getattr(diffusers, cls).from_pretrained(folder, subfolder=role, output_loading_info=True)
        else:
            _, info = getattr(transformers, cls).from_pretrained(folder / role, output_loading_info=True)
        bad = {k: v for k, v in info.items() if k in ("missing_keys", "unexpected_keys", "mismatched_keys") and v}
        assert not bad, f"{role}: {bad}"


def test_no_crash_no_hang_and_no_wrong_loadable(demo_models_dir: Path, tmp_path: Path) -> None:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, str(HERE / "fuzz_loadable.py"), str(demo_models_dir), str(tmp_path),
                           str(SEED), str(COUNT), str(MEMORY_MB)],
                          capture_output=True, text=True, timeout=300, env=dict(os.environ, PYTHONHASHSEED="0"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    records: list[dict[str, Any]] = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(records) == COUNT
    crashes = [r for r in records if r.get("crash")]
    assert not crashes, crashes[:3]
    slow = [r for r in records if r["seconds"] > SECONDS_PER_CHECK]
    assert not slow, slow[:3]
    wrong = []
    loadable = [r for r in records if r["loadable"]]
    for r in loadable:
        try:
            _load(Path(r["folder"]), r["touched"])
        except Exception as exc:  # noqa: BLE001 - any failure to load makes "loadable" wrong
            wrong.append((r["mutation"], r["model"], f"{type(exc).__name__}: {str(exc)[:300]}"))
    seconds = time.perf_counter() - start
    print(f"\nfuzz: {COUNT} mutations, {len(crashes)} crashes, {len(slow)} slow, {len(loadable)} called loadable, "
          f"{len(wrong)} of them wrong; {seconds:.0f} s")
    assert not wrong, "\n".join(map(str, wrong))
    assert 0 < len(loadable) < COUNT  # the harmless mutations load, the rest are caught
