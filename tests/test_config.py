"""core.config: defaults, relative paths, and one clear sentence for each mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.config import DEFAULT_PATH, AppConfig, ConfigError, load_config
from core.errors import WanError


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_shipped_config_yaml_is_valid_and_equals_the_defaults(tmp_path: Path) -> None:
    shipped = load_config(DEFAULT_PATH)
    assert shipped.source == DEFAULT_PATH
    assert shipped.warnings == ()
    defaults = load_config(tmp_path / "missing.yaml")
    for key in ("host", "port", "auth", "precision", "offload", "open_browser"):
        assert getattr(shipped, key) == getattr(defaults, key), key
    assert shipped.models_dir == DEFAULT_PATH.parent / "models"


def test_missing_file_gives_defaults_relative_to_its_folder(tmp_path: Path) -> None:
    cfg = load_config(tmp_path / "nothing-here.yaml", environ={})   # the file alone, no overrides
    assert isinstance(cfg, AppConfig)
    assert cfg.source is None
    assert (cfg.host, cfg.port, cfg.auth) == ("127.0.0.1", 7860, None)
    assert (cfg.precision, cfg.offload, cfg.open_browser) == ("auto", "auto", True)
    assert cfg.models_dir == tmp_path / "models"
    assert cfg.outputs_dir == tmp_path / "outputs"
    assert cfg.history_db == tmp_path / "data" / "history.db"
    assert cfg.user_registry == tmp_path / "data" / "user_models.yaml"
    assert cfg.is_loopback
    assert any("does not exist" in w for w in cfg.warnings)


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "# only comments\n"))
    assert cfg.port == 7860 and cfg.warnings == ()


def test_relative_paths_are_taken_from_the_config_folder(tmp_path: Path, monkeypatch) -> None:
    sub = tmp_path / "conf"
    sub.mkdir()
    path = write(sub, "models_dir: ../big/models\noutputs_dir: /abs/out\nhistory_db: h.db\n")
    monkeypatch.chdir(tmp_path)  # the current folder must not matter
    cfg = load_config(path, environ={})
    assert cfg.models_dir == tmp_path / "big" / "models"
    assert cfg.outputs_dir == Path("/abs/out")
    assert cfg.history_db == sub / "h.db"


def test_env_var_points_at_another_file(tmp_path: Path, monkeypatch) -> None:
    path = write(tmp_path, "port: 9000\nprecision: BF16\noffload: group\nopen_browser: false\n", "other.yaml")
    monkeypatch.setenv("WAN_COMPAT_CONFIG", str(path))
    cfg = load_config()
    assert (cfg.port, cfg.precision, cfg.offload, cfg.open_browser) == (9000, "bf16", "group", False)
    assert cfg.source == path


def test_invalid_yaml_is_one_sentence_naming_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "port: 7860\nhost: [127.0.0.1\nprecision: auto\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    err = info.value
    assert isinstance(err, WanError)
    assert "config.yaml" in err.message and "line" in err.message
    assert err.line is not None and 2 <= err.line <= 4
    assert err.message.count(". ") == 0 and err.message.endswith(".")
    assert "\n" not in err.message and err.remedy


def test_tab_indentation_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "port: 7860\n\thost: x\n")
    with pytest.raises(ConfigError, match=r"config\.yaml is not valid YAML at line 2"):
        load_config(path)


def test_wrong_type_names_key_value_and_expectation(tmp_path: Path) -> None:
    path = write(tmp_path, "port: abc\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    err = info.value
    assert err.key == "port" and err.line == 1
    assert err.message.endswith("`port` must be a whole number from 1 to 65535, not 'abc'.")
    assert str(path.name) in err.message


@pytest.mark.parametrize("text, key, expected", [
    ("port: 70000\n", "port", "a whole number from 1 to 65535, not 70000"),
    ("port: true\n", "port", "not true"),
    ("precision: bf32\n", "precision", "one of auto, bf16, fp16, fp32, not 'bf32'"),
    ("offload: cpu\n", "offload", "one of auto, none, model, group, sequential, disk, not 'cpu'"),
    ("offload: no\n", "offload", "not false"),  # YAML 1.1 reads `no` as false
    ("open_browser: sometimes\n", "open_browser", "true or false, not 'sometimes'"),
    ("models_dir:\n", "models_dir", "a folder or file path, not empty"),
    ("auth: justauser\n", "auth", '"user:password"'),
    ("host: [a, b]\n", "host", "not a list"),
])
def test_wrong_values(tmp_path: Path, text: str, key: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    assert info.value.key == key
    assert f"`{key}`" in info.value.message and expected in info.value.message


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a list"):
        load_config(write(tmp_path, "- port: 1\n"))


def test_unknown_keys_are_warnings_with_a_suggestion(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "prot: 8000\ncolour: blue\n"))
    assert cfg.port == 7860
    assert len(cfg.warnings) == 2
    assert "`prot`" in cfg.warnings[0] and "`port`" in cfg.warnings[0]


def test_remote_host_requires_auth(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="`auth` must be set"):
        load_config(write(tmp_path, "host: 0.0.0.0\n"))
    cfg = load_config(write(tmp_path, "host: 0.0.0.0\nauth: 'me:secret:with:colons'\n"))
    assert not cfg.is_loopback
    assert cfg.auth_pair == ("me", "secret:with:colons")
    assert "secret" not in str(cfg.to_dict())
    for host in ("localhost", "127.0.0.2", "::1"):
        assert load_config(write(tmp_path, f"host: '{host}'\n")).is_loopback


def test_config_module_imports_neither_torch_nor_gradio() -> None:
    import subprocess
    import sys
    code = "import sys, core.config; assert not {'torch', 'gradio'} & set(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=DEFAULT_PATH.parent)


# --- read once per process, overrides in one place, passed to what needs it -------------------

def test_environment_overrides_are_applied_when_loaded(tmp_path: Path) -> None:
    path = write(tmp_path, "history_db: ./mine.db\n")
    assert load_config(path, environ={}).history_db == tmp_path / "mine.db"
    env = {"WAN_COMPAT_HISTORY_DB": str(tmp_path / "throwaway.db"), "WAN_COMPAT_MONITOR": "off"}
    cfg = load_config(path, environ=env)
    assert cfg.history_db == tmp_path / "throwaway.db" and cfg.record_history is False
    assert load_config(path, environ={"WAN_COMPAT_MONITOR": "on"}).record_history is True
    assert load_config(environ={"WAN_COMPAT_CONFIG": str(path)}).source == path


def test_defaults_are_written_once_in_appconfig(tmp_path: Path) -> None:
    cfg = load_config(tmp_path / "none.yaml", environ={})
    bare = AppConfig()
    for key in ("host", "port", "auth", "precision", "offload", "open_browser", "record_history"):
        assert getattr(cfg, key) == getattr(bare, key), key
    for key in ("models_dir", "outputs_dir", "history_db", "user_registry"):
        assert getattr(cfg, key) == tmp_path / getattr(bare, key), key
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, "models_dir: 3\n"))
    assert "use the default ('./models')" in info.value.remedy


READ_ONCE = r"""
import json, sys
from pathlib import Path
from core import config
from core.check.registry import get_compatibility_registry
from core.monitor import get_performance_monitor
from core.run.load import _default_output

