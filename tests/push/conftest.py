"""Fixtures of the Web Push tests: the site key, the local push service, the site."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from harness.push_endpoint import PushEndpoint
from harness.push_site import PushSite, start_push_site, vapid_on_disk

from services.push.vapid import VapidKey


@pytest.fixture
async def site_key(tmp_path: Path) -> tuple[VapidKey, Path]:
    """The site's VAPID key and its file."""
    return await vapid_on_disk(tmp_path)


@pytest.fixture
async def push_service(site_key: tuple[VapidKey, Path]) -> AsyncIterator[PushEndpoint]:
    """The local push service, expecting the site's key."""
    endpoint = PushEndpoint(site_key[0].application_server_key)
    await endpoint.start()
    yield endpoint
    await endpoint.close()


@pytest.fixture
async def push_site(
    tmp_path: Path, site_key: tuple[VapidKey, Path], push_service: PushEndpoint
) -> AsyncIterator[PushSite]:
    """Door (Web Push on, 1 s per push), indoor unit, phone and two outsiders, online."""
    site = await start_push_site(tmp_path / "site", site_key[1], push_service, timeout_s=1.0)
    yield site
    await site.close()
