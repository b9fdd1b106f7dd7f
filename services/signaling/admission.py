"""Who may hold a socket on the broker's fronts, and the drops, counted and logged sparingly.

A connection is *pending* from its TCP accept until its first MQTT packet, a well-formed
CONNECT, has arrived; then it is *through* and mosquitto takes over. :class:`Admission` caps
pending connections per source address and in all, and all connections together. When the
pending total is full, a newcomer from a quieter address evicts the oldest pending connection
of the busiest one, so an attacker holding many addresses cannot lock out a unit either.
:class:`DropLog` counts every drop by :class:`Drop` and writes at most one log line per
interval, so a flood cannot fill the log.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass

from services.signaling.errors import SignalingError


@dataclass(frozen=True, kw_only=True)
class FrontLimits:
    """The limits of one front listener (TCP or WebSockets)."""

    connect_timeout_s: float = 3.0
    """From accept to a whole CONNECT (TLS and WebSocket handshakes included)."""
    max_pending_per_source: int = 8
    """Connections not yet through CONNECT, per source address."""
    max_pending: int = 128
    """Connections not yet through CONNECT, in all."""
    max_connections: int = 256
    """All connections of the listener, pending or through (caps the pending ones too)."""
    max_packet_size: int = 131072
    """The largest CONNECT (mosquitto's max_packet_size)."""

    def __post_init__(self) -> None:
        if self.connect_timeout_s <= 0:
            raise SignalingError(f"connect_timeout_s {self.connect_timeout_s} must be positive")
        if not 1 <= self.max_pending_per_source <= self.max_pending:
            raise SignalingError(
                f"front limits must satisfy 1 <= max_pending_per_source "
                f"({self.max_pending_per_source}) <= max_pending ({self.max_pending})"
            )
        if self.max_connections < 1:
            raise SignalingError(f"max_connections {self.max_connections} must be at least 1")


class Drop(enum.Enum):
    """Why a front closed a connection before mosquitto had it."""

    PER_SOURCE = "too many unauthenticated connections from its address"
    PENDING_FULL = "too many unauthenticated connections in all"
    FULL = "connection cap reached"
    EVICTED = "evicted for a newcomer from a quieter address"
    DEADLINE = "no CONNECT within the deadline"
    BAD_FIRST_PACKET = "first packet is not a well-formed CONNECT"
    HANDSHAKE = "TLS or WebSocket handshake failed"
    GONE = "closed by the client before CONNECT"
    BROKER_DOWN = "mosquitto did not take the connection"
    ACCEPT_FAILED = "accept() failed (no file descriptor left?)"


class Ticket:
    """One admitted connection's place: pending until :meth:`through`, freed by :meth:`release`."""

    def __init__(self, admission: Admission, source: str, evict: Callable[[], None]) -> None:
        """Made by :meth:`Admission.admit` only."""
        self.source = source
        self.evicted = False
        self._admission = admission
        self._evict = evict
        self._state = "pending"

    def through(self) -> None:
        """The connection sent its CONNECT: no longer pending (it still counts in all)."""
        if self._state == "pending":
            self._admission._unpend(self)
            self._state = "through"

    def release(self) -> None:
        """The connection is gone: free its place (idempotent)."""
        if self._state == "pending":
            self._admission._unpend(self)
        if self._state != "released":
            self._admission._count -= 1
            self._state = "released"

    def evict(self) -> None:
        """Close this pending connection for a newcomer (it frees its place when it ends)."""
        if self._state != "pending":
            return
        self.evicted = True
        self._admission._unpend(self)
        self._state = "evicted"
        self._evict()


class Admission:
    """Counts a listener's connections and admits a new one, or says which :class:`Drop` it is."""

    def __init__(self, limits: FrontLimits) -> None:
        """Nothing is admitted yet."""
        self.limits = limits
        self._pending: dict[str, dict[Ticket, None]] = {}  # by source, oldest first
        self._pending_total = 0
        self._count = 0

    @property
    def pending(self) -> int:
        """Connections not yet through CONNECT."""
        return self._pending_total

    @property
    def connections(self) -> int:
        """All admitted connections not yet released."""
        return self._count

    def admit(self, source: str, evict: Callable[[], None]) -> Ticket | Drop:
        """A ticket for a new connection from ``source``, or why it is refused.

        ``evict`` closes it, should a newcomer need its place later.
        """
        limits = self.limits
        if self._count >= limits.max_connections:
            return Drop.FULL
        mine = self._pending.get(source, {})
        if len(mine) >= limits.max_pending_per_source:
            return Drop.PER_SOURCE
        if self._pending_total >= limits.max_pending:
            busiest = max(self._pending.values(), key=len)
            if len(busiest) <= len(mine) + 1:
                return Drop.PENDING_FULL
            next(iter(busiest)).evict()
        ticket = Ticket(self, source, evict)
        self._pending.setdefault(source, {})[ticket] = None
        self._pending_total += 1
        self._count += 1
        return ticket

    def _unpend(self, ticket: Ticket) -> None:
        mine = self._pending.get(ticket.source)
        if mine is None or ticket not in mine:
            return
        del mine[ticket]
        self._pending_total -= 1
        if not mine:
            del self._pending[ticket.source]


class DropLog:
    """Counts drops by reason and logs them: the first at once, then one summary per interval."""

    def __init__(self, name: str, logger: logging.Logger, *, interval_s: float = 60.0) -> None:
        """``name`` says which listener in each line (e.g. ``MQTT front 0.0.0.0:1883``)."""
        self.name = name
        self.totals: collections.Counter[Drop] = collections.Counter()
        """Every drop since the start, by reason."""
        self._log = logger
        self._interval = interval_s
        self._window: collections.Counter[Drop] = collections.Counter()
        self._sources: collections.Counter[str] = collections.Counter()
        self._last_line: float | None = None
        self._timer: asyncio.TimerHandle | None = None

    def record(self, reason: Drop, source: str) -> None:
        """Count one drop; log it now or in the next summary."""
        self.totals[reason] += 1
        self._window[reason] += 1
        self._sources[source] += 1
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._last_line is None or now - self._last_line >= self._interval:
            self.flush()
        elif self._timer is None:
            self._timer = loop.call_at(self._last_line + self._interval, self.flush)

    def flush(self) -> None:
        """Log what was dropped since the last line, if anything."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._window:
            return
        reasons = ", ".join(f"{count} {drop.value}" for drop, count in self._window.most_common())
        (source, most), *_ = self._sources.most_common(1)
        self._log.warning(
            "%s dropped %d connection(s): %s; most from %s (%d) [totals: %s]",
            self.name,
            sum(self._window.values()),
            reasons,
            source,
            most,
            ", ".join(f"{d.name.lower()} {n}" for d, n in sorted(self.totals.items(), key=_name)),
        )
        self._window.clear()
        self._sources.clear()
        self._last_line = asyncio.get_running_loop().time()

    def close(self) -> None:
        """Log what is still unlogged and stop the summary timer."""
        self.flush()


def _name(item: tuple[Drop, int]) -> str:
    return item[0].name