first = config.current()
Path(sys.argv[1]).write_text(sys.argv[2], encoding="utf-8")     # the file changes under the process
again = config.current()
print(json.dumps({
    "same": first is again,
    "history_db": str(get_performance_monitor().db_path),
    "user_models": "me/Wan2.1-T2V-14B-Finetune" in get_compatibility_registry(),
    "outputs_dir": str(_default_output("a fox", 1).parent),
    "port": again.port,
}))
"""


def test_the_file_is_read_once_per_process_and_handed_to_monitor_registry_and_loader(tmp_path: Path) -> None:
    import json
    import os
    import subprocess
    import sys

    from tests.conftest import REPO
    from tests.test_registry import NEW_MODEL

    write(tmp_path, NEW_MODEL, name="mine.yaml")
    path = write(tmp_path, "port: 9001\nhistory_db: ./first.db\nuser_registry: ./mine.yaml\noutputs_dir: ./out1\n")
    later = "port: many\nhistory_db: ./second.db\nuser_registry: ./none.yaml\noutputs_dir: ./out2\n"
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAN_COMPAT_")}
    env.update(WAN_COMPAT_CONFIG=str(path), PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-c", READ_ONCE, str(path), later], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout)
    assert seen == {"same": True, "history_db": str(tmp_path / "first.db"), "user_models": True,
                    "outputs_dir": str(tmp_path / "out1"), "port": 9001}


def test_a_config_passed_in_is_what_the_monitor_uses(tmp_path: Path) -> None:
    from core import config
    from core.monitor import get_performance_monitor

    mine = load_config(write(tmp_path, "history_db: ./passed.db\n"), environ={})
    monitor = get_performance_monitor(mine)
    assert monitor.db_path == tmp_path / "passed.db" and monitor.enabled
    with monitor.track("load", model="demo"):
        pass
    assert (tmp_path / "passed.db").exists()
    off = get_performance_monitor(load_config(tmp_path / "config.yaml", environ={"WAN_COMPAT_MONITOR": "off"}))
    assert not off.enabled
    previous = config.use(mine)
    try:
        assert get_performance_monitor().db_path == tmp_path / "passed.db"     # the process's config
    finally:
        config.use(previous)


def test_a_broken_file_is_read_once_and_its_error_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from core import config

    path = write(tmp_path, "port: many\n")
    monkeypatch.setenv("WAN_COMPAT_CONFIG", str(path))
    previous = config.use(None)
    try:
        with pytest.raises(ConfigError, match="`port`") as first:
            config.current()
        path.write_text("port: 9002\n", encoding="utf-8")
        with pytest.raises(ConfigError) as second:
            config.current()
        assert second.value is first.value
        assert config.init().port == 9002                 # an entry point may read it again, explicitly
        assert config.current().port == 9002
    finally:
        config.use(previous)


def test_the_precision_and_offload_words_are_one_list(tmp_path: Path) -> None:
    from core.__main__ import build_parser
    from core.choices import OFFLOADS, PRECISIONS

    gen = build_parser()._subparsers._group_actions[0].choices["generate"]
    choices = {a.dest: tuple(a.choices) for a in gen._actions if a.dest in ("precision", "offload")}
    assert choices == {"precision": PRECISIONS, "offload": OFFLOADS}
    with pytest.raises(ConfigError, match="`precision` must be one of " + ", ".join(PRECISIONS)):
        load_config(write(tmp_path, "precision: fp8\n"))
    with pytest.raises(ConfigError, match="`offload` must be one of " + ", ".join(OFFLOADS)):
        load_config(write(tmp_path, "offload: ssd\n"))
