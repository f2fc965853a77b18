"""Input files of a generation (images, videos, folders of frames): checked, then decoded.

Checking (:func:`probe`) happens before any model is loaded: it reads an image's header
(a decompression bomb is refused from its claimed size and never decoded), then decodes the
image; a video is decoded once by ffmpeg to count its frames. Every problem is a
:class:`~core.errors.WanError` whose message is one sentence naming the file.

Usage::

    from core.run.inputs import probe, read_image, read_video

    info = probe("start.png")                 # InputInfo(kind="image", width=1280, height=720, frames=1)
    image = read_image("start.png")           # a PIL RGB image
    frames = read_video("pose.mp4", limit=81, progress=lambda done, total: print(done, total))

Images: PNG, JPEG, WebP. Videos: MP4, WebM, MOV, MKV, GIF, or a folder of PNG/JPEG/WebP
frames (in name order, numbers compared as numbers). PIL images and lists of PIL images are
taken as they are.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import WanError

IMAGE_FORMATS = {"PNG": "PNG", "JPEG": "JPEG", "WEBP": "WebP"}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
VIDEO_SUFFIXES = (".mp4", ".webm", ".mov", ".mkv", ".gif")
#: Largest image accepted (width x height), read from the header before decoding: 8192 x 8192.
MAX_PIXELS = 8192 * 8192
_REMEDY_IMAGE = "Use a PNG, JPEG or WebP image."
_REMEDY_VIDEO = "Use an MP4, WebM, MOV or GIF video, or a folder of PNG/JPEG frames."

FrameProgress = Callable[[int, int], None]   # (frames read, frames wanted)


@dataclass(frozen=True)
class InputInfo:
    """What an input is, from checking it: kind "image" or "video", size, frames (1 for an image)."""

    path: str | None
    kind: str
    width: int
    height: int
    frames: int
    fps: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """For the JSON beside the MP4, with the file's sha256 (``None`` for in-memory inputs)."""
        return {"path": self.path, "kind": self.kind, "width": self.width, "height": self.height,
                "frames": self.frames, "sha256": sha256_of(self.path) if self.path else None}


def is_path(value: Any) -> bool:
    return isinstance(value, (str, os.PathLike))


def probe(value: Any, kind: str) -> InputInfo:
    """Check an input of ``kind`` ("image" or "video") without keeping its pixels; raises WanError."""
    if not is_path(value):
        return _probe_memory(value, kind)
    path = Path(value)
    if not path.exists():
        raise WanError(f"The file {path} does not exist.", "Check the path.")
    if kind == "image":
        if path.is_dir():
            raise WanError(f"{path} is a folder, not an image.", _REMEDY_IMAGE)
        image = read_image(path)
        return InputInfo(str(path), "image", image.width, image.height, 1)
    if path.is_dir():
        files = _frame_files(path)
        first = read_image(files[0])
        return InputInfo(str(path), "video", first.width, first.height, len(files))
    if path.suffix.lower() == ".gif" or _image_format(path) == "GIF":
        return _probe_gif(path)
    return _probe_ffmpeg(path)


def read_image(value: Any) -> Any:
    """A PIL RGB image from a path (header checked first: never decodes a bomb) or an image."""
    if not is_path(value):
        return value.convert("RGB")
    from PIL import Image
    path = Path(value)
    with _opened(path) as image:
        if image.format not in IMAGE_FORMATS:
            raise WanError(f"{path} is a {image.format} image, which is not taken here.", _REMEDY_IMAGE)
        try:
            image.load()
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            raise WanError(f"{path} cannot be decoded: it is damaged or cut short ({_said(exc)}).",
                           "Download or export the image again.") from exc
        return image.convert("RGB")


def read_video(value: Any, limit: int | None = None, progress: FrameProgress | None = None) -> list[Any]:
    """The first ``limit`` frames (all when None) as PIL RGB images; ``progress(done, wanted)`` per frame."""
    if not is_path(value):
        frames = [read_image(f) for f in list(value)[:limit]]
        if progress and frames:
            progress(len(frames), len(frames))
        return frames
    path = Path(value)
    if path.is_dir():
        files = _frame_files(path)[:limit]
        return _each(files, read_image, progress)
    if path.suffix.lower() == ".gif" or _image_format(path) == "GIF":
        from PIL import ImageSequence
        with _opened(path) as gif:
            frames = [frame.convert("RGB") for _, frame in zip(range(limit or 10**9), ImageSequence.Iterator(gif))]
        if progress and frames:
            progress(len(frames), len(frames))
        return frames
    return _read_ffmpeg(path, limit, progress)


