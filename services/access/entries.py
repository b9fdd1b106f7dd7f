"""One entry of the access list: a resident's PIN, a visitor's code or a card, and its validity.

Validity (a time window, a one-time code already used, a weekly schedule) is judged only
after an attempt matched the entry's hash. Schedules use the do-not-disturb semantics
(`services.intercom.dnd`): ``HH:MM-HH:MM`` local-time ranges on chosen weekdays, a range
crossing midnight belonging to the day it starts.
"""

from __future__ import annotations

import datetime
import enum
from dataclasses import dataclass, field, replace
from typing import Any

from services.access.kdf import b64d, b64e
from services.intercom.dnd import DAY_NAMES, DndSchedule, TimeRange

__all__ = ["AccessEntry", "EntryKind", "parse_when", "when_text"]


class EntryKind(enum.Enum):
    """What an entry holds."""

    PIN = "pin"
    """A resident's code, typed ``*`` code ``#``."""
    VISITOR = "visitor"
    """A visitor's code: usually one-time or time-limited."""
    CARD = "card"
    """A card or tag (its ``CardRead.card_id``)."""


def parse_when(text: str) -> float:
    """Unix time of an ISO 8601 date or date-time (no zone: local time); ValueError if not."""
    try:
        when = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO date or time such as 2026-12-24T18:00") from None
    return when.astimezone().timestamp()


def when_text(unix: float | None) -> str:
    """``unix`` as a local ISO date-time to the second with its offset; "" for None."""
    if unix is None:
        return ""
    return datetime.datetime.fromtimestamp(unix).astimezone().isoformat(timespec="seconds")


@dataclass(frozen=True)
class AccessEntry:
    """An access code or a card, hashed (`services.access.kdf`), with who it lets in and when."""

    id: str
    kind: EntryKind
    name: str
    digest: bytes
    kdf: str
    flat: str = ""
    card_format: str = ""
    once: bool = False
    valid_from: float | None = None
    valid_until: float | None = None
    ranges: tuple[TimeRange, ...] = ()
    days: frozenset[int] = field(default_factory=lambda: frozenset(range(7)))
    created: float = 0.0
    used: bool = False
    uses: int = 0
    last_used: float | None = None

    @property
    def label(self) -> str:
        """Who it lets in, for logs and the door opener: the name, and the flat if any."""
        return f"{self.name} (flat {self.flat})" if self.flat else self.name

    def pairs_with(self, other: AccessEntry) -> bool:
        """True when ``other`` is the same resident's card to this PIN, or PIN to this card.

        The rule of ``[access] mode = "card_and_code"``: one is a card, the other a PIN (not
        a visitor's code), with the same name and the same flat.
        """
        kinds = {self.kind, other.kind}
        return (
            kinds == {EntryKind.CARD, EntryKind.PIN}
            and self.name == other.name
            and self.flat == other.flat
        )

    @property
    def has_schedule(self) -> bool:
        """True when the entry only works at some hours or on some days."""
        return bool(self.ranges) or len(self.days) < 7

    def refusal(self, now: float) -> str:
        """Why the entry does not let anyone in at unix time ``now``; "" when it does."""
        if self.once and self.used:
            return "one-time code already used"
        if self.valid_from is not None and now < self.valid_from:
            return "not valid yet"
        if self.valid_until is not None and now >= self.valid_until:
            return "expired"
        if self.has_schedule:
            schedule = DndSchedule(enabled=True, ranges=self.ranges, days=self.days)
            if not schedule.is_active(datetime.datetime.fromtimestamp(now)):
                return "outside its schedule"
        return ""

    def after_use(self, now: float) -> AccessEntry:
        """The entry once it let someone in at ``now`` (a one-time code is then spent)."""
        return replace(self, used=self.once, uses=self.uses + 1, last_used=now)

    def schedule_text(self) -> str:
        """The schedule for ``callbox access list``: ``mon,tue 08:00-18:00``, "" for always."""
        if not self.has_schedule:
            return ""
        days = ",".join(DAY_NAMES[d] for d in sorted(self.days)) if len(self.days) < 7 else ""
        ranges = " ".join(str(span) for span in self.ranges)
        return " ".join(part for part in (days, ranges) if part)

    def to_json(self) -> dict[str, Any]:
        """The entry as the file keeps it (the hash, never the code)."""
        return {
            "id": self.id,
            "kind": self.kind.value,
            "name": self.name,
            "flat": self.flat,
            "hash": b64e(self.digest),
            "kdf": self.kdf,
            "card_format": self.card_format,
            "once": self.once,
            "valid_from": when_text(self.valid_from) or None,
            "valid_until": when_text(self.valid_until) or None,
            "schedule": [str(span) for span in self.ranges],
            "days": [DAY_NAMES[d] for d in sorted(self.days)],
            "created": when_text(self.created),
            "used": self.used,
            "uses": self.uses,
            "last_used": when_text(self.last_used) or None,
        }

    @classmethod
    def from_json(cls, data: Any) -> AccessEntry:
        """An entry from the file; ValueError naming the bad field."""
        if not isinstance(data, dict):
            raise ValueError("an entry is not a table")
        try:
            return cls(
                id=_text(data, "id", required=True),
                kind=EntryKind(data.get("kind")),
                name=_text(data, "name", required=True),
                digest=b64d(_text(data, "hash", required=True)),
                kdf=_text(data, "kdf", required=True),
                flat=_text(data, "flat"),
                card_format=_text(data, "card_format"),
                once=data.get("once") is True,
                valid_from=_time(data, "valid_from"),
                valid_until=_time(data, "valid_until"),
                ranges=tuple(TimeRange.parse(t) for t in _texts(data, "schedule")),
                days=_days(data),
                created=_time(data, "created") or 0.0,
                used=data.get("used") is True,
                uses=int(data.get("uses") or 0),
                last_used=_time(data, "last_used"),
            )
        except (ValueError, TypeError) as err:
            raise ValueError(f"entry {data.get('id')!r}: {err}") from err


def _text(data: dict[str, Any], key: str, *, required: bool = False) -> str:
    value = data.get(key, "")
    if value is None:
        value = ""
    if not isinstance(value, str) or (required and not value):
        raise ValueError(f"{key!r} must be a non-empty text" if required else f"{key!r}: a text")
    return value


def _texts(data: dict[str, Any], key: str) -> list[str]:
    value = data.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{key!r} must be a list of texts")
    return value


def _time(data: dict[str, Any], key: str) -> float | None:
    value = data.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError(f"{key!r} must be an ISO date-time")
    return parse_when(value)


def _days(data: dict[str, Any]) -> frozenset[int]:
    names = _texts(data, "days") if "days" in data else list(DAY_NAMES)
    return DndSchedule.from_config(True, [], names).days
