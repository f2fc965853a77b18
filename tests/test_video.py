"""core.run.video: frames -> MP4 round trips, settings in the file and beside it, atomic writes, names."""

from __future__ import annotations

import dataclasses
import enum
import json
import os
import stat
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.errors import WanError
from core.run.output_claim import release
from core.run.video import VideoInfo, default_output_path, read_video_info, write_mp4


def gradient(frames: int, width: int, height: int) -> np.ndarray:
    """A smooth moving colour gradient, float32 in [0, 1], shaped [F, H, W, 3]."""
    t = np.arange(frames, dtype=np.float32)[:, None, None]
    y = np.linspace(0, 1, height, dtype=np.float32)[None, :, None]
    x = np.linspace(0, 1, width, dtype=np.float32)[None, None, :]
    red = np.broadcast_to(x, (frames, height, width))
    green = np.broadcast_to(y, (frames, height, width))
    blue = 0.5 + 0.4 * np.sin(2 * np.pi * (x + y) / 2 + t / 5)
    return np.stack([red, green, blue], axis=-1).astype(np.float32)


def decode(path: Path) -> np.ndarray:
    import imageio_ffmpeg
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    width, height = meta["size"]
    return np.stack([np.frombuffer(b, np.uint8).reshape(height, width, 3) for b in reader])


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# ---------------------------------------------------------------- round trips

@pytest.mark.parametrize("frames,width,height,as_uint8", [
    (5, 64, 64, False),
    (17, 128, 96, True),
    (33, 72, 40, False),      # not multiples of 16
])
def test_round_trip_count_size_fps(tmp_path: Path, frames: int, width: int, height: int, as_uint8: bool) -> None:
    video = gradient(frames, width, height)
    if as_uint8:
        video = (video * 255).round().astype(np.uint8)
    out = write_mp4(video, tmp_path / "video.mp4", fps=16)
    assert out == tmp_path / "video.mp4"
    info = read_video_info(out)
    assert isinstance(info, VideoInfo)
    assert (info.frames, info.width, info.height, info.fps, info.codec) == (frames, width, height, 16.0, "h264")
    assert info.duration_s == pytest.approx(frames / 16)
    assert leftovers(tmp_path) == ["video.json", "video.mp4"]


def test_odd_size_is_padded_to_even(tmp_path: Path) -> None:
    info = read_video_info(write_mp4(gradient(5, 65, 33), tmp_path / "odd.mp4", fps=8))
    assert (info.frames, info.width, info.height, info.fps) == (5, 66, 34, 8.0)


def test_batch_dim_pil_and_array_lists(tmp_path: Path) -> None:
    video = gradient(5, 64, 48)
    info = read_video_info(write_mp4(video[None], tmp_path / "batch.mp4", fps=16))
    assert (info.frames, info.width, info.height) == (5, 64, 48)
    images = [Image.fromarray((f * 255).round().astype(np.uint8)) for f in video]
    assert read_video_info(write_mp4(images, tmp_path / "pil.mp4", fps=16)).frames == 5
    assert read_video_info(write_mp4(list(video), tmp_path / "arrays.mp4", fps=16)).frames == 5
    generator = (f for f in video)
    assert read_video_info(write_mp4(generator, tmp_path / "gen.mp4", fps=16)).frames == 5


def test_pixels_survive(tmp_path: Path) -> None:
    video = gradient(9, 128, 96)
    decoded = decode(write_mp4(video, tmp_path / "v.mp4", fps=16)).astype(np.float32)
    expected = np.rint(video * 255)
    assert decoded.shape == expected.shape
    assert np.abs(decoded - expected).mean() < 2.0          # of 255: CRF 18 on a smooth gradient


def test_float_is_clipped_and_rounded(tmp_path: Path) -> None:
    values = np.array([-0.5, 0.2, 0.5, 1.0, 1.7, np.nan], dtype=np.float32)
    flat = np.broadcast_to(values[:, None, None, None], (6, 32, 32, 3)).copy()
    decoded = decode(write_mp4(flat, tmp_path / "v.mp4", fps=16)).astype(np.float32)
    means = decoded.reshape(6, -1).mean(axis=1)
    assert means == pytest.approx([0, 51, 128, 255, 255, 0], abs=2)


# ---------------------------------------------------------------- settings

class Precision(enum.Enum):
    BF16 = "bf16"


@dataclasses.dataclass(frozen=True)
class Plan:
    precision: Precision
    offload: str


def test_metadata_in_mp4_and_json(tmp_path: Path) -> None:
    settings = {"model": "Wan2.2-TI2V-5B", "prompt": "A cat = surfer; #1 \\ on\nwaves, 色调艳丽",
                "seed": 42, "steps": 30, "guidance": 5.0, "size": [832, 480], "app_version": "0.1.0",
                "plan": Plan(Precision.BF16, "model"), "numpy_seed": np.int64(7),
                "model_path": Path("/models/wan"), "long": "x" * 40_000}
    out = write_mp4(gradient(5, 64, 64), tmp_path / "clip.mp4", fps=16, metadata=settings)
    expected = {**settings, "plan": {"precision": "bf16", "offload": "model"}, "numpy_seed": 7,
                "model_path": str(Path("/models/wan"))}
    assert read_video_info(out).metadata == expected
    sidecar = tmp_path / "clip.json"
    assert json.loads(sidecar.read_text(encoding="utf-8")) == expected
    assert "色调艳丽" in sidecar.read_text(encoding="utf-8")      # readable by people


