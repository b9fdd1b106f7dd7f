"""Shared by the access tests: a clock to set by hand, enrolling entries, an entrance."""

from __future__ import annotations

import asyncio
import datetime
from pathlib import Path
from typing import Any

from hal.cards import SimCardReader
from hal.io_devices import IoDevices
from hal.keypad import SimKeypad
from services.access import CARD_OR_CODE, AccessControl, AccessStore, EntryKind, LockoutPolicy
from services.access.enroll import Enrollment, add_entry
from services.access.entries import AccessEntry
from services.intercom.dnd import TimeRange
from services.intercom.door_opener import DoorOpener
from services.intercom.entrance import Entrance, EntranceAttempt, Feedback
from services.intercom.observer import IntercomObserver

RELAY_PIN = "GPIO24"
"""The door relay's pin on the tests' MockFactory (the ``io`` fixture of conftest.py)."""
TIMEOUT = 5.0

MONDAY_NOON = datetime.datetime(2026, 12, 7, 12, 0).timestamp()
"""Monday 7 December 2026, 12:00 local time."""


class Clock:
    """Unix time set by the test."""

    def __init__(self, now: float = MONDAY_NOON) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move on by ``seconds``."""
        self.now += seconds


def enroll(
    state_dir: Path,
    secret: str,
    name: str = "Smith",
    *,
    kind: EntryKind = EntryKind.PIN,
    flat: str = "12",
    once: bool = False,
    valid_from: float | None = None,
    valid_until: float | None = None,
    schedule: tuple[str, ...] = (),
    days: frozenset[int] = frozenset(range(7)),
) -> AccessEntry:
    """Add an entry the way ``callbox access add`` does (blocking: call it in a thread)."""
    new = Enrollment(
        kind=kind,
        name=name,
        secret=secret,
        flat=flat,
        once=once,
        valid_from=valid_from,
        valid_until=valid_until,
        ranges=tuple(TimeRange.parse(s) for s in schedule),
        days=days,
    )
    return add_entry(AccessStore(state_dir), new)


class Attempts(IntercomObserver):
    """An onlooker (as Home Assistant's bridge is) keeping every access attempt it is told."""

    def __init__(self) -> None:
        self.seen: list[EntranceAttempt] = []

    def access_attempted(self, attempt: EntranceAttempt) -> None:
        self.seen.append(attempt)


class Panel:
    """An entrance with everything real but the keys and cards, pressed by the test.

    The real check over the list in ``state_dir`` (clock injected: ``clock``), a SimKeypad,
    a SimCardReader "entrance", a DoorOpener over ``io``'s relay. ``dial_codes``: the dial
    codes that ring (None: the entrance has no dial at all).
    """

    def __init__(
        self,
        state_dir: Path,
        io: IoDevices,
        *,
        per_minute: int = 6,
        mode: str = CARD_OR_CODE,
        window_s: float = 10.0,
        dial_codes: tuple[str, ...] | None = ("12",),
    ) -> None:
        self.pin: Any = io.pin_factory.pin(RELAY_PIN)
        self.relay = io.relay
        self.opener = DoorOpener(self.relay, per_minute=per_minute)
        self.keypad = SimKeypad("keypad")
        self.reader = SimCardReader("entrance")
        self.clock = Clock()
        self.dial_codes = dial_codes
        self.dialled: list[str] = []
        self.attempts = Attempts()
        self.feedback: asyncio.Queue[Feedback] = asyncio.Queue()
        self.access = AccessControl(
            AccessStore(state_dir),
            policy=LockoutPolicy(max_attempts=3),
            clock=self.clock,
            mode=mode,
            second_factor_s=window_s,
        )
        self.entrance = Entrance(
            opener=self.opener,
            access=self.access,
            dial=None if dial_codes is None else self.dial,
            keypad=self.keypad,
            readers=[self.reader],
            on_feedback=self.feedback.put_nowait,
            watchers=[self.attempts],
        )

    async def dial(self, code: str) -> bool:
        """The door station's dial: True for the codes of ``dial_codes``."""
        self.dialled.append(code)
        return code in (self.dial_codes or ())

    async def start(self) -> None:
        """Start the devices and the entrance; the relay's pin history starts empty."""
        await self.relay.start()
        await self.keypad.start()
        await self.reader.start()
        await self.entrance.start()
        self.pin.clear_states()

    async def close(self) -> None:
        """Stop the entrance (a pulse under way ends first) and the devices."""
        await self.entrance.close()
        await self.opener.close()
        await self.keypad.close()
        await self.reader.close()

    async def told(self) -> Feedback:
        """The next feedback the person at the panel gets."""
        return await asyncio.wait_for(self.feedback.get(), TIMEOUT)

    def pulses(self) -> int:
        """How many times the relay was energised."""
        return sum(1 for state in self.pin.states if state.state)
