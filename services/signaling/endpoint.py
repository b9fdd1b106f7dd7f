"""A signaling endpoint: verified, decrypted messages in; signed, encrypted messages out.

Every inbound envelope goes through the checks of docs/protocol.md in a fixed order
(size, JSON, format, version, recipient, type, sender, signature, freshness, replay,
rate). A message that fails one is dropped, logged with the reason and counted in
:attr:`SignalingEndpoint.rejected`; the endpoint keeps working.

The cheap checks (size, JSON, format, recipient, type, known sender, and a token bucket per
claimed sender) run as the message arrives, before it takes a place in any queue
(:meth:`SignalingEndpoint.admit`); only what passes them is queued for the expensive ones
(signature, decryption) and the call layer. Retained deliveries on the inbox are ignored.
Drops are logged a few at a time (:class:`~services.signaling.limits.QuietLog`) and counted
in :meth:`SignalingEndpoint.counters`, which ``callbox status`` shows.

An endpoint follows the presence and profile of the addresses it needs only
(:meth:`SignalingEndpoint.needs`: its contacts and ring-group targets), and follows the
contact book as it changes: what it receives grows with its contacts, not with the site.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from hal.closing import CloseOnce
from services.signaling.base import (
    MAX_PENDING_INBOUND,
    MAX_PENDING_INBOUND_BYTES,
    Inbound,
    SignalingTransport,
)
from services.signaling.contacts import ContactBook
from services.signaling.directory import FLAT_TARGET_PREFIX, SiteDirectory
from services.signaling.envelope import Envelope, parse, seal, verify_and_open
from services.signaling.errors import RejectedMessage, RejectReason, SignalingError
from services.signaling.identity import Identity, PublicKeys
from services.signaling.limits import (
    InviteRateLimit,
    LatestAnnouncements,
    QuietLog,
    SenderRateLimit,
)
from services.signaling.profile import read_profile, signed_profile
from services.signaling.replay import ReplayGuard
from services.signaling.topics import valid_name
from services.tasks import cancel_and_wait

__all__ = [
    "ALARM_MESSAGE_TYPES",
    "CALL_MESSAGE_TYPES",
    "MESSAGE_TYPES",
    "PUSH_MESSAGE_TYPES",
    "InviteRateLimit",
    "Message",
    "SignalingEndpoint",
]

_log = logging.getLogger(__name__)

CALL_MESSAGE_TYPES = frozenset(
    {
        "invite",
        "ringing",
        "answer",
        "accept",
        "busy",
        "decline",
        "cancel",
        "hangup",
        "mute",
        "reoffer",
        "reanswer",
        "restart",
        "dtmf",
        "unlock",
        "unlock_result",
        "ack",
    }
)
"""The messages of a call (docs/protocol.md, "Messages"): the call core handles them."""
PUSH_MESSAGE_TYPES = frozenset({"push_subscribe", "push_unsubscribe", "push_status"})
"""Web Push registration (docs/protocol.md, "Web Push"): not part of any call."""
ALARM_MESSAGE_TYPES = frozenset({"alarm"})
"""A door station's alarms to its indoor units (docs/protocol.md, "Alarms"): not of any call."""
MESSAGE_TYPES = CALL_MESSAGE_TYPES | PUSH_MESSAGE_TYPES | ALARM_MESSAGE_TYPES
_FINISHING_TYPES = CALL_MESSAGE_TYPES - {"invite"}
"""What a contact removed by a newer site directory may still exchange: its call in progress."""
MAX_ENVELOPE_BYTES = 65536
ANNOUNCEMENTS_PER_S = 2.0
"""Presence and profile messages a second one address may keep publishing."""
ANNOUNCEMENT_BURST = 20
"""... and at once (a few reconnections in a row)."""
MAX_LOOKED_UP = 32
"""Addresses looked up by hand (``callbox keys show``) whose profile is followed, at most."""


@dataclass(frozen=True)
class Message:
    """A verified, decrypted message from a pinned contact."""

    type: str
    call_id: str
    sender: str
    body: dict[str, Any]
    received_at: float


