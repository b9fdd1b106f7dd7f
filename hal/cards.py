"""Card and tag readers at the door: the ``CardReader`` interface and its simulated back-end.

A reader reports each card it reads as a ``CardRead``: which reader, the card's format
and its number as text. Back-ends: Wiegand 26/34 on two GPIO inputs (``hal.wiegand``), a
PN532 NFC reader on I2C or SPI (``hal.pn532``), and ``SimCardReader`` for the sim board
and tests. Whether a card opens the door is the service's business (``services/access``).
Callbacks run in the event loop thread.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Callable
from dataclasses import dataclass

from hal.gpio import fire
from hal.sim_input import SimulatedInput

__all__ = ["CARD_FORMATS", "CardRead", "CardReader", "SimCardReader"]

CARD_FORMATS = ("wiegand26", "wiegand34", "nfc")
"""``wiegand26``/``wiegand34``: a Wiegand frame, its number ``<facility>:<card>`` in decimal;
``nfc``: an ISO 14443A tag read by a PN532, its number the UID in lowercase hex."""

_NUMBER = {
    "wiegand26": re.compile(r"\d{1,3}:\d{1,5}"),
    "wiegand34": re.compile(r"\d{1,5}:\d{1,5}"),
    "nfc": re.compile(r"(?:[0-9a-f]{2}){4,10}"),
}


@dataclass(frozen=True)
class CardRead:
    """One card presented to ``reader``: its ``format`` (``CARD_FORMATS``) and ``number``.

    The number is what identifies the card to the access list (``callbox access add
    --card``); it is checked on construction (ValueError naming what is wrong).
    """

    reader: str
    format: str
    number: str

    def __post_init__(self) -> None:
        """Refuse unknown formats and numbers that are not of their format."""
        pattern = _NUMBER.get(self.format)
        if pattern is None:
            raise ValueError(f"unknown card format {self.format!r} (known: {CARD_FORMATS})")
        if not pattern.fullmatch(self.number):
            raise ValueError(f"{self.format} card number {self.number!r} is malformed")

    @property
    def card_id(self) -> str:
        """``<format>:<number>``, the form the access list stores (hashed)."""
        return f"{self.format}:{self.number}"


class CardReader(abc.ABC):
    """A card reader; the service sets ``on_card`` (one call per card read)."""

    name: str
    on_card: Callable[[CardRead], None] | None

    def __init__(self, name: str) -> None:
        """A reader called ``name`` (for logs, status and ``CardRead.reader``)."""
        self.name = name
        self.on_card = None

    @property
    def is_connected(self) -> bool:
        """False while the reader is known not to answer (a PN532 off its bus); for status."""
        return True

    @abc.abstractmethod
    async def start(self) -> None:
        """Start reporting cards to ``on_card`` (call from the event loop)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop reporting and release the device; calling it again does nothing."""

    def card_read(self, read: CardRead) -> None:
        """Report ``read`` to ``on_card`` (back-ends call this in the loop thread)."""
        fire(f"{self.name} card", self.on_card, read)


class SimCardReader(SimulatedInput, CardReader):
    """A reader shown cards by code: the sim board's, and the tests'."""

    def __init__(self, name: str = "sim-reader") -> None:
        """A simulated reader, not started."""
        super().__init__(name)

    def present(self, card_format: str, number: str) -> CardRead:
        """Read a card of ``card_format`` with ``number``; the read it reported."""
        self.require_started()
        read = CardRead(self.name, card_format, number)
        self.card_read(read)
        return read
