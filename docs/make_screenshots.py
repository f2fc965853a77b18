#!/usr/bin/env python3
"""Make the README's screenshots of the four tabs, on demand (nothing of yours is touched).

It writes a random-weight demo model and a broken copy of it into a temporary folder, starts
the app on them with a temporary config.yaml (its own history database), drives Debian's
chromium through each tab as a user would (check the broken copy, press Fix under its headline,
pick a model to generate with, open the history) and saves one PNG per tab under ``docs/screenshots/``.

Usage::

    .venv/bin/python docs/make_screenshots.py            # docs/screenshots/*.png
    .venv/bin/python docs/make_screenshots.py --out /tmp/shots

Needs what the browser tests need (``requirements-test.txt`` and ``/usr/bin/chromium``).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.browser import browser_skip_reason, chromium_page, start_app  # noqa: E402

WIDTH, HEIGHT = 1280, 900


def _write_models(home: Path) -> tuple[Path, Path]:
    """A demo model and a copy without its model_index.json (what Fix repairs), under home/models."""
    from core.demo import write_demo_model

    models = home / "models"
    model = write_demo_model("wan21_t2v", models)
    broken = models / f"{model.name}-broken"
    shutil.copytree(model, broken)
    (broken / "model_index.json").unlink()
    return model, broken


def _save(page: object, out: Path, name: str) -> Path:
    page.wait_for_timeout(600)  # type: ignore[attr-defined]  # Gradio's fade-ins
    path = out / name
    page.screenshot(path=str(path), full_page=False)  # type: ignore[attr-defined]
    from PIL import Image

    # 64 colours are plenty for a flat UI and keep each PNG near 30 KB in git
    Image.open(path).convert("RGB").quantize(colors=64).save(path, optimize=True)
    return path


def make_screenshots(out: Path) -> list[Path]:
    """Start the app on demo models and save one screenshot per tab into ``out``; returns the paths."""
    out.mkdir(parents=True, exist_ok=True)
    saved: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="wan-compat-shots-") as tmp:
        home = Path(tmp)
        model, broken = _write_models(home)
        config = home / "config.yaml"
        config.write_text(f"models_dir: {home / 'models'}\noutputs_dir: {home / 'outputs'}\n"
                          f"history_db: {home / 'history.db'}\nopen_browser: false\n")
        app = start_app(env={"WAN_COMPAT_CONFIG": str(config)}, timeout=60)
        try:
            with chromium_page(None, WIDTH, HEIGHT) as page:
                page.goto(app.url)
                page.locator("#wc-path").wait_for()
                page.get_by_label("Model path").fill(str(broken))
                page.get_by_role("button", name="Check", exact=True).click()
                page.get_by_text("1 problem to fix").first.wait_for(timeout=30_000)
                saved.append(_save(page, out, "model_check.png"))

                page.locator("#wc-report .wc-offer-button").click()          # "Fix", under the headline
                page.locator("#wc-fix-plan-view").get_by_text("1 change to make in place").wait_for(timeout=30_000)
                saved.append(_save(page, out, "fix.png"))

                page.get_by_role("tab", name="Generate").click()
                typed = page.get_by_placeholder("type the path of a model folder", exact=False)
                typed.fill(str(model))
                typed.press("Enter")
                page.get_by_placeholder("What the video shows", exact=False).fill(
                    "A red fox running through fresh snow, morning light")
                page.wait_for_timeout(2500)
                saved.append(_save(page, out, "generate.png"))

                page.get_by_role("tab", name="Performance").click()
                page.wait_for_timeout(1500)
                saved.append(_save(page, out, "performance.png"))
        finally:
            app.stop()
    return saved


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args()
    reason = browser_skip_reason()
    if reason:
        print(f"Cannot make screenshots: {reason}.", file=sys.stderr)
        return 2
    for path in make_screenshots(args.out):
        print(f"{path} ({path.stat().st_size / 1e3:.0f} KB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
