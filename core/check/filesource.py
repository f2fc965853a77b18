"""Where the detector reads from: a local folder or file, or a manifest from a browser.

The detector needs only three things: the list of files with their sizes, the text of a
few small files (JSON configs), and the first bytes of others (safetensors headers).
:class:`LocalSource` reads them from disk without ever reading tensor data;
:class:`ManifestSource` answers from a dict a browser built from a dropped folder.

Usage::

    src = LocalSource("/models/Wan2.2-T2V-A14B-Diffusers")
    for entry in src.files:
        print(entry.path, entry.size)
    config = src.read_text("transformer/config.json")
    head = src.read_head("vae/diffusion_pytorch_model.safetensors", 8)
"""

from __future__ import annotations

import base64
import binascii
import os
import stat
from dataclasses import dataclass, field
from typing import Protocol

MAX_ENTRIES = 20_000        # files and folders visited before a scan stops
MAX_DEPTH = 8               # folder levels below the root
MAX_TEXT_BYTES = 16 * 2**20  # the largest JSON config we are willing to read
MAX_PATH_CHARS = 4096        # a longer "path" is not one
MAX_FILE_BYTES = 2**50       # 1 PiB: a larger size in a manifest is a lie
MAX_MANIFEST_ENTRIES = 5_000  # files one manifest may describe (a model has tens)
MAX_MANIFEST_DATA_BYTES = 64 * 2**20  # texts and headers one manifest may carry, together
MAX_HEAD_BYTES = 100 * 2**20 + 8     # a safetensors header and its length (the library's limit)

# Folders that never hold model parts and can be huge (a git checkout's objects, caches).
SKIPPED_DIRS = frozenset({".git", "__pycache__", ".cache", "node_modules", ".venv", ".locks"})
# Fix's backups of replaced files: of these only the journals are listed (an interrupted fix).
BACKUP_DIR = ".wan_compat_backup"
JOURNAL_NAME = "journal.json"


def display_name(path: str) -> str:
    """A path made safe to print: undecodable bytes in file names become U+FFFD.

    >>> display_name("model\\udcff.safetensors")
    'model\\ufffd.safetensors'
    """
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


class NotAModelPath(OSError):
    """The path exists but is neither a file nor a folder; carries a sentence and a remedy."""

    def __init__(self, message: str, remedy: str) -> None:
        super().__init__(message)
        self.message, self.remedy = message, remedy


@dataclass(frozen=True)
class FileEntry:
    """One file: its path relative to the source root (POSIX separators) and size in bytes."""

    path: str
    size: int


class FileSource(Protocol):
    """What the detector reads through. Paths are relative, with ``/`` separators."""

    name: str              # what to call the source in a report (a path, or the dropped folder's name)
    files: list[FileEntry]  # every file found, sorted by path
    truncated: bool        # the scan stopped at a limit; ``problems`` says which
    problems: list[str]    # sentences about what could not be listed or read
    bytes_read: int        # bytes read so far through read_text/read_head
    unreadable: set[str]   # folders that exist but could not be listed (permissions)

    def read_text(self, path: str) -> str: ...

    def read_head(self, path: str, size: int) -> bytes: ...


