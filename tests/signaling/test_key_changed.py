"""A "key changed" warning only for a signed profile with other keys (issue 15, finding 2).

A profile is retained on the broker and anyone with the contact's broker login may publish
one; a sniffed password used to make the door log "key changed" on every login. Now a
second login, a presence flap, an unsigned profile or a forged one (a signature that does
not verify with the key it advertises) say nothing of the kind, and a signed profile with
another key says it once, however often it is published again.
"""

from __future__ import annotations

import json

import pytest
from harness.simsite import EndpointSpec, SimSite
from signaling_harness import (
    eventually,
    mqtt_of,
    place_and_complete_call,
    profile_payload,
    raw_client,
    topics,
)
from support import MakeSite

from services.signaling.base import Inbound, presence_payload
from services.signaling.identity import Identity, b64u_encode
from services.signaling.limits import LatestAnnouncements, SenderRateLimit
from services.signaling.profile import signed_profile


@pytest.fixture
async def site(make_site: MakeSite) -> SimSite:
    """A door and an indoor unit that pin each other."""
    return await make_site(
        EndpointSpec("door", role="door", name="Front door"), EndpointSpec("indoor1")
    )


def key_changed_warnings(caplog: pytest.LogCaptureFixture) -> int:
    """How many "key changed for indoor1" warnings were logged."""
    return sum("key changed for indoor1" in r.getMessage() for r in caplog.records)


async def publish_profile_as_indoor1(site: SimSite, payload: bytes, name: str = "") -> None:
    """Publish ``payload`` as indoor1's retained profile.

    With ``name``, wait until the door has taken in a profile of that name (profiles arrive
    in order, so also every one published before it).
    """
    as_indoor1 = mqtt_of(site["indoor1"])._client  # its own login: the only one allowed to
    assert as_indoor1 is not None
    await as_indoor1.publish(topics(site).profile("indoor1"), payload, qos=1, retain=True)
    profiles = site["door"].signaling.profiles
    if name:
        await eventually(
            lambda: profiles.get("indoor1", {}).get("name") == name, f"the door to see {name}"
        )


async def test_a_second_login_and_presence_flaps_say_no_key_changed(
    site: SimSite, caplog: pytest.LogCaptureFixture
) -> None:
    transport = mqtt_of(site["indoor1"])
    door = site["door"].signaling
    for n in range(3):  # someone logs in with indoor1's password: indoor1 is pushed off
        connections = transport.connections
        async with raw_client(site, "indoor1"):
            await door.wait_presence("indoor1", False, timeout=10)

        def reconnected(before: int = connections) -> bool:
            return transport.connections > before

        await eventually(reconnected, f"reconnection {n + 1}")
        await door.wait_presence("indoor1", True, timeout=10)
    assert key_changed_warnings(caplog) == 0
    assert door.contacts.advertised["indoor1"] == site["indoor1"].identity.public_keys


async def test_an_unsigned_or_forged_profile_with_other_keys_is_no_key_change(
    site: SimSite, caplog: pytest.LogCaptureFixture
) -> None:
    door = site["door"].signaling
    pinned = site["indoor1"].identity.public_keys
    other = Identity.generate()

    unsigned = profile_payload("unsigned", "indoor", other, signed=False)
    await publish_profile_as_indoor1(site, unsigned, "unsigned")
    forged = signed_profile(other, "indoor1", "forged", "indoor")
    forged["sig"] = b64u_encode(Identity.generate().sign(b"anything"))  # not other's signature
    await publish_profile_as_indoor1(site, json.dumps(forged).encode())
    copied = signed_profile(other, "door", "copied", "indoor")  # signed for another address
    await publish_profile_as_indoor1(site, json.dumps(copied).encode())
    # indoor1's own profile again, after which the door has seen all of the above
    await publish_profile_as_indoor1(
        site, profile_payload("last", "indoor", site["indoor1"].identity, address="indoor1"), "last"
    )

    assert key_changed_warnings(caplog) == 0
    assert door.contacts.advertised["indoor1"] == pinned
    door.contacts.check_key_change("indoor1")  # raises KeyChangedError if it thinks so


