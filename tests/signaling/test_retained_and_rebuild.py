"""Retained inbox messages and replays across an endpoint rebuild (issue 15, finding 5).

Anyone with a broker login of the site may publish into an inbox, with the retain flag too
(mosquitto 2.0 has no per-topic retain control). The units here are the daemon's own apps
(``DeviceApp``, the composition root of ``callbox run``) on the real mosquitto of the
generated configuration; ``config set name`` rebuilds a unit's endpoint with a new broker
login, which is when a retained message or a replay used to ring it again.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiomqtt
import pytest
from signaling_harness import QUIET_WINDOW_S
from support import TIMEOUT, place_call, props_for

from device.config import ConfigStore, load_config
from device.daemon import DeviceApp
from device.simulator import IntercomSite, Unit, start_intercom_site
from services.callapi import CallStatus
from services.signaling.base import Inbound
from services.signaling.broker import MosquittoBroker
from services.signaling.errors import RejectReason
from services.signaling.topics import SiteTopics


@pytest.fixture
async def intercom(tmp_path: Path) -> AsyncIterator[IntercomSite]:
    """A door and a flat (the daemon's apps), and mallory: any broker login of the site."""
    site = await start_intercom_site(
        tmp_path, [Unit("door", "door"), Unit("flat", "indoor")], accounts=("mallory",)
    )
    yield site
    await site.close()


def client(site: IntercomSite, username: str) -> aiomqtt.Client:
    """A bare MQTT 5 client on the site's broker logged in as ``username``."""
    return aiomqtt.Client(
        site.settings.host,
        site.settings.port,
        username=username,
        password=site.broker.files.passwords[username],
        protocol=aiomqtt.ProtocolVersion.V5,
        timeout=5,
    )


async def wait_until(predicate: Callable[[], object], what: str) -> None:
    """Poll ``predicate`` (counters and call state, which have no event) until it holds."""
    deadline = time.monotonic() + TIMEOUT
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def captured_invite(site: IntercomSite) -> bytes:
    """The door rings the flat; the exact bytes of its invite; the flat declines."""
    flat, door = site["flat"].endpoint, site["door"].endpoint
    assert flat is not None and door is not None
    transport = flat.signaling.transport
    deliver = transport.on_message
    assert deliver is not None
    invites: list[bytes] = []

    def record(inbound: Inbound) -> None:
        if inbound.kind == "inbox" and json.loads(inbound.payload)["type"] == "invite":
            invites.append(inbound.payload)
        deliver(inbound)

    transport.on_message = record
    call, progress = await place_call(door.calls, props_for(door.calls, "flat", video=False))
    await progress.wait_status(CallStatus.RINGING)
    ringing = flat.calls.active_call
    assert ringing is not None
    await ringing.hangup()  # declined
    await asyncio.wait_for(call.ended.wait(), TIMEOUT)
    await wait_until(lambda: flat.calls.active_call is None, "the flat to stop ringing")
    transport.on_message = deliver
    assert len(invites) == 1
    return invites[0]


async def rebuild(site: IntercomSite, address: str) -> DeviceApp:
    """``callbox config set name ...`` on ``address``: a new endpoint and broker login."""
    app = site[address]
    old = app.endpoint
    store = ConfigStore(site.config_paths[address])
    await asyncio.to_thread(store.set, "name", json.dumps(f"Renamed {os.urandom(2).hex()}"))
    await app.apply(await asyncio.to_thread(load_config, store.path))
    await wait_until(
        lambda: app.endpoint is not None and app.endpoint is not old and not app.pending_restart,
        f"{address}'s endpoint to be rebuilt",
    )
    assert app.endpoint is not None
    await app.endpoint.signaling.transport.connected.wait()
    return app


async def test_a_retained_invite_does_not_ring_a_rebuilt_unit_and_is_cleared(
    intercom: IntercomSite,
) -> None:
    invite = await captured_invite(intercom)
    inbox = SiteTopics("test").inbox("flat")
    async with client(intercom, "mallory") as mallory:
        await mallory.publish(inbox, invite, qos=1, retain=True)

    app = await rebuild(intercom, "flat")
    flat = app.endpoint
    assert flat is not None

    def ignored() -> int:
        return int(app.status().get("signaling", {}).get("retained_ignored", 0))

    await wait_until(
        lambda: flat.calls.active_call is not None or ignored() > 0,
        "the rebuilt flat to get the retained invite",
    )
    assert flat.calls.active_call is None, "a retained invite rang the rebuilt unit again"
    assert ignored() == 1, "callbox status counts the ignored retained message"

    # the unit cleared it: after the site is gone, nothing is retained on the inbox
    await intercom["flat"].close()
    async with client(intercom, "flat") as again:
        await again.subscribe(inbox, qos=1)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(QUIET_WINDOW_S):  # nothing may arrive in this window
                async for message in again.messages:
                    raise AssertionError(f"still retained on the inbox: {message.payload!r}")


async def test_a_replayed_invite_is_refused_after_a_rebuild(intercom: IntercomSite) -> None:
    invite = await captured_invite(intercom)

    app = await rebuild(intercom, "flat")
    flat = app.endpoint
    assert flat is not None
    async with client(intercom, "mallory") as mallory:
        await mallory.publish(SiteTopics("test").inbox("flat"), invite, qos=1)

    rejected = flat.signaling.rejected
    await wait_until(
        lambda: flat.calls.active_call is not None or rejected[RejectReason.REPLAY] > 0,
        "the rebuilt flat to get the replayed invite",
    )
    assert flat.calls.active_call is None, "a replayed invite rang the rebuilt unit"
    assert rejected[RejectReason.REPLAY] == 1


def rss_kib(pid: int) -> int:
    """The resident memory of process ``pid``, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc")


async def test_the_broker_refuses_retained_messages_on_made_up_inboxes(
    intercom: IntercomSite,
) -> None:
    broker: MosquittoBroker = intercom.broker
    assert broker.pid is not None
    before = rss_kib(broker.pid)
    topics = SiteTopics("test")
    payload = os.urandom(100_000)
    async with client(intercom, "mallory") as mallory:
        for n in range(300):
            await mallory.publish(topics.inbox(f"nobody{n}"), payload, qos=1, retain=True)
        # a write to a real inbox is still let through (and proves the ones above were sent)
        await mallory.publish(topics.inbox("flat"), b"probe", qos=1)
    flat = intercom["flat"].endpoint
    assert flat is not None
    await wait_until(
        lambda: flat.signaling.rejected[RejectReason.BAD_JSON] > 0, "the probe to reach the flat"
    )
    growth = rss_kib(broker.pid) - before
    assert growth < 5 * 1024, f"mosquitto kept {growth} KiB of retained messages"
