"""Real headless Chromium for the web interface's tests (tests/test_web*.py).

Debian's ``chromium`` driven by Playwright's Python package (async API, on the test's own
event loop, where the lab runs): never ``playwright install``. Without chromium the tests
skip, or fail when ``MAILFLOW_REQUIRE_TOOLS=1``. With ``MAILFLOW_SCREENSHOTS=DIR`` set,
``shoot`` saves a PNG of the page there (docs/web-ui.md shows them).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright

from mailflow.runtime.lab import Lab
from tests.conftest import require_tool

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    executable = require_tool("chromium")
    async with async_playwright() as driver:
        launched = await driver.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield launched
        await launched.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1000, "height": 640})
    opened = await context.new_page()
    yield opened
    await context.close()


async def login(page: Page, lab: Lab) -> None:
    await page.goto(f"{lab.http_url}/login")
    await page.get_by_label("API token").fill(lab.token)
    await page.get_by_role("button", name="Log in").click()
    await page.get_by_role("button", name="Log out").wait_for()


async def shoot(page: Page, name: str) -> None:
    """A screenshot of the page for the docs, when MAILFLOW_SCREENSHOTS names a folder."""
    folder = os.environ.get("MAILFLOW_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=False)
