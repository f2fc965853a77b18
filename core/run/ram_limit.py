"""How much RAM this process may really use: the host's free RAM, a container's (cgroup) limit, RLIMIT_AS.

A container or a ``ulimit -v`` caps a process far below what the host has free; planning with the
host's figure lets the kernel kill the run without a word. The smallest of the three wins, and its
name is kept so that a refusal can say which limit it met.

Usage::

    from core.run.ram_limit import ram_limit
    limit = ram_limit(host_free_mb=30_000)
    print(limit.usable_mb, limit.limit_mb, limit.source)   # 7800, 8192, "container limit"

Reads /proc and /sys/fs/cgroup (v2 ``memory.max``/``memory.current``, v1 ``memory.limit_in_bytes``/
``memory.usage_in_bytes``), walking up the cgroup tree because a parent's limit binds its children.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

MB = 2**20
CGROUP_ROOT = Path("/sys/fs/cgroup")
CONTAINER = "container limit"
PROCESS = "process limit, ulimit -v"
HOST = "free RAM"
_UNLIMITED_V1 = 2**60        # cgroup v1 writes 9223372036854771712 for "no limit"


@dataclass(frozen=True)
class RamLimit:
    """What this process may use now (``usable_mb``), the cap that decides it and its name.

    ``limit_mb`` is None and ``source`` is ``"free RAM"`` when no container or process limit is
    tighter than the host's free RAM.
    """

    usable_mb: int | None
    limit_mb: int | None
    source: str


def ram_limit(host_free_mb: int | None, cgroup_root: Path = CGROUP_ROOT) -> RamLimit:
    """The tightest of the host's free RAM, the cgroup limit and RLIMIT_AS (see the module's docstring)."""
    best = RamLimit(host_free_mb, None, HOST)
    for limit_mb, used_mb, source in (_cgroup(cgroup_root) + [_address_space()]):
        if limit_mb is None:
            continue
        usable = max(0, limit_mb - used_mb)
        if best.usable_mb is None or usable < best.usable_mb:
            best = RamLimit(usable, limit_mb, source)
    return best


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None      # "max" (v2): no limit


def _cgroup(root: Path) -> list[tuple[int | None, int, str]]:
    """(limit, usage, source) for each memory-limited cgroup level this process is in."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return []
    found: list[tuple[int | None, int, str]] = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":                                   # v2: the unified tree
            found += _levels(root, path, "memory.max", "memory.current")
        elif "memory" in controllers.split(","):                # v1: the memory controller's tree
            found += _levels(root / "memory", path, "memory.limit_in_bytes", "memory.usage_in_bytes")
    return found


def _levels(base: Path, path: str, limit_name: str, usage_name: str) -> list[tuple[int | None, int, str]]:
    """Each level from the process's cgroup up to the root; inside a container the path may not exist there."""
    found = []
    rel = Path(path.lstrip("/"))
    candidates = [rel, *rel.parents] if str(rel) not in ("", ".") else [Path(".")]
    for level in candidates:
        folder = base / level
        limit = _read_int(folder / limit_name)
        if limit is None or limit >= _UNLIMITED_V1:
            continue
        usage = _read_int(folder / usage_name) or 0
        found.append((limit // MB, usage // MB, CONTAINER))
    return found


def _address_space() -> tuple[int | None, int, str]:
    try:
        import resource  # not on Windows
    except ImportError:
        return None, 0, PROCESS
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY or soft <= 0:
        return None, 0, PROCESS
    return soft // MB, _vm_size_mb(), PROCESS


def _vm_size_mb() -> int:
    """This process's address space now (VmSize): what RLIMIT_AS counts."""
    try:
        for line in Path(f"/proc/{os.getpid()}/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0
