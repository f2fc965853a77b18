"""Generation jobs in a real browser (issue 12 §1): a reload during a run (and the VAE decode's own
progress after it), a queue of three, the app killed during a job.

One app process (a temporary config: models, outputs, history in temporary folders) serves the
module; the kill test starts its own app twice on one history database. Debian's chromium is driven
by Playwright (tests/browser.py). Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.browser import chromium_browser, chromium_page, screenshot, start_app

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, demo_models_dir: Path) -> Path:
    home = tmp_path_factory.mktemp("jobs_app")
    shutil.copytree(demo_models_dir / "wan21_t2v", home / "models" / "wan21_t2v")
    (home / "config.yaml").write_text(
        f"models_dir: {home / 'models'}\noutputs_dir: {home / 'outputs'}\n"
        f"history_db: {home / 'data' / 'history.db'}\nopen_browser: false\n")
    return home


@pytest.fixture(scope="module")
def app(home: Path):
    server = start_app(env={"WAN_COMPAT_CONFIG": str(home / "config.yaml")}, timeout=30)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser():
    with chromium_browser() as b:
        yield b


@pytest.fixture(scope="module")
def client(app):
    from gradio_client import Client
    return Client(app.url, verbose=False, download_files=False)


def _model(home: Path) -> str:
    return str(home / "models" / "wan21_t2v")


def _open_generate(page, app) -> None:
    page.goto(app.url)
    page.locator("#wc-path").wait_for()
    page.get_by_role("tab", name="Generate").click()
    page.locator("#wc-gen-progress").wait_for(state="attached")


def _panel_state(page) -> str:
    panel = page.locator("#wc-gen-progress .wc-progress")
    return (panel.first.get_attribute("data-state") or "") if panel.count() else ""


def _wait_job(client, job_id: int, states: tuple[str, ...], timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.predict(job_id=job_id, api_name="/job")
        if job["state"] in states:
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} not {states} within {timeout} s: {job}")


def _record_panel(page) -> None:
    """Keep every text the progress panel shows (a MutationObserver), in window.__panel."""
    page.evaluate("""() => { window.__panel = [];
      const root = document.querySelector('#wc-gen-progress');
      new MutationObserver(() => { const p = root.querySelector('.wc-progress');
        if (p) window.__panel.push({state: p.dataset.state, text: p.innerText,
                                    pct: p.querySelector('.wc-pct') ? p.querySelector('.wc-pct').innerText : ''}); })
      .observe(root, {childList: true, subtree: true, characterData: true, attributes: true}); }""")


def test_a_reloaded_page_follows_the_same_job_and_its_decode_to_the_video(app, browser, client, home: Path) -> None:
    job_id = client.predict(model=_model(home), prompt="a fox through a reload", width=128, height=128,
                            num_frames=33, num_inference_steps=30, seed=3, api_name="/enqueue")
    assert isinstance(job_id, int)
    with chromium_page(browser, 1280, 1100) as page:
        _open_generate(page, app)
        page.locator("#wc-gen-progress .wc-facts").get_by_text("of 30").wait_for(timeout=90_000)
        page.reload()                                   # the page goes; the job does not
        page.get_by_role("tab", name="Generate").click()
        _record_panel(page)
        page.locator(f'#wc-queue tr[data-job="{job_id}"]').wait_for(timeout=10_000)
        # while it runs, three more wait: the last moves up one place, the one it passed is removed
        small = dict(model=_model(home), width=64, height=64, num_frames=9, num_inference_steps=2)
        waiting = [client.predict(prompt=f"waiting clip {n}", seed=n, **small, api_name="/enqueue") for n in (1, 2, 3)]
        queued = page.locator('#wc-queue tr[data-state="queued"]')
        expect(queued).to_have_count(3, timeout=10_000)
        page.locator(f'#wc-queue tr[data-job="{waiting[2]}"] button[data-act="up"]').click()
        expect(queued.first).to_have_attribute("data-job", str(waiting[0]))
        expect(queued.nth(1)).to_have_attribute("data-job", str(waiting[2]), timeout=10_000)
        page.locator(f'#wc-queue tr[data-job="{waiting[1]}"] button[data-act="remove"]').click()
        expect(queued).to_have_count(2, timeout=10_000)
        assert waiting[1] not in [j["id"] for j in client.predict(api_name="/jobs")]
        assert client.predict(job_id=job_id, api_name="/job")["state"] == "running"     # all of it while it ran
        for n in (waiting[0], waiting[2]):             # (the queue of three below runs jobs to their end)
            assert client.predict(job_id=n, api_name="/cancel_job") == "Cancelled; it had not started."
        page.locator('#wc-gen-progress .wc-progress[data-state="done"]').wait_for(timeout=120_000)
        seen = page.evaluate("() => window.__panel")
        running = [s for s in seen if s["state"] == "running"]
        assert running and any("Step" in s["text"] or "Decoding" in s["text"] for s in running), seen[-3:]
        # the VAE decode (9 latent frames) moves the bar on its own, part by part, at least three times
        decoding = [s for s in running if s["text"].startswith("Decoding the video")]
        assert len({s["pct"] for s in decoding}) >= 3, [(s["pct"], s["text"][:60]) for s in seen]
        assert any("part" in s["text"] for s in decoding)
        page.wait_for_function("() => { const v = document.querySelector('#wc-gen-video video');"
                               " return v && v.duration > 0; }", timeout=20_000)
        job = client.predict(job_id=job_id, api_name="/job")
        assert job["state"] == "done" and Path(job["output_path"]).is_file()
        assert page.locator(f'#wc-queue tr[data-job="{job_id}"]').get_attribute("data-state") == "done"
        page.wait_for_timeout(400)
        screenshot(page, "jobs_reloaded_page_done.png")


def test_a_queue_of_three_finishes_in_order(app, browser, client, home: Path) -> None:
    with chromium_page(browser, 1280, 1100) as page:
        _open_generate(page, app)
        page.locator("#wc-gen-path input, #wc-gen-path textarea").first.fill(_model(home))
        page.locator("#wc-gen-path input, #wc-gen-path textarea").first.press("Enter")
        page.locator("#wc-gen-info").get_by_text("ready to load").wait_for(timeout=20_000)
        for field, value in (("width", 64), ("height", 64), ("frames", 9), ("steps", 4)):
            page.locator(f"#wc-gen-{field} input").fill(str(value))
        ids = []
        for n in range(3):
            page.locator("#wc-gen-prompt textarea").fill(f"queued clip number {n + 1}")
            before = set(j["id"] for j in client.predict(api_name="/jobs"))
            page.locator("#wc-gen-add").click()
            page.locator("#wc-gen-cancel-note").get_by_text("Added to the queue as job").wait_for(timeout=10_000)
            new = [j["id"] for j in client.predict(api_name="/jobs") if j["id"] not in before]
            assert len(new) == 1
            ids.append(new[0])
        page.locator(f'#wc-queue tr[data-job="{ids[2]}"][data-state="queued"]').wait_for(timeout=10_000)
        page.wait_for_timeout(300)
        screenshot(page, "jobs_queue_of_three.png")
        jobs = [_wait_job(client, job_id, ("done", "failed", "cancelled")) for job_id in ids]
        assert [j["state"] for j in jobs] == ["done"] * 3, jobs
        times = [Path(j["output_path"]).stat().st_mtime for j in jobs]
        assert times == sorted(times)                    # in the order they were queued
        for job_id in ids:
            page.locator(f'#wc-queue tr[data-job="{job_id}"][data-state="done"]').wait_for(timeout=10_000)
        settings = [json.loads(Path(j["output_path"]).with_suffix(".json").read_text())["prompt"] for j in jobs]
        assert settings == [f"queued clip number {n}" for n in (1, 2, 3)]


def test_killing_the_app_interrupts_the_job_and_requeue_finishes_it(browser, tmp_path: Path,
                                                                   demo_models_dir: Path) -> None:
    from gradio_client import Client
    shutil.copytree(demo_models_dir / "wan21_t2v", tmp_path / "models" / "wan21_t2v")
    config = tmp_path / "config.yaml"
    config.write_text(f"models_dir: {tmp_path / 'models'}\noutputs_dir: {tmp_path / 'outputs'}\n"
                      f"history_db: {tmp_path / 'data' / 'history.db'}\nopen_browser: false\n")
    env = {"WAN_COMPAT_CONFIG": str(config)}
    first = start_app(env=env, timeout=30)
    try:
        client = Client(first.url, verbose=False, download_files=False)
        job_id = client.predict(model=str(tmp_path / "models" / "wan21_t2v"), prompt="a clip the crash stops",
                                width=64, height=64, num_frames=9, num_inference_steps=4, seed=8,
                                api_name="/enqueue")
        deadline = time.monotonic() + 60
        while client.predict(job_id=job_id, api_name="/job")["state"] != "running":   # its worker is starting
            assert time.monotonic() < deadline, "the job never started"
            time.sleep(0.1)
        survivor = client.predict(model=str(tmp_path / "models" / "wan21_t2v"), prompt="a clip that waited",
                                  width=64, height=64, num_frames=9, num_inference_steps=2, seed=9,
                                  api_name="/enqueue")
        os.kill(first.process.pid, signal.SIGKILL)       # the app dies without a word
        first.process.wait(timeout=10)
    finally:
        first.stop()
    assert not list((tmp_path / "outputs").glob("*.mp4"))
    second = start_app(env=env, timeout=30)
    try:
        client = Client(second.url, verbose=False, download_files=False)
        job = client.predict(job_id=job_id, api_name="/job")
        assert job["state"] == "interrupted" and "Re-queue" in job["error"]
        with chromium_page(browser, 1280, 1100) as page:
            _open_generate(page, second)
            row = page.locator(f'#wc-queue tr[data-job="{job_id}"][data-state="interrupted"]')
            row.wait_for(timeout=10_000)
            # the job that was waiting in the queue survived the restart and ran
            page.locator(f'#wc-queue tr[data-job="{survivor}"][data-state="done"]').wait_for(timeout=90_000)
            page.wait_for_timeout(300)
            screenshot(page, "jobs_interrupted_after_restart.png")
            row.get_by_role("button", name="Re-queue").click()
            # the panel follows the re-queued job (not the survivor's "done") to its end
            page.locator('#wc-gen-progress .wc-progress:not([data-state="done"])').wait_for(timeout=20_000)
            page.locator('#wc-gen-progress .wc-progress[data-state="done"]').wait_for(timeout=90_000)
            page.locator(f'#wc-queue tr[data-job="{job_id}"][data-state="done"]').wait_for(timeout=10_000)
        job = _wait_job(client, job_id, ("done",), 30)
        assert Path(job["output_path"]).is_file()
    finally:
        second.stop()
