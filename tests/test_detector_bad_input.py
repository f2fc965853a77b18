"""Bad input never gives a traceback: a report, or exit code 2 with a sentence."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import struct
import tempfile
from pathlib import Path

import pytest

from core.check.detect import inspect
from tests.conftest import run_cli, run_cli_unprivileged


def assert_no_traceback(result) -> None:
    assert "Traceback" not in result.stdout + result.stderr, result.stderr


def test_nonexistent_path_exits_2_with_a_sentence(tmp_path: Path) -> None:
    result = run_cli("check", str(tmp_path / "nowhere"))
    assert result.returncode == 2
    assert "Not found" in result.stderr
    assert_no_traceback(result)


def test_empty_folder_is_not_a_model(tmp_path: Path) -> None:
    report = inspect(tmp_path)
    assert not report.loadable
    assert [f.code for f in report.findings] == ["not_a_model"]
    assert "empty" in report.findings[0].message
    result = run_cli("check", str(tmp_path), "--json")
    assert result.returncode == 1
    assert json.loads(result.stdout)["architecture_type"] == "unknown"


def test_random_bytes_named_safetensors(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(os.urandom(4096))
    report = inspect(path)
    assert not report.loadable
    assert any(f.code.startswith("header_") for f in report.findings)
    result = run_cli("check", str(path))
    assert result.returncode == 1
    assert_no_traceback(result)


def test_header_length_of_two_to_the_sixty(tmp_path: Path) -> None:
    path = tmp_path / "huge.safetensors"
    path.write_bytes(struct.pack("<Q", 2**60) + b"{}" * 10)
    report = inspect(path)
    finding = next(f for f in report.findings if f.code == "header_bad_length")
    assert "1,152,921,504,606,846,976" in finding.message


def test_header_that_is_not_json(tmp_path: Path) -> None:
    path = tmp_path / "bad.safetensors"
    body = b"this is not json at all!"
    path.write_bytes(struct.pack("<Q", len(body)) + body)
    report = inspect(path)
    assert any(f.code == "header_not_json" for f in report.findings)


def test_model_index_that_is_a_list(tmp_path: Path) -> None:
    (tmp_path / "model_index.json").write_text("[1, 2, 3]")
    report = inspect(tmp_path)
    finding = next(f for f in report.findings if f.code == "model_index_unreadable")
    assert "list" in finding.message
    result = run_cli("check", str(tmp_path))
    assert result.returncode == 1
    assert_no_traceback(result)


def test_unparseable_model_index(tmp_path: Path) -> None:
    (tmp_path / "model_index.json").write_text('{"_class_name": "WanPipeline",')
    report = inspect(tmp_path)
    assert any(f.code == "model_index_unreadable" for f in report.findings)
    assert not report.loadable


@pytest.fixture
def open_tmp(tmp_path: Path):
    """A temporary folder that an unprivileged user may enter (pytest's own is private to root)."""
    folder = Path(tempfile.mkdtemp(prefix="wan-compat-"))
    folder.chmod(0o755)
    yield folder
    for p in folder.rglob("*"):
        if not p.is_symlink():
            p.chmod(0o755)
    shutil.rmtree(folder, ignore_errors=True)


def test_unreadable_files_are_reported(open_tmp: Path) -> None:
    model = open_tmp / "model"
    model.mkdir()
    (model / "model_index.json").write_text('{"_class_name": "WanPipeline", "vae": ["diffusers", "AutoencoderKLWan"]}')
    (model / "vae").mkdir()
    (model / "vae" / "config.json").write_text('{"_class_name": "AutoencoderKLWan", "z_dim": 16}')
    (model / "vae" / "diffusion_pytorch_model.safetensors").write_bytes(b"x" * 64)
    for p in [model, model / "vae"]:
        p.chmod(0o755)
    (model / "vae" / "config.json").chmod(0o000)
    (model / "vae" / "diffusion_pytorch_model.safetensors").chmod(0o000)
    result = run_cli_unprivileged("check", str(model), "--json")
    assert_no_traceback(result)
    assert result.returncode == 1
    codes = {f["code"] for f in json.loads(result.stdout)["findings"]}
    assert {"permission_denied", "file_unreadable"} <= codes


def test_unreadable_path_itself_exits_2(open_tmp: Path) -> None:
    locked = open_tmp / "locked"
    locked.mkdir()
    (locked / "model_index.json").write_text("{}")
    locked.chmod(0o000)
    result = run_cli_unprivileged("check", str(locked / "model_index.json"))
    locked.chmod(0o755)
    assert result.returncode == 2
    assert "Permission denied" in result.stderr
    assert_no_traceback(result)


def test_symlink_loop(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "back").symlink_to(tmp_path, target_is_directory=True)
    (tmp_path / "self").symlink_to(tmp_path / "self")
    report = inspect(tmp_path)
    messages = " ".join(f.message for f in report.findings)
    assert "link" in messages
    result = run_cli("check", str(tmp_path / "self"))
    assert result.returncode == 2
    assert "loops" in result.stderr
    assert_no_traceback(result)


def test_non_utf8_names(tmp_path: Path) -> None:
    name = os.fsencode(str(tmp_path)) + b"/\xff\xfeweird.safetensors"
    with open(name, "wb") as fh:
        fh.write(os.urandom(100))
    result = run_cli("check", str(tmp_path))
    assert_no_traceback(result)
    assert "\ufffd" in result.stdout or "weird" in result.stdout
    as_json = run_cli("check", str(tmp_path), "--json")
    assert_no_traceback(as_json)
    json.loads(as_json.stdout)


def test_a_hundred_thousand_files_stay_bounded(tmp_path: Path) -> None:
    crowd = tmp_path / "crowd"
    crowd.mkdir()
    for i in range(100_000):
        (crowd / f"f{i}.txt").touch()
    result = run_cli("check", str(tmp_path), "--json", timeout=60)
    assert_no_traceback(result)
    report = json.loads(result.stdout)
    assert any(f["code"] == "scan_truncated" for f in report["findings"])


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pth_that_would_run_code_is_never_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    model = tmp_path / "model"
    model.mkdir()
    for name in ("Wan2.1_VAE.pth", "models_t5_umt5-xxl-enc-bf16.pth", "pytorch_model.bin"):
        (model / name).write_bytes(pickle.dumps(_Exploit(marker)))
    (model / "evil.ckpt").write_bytes(pickle.dumps(_Exploit(marker)))
    report = inspect(model)
    result = run_cli("check", str(model))
    single = run_cli("check", str(model / "evil.ckpt"))
    assert not marker.exists()
    assert_no_traceback(result)
    assert_no_traceback(single)
    assert single.returncode == 1
    assert any(f.code == "file_truncated" and "Wan2.1_VAE.pth" in f.message for f in report.findings)


def test_locked_files_and_folders_are_called_locked_not_missing(open_tmp: Path, demo_models_dir: Path) -> None:
    model = open_tmp / "model"
    shutil.copytree(demo_models_dir / "wan21_t2v", model)
    for p in [model, *model.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    (model / "model_index.json").chmod(0o000)
    (model / "vae").chmod(0o000)
    result = run_cli_unprivileged("check", str(model), "--json")
    fix = run_cli_unprivileged("fix", str(model), "--apply", "--json")
    (model / "vae").chmod(0o755)
    assert_no_traceback(result)
    assert_no_traceback(fix)
    plan = json.loads(fix.stdout)
    assert fix.returncode == 1 and plan["actions"] == [] and len(plan["manual_steps"]) == 2  # Fix changes nothing
    assert not (model / ".wan_compat_backup").exists()
    findings = json.loads(result.stdout)["findings"]
    locked = {f["path"] for f in findings if f["code"] == "permission_denied"}
    assert locked == {"model_index.json", "vae"}, findings
    assert not {"model_index_missing", "model_index_unreadable", "component_missing"} & {f["code"] for f in findings}
    assert all("read access" in f["remedy"] for f in findings if f["code"] == "permission_denied")
