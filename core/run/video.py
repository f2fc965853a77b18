"""Frames -> H.264 MP4 with the generation settings inside it and in a JSON beside it.

Usage::

    from core.run.video import write_mp4, read_video_info, default_output_path

    path = default_output_path(Path("outputs"), "A cat on a surfboard", seed=42)
    # outputs/2026-11-26_114502_a-cat-on-a-surfboard_seed42.mp4
    write_mp4(frames, path, fps=16, metadata={"model": "Wan2.2-TI2V-5B", "seed": 42},
              progress_callback=lambda msg, pct: print(f"{pct:5.1f}% {msg}"))
    info = read_video_info(path)
    info.frames, info.width, info.height, info.metadata["seed"]   # 81, 832, 480, 42

What the file is: H.264 (libx264, CRF 18, preset medium), yuv420p with BT.709 colour tags,
``+faststart`` (the index at the front, so a browser starts playing before the download
ends). Chrome, Firefox, Safari, VLC and Windows' player all play it.

Sizes: H.264 in yuv420p needs an even width and height. Diffusers' sizes are multiples of
16, so generated video is never changed; an odd width or height is padded by one pixel
(the last column or row repeated), and the file then reports the padded size.

Settings (``metadata``, any JSON-able mapping; dataclasses, enums, paths and numpy scalars
are converted) are stored twice, as the same dict:

* in the MP4 itself, as compact ASCII JSON in the ``comment`` tag (the ``©cmt`` atom, which
  VLC, exiftool and ffmpeg show). They reach ffmpeg through an FFMETADATA file rather than
  the command line, so a long prompt never meets Windows' command-line limit;
  :func:`read_video_info` reads them back with ``ffmpeg -i FILE -f ffmetadata -``;
* in ``NAME.json`` beside ``NAME.mp4``, indented UTF-8 JSON for people.

Atomic writes: the MP4 is encoded to ``.NAME.mp4.partial-<pid>-<random>`` in the same folder
and the JSON to ``.NAME.json.partial-...``; both are fsynced; then the JSON is renamed into
place and the MP4 last. The MP4's rename is the commit point, so an MP4 in the folder
always has its complete JSON beside it (a power cut between the two renames can leave a
JSON without its MP4, never the reverse). An existing file of the same name is replaced,
and only by that rename: a reader sees the old file or the new, never a half-written one.
On any failure, KeyboardInterrupt included, ffmpeg is stopped, every temporary file is
removed and a replaced JSON is put back: the folder is left as it was.

Why not ``imageio_ffmpeg.write_frames``: it neither checks ffmpeg's exit status nor keeps
its error output, so a disk that fills while the file is finished would pass silently.
This module runs imageio-ffmpeg's own ffmpeg binary (``imageio_ffmpeg.get_ffmpeg_exe()``,
which works offline) directly and checks both. ``torch`` is never imported here.
"""

from __future__ import annotations

import dataclasses
import enum
import errno
import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from core.atomic import fsync_dir
from core.errors import WanError
from core.run.mp4_check import mp4_problem
from core.run.output_claim import release
from core.run.stop_signals import register, unregister

ProgressCallback = Callable[[str, float], None]

CRF = 18                 # visually lossless for generated video; 23 is x264's default
PRESET = "medium"
ENCODE_SHARE = 90.0      # percent of the progress bar for feeding frames; the rest is finishing
_PROGRESS_UPDATES = 20   # at most this many "frame i of n" messages per video

_FFMPEG_REMEDY = ("Reinstall it with `pip install --force-reinstall imageio-ffmpeg` (it ships its own "
                  "ffmpeg), or unset IMAGEIO_FFMPEG_EXE if it points to another ffmpeg.")


