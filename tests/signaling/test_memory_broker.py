"""The in-memory broker keeps the broker semantics the call tests rely on.

tests/memory_broker.py stands in for mosquitto wherever a test needs signaling routing
but not the broker; these tests hold it to what the real broker does for callbox (and
what tests/signaling/test_presence_and_reconnect.py checks against mosquitto).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import pytest
from harness.simsite import EndpointSpec
from memory_broker import MemoryBroker, MemoryTransport
from support import TIMEOUT, MakeSite

from services.signaling.base import MAX_PENDING_INBOUND, Inbound, SignalingTransport
from services.signaling.contacts import Contact, ContactBook
from services.signaling.endpoint import Message, SignalingEndpoint
from services.signaling.envelope import seal
from services.signaling.errors import RejectReason, SignalingError
from services.signaling.identity import Identity
from services.signaling.limits import SenderRateLimit


class Received:
    """Everything one transport hands over, and an event per arrival to wait on."""

    def __init__(self) -> None:
        self.messages: list[Inbound] = []
        self.connecting = 0
        self._arrived = asyncio.Event()

    def __call__(self, inbound: Inbound) -> None:
        self.messages.append(inbound)
        self._arrived.set()

    def on_connecting(self) -> None:
        """The transport's reconnection hook."""
        self.connecting += 1

    def of(self, kind: str, address: str) -> list[bytes]:
        """The payloads of ``kind`` about ``address``, in arrival order."""
        return [m.payload for m in self.messages if (m.kind, m.address) == (kind, address)]

    def presence(self, address: str) -> list[str]:
        """The presence states of ``address`` received, in order."""
        return [json.loads(p)["state"] for p in self.of("presence", address)]

    async def until(self, predicate: Callable[[], bool], what: str) -> None:
        """Wait (bounded) until ``predicate()`` holds after some arrival."""
        async with asyncio.timeout(TIMEOUT):
            while not predicate():
                self._arrived.clear()
                await self._arrived.wait()


async def started(broker: MemoryBroker, address: str) -> tuple[MemoryTransport, Received]:
    """A started transport of ``address`` with a recorder as its receiver."""
    transport = broker.transport(address)
    received = Received()
    transport.on_message = received
    transport.on_connecting = received.on_connecting
    transport.profile = {"name": address.capitalize()}
    await transport.start()
    return transport, received


async def test_it_is_a_signaling_transport() -> None:
    transport: SignalingTransport = MemoryBroker().transport("door")  # checked by mypy
    assert not transport.connected.is_set()
    with pytest.raises(SignalingError, match="nobody to hand messages to"):
        await transport.start()


async def test_each_endpoint_receives_only_its_own_inbox_and_never_from_inside_publish() -> None:
    broker = MemoryBroker()
    door, _ = await started(broker, "door")
    _, indoor1 = await started(broker, "indoor1")
    _, indoor2 = await started(broker, "indoor2")

    await door.publish_inbox("indoor1", b"ring")
    assert indoor1.of("inbox", "indoor1") == [], "handed over on a later loop turn"
    await indoor1.until(lambda: bool(indoor1.of("inbox", "indoor1")), "indoor1's inbox")
    assert indoor1.of("inbox", "indoor1") == [b"ring"]
    await door.publish_inbox("indoor2", b"second")
    await indoor2.until(lambda: bool(indoor2.of("inbox", "indoor2")), "indoor2's inbox")
    assert indoor2.of("inbox", "indoor2") == [b"second"]
    assert indoor1.of("inbox", "indoor2") == [] and indoor2.of("inbox", "indoor1") == []


async def test_a_new_endpoint_is_handed_the_retained_presence_and_profiles() -> None:
    broker = MemoryBroker()
    await started(broker, "door")
    _, indoor1 = await started(broker, "indoor1")
    await indoor1.until(lambda: indoor1.presence("indoor1") == ["online"], "its own presence")
    assert indoor1.presence("door") == ["online"]
    assert [json.loads(p) for p in indoor1.of("profile", "door")] == [{"name": "Door"}]
    assert [json.loads(p) for p in indoor1.of("profile", "indoor1")] == [{"name": "Indoor1"}]