async def test_a_signed_profile_with_another_key_says_key_changed_once(
    site: SimSite, caplog: pytest.LogCaptureFixture
) -> None:
    door = site["door"].signaling
    pinned = site["indoor1"].identity
    new = Identity.generate()
    for n in range(3):  # the new profile, and the old one in between (two devices flapping)
        new_profile = profile_payload(f"new {n}", "indoor", new, address="indoor1")
        await publish_profile_as_indoor1(site, new_profile, f"new {n}")
        old_profile = profile_payload(f"old {n}", "indoor", pinned, address="indoor1")
        await publish_profile_as_indoor1(site, old_profile, f"old {n}")
    await publish_profile_as_indoor1(
        site, profile_payload("new", "indoor", new, address="indoor1"), "new"
    )

    assert key_changed_warnings(caplog) == 1
    assert door.contacts.advertised["indoor1"] == new.public_keys


async def test_a_flood_of_one_accounts_presence_and_profile_is_rate_limited(
    site: SimSite,
) -> None:
    door = site["door"].signaling
    profile = profile_payload("Flat 1", "indoor", site["indoor1"].identity, address="indoor1")
    as_indoor1 = mqtt_of(site["indoor1"])._client  # a stolen password does as much
    assert as_indoor1 is not None
    for _ in range(100):
        await as_indoor1.publish(topics(site).profile("indoor1"), profile, qos=1, retain=True)
    await eventually(
        lambda: door.counters()["presence_or_profile_rate_limited"] > 0,
        "the door to drop what is over the account's budget",
    )
    dropped = door.counters()["presence_or_profile_rate_limited"]
    assert 50 < dropped < 100, "a burst got in, the rest was dropped"
    await place_and_complete_call(site, "door", "indoor1")


async def test_presence_over_the_rate_is_applied_late_not_lost(site: SimSite) -> None:
    """A phone whose page closes and reopens faster than the rate is still seen online."""
    door = site["door"].signaling
    as_indoor1 = mqtt_of(site["indoor1"])._client
    assert as_indoor1 is not None
    topic = topics(site).presence("indoor1")
    for online in [False, True] * 15:  # 30 changes at once: over the burst of 20
        await as_indoor1.publish(topic, presence_payload(online), qos=1, retain=True)
    await as_indoor1.publish(topic, presence_payload(False), qos=1, retain=True)  # the last one
    await eventually(
        lambda: door.counters()["presence_or_profile_rate_limited"] > 0,
        "the door to hold back what is over the account's budget",
    )
    await door.wait_presence("indoor1", False, timeout=5)  # the last word, applied late
    await as_indoor1.publish(topic, presence_payload(True), qos=1, retain=True)
    await door.wait_presence("indoor1", True, timeout=5)


async def test_held_announcements_keep_one_slot_per_address_and_a_bounded_count() -> None:
    """A flood of announcements from many accounts holds at most ``max_entries`` of them."""
    limit = SenderRateLimit(rate=1000.0, burst=1)
    applied: list[Inbound] = []
    held = LatestAnnouncements(limit, applied.append, max_entries=8)
    for n in range(100):
        address = f"unit{n}"
        limit.allow(address)  # the address's one token is spent: what follows waits
        for online in (True, False, True):
            held.hold(Inbound("presence", address, presence_payload(online), 0.0))
        assert len(held) <= 8
    assert len(held) == 8
    assert held.replaced == 100 * 3 - 8  # superseded in its slot, or pushed out of a full store
    await eventually(lambda: not held, "the held ones applied once their buckets refill")
    assert [i.address for i in applied] == [f"unit{n}" for n in range(92, 100)]
    assert all(i.payload == presence_payload(True) for i in applied)  # the latest of each
    held.close()
