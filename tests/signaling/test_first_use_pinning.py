"""Pinning policy: an unknown sender is refused, unless first-use pinning (TOFU) is on."""

from __future__ import annotations

import asyncio

import pytest
from harness.simsite import EndpointSpec, SimSite
from signaling_harness import (
    eventually,
    logged_reason,
    profile_payload,
    publish_raw,
    raw_client,
    seal_for,
    topics,
    wait_rejected,
)
from support import TIMEOUT, Answering, MakeSite

from services.signaling.envelope import parse, verify_and_open
from services.signaling.errors import RejectReason
from services.signaling.identity import Identity


@pytest.fixture
async def site(make_site: MakeSite) -> SimSite:
    """A door and an indoor unit; "visitor" has a broker account but is nobody's contact."""
    return await make_site(
        EndpointSpec("door", role="door"),
        EndpointSpec("indoor1"),
        extra_accounts=("visitor", "mallory"),
    )


async def advertise(site: SimSite, address: str, identity: Identity, *, seen: bool = True) -> None:
    """Publish ``address``'s retained profile with its own account, and wait for indoor1.

    ``seen=False``: do not wait (without first-use pinning indoor1 follows contacts only).
    """
    async with raw_client(site, address) as client:
        await client.publish(
            topics(site).profile(address),
            profile_payload(address.title(), "indoor", identity, address=address),
            qos=1,
            retain=True,
        )
    contacts = site["indoor1"].signaling.contacts
    if not seen:
        return
    await eventually(
        lambda: contacts.advertised.get(address) == identity.public_keys,
        f"indoor1 to see {address}'s profile",
    )


async def test_unknown_sender_is_refused_without_first_use(
    site: SimSite, caplog: pytest.LogCaptureFixture
) -> None:
    indoor1 = site["indoor1"]
    assert indoor1.signaling.contacts.first_use is False
    visitor = Identity.generate()
    await advertise(site, "visitor", visitor, seen=False)
    app = Answering(indoor1.calls, accept=False)
    indoor1.calls.set_listener(app)
    await publish_raw(
        site, "indoor1", seal_for(site, visitor, sender="visitor", recipient="indoor1")
    )
    await wait_rejected(indoor1, RejectReason.UNKNOWN_SENDER, 1)
    assert logged_reason(caplog, "indoor1", RejectReason.UNKNOWN_SENDER) == 1
    assert indoor1.signaling.contacts.get("visitor") is None
    assert app.incoming == []


async def test_first_use_pins_the_advertised_keys(site: SimSite) -> None:
    indoor1 = site["indoor1"]
    indoor1.signaling.contacts.first_use = True
    visitor = Identity.generate()
    await advertise(site, "visitor", visitor)
    app = Answering(indoor1.calls, accept=False)
    indoor1.calls.set_listener(app)
    async with raw_client(site, "visitor") as as_visitor:
        await as_visitor.subscribe(topics(site).inbox("visitor"), qos=1)
        invite = seal_for(site, visitor, sender="visitor", recipient="indoor1", call_id="tofu-1")
        await as_visitor.publish(topics(site).inbox("indoor1"), invite, qos=1)
        await app.wait_until(lambda: bool(app.incoming))
        assert app.incoming[0][0].address == "visitor"
        contact = indoor1.signaling.contacts.get("visitor")
        assert contact is not None and contact.keys == visitor.public_keys
        # the app declined: the decline reaches the visitor, signed by indoor1 and
        # encrypted to the keys indoor1 just pinned
        async with asyncio.timeout(TIMEOUT):
            async for message in as_visitor.messages:
                assert isinstance(message.payload, bytes)
                envelope = parse(message.payload)
                break
        body = verify_and_open(
            envelope, sender_keys=indoor1.identity.public_keys, recipient=visitor
        )
        assert (envelope.type, envelope.call_id, envelope.sender) == (
            "decline",
            "tofu-1",
            "indoor1",
        )
        assert body == {"reason": "notallowed"}
    assert sum(indoor1.signaling.rejected.values()) == 0


async def test_first_use_does_not_pin_without_a_profile(site: SimSite) -> None:
    indoor1 = site["indoor1"]
    indoor1.signaling.contacts.first_use = True
    stranger = Identity.generate()  # mallory publishes no profile: nothing to pin
    await publish_raw(
        site, "indoor1", seal_for(site, stranger, sender="mallory", recipient="indoor1")
    )
    await wait_rejected(indoor1, RejectReason.UNKNOWN_SENDER, 1)
    assert indoor1.signaling.contacts.get("mallory") is None


async def test_first_use_pins_only_a_validly_signed_message(site: SimSite) -> None:
    """A forgery in the visitor's name must neither pass nor pin the visitor."""
    indoor1 = site["indoor1"]
    indoor1.signaling.contacts.first_use = True
    visitor = Identity.generate()
    await advertise(site, "visitor", visitor)
    forged = seal_for(site, Identity.generate(), sender="visitor", recipient="indoor1")
    await publish_raw(site, "indoor1", forged, as_user="mallory")
    await wait_rejected(indoor1, RejectReason.BAD_SIGNATURE, 1)
    assert indoor1.signaling.contacts.get("visitor") is None


async def test_a_pinned_first_use_contact_is_held_to_its_key(
    site: SimSite, caplog: pytest.LogCaptureFixture
) -> None:
    indoor1 = site["indoor1"]
    indoor1.signaling.contacts.first_use = True
    visitor = Identity.generate()
    await advertise(site, "visitor", visitor, seen=False)
    app = Answering(indoor1.calls, accept=False)
    indoor1.calls.set_listener(app)
    await publish_raw(
        site, "indoor1", seal_for(site, visitor, sender="visitor", recipient="indoor1")
    )
    await app.wait_until(lambda: len(app.incoming) == 1)
    # later the visitor's profile advertises another key: first use is over
    replacement = Identity.generate()
    await advertise(site, "visitor", replacement)
    await publish_raw(
        site,
        "indoor1",
        seal_for(site, replacement, sender="visitor", recipient="indoor1", call_id="tofu-2"),
    )
    await wait_rejected(indoor1, RejectReason.KEY_CHANGED, 1)
    assert logged_reason(caplog, "indoor1", RejectReason.KEY_CHANGED) == 1
    contact = indoor1.signaling.contacts.get("visitor")
    assert contact is not None and contact.keys == visitor.public_keys
    assert len(app.incoming) == 1
    assert indoor1.signaling.profiles["visitor"]["keys"] == replacement.public_keys.to_json()