def test_no_metadata_and_foreign_video(tmp_path: Path) -> None:
    out = write_mp4(gradient(5, 64, 64), tmp_path / "plain.mp4", fps=16)
    assert read_video_info(out).metadata == {}
    assert json.loads((tmp_path / "plain.json").read_text()) == {}
    import imageio_ffmpeg  # a video made elsewhere
    foreign = tmp_path / "foreign.mp4"
    writer = imageio_ffmpeg.write_frames(str(foreign), (64, 64), fps=10, ffmpeg_log_level="error")
    writer.send(None)
    for frame in (gradient(3, 64, 64) * 255).astype(np.uint8):
        writer.send(frame.tobytes())
    writer.close()
    info = read_video_info(foreign)
    assert (info.frames, info.fps, info.metadata) == (3, 10.0, None)


def test_progress_rises_to_100(tmp_path: Path) -> None:
    calls: list[tuple[str, float]] = []
    write_mp4(gradient(33, 64, 64), tmp_path / "v.mp4", fps=16, progress_callback=lambda m, p: calls.append((m, p)))
    percents = [p for _, p in calls]
    assert percents == sorted(percents) and len(set(percents)) == len(percents)
    assert percents[0] == 0.0 and percents[-1] == 100.0
    messages = [m for m, _ in calls]
    assert "Encoding video: frame 33 of 33" in messages
    assert any(m.startswith("Encoding video: frame 1") and m.endswith("of 33") for m in messages)
    assert 5 <= sum("of 33" in m for m in messages) <= 21


# ---------------------------------------------------------------- atomic writes and errors

def failing_frames(bad: BaseException):
    video = gradient(5, 64, 64)
    for index, frame in enumerate(video):
        if index == 2:
            raise bad
        yield frame


def test_failure_midway_leaves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "new" / "video.mp4"
    with pytest.raises(RuntimeError, match="boom"):
        write_mp4(failing_frames(RuntimeError("boom")), out, fps=16, metadata={"seed": 1})
    assert leftovers(out.parent) == []
    frames = list(gradient(5, 64, 64))
    frames[2] = np.zeros((10, 10))                               # a bad element in a list
    with pytest.raises(ValueError, match="Frame 3"):
        write_mp4(frames, out, fps=16)
    assert leftovers(out.parent) == []
    with pytest.raises(ValueError, match="no frames"):
        write_mp4([], out, fps=16)
    assert leftovers(out.parent) == []


def test_interrupt_keeps_the_old_file(tmp_path: Path) -> None:
    out = write_mp4(gradient(5, 64, 64), tmp_path / "video.mp4", fps=16, metadata={"run": 1})
    before = out.read_bytes()
    with pytest.raises(KeyboardInterrupt):
        write_mp4(failing_frames(KeyboardInterrupt()), out, fps=16, metadata={"run": 2})
    assert leftovers(tmp_path) == ["video.json", "video.mp4"]
    assert out.read_bytes() == before
    assert json.loads((tmp_path / "video.json").read_text()) == {"run": 1}


def test_overwrite_replaces_both_files(tmp_path: Path) -> None:
    out = tmp_path / "video.mp4"
    write_mp4(gradient(5, 64, 64), out, fps=16, metadata={"run": 1})
    write_mp4(gradient(9, 96, 64), out, fps=8, metadata={"run": 2})
    info = read_video_info(out)
    assert (info.frames, info.width, info.fps, info.metadata) == (9, 96, 8.0, {"run": 2})
    assert json.loads((tmp_path / "video.json").read_text()) == {"run": 2}
    assert leftovers(tmp_path) == ["video.json", "video.mp4"]


def test_unwritable_folder(tmp_path: Path) -> None:
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    with pytest.raises(WanError) as caught:
        write_mp4(gradient(5, 64, 64), blocker / "sub" / "video.mp4", fps=16)
    assert "cannot be created" in caught.value.message and caught.value.remedy
    assert leftovers(tmp_path) == ["file.txt"]


@pytest.mark.skipif(sys.platform.startswith("win") or os.geteuid() == 0,
                    reason="root writes to read-only folders; POSIX modes only")
