"""Fixtures for the browser tests: Chromium via playwright, the page of ``web/``, a door site.

Debian's Chromium driven by playwright, the page of ``web/`` served on loopback, and a site with a
simulated door station (tests/harness/phonesite.py).

Every browser test needs a network namespace with loopback only (``make test`` runs pytest
under ``unshare -rn``), Debian's ``chromium``, Python playwright and the built page
(``web/dist``, made by ``make test`` through npm). Under ``make test`` a missing one fails.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from harness.phonesite import (
    PhoneSite,
    chromium_path,
    only_loopback,
    open_browser,
    start_phone_site,
)
from playwright.async_api import ConsoleMessage, Page, async_playwright
from support import need

from device.phone import TEST_PAGES, WebServer

WEB_ROOT = Path(__file__).resolve().parents[2] / "web"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output" / "browser"

_log = logging.getLogger("browser")


@pytest.fixture(scope="session")
def web_server() -> Iterator[WebServer]:
    """The page of web/ over HTTP on 127.0.0.1 (a secure context: loopback)."""
    need((WEB_ROOT / "dist" / "main.js").is_file(), "the built page web/dist/main.js")
    server = WebServer(WEB_ROOT, extra_files=TEST_PAGES)  # the page and the vectors runner
    yield server
    server.close()


@pytest.fixture
async def page(tmp_path: Path) -> AsyncIterator[Page]:
    """A page in a fresh Chromium profile; its console goes to the test's log."""
    need(only_loopback(), "a network namespace with loopback only (unshare -rn)")
    need(await asyncio.to_thread(chromium_path) is not None, "Debian's chromium")
    async with async_playwright() as playwright:
        context = await open_browser(playwright, tmp_path / "profile")
        page = context.pages[0] if context.pages else await context.new_page()

        def console(message: ConsoleMessage) -> None:
            _log.info("page %s: %s", message.type, message.text)

        page.on("console", console)
        page.on("pageerror", lambda error: _log.error("page error: %s", error))
        try:
            yield page
        finally:
            await context.close()


@pytest.fixture
async def phone_site(
    tmp_path: Path, web_server: WebServer, request: pytest.FixtureRequest
) -> AsyncIterator[PhoneSite]:
    """The broker with its websockets listener and a door station's keys; see PhoneSite."""
    site = await start_phone_site(tmp_path / "site", web_server.url)
    site.screenshot_dir = SCREENSHOTS / request.node.name
    site.screenshot_dir.mkdir(parents=True, exist_ok=True)
    try:
        yield site
    finally:
        await site.close()
