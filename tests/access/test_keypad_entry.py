"""The keypad grammar: dial codes, access codes, starting over, the pause, the digit cap."""

from __future__ import annotations

from services.access import EntryResult, EntryType, KeypadEntry


def typed(keys: str, entry: KeypadEntry | None = None, every_s: float = 1.0) -> list[EntryResult]:
    entry = entry or KeypadEntry(timeout_s=10.0)
    results = [entry.press(key, index * every_s) for index, key in enumerate(keys)]
    return [r for r in results if r is not None]


def test_digits_then_hash_dial() -> None:
    assert typed("12#") == [EntryResult(EntryType.DIAL, "12")]


def test_star_digits_hash_is_an_access_code() -> None:
    assert typed("*2580#") == [EntryResult(EntryType.CODE, "2580")]


def test_star_starts_over() -> None:
    assert typed("12*2580#") == [EntryResult(EntryType.CODE, "2580")]
    assert typed("*25*7531#") == [EntryResult(EntryType.CODE, "7531")]


def test_hash_alone_does_nothing_and_entries_follow_each_other() -> None:
    assert typed("#*#12#*9876#") == [
        EntryResult(EntryType.DIAL, "12"),
        EntryResult(EntryType.CODE, "9876"),
    ]


def test_a_pause_forgets_a_half_typed_entry() -> None:
    entry = KeypadEntry(timeout_s=10.0)
    assert entry.press("*", 0.0) is None and entry.press("2", 1.0) is None
    assert entry.pending
    assert entry.press("5", 11.0) is None  # 10 s after the last key: "*2" is forgotten
    assert entry.press("#", 12.0) == EntryResult(EntryType.DIAL, "5")


def test_more_than_twelve_digits_are_refused_not_cut() -> None:
    assert typed("*1234567890123#") == [EntryResult(EntryType.TOO_LONG)]
    assert typed("123456789012#") == [EntryResult(EntryType.DIAL, "123456789012")]
    assert typed("1234567890123#12#") == [
        EntryResult(EntryType.TOO_LONG),
        EntryResult(EntryType.DIAL, "12"),
    ]


def test_letter_keys_are_ignored() -> None:
    assert typed("1A2#") == [EntryResult(EntryType.DIAL, "12")]


def test_an_access_code_never_shows_in_a_repr() -> None:
    assert "2580" not in repr(EntryResult(EntryType.CODE, "2580"))


def test_what_a_display_shows_is_dots_never_digits() -> None:
    entry = KeypadEntry(timeout_s=10.0, max_digits=4)
    assert entry.shown(0.0) == ""
    typed("12", entry)
    assert entry.shown(1.5) == "••"
    assert entry.shown(11.0) == ""  # the pause forgot it
    typed("*258", entry)
    assert entry.shown(3.5) == "*•••"
    typed("*12345", entry)
    assert entry.shown(5.5) == "*…"  # past max_digits: refused at '#'
    typed("#", entry)
    assert entry.shown(1.0) == ""
