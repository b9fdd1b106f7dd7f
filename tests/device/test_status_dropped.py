"""`callbox status` counts the messages the running daemon dropped, by reason.

The daemon (the door) is a real process on a real mosquitto; a forgery is published into its
inbox from another broker account, as anyone on the site's broker can.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
import pytest
from daemon_helpers import DaemonSite, callbox, start_daemon_site

from services.signaling.envelope import seal
from services.signaling.identity import Identity
from services.signaling.topics import SiteTopics

TIMEOUT_S = 10.0


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[DaemonSite]:
    site = await start_daemon_site(tmp_path)
    yield site
    await site.close()


async def status(site: DaemonSite) -> dict[str, object]:
    result = await callbox("status", "--json", "--control", site.control_path)
    assert result.code == 0, result.stderr
    parsed: dict[str, object] = json.loads(result.stdout)
    return parsed


async def test_status_shows_a_dropped_forgery(site: DaemonSite) -> None:
    await site.start_daemon()
    assert (await status(site))["dropped_messages"] == {}
    text = await callbox("status", "--control", site.control_path)
    assert "dropped messages: none" in text.stdout

    forged = seal(
        Identity.generate(),
        type="hangup",
        call_id="any-call",
        sender="flat",
        recipient="door",
        recipient_keys=Identity.generate().public_keys,
        body={"reason": "user"},
    )
    async with aiomqtt.Client(
        site.settings.host,
        site.settings.port,
        username="flat",
        password=site.files.passwords["flat"],
        protocol=aiomqtt.ProtocolVersion.V5,
        timeout=5,
    ) as client:
        await client.publish(SiteTopics("test").inbox("door"), forged, qos=1)

    deadline = time.monotonic() + TIMEOUT_S  # the count has no event to wait on from outside
    while (await status(site))["dropped_messages"] != {"unknown_sender": 1}:
        assert time.monotonic() < deadline, "the forgery never showed in callbox status"
        await asyncio.sleep(0.05)
    text = await callbox("status", "--control", site.control_path)
    assert "dropped messages: unknown_sender 1" in text.stdout
