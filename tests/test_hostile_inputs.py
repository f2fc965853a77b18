"""Tiny files that lie: headers, configs, manifests and model indexes made to hurt the check (issue 13)."""

from __future__ import annotations

import base64
import json
import shutil
import struct
import time
from pathlib import Path

import pytest

from core.check.detect import inspect
from core.check.expected import expected_tensors
from core.check.filesource import ManifestSource
from core.check.safetensors_header import HeaderError, header_from_bytes, header_from_json
from tests.conftest import run_cli

ENTRY = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}


def _file(path: Path, header: dict | bytes, data: bytes = b"\0" * 8) -> Path:
    body = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(body)) + body + data)
    return path


@pytest.mark.parametrize("shape", [["x", 3_000_000_000], [[], 2**63], [2**62, 2**62], [10**4000], [True, 2],
                                   [1] * 1000])
def test_shapes_are_validated_before_any_arithmetic(shape: list) -> None:
    start = time.perf_counter()
    with pytest.raises(HeaderError) as info:
        header_from_json({"t": dict(ENTRY, shape=shape)}, 64)
    assert info.value.reason == "bad_shape" and time.perf_counter() - start < 0.1


@pytest.mark.parametrize("header", [
    {"a": dict(ENTRY, dtype="XYZ")},                                                # unknown dtype
    {"a": dict(ENTRY, data_offsets=[4, 12])},                                       # a gap at the start
    {"a": ENTRY, "b": dict(ENTRY, data_offsets=[4, 12])},                          # overlapping
    {"a": ENTRY, "b": dict(ENTRY, data_offsets=[12, 20])},                         # a gap between
    {"a": dict(ENTRY, shape=[3]), "b": dict(ENTRY, shape=[1], data_offsets=[8, 16])},  # sizes that cancel out
    {"a": ENTRY, "__metadata__": {"format": 1}},                                    # non-text metadata
])
def test_layouts_the_safetensors_library_refuses(header: dict) -> None:
    with pytest.raises(HeaderError):
        header_from_bytes(json.dumps(header).encode())


def test_bom_and_deep_nesting_are_not_json() -> None:
    for raw in (b"\xef\xbb\xbf" + json.dumps({"a": ENTRY}).encode(), b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}"):
        with pytest.raises(HeaderError) as info:
            header_from_bytes(raw)
        assert info.value.reason == "not_json"


@pytest.fixture()
def demo_copy(demo_models_dir: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    shutil.copytree(demo_models_dir / "wan21_t2v", folder)
    return folder


def _codes(folder: Path) -> set[str]:
    report = inspect(folder)
    assert not report.loadable
    return {str(f.code) for f in report.errors}


def test_bytes_after_the_last_tensor(demo_copy: Path) -> None:
    weights = next((demo_copy / "vae").glob("*.safetensors"))
    with open(weights, "ab") as fh:
        fh.write(b"\0")
    assert "file_extra_bytes" in _codes(demo_copy)


def _header_and_data(path: Path) -> tuple[dict, bytes]:
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8:8 + n]), raw[8 + n:]


@pytest.mark.parametrize("what", ["no tensors", "the VAE's", "the text encoder's", "one dropped"])
def test_a_transformer_file_that_holds_the_wrong_tensors(demo_copy: Path, what: str) -> None:
    target = next((demo_copy / "transformer").glob("*.safetensors"))
    header, data = _header_and_data(target)
    if what == "no tensors":
        header, data = {}, b""
    elif what == "one dropped":  # the last one, so that the layout stays valid
        last = max((n for n in header if n != "__metadata__"), key=lambda n: header[n]["data_offsets"][1])
        data = data[:header.pop(last)["data_offsets"][0]]
    else:
        other = next((demo_copy / ("vae" if "VAE" in what else "text_encoder")).glob("*.safetensors"))
        header, data = _header_and_data(other)
    _file(target, header, data)
    assert "weights_mismatch" in _codes(demo_copy)


def test_null_in_channels_and_index_entries_that_are_not_pairs(demo_copy: Path) -> None:
    config_path = demo_copy / "transformer" / "config.json"
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps(dict(config, in_channels=None)))
    assert "config_unreadable" in _codes(demo_copy)
    config_path.write_text(json.dumps(config))
    index = json.loads((demo_copy / "model_index.json").read_text())
    for bad in ("x", ["diffusers"], [1, 2], ["diffusers", None]):
        (demo_copy / "model_index.json").write_text(json.dumps(dict(index, vae=bad)))
        assert "model_index_unreadable" in _codes(demo_copy), bad