@dataclass
class LocalSource:
    """A folder (walked, bounded, symlink loops ignored) or a single file on disk.

    >>> src = LocalSource("/no/such/place")          # doctest: +SKIP
    FileNotFoundError: ...
    """

    root: str
    max_entries: int = MAX_ENTRIES
    name: str = ""
    files: list[FileEntry] = field(default_factory=list)
    truncated: bool = False
    problems: list[str] = field(default_factory=list)
    bytes_read: int = 0
    is_file: bool = False
    unreadable: set[str] = field(default_factory=set)  # folders that exist but cannot be listed

    def __post_init__(self) -> None:
        if not str(self.root).strip():
            raise FileNotFoundError(2, "No such file or folder", "(an empty path)")
        self.root = os.path.abspath(self.root)
        self.name = self.name or display_name(self.root)
        st = os.stat(self.root)  # FileNotFoundError / PermissionError / ELOOP reach the caller
        if stat.S_ISREG(st.st_mode):
            self.is_file = True
            self.files = [FileEntry(os.path.basename(self.root), st.st_size)]
            return
        if not stat.S_ISDIR(st.st_mode):
            raise NotAModelPath(f"{self.name} is neither a file nor a folder (a device or a pipe).",
                                "Point at a model folder or a .safetensors file.")
        self.files = sorted(self._walk(), key=lambda e: e.path)

    def _walk(self) -> list[FileEntry]:
        found: list[FileEntry] = []
        seen_dirs: set[tuple[int, int]] = set()
        visited = 0
        stack: list[tuple[str, str, int]] = [(self.root, "", 0)]
        while stack:
            abs_dir, rel_dir, depth = stack.pop()
            try:
                st = os.stat(abs_dir)
            except OSError as exc:
                self.problems.append(f"Cannot open folder {display_name(rel_dir or '.')}: {exc.strerror}.")
                self.unreadable.add(rel_dir)
                continue
            key = (st.st_dev, st.st_ino)
            if key in seen_dirs:
                self.problems.append(f"Skipped {display_name(rel_dir)}: a link back to a folder already scanned.")
                continue
            seen_dirs.add(key)
            try:
                with os.scandir(abs_dir) as it:
                    for item in it:
                        visited += 1
                        if visited > self.max_entries:
                            self.truncated = True
                            self.problems.append(
                                f"Stopped after {self.max_entries:,} files and folders; "
                                "point the check at the model folder itself, not a folder above it.")
                            return found
                        rel = f"{rel_dir}/{item.name}" if rel_dir else item.name
                        try:
                            if item.is_dir():  # follows links; loops are caught by seen_dirs
                                if item.name in SKIPPED_DIRS:
                                    continue
                                if item.name == BACKUP_DIR:
                                    found.extend(self._journals(item.path, rel))
                                    continue
                                if depth + 1 > MAX_DEPTH:
                                    self.problems.append(f"Not looking deeper than {MAX_DEPTH} folders: {display_name(rel)}.")
                                    continue
                                stack.append((item.path, rel, depth + 1))
                            elif item.is_file():
                                found.append(FileEntry(rel, item.stat().st_size))
                            elif item.is_symlink():
                                self.problems.append(f"Broken or looping link: {display_name(rel)}.")
                        except OSError as exc:
                            self.problems.append(f"Cannot read {display_name(rel)}: {exc.strerror or exc}.")
            except OSError as exc:
                self.problems.append(f"Cannot list folder {display_name(rel_dir or '.')}: {exc.strerror or exc}.")
                self.unreadable.add(rel_dir)
        return found

    @staticmethod
    def _journals(backup_dir: str, rel: str) -> list[FileEntry]:
        """``<backup>/<time>/journal.json`` files: Model Check tells of an unfinished fix."""
        found = []
        try:
            with os.scandir(backup_dir) as it:
                for run in it:
                    journal = os.path.join(run.path, JOURNAL_NAME)
                    if run.is_dir() and not run.name.startswith(".") and os.path.isfile(journal):  # not partials
                        found.append(FileEntry(f"{rel}/{run.name}/{JOURNAL_NAME}", os.path.getsize(journal)))
        except OSError:
            pass
        return found

    def _abs(self, path: str) -> str:
        if self.is_file:
            return self.root
        return os.path.join(self.root, *path.split("/"))

    def read_text(self, path: str) -> str:
        """The text of a small file (UTF-8); raises OSError or ValueError when unreadable."""
        with open(self._abs(path), "rb") as fh:
            data = fh.read(MAX_TEXT_BYTES + 1)
        self.bytes_read += len(data)
        if len(data) > MAX_TEXT_BYTES:
            raise ValueError(f"{display_name(path)} is larger than {MAX_TEXT_BYTES // 2**20} MB; not a config file")
        return data.decode("utf-8")

    def read_head(self, path: str, size: int) -> bytes:
        """The first ``size`` bytes of a file (fewer when the file is shorter)."""
        with open(self._abs(path), "rb") as fh:
            data = fh.read(size)
        self.bytes_read += len(data)
        return data


