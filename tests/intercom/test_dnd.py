"""Do-not-disturb schedule: ranges, days, midnight crossing, config parsing errors."""

from __future__ import annotations

import datetime

import pytest

from services.intercom.dnd import DndSchedule, TimeRange

# 2024-01-01 was a Monday.
MON, TUE, SAT, SUN = 1, 2, 6, 7
ALL_DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def at(day: int, hhmm: str) -> datetime.datetime:
    """January `day` 2024 (1 = Monday) at local time `hhmm`."""
    hour, minute = (int(part) for part in hhmm.split(":"))
    return datetime.datetime(2024, 1, day, hour, minute)


def test_ok__parse_range() -> None:
    span = TimeRange.parse(" 22:00 - 7:30 ")
    assert span == TimeRange(datetime.time(22, 0), datetime.time(7, 30))
    assert span.crosses_midnight
    assert str(span) == "22:00-07:30"
    assert not TimeRange.parse("09:00-17:00").crosses_midnight


def test_ok__24_00_is_end_of_day() -> None:
    schedule = DndSchedule.from_config(True, ["00:00-24:00"], ["sat"])
    assert schedule.is_active(at(SAT, "00:00"))
    assert schedule.is_active(at(SAT, "23:59"))
    assert not schedule.is_active(at(SUN, "00:00"))


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("22:00", "expected HH:MM-HH:MM"),
        ("10pm-7am", "expected HH:MM-HH:MM"),
        ("", "expected HH:MM-HH:MM"),
        ("25:00-07:00", "25:00 is not a time"),
        ("22:00-07:60", "07:60 is not a time"),
        ("24:00-07:00", "24:00 is not a time"),
    ],
)
def test_fail__bad_range_text(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=f"bad time range {text!r}: {why}"):
        TimeRange.parse(text)


def test_ok__inside_and_outside_a_daytime_range() -> None:
    schedule = DndSchedule.from_config(True, ["09:00-17:00"], ALL_DAYS)
    assert schedule.is_active(at(TUE, "09:00"))
    assert schedule.is_active(at(TUE, "16:59"))
    assert not schedule.is_active(at(TUE, "17:00"))
    assert not schedule.is_active(at(TUE, "08:59"))


def test_ok__overnight_range_every_day() -> None:
    schedule = DndSchedule.from_config(True, ["22:00-07:00"], ALL_DAYS)
    assert schedule.is_active(at(TUE, "23:00"))
    assert schedule.is_active(at(TUE, "03:00"))
    assert not schedule.is_active(at(TUE, "07:00"))
    assert not schedule.is_active(at(TUE, "12:00"))


def test_ok__range_crossing_midnight_belongs_to_the_day_it_starts() -> None:
    schedule = DndSchedule.from_config(True, ["23:00-01:00"], ["sun"])
    assert schedule.is_active(at(SUN, "23:30"))
    assert schedule.is_active(at(MON, "00:30"))  # Sunday night, after midnight
    assert not schedule.is_active(at(MON, "01:00"))
    assert not schedule.is_active(at(MON, "23:30"))  # Monday is not a DND day
    assert not schedule.is_active(at(SUN, "00:30"))  # Saturday night is not either


def test_ok__several_ranges() -> None:
    schedule = DndSchedule.from_config(True, ["12:00-13:00", "22:00-07:00"], ["mon"])
    assert schedule.is_active(at(MON, "12:30"))
    assert schedule.is_active(at(TUE, "06:00"))
    assert not schedule.is_active(at(MON, "06:00"))


def test_ok__disabled_is_never_active() -> None:
    schedule = DndSchedule.from_config(False, ["00:00-24:00"], ALL_DAYS)
    assert not schedule.is_active(at(MON, "12:00"))
    assert not DndSchedule().is_active(at(MON, "12:00"))


def test_ok__enabled_without_ranges_is_always_on() -> None:
    assert DndSchedule(enabled=True).is_active(at(MON, "12:00"))
    weekend = DndSchedule.from_config(True, [], ["Sat", " SUN "])
    assert weekend.is_active(at(SUN, "12:00"))
    assert not weekend.is_active(at(MON, "12:00"))


def test_ok__aware_datetime_uses_its_wall_clock() -> None:
    schedule = DndSchedule.from_config(True, ["22:00-07:00"], ALL_DAYS)
    paris = datetime.timezone(datetime.timedelta(hours=1))
    assert schedule.is_active(datetime.datetime(2024, 1, 2, 23, 0, tzinfo=paris))


def test_fail__unknown_day() -> None:
    with pytest.raises(ValueError, match="unknown day 'monday': expected one of mon, tue"):
        DndSchedule.from_config(True, ["22:00-07:00"], ["monday"])


def test_fail__bad_range_in_config() -> None:
    with pytest.raises(ValueError, match="bad time range '22-7'"):
        DndSchedule.from_config(True, ["22-7"], ALL_DAYS)


def test_fail__enabled_without_days() -> None:
    with pytest.raises(ValueError, match="no days given"):
        DndSchedule.from_config(True, ["22:00-07:00"], [])
    assert not DndSchedule.from_config(False, [], []).enabled


def test_fail__bad_weekday_number() -> None:
    with pytest.raises(ValueError, match=r"bad weekday numbers \[7\]"):
        DndSchedule(enabled=True, days=frozenset({0, 7}))