@dataclasses.dataclass(frozen=True)
class VideoInfo:
    """What :func:`read_video_info` finds in a video file.

    ``frames`` is counted by decoding every frame, so it is exact. ``duration_s`` is
    ``frames / fps``. ``metadata`` is the dict :func:`write_mp4` stored, or None.
    """

    path: Path
    frames: int
    width: int
    height: int
    fps: float
    duration_s: float
    codec: str
    metadata: dict[str, Any] | None


# --------------------------------------------------------------------------- writing

def write_mp4(frames: Any, path: str | os.PathLike[str], fps: int,
              metadata: Mapping[str, Any] | None = None,
              progress_callback: ProgressCallback | None = None) -> Path:
    """Encode ``frames`` to an H.264 MP4 at ``path`` atomically; write ``NAME.json`` beside it.

    ``frames``: a numpy array ``[F, H, W, 3]`` (or ``[1, F, H, W, 3]``, as diffusers returns
    with ``output_type="np"``), float in [0, 1] (clipped, then rounded to uint8; NaN becomes
    0) or uint8; or a list or other iterable of PIL images or ``H x W x 3`` arrays (frames
    are consumed one at a time, so a generator keeps memory flat). ``metadata`` is stored
    in the MP4 and in the JSON (``{}`` when None). ``progress_callback(message, percent)``
    gets "Encoding video: frame 12 of 81" messages with percent rising to 100 (for an
    iterable without a length the percent stays 0 until the file is finished).

    Returns the final path. The parent folder is created when missing::

        write_mp4(np.zeros((5, 64, 64, 3)), "out/video.mp4", fps=16, metadata={"seed": 1})
        # -> Path("out/video.mp4"), and out/video.json holding {"seed": 1}

    Raises WanError (plain message and remedy) when the folder cannot be written, the disk
    is full, or ffmpeg is missing or fails; ValueError for frames of the wrong shape.
    Temporary files are removed in every case.
    """
    path = Path(path)
    if path.suffix.lower() == ".json":
        raise ValueError(f"{path.name}: a video path must not end in .json (the settings go there).")
    if fps <= 0:
        raise ValueError(f"fps must be positive, not {fps}.")
    report = progress_callback or (lambda message, percent: None)
    meta = dict(metadata or {})
    meta_ascii = json.dumps(meta, ensure_ascii=True, separators=(",", ":"), default=_json_default)
    meta_human = json.dumps(meta, ensure_ascii=False, indent=2, default=_json_default) + "\n"

    _make_folder(path.parent)
    json_path = path.with_suffix(".json")
    tag = f"{os.getpid()}-{secrets.token_hex(3)}"
    tmp_mp4 = path.with_name(f".{path.name}.partial-{tag}")
    tmp_meta = path.with_name(f".{path.name}.partial-{tag}.ffmeta")
    tmp_json = json_path.with_name(f".{json_path.name}.partial-{tag}")
    old_json = json_path.with_name(f".{json_path.name}.partial-{tag}.old")
    json_placed = False
    done = False
    temporary = (tmp_mp4, tmp_meta, tmp_json, old_json)
    stopping = register(lambda: [_remove(tmp) for tmp in temporary])   # SIGTERM: the app's thread is not unwound
    try:
        _write_file(tmp_meta, ";FFMETADATA1\ncomment=" + _ffmeta_escape(meta_ascii) + "\n", sync=False)
        count, width, height = _encode(_iter_frames(frames), _length(frames), tmp_mp4, tmp_meta, fps, report)
        problem = mp4_problem(tmp_mp4, count, width, height)     # read back: ffmpeg cannot vouch for itself
        if problem:
            raise WanError(f"ffmpeg ({_ffmpeg_exe()}) reported success, but {problem}: the video was not saved.",
                           _FFMPEG_REMEDY)
        _fsync_file(tmp_mp4)
        _write_file(tmp_json, meta_human, sync=True)
        report("Saving video", ENCODE_SHARE + (100 - ENCODE_SHARE) * 0.8)
        if json_path.exists():                      # kept until the MP4 is in place, to restore on failure
            os.replace(json_path, old_json)
        os.replace(tmp_json, json_path)
        json_placed = True
        try:
            os.replace(tmp_mp4, path)               # the commit point
        except PermissionError as exc:
            if not path.exists():
                raise
            raise WanError(f"{path.name} could not be replaced: it may be open in another program.",
                           "Close the program that shows it, or save under another name.", str(exc)) from exc
        done = True
        fsync_dir(path.parent)
    except OSError as exc:
        raise _os_error(exc, path) from exc
    finally:
        if not done:
            if json_placed:
                _remove(json_path)
            if old_json.exists():
                _restore(old_json, json_path)
        for tmp in temporary:
            _remove(tmp)
        release(path)                               # the name's claim (core.run.output_claim), if any
        unregister(stopping)
    report(f"Saved video: {path.name}", 100.0)
    return path


