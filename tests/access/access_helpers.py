"""Shared by the access tests: a clock to set by hand and enrolling entries."""

from __future__ import annotations

import datetime
from pathlib import Path

from services.access import AccessStore, EntryKind
from services.access.enroll import Enrollment, add_entry
from services.access.entries import AccessEntry
from services.intercom.dnd import TimeRange

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
