"""On a doorbell press: a push to every subscribed phone of the ring group, then its picture.

:meth:`RingNotifier.ring` runs beside the call's invites (the door spawns it), pushes every
target that has a subscription, online or not, concurrently, and deals with the answers: a
404/410 removes the subscription (logged), a 429/5xx or a timeout is logged and the
subscription kept. :meth:`RingNotifier.snapshot` sends the phones that took the first push a
second one of the same call with the visitor's picture (encoded on a worker thread while the
first push is under way), only while the call still rings; both carry the same ``Topic``.
The results of the last rings stay in :attr:`RingNotifier.results` (the first pushes) and
:attr:`RingNotifier.snapshot_results` (bounded) with the time each request left, for
``callbox status`` and the benchmark.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import av

from services.push.errors import PushError
from services.push.payload import RingPush, push_topic
from services.push.picture import PictureError, encode_push_jpeg
from services.push.sender import Outcome, PushResult, PushSender
from services.push.store import SubscriptionStore
from services.push.subscription import Subscription

_log = logging.getLogger(__name__)

KEPT_RESULTS = 100
"""Push results remembered (the most recent)."""
KEPT_RINGS = 8
"""Rings whose first pushes are remembered for their picture push (the most recent)."""


@dataclass
class _Ring:
    """One ring's first pushes: what they said, who took them, and when they were all answered."""

    push: RingPush | None = None
    deadline: float = 0.0
    """time.monotonic at which the ring times out."""
    delivered: list[Subscription] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)


class RingNotifier:
    """Pushes a ring to the subscribed phones among a call's targets."""

    def __init__(self, store: SubscriptionStore, sender: PushSender, *, door: str, name: str):
        self.store = store
        self.sender = sender
        self.door = door
        self.name = name
        self.results: collections.deque[PushResult] = collections.deque(maxlen=KEPT_RESULTS)
        self.snapshot_results: collections.deque[PushResult] = collections.deque(
            maxlen=KEPT_RESULTS
        )
        self.rings = 0
        """Rings handled to the end (every push answered, failed or timed out)."""
        self.snapshots = 0
        """Picture pushes handled to the end (sent, or given up with the reason logged)."""
        self._rings: collections.OrderedDict[str, _Ring] = collections.OrderedDict()

    def subscribed(self, targets: Sequence[str]) -> list[Subscription]:
        """The subscriptions of ``targets`` (those that have one)."""
        return [sub for t in targets if (sub := self.store.get(t)) is not None]

    async def ring(
        self, call_id: str, targets: Sequence[str], ring_timeout_s: float, *, bell: str = ""
    ) -> list[PushResult]:
        """Push the ring of ``call_id`` to every subscribed phone in ``targets``, concurrently.

        ``bell``: the label of the bell that rang, shown by the phone ("" for none).
        """
        record = _Ring(deadline=time.monotonic() + ring_timeout_s)
        self._rings[call_id] = record  # before any await: the picture push finds it
        while len(self._rings) > KEPT_RINGS:
            self._rings.popitem(last=False)
        try:
            return await self._ring(record, call_id, targets, ring_timeout_s, bell)
        finally:
            record.done.set()
            self.rings += 1

    async def _ring(
        self,
        record: _Ring,
        call_id: str,
        targets: Sequence[str],
        ring_timeout_s: float,
        bell: str,
    ) -> list[PushResult]:
        now_ms = int(time.time() * 1000)
        candidates = self.subscribed(targets)
        if not candidates:
            return []
        # before any await: a picture push starting now knows there is something to send
        try:
            record.push = _ring_push(self.door, self.name, call_id, now_ms, ring_timeout_s, bell)
        except ValueError as err:  # a label the config should have refused: pushed without it
            _log.warning("push of call %s: bell label %r left out: %s", call_id, bell, err)
            record.push = _ring_push(self.door, self.name, call_id, now_ms, ring_timeout_s, "")
        subs = []
        for sub in candidates:
            if sub.expired(now_ms):
                await self._forget(sub, "its expiration time has passed")
            else:
                subs.append(sub)
        if not subs:
            return []
        payload = record.push.payload()
        ttl = max(1, round(ring_timeout_s))
        topic = push_topic(call_id)
        results = await asyncio.gather(
            *(self._push(sub, payload, ttl, topic, self.results) for sub in subs)
        )
        record.delivered = [
            sub for sub, r in zip(subs, results, strict=True) if r.outcome is Outcome.SENT
        ]
        return list(results)

    async def snapshot(
        self, call_id: str, frame: av.VideoFrame, ringing: Callable[[], bool]
    ) -> list[PushResult]:
        """Push the ring of ``call_id`` again with ``frame`` as the visitor's picture.

        Only to the phones that took the first push (it is waited for while the picture is
        encoded on a worker thread), only while ``ringing()`` is true and the ring has not
        timed out; the same ``Topic`` as the first, the ring's remaining time as ``TTL``.
        Nothing (logged) when this door did not push the ring, when the picture cannot be
        made, or when the call no longer rings.
        """
        try:
            return await self._snapshot(call_id, frame, ringing)
        finally:
            self.snapshots += 1

    async def _snapshot(
        self, call_id: str, frame: av.VideoFrame, ringing: Callable[[], bool]
    ) -> list[PushResult]:
        record = self._rings.get(call_id)
        if record is None or record.push is None:
            _log.debug("%s: call %s pushes nobody: no picture push", self.door, call_id)
            return []
        push = record.push
        # encoded on a worker thread while the first pushes are still being answered
        encoding = asyncio.ensure_future(encode_push_jpeg(frame, push.snapshot_budget()))
        try:
            await record.done.wait()
            if not record.delivered:
                return []
            jpeg = await encoding
            payload = push.snapshot_payload(jpeg)
        except (PictureError, ValueError) as err:
            _log.error("%s: no picture push for call %s: %s", self.door, call_id, err)
            return []
        finally:
            _settle(encoding)
        remaining_s = record.deadline - time.monotonic()
        if not ringing() or remaining_s <= 0:
            _log.info("%s: call %s no longer rings: no picture push", self.door, call_id)
            return []
        ttl = max(1, round(remaining_s))
        topic = push_topic(call_id)
        results = await asyncio.gather(
            *(
                self._push(sub, payload, ttl, topic, self.snapshot_results, "picture")
                for sub in record.delivered
            )
        )
        return list(results)

    async def _push(
        self,
        sub: Subscription,
        payload: bytes,
        ttl: int,
        topic: str,
        kept: collections.deque[PushResult],
        what: str = "ring",
    ) -> PushResult:
        result = await self.sender.send(sub, payload, ttl, topic=topic)
        kept.append(result)
        host = sub.endpoint.split("/")[2]
        if result.outcome is Outcome.SENT:
            _log.info("%s: pushed the %s to %s (%s)", self.door, what, sub.address, host)
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


def _settle(task: asyncio.Future[bytes]) -> None:
    """A picture no longer wanted: stop waiting for it, and retrieve a failure it had."""
    if not task.done():
        task.cancel()  # the thread finishes on its own; its picture is dropped
    elif not task.cancelled() and task.exception() is not None:
        _log.debug("picture encoding failed after it was no longer wanted: %s", task.exception())


def _ring_push(
    door: str, name: str, call_id: str, at_ms: int, ring_timeout_s: float, bell: str
) -> RingPush:
    """The facts of one ring (ValueError: ``bell`` is no label a push may carry)."""
    return RingPush(
        door=door,
        name=name,
        call_id=call_id,
        at_ms=at_ms,
        ring_timeout_ms=int(ring_timeout_s * 1000),
        bell=bell,
    )
