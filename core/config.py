"""The user's settings from ``config.yaml``, checked, with paths made absolute.

Usage::

    from core.config import load_config, ConfigError
    cfg = load_config()                 # WAN_COMPAT_CONFIG, else config.yaml next to core/
    cfg = load_config("my.yaml")        # relative paths in it are taken from its folder
    print(cfg.models_dir, cfg.port, cfg.precision)
    for warning in cfg.warnings:        # unknown keys: reported, never fatal
        print(warning)

The file is read once per process. An entry point (``app.py``, ``python -m core``) calls
:func:`init` (or :func:`use` with a config it built) at its start; what needs a setting and
is not handed the config takes :func:`current`, which is that config, or the file read once
on first use::

    from core import config
    config.init("my.yaml")              # app.py / the CLI, once
    config.current().history_db         # the monitor, registry and loader, without re-reading

A mistake in the file raises :class:`ConfigError` with one sentence that names the file
and the line (invalid YAML) or the key, what was given and what is expected.

Environment variables override the file, applied here and nowhere else (when a config is
loaded): ``WAN_COMPAT_CONFIG`` names the file, ``WAN_COMPAT_HISTORY_DB`` replaces
``history_db`` (tests use a throwaway history), ``WAN_COMPAT_MONITOR=off`` sets
``record_history`` to False.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from core.choices import OFFLOADS, PRECISIONS
from core.errors import WanError

ENV_VAR = "WAN_COMPAT_CONFIG"
HISTORY_DB_ENV = "WAN_COMPAT_HISTORY_DB"      # replaces history_db
MONITOR_ENV = "WAN_COMPAT_MONITOR"            # "off", "0", "false" or "no": record_history = False
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
    """Every user-facing default, written here only. Build it with :func:`load_config`.

    Relative default paths are taken from the config file's folder when loaded.
    """

    models_dir: Path = Path("models")
    outputs_dir: Path = Path("outputs")
    loras_dir: Path = Path("models/loras")   # LoRA files the Generate tab lists
    host: str = "127.0.0.1"
    port: int = 7860
    auth: str | None = None          # "user:password"
    history_db: Path = Path("data/history.db")
    user_registry: Path = Path("data/user_models.yaml")
    offload_dir: Path = Path("data/offload")   # weights written here when RAM is too small (offload: disk)
    precision: str = "auto"
    offload: str = "auto"
    open_browser: bool = True
    record_history: bool = True      # not a file setting: WAN_COMPAT_MONITOR=off turns it off
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


def load_config(path: str | os.PathLike[str] | None = None, *,
                environ: Mapping[str, str] | None = None) -> AppConfig:
    """Read and check a config file; a missing file gives the defaults.

    The file is ``path``, else the one named by ``WAN_COMPAT_CONFIG``, else
    ``config.yaml`` in the project folder. Relative paths inside it are taken from the
    folder the file is in. ``environ`` (default ``os.environ``; ``{}`` for the file alone)
    supplies the overrides listed in the module's docstring.
    """
    env = os.environ if environ is None else environ
    explicit = path is not None or bool(env.get(ENV_VAR))
    file = Path(path if path is not None else env.get(ENV_VAR) or DEFAULT_PATH).expanduser()
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
    return _with_environment(_build(data, file, source, warnings), env)


def default_config(environ: Mapping[str, str] | None = None) -> AppConfig:
    """The settings with no config file at all (paths relative to the project folder)."""
    env = os.environ if environ is None else environ
    return _with_environment(_build({}, Path(DEFAULT_PATH).resolve(), None, []), env)


def _with_environment(config: AppConfig, env: Mapping[str, str]) -> AppConfig:
    """The one place where environment variables override settings."""
    changes: dict[str, Any] = {}
    db = env.get(HISTORY_DB_ENV, "").strip()
    if db:
        changes["history_db"] = Path(db).expanduser().absolute()
    if env.get(MONITOR_ENV, "").strip().lower() in ("off", "0", "false", "no"):
        changes["record_history"] = False
    return replace(config, **changes) if changes else config


# --- the process's configuration: read once ---------------------------------------------

_current: AppConfig | ConfigError | None = None
_current_lock = threading.Lock()


def init(path: str | os.PathLike[str] | None = None) -> AppConfig:
    """Read the configuration for this process (an entry point calls this once at its start).

    Raises :class:`ConfigError`; :func:`current` then raises the same error, without
    reading the file again.
    """
    global _current
    with _current_lock:
        try:
            _current = load_config(path)
        except ConfigError as err:
            _current = err
            raise
        return _current


def use(config: AppConfig | None) -> AppConfig | None:
    """Make ``config`` this process's configuration (None: read the file again on next use).

    Returns the previous one (None when there was none, or it was an error), so that a
    test can put it back::

        previous = use(replace(current(), history_db=tmp_path / "history.db"))
        ...
        use(previous)
    """
    global _current
    with _current_lock:
        previous, _current = _current, config
    return previous if isinstance(previous, AppConfig) else None


def current() -> AppConfig:
    """This process's configuration: what :func:`init` or :func:`use` set, else the file read once."""
    state = _current
    if state is None:
        with _current_lock:
            state = _current
        if state is None:
            try:
                return init()
            except ConfigError:
                state = _current
    if isinstance(state, ConfigError):
        raise state
    assert state is not None
    return state


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




def _checkers(base: Path) -> dict[str, Checker]:
    path = _path(base)
    return {
        "models_dir": path,
        "outputs_dir": path,
        "loras_dir": path,
        "host": _text,
        "port": _whole_number(1, 65535),
        "auth": _auth,
        "history_db": path,
        "user_registry": path,
        "offload_dir": path,
        "precision": _one_of(PRECISIONS),
        "offload": _one_of(OFFLOADS),
        "open_browser": _boolean,
    }


def _build(data: dict[str, Any], file: Path, source: Path | None, warnings: list[str]) -> AppConfig:
    checkers = _checkers(file.parent)
    defaults = {f.name: f.default for f in fields(AppConfig) if f.name in checkers}
    for key in data:
        if key not in checkers:
            near = difflib.get_close_matches(str(key), list(checkers), n=1)
            hint = f"did you mean `{near[0]}`?" if near else f"the settings are {', '.join(checkers)}."
            line = _line_of(file, str(key))
            at = f", line {line}" if line else ""
            warnings.append(f"{_show(file)}{at}: unknown setting `{key}` is ignored: {hint}")
    values: dict[str, Any] = {}
    for key, check in checkers.items():
        given = data.get(key, defaults[key])
        try:
            values[key] = check(given)
        except _Bad as bad:
            line = _line_of(file, key)
            raise ConfigError(
                f"{_show(file)}{f', line {line}' if line else ''}: `{key}` must be {bad}, not {_given(given)}.",
                f"Edit `{key}` in {file.name}, or delete the line to use the default "
                f"({_given(defaults[key])}).",
                file=file, key=key, line=line) from None
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
    if isinstance(value, Path):      # a default path, as config.yaml writes it
        return repr(f"./{value.as_posix()}")
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
