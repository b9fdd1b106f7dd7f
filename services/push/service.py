"""Web Push at a door station: the store, the sender, the registrar and the notifier together.

The composition root builds one from ``[push]`` (device/daemon) and gives it to the door
station, which routes the registration messages to it (``Calls.handle_messages``) and calls
:meth:`PushService.ring` beside the invites of every doorbell call, then
:meth:`PushService.ring_snapshot` with the visitor's camera frame.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av

from hal.closing import CloseOnce
from services.push.hosts import DEFAULT_PUSH_HOSTS, PushHosts
from services.push.notifier import RingNotifier
from services.push.registration import REQUEST_TYPES, PushRegistrar
from services.push.sender import DEFAULT_TIMEOUT_S, PushResult, PushSender
from services.push.store import DEFAULT_MAX_SUBSCRIPTIONS, SubscriptionStore
from services.push.vapid import VapidKey
from services.signaling.endpoint import SignalingEndpoint

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PushSettings:
    """What ``[push]`` says, with the key already loaded."""

    vapid: VapidKey
    subject: str
    """The VAPID ``sub``: ``mailto:`` or ``https:`` contact of whoever runs the site."""
    hosts: tuple[str, ...] = DEFAULT_PUSH_HOSTS
    max_subscriptions: int = DEFAULT_MAX_SUBSCRIPTIONS
    timeout_s: float = DEFAULT_TIMEOUT_S
    store: Path | None = None
    """The subscriptions' file (None: memory only)."""


class PushService:
    """A door station's Web Push: registrations in, ring pushes out."""

    def __init__(
        self,
        settings: PushSettings,
        signaling: SignalingEndpoint,
        *,
        name: str,
        targets: Callable[[], Collection[str]] = tuple,
    ) -> None:
        self.settings = settings
        hosts = PushHosts(settings.hosts)
        self.store = SubscriptionStore(
            settings.store, hosts, max_subscriptions=settings.max_subscriptions
        )
        self.sender = PushSender(settings.vapid, settings.subject, timeout_s=settings.timeout_s)
        self.registrar = PushRegistrar(signaling, self.store, hosts, targets=targets)
        self.notifier = RingNotifier(
            self.store, self.sender, door=signaling.address, name=name or signaling.address
        )
        self.request_types = REQUEST_TYPES
        self._close = CloseOnce()

    def use_targets(self, targets: Callable[[], Collection[str]]) -> None:
        """Where the door's ring targets come from now (they may subscribe; see registration)."""
        self.registrar.targets = targets

    async def start(self) -> None:
        """Load the stored subscriptions and open the HTTP session."""
        await self.store.load()
        await self.sender.start()
        _log.info(
            "%s: Web Push on, %d phone(s) subscribed",
            self.registrar.signaling.address,
            len(self.store),
        )

    async def close(self) -> None:
        """Close the HTTP session; idempotent."""
        if not await self._close.begin():
            return
        try:
            await self.sender.close()
        finally:
            self._close.finish()

    def can_wake(self, address: str) -> bool:
        """True when ``address`` has a live subscription: a ring pushes it awake."""
        sub = self.store.get(address)
        return sub is not None and not sub.expired(int(time.time() * 1000))

    async def ring(
        self, call_id: str, targets: Sequence[str], ring_timeout_s: float, *, bell: str = ""
    ) -> list[PushResult]:
        """Push the ring of ``call_id`` to the subscribed phones among ``targets``.

        ``bell``: the label of the entrance panel's bell that rang ("" for the default one).
        """
        return await self.notifier.ring(call_id, targets, ring_timeout_s, bell=bell)

    async def ring_snapshot(
        self, call_id: str, frame: av.VideoFrame, ringing: Callable[[], bool]
    ) -> list[PushResult]:
        """Push the ring of ``call_id`` again with ``frame`` as the visitor's picture.

        To the phones that took its first push, while ``ringing()`` (see
        :meth:`RingNotifier.snapshot`).
        """
        return await self.notifier.snapshot(call_id, frame, ringing)

    def status(self) -> dict[str, Any]:
        """What ``callbox status`` shows: who is subscribed, what the last pushes did."""
        return {
            "subscribed": self.store.addresses(),
            "refused_registrations": self.registrar.refused,
            "last_pushes": [
                {"to": r.address, "outcome": r.outcome.value, "status": r.status}
                for r in list(self.notifier.results)[-5:]
            ],
        }