class SignalingEndpoint:
    """One address of a site on the broker, with its identity and contacts.

    It reaches the broker through the ``transport`` it is given (the composition root
    builds the MQTT one with ``mqtt_transport``; tests may give an in-memory one), whose
    address it takes as its own and to which it hands its profile and its receivers.
    """

    def __init__(
        self,
        *,
        transport: SignalingTransport,
        identity: Identity,
        contacts: ContactBook,
        name: str = "",
        role: str = "",
        replay: ReplayGuard | None = None,
        invite_limit: InviteRateLimit | None = None,
        sender_limit: SenderRateLimit | None = None,
        max_envelope_bytes: int = MAX_ENVELOPE_BYTES,
    ) -> None:
        self.address = valid_name("address", transport.address)
        self.identity = identity
        self.contacts = contacts
        self.replay = replay or ReplayGuard()
        self.invite_limit = invite_limit or InviteRateLimit()
        self.sender_limit = sender_limit or SenderRateLimit()
        self.announcement_limit = SenderRateLimit(ANNOUNCEMENTS_PER_S, ANNOUNCEMENT_BURST)
        """Presence and profile messages per address (the ACL lets only its owner publish)."""
        self.announcements_held = LatestAnnouncements(self.announcement_limit, self._received)
        """Those over the rate: the latest per kind and address, applied when it allows."""
        self.announcements_dropped = 0
        self.max_envelope_bytes = max_envelope_bytes
        self.rejected: collections.Counter[RejectReason] = collections.Counter()
        self.received = 0
        self.ignored_retained = 0
        """Retained deliveries on the inbox, ignored (and cleared by the MQTT transport)."""
        self._quiet_log = QuietLog(_log)
        self.presence: dict[str, bool] = {}
        self.profiles: dict[str, dict[str, Any]] = {}
        self.on_message: Callable[[Message], Awaitable[None]] | None = None
        self.on_presence: Callable[[str, bool], None] | None = None
        self.on_rejected: Callable[[str, str, RejectedMessage], None] | None = None
        self.on_directory: Callable[[bytes], object] | None = None
        """Handed each site directory message (services/signaling/directory.py checks it)."""
        self.directory: SiteDirectory | None = None
        """The site directory this endpoint trusts (set with :attr:`on_directory`), or None."""
        self._presence_changed = asyncio.Condition()
        """Notified when a presence or a profile arrives."""
        self._targets: frozenset[str] = frozenset()
        self._looked_up: dict[str, None] = {}  # oldest first, at most MAX_LOOKED_UP
        self._notifications: set[asyncio.Task[None]] = set()
        self.overflowed = 0
        """Inbox messages dropped because the inbox queue was full (messages or bytes)."""
        self._inbox: asyncio.Queue[Inbound] = asyncio.Queue(MAX_PENDING_INBOUND)
        self._inbox_bytes = 0
        self.max_inbox_bytes = MAX_PENDING_INBOUND_BYTES
        self._worker: asyncio.Task[None] | None = None
        self._close = CloseOnce()
        self.transport = transport
        transport.profile = signed_profile(identity, self.address, name or self.address, role)
        transport.on_message = self._received
        transport.admit = self.admit
        transport.on_connecting = self._forget_presence
        contacts.on_change = self._watch_needed
        self._watch_needed()

    def needs(self) -> frozenset[str]:
        """The addresses whose presence and profile this endpoint follows.

        Its contacts and ring-group targets (and the few addresses looked up by hand), never
        itself: a building's endpoint follows its own flat and doors, not the building.
        """
        contacts = self.contacts.addresses()
        if self.directory is not None:
            # a building's directory lists every endpoint: of those, only what this one needs
            contacts = self.contacts.addresses(source_not="directory")
            if self.directory.current is not None:
                contacts |= self.directory.current.peers_of(self.address, self._targets)
        addresses = frozenset(t for t in self._targets if not t.startswith(FLAT_TARGET_PREFIX))
        needed = contacts | addresses | frozenset(self._looked_up)
        return needed - {self.address}

    def set_targets(self, targets: Iterable[str]) -> None:
        """What this endpoint rings (addresses, ``flat:<flat>``): their presence is followed."""
        self._targets = frozenset(
            t if t.startswith(FLAT_TARGET_PREFIX) else valid_name("target address", t)
            for t in targets
        )
        self._watch_needed()

    def use_directory(self, directory: SiteDirectory) -> None:
        """Trust ``directory`` (handed each directory message) and follow what it says we need.

        Of a building's entries only :meth:`Directory.peers_of` this endpoint (its flat, its
        ring group, the doors) are followed, again at each directory accepted (accepting one
        changes the contact book, whose ``on_change`` is ours).
        """
        self.directory = directory
        self.on_directory = directory.receive
        self._watch_needed()

    def _watch_needed(self) -> None:
        """Follow what :meth:`needs` says now; forget the presence of what it no longer does."""
        needed = self.needs()
        for address in set(self.presence) - needed:
            del self.presence[address]
        self.transport.watch(needed, all_profiles=self.contacts.first_use)

    async def look_up(self, address: str, timeout: float) -> dict[str, Any] | None:
        """The retained profile of ``address``, following it from now on if it was not.

        None if the broker has none within ``timeout`` s. For ``callbox keys show`` of an
        address that is not a contact yet (its keys are read before it is pinned).
        """
        self._follow_also([address])
        try:
            async with asyncio.timeout(timeout), self._presence_changed:
                await self._presence_changed.wait_for(lambda: address in self.profiles)
        except TimeoutError:
            return None
        return self.profiles[address]

    async def follow(self, addresses: Iterable[str], timeout: float) -> None:
        """Follow the presence of ``addresses`` too, waiting up to ``timeout`` s for it.

        For a call to someone this endpoint does not follow (a neighbour in the site
        directory): the broker hands over the retained presence on subscribing. Returns at
        once when every address is followed already; an address with no presence on the
        broker stays unknown (offline) after ``timeout``.
        """
        new = self._follow_also(addresses)
        if not new:
            return
        try:
            async with asyncio.timeout(timeout), self._presence_changed:
                await self._presence_changed.wait_for(lambda: all(a in self.presence for a in new))
        except TimeoutError:
            _log.info("no presence of %s on the broker", ", ".join(sorted(new)))

    def _follow_also(self, addresses: Iterable[str]) -> list[str]:
        """Add what :meth:`needs` lacks of ``addresses`` (at most MAX_LOOKED_UP kept)."""
        needed = self.needs()
        new = [valid_name("address", a) for a in addresses if a not in needed and a != self.address]
        for address in new:
            self._looked_up[address] = None
            while len(self._looked_up) > MAX_LOOKED_UP:
                del self._looked_up[next(iter(self._looked_up))]
        if new:
            self._watch_needed()
        return new

    def _forget_presence(self) -> None:
        # A restarted broker may have lost retained presences and the last wills of
        # endpoints that died meanwhile: what is online is what the broker says after this.
        self.presence.clear()

    async def start(self, timeout: float = 10.0) -> None:
        """Take over the replay memory, connect to the broker and start handling the inbox."""
        await self.replay.load()
        if self._worker is None:
            self._worker = asyncio.create_task(self._work(), name=f"inbox-{self.address}")
        await self.transport.start(timeout)

    async def close(self) -> None:
        """Go offline and stop handling the inbox.

        Idempotent; a call made while a close is under way waits for that close to finish
        (as aiortc's ``RTCPeerConnection.close``).
        """
        if not await self._close.begin():
            return
        try:
            self.announcements_held.close()
            await self.transport.close()
            if self._worker is not None:
                await cancel_and_wait([self._worker])
                self._worker = None
            await self.replay.flush()
        finally:
            self._close.finish()

    def counters(self) -> dict[str, Any]:
        """What this endpoint dropped and why (``callbox status`` shows it)."""
        counters = {
            "received": self.received,
            "rejected": {reason.value: n for reason, n in sorted(self.rejected.items(), key=str)},
            **self.dropped_unread(),
        }
        if self.directory is not None:
            counters["site_directory"] = {
                "version": self.directory.highest_version,
                "entries": len(self.directory.addresses()),
                "refused": {p.value: n for p, n in self.directory.refused.items()},
            }
        return counters

    def dropped_unread(self) -> dict[str, int]:
        """Messages dropped before any check read them, by why.

        Full queues, retained inbox deliveries, presence and profile messages over their rate.
        """
        return {
            "inbox_queue_full": self.overflowed,
            "transport_queue_full": self.transport.dropped,
            "retained_ignored": self.ignored_retained,
            "presence_or_profile_rate_limited": self.announcements_dropped,
        }

    # outbound ----------------------------------------------------------------------------------

    async def send(
        self, recipient: str, message_type: str, call_id: str, body: dict[str, Any]
    ) -> None:
        """Sign, encrypt and publish a message to a pinned contact."""
        if message_type not in MESSAGE_TYPES:
            raise SignalingError(f"unknown message type {message_type!r}")
        contact = self.contacts.get(recipient)
        if contact is None and message_type in _FINISHING_TYPES:
            contact = self.contacts.leaving(recipient)  # a call in progress goes on
        if contact is None:
            raise SignalingError(
                f"cannot send {message_type} to {recipient!r}: not a pinned contact"
            )
        data = seal(
            self.identity,
            type=message_type,
            call_id=call_id,
            sender=self.address,
            recipient=recipient,
            recipient_keys=contact.keys,
            body=body,
        )
        await self.transport.publish_inbox(recipient, data)

    # inbound -----------------------------------------------------------------------------------

    def admit(self, inbound: Inbound) -> bool:
        """The checks a message passes before it is queued; False drops it (counted).

        Presence and profile messages: at most ANNOUNCEMENTS_PER_S per address (bursts of
        ANNOUNCEMENT_BURST); only the address's own broker account may publish them, so this
        bounds what one account (a stolen password) can make the endpoint do.

        A retained delivery is ignored: it was left on the broker by anyone in the site,
        possibly long ago, and is not a message sent to this endpoint now. Otherwise the
        envelope's size, JSON, format, recipient, type and sender are checked, and the claimed
        sender's token bucket must have a token: nothing here costs a signature check.
        """
        if inbound.kind != "inbox":
            if self.announcement_limit.allow(inbound.address):
                return True
            self.announcements_dropped += 1
            self.announcements_held.hold(inbound)
            self._quiet_log.warning(
                "announcements",
                "%s: %s of %s held back: more than %d at once or %.0f a second (the latest "
                "one is applied when the rate allows)",
                self.address,
                inbound.kind,
                inbound.address,
                self.announcement_limit.burst,
                self.announcement_limit.rate,
            )
            return False
        if inbound.retained:
            self.ignored_retained += 1
            self._quiet_log.warning(
                "retained",
                "%s: ignored a retained message in its inbox (left on the broker by someone "
                "in the site, not sent now)",
                self.address,
            )
            return False
        try:
            self._precheck(inbound.payload)
        except RejectedMessage as err:
            self._reject(inbound, err)
            return False
        return True

    def _precheck(self, data: bytes) -> None:
        """Size, plain JSON, recipient, type, known sender, the sender's bucket: no crypto.

        The envelope's full format check (strict JSON, every field) waits for the worker,
        except for JSON that names no sender: it is diagnosed at once (for its reason), at
        most at the rate of one sender (a shared bucket), and refused beyond that.
        """
        if len(data) > self.max_envelope_bytes:
            raise RejectedMessage(
                RejectReason.OVERSIZE,
                f"envelope is {len(data)} bytes, over the limit of {self.max_envelope_bytes}",
            )
        try:
            obj = json.loads(data)
        except (ValueError, RecursionError) as err:
            raise RejectedMessage(
                RejectReason.BAD_JSON, f"envelope is not valid JSON: {err}"
            ) from err
        header = _header_of(obj)
        if header is None:
            if not self.sender_limit.allow(_NO_SENDER):
                raise RejectedMessage(RejectReason.BAD_FORMAT, "envelope names no sender")
            parse(data, max_size=self.max_envelope_bytes)  # raises with the precise reason
            raise RejectedMessage(RejectReason.BAD_FORMAT, "envelope names no sender")
        sender, recipient, message_type = header
        self._check_header(sender, recipient, message_type)
        if not self.sender_limit.allow(sender):
            raise RejectedMessage(
                RejectReason.RATE_LIMITED,
                f"{sender} sent more than {self.sender_limit.burst} messages at once or "
                f"{self.sender_limit.rate:.0f} a second",
            )

    def _parse_for_me(self, data: bytes) -> Envelope:
        env = parse(data, max_size=self.max_envelope_bytes)
        self._check_header(env.sender, env.recipient, env.type)
        return env

    def _check_header(self, sender: str, recipient: str, message_type: str) -> None:
        if recipient != self.address:
            raise RejectedMessage(
                RejectReason.WRONG_RECIPIENT, f"addressed to {recipient}, not {self.address}"
            )
        if message_type not in MESSAGE_TYPES:
            raise RejectedMessage(RejectReason.UNKNOWN_TYPE, f"type {message_type!r} from {sender}")
        if self._sender_keys(sender, message_type) is None:
            raise RejectedMessage(RejectReason.UNKNOWN_SENDER, f"{sender} is not a pinned contact")

    def _sender_keys(self, sender: str, message_type: str) -> PublicKeys | None:
        """The keys to verify ``sender``'s ``message_type`` with, or None.

        A contact's, or those of one that left the site directory lately (its call messages,
        no invite: a call in progress goes on).
        """
        keys = self.contacts.keys_for_sender(sender, pin=False)
        if keys is None and message_type in _FINISHING_TYPES:
            leaving = self.contacts.leaving(sender)
            keys = leaving.keys if leaving is not None else None
        return keys

    def _received(self, inbound: Inbound) -> None:
        if inbound.kind == "inbox":
            self._queue(inbound)
        elif inbound.kind == "presence":
            self._presence_received(inbound)
        elif inbound.kind == "profile":
            self._profile_received(inbound)
        elif inbound.kind == "directory" and self.on_directory is not None:
            self.on_directory(inbound.payload)

    def _queue(self, inbound: Inbound) -> None:
        size = len(inbound.payload)
        if self._inbox.full() or self._inbox_bytes + size > self.max_inbox_bytes:
            self.overflowed += 1
            self._quiet_log.warning(
                "inbox_full",
                "%s: %d inbox messages (%d bytes) already waiting, one dropped",
                self.address,
                self._inbox.qsize(),
                self._inbox_bytes,
            )
            return
        self._inbox.put_nowait(inbound)
        self._inbox_bytes += size

    def _presence_received(self, inbound: Inbound) -> None:
        if not inbound.payload:
            online = False  # the retained presence was cleared
        else:
            try:
                online = json.loads(inbound.payload)["state"] == "online"
            except (ValueError, KeyError, TypeError, RecursionError):
                _log.warning("%s: bad presence from %s ignored", self.address, inbound.address)
                return
        self.presence[inbound.address] = online
        if self.on_presence is not None:
            self.on_presence(inbound.address, online)
        self._notify()

    def _notify(self) -> None:
        task = asyncio.get_running_loop().create_task(self._notify_presence())
        self._notifications.add(task)
        task.add_done_callback(self._notifications.discard)

    async def _notify_presence(self) -> None:
        async with self._presence_changed:
            self._presence_changed.notify_all()

    def _profile_received(self, inbound: Inbound) -> None:
        if not inbound.payload:
            return  # the retained profile was cleared
        try:
            profile = read_profile(inbound.address, inbound.payload)
        except SignalingError as err:
            self._quiet_log.warning(
                "bad_profile",
                "%s: bad profile from %s ignored: %s",
                self.address,
                inbound.address,
                err,
            )
            return
        self.profiles[inbound.address] = profile.fields
        self.contacts.saw_profile(inbound.address, profile.keys, signed=profile.signed)
        self._notify()

    def is_online(self, address: str) -> bool:
        """True when ``address``'s retained presence says online."""
        return self.presence.get(address, False)

    async def wait_presence(self, address: str, online: bool, timeout: float) -> None:
        """Wait until ``address`` is (or is not) online; raises TimeoutError."""
        async with asyncio.timeout(timeout), self._presence_changed:
            await self._presence_changed.wait_for(lambda: self.is_online(address) == online)

    async def _work(self) -> None:
        while True:
            inbound = await self._inbox.get()
            self._inbox_bytes -= len(inbound.payload)
            try:
                message = self.open(inbound.payload, inbound.received_at)
            except RejectedMessage as err:
                continue_with = self._reject(inbound, err)
                if continue_with is not None:
                    self.on_rejected_call(*continue_with, err)
                continue
            self.received += 1
            if self.on_message is not None:
                try:
                    await self.on_message(message)
                except Exception:  # noqa: BLE001 - one bad message must not stop the inbox
                    _log.exception(
                        "%s: handling %s from %s failed", self.address, message.type, message.sender
                    )

    def on_rejected_call(self, sender: str, call_id: str, err: RejectedMessage) -> None:
        """Tell the call layer that a message claiming to belong to a call was refused."""
        if self.on_rejected is not None:
            self.on_rejected(sender, call_id, err)

    def _reject(self, inbound: Inbound, err: RejectedMessage) -> tuple[str, str] | None:
        self.rejected[err.reason] += 1
        self._quiet_log.warning(
            err.reason.value, "%s: dropped a message in its inbox: %s", self.address, err
        )
        if err.reason in (
            RejectReason.BAD_SIGNATURE,
            RejectReason.DECRYPT_FAILED,
            RejectReason.KEY_CHANGED,
        ):
            return _claimed_origin(inbound.payload)
        return None

    def open(self, data: bytes, received_at: float | None = None) -> Message:
        """Run every check on one envelope and return its message, or raise RejectedMessage.

        All but the token bucket per sender, which :meth:`admit` applies as the message arrives.
        """
        env = self._parse_for_me(data)
        keys = self._sender_keys(env.sender, env.type)
        if keys is None:
            raise RejectedMessage(
                RejectReason.UNKNOWN_SENDER, f"{env.sender} is not a pinned contact"
            )
        body = self._verify(env, keys)
        if self.contacts.get(env.sender) is None and self.contacts.leaving(env.sender) is None:
            self.contacts.trust(env.sender, keys)  # first use: pinned once a signature verified
        self.replay.check(env.sender, env.nonce, env.ts)
        if env.type == "invite":
            self.invite_limit.check(env.sender, time.monotonic())
            self.replay.check_new_call(env.sender, env.call_id)
        return Message(
            type=env.type,
            call_id=env.call_id,
            sender=env.sender,
            body=body,
            received_at=received_at if received_at is not None else time.monotonic(),
        )

    def _verify(self, env: Envelope, keys: PublicKeys) -> dict[str, Any]:
        try:
            return verify_and_open(env, sender_keys=keys, recipient=self.identity)
        except RejectedMessage as err:
            advertised = self.contacts.advertised.get(env.sender)
            if err.reason is RejectReason.BAD_SIGNATURE and advertised not in (None, keys):
                assert advertised is not None
                try:
                    verify_and_open(env, sender_keys=advertised, recipient=self.identity)
                except RejectedMessage:
                    raise err from None
                raise RejectedMessage(
                    RejectReason.KEY_CHANGED,
                    f"{env.sender} signs with a new key {advertised.fingerprint()} "
                    f"(pinned {keys.fingerprint()}); confirm it with `callbox keys trust`",
                ) from None
            raise


_NO_SENDER = ""
"""The bucket of envelopes that name no sender (no address is empty)."""


def _header_of(obj: object) -> tuple[str, str, str] | None:
    """The claimed (from, to, type) of a decoded envelope, or None if it has no such strings."""
    if not isinstance(obj, dict):
        return None
    header = obj.get("from"), obj.get("to"), obj.get("type")
    if not all(isinstance(value, str) and value for value in header):
        return None
    sender, recipient, message_type = header
    assert isinstance(sender, str) and isinstance(recipient, str)
    assert isinstance(message_type, str)
    return sender, recipient, message_type


def _claimed_origin(data: bytes) -> tuple[str, str] | None:
    try:
        obj = json.loads(data)
        return str(obj["from"]), str(obj["call_id"])
    except (ValueError, KeyError, TypeError, RecursionError):
        return None
