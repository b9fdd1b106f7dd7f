"""One access attempt at a door station's entrance, as onlookers (Home Assistant) see it."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["EntranceAttempt"]


@dataclass(frozen=True)
class EntranceAttempt:
    """One access attempt at the entrance, as onlookers (Home Assistant) are told of it.

    ``kind``: ``code``, ``card`` or ``card+code`` (card-and-code mode); ``via``: the keypad's
    or the card reader's name; ``who``: the entry's label ("" when no entry matched);
    ``reason``: why it was refused ("" when granted); ``card``: the number of a card the
    list does not know, else "". Never a code, never the number of a card on the list.
    """

    granted: bool
    kind: str
    via: str
    who: str = ""
    reason: str = ""
    card: str = ""
