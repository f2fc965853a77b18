"""Bad task inputs are refused before anything loads: exit 2, one sentence naming the file, no MP4.

Real files written here (PNG, JPEG, MP4, GIF, frame folders, a text file renamed .mp4, a cut
download, a PNG whose header claims 100000x100000 pixels); the tiny save_pretrained models of
tests/task_models.py; `python -m core generate` run as a user runs it.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from core.check.detect import inspect
from core.errors import WanError
from core.run.generation import GenerationConfig, resolve
from core.run.inputs import probe, read_video
from tests.conftest import run_cli
from tests.test_tasks import noise_image, noise_video, task_models  # noqa: F401 - the session fixture


def bomb_png(path: Path, width: int = 100_000, height: int = 100_000) -> Path:
    """A tiny PNG whose IHDR claims width x height (a decompression bomb): never to be decoded."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    raw = zlib.compress(b"\x00" * 64)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", raw) + chunk(b"IEND", b""))
    return path


def generate(model: Path, out: Path, *flags: str):
    return run_cli("generate", str(model), "--prompt", "a fox", "--size", "64x64", "--frames", "5", "--steps", "1",
                   "--out", str(out), *flags)


def assert_refused(result, out: Path, *words: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr)
    text = result.stderr
    assert "Traceback" not in text and "Loading" not in text and not out.exists(), text
    for word in words:
        assert word in text, (word, text)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("inputs")
    text = d / "notes.mp4"
    text.write_text("these are my notes, not a video\n" * 20)
    good = noise_video(d / "good.mp4", 9)
    cut = d / "cut.mp4"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    empty_dir = d / "no_frames"
    empty_dir.mkdir()
    (empty_dir / "readme.txt").write_text("nothing here")
    return {"text_mp4": text, "good": good, "cut": cut, "no_frames": empty_dir, "bomb": bomb_png(d / "bomb.png"),
            "png": noise_image(d / "a.png"), "short": noise_video(d / "short.mp4", 3),
            "cut_png": _cut(noise_image(d / "whole.png"), d / "cut.png")}


def _cut(src: Path, dst: Path) -> Path:
    dst.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    return dst


CASES = [
    ("t2v", ["--video", "{missing}"], ["missing.mp4", "does not exist"]),
    ("t2v", ["--video", "{text_mp4}"], ["notes.mp4", "not a readable video"]),
    ("t2v", ["--video", "{cut}"], ["cut.mp4"]),
    ("t2v", ["--video", "{no_frames}"], ["no_frames", "no PNG, JPEG or WebP frames"]),
    ("ti2v", ["--image", "{bomb}"], ["bomb.png", "10000 megapixels", "decompression bomb", "not decoded"]),
    ("ti2v", ["--image", "{cut_png}"], ["cut.png", "damaged or cut short"]),
    ("ti2v", ["--image", "{text_mp4}"], ["notes.mp4", "cannot be read as an image"]),
    ("t2v", ["--pose-video", "{good}"], ["takes no pose video", "Animate models (Wan2.2-Animate-14B)"]),
    ("animate", ["--image", "{png}", "--face-video", "{good}"], ["needs a pose video", "--pose-video"]),
    ("vace", ["--mask", "{good}"], ["mask", "--video"]),
    ("animate", ["--image", "{png}", "--pose-video", "{good}", "--face-video", "{good}", "--mode", "replace"],
     ["Replace mode needs a background video", "Replace mode needs a mask video"]),
    ("t2v", ["--video", "{good}", "--strength", "0"], ["strength must be more than 0 and at most 1"]),
    ("t2v", ["--video", "{good}", "--strength", "1.5"], ["strength must be more than 0 and at most 1"]),
    ("vace", ["--video", "{good}", "--conditioning-scale", "-1"], ["conditioning scale must be a number of 0 or more"]),
    ("t2v", ["--video", "{short}", "--frames", "9"], ["short.mp4 has 3 frames", "--frames 1"]),
]


@pytest.mark.parametrize(("task", "flags", "words"), CASES, ids=[" ".join(c[1]) for c in CASES])
def test_bad_inputs_are_refused_before_loading(task: str, flags: list[str], words: list[str], files: dict,
                                               task_models: dict, tmp_path: Path) -> None:  # noqa: F811
    paths = {**{k: str(v) for k, v in files.items()}, "missing": str(tmp_path / "missing.mp4")}
    out = tmp_path / "never.mp4"
    argv = [f.format(**paths) for f in flags]
    if "--frames" in argv:
        result = run_cli("generate", str(task_models[task]), "--prompt", "a fox", "--size", "64x64", "--steps", "1",
                         "--out", str(out), *argv)
    else:
        result = generate(task_models[task], out, *argv)
    assert_refused(result, out, *words)


def test_s2v_is_refused_before_loading(tmp_path: Path) -> None:
    from tests.sparse.original_layout import write_original_layout
    from tests.sparse.specs import BY_KEY
    folder = write_original_layout(BY_KEY["wan22_s2v_14b"], tmp_path)
    result = run_cli("generate", str(folder), "--prompt", "x", "--out", str(tmp_path / "v.mp4"))
    assert result.returncode == 1 and "speech-to-video (S2V)" in result.stderr and "no pipeline" in result.stderr
    assert "Loading" not in result.stderr and "Traceback" not in result.stderr


def test_a_bomb_is_refused_from_its_header_without_decoding(files: dict) -> None:
    import tracemalloc
    tracemalloc.start()
    with pytest.raises(WanError, match="decompression bomb"):
        probe(str(files["bomb"]), "image")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 5_000_000   # 100000x100000 RGB would be 30 GB


def test_videos_of_every_kind_are_read(files: dict, tmp_path: Path) -> None:
    from PIL import Image
    frames = [Image.fromarray((np.random.RandomState(i).rand(32, 48, 3) * 255).astype("uint8")) for i in range(7)]
    gif = tmp_path / "clip.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=100, loop=0)
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(frames):   # 1, 2, ..., 10: numbers in name order
        frame.save(folder / f"frame_{i + 1}.png")
    webm = tmp_path / "clip.webm"
    import imageio_ffmpeg
    writer = imageio_ffmpeg.write_frames(str(webm), (48, 32), codec="libvpx-vp9", fps=8, macro_block_size=1)
    writer.send(None)
    for frame in frames:
        writer.send(np.asarray(frame).tobytes())
    writer.close()
    for source in (gif, folder, webm, files["good"]):
        info = probe(str(source), "video")
        expected = 9 if source == files["good"] else 7
        assert info.frames == expected, source
        read = read_video(str(source), limit=5)
        assert len(read) == 5 and read[0].size == (info.width, info.height)
    assert np.array_equal(np.asarray(read_video(str(folder))[1]), np.asarray(frames[1]))


def test_the_app_and_python_get_the_same_sentences(task_models: dict, files: dict) -> None:  # noqa: F811
    report = inspect(task_models["t2v"])
    _, errors = resolve(GenerationConfig(prompt="x", pose_video=str(files["good"])), report)
    assert errors == ["This text-to-video model takes no pose video (--pose-video): only Animate models "
                      "(Wan2.2-Animate-14B) do; remove it or choose such a model."]


def test_a_bomb_under_pillows_own_limit_is_refused_by_ours(tmp_path: Path) -> None:
    with pytest.raises(WanError, match="9000x9000 pixels in its header"):
        probe(str(bomb_png(tmp_path / "big.png", 9000, 9000)), "image")