def _encode(frames: Iterator[np.ndarray], total: int | None, out: Path, meta_file: Path,
            fps: float, report: ProgressCallback) -> tuple[int, int, int]:
    """Pipe frames into ffmpeg; (frames, width, height) sent. WanError if it fails; kills ffmpeg on any exception."""
    first = next(frames, None)
    if first is None:
        raise ValueError("There are no frames to write: the video would be empty.")
    height, width = first.shape[:2]
    rate = Fraction(fps).limit_denominator(1001)
    cmd = [_ffmpeg_exe(), "-hide_banner", "-nostats", "-y", "-v", "error",
           "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", str(rate), "-i", "-",
           "-f", "ffmetadata", "-i", str(meta_file),
           "-map", "0:v:0", "-map_metadata", "1",
           "-vf", "scale=out_color_matrix=bt709:out_range=tv,format=yuv420p,"
                  "setparams=color_primaries=bt709:color_trc=bt709:colorspace=bt709:range=tv",
           "-c:v", "libx264", "-preset", PRESET, "-crf", str(CRF),
           "-movflags", "+faststart", "-f", "mp4", str(out)]
    label = f"of {total}" if total else ""
    count_text = f"{total} frames, " if total else ""
    report(f"Encoding video: {count_text}{width}x{height}, {fps:g} fps", 0.0)
    step = max(1, -(-total // _PROGRESS_UPDATES)) if total else 10
    with tempfile.TemporaryFile() as errlog:
        try:
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=errlog,
                                    **_popen_kwargs())
        except OSError as exc:
            raise WanError(f"ffmpeg could not be started ({cmd[0]}): {exc.strerror or exc}.",
                           _FFMPEG_REMEDY) from exc
        stopping = register(lambda: _stop(proc))
        try:
            count = 0
            frame: np.ndarray | None = first
            while frame is not None:
                if frame.shape != first.shape:
                    raise ValueError(f"Frame {count + 1} is {frame.shape[1]}x{frame.shape[0]}, "
                                     f"but the first frame is {width}x{height}; all frames must be one size.")
                try:
                    proc.stdin.write(memoryview(np.ascontiguousarray(frame)).cast("B"))  # type: ignore[union-attr]
                except OSError as exc:     # ffmpeg exited early: its error output says why
                    proc.wait()
                    raise _ffmpeg_error(errlog, out, exc) from exc
                count += 1
                if count == total or count % step == 0:
                    pct = ENCODE_SHARE * count / total if total else 0.0
                    report(f"Encoding video: frame {count} {label}".rstrip(), pct)
                frame = next(frames, None)
            report("Finishing video file", ENCODE_SHARE + 2)
            try:
                proc.stdin.close()  # type: ignore[union-attr]
            except OSError:
                pass
            if proc.wait() != 0:
                raise _ffmpeg_error(errlog, out, None)
            return count, width, height
        finally:
            unregister(stopping)
            _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Kill ffmpeg and whatever it started (its own session: a wrapper script's child too), then reap it."""
    if proc.poll() is None:
        if hasattr(os, "killpg"):
            try:
                os.killpg(proc.pid, 9)
            except OSError:
                proc.kill()
        else:
            proc.kill()
    proc.wait()


def _iter_frames(frames: Any) -> Iterator[np.ndarray]:
    """Yield each frame as contiguous uint8 ``H x W x 3`` with even H and W."""
    if isinstance(frames, np.ndarray):
        if frames.ndim == 5 and frames.shape[0] == 1:
            frames = frames[0]
        if frames.ndim != 4:
            raise ValueError(f"Expected frames shaped [F, H, W, 3] (or [1, F, H, W, 3]); got {list(frames.shape)}.")
    elif isinstance(frames, (str, bytes, Mapping)) or not isinstance(frames, Iterable):
        raise ValueError(f"Expected an array or a list of frames; got {type(frames).__name__}.")
    for index, frame in enumerate(frames):
        yield _to_uint8_rgb(frame, index)


def _to_uint8_rgb(frame: Any, index: int) -> np.ndarray:
    if hasattr(frame, "convert") and hasattr(frame, "size"):      # a PIL image
        frame = frame.convert("RGB")
    arr = np.asarray(frame)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4) or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"Frame {index + 1} has shape {list(arr.shape)}; expected H x W x 3.")
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    elif arr.shape[2] == 4:
        arr = arr[:, :, :3]                                         # drop alpha
    if arr.dtype == np.uint8:
        pass
    elif np.issubdtype(arr.dtype, np.floating):
        arr = np.rint(np.clip(np.nan_to_num(arr, nan=0.0), 0.0, 1.0) * 255.0).astype(np.uint8)
    elif arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    elif np.issubdtype(arr.dtype, np.integer):
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    else:
        raise ValueError(f"Frame {index + 1} has values of type {arr.dtype}; expected float in [0, 1] or uint8.")
    pad_h, pad_w = arr.shape[0] % 2, arr.shape[1] % 2
    if pad_h or pad_w:                                              # yuv420p needs even sizes
        arr = np.pad(arr, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    return np.ascontiguousarray(arr)


def _length(frames: Any) -> int | None:
    if isinstance(frames, np.ndarray):
        return int(frames.shape[1] if frames.ndim == 5 else frames.shape[0]) if frames.ndim >= 4 else None
    try:
        return len(frames)
    except TypeError:
        return None


def trial_encode() -> str | None:
    """Write a two-frame 16x16 video to a temporary folder and read it back: None, or what went wrong."""
    with tempfile.TemporaryDirectory(prefix="wan_compat_ffmpeg_") as folder:
        try:
            write_mp4(np.zeros((2, 16, 16, 3), dtype=np.uint8), Path(folder) / "trial.mp4", fps=8)
        except (WanError, OSError) as exc:
            return str(exc)
    return None


# --------------------------------------------------------------------------- reading

def read_video_info(path: str | os.PathLike[str]) -> VideoInfo:
    """Frame count (exact: every frame is decoded), size, fps, codec and stored settings.

    Usage::

        info = read_video_info("outputs/video.mp4")
        info.frames, info.width, info.height, info.fps, info.metadata["prompt"]
        # -> (81, 832, 480, 16.0, 'A cat on a surfboard')

    Raises WanError when the file is missing or is not a readable video.
    """
    path = Path(path)
    if not path.is_file():
        raise WanError(f"Not found: {path}.", "Check the path, or generate the video again.")
    exe = _ffmpeg_exe()
    probe = _run([exe, "-hide_banner", "-nostdin", "-i", str(path), "-map", "0:v:0",
                  "-f", "null", "-progress", "pipe:1", "-nostats", "-"])
    header = probe.stderr.split("Stream mapping:")[0]
    stream = re.search(r"Stream #0:\d+.*?: Video: (\w+)(.*)", header)
    counted = re.findall(r"^frame=(\d+)", probe.stdout, re.M)
    if probe.returncode != 0 or not stream or not counted:
        last = (probe.stderr.strip().splitlines() or ["no output"])[-1]
        raise WanError(f"{path.name} is not a readable video ({last}).",
                       "The file may be incomplete or damaged; generate it again.")
    codec, rest = stream.group(1), stream.group(2)
    size = re.search(r",\s*(\d+)x(\d+)", rest)
    rate = re.search(r"([\d.]+)(k?) fps", rest) or re.search(r"([\d.]+)(k?) tbr", rest)
    fps = float(rate.group(1)) * (1000 if rate.group(2) else 1) if rate else 0.0
    frames = int(counted[-1])
    times = re.findall(r"^out_time_us=(\d+)", probe.stdout, re.M)
    duration = frames / fps if fps else (int(times[-1]) / 1e6 if times else 0.0)
    return VideoInfo(path=path, frames=frames, width=int(size.group(1)) if size else 0,
                     height=int(size.group(2)) if size else 0, fps=fps, duration_s=duration,
                     codec=codec, metadata=_read_metadata(exe, path))


def read_video_metadata(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The settings dict stored in a video's ``comment`` tag, or None (no frames are decoded).

    ``read_video_metadata("outputs/video.mp4")["app"]`` -> ``'Wan Compat 0.4.0'`` for our videos.
    """
    return _read_metadata(_ffmpeg_exe(), Path(path))


def _read_metadata(exe: str, path: Path) -> dict[str, Any] | None:
    """The JSON dict in the file's ``comment`` (or ``description``) tag, or None."""
    result = _run([exe, "-hide_banner", "-nostdin", "-v", "error", "-i", str(path), "-f", "ffmetadata", "-"])
    tags = _parse_ffmetadata(result.stdout)
    for key in ("comment", "description"):
        try:
            value = json.loads(tags.get(key, ""))
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


def _parse_ffmetadata(text: str) -> dict[str, str]:
    """Global ``key=value`` pairs of an FFMETADATA text (backslash escapes undone)."""
    tags: dict[str, str] = {}
    key: str | None = None
    buf: list[str] = []
    line_start = True
    skip_line = False
    i = 0
    while i < len(text):
        char = text[i]
        if line_start:
            line_start = False
            if char == "[":
                break                        # [STREAM] / [CHAPTER]: the global section is over
            skip_line = char in ";#"
        if char == "\\" and i + 1 < len(text):
            buf.append(text[i + 1])
            i += 2
            continue
        if char == "\n":
            if key is not None and not skip_line:
                tags[key] = "".join(buf)
            key, buf, line_start, skip_line = None, [], True, False
        elif char == "=" and key is None:
            key, buf = "".join(buf), []
        else:
            buf.append(char)
        i += 1
    if key is not None and not skip_line:
        tags[key] = "".join(buf)
    return tags


def _ffmeta_escape(value: str) -> str:
    return re.sub(r"([=;#\\\n])", r"\\\1", value)


# --------------------------------------------------------------------------- names

def default_output_path(outputs_dir: Path, prompt: str, seed: int, *, now: datetime | None = None) -> Path:
    """A new, unused file name for a video: date, time, a slug of the prompt, the seed.

    Usage::

        default_output_path(Path("outputs"), "A cat on a surfboard!", 42)
        # -> outputs/2026-11-26_114502_a-cat-on-a-surfboard_seed42.mp4

    The slug is ASCII (accents dropped, other scripts omitted; "video" when nothing is
    left), at most 40 characters, cut at a word boundary. When the name, or its JSON, is
    taken (or claimed by a run still writing it), ``-2``, ``-3`` ... is added. The name is
    claimed atomically (core.run.output_claim): two threads or processes asking in the same
    second get different names; :func:`write_mp4` releases the claim once the video is in place.
    """
    from core.run.output_claim import claim
    stamp = (now or datetime.now()).strftime("%Y-%m-%d_%H%M%S")
    return claim(Path(outputs_dir), f"{stamp}_{_slug(prompt)}_seed{seed}")


def _slug(text: str, limit: int = 40) -> str:
    ascii_text = unicodedata.normalize("NFKD", text or "").encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    if len(slug) > limit:
        cut = slug[:limit + 1]
        slug = cut[:cut.rfind("-")] if "-" in cut[1:] else slug[:limit]
        slug = slug.strip("-")
    return slug or "video"


# --------------------------------------------------------------------------- helpers

def _ffmpeg_exe() -> str:
    try:
        import imageio_ffmpeg
        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError) as exc:
        raise WanError(f"ffmpeg is not available, so the video cannot be saved: {exc}", _FFMPEG_REMEDY) from exc


def _run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, encoding="utf-8", errors="replace",
                              stdin=subprocess.DEVNULL, **_popen_kwargs())
    except OSError as exc:
        raise WanError(f"ffmpeg could not be started ({cmd[0]}): {exc.strerror or exc}.", _FFMPEG_REMEDY) from exc