def test_json_nested_thousands_deep_is_a_finding(demo_copy: Path) -> None:
    (demo_copy / "model_index.json").write_text("[" * 50_000 + "]" * 50_000)
    (demo_copy / "vae" / "config.json").write_text('{"a":' + "[" * 50_000 + "]" * 50_000 + "}")
    proc = run_cli("check", str(demo_copy), "--json")
    assert proc.returncode == 1, proc.stderr[-2000:]
    codes = {f["code"] for f in json.loads(proc.stdout)["findings"]}
    assert {"model_index_unreadable", "config_unreadable"} <= codes and "Traceback" not in proc.stderr


def test_manifest_sizes_base64_and_bounds() -> None:
    head = base64.b64encode(b"\0" * 8).decode()
    manifest = {"files": [{"path": "a.safetensors", "size": 2**62}, {"path": "b.safetensors", "size": 10**4000},
                          {"path": "c.safetensors", "size": True},
                          {"path": "d.safetensors", "size": 64, "head_b64": "not base64!"},
                          {"path": "e.safetensors", "size": 64, "head_b64": head}]}
    src = ManifestSource(manifest)
    assert [e.path for e in src.files] == ["d.safetensors", "e.safetensors"]
    assert any("base64" in p for p in src.problems)
    many = {"files": [{"path": f"m{i}.safetensors", "size": 100} for i in range(20_000)]}
    start = time.perf_counter()
    report = inspect(ManifestSource(many))
    assert time.perf_counter() - start < 5
    assert len(report.models) <= 100 and any(str(f.code) == "scan_truncated" for f in report.findings)


@pytest.mark.parametrize("variant", [{}, {"cross_attn_norm": False}, {"image_dim": 32, "added_kv_proj_dim": 24,
                                                                      "pos_embed_seq_len": 514}])
def test_transformer_table_matches_the_class(demo_models_dir: Path, variant: dict) -> None:
    torch = pytest.importorskip("torch")
    from diffusers import AutoencoderKLWan, WanTransformer3DModel
    config = json.loads((demo_models_dir / "wan21_t2v" / "transformer" / "config.json").read_text()) | variant
    with torch.device("meta"):
        model = WanTransformer3DModel.from_config(config)
    assert expected_tensors("WanTransformer3DModel", config) == {k: tuple(v.shape) for k, v in model.state_dict().items()}
    for name in ("wan21_t2v", "wan22_ti2v_5b"):
        vae = json.loads((demo_models_dir / name / "vae" / "config.json").read_text())
        for extra in ({}, {"attn_scales": [0.5, 1.0]}):
            with torch.device("meta"):
                model = AutoencoderKLWan.from_config(vae | extra)
            assert expected_tensors("AutoencoderKLWan", vae | extra) == {
                k: tuple(v.shape) for k, v in model.state_dict().items()}, (name, extra)


def test_a_zip_of_many_small_files_shows_progress(tmp_path: Path) -> None:
    import zipfile

    from wan_ui.model_check import check_zip
    archive = tmp_path / "many.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for i in range(1000):
            zf.writestr(f"model/f{i}.txt", "x")
    seen: list[tuple[float, str]] = []
    html, data = check_zip(str(archive), progress=lambda fraction, desc="": seen.append((fraction, desc)))
    assert seen and seen[-1] == (1.0, "Unpacking the .zip: 1,000 of 1,000 files")
    assert [f for f, _ in seen] == sorted(f for f, _ in seen) and "error" not in data


@pytest.mark.parametrize("path", ["../outside.txt", "/etc/hostname", ".wan_compat_backup/x", "link/escape.txt"])
def test_a_journal_that_points_outside_is_reported_not_recommended(demo_copy: Path, tmp_path: Path, path: str) -> None:
    (tmp_path / "elsewhere").mkdir()
    (demo_copy / "link").symlink_to(tmp_path / "elsewhere")
    run = demo_copy / ".wan_compat_backup" / "20260101-000000"
    run.mkdir(parents=True)
    (run / "journal.json").write_text(json.dumps({"state": "applying", "started": "2026-01-01", "files": [
        {"path": path, "before": None, "states": [None], "final": "0", "final_b64": ""}], "moves": []}))
    codes = {str(f.code) for f in inspect(demo_copy).findings}
    assert "journal_foreign" in codes and "fix_interrupted" not in codes
