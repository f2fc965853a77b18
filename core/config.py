"""The user's settings from ``config.yaml``, checked, with paths made absolute.

Usage::

    from core.config import load_config, ConfigError
    cfg = load_config()                 # WAN_COMPAT_CONFIG, else config.yaml next to core/
    cfg = load_config("my.yaml")        # relative paths in it are taken from its folder
    print(cfg.models_dir, cfg.port, cfg.precision)
    for warning in cfg.warnings:        # unknown keys: reported, never fatal
        print(warning)

A mistake in the file raises :class:`ConfigError` with one sentence that names the file
and the line (invalid YAML) or the key, what was given and what is expected.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from core.choices import OFFLOADS, PRECISIONS
from core.errors import WanError

ENV_VAR = "WAN_COMPAT_CONFIG"
DEFAULT_PATH = Path(__file__).resolve().parent.parent / "config.yaml"


class ConfigError(WanError):
    """The configuration file cannot be used as it is.

    ``file`` is the file's path; ``key`` the setting at fault (None for a YAML syntax
    error); ``line`` the 1-based line number where known.
    """

    def __init__(self, message: str, remedy: str = "", details: str = "", *,
                 file: Path | None = None, key: str | None = None, line: int | None = None) -> None:
        super().__init__(message, remedy, details)
        self.file = file
        self.key = key
        self.line = line


@dataclass(frozen=True)
class AppConfig:
    """Every user-facing default. Build it with :func:`load_config`."""

    models_dir: Path
    outputs_dir: Path
    host: str = "127.0.0.1"
    port: int = 7860
    auth: str | None = None          # "user:password"
    history_db: Path = Path("data/history.db")
    user_registry: Path = Path("data/user_models.yaml")
    precision: str = "auto"
    offload: str = "auto"
    open_browser: bool = True
    source: Path | None = None       # the file these settings came from; None: defaults only
    warnings: tuple[str, ...] = field(default=(), compare=False)

    @property
    def auth_pair(self) -> tuple[str, str] | None:
        """``auth`` split for ``gradio.Blocks.launch(auth=...)``."""
        if self.auth is None:
            return None
        user, _, password = self.auth.partition(":")
        return user, password

    @property
    def is_loopback(self) -> bool:
        """True when only this computer can reach the server."""
        return _is_loopback(self.host)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values; the password is masked."""
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, Path):
                out[key] = str(value)
        out["warnings"] = list(self.warnings)
        if self.auth is not None:
            out["auth"] = self.auth.partition(":")[0] + ":***"
        return out


def load_config(path: str | os.PathLike[str] | None = None) -> AppConfig:
    """Read and check a config file; a missing file gives the defaults.

    The file is ``path``, else the one named by ``WAN_COMPAT_CONFIG``, else
    ``config.yaml`` in the project folder. Relative paths inside it are taken from the
    folder the file is in.
    """
    explicit = path is not None or bool(os.environ.get(ENV_VAR))
    file = Path(path if path is not None else os.environ.get(ENV_VAR) or DEFAULT_PATH).expanduser()
    file = file.resolve()
    warnings: list[str] = []
    if file.is_file():
        data = _read_yaml(file)
        source: Path | None = file
    else:
        if file.exists():
            raise ConfigError(f"{_show(file)} is not a file.", "Point WAN_COMPAT_CONFIG at a YAML file.",
                              file=file)
        if explicit:
            warnings.append(f"{_show(file)} does not exist; using the default settings.")
        data, source = {}, None
    return _build(data, file, source, warnings)


def default_config() -> AppConfig:
    """The settings with no config file at all (paths relative to the project folder)."""
    return _build({}, Path(DEFAULT_PATH).resolve(), None, [])


# --- checking ---------------------------------------------------------------------------

def _read_yaml(file: Path) -> dict[str, Any]:
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{_show(file)} is not UTF-8 text.",
                          "Save it as UTF-8 in your text editor.", str(exc), file=file) from exc
    except OSError as exc:
        raise ConfigError(f"{_show(file)} cannot be read: {exc.strerror or exc}.",
                          "Check that your user may read it.", str(exc), file=file) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        where = f" at line {line}" if line else ""
        raise ConfigError(
            f"{_show(file)} is not valid YAML{where}: {problem}.",
            "Each setting is one `key: value` line; compare with the comments in the original "
            "config.yaml, or delete the file to use the defaults.",
            str(exc), file=file, line=line) from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{_show(file)} must hold `key: value` settings, not {_given(data)}.",
            "Compare it with the original config.yaml.", file=file)
    return data


