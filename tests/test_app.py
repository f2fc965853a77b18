"""The app: report rendering, check_path, start-up and refusals, the API, and a real browser.

Run: HF_HUB_OFFLINE=1 GRADIO_ANALYTICS_ENABLED=False .venv/bin/python -m pytest -q tests/test_app.py
Browser tests need Debian's /usr/bin/chromium; set WAN_COMPAT_NO_BROWSER=1 to skip them.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from playwright.sync_api import expect

from core.check.report import ArchitectureType, ComponentReport, Finding, Layout, ModelReport, Severity
from tests.browser import ROOT, chromium_browser, chromium_page, run_app, screenshot, start_app
from wan_ui.model_check import check_path, clean_path
from wan_ui.render import PROMPT_SENTENCE, headline, render_report

E, W, INFO = Severity.ERROR, Severity.WARNING, Severity.INFO
STARTUP_LIMIT_S = 10.0


# --- hand-made reports ------------------------------------------------------------------

def a14b_report(findings: tuple[Finding, ...] = (), path: str = "/models/Wan2.2-T2V-A14B-Diffusers") -> ModelReport:
    transformer = ComponentReport("transformer", "WanTransformer3DModel", "diffusers", "transformer",
                                  tuple(f"transformer/shard-{i}.safetensors" for i in range(12)),
                                  57_150_000_000, "BF16", 14_288_491_584)
    transformer_2 = ComponentReport("transformer_2", "WanTransformer3DModel", "diffusers", "transformer_2",
                                    tuple(f"transformer_2/shard-{i}.safetensors" for i in range(12)),
                                    57_150_000_000, "BF16", 14_288_491_584, complete=not findings)
    vae = ComponentReport("vae", "AutoencoderKLWan", "diffusers", "vae",
                          ("vae/config.json", "vae/diffusion_pytorch_model.safetensors"),
                          507_000_000, "F32", 126_892_531)
    tokenizer = ComponentReport("tokenizer", "AutoTokenizer", "transformers", "tokenizer",
                                ("tokenizer/tokenizer.json",), 16_800_000)
    return ModelReport(
        path=path, layout=Layout.DIFFUSERS, architecture_type=ArchitectureType.WAN_T2V, wan_version="2.2",
        task="t2v", size_class="14B", pipeline_class="WanPipeline", experts=2, boundary_ratio=0.875,
        vae_kind="wan2.1", vae_z_dim=16, components=(transformer, transformer_2, vae, tokenizer),
        parameters=28_703_875_699, registry_id="Wan-AI/Wan2.2-T2V-A14B-Diffusers", findings=findings,
        bytes_read=2_500_000)


PROBLEMS = (
    Finding(W, "text_dim_mismatch", "The text encoder is 4096 wide, the transformer expects 4096 <ok>.",
            "Nothing to do.", "text_encoder"),
    Finding(E, "shard_missing", "transformer_2/diffusion_pytorch_model-00003-of-00012.safetensors is missing.",
            "Download the missing shard again from the model's page.", "transformer_2"),
    Finding(E, "file_truncated", "transformer_2/shard-4.safetensors is shorter than its header says "
            "<script>alert(1)</script>.", "Download this file again; the download was interrupted."),
    Finding(INFO, "registry_match", "Matches Wan-AI/Wan2.2-T2V-A14B-Diffusers.", ""),
)


def test_render_ready_model() -> None:
    report = a14b_report()
    assert headline(report) == "Wan 2.2 T2V A14B (two experts) — diffusers layout — ready to load"
    html = render_report(report)
    for expected in ("Wan 2.2 T2V A14B (two experts) — diffusers layout — ready to load",
                     "/models/Wan2.2-T2V-A14B-Diffusers", "diffusers layout",
                     "Wan text-to-video (a Wan model)", "<code>WanPipeline</code>",
                     "the low-noise expert takes over for the last 87.5 % of the noise schedule",
                     "Wan 2.1 VAE (16 latent channels)", "28.70 B",
                     "57.41 GB",  # weights at bf16: 2 bytes a parameter
                     "Wan-AI/Wan2.2-T2V-A14B-Diffusers", "WanTransformer3DModel", "transformer_2",
                     "57.15 GB", "bf16", "14.29 B", "No problems found.",
                     "Read 2.5 MB of configs and file headers; no weights were loaded."):
        assert expected in html, expected
    # one components row per component, with present/complete marks
    assert html.count('<td class="wc-mark">') == 2 * len(report.components)


def test_render_problems_grouped_and_escaped() -> None:
    report = a14b_report(PROBLEMS)
    assert headline(report) == "Wan 2.2 T2V A14B (two experts) — diffusers layout — 2 problems to fix"
    html = render_report(report)
    assert "Problems to fix (2)" in html and "Warnings (1)" in html and "Notes (1)" in html
    assert html.index("Problems to fix") < html.index("Warnings") < html.index("Notes")
    assert "Download the missing shard again from the model&#x27;s page." in html
    assert "<b>What to do:</b> Download this file again; the download was interrupted." in html
    assert "shard_missing" in html
    # text from the user's disk is escaped, never markup
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;ok&gt;" in html
    single_error = a14b_report(PROBLEMS[1:2])
    assert headline(single_error).endswith("— 1 problem to fix")


def test_render_folder_of_several_models() -> None:
    good = a14b_report(path="/models/all/Wan2.2-T2V-A14B-Diffusers")
    bad = a14b_report(PROBLEMS, path="/models/all/broken")
    sd = ModelReport(path="/models/all/sd15", layout=Layout.DIFFUSERS,
                     architecture_type=ArchitectureType.STABLE_DIFFUSION,
                     pipeline_class="StableDiffusionPipeline")
    folder = ModelReport(path="/models/all", models=(good, bad, sd))
    assert headline(folder) == "A folder of 3 models — 2 ready to load, 1 with problems"
    html = render_report(folder)
    assert html.count('class="wc-card') == 4  # the folder, then one section per model
    assert "Stable Diffusion 1.x/2.x — diffusers layout — ready to load" in html
    assert "Wan 2.2 T2V A14B (two experts) — diffusers layout — 2 problems to fix" in html
    assert ">broken<" in html  # model paths shown relative to the folder


def test_render_other_kinds() -> None:
    nothing = ModelReport(path="/home/me/Documents",
                          findings=(Finding(E, "not_a_model", "No model files were found here.", "Pick a model folder."),))
    assert headline(nothing) == "Not a recognised model"
    assert "Summary" not in render_report(nothing)        # nothing recognised: no table of dashes
    ti2v = ModelReport(path="/m/ti2v.safetensors", layout=Layout.SINGLE_FILE, architecture_type=ArchitectureType.WAN_TI2V,
                       wan_version="2.2", task="ti2v", size_class="5B", experts=1, vae_kind="wan2.2", vae_z_dim=48)
    assert headline(ti2v) == "Wan 2.2 TI2V 5B — single-file checkpoint — ready to load"
    lone = replace(ti2v, part="transformer")  # what Model Check says of a lone transformer file
    assert headline(lone) == "Wan 2.2 TI2V 5B — transformer only — needs a VAE, text encoder and tokenizer"
    assert not lone.loadable
    assert "Wan 2.2 VAE (48 latent channels)" in render_report(ti2v)
    assert "Part of a model" in render_report(lone) and "Not recognised" not in render_report(lone)


def test_check_path_empty_gives_a_prompt() -> None:
    for empty in ("", "   ", None):
        html, data = check_path(empty)  # type: ignore[arg-type]
        assert PROMPT_SENTENCE in html and data == {}


def test_check_path_missing_gives_a_plain_sentence(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    html, data = check_path(f'  "{missing}"  ')  # pasted with quotes, as Windows "Copy as path" does
    assert f"Not found: {missing}." in html
    assert "Check the path" in html
    assert data == {"error": f"Not found: {missing}.", "remedy": data["remedy"], "path": str(missing)}
    _assert_no_bare_traceback(html)


def test_check_path_turns_any_exception_into_a_sentence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    detector = pytest.importorskip("core.check.detect", reason="core.check.detect not yet available")

    def boom(path: str) -> ModelReport:
        raise RuntimeError("boom")

    monkeypatch.setattr(detector, "inspect", boom)
    html, data = check_path(str(tmp_path))
    assert "Something went wrong: RuntimeError: boom" in html
    assert "<details" in html and "Traceback" in html
    _assert_no_bare_traceback(html)
    assert data["error"].startswith("Something went wrong")


def test_clean_path() -> None:
    assert clean_path("  '/a b/c'  ") == "/a b/c"
    assert clean_path("file:///models/My%20Model") == "/models/My Model"
    assert clean_path("~/models") == str(Path.home() / "models")


def _assert_no_bare_traceback(html: str) -> None:
    """A traceback may appear only inside a closed <details> fold."""
    outside = re.sub(r"<details.*?</details>", "", html, flags=re.S)
    assert "Traceback" not in outside and 'File "' not in outside
    assert "<details open" not in html


# --- real folders -----------------------------------------------------------------------

def write_sd_folder(root: Path) -> Path:
    """A tiny but complete Stable Diffusion 1.x diffusers folder (configs and small weights)."""
    import numpy as np
    from safetensors.numpy import save_file

    root.mkdir(parents=True, exist_ok=True)
    (root / "model_index.json").write_text(json.dumps({
        "_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.30.0",
        "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
        "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
        "scheduler": ["diffusers", "PNDMScheduler"], "safety_checker": [None, None],
        "feature_extractor": [None, None], "requires_safety_checker": False}))
    weights = {
        "unet": ({"_class_name": "UNet2DConditionModel", "in_channels": 4, "out_channels": 4,
                  "cross_attention_dim": 768, "sample_size": 64},
                 "diffusion_pytorch_model.safetensors", {"conv_in.weight": (320, 4, 3, 3)}),
        "vae": ({"_class_name": "AutoencoderKL", "latent_channels": 4},
                "diffusion_pytorch_model.safetensors", {"encoder.conv_in.weight": (128, 3, 3, 3)}),
        "text_encoder": ({"architectures": ["CLIPTextModel"], "model_type": "clip_text_model", "hidden_size": 768},
                         "model.safetensors", {"text_model.embeddings.token_embedding.weight": (64, 768)}),
    }
    for name, (config, file, tensors) in weights.items():
        (root / name).mkdir(exist_ok=True)
        (root / name / "config.json").write_text(json.dumps(config))
        save_file({k: np.zeros(shape, np.float16) for k, shape in tensors.items()}, str(root / name / file))
    (root / "tokenizer").mkdir(exist_ok=True)
    (root / "tokenizer" / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 77}))
    (root / "scheduler").mkdir(exist_ok=True)
    (root / "scheduler" / "scheduler_config.json").write_text(json.dumps({"_class_name": "PNDMScheduler"}))
    return root


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def sd_folder(models_dir: Path) -> Path:
    return write_sd_folder(models_dir / "stable-diffusion-v1-5")


@pytest.fixture(scope="session")
def wan_demo_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small random-weight Wan2.2 A14B-style demo model (built once per session)."""
    pytest.importorskip("core.check.detect", reason="core.check.detect not yet available")
    demo = pytest.importorskip("core.demo", reason="core.demo not yet available")
    out = tmp_path_factory.getbasetemp() / "wan_demo_models"  # shared with tests/demo_fixture.py
    demo.write_demo_model("wan22_t2v_a14b", out)
    return out / "wan22_t2v_a14b"


