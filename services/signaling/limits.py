"""Limits that keep a flood outside: rates per sender, and a log that cannot flood.

:class:`SenderRateLimit` gives every claimed sender its own token bucket; the endpoint asks
it before the expensive checks (signature, decryption), so a flood neither queues nor burns
CPU beyond what one sender's budget allows. :class:`InviteRateLimit` bounds the invites of
an authenticated sender (each one rings a unit). :class:`QuietLog` logs the first few drops of
each kind per interval and then one summary line, so a flood is visible in the log without
writing a line per message.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from services.signaling.base import Inbound
from services.signaling.errors import RejectedMessage, RejectReason

SENDER_RATE_PER_S = 20.0
"""Messages a second one sender may keep sending (a call takes a few; DTMF a few more)."""

SENDER_BURST = 60
"""Messages one sender may send at once (a ring group's set-up, a burst of DTMF digits)."""

MAX_SENDERS = 1024
"""Buckets kept at most (the least recently used go first); only known senders get one."""


@dataclass
class _Bucket:
    tokens: float
    updated: float


class SenderRateLimit:
    """A token bucket per claimed sender: ``rate`` messages a second, bursts of ``burst``.

    Keyed by the address a message *claims* to come from, before anything verified it: a
    flood that claims a contact's address delays that contact's messages until the flood
    stops (its bucket refills in ``burst / rate`` seconds), and affects no other sender.
    """

    def __init__(
        self,
        rate: float = SENDER_RATE_PER_S,
        burst: int = SENDER_BURST,
        *,
        max_senders: int = MAX_SENDERS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._max_senders = max_senders
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def allow(self, sender: str) -> bool:
        """Take one token from ``sender``'s bucket; False when it is empty."""
        now = self._clock()
        bucket = self._buckets.pop(sender, None)
        if bucket is None:
            bucket = _Bucket(tokens=float(self.burst), updated=now)
        bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        self._buckets[sender] = bucket  # most recently used last
        while len(self._buckets) > self._max_senders:
            self._buckets.popitem(last=False)
        if bucket.tokens < 1.0:
            return False
        bucket.tokens -= 1.0
        return True


class InviteRateLimit:
    """At most ``count`` invites per ``period_s`` from one sender (a flood stays outside)."""

    def __init__(self, count: int = 5, period_s: float = 10.0) -> None:
        self.count = count
        self.period_s = period_s
        self._seen: dict[str, collections.deque[float]] = {}

    def check(self, sender: str, now: float) -> None:
        """Refuse the invite when ``sender`` is over its budget."""
        times = self._seen.setdefault(sender, collections.deque())
        while times and now - times[0] > self.period_s:
            times.popleft()
        if len(times) >= self.count:
            raise RejectedMessage(
                RejectReason.RATE_LIMITED,
                f"{sender} sent more than {self.count} invites in {self.period_s:.0f} s",
            )
        times.append(now)


class QuietLog:
    """Logs at most ``per_interval`` lines of each kind every ``interval_s``, then a summary.

    The summary ("... and 5321 more in the last 10 s") is written with the first line of the
    next interval, so nothing is hidden: only the flood of identical lines is.
    """

    def __init__(
        self,
        logger: logging.Logger,
        *,
        per_interval: int = 5,
        interval_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._per_interval = per_interval
        self._interval_s = interval_s
        self._clock = clock
        self._started: dict[str, float] = {}
        self._logged: collections.Counter[str] = collections.Counter()
        self._held_back: collections.Counter[str] = collections.Counter()

    def warning(self, kind: str, message: str, *args: object) -> None:
        """Log ``message % args`` as a warning unless ``kind`` used up its lines."""
        now = self._clock()
        started = self._started.get(kind)
        if started is None or now - started > self._interval_s:
            held_back = self._held_back.pop(kind, 0)
            if held_back:
                self._logger.warning(
                    "... and %d more %s in the last %.0f s", held_back, kind, self._interval_s
                )
            self._started[kind] = now
            self._logged[kind] = 0
        if self._logged[kind] < self._per_interval:
            self._logged[kind] += 1
            self._logger.warning(message, *args)
        else:
            self._held_back[kind] += 1


class LatestAnnouncements:
    """Presence and profile messages over their rate: the latest of each, applied later.

    A presence or a profile is state, not an event: dropping the one that came over the rate
    could leave an endpoint believing that a phone is offline which has just come back (a page
    closed and reopened a few times in a row). So the latest message per kind and address
    waits, one slot each (at most ``max_entries``; a newer one replaces it, the oldest slot
    is pushed out when full), and is handed to ``apply`` once the address's bucket in
    ``limit`` has a token again. What is replaced was superseded anyway.
    """

    def __init__(
        self,
        limit: SenderRateLimit,
        apply: Callable[[Inbound], None],
        *,
        max_entries: int = MAX_SENDERS,
    ) -> None:
        self.limit = limit
        self._apply = apply
        self._max_entries = max_entries
        self._waiting: OrderedDict[tuple[str, str], Inbound] = OrderedDict()
        self._timer: asyncio.TimerHandle | None = None
        self.replaced = 0
        """Messages superseded by a newer one of the same kind and address while waiting."""

    def __len__(self) -> int:
        return len(self._waiting)

    def hold(self, inbound: Inbound) -> None:
        """Keep ``inbound`` (over its rate) until its address may be heard again."""
        key = (inbound.kind, inbound.address)
        if self._waiting.pop(key, None) is not None:
            self.replaced += 1
        self._waiting[key] = inbound
        while len(self._waiting) > self._max_entries:
            self._waiting.popitem(last=False)
            self.replaced += 1
        self._schedule()

    def close(self) -> None:
        """Stop: what still waits is dropped (the endpoint is going away)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._waiting.clear()

    def _schedule(self) -> None:
        if self._timer is None and self._waiting:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(1.0 / self.limit.rate, self._release)

    def _release(self) -> None:
        self._timer = None
        for key, inbound in list(self._waiting.items()):
            if self.limit.allow(inbound.address):
                del self._waiting[key]
                self._apply(inbound)
        self._schedule()
