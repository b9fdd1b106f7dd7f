"""Adding, removing and listing codes and cards (``callbox access``): the rules for a good PIN.

A PIN has 4 to 12 digits (the keypad keeps at most 12) and is refused when trivial: one
digit repeated (``0000``), or a run of consecutive digits up or down (``1234``, ``9876``),
or already used by another entry (two residents could not be told apart). Everything here
blocks (the KDF, the file lock): the CLI calls it directly, the daemon never does.
"""

from __future__ import annotations

import hmac
import itertools
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from hal.cards import CardRead
from services.access.entries import AccessEntry, EntryKind
from services.access.errors import EnrollError
from services.access.store import AccessList, AccessStore
from services.intercom.dnd import TimeRange

__all__ = [
    "MAX_DIGITS",
    "MIN_PIN_DIGITS",
    "Enrollment",
    "add_entry",
    "generate_code",
    "pin_problem",
    "remove_entries",
]

MIN_PIN_DIGITS = 4
MAX_DIGITS = 12
GENERATED_DIGITS = 6
"""A generated visitor code's length: a million codes, behind the keypad's lockout."""


def pin_problem(code: str) -> str:
    """Why ``code`` cannot be a PIN ("" when it can): length, digits, a trivial pattern."""
    if not code.isascii() or not code.isdigit():
        return "a code has digits only (the keypad's 0-9)"
    if not MIN_PIN_DIGITS <= len(code) <= MAX_DIGITS:
        return f"a code has {MIN_PIN_DIGITS} to {MAX_DIGITS} digits"
    if len(set(code)) == 1:
        return f"{len(code)} times the same digit is the first code anyone tries"
    steps = {(int(b) - int(a)) for a, b in itertools.pairwise(code)}
    if steps in ({1}, {-1}):
        return "a run of consecutive digits (1234, 9876) is the first code anyone tries"
    return ""


def generate_code(digits: int = GENERATED_DIGITS) -> str:
    """A random code of ``digits`` digits that `pin_problem` accepts."""
    while True:
        code = "".join(secrets.choice("0123456789") for _ in range(digits))
        if not pin_problem(code):
            return code


@dataclass(frozen=True)
class Enrollment:
    """What ``callbox access add`` adds: who, what, and when it works."""

    kind: EntryKind
    name: str
    secret: str
    """The code's digits, or the card's ``format:number``; hashed, never stored."""
    flat: str = ""
    once: bool = False
    valid_from: float | None = None
    valid_until: float | None = None
    ranges: tuple[TimeRange, ...] = ()
    days: frozenset[int] = frozenset(range(7))


def add_entry(
    store: AccessStore, new: Enrollment, *, clock: Callable[[], float] = time.time
) -> AccessEntry:
    """Add ``new`` to the list under its lock; EnrollError when it cannot be (why)."""
    card_format = _check(new)
    with store.locked():
        access = store.read()
        kind = "card" if new.kind is EntryKind.CARD else "code"
        digests = {kid: params.derive(kind, new.secret) for kid, params in access.kdfs.items()}
        for entry in access.entries:
            if hmac.compare_digest(entry.digest, digests[entry.kdf]):
                what = "card" if kind == "card" else "code"
                raise EnrollError(
                    f"this {what} is already in use (entry {entry.id}): choose another"
                )
        entry = AccessEntry(
            id=_new_id(access),
            kind=new.kind,
            name=new.name,
            digest=digests[access.current_kdf],
            kdf=access.current_kdf,
            flat=new.flat,
            card_format=card_format,
            once=new.once,
            valid_from=new.valid_from,
            valid_until=new.valid_until,
            ranges=new.ranges,
            days=new.days,
            created=clock(),
        )
        store.write(access.with_entries((*access.entries, entry)))
    return entry


def remove_entries(store: AccessStore, which: str) -> list[AccessEntry]:
    """Remove the entry with id ``which``, else every entry named ``which``; EnrollError if none."""
    with store.locked():
        access = store.read()
        gone = [e for e in access.entries if e.id == which] or [
            e for e in access.entries if e.name == which
        ]
        if not gone:
            raise EnrollError(f"no entry has the id or name {which!r} (see: callbox access list)")
        kept = tuple(e for e in access.entries if e not in gone)
        store.write(access.with_entries(kept))
    return gone


def _check(new: Enrollment) -> str:
    if not new.name.strip():
        raise EnrollError("a name is required (who the code or card lets in)")
    valid_from, valid_until = new.valid_from, new.valid_until
    if valid_from is not None and valid_until is not None and valid_until <= valid_from:
        raise EnrollError("--until must be after --from")
    if not new.days:
        raise EnrollError("no days given: the entry would never work")
    if new.kind is not EntryKind.CARD:
        problem = pin_problem(new.secret)
        if problem:
            raise EnrollError(f"code refused: {problem}")
        return ""
    card_format, _, number = new.secret.partition(":")
    try:
        CardRead("enroll", card_format, number)
    except ValueError as err:
        raise EnrollError(
            f"card refused: {err} (expected FORMAT:NUMBER, e.g. wiegand26:12:34567)"
        ) from err
    return card_format


def _new_id(access: AccessList) -> str:
    taken = {e.id for e in access.entries}
    while True:
        candidate = secrets.token_hex(3)
        if candidate not in taken:
            return candidate
