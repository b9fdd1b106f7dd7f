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
from services.access.entries import AccessEntry, when_text
from services.access.errors import AccessStoreError
from services.access.lockout import LockoutPolicy
from services.access.store import AccessList, AccessStore

__all__ = ["LOCKED", "AccessAttempt", "AccessControl", "AccessDecision"]

_log = logging.getLogger(__name__)

LOCKED = "locked out"
"""The reason of a decision refused because its group is locked out."""
UNKNOWN_CODE = "no such code"
UNKNOWN_CARD = "unknown card"


@dataclass(frozen=True)
class AccessDecision:
    """The answer to one attempt: ``granted``, ``who`` (the entry's label) and ``reason``."""

    granted: bool
    who: str = ""
    reason: str = ""

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
    ) -> None:
        """``clock`` gives unix time: for validity, schedules and lockouts (tests inject one)."""
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

    async def _attempt(self, kind: str, secret: str, group: str, via: str) -> AccessDecision:
        try:
            decision = await asyncio.to_thread(self._check, kind, secret, group)
        except AccessStoreError as err:
            self._broken(err)
            decision = AccessDecision(False, "", "the access list cannot be read")
        self._record(kind, via, decision, secret if kind == "card" else "")
        return decision

    def _read(self) -> AccessList:
        with self.store.locked():
            return self.store.read()

    def _check(self, kind: str, secret: str, group: str) -> AccessDecision:
        now = self.clock()
        with self.store.locked():
            access = self.store.read()
            self._seen(access)
            state = access.lockout(group)
            if state.is_locked(now):
                return AccessDecision(False, "", LOCKED)
            digests = {kid: params.derive(kind, secret) for kid, params in access.kdfs.items()}
            hits = [hmac.compare_digest(e.digest, digests[e.kdf]) for e in access.entries]
            matched = [entry for entry, hit in zip(access.entries, hits, strict=True) if hit]
            if not matched:
                state = state.failed(self.policy, now)
                self.store.write(access.with_lockout(group, state))
                if state.is_locked(now):
                    _log.warning(
                        "access: the %s locked out for %.0f s (lockout %d in a row)",
                        "keypad" if group == "keypad" else "card readers",
                        state.locked_until - now,
                        state.level,
                    )
                self._locked_until[group] = state.locked_until
                return AccessDecision(False, "", UNKNOWN_CODE if kind == "code" else UNKNOWN_CARD)
            entry = matched[0]
            refusal = entry.refusal(now)
            if refusal:
                return AccessDecision(False, entry.label, refusal)
            used = entry.after_use(now)
            if used.kdf != access.current_kdf:  # raised parameters: re-hash at this use
                used = replace(used, kdf=access.current_kdf, digest=digests[access.current_kdf])
            self.store.write(_replace_entry(access, used).with_lockout(group, state.succeeded()))
            self._locked_until[group] = 0.0
            return AccessDecision(True, entry.label, "")

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
        result: dict[str, Any] = {"enabled": True, "entries": self._entries}
        for group in ("keypad", "cards"):
            until = self._locked_until.get(group, 0.0)
            result[f"{group}_locked_until"] = when_text(until) if until > now else None
        if self.problem:
            result["problem"] = self.problem
        result["last_attempts"] = [a.to_json() for a in list(self.history)[-10:]]
        return result


def _replace_entry(access: AccessList, entry: AccessEntry) -> AccessList:
    return access.with_entries(tuple(entry if e.id == entry.id else e for e in access.entries))
