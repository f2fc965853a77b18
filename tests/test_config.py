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
    cfg = load_config(tmp_path / "nothing-here.yaml")
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
    cfg = load_config(path)
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
    ("offload: cpu\n", "offload", "one of auto, none, model, group, sequential, not 'cpu'"),
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
