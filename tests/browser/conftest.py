"""Fixtures for the browser tests: Chromium via playwright, the page of ``web/``, a door site.

Debian's Chromium driven by playwright, the page of ``web/`` served on loopback, and a site with a
simulated door station (tests/harness/phonesite.py).

Every browser test needs a network namespace with loopback only (``make test`` runs pytest
under ``unshare -rn``), Debian's ``chromium``, Python playwright and the built page
(``web/dist``, made by ``make test`` through npm). Under ``make test`` a missing one fails.

One Chromium serves every test of a session (of a pytest-xdist worker): launching it is most
of a short test's time. Each test gets a browser context of its own (:func:`new_phone`), a
fresh profile that shares no storage, service worker, permission or notification with the
others. The browser's connection belongs to the event loop it was opened on, so every test
here runs on the session's loop (:func:`pytest_collection_modifyitems`), and so must every
async fixture a test here requests: declare it with ``@pytest_asyncio.fixture(
loop_scope="session")`` (its value is still made anew for each test).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from harness.phonesite import (
    PhoneSite,
    chromium_path,
    launch_browser,
    new_phone,
    only_loopback,
    start_phone_site,
)
from playwright.async_api import Browser, ConsoleMessage, Page, async_playwright
from support import need

from device.phone import TEST_PAGES, WebServer
from device.simulator import Simulator, start_simulator

WEB_ROOT = Path(__file__).resolve().parents[2] / "web"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output" / "browser"

_log = logging.getLogger("browser")
HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run every async test of this directory on the session's event loop (see above)."""
    on_session_loop = pytest.mark.asyncio(loop_scope="session")
    for item in items:
        if HERE in item.path.parents and pytest_asyncio.is_async_test(item):
            item.add_marker(on_session_loop, append=False)


@pytest.fixture(scope="session")
def web_server() -> Iterator[WebServer]:
    """The page of web/ over HTTP on 127.0.0.1 (a secure context: loopback)."""
    need((WEB_ROOT / "dist" / "main.js").is_file(), "the built page web/dist/main.js")
    server = WebServer(WEB_ROOT, extra_files=TEST_PAGES)  # the page and the vectors runner
    yield server
    server.close()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser() -> AsyncIterator[Browser]:
    """Headless Chromium for the whole session; tests open their pages in their own contexts."""
    need(only_loopback(), "a network namespace with loopback only (unshare -rn)")
    need(await asyncio.to_thread(chromium_path) is not None, "Debian's chromium")
    async with async_playwright() as playwright:
        browser = await launch_browser(playwright)
        try:
            yield browser
        finally:
            await browser.close()


@pytest_asyncio.fixture(loop_scope="session")
async def page(browser: Browser) -> AsyncIterator[Page]:
    """A page in a fresh Chromium profile; its console goes to the test's log."""
    need(only_loopback(), "a network namespace with loopback only (unshare -rn)")
    context = await new_phone(browser)
    try:
        page = await context.new_page()

        def console(message: ConsoleMessage) -> None:
            _log.info("page %s: %s", message.type, message.text)

        page.on("console", console)
        page.on("pageerror", lambda error: _log.error("page error: %s", error))
        yield page
    finally:
        await context.close()


@pytest_asyncio.fixture(loop_scope="session")
async def simulator(tmp_path: Path) -> AsyncIterator[Simulator]:
    """The interactive simulator of ``callbox demo`` (tests/conftest.py's, on this loop)."""
    sim = await start_simulator(tmp_path / "sim")
    try:
        yield sim
    finally:
        await sim.close()


@pytest_asyncio.fixture(loop_scope="session")
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
