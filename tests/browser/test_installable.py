"""The installable phone page (issue 16, part 1) in Debian's Chromium.

The manifest is linked and valid, its icons load with the sizes it declares, the service
worker (web/src/sw.js, served as /sw.js) registers with the page's root as its scope and
controls the page, and once the page server is stopped a reload still shows the page from the
worker's cache. A new build (another shell version) replaces the cache and deletes the old one.
An unpaired app (a Home Screen app has its own storage) is paired by pasting the link.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import struct
import time
from pathlib import Path
from typing import Any

from harness.phonesite import PHONE, PhoneSite
from playwright.async_api import Page

from device.phone import TEST_PAGES, WebServer

WEB_ROOT = Path(__file__).resolve().parents[2] / "web"
TIMEOUT_MS = 15000


async def open_controlled(page: Page, url: str) -> None:
    """Open ``url`` and wait until the service worker controls the page."""
    await page.goto(url)
    await page.wait_for_function(
        "() => navigator.serviceWorker && navigator.serviceWorker.controller !== null",
        timeout=TIMEOUT_MS,
    )


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


async def test_manifest_is_linked_valid_and_its_icons_load(
    page: Page, web_server: WebServer
) -> None:
    """The page links a manifest Chromium can install from: name, scope, standalone, icons."""
    await page.goto(f"{web_server.url}/")
    href = await page.eval_on_selector("link[rel=manifest]", "link => link.href")
    assert href == f"{web_server.url}/manifest.webmanifest"
    response = await page.request.get(href)
    assert response.status == 200
    assert response.headers["content-type"] == "application/manifest+json"
    manifest: dict[str, Any] = json.loads(await response.text())
    assert manifest["name"] and manifest["short_name"]
    assert manifest["start_url"] == manifest["scope"] == "./"
    assert manifest["display"] == "standalone"
    assert manifest["theme_color"].startswith("#") and manifest["background_color"].startswith("#")
    purposes: dict[str, set[str]] = {}
    for icon in manifest["icons"]:
        icon_response = await page.request.get(f"{web_server.url}/{icon['src']}")
        assert icon_response.status == 200, icon["src"]
        assert icon_response.headers["content-type"] == icon["type"] == "image/png"
        width, height = png_size(await icon_response.body())
        assert f"{width}x{height}" == icon["sizes"], icon["src"]
        purposes.setdefault(icon["purpose"], set()).add(icon["sizes"])
    assert purposes == {"any": {"192x192", "512x512"}, "maskable": {"512x512"}}

    # what Chromium itself reads from the page: the manifest it parsed, without errors
    cdp = await page.context.new_cdp_session(page)
    parsed = await cdp.send("Page.getAppManifest")
    assert parsed["url"] == href
    assert not parsed["errors"], parsed["errors"]
    apple = await page.eval_on_selector("link[rel=apple-touch-icon]", "link => link.href")
    apple_response = await page.request.get(apple)
    assert apple_response.status == 200 and png_size(await apple_response.body()) == (180, 180)
    for name in ("apple-mobile-web-app-capable", "apple-mobile-web-app-title", "theme-color"):
        assert await page.locator(f"meta[name={name}]").count() == 1, name


async def test_service_worker_is_served_from_the_root_without_caching(
    web_server: WebServer,
) -> None:
    """/sw.js: JavaScript, revalidated on every update check (Cache-Control: no-cache)."""
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", int(web_server.url.rsplit(":", 1)[1])
    )
    writer.write(b"GET /sw.js HTTP/1.1\r\nHost: unit\r\nConnection: close\r\n\r\n")
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "HTTP/1.1 200 OK"
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    assert headers["content-type"] == "text/javascript"
    assert headers["cache-control"] == "no-cache"
    assert b"callbox-shell-" in body


async def test_worker_controls_the_page_and_the_shell_opens_offline(page: Page) -> None:
    """Once the worker is active, the page opens from its cache with the server stopped."""
    server = WebServer(WEB_ROOT, extra_files=TEST_PAGES)  # its own server, to be stopped
    try:
        await open_controlled(page, f"{server.url}/")
        scope = await page.evaluate(
            "async () => (await navigator.serviceWorker.getRegistration()).scope"
        )
        assert scope == f"{server.url}/"
        cached: dict[str, Any] = await page.evaluate(
            """async () => {
                const names = await caches.keys();
                const cache = await caches.open(names[0]);
                const paths = (await cache.keys()).map((r) => new URL(r.url).pathname);
                return { caches: names.length, paths };
            }"""
        )
        assert cached["caches"] == 1
        assert set(cached["paths"]) >= {
            "/",
            "/index.html",
            "/style.css",
            "/manifest.webmanifest",
            "/dist/main.js",
            "/icons/icon-192.png",
            "/icons/icon-maskable-512.png",
        }
    finally:
        await asyncio.to_thread(server.close)

    # the server is gone: the reload is served by the worker, and the page's code runs
    await page.reload()
    await page.wait_for_function("() => window.callbox !== undefined", timeout=TIMEOUT_MS)
    assert await page.title() == "callbox phone"
    assert await page.locator("#push h2").inner_text() == "Ring this phone when the page is closed"
    assert await page.evaluate("() => navigator.serviceWorker.controller !== null")
    icon_ok = await page.evaluate(
        "async () => (await fetch('/icons/icon-192.png')).status"  # from the cache as well
    )
    assert icon_ok == 200


def copy_built_page(directory: Path) -> Path:
    """The built page's files (what ``callbox web`` serves) copied under ``directory``."""
    root = directory / "web"
    for name in ("index.html", "style.css", "manifest.webmanifest", "dist/main.js", "dist/sw.js"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(WEB_ROOT / name, root / name)
    shutil.copytree(WEB_ROOT / "icons", root / "icons", ignore=shutil.ignore_patterns("*.py"))
    return root


async def test_a_new_build_replaces_the_cached_shell(page: Page, tmp_path: Path) -> None:
    """Another shell version makes another worker: it caches anew and deletes the old cache."""
    root = await asyncio.to_thread(copy_built_page, tmp_path)
    server = WebServer(root)
    try:
        await open_controlled(page, f"{server.url}/")
        old = await page.evaluate("() => caches.keys()")
        assert len(old) == 1 and old[0].startswith("callbox-shell-")
        worker = (root / "dist" / "sw.js").read_text()
        version = old[0].removeprefix("callbox-shell-")
        assert version in worker
        (root / "dist" / "sw.js").write_text(worker.replace(version, "0123456789abcdef"))
        await page.evaluate(
            "async () => (await navigator.serviceWorker.getRegistration()).update()"
        )
        deadline = time.monotonic() + TIMEOUT_MS / 1000
        while await page.evaluate("() => caches.keys()") != ["callbox-shell-0123456789abcdef"]:
            assert time.monotonic() < deadline, await page.evaluate("() => caches.keys()")
            await asyncio.sleep(0.05)
    finally:
        await asyncio.to_thread(server.close)


async def test_an_unpaired_app_takes_the_pasted_pairing_link(
    page: Page, phone_site: PhoneSite, web_server: WebServer
) -> None:
    """An unpaired app has no address bar: the pairing link pasted into the page pairs it.

    A Home Screen app on iOS starts unpaired: it keeps its storage apart from Safari's.
    """
    await page.goto(f"{web_server.url}/")
    await page.wait_for_selector("#pair-form", state="visible", timeout=TIMEOUT_MS)
    await page.fill("#pair-link", "https://flat1.local:8443/")
    await page.click("#pair-submit")
    await page.wait_for_function(
        "() => window.callbox.snapshot().error.includes('not a pairing link')", timeout=TIMEOUT_MS
    )
    await page.fill("#pair-link", phone_site.pairing_url)
    await page.click("#pair-submit")
    await page.wait_for_function(
        "() => window.callbox && window.callbox.snapshot().connection === 'online'",
        timeout=TIMEOUT_MS,
    )
    assert (await page.evaluate("() => window.callbox.snapshot()"))["address"] == PHONE
    assert page.url == f"{web_server.url}/", "the link's secrets leave the address bar"
    assert not await page.is_visible("#pair-form")