def _popen_kwargs() -> dict[str, Any]:
    """Keep ffmpeg out of the terminal's Ctrl+C (we stop it ourselves) and, on Windows, hide its window."""
    if sys.platform.startswith("win"):
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.CREATE_NO_WINDOW}
    return {"start_new_session": True}


def _ffmpeg_error(errlog: Any, out: Path, exc: BaseException | None) -> WanError:
    errlog.seek(0)
    text = errlog.read().decode("utf-8", "replace").strip()
    details = text or str(exc or "")
    lowered = details.lower()
    folder = out.parent
    if "no space left" in lowered or (isinstance(exc, OSError) and exc.errno == errno.ENOSPC):
        return WanError(f"The disk is full: the video could not be saved in {folder}.",
                        "Free some space or choose another output folder.", details)
    if "permission denied" in lowered or "read-only file system" in lowered:
        return WanError(f"The video could not be written in {folder}: permission denied.",
                        "Choose an output folder your user can write to.", details)
    if "unknown encoder" in lowered or "libx264" in lowered and "not found" in lowered:
        return WanError("This ffmpeg cannot encode H.264 (libx264), so the video cannot be saved.",
                        _FFMPEG_REMEDY, details)
    last = (details.splitlines() or ["no error output"])[-1]
    return WanError(f"ffmpeg could not encode the video: {last}",
                    "Try again; if it persists, run `python -m core doctor` and include its output "
                    "in a bug report.", details)


