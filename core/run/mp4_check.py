"""Read back a written MP4 without ffmpeg: the container, the video track's frame count and size.

An ffmpeg that exits 0 after writing a few bytes of garbage (a broken build, a wrapper, a full
disk it did not notice) must not be reported as a saved video. This reads the ISO-BMFF boxes
itself, so a misbehaving ffmpeg cannot vouch for its own output: ``ftyp`` first, ``moov`` and
``mdat`` present, every top-level box inside the file, and in the video track (``hdlr`` ``vide``)
the sample count (``stsz``) and the size (``tkhd``).

Usage::

    from core.run.mp4_check import mp4_problem
    problem = mp4_problem(Path("out.mp4"), frames=81, width=832, height=480)
    if problem:
        print(problem)      # "out.mp4 is not an MP4 (8 bytes, no ftyp box) ..."
"""

from __future__ import annotations

import struct
from pathlib import Path

_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl"}


def _boxes(data: bytes, start: int, end: int) -> list[tuple[bytes, int, int]] | None:
    """(type, payload start, box end) of each box in ``data[start:end]``; None when a size is impossible."""
    found = []
    at = start
    while at + 8 <= end:
        size, kind = struct.unpack(">I4s", data[at:at + 8])
        header = 8
        if size == 1:
            if at + 16 > end:
                return None
            size, header = struct.unpack(">Q", data[at + 8:at + 16])[0], 16
        elif size == 0:
            size = end - at
        if size < header or at + size > end:
            return None
        found.append((kind, at + header, at + size))
        at += size
    return found if at == end else None


def _find(data: bytes, start: int, end: int, kind: bytes) -> list[tuple[int, int]]:
    return [(s, e) for k, s, e in (_boxes(data, start, end) or []) if k == kind]


def video_track(data: bytes) -> tuple[int, int, int] | None:
    """(frames, width, height) of the first video track, or None."""
    top = _boxes(data, 0, len(data)) or []
    for _, ms, me in [(k, s, e) for k, s, e in top if k == b"moov"]:
        for ts, te in _find(data, ms, me, b"trak"):
            for ds, de in _find(data, ts, te, b"mdia"):
                handler = _find(data, ds, de, b"hdlr")
                if not handler or data[handler[0][0] + 8:handler[0][0] + 12] != b"vide":
                    continue
                stsz = [b for ns, ne in _find(data, ds, de, b"minf") for ss, se in _find(data, ns, ne, b"stbl")
                        for b in _find(data, ss, se, b"stsz")]
                tkhd = _find(data, ts, te, b"tkhd")
                if not stsz or not tkhd:
                    return None
                frames = struct.unpack(">I", data[stsz[0][0] + 8:stsz[0][0] + 12])[0]
                hs, he = tkhd[0]
                width, height = struct.unpack(">II", data[he - 8:he])
                return frames, width >> 16, height >> 16
    return None


def mp4_problem(path: Path, frames: int | None = None, width: int | None = None,
                height: int | None = None) -> str | None:
    """Why ``path`` is not the MP4 that was meant (container, frame count, size), or None when it is."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return "no file was written"
    except OSError as exc:
        return f"it cannot be read back ({exc.strerror or exc})"
    top = _boxes(data, 0, len(data))
    kinds = [k for k, _, _ in top or []]
    if not data:
        return "the file is empty (0 bytes)"
    if top is None or not kinds or kinds[0] != b"ftyp":
        return f"it is not an MP4 ({len(data)} bytes, no ftyp box at the start)"
    if b"moov" not in kinds or b"mdat" not in kinds:
        missing = " and ".join(k.decode() for k in (b"moov", b"mdat") if k not in kinds)
        return f"the MP4 is incomplete ({len(data)} bytes, no {missing} box)"
    track = video_track(data)
    if track is None:
        return "the MP4 holds no video track"
    got_frames, got_w, got_h = track
    if frames is not None and got_frames != frames:
        return f"it holds {got_frames} frames where {frames} were written"
    if width is not None and height is not None and (got_w, got_h) != (width, height):
        return f"it is {got_w}x{got_h} where {width}x{height} was written"
    return None
