"""End to end in a real browser: Model Check (path, dropped folder, .zip), Fix, Generate, Performance.

One app process serves the whole module (started on a free port with a temporary config:
models, outputs and history in temporary folders; HF_HUB_OFFLINE=1). Debian's chromium is
driven by Playwright (tests/browser.py). Screenshots of each tab go to test-artifacts/.

Run: HF_HUB_OFFLINE=1 GRADIO_ANALYTICS_ENABLED=False .venv/bin/python -m pytest -q tests/test_ui_browser.py
Set WAN_COMPAT_NO_BROWSER=1 to skip.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import time
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.browser import chromium_browser, chromium_page, screenshot, start_app

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

A14B_HEADLINE = "Wan 2.2 T2V A14B (two experts) — diffusers layout — ready to load"
DEMO_HEADLINE = "Wan 2.2 T2V (two experts) — diffusers layout — ready to load"


# --- fixtures: folders, the app, the browser ------------------------------------------------------

@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The random-weight A14B-style demo model (shared with the other test modules)."""
    from core.demo import write_demo_model
    return write_demo_model("wan22_t2v_a14b", tmp_path_factory.getbasetemp() / "wan_demo_models")


@pytest.fixture(scope="module")
def sparse_a14b(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A full-size Wan2.2-T2V-A14B-Diffusers folder (126 GB apparent, a few MB on disk)."""
    from tests.sparse.diffusers_layout import write_diffusers_layout
    from tests.sparse.specs import BY_KEY
    return write_diffusers_layout(BY_KEY["wan22_t2v_a14b"],
                                  tmp_path_factory.mktemp("sparse") / "Wan2.2-T2V-A14B-Diffusers")


@pytest.fixture(scope="module")
def app_home(tmp_path_factory: pytest.TempPathFactory, demo_dir: Path) -> Path:
    home = tmp_path_factory.mktemp("app")
    shutil.copytree(demo_dir, home / "models" / demo_dir.name)
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


def _open(page, app, tab: str | None = None) -> None:
    page.goto(app.url)
    page.locator("#wc-path").wait_for()
    if tab:
        page.get_by_role("tab", name=tab).click()


def _settle(page, ms: int = 400) -> None:
    """Let Gradio's fade-ins finish before a screenshot."""
    page.wait_for_timeout(ms)


# --- Model Check --------------------------------------------------------------------------------

def test_check_a_full_size_model_by_path(app, browser, sparse_a14b: Path) -> None:
    with chromium_page(browser, 1280, 900) as page:
        _open(page, app)
        page.get_by_label("Model path").fill(str(sparse_a14b))
        page.get_by_role("button", name="Check", exact=True).click()
        page.get_by_text(A14B_HEADLINE).wait_for(timeout=20_000)
        report = page.locator("#wc-report").inner_text()
        assert "126.20 GB" in report and "No problems found." in report
        assert "On this computer at the model's default settings: 1280x720, 81 frames, 40 steps" in report
        expect(page.locator("#wc-report .wc-offer-button")).to_have_text("Open in Fix")   # under the headline
        with page.expect_download() as download:
            page.locator("#wc-report-download").click()
        data = json.loads(Path(download.value.path()).read_text())
        assert data["registry_id"] == "Wan-AI/Wan2.2-T2V-A14B-Diffusers" and data["source"] == "path"
        _settle(page)
        screenshot(page, "tab_model_check.png")


def test_check_a_dropped_folder_uploads_no_weights(app, browser, sparse_a14b: Path) -> None:
    apparent = sum(p.stat().st_size for p in sparse_a14b.rglob("*") if p.is_file())
    assert apparent > 100e9
    with chromium_page(browser, 1280, 900) as page:
        _open(page, app)
        sent: list[int] = []
        page.on("request", lambda r: sent.append(len(r.post_data_buffer or b"")) if r.method == "POST" else None)
        # the drop zone's "Choose a folder…" input (webkitdirectory): chromium gets the paths, not the bytes
        page.locator("#wc-dropzone input[type=file]").set_input_files(str(sparse_a14b))
        page.locator("#wc-report").get_by_text(A14B_HEADLINE).wait_for(timeout=30_000)
        status = page.locator("#wc-dropzone .wc-drop-status").inner_text()
        assert "describing 43 files (126.20 GB on disk); no weights were uploaded" in status
        assert 0 < sum(sent) < 2_000_000, sum(sent)              # configs and headers, not 126 GB
        report = page.locator("#wc-report").inner_text()
        assert "Your browser sent" in report and "No problems found." in report
        box = page.locator("#wc-path input, #wc-path textarea").first            # the box says what was checked
        assert sparse_a14b.name in (box.input_value() or box.get_attribute("placeholder")), box.get_attribute("placeholder")
        expect(page.locator("#wc-report-download")).to_be_enabled()
        # checked by its path before (a recent path): found by its files' names and sizes, so Fix can open it
        expect(page.locator("#wc-report")).to_contain_text(f"It is {sparse_a14b} on this computer")
        expect(page.locator("#wc-report .wc-offer-button")).to_have_text("Open in Fix")
        _settle(page)
        screenshot(page, "tab_model_check_drop.png")


DROP_JS = """
async (files) => {
  // A dropped folder as Chromium hands it over: DataTransfer items whose entries are walked.
  const dir = (name, fullPath) => {
    const children = [];
    return {isDirectory: true, isFile: false, name, fullPath, children,
            createReader() { let done = false;
              return {readEntries(ok) { setTimeout(() => { ok(done ? [] : children.slice()); done = true; }, 0); }}; }};
  };
  const root = dir(files[0].path.split('/')[0], '/' + files[0].path.split('/')[0]);
  const dirs = {[root.name]: root};
  for (const f of files) {
    const parts = f.path.split('/');
    let parent = root;
    for (let i = 1; i < parts.length - 1; i++) {
      const key = parts.slice(0, i + 1).join('/');
      if (!dirs[key]) { dirs[key] = dir(parts[i], '/' + key); parent.children.push(dirs[key]); }
      parent = dirs[key];
    }
    const bytes = Uint8Array.from(atob(f.b64), (c) => c.charCodeAt(0));
    const file = new File([bytes], parts[parts.length - 1]);
    parent.children.push({isDirectory: false, isFile: true, name: file.name, fullPath: '/' + f.path,
                          file(ok) { ok(file); }});
  }
  const event = new Event('drop', {bubbles: true, cancelable: true});
  Object.defineProperty(event, 'dataTransfer', {value: {items: [{webkitGetAsEntry: () => root}], files: []}});
  document.querySelector('#wc-dropzone .wc-drop').dispatchEvent(event);
}
"""


def test_drop_event_walks_the_folder(app, browser, demo_dir: Path, app_home: Path) -> None:
    files = [{"path": f"{demo_dir.name}/{p.relative_to(demo_dir).as_posix()}",
              "b64": base64.b64encode(p.read_bytes()).decode()}
             for p in sorted(demo_dir.rglob("*")) if p.is_file()]
    with chromium_page(browser, 1280, 900) as page:
        _open(page, app)
        with page.expect_request(lambda r: r.method == "POST" and "queue/join" in r.url) as request:
            page.evaluate(DROP_JS, files)
        page.locator("#wc-report").get_by_text(DEMO_HEADLINE).wait_for(timeout=20_000)
        body = request.value.post_data_buffer or b""
        weights = sum(p.stat().st_size for p in demo_dir.rglob("*.safetensors"))
        assert len(body) < weights / 4, (len(body), weights)      # headers only, not the tensors
        # the same folder is in the models folder (same names and sizes): found, so Fix can open it
        report = page.locator("#wc-report")
        expect(report).to_contain_text(f"It is {app_home / 'models' / demo_dir.name} on this computer")
        expect(report.locator(".wc-offer-button")).to_have_text("Open in Fix")


ZIP_DROP_JS = """
async (b64) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const file = new File([bytes], 'demo.zip', {type: 'application/zip'});
  const entry = {isFile: true, isDirectory: false, name: file.name, fullPath: '/' + file.name, file(ok) { ok(file); }};
  const event = new Event('drop', {bubbles: true, cancelable: true});
  Object.defineProperty(event, 'dataTransfer', {value: {items: [{webkitGetAsEntry: () => entry}], files: [file]}});
  document.querySelector('#wc-dropzone .wc-drop').dispatchEvent(event);
}
"""


def test_check_an_uploaded_zip(app, browser, demo_dir: Path, tmp_path: Path) -> None:
    archive = shutil.make_archive(str(tmp_path / "demo"), "zip", demo_dir.parent, demo_dir.name)
    with chromium_page(browser, 1280, 900) as page:
        _open(page, app)
        with page.expect_file_chooser() as chooser:             # the zone's own button picks a .zip…
            page.locator("#wc-dropzone .wc-drop-zip").click()
        assert not chooser.value.is_multiple()
        # …and a .zip dropped on the zone (where folders are dropped) is unpacked and checked
        page.evaluate(ZIP_DROP_JS, base64.b64encode(Path(archive).read_bytes()).decode())
        page.locator("#wc-report").get_by_text(DEMO_HEADLINE).wait_for(timeout=20_000)
        assert "Unpacked from demo.zip" in page.locator("#wc-report").inner_text()
        expect(page.locator("#wc-dropzone .wc-drop-status")).to_have_text(
            "Checked demo.zip, unpacked on this computer: the report is below.")
        box = page.locator("#wc-path input, #wc-path textarea").first
        expect(box).to_have_value(re.compile(r"wan-compat-zip-.*wan22_t2v_a14b$"))   # the unpacked folder
        _settle(page)
        screenshot(page, "tab_model_check_zip_drop.png")


def test_system_panel_shows_the_doctor(app, browser) -> None:
    with chromium_page(browser, 1280, 900) as page:
        _open(page, app)
        page.get_by_text("System: is this computer ready?").click()
        page.locator("#wc-system-report").get_by_text("ffmpeg", exact=True).wait_for(timeout=60_000)
        text = page.locator("#wc-system-report").inner_text()
        for check in ("Python", "torch", "RAM", "Disk (models)", "diffusers"):
            assert check in text


# --- Fix ------------------------------------------------------------------------------------------

def test_folder_of_models_then_fix_from_the_headline(app, browser, demo_dir: Path, tmp_path: Path) -> None:
    """A folder of two models: the summary list, "Open" on the broken one, "Fix" under its headline,
    Plan on screen, Apply, ready; Fix on the folder then has nothing left to fix."""
    shelf = tmp_path / "shelf"
    broken = shelf / "broken-demo"
    shutil.copytree(demo_dir, broken)
    shutil.copytree(demo_dir, shelf / "good-demo")
    (broken / "model_index.json").unlink()
    with chromium_page(browser, 1280, 900) as page:
        _open(page, app)
        page.get_by_label("Model path").fill(str(shelf))
        page.get_by_role("button", name="Check", exact=True).click()
        report = page.locator("#wc-report")
        report.get_by_text("A folder of 2 models — 1 ready to load, 1 with problems").wait_for(timeout=20_000)
        rows = report.locator("table.wc-models tbody tr")
        expect(rows).to_have_count(2)
        assert [r.split("\t")[:3] for r in rows.all_inner_texts()] == [
            ["broken-demo", "Wan 2.2 T2V (two experts)", "✗ Needs fixing (1 problem)"],
            ["good-demo", "Wan 2.2 T2V (two experts)", "✓ Ready"]]
        expect(report.locator("details.wc-full-reports")).not_to_have_attribute("open", "")   # the full reports: folded
        _settle(page)
        screenshot(page, "tab_model_check_folder.png")
        rows.first.get_by_role("button", name="Open", exact=True).click()          # the broken model's own report
        report.get_by_text("1 problem to fix").first.wait_for(timeout=20_000)
        expect(page.get_by_label("Model path")).to_have_value(str(broken))
        text = report.inner_text()
        assert "Press Fix to rebuild it" in text and "python -m core" not in text and "model_index_missing" not in text
        fix_button = report.locator(".wc-offer-button")
        expect(fix_button).to_have_text("Fix")
        head, button = report.locator(".wc-headline").first.bounding_box(), fix_button.bounding_box()
        assert 0 < button["y"] - head["y"] < 90, (head, button)                 # right under the headline
        _settle(page)
        screenshot(page, "tab_model_check_broken.png")
        fix_button.click()
        plan = page.locator("#wc-fix-plan-view")
        plan.get_by_text("1 change to make in place").wait_for(timeout=20_000)
        assert "writes model_index.json" in plan.inner_text() and "boundary_ratio" not in plan.inner_text()
        assert page.locator("#wc-fix-path input, #wc-fix-path textarea").first.input_value() == str(broken)
        expect(page.locator("#wc-fix-apply")).to_be_enabled()
        expect(page.locator("#wc-fix-undo")).to_be_hidden()                      # no backup yet
        assert "1 problem to fix" in page.locator("#wc-fix-before").inner_text()
        page.locator("#wc-fix-apply").click()
        page.locator("#wc-fix-after").get_by_text("ready to load").first.wait_for(timeout=30_000)
        progress = page.locator("#wc-fix-progress").inner_text()
        assert "Fixed: the model is ready to load." in progress and ".wan_compat_backup" in progress
        expect(plan).to_contain_text("The change was made")
        expect(page.locator("#wc-fix-apply")).to_be_disabled()                   # carried out: nothing to apply
        expect(page.locator("#wc-fix-undo")).to_be_visible()                     # a backup to restore
        for column in ("#wc-fix-before", "#wc-fix-after"):                       # the tables fit their columns
            assert page.evaluate(f"() => {{ const t = document.querySelector('{column} table');"
                                 " return t.scrollWidth <= t.parentElement.clientWidth + 1; }")
        _settle(page)
        screenshot(page, "tab_fix.png")
        page.locator("#wc-fix-path input, #wc-fix-path textarea").first.fill(str(shelf))
        page.locator("#wc-fix-plan").click()
        plan.get_by_text("None of the 2 models in this folder needs fixing.").wait_for(timeout=20_000)
        expect(page.locator("#wc-fix-apply")).to_be_disabled()
    assert (broken / "model_index.json").is_file()


def test_an_empty_performance_tab_says_so(app, browser) -> None:
    with chromium_page(browser, 1280, 900) as page:
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        _open(page, app, "Performance")
        alerts = page.locator("#wc-perf-alerts")
        alerts.get_by_text("No runs recorded yet").wait_for(timeout=20_000)
        assert "No regressions" not in alerts.inner_text()
        expect(page.locator("#wc-perf-plot-note")).to_contain_text("No generations recorded yet")
        assert not page.locator("#wc-perf-speed").is_visible()
        page.wait_for_timeout(300)
        assert not [e for e in errors if "invalid format" in e], errors
        screenshot(page, "tab_performance_empty.png")


# --- Generate -------------------------------------------------------------------------------------

def _fill(page, field: str, value: object) -> None:
    page.locator(f"#wc-gen-{field} input").fill(str(value))


def _wait_state(page, states: tuple[str, ...], timeout_s: float, snapshots: list[str] | None = None) -> str:
    """Poll the progress panel until its data-state is one of ``states``; record what it showed."""
    panel = page.locator("#wc-gen-progress .wc-progress")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if panel.count():
            state = panel.first.get_attribute("data-state") or ""
            if snapshots is not None:
                text = panel.first.inner_text()
                if not snapshots or snapshots[-1] != text:
                    snapshots.append(text)
            if state in states:
                return state
        page.wait_for_timeout(100)
    raise AssertionError(f"no {states} within {timeout_s} s; last: {snapshots[-1:] if snapshots else None}")


def test_generate_streams_progress_and_plays(app, browser, app_home: Path, tmp_path: Path) -> None:
    with chromium_page(browser, 1280, 1000) as page:
        _open(page, app, "Generate")
        # no model, no prompt: Generate and Add to queue wait, and the note says why
        expect(page.locator("#wc-gen-go")).to_be_disabled()
        expect(page.locator("#wc-gen-add")).to_be_disabled()
        expect(page.locator("#wc-gen-ready-note")).to_contain_text("Choose a model and write a prompt")
        screenshot(page, "tab_generate_form_empty.png")
        _fill(page, "steps", 12)                                   # typed before a model is chosen: it stays
        page.locator("#wc-gen-path input, #wc-gen-path textarea").first.fill(str(tmp_path / "no-such-model"))
        expect(page.locator("#wc-gen-ready-note")).to_contain_text("Write a prompt")
        page.locator("#wc-gen-prompt textarea").fill("A red fox running through fresh snow")
        expect(page.locator("#wc-gen-go")).to_be_enabled()
        page.locator("#wc-gen-go").click()
        page.locator("#wc-gen-progress").get_by_text("The video could not be made.").wait_for(timeout=10_000)
        page.locator("#wc-gen-model input").click()
        page.locator("ul[role=listbox] li", has_text="wan22_t2v_a14b").click()
        page.locator("#wc-gen-info").get_by_text(DEMO_HEADLINE).wait_for(timeout=20_000)
        page.wait_for_function("() => document.querySelector('#wc-gen-width input').value === '1280'")
        expect(page.locator("#wc-gen-progress")).not_to_contain_text("could not be made")   # the stale refusal went
        assert page.locator("#wc-gen-steps input").input_value() == "12"          # the person's value stayed
        expect(page.locator("#wc-gen-frames")).to_contain_text("81 frames = 5.1 s at 16 fps")
        page.locator("#wc-gen-size input").click()                 # Quick test, after the model's own sizes
        options = page.locator("ul[role=listbox] li")
        expect(options.first).to_contain_text("1280x720 (default)")
        expect(options.last).to_contain_text("Quick test: 16x16, 9 frames, 4 steps")
        options.last.click()
        page.wait_for_function("() => document.querySelector('#wc-gen-steps input').value === '4'")
        assert [page.locator(f"#wc-gen-{f} input").input_value() for f in ("width", "height", "frames")] == \
            ["16", "16", "9"]
        expect(page.locator("#wc-gen-frames")).to_contain_text("9 frames = 0.6 s at 16 fps")
        page.locator("#wc-gen-plan").get_by_text("16x16, 9 frames, 4 steps").wait_for(timeout=10_000)
        _settle(page)
        screenshot(page, "tab_generate_form_quick_test.png")
        assert page.locator("#wc-gen-guidance-2").is_visible()           # two experts: two guidances
        assert not page.locator("#wc-gen-image").is_visible()            # text-to-video: no image
        for field, value in (("width", 64), ("height", 64), ("frames", 9), ("steps", 8)):
            _fill(page, field, value)
        page.locator("#wc-gen-plan").get_by_text("64x64, 9 frames, 8 steps").wait_for(timeout=10_000)
        # the buttons are on the first screen, above the plan, with the progress panel right under them
        go_box, plan_box = page.locator("#wc-gen-go").bounding_box(), page.locator("#wc-gen-plan").bounding_box()
        progress_box = page.locator("#wc-gen-progress").bounding_box()
        assert go_box["y"] < plan_box["y"] and go_box["y"] + go_box["height"] < 400, (go_box, plan_box)
        assert 0 < progress_box["y"] - go_box["y"] < 150, (go_box, progress_box)
        assert not page.locator("#wc-gen-plan .wc-plan-lines").first.is_visible()   # the reasons are folded
        page.locator("#wc-gen-go").click()
        snapshots: list[str] = []
        assert _wait_state(page, ("done", "failed", "cancelled"), 120, snapshots) == "done", snapshots[-1]
        before_done = snapshots[:-1]
        assert any("Loading" in s for s in before_done), snapshots
        assert any("Step" in s and "of 8" in s for s in before_done), snapshots   # steps seen while running
        assert any("expert" in s and "s/step" in s and "ETA" in s for s in before_done), snapshots
        page.wait_for_function("() => { const v = document.querySelector('#wc-gen-video video');"
                               " return v && v.duration > 0; }", timeout=20_000)
        duration = page.evaluate("() => document.querySelector('#wc-gen-video video').duration")
        assert 0.4 < duration < 1.0                                       # 9 frames at 16 fps
        page.locator("#wc-gen-gallery").locator("video, img").first.wait_for(timeout=10_000)
        _settle(page, 800)
        screenshot(page, "tab_generate.png")
        page.get_by_text("Settings of this video").click()
        expect(page.locator("#wc-gen-result")).to_contain_text("num_inference_steps")
        # reuse: change the form, then take the video's settings back
        _fill(page, "steps", 33)
        page.locator("#wc-gen-reuse").click()
        page.wait_for_function("() => document.querySelector('#wc-gen-steps input').value === '8'")
    assert len(list((app_home / "outputs").glob("*.mp4"))) >= 1


def test_cancel_a_generation_while_the_app_stays_responsive(app, browser, app_home: Path, demo_dir: Path,
                                                            sparse_a14b: Path) -> None:
    from gradio_client import Client

    videos_before = set((app_home / "outputs").glob("*.mp4"))
    with chromium_page(browser, 1280, 1000) as page:
        _open(page, app, "Generate")
        page.locator("#wc-gen-path input, #wc-gen-path textarea").first.fill(str(app_home / "models" / demo_dir.name))
        page.locator("#wc-gen-path input, #wc-gen-path textarea").first.press("Enter")
        page.locator("#wc-gen-info").get_by_text(DEMO_HEADLINE).wait_for(timeout=20_000)
        page.wait_for_function("() => document.querySelector('#wc-gen-width input').value === '1280'")
        page.locator("#wc-gen-prompt textarea").fill("A long clip to cancel")
        page.locator("#wc-gen-gallery").locator("video, img").first.click()      # an earlier video is shown
        page.locator("#wc-gen-video video").wait_for(timeout=10_000)
        earlier = page.locator("#wc-gen-video video").get_attribute("src")
        for field, value in (("width", 128), ("height", 128), ("frames", 33), ("steps", 1000)):
            _fill(page, field, value)
        page.locator("#wc-gen-go").click()
        page.locator("#wc-gen-progress .wc-facts").get_by_text("of 1000").wait_for(timeout=90_000)
        # other work goes on while it runs; a second generation waits its turn in the queue
        client = Client(app.url, verbose=False, download_files=False)
        t0 = time.monotonic()
        _html, report = client.predict(str(sparse_a14b), api_name="/check")
        assert report["loadable"] and time.monotonic() - t0 < 10
        waiting = client.predict(model=str(demo_dir), prompt="x", width=64, height=64, num_frames=9,
                                 num_inference_steps=4, api_name="/enqueue")
        assert client.predict(job_id=waiting, api_name="/job")["state"] == "queued"
        assert client.predict(job_id=waiting, api_name="/cancel_job") == "Cancelled; it had not started."
        page.evaluate("""() => { window.__states = [];
          new MutationObserver(() => { const p = document.querySelector('#wc-gen-progress .wc-progress');
            if (p) window.__states.push(p.dataset.state); })
          .observe(document.querySelector('#wc-gen-progress'),
                   {childList: true, subtree: true, attributes: true, characterData: true}); }""")
        page.locator("#wc-gen-cancel").click()
        assert _wait_state(page, ("done", "failed", "cancelled"), 60) == "cancelled"
        assert "cancelling" in page.evaluate("() => window.__states")      # said at once, before it stopped
        # the form kept what was typed after the path (a blur of the path box does not reset it)
        assert page.locator("#wc-gen-width input").input_value() == "128"
        assert "Cancelled after the current step" in page.locator("#wc-gen-progress").inner_text()
        assert "ETA" not in page.locator("#wc-gen-progress .wc-facts").first.inner_text()   # no ETA once cancelled
        expect(page.locator("#wc-gen-go")).to_be_enabled()
        expect(page.locator("#wc-gen-cancel")).to_be_disabled()
        assert page.locator("#wc-gen-video video").get_attribute("src") == earlier   # Cancel kept the last video
    assert set((app_home / "outputs").glob("*.mp4")) == videos_before     # nothing written


def test_self_test_builds_the_demo_and_generates(app, browser, app_home: Path) -> None:
    with chromium_page(browser, 1280, 1000) as page:
        _open(page, app, "Generate")
        page.locator("#wc-gen-self-test").click()
        snapshots: list[str] = []
        assert _wait_state(page, ("done", "failed", "cancelled"), 120, snapshots) == "done", snapshots[-1]
        assert "wan21_t2v · 64x64 · 9 frames · 4 steps" in snapshots[-1] + page.locator("#wc-gen-progress").inner_text()
        page.wait_for_function("() => { const v = document.querySelector('#wc-gen-video video');"
                               " return v && v.duration > 0; }", timeout=20_000)
    assert (app_home / "data" / "demo-models" / "wan21_t2v" / "model_index.json").is_file()


# --- Performance and the API ---------------------------------------------------------------------

def test_the_runs_appear_in_the_performance_tab(app, browser) -> None:
    with chromium_page(browser, 1280, 1000) as page:
        _open(page, app, "Performance")
        table = page.locator("#wc-perf-table")
        expect(table).to_contain_text("cancelled", timeout=20_000)
        text = table.inner_text()
        assert "generation" in text and "wan22_t2v_a14b" in text and "64x64" in text and "ok" in text
        assert "128x128" in text                       # the cancelled run, recorded as such
        assert "load" in text
        assert "run(s) recorded" in page.locator("#wc-perf-note").inner_text()
        expect(page.locator("#wc-perf-speed")).to_be_visible()          # drawn by Vega after the table
        expect(page.locator("#wc-perf-memory")).to_be_visible()
        # every column shows (no sideways scroll), and a click on a row shows that run in full
        assert page.evaluate("() => { const t = document.querySelector('#wc-perf-table table');"
                             " return t.scrollWidth <= t.parentElement.clientWidth + 1; }")
        table.get_by_text("cancelled").locator("visible=true").first.click()
        expect(page.locator("#wc-perf-run")).to_contain_text("size: 128x128")
        expect(page.locator("#wc-perf-run")).to_contain_text("peak RAM:")
        with page.expect_download() as download:
            page.locator("#wc-perf-csv").click()
        csv_text = Path(download.value.path()).read_text()
        assert csv_text.startswith("started,operation_type") and "wan22_t2v_a14b" in csv_text
        _settle(page, 800)
        screenshot(page, "tab_performance.png")


def test_api_check_and_generate(app, sparse_a14b: Path, demo_dir: Path) -> None:
    from gradio_client import Client

    from tests.test_ui_units import manifest_of

    client = Client(app.url, verbose=False, download_files=False)
    html, report = client.predict(str(sparse_a14b), api_name="/check")
    assert report["registry_id"] == "Wan-AI/Wan2.2-T2V-A14B-Diffusers" and A14B_HEADLINE in html
    html, report = client.predict(json.dumps(manifest_of(sparse_a14b)), api_name="/check_manifest")
    assert report["source"] == "manifest" and report["loadable"]
    html, video, result = client.predict(str(demo_dir), "A cat", "", 64, 64, 5, 3, 5.0, 3.0, 11, None, None,
                                         "fp32", "auto", "on", "auto", api_name="/generate")
    assert result["success"], result
    assert Path(result["output_path"]).is_file() and video["orig_name"] == Path(result["output_path"]).name
    assert result["settings"]["seed"] == 11 and result["settings"]["overrides"] == {
        "precision": "fp32", "vae_tiling": True}
    assert client.predict(api_name="/cancel") == "Nothing is being generated."
    history = client.predict("generation", api_name="/history")
    assert any(r["size"] == "64x64" and r["frames"] == 5 for r in history["rows"])