def sha256_of(path: str | os.PathLike[str]) -> str | None:
    """The SHA-256 of a file, or of every file of a frames folder in order; None when unreadable."""
    p = Path(path)
    digest = hashlib.sha256()
    try:
        for file in (_frame_files(p) if p.is_dir() else [p]):
            with open(file, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
    except (OSError, WanError):
        return None
    return digest.hexdigest()


# --------------------------------------------------------------------------- helpers

def _opened(path: Path) -> Any:
    """``Image.open`` with the header checked: not an image, or a claimed size over MAX_PIXELS, is refused."""
    from PIL import Image, UnidentifiedImageError
    try:
        image = Image.open(path)
    except Image.DecompressionBombError as exc:   # Pillow's own limit, from the header
        claimed = re.search(r"\((\d+) pixels\)", str(exc))
        raise _bomb(path, None, int(claimed.group(1)) if claimed else None) from exc
    except UnidentifiedImageError as exc:
        raise WanError(f"{path} cannot be read as an image: its contents are not PNG, JPEG, WebP or GIF.",
                       _REMEDY_IMAGE) from exc
    except OSError as exc:
        raise WanError(f"{path} cannot be read: {exc.strerror or exc}.", "Check the file's permissions.") from exc
    if image.width * image.height > MAX_PIXELS:
        image.close()
        raise _bomb(path, (image.width, image.height))
    return image


def _bomb(path: Path, size: tuple[int, int] | None, pixels: int | None = None) -> WanError:
    claimed = (f"{size[0]}x{size[1]} pixels" if size else
               f"{pixels // 10**6} megapixels" if pixels else "an enormous size")
    return WanError(f"{path} claims to be {claimed} in its header, more than the 8192x8192 allowed "
                    "(a decompression bomb?); it was not decoded.",
                    "Use an image of at most 8192x8192 pixels.")


def _image_format(path: Path) -> str | None:
    try:
        with open(path, "rb") as handle:
            head = handle.read(6)
    except OSError:
        return None
    return "GIF" if head in (b"GIF87a", b"GIF89a") else None


def _frame_files(folder: Path) -> list[Path]:
    files = sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()),
                   key=lambda p: [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", p.name)])
    if not files:
        raise WanError(f"The folder {folder} holds no PNG, JPEG or WebP frames.", _REMEDY_VIDEO)
    return files


def _probe_gif(path: Path) -> InputInfo:
    with _opened(path) as gif:
        frames = getattr(gif, "n_frames", 1)
        return InputInfo(str(path), "video", gif.width, gif.height, frames)


def _probe_ffmpeg(path: Path) -> InputInfo:
    """Decode once with ffmpeg (frames counted, nothing kept); a file ffmpeg cannot read is refused."""
    from core.run.video import read_video_info
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise WanError(f"{path} is not a video file this program takes ({path.suffix or 'no extension'}).",
                       _REMEDY_VIDEO)
    try:
        info = read_video_info(path)
    except WanError as exc:
        raise WanError(f"{path} is not a readable video: it is damaged, cut short, or not a video at all.",
                       _REMEDY_VIDEO, exc.message) from exc
    if info.frames < 1:
        raise WanError(f"The video {path} has no frames.", _REMEDY_VIDEO)
    if info.width * info.height > MAX_PIXELS:
        raise WanError(f"The video {path} is {info.width}x{info.height}, larger than 8192x8192.",
                       "Scale the video down first.")
    return InputInfo(str(path), "video", info.width, info.height, info.frames, info.fps)


def _read_ffmpeg(path: Path, limit: int | None, progress: FrameProgress | None) -> list[Any]:
    import imageio_ffmpeg
    import numpy as np
    from PIL import Image
    frames: list[Any] = []
    reader = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
    try:
        meta = next(reader)
        width, height = meta["size"]
        wanted = limit or 0
        for raw in reader:
            frames.append(Image.fromarray(np.frombuffer(raw, np.uint8).reshape(height, width, 3).copy()))
            if progress:
                progress(len(frames), wanted or len(frames))
            if limit is not None and len(frames) >= limit:
                break
    except (OSError, RuntimeError, StopIteration) as exc:
        raise WanError(f"{path} is not a readable video.", _REMEDY_VIDEO, str(exc)) from exc
    finally:
        reader.close()
    return frames


def _probe_memory(value: Any, kind: str) -> InputInfo:
    """A PIL image, or a list of them (a video), given in Python rather than as a file."""
    if kind == "image":
        if not hasattr(value, "convert"):
            raise WanError(f"The image must be a file path or a PIL image, not {type(value).__name__}.",
                           _REMEDY_IMAGE)
        return InputInfo(None, "image", value.width, value.height, 1)
    if not isinstance(value, Sequence) or not value or not all(hasattr(f, "convert") for f in value):
        raise WanError("A video must be a file path, a folder of frames or a non-empty list of PIL images.",
                       _REMEDY_VIDEO)
    return InputInfo(None, "video", value[0].width, value[0].height, len(value))


def _each(files: list[Path], read: Callable[[Path], Any], progress: FrameProgress | None) -> list[Any]:
    out = []
    for file in files:
        out.append(read(file))
        if progress:
            progress(len(out), len(files))
    return out


def _said(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
