"""core.check.archive: a .zip of a model is unpacked only when every member is safe, and within limits."""

from __future__ import annotations

import shutil
import stat
import struct
import zipfile
from pathlib import Path

import pytest

from core.check.archive import ZipLimits, extract_zip
from core.errors import WanError


def _zip(path: Path, members: dict[str, bytes], link: str | None = None,
         compression: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        if link is not None:
            info = zipfile.ZipInfo(link)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc/passwd")
    return path


def _declare_size(archive: Path, size: int) -> Path:
    """Make the central directory claim every member unpacks to ``size`` bytes (a lying header)."""
    data = bytearray(archive.read_bytes())
    at = data.find(b"PK\x01\x02")
    while at != -1:
        struct.pack_into("<I", data, at + 24, size)          # uncompressed size
        at = data.find(b"PK\x01\x02", at + 4)
    archive.write_bytes(bytes(data))
    return archive


@pytest.fixture()
def dest(tmp_path: Path) -> Path:
    """An existing folder with one file of the user's, which a refusal must leave alone."""
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "mine.txt").write_text("keep")
    return folder


def _untouched(dest: Path) -> bool:
    return [p.name for p in dest.iterdir()] == ["mine.txt"]


@pytest.mark.parametrize("name", ["../evil.txt", "a/../../evil.txt", "..\\evil.txt"])
def test_a_parent_path_entry_is_refused(tmp_path: Path, dest: Path, name: str) -> None:
    archive = _zip(tmp_path / "bad.zip", {"model/config.json": b"{}", name: b"x"})
    with pytest.raises(WanError, match="points outside its folder") as info:
        extract_zip(archive, dest)
    assert name in str(info.value.message) or repr(name) in info.value.message
    assert not (tmp_path / "evil.txt").exists() and _untouched(dest)


@pytest.mark.parametrize("name", ["/abs/evil.txt", "C:/evil.txt", "C:\\evil.txt"])
def test_an_absolute_path_entry_is_refused(tmp_path: Path, dest: Path, name: str) -> None:
    archive = _zip(tmp_path / "abs.zip", {"model/config.json": b"{}", name: b"x"})
    with pytest.raises(WanError, match="points outside its folder"):
        extract_zip(archive, dest)
    assert not Path("/abs/evil.txt").exists() and _untouched(dest)


def test_a_zip_bomb_by_declared_size_is_refused_before_writing(tmp_path: Path, dest: Path) -> None:
    archive = _declare_size(_zip(tmp_path / "bomb.zip", {"m/config.json": b"{}", "m/w.bin": b"\0" * 100},
                                 compression=zipfile.ZIP_STORED), 3_000_000_000)
    with pytest.raises(WanError) as info:
        extract_zip(archive, dest)
    assert info.value.message == "The .zip unpacks to 6.00 GB, more than the 2.00 GB allowed for uploads."
    assert "type its folder's path" in info.value.remedy
    assert _untouched(dest)


def test_a_zip_bomb_by_ratio_is_refused(tmp_path: Path, dest: Path) -> None:
    archive = _zip(tmp_path / "bomb.zip", {"m/w.bin": b"\0" * (12 * 2**20)})
    with pytest.raises(WanError, match=r"m/w.bin would unpack to 12.6 MB from .* KB: that looks like a zip bomb"):
        extract_zip(archive, dest)
    assert _untouched(dest)


def test_a_header_that_understates_the_size_is_caught_while_writing(tmp_path: Path) -> None:
    archive = _declare_size(_zip(tmp_path / "liar.zip", {"m/w.bin": b"\1" * 5000}, compression=zipfile.ZIP_STORED),
                            10)
    with pytest.raises(WanError, match="damaged|allowed for uploads"):
        extract_zip(archive, tmp_path / "new", ZipLimits(max_bytes=4000))
    assert not (tmp_path / "new").exists()          # created for the archive, removed again


def test_links_too_many_files_too_many_bytes_and_not_a_zip_are_refused(tmp_path: Path, dest: Path) -> None:
    with pytest.raises(WanError, match="contains a link"):
        extract_zip(_zip(tmp_path / "link.zip", {"m/a.json": b"{}"}, link="m/passwd"), dest)
    with pytest.raises(WanError, match="allowed for uploads"):
        extract_zip(_zip(tmp_path / "big.zip", {"m/w.bin": b"\0" * 5000}), dest, ZipLimits(max_bytes=4000))
    with pytest.raises(WanError, match="holds 3 files"):
        extract_zip(_zip(tmp_path / "many.zip", {f"m/{i}": b"" for i in range(3)}), dest, ZipLimits(max_files=2))
    (tmp_path / "not.zip").write_text("hello")
    with pytest.raises(WanError, match="not a readable .zip"):
        extract_zip(tmp_path / "not.zip", dest)
    assert _untouched(dest)


def test_a_normal_small_model_zip_unpacks_to_its_folder_and_checks_as_wan(tmp_path: Path) -> None:
    from core.check.detect import inspect
    from core.demo import write_demo_model

    model = write_demo_model("wan21_t2v", tmp_path / "models")
    archive = Path(shutil.make_archive(str(tmp_path / "wan21_t2v"), "zip", model.parent, model.name))
    folder = extract_zip(archive, tmp_path / "unpacked")
    assert folder == tmp_path / "unpacked" / model.name
    originals = sorted(p.relative_to(model) for p in model.rglob("*") if p.is_file())
    assert sorted(p.relative_to(folder) for p in folder.rglob("*") if p.is_file()) == originals
    assert all((folder / rel).read_bytes() == (model / rel).read_bytes() for rel in originals)
    report = inspect(str(folder))
    assert report.architecture_type.value == "wan_t2v" and report.loadable
