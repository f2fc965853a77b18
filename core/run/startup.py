"""What every command and the app check once, at start, before minutes of loading.

config.yaml itself (:func:`core.config.init`: the key, its line and what is allowed), the user
registry file it names (a broken ``user_models.yaml`` is reported, not silently ignored), and
the folder videos will be written to (an unwritable ``outputs_dir`` is refused before loading).

Usage::

    from core.run.startup import startup_problems
    problems, warnings = startup_problems(outputs=Path("outputs"))
    for line in warnings:
        print("Warning:", line)
    if problems:
        print(problems[0]); sys.exit(2)
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from core.config import AppConfig, ConfigError, current


def startup_problems(outputs: Path | None = None, config: AppConfig | None = None) -> tuple[list[str], list[str]]:
    """(problems that must stop the command, warnings to show). ``outputs``: a folder videos go to."""
    try:
        cfg = config if config is not None else current()
    except ConfigError as err:
        return [str(err)], []
    problems: list[str] = []
    registry = user_registry_problem(Path(cfg.user_registry))
    if registry:
        problems.append(registry)
    if outputs is not None:
        folder = outputs_problem(outputs)
        if folder:
            problems.append(folder)
    return problems, list(cfg.warnings)


def user_registry_problem(path: Path) -> str | None:
    """Why the user registry file cannot be used as written, or None (also when it does not exist)."""
    if not path.exists():
        return None
    from core.check.registry import CompatibilityRegistry
    registry = CompatibilityRegistry(user_path=path)
    mine = [p for p in registry.problems if path.name in p]
    if not mine:
        return None
    return (f"The user registry is broken: {mine[0]} Repair it (it is a YAML list of models, see the header of "
            "core/check/known_models.yaml), or move it away to use the built-in list alone.")


def outputs_problem(folder: Path) -> str | None:
    """Why videos cannot be written into ``folder``: a file is made and removed there (a folder that does
    not exist yet is made for the test, as the run would, and removed again). Nothing is left behind.
    Tried, not judged by permission bits: root passes ``os.access`` where the kernel still says no (/proc)."""
    existing = next((p for p in [folder, *folder.parents] if p.exists()), None)
    made: list[Path] = []
    try:
        if existing is None or not existing.is_dir():
            raise NotADirectoryError(f"{existing} is not a folder")
        for missing in reversed([p for p in [folder, *folder.parents] if p not in (existing, *existing.parents)]):
            missing.mkdir()
            made.append(missing)
        fd, probe = tempfile.mkstemp(prefix=".wan_compat_write_test_", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        return (f"Videos cannot be written to {folder}: {exc.strerror or exc}. Set outputs_dir in config.yaml "
                "(or --out) to a folder your user can write to; nothing was loaded.")
    finally:
        for created in reversed(made):
            try:
                created.rmdir()
            except OSError:
                pass
    return None
