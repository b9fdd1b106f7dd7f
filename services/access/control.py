"""The access check: does this code or card open the door now? No door logic here.

Timing: one attempt derives the slow hash once per parameter set of the list (the same
sets whatever was typed) and compares it with every entry with `hmac.compare_digest`,
without stopping at a match, so the time taken says neither how much of a code was right
nor whether an entry exists. Validity (window, schedule, one-time) is judged after. While
a group is locked out its attempts are refused without being checked. The whole check runs
in a thread under the list's file lock: the hash must not block the event loop, and a
one-time code used twice at once is let in once.

Every attempt is logged (never a code; an unknown card with its id, to enroll it) and kept
in a bounded history for ``callbox status``.

Card and code (``mode = "card_and_code"``, `services.access.second_factor`): a valid card
is not a grant but ``awaiting_code``; the next code is granted only when it is the same
resident's PIN within the window (or a visitor's code, which opens alone). A resident's
code without its card (none waiting, its time up, another resident's) is refused and
counts as a wrong keypad attempt. The pairing is judged after the same hash and compare
as every check, so it changes nothing to the timing above.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from hal.cards import CardRead
from services.access.entries import AccessEntry, EntryKind, when_text
from services.access.errors import AccessStoreError
from services.access.lockout import LockoutPolicy
from services.access.second_factor import (
    CARD_AND_CODE,
    CARD_OR_CODE,
    MODES,
    PendingCard,
    SecondFactor,
)
from services.access.store import AccessList, AccessStore

__all__ = ["LOCKED", "AccessAttempt", "AccessControl", "AccessDecision"]

_log = logging.getLogger(__name__)

LOCKED = "locked out"
"""The reason of a decision refused because its group is locked out."""
UNKNOWN_CODE = "no such code"
UNKNOWN_CARD = "unknown card"
AWAITING_CODE = "card accepted, waiting for the code"
"""The reason of a valid card's decision in card-and-code mode: not granted yet."""
NO_CARD = "a resident's code needs the card first (card and code)"
OTHER_RESIDENT = "the code is not the card owner's (card and code)"
NO_CODE_IN_TIME = "no code in time after the card (card and code)"


@dataclass(frozen=True)
class AccessDecision:
    """The answer to one attempt: ``granted``, ``who`` (the entry's label) and ``reason``."""

    granted: bool
    who: str = ""
    reason: str = ""
    with_card: bool = False
    """A code granted with its resident's card (card-and-code mode)."""

    @property
    def awaiting_code(self) -> bool:
        """True for a valid card that waits for its resident's code (card-and-code mode)."""
        return self.reason == AWAITING_CODE

    @property
    def locked(self) -> bool:
        """True when refused unchecked because of a lockout."""
        return self.reason == LOCKED


@dataclass(frozen=True)
class AccessAttempt:
    """One attempt as the history keeps it (never the code)."""

    at: float
    via: str
    kind: str
    granted: bool
    who: str
    reason: str
    card: str = ""

    def to_json(self) -> dict[str, Any]:
        """For ``callbox status``."""
        result = {
            "at": when_text(self.at),
            "via": self.via,
            "kind": self.kind,
            "granted": self.granted,
            "who": self.who,
            "reason": self.reason,
        }
        if self.card:
            result["card"] = self.card
        return result