@dataclass
class ManifestSource:
    """A folder described by a manifest instead of read from disk.

    The manifest is what a browser can build from a dropped folder without uploading
    weights: ``{"name": str, "files": [{"path": str, "size": int, "text": str?,
    "head_b64": str?}]}`` where ``text`` holds small JSON files and ``head_b64`` the first
    bytes of each ``.safetensors`` file (its header).
    """

    manifest: dict
    name: str = ""
    files: list[FileEntry] = field(default_factory=list)
    truncated: bool = False
    problems: list[str] = field(default_factory=list)
    bytes_read: int = 0
    unreadable: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        if not isinstance(self.manifest, dict) or not isinstance(self.manifest.get("files"), list):
            raise ValueError("The manifest must be an object with a list of files.")
        self.name = display_name(str(self.manifest.get("name") or "dropped folder")[:MAX_PATH_CHARS])
        self._text: dict[str, str] = {}
        self._head: dict[str, bytes] = {}
        budget = MAX_MANIFEST_DATA_BYTES  # texts and headers together: the work one request may ask for
        skipped = 0
        for item in self.manifest["files"][:MAX_MANIFEST_ENTRIES]:
            if not isinstance(item, dict) or not isinstance(item.get("path"), str) or \
                    not 0 < len(item["path"]) <= MAX_PATH_CHARS or "\0" in item["path"]:
                self.problems.append("A manifest entry without a usable path was skipped.")
                continue
            path = item["path"].strip("/")
            size = item.get("size")
            if type(size) is not int or not 0 <= size <= MAX_FILE_BYTES:
                self.problems.append(f"{display_name(path)} has no valid size; skipped.")
                continue
            self.files.append(FileEntry(path, size))
            text, head = item.get("text"), item.get("head_b64")
            if isinstance(text, str) and len(text) <= MAX_TEXT_BYTES:
                if len(text) > budget:
                    skipped += 1
                    continue
                budget -= len(text)
                self._text[path] = text
            if isinstance(head, str) and head:
                data = _b64(head[: (MAX_HEAD_BYTES * 4) // 3 + 4])
                if data is None:
                    self.problems.append(f"The header sent for {display_name(path)} is not valid base64; "
                                         "it was not read.")
                elif len(data) > budget:
                    skipped += 1
                else:
                    budget -= len(data)
                    self._head[path] = data
        if len(self.manifest["files"]) > MAX_MANIFEST_ENTRIES:
            self.truncated = True
            self.problems.append(f"The manifest lists {len(self.manifest['files']):,} files; only the first "
                                 f"{MAX_MANIFEST_ENTRIES:,} were read. Drop the model folder itself, not a folder "
                                 "of many files.")
        if skipped:
            self.truncated = True
            self.problems.append(f"The configs and headers sent take more than {MAX_MANIFEST_DATA_BYTES // 2**20} MB; "
                                 f"{skipped:,} of them were not read. Drop the model folder itself.")
        self.files.sort(key=lambda e: e.path)

    def read_text(self, path: str) -> str:
        if path not in self._text:
            raise FileNotFoundError(2, "not included in the manifest", path)
        self.bytes_read += len(self._text[path])
        return self._text[path]

    def read_head(self, path: str, size: int) -> bytes:
        if path not in self._head:
            raise FileNotFoundError(2, "header not included in the manifest", path)
        data = self._head[path][:size]
        self.bytes_read += len(data)
        return data


def _b64(text: str) -> bytes | None:
    """Strict base64 decoding; None when ``text`` is not base64.

    >>> _b64("AAE="), _b64("not base64!")
    (b'\\x00\\x01', None)
    """
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


@dataclass
class SubSource:
    """A view of one folder inside another source (for a folder that holds several models).

    Reads are counted on the parent source, so ``bytes_read`` stays one number.
    """

    parent: FileSource
    prefix: str  # folder inside the parent, without a trailing "/"; "" for the whole source

    def __post_init__(self) -> None:
        base = self.prefix + "/" if self.prefix else ""
        self.name = f"{self.parent.name}/{display_name(self.prefix)}" if self.prefix else self.parent.name
        self.files = [FileEntry(e.path[len(base):], e.size) for e in self.parent.files if e.path.startswith(base)]
        self.truncated = self.parent.truncated
        self.problems = list(self.parent.problems)
        self.unreadable = {d[len(base):] for d in self.parent.unreadable if d.startswith(base)}

    @property
    def bytes_read(self) -> int:
        return self.parent.bytes_read

    def _full(self, path: str) -> str:
        return f"{self.prefix}/{path}" if self.prefix else path

    def read_text(self, path: str) -> str:
        return self.parent.read_text(self._full(path))

    def read_head(self, path: str, size: int) -> bytes:
        return self.parent.read_head(self._full(path), size)
