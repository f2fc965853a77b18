"""`check --deep`: every tensor read; NaN/Inf and zero-filled regions named by file and tensor."""

from __future__ import annotations

import json
import shutil
import struct
import threading
from pathlib import Path

import pytest

from tests.conftest import run_cli

TRANSFORMER = "transformer/diffusion_pytorch_model.safetensors"


@pytest.fixture(scope="module")
def damaged(demo_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Copies of the Wan2.1 T2V demo: NaN bytes in one tensor; zeros over the transformer's last third."""
    from core.check.safetensors_header import read_header
    base = tmp_path_factory.mktemp("deep")
    out = {"nan": shutil.copytree(demo_models_dir / "wan21_t2v", base / "nan"),
           "zeros": shutil.copytree(demo_models_dir / "wan21_t2v", base / "zeros")}
    file = out["nan"] / TRANSFORMER
    header = read_header(file)
    info = header.tensors["blocks.1.ffn.net.0.proj.weight"]
    with open(file, "r+b") as handle:
        handle.seek(8 + header.header_size + info.start + 8)
        handle.write(struct.pack("<2f", float("nan"), float("-inf")))
    file = out["zeros"] / TRANSFORMER           # a preallocated download that stopped two thirds in
    size = file.stat().st_size
    with open(file, "r+b") as handle:
        handle.seek(size - size // 3)
        handle.write(bytes(size // 3))
    return out


def test_a_clean_model_passes_and_plain_check_stays_header_only(demo_models_dir: Path) -> None:
    deep = run_cli("check", "--deep", "--json", str(demo_models_dir / "wan22_ti2v_5b"))
    assert deep.returncode == 0, deep.stdout + deep.stderr
    result = json.loads(deep.stdout)["deep"]
    assert result["ok"] and result["files"] == 3 and not result["findings"]
    assert result["bytes_read"] > 0.9 * sum(p.stat().st_size for p in (demo_models_dir / "wan22_ti2v_5b").rglob(
        "*.safetensors"))
    assert "Reading transformer/" in deep.stderr          # the progress bar
    plain = run_cli("check", "--json", str(demo_models_dir / "wan22_ti2v_5b"))
    assert plain.returncode == 0 and "deep" not in json.loads(plain.stdout) and "Reading" not in plain.stderr


def test_nan_and_inf_in_a_tensor_are_named(damaged: dict) -> None:
    result = run_cli("check", "--deep", str(damaged["nan"]))
    assert result.returncode == 1
    assert (f"{TRANSFORMER}, tensor blocks.1.ffn.net.0.proj.weight holds 1 NaN and 1 Inf values: "
            "the file is damaged.") in result.stdout
    assert f"Download {TRANSFORMER} again." in result.stdout
    assert run_cli("check", str(damaged["nan"])).returncode == 0      # the header cannot show it


def test_zeros_over_a_shards_last_third_are_named_with_their_tensors(damaged: dict) -> None:
    result = run_cli("check", "--deep", "--json", str(damaged["zeros"]))
    assert result.returncode == 1
    deep = json.loads(result.stdout)["deep"]
    [finding] = deep["findings"]
    assert finding["code"] == "zero_filled" and finding["path"] == TRANSFORMER
    assert "to the end of the file" in finding["message"] and "the download stopped" in finding["message"]
    from core.check.safetensors_header import read_header
    header = read_header(damaged["zeros"] / TRANSFORMER)
    cut = (damaged["zeros"] / TRANSFORMER).stat().st_size * 2 // 3 - 8 - header.header_size
    inside = {k for k, v in header.tensors.items() if v.start >= cut + 4096 and v.end > v.start}
    before = {k for k, v in header.tensors.items() if v.end <= cut}
    zeroed = {d["tensor"] for d in deep["damaged"]}
    assert inside and inside <= zeroed and not before & zeroed


def test_cancel_stops_the_deep_check(damaged: dict) -> None:
    from core.check.deep import deep_check
    cancel = threading.Event()
    cancel.set()
    result = deep_check(damaged["nan"], cancel=cancel)
    assert result.cancelled and not result.ok


def test_the_model_check_tab_runs_the_deep_check_with_progress_and_cancel(damaged: dict) -> None:
    from wan_ui import deep_check
    steps = list(deep_check.run_deep_check(str(damaged["nan"]), poll_s=0.0))
    html, data = steps[-1]
    assert not data["ok"] and "blocks.1.ffn.net.0.proj.weight holds 1 NaN and 1 Inf" in html
    assert "Download transformer/diffusion_pytorch_model.safetensors again." in html
    assert "damaged" in html
    assert "cancel" in deep_check.cancel_deep_check().lower()
    html, data = list(deep_check.run_deep_check(str(damaged["nan"]) + "-missing"))[-1]
    assert "Not found" in html and data == {}


def test_every_float_dtype_and_a_tensor_larger_than_the_mapped_window(tmp_path: Path) -> None:
    """-Inf, +NaN and a finite maximum at the edges of pieces and windows: only the bad ones named."""
    import numpy as np

    from core.check.deep import CHUNK, WINDOW, deep_check
    big = np.full((WINDOW + CHUNK + 6) // 2, 0x3F80, dtype="<u2")     # bf16 1.0, past one mapped window
    big[-1] = 0xFF80                                                  # -inf as its very last value
    tensors = {"big.weight": ("BF16", big),
               "f16.weight": ("F16", np.array([0x3C00, 0x7BFF, 0xFBFF, 0x7E00], dtype="<u2")),   # +NaN
               "f32.weight": ("F32", np.array([1.0, 3e38, -3e38], dtype="<f4").view("<u4")),       # finite
               "bf16.weight": ("BF16", np.array([0x7F7F, 0xFF7F, 0x0000, 0x8000], dtype="<u2"))}  # finite
    header, offset = {}, 0
    for name, (dtype, array) in tensors.items():
        header[name] = {"dtype": dtype, "shape": [len(array)], "data_offsets": [offset, offset + array.nbytes]}
        offset += array.nbytes
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    file = tmp_path / "model.safetensors"
    file.write_bytes(struct.pack("<Q", len(raw)) + raw + b"".join(a.tobytes() for _, a in tensors.values()))
    result = deep_check(file)
    assert sorted(d["tensor"] for d in result.damaged) == ["big.weight", "f16.weight"]
    assert [(d["nan"], d["inf"]) for d in result.damaged if d["tensor"] == "big.weight"] == [(0, 1)]
    assert result.bytes_read == offset
