"""The Generate tab shows exactly the inputs each model's task takes, in a real browser.

One app serves the module; its models folder holds the tiny save_pretrained task models
(tests/task_models.py: T2V, TI2V-5B, VACE, Animate) and the demo Wan2.1 I2V model. Real files
are uploaded with Playwright into Debian's chromium; the note beside each input is the input
check's sentence or the file's facts. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.browser import chromium_browser, chromium_page, screenshot, start_app
from tests.test_tasks import noise_image, noise_video, task_models  # noqa: F401 - the session fixture

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

SLOTS = ("image", "last_image", "video", "mask", "reference_images", "pose_video", "face_video",
         "background_video", "mask_video")
OPTIONS = ("strength", "conditioning_scale", "mode", "segment_frame_length")


def _id(field: str) -> str:
    return "#wc-gen-" + field.replace("_", "-")


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, task_models: dict, demo_models_dir: Path) -> Path:  # noqa: F811
    home = tmp_path_factory.mktemp("task_inputs_app")
    for folder in task_models.values():
        shutil.copytree(folder, home / "models" / folder.name)
    shutil.copytree(demo_models_dir / "wan21_i2v", home / "models" / "wan21_i2v")
    (home / "config.yaml").write_text(
        f"models_dir: {home / 'models'}\noutputs_dir: {home / 'outputs'}\n"
        f"history_db: {home / 'data' / 'history.db'}\nopen_browser: false\n")
    files = home / "files"
    files.mkdir()
    noise_image(files / "start.png", 96, 64)
    noise_video(files / "pose.mp4", 9)
    (files / "notes.mp4").write_text("these are my notes, not a video\n" * 20)
    return home


@pytest.fixture(scope="module")
def page(home: Path):
    server = start_app(env={"WAN_COMPAT_CONFIG": str(home / "config.yaml")}, timeout=30)
    try:
        with chromium_browser() as browser, chromium_page(browser, 1280, 1400) as page:
            page.goto(server.url)
            page.get_by_role("tab", name="Generate").click()
            page.locator("#wc-gen-path").wait_for()
            yield page
    finally:
        server.stop()


def _choose(page, folder: Path, expected: set[str]) -> None:
    """Type the model's path, press Enter, and wait until exactly ``expected`` inputs show."""
    box = page.locator("#wc-gen-path textarea, #wc-gen-path input").first
    box.fill(str(folder))
    box.press("Enter")
    _wait_shown(page, expected)


def _shown(page) -> set[str]:
    slots = {f for f in SLOTS if page.locator(_id(f) + "-slot").is_visible()}
    return slots | {o for o in OPTIONS if page.locator(_id(o)).is_visible()}


def _wait_shown(page, expected: set[str], timeout_s: float = 20) -> None:
    for _ in range(int(timeout_s * 10)):
        if _shown(page) == expected:
            return
        page.wait_for_timeout(100)
    assert _shown(page) == expected


def test_each_task_shows_its_inputs_with_previews_and_sentences(page, home: Path) -> None:
    models, files = home / "models", home / "files"
    _choose(page, models / "tiny_t2v", {"video", "strength"})              # text-to-video: video-to-video
    _choose(page, models / "tiny_ti2v", {"image"})
    page.locator(_id("image") + " input[type=file]").set_input_files(str(files / "start.png"))
    expect(page.locator(_id("image") + "-note")).to_contain_text("96x64", timeout=15_000)
    expect(page.locator(_id("image") + "-preview img")).to_be_visible()     # the thumbnail
    page.wait_for_timeout(400)
    screenshot(page, "generate_ti2v_inputs.png")
    _choose(page, models / "wan21_i2v", {"image", "last_image"})
    _choose(page, models / "tiny_vace", {"video", "mask", "reference_images", "conditioning_scale"})
    # a text file named .mp4: the input check's sentence beside the input, nothing loaded
    page.locator(_id("video") + " input[type=file]").set_input_files(str(files / "notes.mp4"))
    note = page.locator(_id("video") + "-note")
    expect(note).to_contain_text("notes.mp4 is not a readable video", timeout=15_000)
    expect(note).to_contain_text("Use an MP4, WebM, MOV or GIF video")
    assert page.locator(_id("video") + "-note .wc-bad").count() == 1
    animate = {"image", "pose_video", "face_video", "mode", "segment_frame_length"}
    _choose(page, models / "tiny_animate", animate)
    page.locator(_id("pose_video") + " input[type=file]").set_input_files(str(files / "pose.mp4"))
    expect(page.locator(_id("pose_video") + "-note")).to_contain_text("9 frames · 64x64", timeout=15_000)
    expect(page.locator(_id("pose_video") + " video")).to_be_visible()      # the player
    page.locator("#wc-gen-mode").get_by_text("replace", exact=True).click()
    _wait_shown(page, animate | {"background_video", "mask_video"})
    page.wait_for_timeout(400)
    screenshot(page, "generate_animate_replace.png")
    page.locator("#wc-gen-mode").get_by_text("animate", exact=True).click()
    _wait_shown(page, animate)
    expect(page.locator(_id("pose_video") + "-note")).to_contain_text("9 frames")   # kept across the toggle
