"""Card and code (``[access] mode = "card_and_code"``): the card waiting for its resident's code.

In that mode a valid card does not open by itself: it starts a window of ``window_s`` in
which the keypad's access code must be the code of the same resident. A card and a code
belong to one resident when their entries have the same name and the same flat
(`AccessEntry.pairs_with`). The window ends at the first code typed (right or wrong), at
its timeout, or when another card is read. A visitor's code opens alone (a visitor has no
card); a resident's code alone does not. One window at a time: a door has one keypad.

Thread-safe (the checks run in threads); the clock is `AccessControl`'s (unix time).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from services.access.entries import AccessEntry

__all__ = ["CARD_AND_CODE", "CARD_OR_CODE", "MODES", "PendingCard", "SecondFactor"]

CARD_OR_CODE = "card_or_code"
"""Either a card or a code opens (the default)."""
CARD_AND_CODE = "card_and_code"
"""A card, then its resident's code, opens; a visitor's code opens alone."""
MODES = (CARD_OR_CODE, CARD_AND_CODE)


@dataclass(frozen=True)
class PendingCard:
    """A valid card read at ``via``, waiting until ``until`` (unix time) for the code."""

    card: AccessEntry
    via: str
    until: float

    @property
    def who(self) -> str:
        """The card's owner, for logs and the door opener."""
        return self.card.label


class SecondFactor:
    """At most one card waiting for its code, with its deadline."""

    def __init__(self, window_s: float) -> None:
        """``window_s``: how long a card waits for the code."""
        if window_s <= 0:
            raise ValueError("the second factor's window must be positive")
        self.window_s = window_s
        self._pending: PendingCard | None = None
        self._lock = threading.Lock()

    def start(self, card: AccessEntry, via: str, now: float) -> PendingCard:
        """``card`` (valid, read at ``via`` at ``now``) now waits for its code."""
        pending = PendingCard(card, via, now + self.window_s)
        with self._lock:
            self._pending = pending
        return pending

    def end(self) -> PendingCard | None:
        """End the window (a code was typed or another card read): the card that waited."""
        with self._lock:
            pending, self._pending = self._pending, None
        return pending

    def expire(self, now: float) -> PendingCard | None:
        """End the window if its time is up at ``now``: the card that waited in vain."""
        with self._lock:
            pending = self._pending
            if pending is None or now < pending.until:
                return None
            self._pending = None
        return pending

    @property
    def pending(self) -> PendingCard | None:
        """The card waiting for its code, if any (whether or not its time is up)."""
        return self._pending