async def test_a_cut_connection_publishes_the_will_and_reconnects_announcing_again() -> None:
    broker = MemoryBroker()
    door, door_saw = await started(broker, "door")
    _, indoor1 = await started(broker, "indoor1")
    await indoor1.until(lambda: indoor1.presence("door") == ["online"], "the door online")

    broker.cut("door", reconnect=False)
    assert not door.connected.is_set()
    await indoor1.until(lambda: indoor1.presence("door")[-1] == "offline", "the door's will")
    assert door_saw.connecting == 1

    broker.restore("door")
    await indoor1.until(lambda: indoor1.presence("door")[-1] == "online", "the door again")
    assert indoor1.presence("door") == ["online", "offline", "online"]
    assert len(indoor1.of("profile", "door")) == 2, "the profile is announced anew"
    assert door.connected.is_set() and door.connections == 2
    assert door_saw.connecting == 2, "on_connecting runs on every connection"


async def test_a_cut_connection_comes_back_by_itself() -> None:
    broker = MemoryBroker()
    door, _ = await started(broker, "door")
    _, indoor1 = await started(broker, "indoor1")
    broker.cut("door")
    await asyncio.wait_for(door.connected.wait(), TIMEOUT)
    await indoor1.until(lambda: indoor1.presence("door")[-1:] == ["online"], "the door back")
    assert indoor1.presence("door") == ["online", "offline", "online"]


async def test_publishing_while_disconnected_waits_for_the_connection_or_times_out() -> None:
    broker = MemoryBroker()
    door, _ = await started(broker, "door")
    _, indoor1 = await started(broker, "indoor1")
    broker.cut("door", reconnect=False)
    with pytest.raises(SignalingError, match="not connected"):
        await door.publish_inbox("indoor1", b"lost", timeout=0.05)

    waiting = asyncio.create_task(door.publish_inbox("indoor1", b"after"))
    await asyncio.sleep(0)  # let the publish start waiting for the connection
    assert not waiting.done()
    broker.restore("door")
    await asyncio.wait_for(waiting, TIMEOUT)
    await indoor1.until(lambda: bool(indoor1.of("inbox", "indoor1")), "the waiting message")
    assert indoor1.of("inbox", "indoor1") == [b"after"]


async def test_an_inbox_message_to_an_absent_endpoint_is_lost_as_on_the_broker() -> None:
    broker = MemoryBroker()
    door, _ = await started(broker, "door")
    await door.publish_inbox("indoor1", b"nobody home")
    _, indoor1 = await started(broker, "indoor1")
    await indoor1.until(lambda: indoor1.presence("indoor1") == ["online"], "indoor1 online")
    assert indoor1.of("inbox", "indoor1") == []


async def test_delivery_is_bounded_and_oversize_is_refused() -> None:
    broker = MemoryBroker()
    door, _ = await started(broker, "door")
    indoor, indoor1 = await started(broker, "indoor1")
    await indoor1.until(lambda: bool(indoor1.presence("indoor1")), "indoor1 settled")
    for n in range(MAX_PENDING_INBOUND + 10):  # faster than the endpoint takes them
        broker.publish_inbox("indoor1", str(n).encode())
    assert indoor.dropped == 10
    await indoor1.until(
        lambda: len(indoor1.of("inbox", "indoor1")) == MAX_PENDING_INBOUND, "the kept ones"
    )
    assert indoor1.of("inbox", "indoor1")[-1] == str(MAX_PENDING_INBOUND - 1).encode()
    with pytest.raises(SignalingError, match="max_packet_size"):
        await door.publish_inbox("indoor1", bytes(broker.max_packet_size + 1))


async def test_a_cleared_presence_is_handed_over_and_no_longer_retained() -> None:
    broker = MemoryBroker()
    await started(broker, "door")
    broker.publish("presence", "door", b"")
    _, indoor1 = await started(broker, "indoor1")
    await indoor1.until(lambda: indoor1.presence("indoor1") == ["online"], "indoor1 online")
    assert indoor1.of("presence", "door") == []


def endpoint(broker: MemoryBroker, address: str, identity: Identity) -> SignalingEndpoint:
    """A signaling endpoint of ``address`` on ``broker``."""
    return SignalingEndpoint(
        transport=broker.transport(address), identity=identity, contacts=ContactBook()
    )