@pytest.fixture(scope="session")
def config_file(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Path:
    folder = tmp_path_factory.mktemp("config")
    path = folder / "config.yaml"
    path.write_text(f"models_dir: {models_dir}\noutputs_dir: {folder / 'outputs'}\n"
                    f"history_db: {folder / 'history.db'}\nopen_browser: false\n")
    return path


@pytest.fixture(scope="session")
def app_server(config_file: Path, sd_folder: Path):
    # A busy machine may take longer to serve: only test_app_serves_its_page_quickly holds the limit.
    server = start_app(["--config", str(config_file)], timeout=3 * STARTUP_LIMIT_S)
    yield server
    server.stop()


def test_ui_builds_without_torch_and_checks_where_torch_is_broken(sd_folder: Path) -> None:
    pytest.importorskip("core.check.detect", reason="core.check.detect not yet available")
    code = f"""
import sys
import app
app.build_ui()
loaded = [m for m in ("torch", "diffusers", "transformers") if m in sys.modules]
assert not loaded, "imported at start-up: " + ", ".join(loaded)
sys.modules["torch"] = None  # from here `import torch` fails, like a broken install
from wan_ui.model_check import check_path
html, data = check_path({str(sd_folder)!r})
assert "diffusers" not in sys.modules
print(data["architecture_type"], data["loadable"])
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                            env={**_env(), "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["stable_diffusion", "True"]


def _env() -> dict[str, str]:
    import os
    return {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}


# --- the served app ---------------------------------------------------------------------

def test_app_serves_its_page_quickly(app_server, record_property) -> None:
    record_property("seconds_to_serve", round(app_server.seconds_to_serve, 2))
    print(f"\napp served its page {app_server.seconds_to_serve:.2f} s after `python app.py`")
    assert app_server.seconds_to_serve < STARTUP_LIMIT_S
    deadline = time.monotonic() + 5  # the line is printed just after the server answers
    while "Wan Compat is running at" not in app_server.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert f"Wan Compat is running at http://127.0.0.1:{app_server.port}/" in app_server.log()
    assert "Traceback" not in app_server.log()


def test_api_check_returns_the_report(app_server, sd_folder: Path, tmp_path: Path) -> None:
    pytest.importorskip("core.check.detect", reason="core.check.detect not yet available")
    from gradio_client import Client

    # download_files=False: gradio_client 2.7 on Gradio 6 (protocol sse_v3) takes any dict with a
    # "path" string for a file to download, and the report has "path" keys.
    client = Client(app_server.url, verbose=False, download_files=False)
    html, data = client.predict(str(sd_folder), api_name="/check")
    assert data["architecture_type"] == "stable_diffusion" and data["is_wan"] is False
    assert data["pipeline_class"] == "StableDiffusionPipeline" and data["loadable"] is True
    assert {c["name"] for c in data["components"]} >= {"unet", "vae", "text_encoder"}
    assert "Stable Diffusion 1.x/2.x — diffusers layout — ready to load" in html

    html, data = client.predict(str(tmp_path / "missing"), api_name="/check")
    assert data["error"] == f"Not found: {tmp_path / 'missing'}."
    _assert_no_bare_traceback(html)


# --- start-up refusals ------------------------------------------------------------------

def test_non_loopback_host_without_auth_is_refused(config_file: Path) -> None:
    result = run_app(["--no-browser", "--host", "0.0.0.0", "--config", str(config_file)])
    assert result.returncode != 0
    assert "Refusing to listen on 0.0.0.0" in result.stderr and "auth" in result.stderr
    assert "Traceback" not in result.stderr


def test_non_loopback_host_in_config_without_auth_is_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text("host: 0.0.0.0\n")
    result = run_app(["--no-browser", "--config", str(cfg)])
    assert result.returncode == 2
    assert "`auth` must be set" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("text, expected", [
    ("port: [7860,\n", "is not valid YAML at line"),
    ("port: lots\n", "`port` must be a whole number from 1 to 65535, not 'lots'"),
])
def test_invalid_config_exits_2_with_a_sentence(tmp_path: Path, text: str, expected: str) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(text)
    result = run_app(["--no-browser", "--config", str(cfg)])
    assert result.returncode == 2
    assert expected in result.stderr
    assert result.stderr.startswith("Wan Compat cannot start:") and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_port_in_use_exits_2_with_a_sentence(config_file: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_app(["--no-browser", "--port", str(port), "--config", str(config_file)])
    assert result.returncode == 2
    assert f"port {port} on 127.0.0.1 is in use by another program" in result.stderr
    assert "GRADIO_SERVER_PORT" not in result.stderr and "launch()" not in result.stderr   # our sentence only
    offered = int(result.stderr.split("start with --port ")[1].split(",")[0])
    assert offered > port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as really_free:
        really_free.bind(("127.0.0.1", offered))
    assert "Traceback" not in result.stderr


# --- in a real browser ------------------------------------------------------------------

@pytest.fixture(scope="session")
def browser():
    with chromium_browser() as b:
        yield b


def test_browser_check_shows_the_headline(app_server, browser, wan_demo_folder: Path) -> None:
    from core.check.detect import inspect

    expected = headline(inspect(str(wan_demo_folder)))
    assert expected.startswith("Wan 2.2 T2V") and expected.endswith("— diffusers layout — ready to load")
    with chromium_page(browser, width=1280, height=900) as page:
        page.goto(app_server.url)
        box = page.get_by_label("Model path")
        assert box.get_attribute("placeholder") == "/path/to/Wan2.2-T2V-A14B-Diffusers or a .safetensors file"
        assert PROMPT_SENTENCE in page.locator("#wc-report").inner_text()
        box.fill(str(wan_demo_folder))
        page.get_by_role("button", name="Check", exact=True).click()
        page.get_by_text(expected).wait_for(timeout=15_000)
        report = page.locator("#wc-report")
        assert "Wan text-to-video (a Wan model)" in report.inner_text()
        assert "WanPipeline" not in report.inner_text()          # class names wait in the closed fold
        report.get_by_text("Technical details (codes and class names)").click()
        expect(report.get_by_text("WanPipeline", exact=True)).to_be_visible()
        page.wait_for_timeout(300)  # let Gradio's fade-in finish before the picture
        path = screenshot(page, "model_check.png")
        page.get_by_text("Report as JSON").click()
        page.locator("#wc-json").get_by_text("wan_t2v").first.wait_for(timeout=5_000)
    assert path.stat().st_size > 10_000


def test_browser_models_folder_button(app_server, browser, sd_folder: Path) -> None:
    with chromium_page(browser) as page:
        page.goto(app_server.url)
        page.get_by_role("button", name=re.compile("Check my models folder")).click()
        page.get_by_text("Stable Diffusion 1.x/2.x — diffusers layout — ready to load").wait_for(timeout=15_000)
        assert page.get_by_label("Model path").input_value() == str(sd_folder.parent)


def test_browser_enter_submits_and_errors_are_plain(app_server, browser, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    with chromium_page(browser, width=1280, height=700) as page:
        page.goto(app_server.url)
        box = page.get_by_label("Model path")
        box.fill(str(missing))
        box.press("Enter")
        page.get_by_text(f"Not found: {missing}.").wait_for(timeout=15_000)
        report = page.locator("#wc-report")
        assert report.locator("summary", has_text="Technical details").is_visible()
        assert not report.locator("details pre").is_visible()  # the traceback stays folded
        screenshot(page, "model_check_error.png")
