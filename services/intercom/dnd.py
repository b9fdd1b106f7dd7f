"""Do-not-disturb schedule: local-time ranges on chosen weekdays during which nothing rings."""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
"""Day names as the config spells them, indexed like `datetime.date.weekday` (0 = Monday)."""

_RANGE_RE = re.compile(r"(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})")
_RANGE_HELP = "expected HH:MM-HH:MM in 24-hour local time, e.g. 22:00-07:00"


@dataclass(frozen=True)
class TimeRange:
    """A daily span of local wall-clock time, ``start`` included, ``end`` excluded.

    When ``end <= start`` the range crosses midnight and ends the next day; ``start == end``
    is a whole day (``"00:00-24:00"`` parses that way).
    """

    start: datetime.time
    end: datetime.time

    @classmethod
    def parse(cls, text: str) -> TimeRange:
        """Parse ``"HH:MM-HH:MM"`` (``24:00`` allowed as the end); ValueError saying why not."""
        match = _RANGE_RE.fullmatch(text.strip())
        if match is None:
            raise ValueError(f"bad time range {text!r}: {_RANGE_HELP}")
        sh, sm, eh, em = (int(group) for group in match.groups())
        if eh == 24 and em == 0:
            eh = 0  # midnight at the end of the day
        for hour, minute in ((sh, sm), (eh, em)):
            if hour > 23 or minute > 59:
                raise ValueError(f"bad time range {text!r}: {hour:02d}:{minute:02d} is not a time")
        return cls(datetime.time(sh, sm), datetime.time(eh, em))

    @property
    def crosses_midnight(self) -> bool:
        """True when the range ends on the day after it starts."""
        return self.end <= self.start

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


@dataclass(frozen=True)
class DndSchedule:
    """When do-not-disturb is on: `ranges` of local time on `days` (0 = Monday).

    A range that crosses midnight belongs to the day it starts: ``22:00-07:00`` on Friday
    covers Friday 22:00 to Saturday 07:00. Enabled with no ranges means all day on `days`
    (so always, with the default days).
    """

    enabled: bool = False
    ranges: tuple[TimeRange, ...] = ()
    days: frozenset[int] = frozenset(range(7))

    def __post_init__(self) -> None:
        bad = sorted(day for day in self.days if not 0 <= day <= 6)
        if bad:
            raise ValueError(f"bad weekday numbers {bad}: expected 0 (Monday) .. 6 (Sunday)")

    def is_active(self, now: datetime.datetime) -> bool:
        """True when do-not-disturb applies at `now` (local time: naive local or aware)."""
        if not self.enabled:
            return False
        today = now.weekday()
        if not self.ranges:
            return today in self.days
        yesterday = (today - 1) % 7
        clock = now.time()
        for span in self.ranges:
            if not span.crosses_midnight:
                if today in self.days and span.start <= clock < span.end:
                    return True
            elif (today in self.days and clock >= span.start) or (
                yesterday in self.days and clock < span.end
            ):
                return True
        return False

    @classmethod
    def from_config(cls, enabled: bool, ranges: list[str], days: list[str]) -> DndSchedule:
        """Build from the ``[dnd]`` config values; ValueError naming the bad range or day.

        `ranges` are ``"HH:MM-HH:MM"`` texts, `days` are ``"mon"`` .. ``"sun"`` (any case).
        """
        parsed = tuple(TimeRange.parse(text) for text in ranges)
        numbers: set[int] = set()
        for name in days:
            key = name.strip().lower()
            if key not in DAY_NAMES:
                raise ValueError(f"unknown day {name!r}: expected one of {', '.join(DAY_NAMES)}")
            numbers.add(DAY_NAMES.index(key))
        if enabled and not numbers:
            raise ValueError(
                "no days given: do-not-disturb would never apply; list days or set enabled = false"
            )
        return cls(enabled=enabled, ranges=parsed, days=frozenset(numbers))


class ManualDnd:
    """A do-not-disturb switched by hand (Home Assistant's switch), beside the schedule.

    On: nothing rings, whatever the schedule says. Off: the schedule alone decides. It
    outlives a rebuild of the call service (the composition root owns it), not a restart.
    """

    def __init__(self) -> None:
        self.on = False