def test_read_only_folder(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        with pytest.raises(WanError, match="permission denied"):
            write_mp4(gradient(5, 64, 64), folder / "video.mp4", fps=16)
    finally:
        folder.chmod(stat.S_IRWXU)
    assert leftovers(folder) == []


def test_permission_denied_is_plain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A folder the user may not write to (simulated: as root every folder is writable)."""
    import core.run.video

    def refuse(path: Path, text: str, sync: bool) -> None:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(core.run.video, "_write_file", refuse)
    with pytest.raises(WanError) as caught:
        write_mp4(gradient(5, 64, 64), tmp_path / "video.mp4", fps=16)
    assert "permission denied" in caught.value.message and "write to" in caught.value.remedy
    assert leftovers(tmp_path) == []


def test_replace_refused_restores_old_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Windows refuses to replace a video that a player has open: the old pair stays as it was."""
    out = write_mp4(gradient(5, 64, 64), tmp_path / "video.mp4", fps=16, metadata={"run": 1})
    before = out.read_bytes()
    real_replace = os.replace

    def replace(src: os.PathLike[str] | str, dst: os.PathLike[str] | str) -> None:
        if Path(dst) == out:
            raise PermissionError(13, "Permission denied", str(dst))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(WanError, match="open in another program"):
        write_mp4(gradient(5, 64, 64), out, fps=16, metadata={"run": 2})
    monkeypatch.undo()
    assert leftovers(tmp_path) == ["video.json", "video.mp4"]
    assert out.read_bytes() == before
    assert json.loads((tmp_path / "video.json").read_text()) == {"run": 1}


def test_ffmpeg_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", str(tmp_path / "no-such-ffmpeg"))
    out = tmp_path / "out" / "video.mp4"
    with pytest.raises(WanError) as caught:
        write_mp4(gradient(5, 64, 64), out, fps=16)
    assert "ffmpeg could not be started" in caught.value.message and "imageio-ffmpeg" in caught.value.remedy
    assert leftovers(out.parent) == []


@pytest.mark.skipif(sys.platform.startswith("win"), reason="the fake ffmpeg is a shell script")
@pytest.mark.parametrize("read_input", [True, False])
def test_disk_full(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, read_input: bool) -> None:
    """An ffmpeg that fails as on a full disk, after reading its input or without reading it."""
    fake = tmp_path / "ffmpeg"
    consume = "cat > /dev/null\n" if read_input else ""
    fake.write_text(f"#!/bin/sh\n{consume}echo 'out.mp4: No space left on device' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", str(fake))
    out = tmp_path / "out" / "video.mp4"
    with pytest.raises(WanError) as caught:
        write_mp4(gradient(17, 128, 128), out, fps=16, metadata={"seed": 1})
    assert caught.value.message.startswith("The disk is full") and "Free some space" in caught.value.remedy
    assert "No space left" in caught.value.details
    assert leftovers(out.parent) == []


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="shaped"):
        write_mp4(np.zeros((2, 5, 8, 8, 3)), tmp_path / "v.mp4", fps=16)
    with pytest.raises(ValueError, match="fps"):
        write_mp4(gradient(5, 64, 64), tmp_path / "v.mp4", fps=0)
    with pytest.raises(ValueError, match="json"):
        write_mp4(gradient(5, 64, 64), tmp_path / "v.json", fps=16)
    assert leftovers(tmp_path) == []


def test_read_errors(tmp_path: Path) -> None:
    with pytest.raises(WanError, match="Not found"):
        read_video_info(tmp_path / "missing.mp4")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(os.urandom(4096))
    with pytest.raises(WanError, match="not a readable video"):
        read_video_info(junk)


# ---------------------------------------------------------------- names

NOW = datetime(2026, 11, 26, 11, 45, 2)


def test_default_output_path_slug(tmp_path: Path) -> None:
    assert default_output_path(tmp_path, "A cat on a surfboard!", 42, now=NOW) == \
        tmp_path / "2026-11-26_114502_a-cat-on-a-surfboard_seed42.mp4"
    long = default_output_path(tmp_path, "A café on the beach at dawn, waves rolling in, golden light, 4k", 7, now=NOW)
    slug = long.name.removeprefix("2026-11-26_114502_").removesuffix("_seed7.mp4")
    assert slug == "a-cafe-on-the-beach-at-dawn-waves"
    assert len(slug) <= 40 and slug.isascii()
    first = default_output_path(tmp_path, "一只猫在冲浪", 1, now=NOW)
    assert first.name == "2026-11-26_114502_video_seed1.mp4"
    release(first)                  # claimed until written or released
    assert default_output_path(tmp_path, "", 1, now=NOW).name == "2026-11-26_114502_video_seed1.mp4"
    no_spaces = default_output_path(tmp_path, "x" * 100, 1, now=NOW).name
    assert no_spaces == f"2026-11-26_114502_{'x' * 40}_seed1.mp4"
    assert default_output_path(tmp_path, "../../etc/passwd", 1, now=NOW).parent == tmp_path


def test_default_output_path_collisions(tmp_path: Path) -> None:
    first = default_output_path(tmp_path, "a cat", 42, now=NOW)
    first.write_bytes(b"")
    second = default_output_path(tmp_path, "a cat", 42, now=NOW)
    assert second.name == "2026-11-26_114502_a-cat_seed42-2.mp4"
    second.with_suffix(".json").write_text("{}")                # a JSON alone also takes the name
    assert default_output_path(tmp_path, "a cat", 42, now=NOW).name == "2026-11-26_114502_a-cat_seed42-3.mp4"
    assert default_output_path(tmp_path, "a cat", 42).suffix == ".mp4"
