"""The detector gives the same report from a browser-style manifest as from the folder itself."""

from __future__ import annotations

import base64
import struct
import subprocess
import sys
from pathlib import Path

from core.check.detect import inspect
from core.check.filesource import ManifestSource
from tests.conftest import REPO
from tests.sparse.diffusers_layout import write_diffusers_layout
from tests.sparse.specs import BY_KEY


def manifest_of(folder: Path) -> dict:
    """What the browser's drop zone sends (wan_ui/dropzone.py): names, sizes, the small JSON
    files (configs and indexes, not tokenizer.json) and each safetensors header."""
    files = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        entry = {"path": path.relative_to(folder).as_posix(), "size": path.stat().st_size}
        if path.suffix == ".json" and path.stat().st_size < 2**20 and path.name != "tokenizer.json":
            entry["text"] = path.read_text()
        elif path.suffix == ".safetensors":
            with open(path, "rb") as fh:
                prefix = fh.read(8)
                entry["head_b64"] = base64.b64encode(prefix + fh.read(struct.unpack("<Q", prefix)[0])).decode()
        files.append(entry)
    return {"name": folder.name, "files": files}


def test_manifest_and_folder_give_the_same_report(tmp_path: Path) -> None:
    folder = write_diffusers_layout(BY_KEY["wan22_t2v_a14b"], tmp_path / "Wan2.2-T2V-A14B-Diffusers")
    manifest = manifest_of(folder)
    uploaded = sum(len(f.get("text", "")) + len(f.get("head_b64", "")) for f in manifest["files"])
    assert uploaded < 2_000_000  # a 126 GB model is described in well under 2 MB
    local = inspect(folder).to_dict()
    remote = inspect(ManifestSource(manifest)).to_dict()
    for report in (local, remote):
        report.pop("path"), report.pop("bytes_read")
    assert remote == local
    assert remote["registry_id"] == "Wan-AI/Wan2.2-T2V-A14B-Diffusers" and remote["loadable"]


def test_manifest_without_headers_reports_what_is_missing(tmp_path: Path) -> None:
    folder = write_diffusers_layout(BY_KEY["wan22_ti2v_5b"], tmp_path / "ti2v")
    manifest = manifest_of(folder)
    for entry in manifest["files"]:
        entry.pop("head_b64", None)
    report = inspect(ManifestSource(manifest))
    assert report.architecture_type.value == "wan_ti2v"  # from the configs alone
    assert any(f.code == "file_unreadable" for f in report.findings)


def test_check_never_imports_torch(tmp_path: Path) -> None:
    folder = write_diffusers_layout(BY_KEY["wan22_ti2v_5b"], tmp_path / "ti2v")
    code = ("import sys; from core.__main__ import main; rc = main(['check', sys.argv[1]]); "
            "assert 'torch' not in sys.modules and 'diffusers' not in sys.modules, 'imported torch'; sys.exit(rc)")
    result = subprocess.run([sys.executable, "-c", code, str(folder)], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
