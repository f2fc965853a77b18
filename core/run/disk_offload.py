"""Weights offloaded to disk (``offload: disk``): for computers whose RAM cannot hold the model.

Each component is written to a folder under ``offload_dir`` (config.yaml) right after it is
loaded, so RAM holds one component at a time while loading and a block or two while
generating; diffusers' group offloading reads each block back from disk when it runs
(``enable_group_offload(..., offload_to_disk_path=...)``). Usage (what :mod:`core.run.load` does)::

    from core.run.disk_offload import OffloadFolder, offload_root, offload_to_disk

    folder = OffloadFolder.create(offload_root(), "Wan2.2-T2V-A14B")   # data/offload/Wan2.2-T2V-A14B-4242-1f0c
    offload_to_disk(pipe.transformer, "transformer", "cuda", folder, "block_level")
    ...
    folder.remove()            # also done when the process ends, and for folders of dead processes

Why a fresh folder for every load: diffusers skips writing a group whose file already exists
(``group_<hash of the module names>.safetensors``), so a folder reused by another model with the
same layer names would silently run that model's weights. A folder left by a process that no
longer runs (a crash, a kill) is deleted the next time one is made.

Limits: diffusers replaces each offloaded weight by an uninitialised tensor of the same size,
which costs no RAM but does count against ``ulimit -v`` (address space): under such a limit
offloading to disk does not help, and the plan does not offer it.
"""

from __future__ import annotations

import atexit
import os
import re
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.atomic import free_bytes

MIB = 2**20
#: The components written to disk; the VAE and CLIP image encoder (1.2 GB) stay whole (on the GPU, or in RAM).
OFFLOADED = ("transformer", "transformer_2", "text_encoder")
#: Set on a module whose weights are on disk: its parameters are placeholders (core.run.cause skips them).
ON_DISK = "_wan_compat_on_disk"
_OWNER = re.compile(r"-(?P<pid>\d+)-[0-9a-f]{8}$")


def offload_root() -> Path:
    """``offload_dir`` from config.yaml (the default ``data/offload`` when the file cannot be used)."""
    from core import config
    try:
        return config.current().offload_dir
    except config.ConfigError:
        return config.default_config().offload_dir


def free_mb(path: Path) -> int:
    """Free space (MiB) on the disk that holds ``path`` or, while it does not exist yet, its nearest parent."""
    return free_bytes(path) // MIB


def offloaded(name: str) -> bool:
    """Whether the component ``name`` is written to disk under a disk-offload plan."""
    return name in OFFLOADED


@dataclass(frozen=True)
class OffloadFolder:
    """One load's folder of offloaded weights: ``<offload_dir>/<model>-<pid>-<random>``."""

    path: Path

    @classmethod
    def create(cls, root: Path, model_name: str) -> OffloadFolder:
        """Make a new, empty folder for one load (after deleting those of processes that have ended).

        Raises OSError when ``root`` cannot be created or written (the loader says so in a sentence).
        """
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        remove_stale(root)
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", model_name)[:80] or "model"
        folder = cls(root / f"{safe}-{os.getpid()}-{secrets.token_hex(4)}")
        folder.path.mkdir()
        atexit.register(folder.remove)
        return folder

    def component(self, name: str) -> Path:
        return self.path / name

    def size_mb(self) -> float:
        """What has been written so far (MiB)."""
        return sum(f.stat().st_size for f in self.path.rglob("*") if f.is_file()) / MIB

    def remove(self) -> None:
        """Delete the folder and its files (the model files themselves are never here)."""
        shutil.rmtree(self.path, ignore_errors=True)


def remove_stale(root: Path) -> list[Path]:
    """Delete the offload folders under ``root`` whose process has ended; returns them."""
    removed = []
    try:
        entries = list(Path(root).iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = _OWNER.search(entry.name)
        if match is None or not entry.is_dir() or _running(int(match["pid"])):
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
    return removed


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        import psutil
        return bool(psutil.pid_exists(pid))
    except ImportError:     # psutil is in requirements; this keeps the check safe without it
        return True


def offload_to_disk(module: Any, name: str, device: str, folder: OffloadFolder,
                    group_type: str | None = "block_level") -> None:
    """Write ``module``'s weights into ``folder`` and let diffusers read them back group by group on ``device``.

    Transformers by block (or layer, ``leaf_level``); the text encoder by block of its ``encoder``:
    its blocks are not direct children (block level on the whole model would read it back at
    once), and layer by layer breaks UMT5, whose word table is one weight in two modules
    (``shared`` and ``encoder.embed_tokens``): diffusers writes the second module's copy after the
    first has replaced it with a placeholder, and the encoder reads garbage. On CUDA the next
    group is read while the current one runs (a stream); on the CPU one at a time.
    """
    import torch
    from diffusers.hooks import apply_group_offloading
    onload = torch.device(device)
    stream = onload.type == "cuda"
    where = str(folder.component(name))
    if name.startswith("transformer") and hasattr(module, "enable_group_offload"):
        kind = group_type or "block_level"
        module.enable_group_offload(onload_device=onload, offload_device=torch.device("cpu"), offload_type=kind,
                                    num_blocks_per_group=1 if kind == "block_level" else None, use_stream=stream,
                                    low_cpu_mem_usage=True, offload_to_disk_path=where)
    else:
        apply_group_offloading(getattr(module, "encoder", module), onload_device=onload, offload_type="block_level",
                               num_blocks_per_group=1, use_stream=stream, low_cpu_mem_usage=True,
                               offload_to_disk_path=where)
    setattr(module, ON_DISK, True)
