"""Black videos in a real browser (issue 19): the deep check names a NaN tensor; fp16 overflow is retried.

One app process (a temporary config whose models folder holds the faulty copies of the demo
model from tests/test_nonfinite.py) serves both tests; Debian's chromium is driven by
Playwright (tests/browser.py). Real files: NaN bytes written into a tensor, one FFN weight
scaled so that fp16 overflows.

Run: HF_HUB_OFFLINE=1 .venv/bin/python -m pytest -q tests/test_ui_browser_nonfinite.py
"""

from __future__ import annotations

import json
import shutil
import struct
import time
from pathlib import Path

import pytest

from tests.browser import chromium_browser, chromium_page, screenshot, start_app
from tests.test_nonfinite import faults  # noqa: F401 - the faulty copies, a module fixture

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

EXTRA_MB = 256     # random finite bf16 beside the model, so that the deep check takes long enough to watch


@pytest.fixture(scope="module")
def app_home(tmp_path_factory: pytest.TempPathFactory, faults: dict) -> Path:  # noqa: F811
    import numpy as np
    home = tmp_path_factory.mktemp("app")
    for name in ("overflow", "nan"):
        shutil.copytree(faults[name], home / "models" / name)
    numel = EXTRA_MB * 2**20 // 2
    raw = json.dumps({"extra.weight": {"dtype": "BF16", "shape": [numel],
                                       "data_offsets": [0, numel * 2]}}).encode()
    raw += b" " * (-len(raw) % 8)
    bits = np.random.default_rng(0).integers(0, 2**16, numel, dtype=np.uint16) & np.uint16(0xBFFF)
    (home / "models" / "nan" / "extra.safetensors").write_bytes(struct.pack("<Q", len(raw)) + raw + bits.tobytes())
    (home / "config.yaml").write_text(
        f"models_dir: {home / 'models'}\noutputs_dir: {home / 'outputs'}\n"
        f"history_db: {home / 'data' / 'history.db'}\nopen_browser: false\n")
    return home


@pytest.fixture(scope="module")
def app(app_home: Path):
    server = start_app(env={"WAN_COMPAT_CONFIG": str(app_home / "config.yaml")}, timeout=30)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser():
    with chromium_browser() as b:
        yield b


def test_deep_check_shows_progress_then_names_the_nan_tensor(app, browser, app_home: Path) -> None:
    with chromium_page(browser, 1280, 1000) as page:
        page.goto(app.url)
        page.locator("#wc-path").wait_for()
        page.locator("#wc-deep-report").wait_for(state="attached")   # Gradio may draw it after the path box
        # every text the deep check's card shows, however briefly
        page.evaluate("""() => { window.seen = []; const box = document.querySelector('#wc-deep-report');
            new MutationObserver(() => window.seen.push(box.innerText)).observe(
                box, {childList: true, subtree: true, characterData: true}); }""")
        page.get_by_label("Model path").fill(str(app_home / "models" / "nan"))
        page.get_by_role("button", name="Deep check (reads every byte)").click()
        report = page.locator("#wc-deep-report")
        report.get_by_text("blocks.1.attn1.to_q.weight").wait_for(timeout=60_000)
        text = report.inner_text()
        assert ("transformer/diffusion_pytorch_model.safetensors, tensor blocks.1.attn1.to_q.weight holds "
                "2 NaN and 1 Inf values: the file is damaged.") in text
        assert "Download transformer/diffusion_pytorch_model.safetensors again." in text
        seen = page.evaluate("() => window.seen")
        progress = [s for s in seen if "% · Reading" in s]
        assert progress, seen                                    # progress was on the page first
        assert seen.index(progress[0]) < next(i for i, s in enumerate(seen) if "to_q.weight" in s)
        screenshot(page, "tab_model_check_deep.png")


def test_generate_in_fp16_overflows_and_the_result_says_it_was_retried(app, browser, app_home: Path) -> None:
    with chromium_page(browser, 1280, 1000) as page:
        page.goto(app.url)
        page.locator("#wc-path").wait_for()
        page.get_by_role("tab", name="Generate").click()
        page.locator("#wc-gen-model input").click()
        page.locator("ul[role=listbox] li", has_text="overflow").click()
        page.locator("#wc-gen-info").get_by_text("ready to load").wait_for(timeout=20_000)
        page.locator("#wc-gen-prompt textarea").fill("a red fox in the snow")
        for field, value in (("width", 64), ("height", 64), ("frames", 5), ("steps", 3), ("seed", 7)):
            page.locator(f"#wc-gen-{field} input").fill(str(value))
        page.locator("#wc-gen-advanced").get_by_text("Advanced: memory plan settings").click()
        page.locator("#wc-gen-precision input").click()
        page.get_by_role("option", name="fp16", exact=True).click()
        page.locator("#wc-gen-plan").get_by_text("64x64, 5 frames, 3 steps").wait_for(timeout=10_000)
        page.locator("#wc-gen-go").click()
        panel = page.locator("#wc-gen-progress .wc-progress")
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and (panel.count() == 0 or panel.first.get_attribute("data-state")
                                               not in ("done", "failed", "cancelled")):
            page.wait_for_timeout(200)
        said = page.locator("#wc-gen-progress").inner_text()
        assert panel.first.get_attribute("data-state") == "done", said
        assert "Step 1 of 3 produced NaN latents; the run was stopped there." in said
        assert "fp16 overflowed in block 0's feed-forward (blocks.0.ffn.net.2)" in said
        assert "Retried in fp32 (was fp16)" in said
        page.wait_for_function("() => { const v = document.querySelector('#wc-gen-video video');"
                               " return v && v.duration > 0; }", timeout=20_000)
        screenshot(page, "tab_generate_retried.png")
    assert len(list((app_home / "outputs").glob("*.mp4"))) == 1
