"""On a doorbell press: one push to every subscribed phone of the ring group, all at once.

:meth:`RingNotifier.ring` runs beside the call's invites (the door spawns it), pushes every
target that has a subscription, online or not, concurrently, and deals with the answers: a
404/410 removes the subscription (logged), a 429/5xx or a timeout is logged and the
subscription kept. The results of the last rings stay in :attr:`RingNotifier.results`
(bounded) with the time each request left, for ``callbox status`` and the benchmark.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Sequence

from services.push.errors import PushError
from services.push.payload import RingPush
from services.push.sender import Outcome, PushResult, PushSender
from services.push.store import SubscriptionStore
from services.push.subscription import Subscription

_log = logging.getLogger(__name__)

KEPT_RESULTS = 100
"""Push results remembered (the most recent)."""


class RingNotifier:
    """Pushes a ring to the subscribed phones among a call's targets."""

    def __init__(self, store: SubscriptionStore, sender: PushSender, *, door: str, name: str):
        self.store = store
        self.sender = sender
        self.door = door
        self.name = name
        self.results: collections.deque[PushResult] = collections.deque(maxlen=KEPT_RESULTS)
        self.rings = 0
        """Rings handled to the end (every push answered, failed or timed out)."""

    def subscribed(self, targets: Sequence[str]) -> list[Subscription]:
        """The subscriptions of ``targets`` (those that have one)."""
        return [sub for t in targets if (sub := self.store.get(t)) is not None]

    async def ring(
        self, call_id: str, targets: Sequence[str], ring_timeout_s: float
    ) -> list[PushResult]:
        """Push the ring of ``call_id`` to every subscribed phone in ``targets``, concurrently."""
        try:
            return await self._ring(call_id, targets, ring_timeout_s)
        finally:
            self.rings += 1

    async def _ring(
        self, call_id: str, targets: Sequence[str], ring_timeout_s: float
    ) -> list[PushResult]:
        now_ms = int(time.time() * 1000)
        subs = []
        for sub in self.subscribed(targets):
            if sub.expired(now_ms):
                await self._forget(sub, "its expiration time has passed")
            else:
                subs.append(sub)
        if not subs:
            return []
        push = RingPush(
            door=self.door,
            name=self.name,
            call_id=call_id,
            at_ms=now_ms,
            ring_timeout_ms=int(ring_timeout_s * 1000),
        )
        payload = push.payload()
        ttl = max(1, round(ring_timeout_s))
        results = await asyncio.gather(*(self._push(sub, payload, ttl) for sub in subs))
        return list(results)

    async def _push(self, sub: Subscription, payload: bytes, ttl: int) -> PushResult:
        result = await self.sender.send(sub, payload, ttl)
        self.results.append(result)
        host = sub.endpoint.split("/")[2]
        if result.outcome is Outcome.SENT:
            _log.info("%s: pushed the ring to %s (%s)", self.door, sub.address, host)
        elif result.outcome is Outcome.GONE:
            await self._forget(sub, f"the push service answered {result.status}")
        elif result.outcome is Outcome.REFUSED:
            _log.error(
                "%s: push to %s refused by %s (%s): %s; the subscription is kept",
                self.door,
                sub.address,
                host,
                result.status,
                result.detail,
            )
        else:
            _log.warning(
                "%s: push to %s not delivered by %s (%s): %s; kept, the next ring tries again",
                self.door,
                sub.address,
                host,
                result.status or result.outcome.value,
                result.detail,
            )
        return result

    async def _forget(self, sub: Subscription, why: str) -> None:
        try:
            removed = await self.store.remove(sub.address, sub.endpoint)
        except PushError as err:
            _log.error("%s: %s", self.door, err)
            removed = True  # gone from memory: nothing is sent to it any more
        if removed:
            _log.warning(
                "%s: push subscription of %s removed: %s (the phone subscribes again when "
                "its page next opens)",
                self.door,
                sub.address,
                why,
            )
