"""A real headless Chromium (Debian's `chromium` + `chromium-driver`) driven by Selenium.

    async def test_x(browser: Browser) -> None:
        await browser.get(f"http://127.0.0.1:{port}/#plant")
        await browser.until("value shown", lambda d: d.find_element(...).text == "1,250")

Selenium is blocking, and the agent under test runs on the test's own event loop, so every call
goes through a worker thread (`Browser.call`): a browser call must never stop the agent it
watches. Each test gets a fresh profile directory and a browser that reaches nothing but the
loopback addresses it is sent to (no background networking, no component updates, no sync).
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.support.waiting import eventually

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-default-apps",
    "--disable-extensions",
    "--window-size=1440,900",
)

T = TypeVar("T")


class Browser:
    """The WebDriver session, with async wrappers that run it off the event loop."""

    def __init__(self, driver: Any) -> None:
        self.driver = driver

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(fn, *args)

    async def get(self, url: str) -> None:
        await self.call(self.driver.get, url)

    async def script(self, source: str, *args: Any) -> Any:
        return await self.call(self.driver.execute_script, source, *args)

    async def text(self, css: str) -> str | None:
        """The text of the first element matching `css`, or None when there is none."""
        return await self.script(  # type: ignore[no-any-return]
            "const e = document.querySelector(arguments[0]); return e ? e.textContent : null;", css
        )

    async def until(self, what: str, check: Callable[[], Any], timeout_s: float = 10.0) -> None:
        """Wait until the async `check()` is truthy (polled every 0.1 s)."""
        await eventually(check, timeout_s, what, interval_s=0.1)

    async def console_errors(self) -> list[dict[str, Any]]:
        entries = await self.call(self.driver.get_log, "browser")
        return [e for e in entries if e.get("level") == "SEVERE"]

    async def screenshot(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        await self.call(self.driver.save_screenshot, str(path))


def _start(profile: Path) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[Browser]:
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        pytest.fail("needs chromium and chromium-driver: apt-get install chromium chromium-driver")
    driver = await asyncio.to_thread(_start, tmp_path / "chromium-profile")
    try:
        yield Browser(driver)
    finally:
        await asyncio.to_thread(driver.quit)


SHOTS = os.environ.get("WEBVIEW_SCREENSHOTS")


async def shot(browser: Browser, name: str, settle_s: float = 1.0, max_h: int = 2400) -> None:
    """With WEBVIEW_SCREENSHOTS set: a full-height picture of the page for the docs, after
    `settle_s` (charts fill their trends meanwhile)."""
    if not SHOTS:
        return
    await asyncio.sleep(settle_s)
    height = await browser.script("return document.documentElement.scrollHeight")
    await browser.call(browser.driver.set_window_size, 1440, min(max(int(height), 900), max_h))
    await asyncio.sleep(0.5)
    await browser.screenshot(Path(SHOTS) / f"web-{name}.png")
    await browser.call(browser.driver.set_window_size, 1440, 900)
