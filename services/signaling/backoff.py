"""Reconnection delays with full jitter, so that a site does not reconnect all at once.

When the site broker restarts, every endpoint of the building loses its connection in the
same instant. Retrying after the same delays would bring them all back in the same instant
too, and again after every refusal (a stampede). Each delay is drawn at random between 0
and an exponentially growing, bounded ceiling ("full jitter"): the reconnections spread
over the ceiling's window, and the window widens while the broker stays away.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from services.signaling.errors import SignalingError

RECONNECT_BASE_S = 0.25
"""The ceiling of the first delay after a connection is lost."""
RECONNECT_MAX_S = 3.0
"""The largest ceiling: after a long outage an endpoint is back within this of the broker."""


class Backoff:
    """The delays before each reconnection attempt: ``uniform(0, min(cap, base * 2**n))``.

    ``n`` counts the attempts since the last connection that worked (:meth:`reset`).
    ``uniform`` is injected so that tests can check the bounds without chance.
    """

    def __init__(
        self,
        base_s: float = RECONNECT_BASE_S,
        cap_s: float = RECONNECT_MAX_S,
        uniform: Callable[[float, float], float] | None = None,
    ) -> None:
        if not 0 < base_s <= cap_s:
            raise SignalingError(f"backoff needs 0 < base ({base_s}) <= cap ({cap_s})")
        self.base_s = base_s
        self.cap_s = cap_s
        self._uniform = uniform or random.SystemRandom().uniform
        self.attempts = 0

    def ceiling(self) -> float:
        """The largest delay the next attempt may wait."""
        return min(self.cap_s, self.base_s * 2.0 ** min(self.attempts, 32))

    def next_delay(self) -> float:
        """The delay before the next attempt (and count that attempt)."""
        delay = self._uniform(0.0, self.ceiling())
        self.attempts += 1
        return delay

    def reset(self) -> None:
        """A connection worked: the next loss starts from the smallest ceiling again."""
        self.attempts = 0