async def test_signaling_endpoints_see_each_other_come_and_go() -> None:
    broker = MemoryBroker()
    identities = {a: Identity.generate() for a in ("door", "indoor1")}
    door = endpoint(broker, "door", identities["door"])
    indoor1 = endpoint(broker, "indoor1", identities["indoor1"])
    door.contacts.add(Contact(address="indoor1", keys=identities["indoor1"].public_keys))
    indoor1.contacts.add(Contact(address="door", keys=identities["door"].public_keys))
    got: list[str] = []
    arrived = asyncio.Event()

    async def on_message(message: Message) -> None:
        got.append(message.type)
        arrived.set()

    indoor1.on_message = on_message
    try:
        await door.start()
        await indoor1.start()
        await door.wait_presence("indoor1", True, TIMEOUT)
        assert indoor1.profiles["door"]["keys"] == identities["door"].public_keys.to_json()
        await door.send("indoor1", "ringing", "call-1", {})
        await asyncio.wait_for(arrived.wait(), TIMEOUT)
        assert got == ["ringing"] and indoor1.received == 1

        broker.cut("indoor1", reconnect=False)
        await door.wait_presence("indoor1", False, TIMEOUT)
        broker.restore("indoor1")
        await door.wait_presence("indoor1", True, TIMEOUT)
        await indoor1.close()
        await door.wait_presence("indoor1", False, TIMEOUT)
    finally:
        await door.close()
        await indoor1.close()


@pytest.mark.site_broker("memory")
async def test_a_site_marked_memory_starts_no_mosquitto(make_site: MakeSite) -> None:
    site = await make_site(EndpointSpec("door", role="door"), EndpointSpec("indoor1"))
    assert site.mosquitto is None
    with pytest.raises(SignalingError, match="without mosquitto"):
        assert site.broker
    for endpoint in site.endpoints.values():
        assert isinstance(endpoint.signaling.transport, MemoryTransport)
    assert site["door"].signaling.is_online("indoor1")
    assert site["indoor1"].signaling.profiles["door"]["role"] == "door"


async def test_an_endpoint_flooded_while_busy_drops_the_excess_and_keeps_working() -> None:
    broker = MemoryBroker()
    identities = {a: Identity.generate() for a in ("door", "indoor1")}
    door = endpoint(broker, "door", identities["door"])
    indoor1 = endpoint(broker, "indoor1", identities["indoor1"])
    indoor1.sender_limit = SenderRateLimit(rate=1.0, burst=10 * MAX_PENDING_INBOUND)
    door.contacts.add(Contact(address="indoor1", keys=identities["indoor1"].public_keys))
    indoor1.contacts.add(Contact(address="door", keys=identities["door"].public_keys))
    got: list[str] = []
    busy, release = asyncio.Event(), asyncio.Event()

    async def on_message(message: Message) -> None:
        got.append(message.call_id)
        busy.set()
        await release.wait()  # the first message keeps the inbox worker busy

    def from_door(call_id: str) -> bytes:
        return seal(
            identities["door"],
            type="ringing",
            call_id=call_id,
            sender="door",
            recipient="indoor1",
            recipient_keys=identities["indoor1"].public_keys,
            body={},
        )

    indoor1.on_message = on_message
    try:
        await door.start()
        await indoor1.start()
        await door.wait_presence("indoor1", True, TIMEOUT)
        await door.send("indoor1", "ringing", "call-1", {})
        await asyncio.wait_for(busy.wait(), TIMEOUT)
        for n in range(50):  # junk is refused as it arrives: it takes no place in the queue
            broker.publish_inbox("indoor1", f"junk {n}".encode())
        await asyncio.sleep(0)  # the broker's deliveries (call_soon) run before this resumes
        assert indoor1.rejected[RejectReason.BAD_JSON] == 50
        assert indoor1.overflowed == 0
        for batch in range(3):  # within the transport's own bound, beyond the endpoint's
            for n in range(MAX_PENDING_INBOUND // 2 + 2):
                broker.publish_inbox("indoor1", from_door(f"flood-{batch}-{n}"))
            await asyncio.sleep(0)
        flood = 3 * (MAX_PENDING_INBOUND // 2 + 2)
        assert indoor1.overflowed == flood - MAX_PENDING_INBOUND
        assert indoor1.counters()["inbox_queue_full"] == flood - MAX_PENDING_INBOUND

        release.set()
        await door.send("indoor1", "ringing", "call-2", {})
        async with asyncio.timeout(TIMEOUT):
            while got[-1:] != ["call-2"]:
                busy.clear()
                await busy.wait()
        assert len(got) == 1 + MAX_PENDING_INBOUND + 1  # the first, the kept flood, the last
    finally:
        await door.close()
        await indoor1.close()
