"""The keypad grammar: what a sequence of keys means (the same on GPIO and USB keypads).

- digits then ``#``: a dial code (ring that bell or flat);
- ``*``, the digits of an access code, then ``#``: an access code;
- ``*`` while typing starts over (as an access code); ``#`` with nothing typed does nothing;
- a pause of ``timeout_s`` forgets what was typed; more than ``max_digits`` digits make
  the entry refused at its ``#`` (the digits are not kept);
- the letter keys of a 4x4 keypad (``A`` .. ``D``) are ignored.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["EntryResult", "EntryType", "KeypadEntry"]


class EntryType(enum.Enum):
    """What a finished entry is."""

    DIAL = "dial"
    CODE = "code"
    TOO_LONG = "too long"


@dataclass(frozen=True)
class EntryResult:
    """A finished entry: its kind and digits ("" for a refused one)."""

    kind: EntryType
    digits: str = ""

    def __repr__(self) -> str:
        # an access code never reaches a log through a repr
        shown = self.digits if self.kind is EntryType.DIAL else "*" * len(self.digits)
        return f"EntryResult({self.kind.value}, {shown!r})"


class KeypadEntry:
    """Turns key presses into dial codes and access codes; times come from the caller."""

    def __init__(self, *, timeout_s: float = 10.0, max_digits: int = 12) -> None:
        """An empty entry; ``timeout_s`` of no key forgets it."""
        self.timeout_s = timeout_s
        self.max_digits = max_digits
        self._digits: list[str] = []
        self._code = False
        self._overflow = False
        self._last = 0.0

    @property
    def pending(self) -> bool:
        """True while something is typed and not finished."""
        return bool(self._digits) or self._code or self._overflow

    def shown(self, now: float) -> str:
        """What a panel's display may show of the entry at monotonic ``now``: never a digit.

        ``*`` when an access code is being typed, then one ``•`` per digit (``…`` past
        ``max_digits``); "" when nothing is typed or the pause forgot it.
        """
        if not self.pending or now - self._last >= self.timeout_s:
            return ""
        return ("*" if self._code else "") + ("…" if self._overflow else "•" * len(self._digits))

    def clear(self) -> None:
        """Forget what was typed."""
        self._digits.clear()
        self._code = False
        self._overflow = False

    def press(self, key: str, now: float) -> EntryResult | None:
        """Take ``key`` pressed at monotonic time ``now``; the finished entry, if this ends one."""
        if self.pending and now - self._last >= self.timeout_s:
            self.clear()
        self._last = now
        if key.isdigit():
            if len(self._digits) >= self.max_digits:
                self._overflow = True
                self._digits.clear()
            elif not self._overflow:
                self._digits.append(key)
            return None
        if key == "*":
            self.clear()
            self._code = True
            return None
        if key == "#":
            return self._finish()
        return None  # A-D

    def _finish(self) -> EntryResult | None:
        digits, code, overflow = "".join(self._digits), self._code, self._overflow
        self.clear()
        if overflow:
            return EntryResult(EntryType.TOO_LONG)
        if not digits:
            return None
        return EntryResult(EntryType.CODE if code else EntryType.DIAL, digits)