Checker = Callable[[Any], Any]  # returns the clean value or raises _Bad(expected)


class _Bad(Exception):
    """A value of the wrong kind; the argument says what was expected."""


def _whole_number(lo: int, hi: int) -> Checker:
    def check(value: Any) -> int:
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value.strip())
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise _Bad(f"a whole number from {lo} to {hi}")
        return value
    return check


def _one_of(choices: tuple[str, ...]) -> Checker:
    def check(value: Any) -> str:
        if isinstance(value, str) and value.strip().lower() in choices:
            return value.strip().lower()
        raise _Bad("one of " + ", ".join(choices))
    return check


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _Bad("a non-empty text")
    return value.strip()


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Bad("true or false")
    return value


def _auth(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        user, sep, password = value.partition(":")
        if sep and user.strip() and password:
            return value
    raise _Bad('null or "user:password" with both parts filled in')


def _path(base: Path) -> Checker:
    def check(value: Any) -> Path:
        if not isinstance(value, (str, os.PathLike)) or not str(value).strip():
            raise _Bad("a folder or file path")
        p = Path(os.path.expandvars(str(value).strip())).expanduser()
        return p if p.is_absolute() else (base / p).resolve()
    return check


_DEFAULTS: dict[str, Any] = {
    "models_dir": "./models",
    "outputs_dir": "./outputs",
    "host": "127.0.0.1",
    "port": 7860,
    "auth": None,
    "history_db": "./data/history.db",
    "user_registry": "./data/user_models.yaml",
    "precision": "auto",
    "offload": "auto",
    "open_browser": True,
}


def _checkers(base: Path) -> dict[str, Checker]:
    path = _path(base)
    return {
        "models_dir": path,
        "outputs_dir": path,
        "host": _text,
        "port": _whole_number(1, 65535),
        "auth": _auth,
        "history_db": path,
        "user_registry": path,
        "precision": _one_of(PRECISIONS),
        "offload": _one_of(OFFLOADS),
        "open_browser": _boolean,
    }


def _build(data: dict[str, Any], file: Path, source: Path | None, warnings: list[str]) -> AppConfig:
    checkers = _checkers(file.parent)
    for key in data:
        if key not in checkers:
            near = difflib.get_close_matches(str(key), list(checkers), n=1)
            hint = f" (did you mean `{near[0]}`?)" if near else ""
            warnings.append(f"{_show(file)}: unknown setting `{key}` is ignored{hint}.")
    values: dict[str, Any] = {}
    for key, check in checkers.items():
        given = data.get(key, _DEFAULTS[key])
        try:
            values[key] = check(given)
        except _Bad as bad:
            raise ConfigError(
                f"{_show(file)}: `{key}` must be {bad}, not {_given(given)}.",
                f"Edit `{key}` in {file.name}, or delete the line to use the default "
                f"({_given(_DEFAULTS[key])}).",
                file=file, key=key, line=_line_of(file, key)) from None
    if not _is_loopback(values["host"]) and values["auth"] is None:
        raise ConfigError(
            f"{_show(file)}: `host` is {values['host']!r}, which other computers can reach, "
            f"so `auth` must be set to \"user:password\".",
            "Set `auth`, or set `host` back to 127.0.0.1.", file=file, key="auth",
            line=_line_of(file, "auth"))
    return AppConfig(**values, source=source, warnings=tuple(warnings))


# --- small helpers ----------------------------------------------------------------------

def _is_loopback(host: str) -> bool:
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def _show(file: Path) -> str:
    """The file as a person would type it: relative to the current folder when inside it."""
    try:
        rel = os.path.relpath(file)
    except ValueError:  # another drive on Windows
        return str(file)
    return str(file) if rel.startswith("..") else rel


def _given(value: Any) -> str:
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return f"a {_yaml_kind(value)}"
    return repr(value)


def _yaml_kind(value: Any) -> str:
    return {dict: "mapping", list: "list"}.get(type(value), type(value).__name__)


def _line_of(file: Path, key: str) -> int | None:
    try:
        for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
            if line.startswith(f"{key}:") or line.startswith(f"{key} :"):
                return number
    except OSError:
        pass
    return None
