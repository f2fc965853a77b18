"""Test helpers: start the app in a subprocess, and drive it with Debian's chromium.

Usage in a test module::

    from tests.browser import start_app, chromium_page

    @pytest.fixture(scope="session")
    def app_server():
        server = start_app(["--config", str(cfg)])   # a free port, --no-browser, waits until served
        yield server
        server.stop()

    def test_page(app_server):
        with chromium_page() as page:                 # skips when chromium is unavailable
            page.goto(app_server.url)

The browser is Debian's ``/usr/bin/chromium`` (``apt-get install chromium``), never one
downloaded by ``playwright install``. Set ``WAN_COMPAT_NO_BROWSER=1`` to skip browser tests.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
NO_BROWSER_ENV = "WAN_COMPAT_NO_BROWSER"

# No proxy for our own server: urllib, httpx (gradio_client) and chromium all honour these.
_LOCAL_NO_PROXY = "127.0.0.1,localhost,::1"


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def app_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for an app subprocess: offline, no analytics, no proxy for localhost."""
    env = dict(os.environ)
    # The apps the tests start each have a temp config with its own history database; the
    # session's throwaway one (tests/conftest.py) would outrank it.
    env.pop("WAN_COMPAT_HISTORY_DB", None)
    env.update({"HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False",
                "PYTHONUNBUFFERED": "1", "NO_PROXY": _LOCAL_NO_PROXY, "no_proxy": _LOCAL_NO_PROXY})
    env.update(extra or {})
    return env


def run_app(args: Sequence[str], env: dict[str, str] | None = None,
            timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Run ``python app.py ARGS`` to completion (for start-up refusals); returns the result."""
    return subprocess.run([sys.executable, str(ROOT / "app.py"), *args], cwd=ROOT, env=app_env(env),
                          capture_output=True, text=True, timeout=timeout)


@dataclass
class RunningApp:
    """An app started by :func:`start_app`; ``stop()`` ends it and deletes its log file."""

    process: subprocess.Popen[bytes]
    url: str
    port: int
    log_path: Path
    seconds_to_serve: float
    _log_file: Any = field(repr=False, default=None)

    def log(self) -> str:
        """Everything the app printed so far (stdout and stderr)."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
            self.log_path.unlink(missing_ok=True)


def _get(url: str, timeout: float = 1.0) -> int:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=timeout) as response:
        return response.status


def start_app(args: Sequence[str] = (), env: dict[str, str] | None = None, timeout: float = 10.0,
              port: int | None = None) -> RunningApp:
    """Start ``python app.py --no-browser --port P ARGS`` and wait until its page is served.

    Raises RuntimeError with the app's output when it exits early or is not serving within
    ``timeout`` seconds.
    """
    port = port or free_port()
    log_file = tempfile.NamedTemporaryFile("wb", prefix="wan-compat-app-", suffix=".log", delete=False)
    cmd = [sys.executable, str(ROOT / "app.py"), "--no-browser", "--port", str(port), *args]
    start = time.perf_counter()
    process = subprocess.Popen(cmd, cwd=ROOT, env=app_env(env), stdout=log_file,
                               stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    server = RunningApp(process, url, port, Path(log_file.name), 0.0, log_file)
    while True:
        if process.poll() is not None:
            output = server.log()
            server.stop()
            raise RuntimeError(f"The app exited with code {process.returncode} before serving:\n{output}")
        try:
            if _get(url) == 200:
                server.seconds_to_serve = time.perf_counter() - start
                return server
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        if time.perf_counter() - start > timeout:
            output = server.log()
            server.stop()
            raise RuntimeError(f"The app did not serve {url} within {timeout:g} s:\n{output}")
        time.sleep(0.05)


def browser_skip_reason() -> str | None:
    """Why browser tests cannot run here, or None when they can."""
    if os.environ.get(NO_BROWSER_ENV):
        return f"browser tests are turned off ({NO_BROWSER_ENV} is set)"
    if not Path(CHROMIUM).exists():
        return (f"{CHROMIUM} is missing; install Debian's chromium (apt-get install chromium) "
                "to run the browser tests")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -r requirements-test.txt)"
    return None


def launch_chromium(playwright: Any, **kwargs: Any) -> Any:
    """Launch Debian's chromium headless through Playwright; skips the test when it cannot."""
    reason = browser_skip_reason()
    if reason:
        pytest.skip(reason)
    os.environ.setdefault("NO_PROXY", _LOCAL_NO_PROXY)
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                      args=CHROMIUM_ARGS, **kwargs)


_SHARED: dict[str, Any] = {"playwright": None, "browser": None, "users": 0}


@contextmanager
def chromium_browser() -> Iterator[Any]:
    """A Playwright Browser on Debian's chromium (skips when unavailable).

    One browser is shared by everyone who holds it at the same time (Playwright's sync API
    allows one instance per thread, and test modules with their own fixtures overlap); it is
    closed when the last holder lets go.
    """
    reason = browser_skip_reason()
    if reason:
        pytest.skip(reason)
    if _SHARED["browser"] is None:
        from playwright.sync_api import sync_playwright

        pw = sync_playwright().start()
        try:
            _SHARED["browser"] = launch_chromium(pw)
        except BaseException:
            pw.stop()
            raise
        _SHARED["playwright"] = pw
    _SHARED["users"] += 1
    try:
        yield _SHARED["browser"]
    finally:
        _SHARED["users"] -= 1
        if _SHARED["users"] == 0:
            browser, pw = _SHARED["browser"], _SHARED["playwright"]
            _SHARED.update(browser=None, playwright=None)
            try:
                browser.close()
            finally:
                pw.stop()


@contextmanager
def chromium_page(browser: Any = None, width: int = 1280, height: int = 900) -> Iterator[Any]:
    """A fresh page (its own context) in ``browser``, or in a browser started for it."""
    if browser is None:
        with chromium_browser() as own:
            with chromium_page(own, width, height) as page:
                yield page
        return
    context = browser.new_context(viewport={"width": width, "height": height})
    try:
        yield context.new_page()
    finally:
        context.close()


def screenshot(page: Any, name: str, full_page: bool = True) -> Path:
    """Save a PNG under test-artifacts/ and return its path."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=full_page)
    return path