def _os_error(exc: OSError, path: Path) -> WanError:
    folder = path.parent
    if exc.errno == errno.ENOSPC:
        return WanError(f"The disk is full: the video could not be saved in {folder}.",
                        "Free some space or choose another output folder.", str(exc))
    if isinstance(exc, PermissionError) or exc.errno == errno.EROFS:
        return WanError(f"The video could not be written in {folder}: permission denied.",
                        "Choose an output folder your user can write to.", str(exc))
    return WanError(f"The video could not be saved in {folder}: {exc.strerror or exc}.",
                    "Check the output folder, or choose another one.", str(exc))


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:
        raise WanError(f"The output folder {folder} cannot be created: a file of that name is in the way.",
                       "Choose another output folder, or move that file.", str(exc)) from exc
    except OSError as exc:
        raise _os_error(exc, folder / "video.mp4") from exc


def _write_file(path: Path, text: str, sync: bool) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as handle:
        handle.write(text)
        if sync:
            handle.flush()
            os.fsync(handle.fileno())


def _fsync_file(path: Path) -> None:
    with open(path, "r+b") as handle:
        os.fsync(handle.fileno())


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError:
        pass  # best effort: the error being raised already says what went wrong


def _restore(backup: Path, original: Path) -> None:
    try:
        os.replace(backup, original)
    except OSError:
        pass  # best effort, as in _remove


def _json_default(obj: Any) -> Any:
    """JSON for the values settings tend to hold: dataclasses, enums, paths, numpy scalars."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return str(obj)