class AccessControl:
    """Checks codes and cards against the access list of ``store`` (re-read at each check)."""

    def __init__(
        self,
        store: AccessStore,
        *,
        policy: LockoutPolicy | None = None,
        clock: Callable[[], float] = time.time,
        history: int = 50,
        mode: str = CARD_OR_CODE,
        second_factor_s: float = 10.0,
    ) -> None:
        """``clock`` gives unix time: for validity, schedules and lockouts (tests inject one).

        ``mode``: `CARD_OR_CODE` (either opens) or `CARD_AND_CODE` (a card, then its
        resident's code within ``second_factor_s``).
        """
        if mode not in MODES:
            raise ValueError(f"access mode {mode!r} is not one of {', '.join(MODES)}")
        self.mode = mode
        self.second = SecondFactor(second_factor_s) if mode == CARD_AND_CODE else None
        self.store = store
        self.policy = policy or LockoutPolicy()
        self.clock = clock
        self.history: deque[AccessAttempt] = deque(maxlen=history)
        self._entries = 0
        self._locked_until: dict[str, float] = {}
        self.problem = ""
        """Why the list cannot be used ("" when it can): a broken file, named."""

    async def load(self) -> None:
        """Read the list once (status, and an early error for a broken file; never raises)."""
        try:
            access = await asyncio.to_thread(self._read)
        except AccessStoreError as err:
            self._broken(err)
            return
        self._seen(access)

    async def check_code(self, code: str, *, via: str) -> AccessDecision:
        """Whether ``code`` (digits typed between ``*`` and ``#``) lets someone in now."""
        return await self._attempt("code", code, "keypad", via)

    async def check_card(self, read: CardRead) -> AccessDecision:
        """Whether the card of ``read`` lets someone in now."""
        return await self._attempt("card", read.card_id, "cards", read.reader)

    def expire_second_factor(self) -> AccessDecision | None:
        """End a card's wait for its code if its time is up: the refusal (logged), else None.

        The entrance calls it when the window should be over; a code typed later is refused
        anyway (the window is judged by ``clock`` at the check).
        """
        if self.second is None:
            return None
        pending = self.second.expire(self.clock())
        if pending is None:
            return None
        decision = AccessDecision(False, pending.who, NO_CODE_IN_TIME)
        self._record("card", pending.via, decision, pending.card.id)
        return decision

    async def _attempt(self, kind: str, secret: str, group: str, via: str) -> AccessDecision:
        try:
            decision = await asyncio.to_thread(self._check, kind, secret, group, via)
        except AccessStoreError as err:
            self._broken(err)
            decision = AccessDecision(False, "", "the access list cannot be read")
        self._record(kind, via, decision, secret if kind == "card" else "")
        return decision

    def _read(self) -> AccessList:
        with self.store.locked():
            return self.store.read()

    def _check(self, kind: str, secret: str, group: str, via: str) -> AccessDecision:
        now = self.clock()
        with self.store.locked():
            access = self.store.read()
            self._seen(access)
            # card and code: a code or another card ends a card's wait, whatever follows
            waited = self.second.end() if self.second is not None else None
            if waited is not None and kind == "card" and now < waited.until:
                _log.warning(
                    "access: another card read before the code for %s: that card's wait ends",
                    waited.who,
                )
            state = access.lockout(group)
            if state.is_locked(now):
                return AccessDecision(False, "", LOCKED)
            digests = {kid: params.derive(kind, secret) for kid, params in access.kdfs.items()}
            hits = [hmac.compare_digest(e.digest, digests[e.kdf]) for e in access.entries]
            matched = [entry for entry, hit in zip(access.entries, hits, strict=True) if hit]
            if not matched:
                self._failed(access, group, now)
                return AccessDecision(False, "", UNKNOWN_CODE if kind == "code" else UNKNOWN_CARD)
            entry = matched[0]
            refusal = entry.refusal(now)
            if refusal:
                return AccessDecision(False, entry.label, refusal)
            with_card = False
            if self.second is not None and entry.kind is EntryKind.PIN:
                # a resident's code opens only after the same resident's card, in time
                why = _unpaired(entry, waited, now)
                if why:
                    self._failed(access, group, now)
                    return AccessDecision(False, entry.label, why)
                with_card = True
            used = entry.after_use(now)
            if used.kdf != access.current_kdf:  # raised parameters: re-hash at this use
                used = replace(used, kdf=access.current_kdf, digest=digests[access.current_kdf])
            self.store.write(_replace_entry(access, used).with_lockout(group, state.succeeded()))
            self._locked_until[group] = 0.0
            if self.second is not None and entry.kind is EntryKind.CARD:
                self.second.start(entry, via, now)
                return AccessDecision(False, entry.label, AWAITING_CODE)
            return AccessDecision(True, entry.label, "", with_card=with_card)

    def _failed(self, access: AccessList, group: str, now: float) -> None:
        """One wrong attempt of ``group`` at ``now``: counted, written, a lockout logged."""
        state = access.lockout(group).failed(self.policy, now)
        self.store.write(access.with_lockout(group, state))
        if state.is_locked(now):
            _log.warning(
                "access: the %s locked out for %.0f s (lockout %d in a row)",
                "keypad" if group == "keypad" else "card readers",
                state.locked_until - now,
                state.level,
            )
        self._locked_until[group] = state.locked_until

    def _seen(self, access: AccessList) -> None:
        self.problem = ""
        self._entries = len(access.entries)
        for group, state in access.lockouts.items():
            self._locked_until[group] = state.locked_until

    def _broken(self, err: AccessStoreError) -> None:
        if str(err) != self.problem:
            _log.error("access: %s", err)
        self.problem = str(err)

    def _record(self, kind: str, via: str, decision: AccessDecision, card: str) -> None:
        # a card's number only when the list does not know it (to enrol it); a known card by
        # its owner; one refused unchecked (locked out) may be known: no number
        number = card if decision.reason == UNKNOWN_CARD else ""
        attempt = AccessAttempt(
            self.clock(),
            via,
            kind,
            decision.granted,
            decision.who,
            decision.reason,
            number,
        )
        self.history.append(attempt)
        what = f"card {number}" if number else "card" if card else "code"
        if decision.awaiting_code:
            assert self.second is not None
            _log.info(
                "access at %s: card accepted for %s, waiting for the code (%g s)",
                via,
                decision.who,
                self.second.window_s,
            )
            return
        if decision.with_card:
            what = "card and code"
        if decision.granted:
            _log.info("access granted at %s: %s for %s", via, what, decision.who)
            return
        who = f" ({decision.who})" if decision.who else ""
        reason = decision.reason
        if decision.locked:
            group = "cards" if card else "keypad"
            reason += f" until {when_text(self._locked_until.get(group, 0.0))}"
        _log.warning("access refused at %s: %s%s: %s", via, what, who, reason)

    def locked_until(self, group: str) -> float:
        """Unix time the lockout of ``group`` ends as last seen (0 or past: not locked)."""
        return self._locked_until.get(group, 0.0)

    def status(self) -> dict[str, Any]:
        """For ``callbox status``: entries, lockouts, the last attempts (newest last)."""
        now = self.clock()
        result: dict[str, Any] = {"enabled": True, "mode": self.mode, "entries": self._entries}
        if self.second is not None:
            pending = self.second.pending
            waiting = pending is not None and now < pending.until
            result["waiting_for_code"] = pending.who if pending is not None and waiting else None
        for group in ("keypad", "cards"):
            until = self._locked_until.get(group, 0.0)
            result[f"{group}_locked_until"] = when_text(until) if until > now else None
        if self.problem:
            result["problem"] = self.problem
        result["last_attempts"] = [a.to_json() for a in list(self.history)[-10:]]
        return result


def _unpaired(code: AccessEntry, waited: PendingCard | None, now: float) -> str:
    """Why the resident's ``code`` does not open after the card that ``waited``; "" if it does."""
    if waited is None:
        return NO_CARD
    if now >= waited.until:
        return NO_CODE_IN_TIME
    if not code.pairs_with(waited.card):
        return OTHER_RESIDENT
    return ""


def _replace_entry(access: AccessList, entry: AccessEntry) -> AccessList:
    return access.with_entries(tuple(entry if e.id == entry.id else e for e in access.entries))
