"""``push_subscribe`` / ``push_unsubscribe`` at a door station, answered with ``push_status``.

Only a pinned, unblocked contact whose role is ``web`` (a browser phone) or that is one of the
door's ring targets may subscribe; a registration is rate-limited per sender. Every refusal is
answered with ``push_status {"subscribed": false, "error": <why>}`` and logged; the signaling
endpoint has already refused anything unsigned or from an unpinned sender.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection

from services.push.errors import PushError
from services.push.hosts import PushHosts
from services.push.store import SubscriptionStore
from services.push.subscription import parse_subscribe
from services.signaling.endpoint import Message, SignalingEndpoint
from services.signaling.errors import SignalingError
from services.signaling.limits import QuietLog, SenderRateLimit

_log = logging.getLogger(__name__)

PHONE_ROLE = "web"
"""The contact role of a browser phone (``[[contacts]] role``)."""
REGISTRATIONS_PER_S = 0.1
"""Registrations a second one sender may keep sending (one every 10 s) ..."""
REGISTRATION_BURST = 5
"""... and at once (a page opened a few times in a row)."""
REQUEST_TYPES = ("push_subscribe", "push_unsubscribe")
"""What a door takes; it only sends ``push_status``."""


class PushRegistrar:
    """Keeps the subscriptions of the phones allowed to register with this door."""

    def __init__(
        self,
        signaling: SignalingEndpoint,
        store: SubscriptionStore,
        hosts: PushHosts,
        *,
        targets: Callable[[], Collection[str]],
        limit: SenderRateLimit | None = None,
    ) -> None:
        self.signaling = signaling
        self.store = store
        self.hosts = hosts
        self.targets = targets
        self.limit = limit or SenderRateLimit(REGISTRATIONS_PER_S, REGISTRATION_BURST)
        self.refused = 0
        self._quiet = QuietLog(_log)

    def may_register(self, address: str) -> str:
        """Why ``address`` may not register a push subscription here, or "" when it may."""
        contact = self.signaling.contacts.get(address)
        if contact is None:
            return f"{address} is not a pinned contact of this door"
        if contact.blocked:
            return f"{address} is blocked on this door"
        if contact.role != PHONE_ROLE and address not in self.targets():
            return (
                f"{address} is neither a browser phone (contact role {PHONE_ROLE!r}) nor a "
                "target this door rings"
            )
        return ""

    async def on_message(self, message: Message) -> None:
        """Take one ``push_subscribe`` or ``push_unsubscribe`` and answer ``push_status``."""
        if message.type not in REQUEST_TYPES:
            self._quiet.warning(
                "push_other",
                "%s: %s from %s ignored: a door only takes push_subscribe and push_unsubscribe",
                self.signaling.address,
                message.type,
                message.sender,
            )
            return
        if not self.limit.allow(message.sender):
            await self._refuse(
                message,
                f"more than {self.limit.burst} push registrations at once or one every "
                f"{1 / self.limit.rate:.0f} s: try again later",
            )
            return
        if message.type == "push_unsubscribe":
            await self._unsubscribe(message)
        else:
            await self._subscribe(message)

    async def _subscribe(self, message: Message) -> None:
        why = self.may_register(message.sender)
        if why:
            await self._refuse(message, why)
            return
        try:
            sub = parse_subscribe(
                message.sender, message.body, self.hosts, now_ms=int(time.time() * 1000)
            )
            await self.store.put(sub)
        except PushError as err:
            await self._refuse(message, str(err))
            return
        _log.info(
            "%s: push subscription of %s kept (%s)",
            self.signaling.address,
            message.sender,
            sub.endpoint.split("/")[2],
        )
        await self._reply(message, subscribed=True, error="")

    async def _unsubscribe(self, message: Message) -> None:
        try:
            removed = await self.store.remove(message.sender)
        except PushError as err:
            _log.error("%s: %s", self.signaling.address, err)
            await self._reply(message, subscribed=False, error=str(err))
            return
        if removed:
            _log.info(
                "%s: push subscription of %s withdrawn", self.signaling.address, message.sender
            )
        await self._reply(message, subscribed=False, error="")

    async def _refuse(self, message: Message, why: str) -> None:
        self.refused += 1
        self._quiet.warning(
            "push_refused",
            "%s: %s from %s refused: %s",
            self.signaling.address,
            message.type,
            message.sender,
            why,
        )
        subscribed = self.store.get(message.sender) is not None
        await self._reply(message, subscribed=subscribed, error=why)

    async def _reply(self, message: Message, *, subscribed: bool, error: str) -> None:
        try:
            await self.signaling.send(
                message.sender,
                "push_status",
                message.call_id,
                {"subscribed": subscribed, "error": error},
            )
        except SignalingError as err:
            _log.warning(
                "%s: could not answer %s to %s: %s",
                self.signaling.address,
                message.type,
                message.sender,
                err,
            )
