"""Lockout after wrong attempts in a row: a growing pause, kept across restarts.

``max_attempts`` wrong attempts in a row lock for ``lockout_s``; each further lockout
doubles the pause up to ``lockout_max_s``. A success resets everything; so does a quiet
period of ``quiet_s`` with no wrong attempt (an hour by default: a resident's typo the
next day does not start from a long lockout). The state is a value kept in the access
list file, so a restart of the daemon neither clears nor shortens a lockout.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

__all__ = ["LockoutPolicy", "LockoutState"]


@dataclass(frozen=True)
class LockoutPolicy:
    """How many wrong attempts lock, and for how long (``[access]``)."""

    max_attempts: int = 3
    lockout_s: float = 30.0
    lockout_max_s: float = 900.0
    quiet_s: float = 3600.0

    def pause(self, level: int) -> float:
        """The length of the ``level``-th lockout in a row (1: ``lockout_s``), capped."""
        return min(self.lockout_s * 2.0 ** max(level - 1, 0), self.lockout_max_s)


@dataclass(frozen=True)
class LockoutState:
    """Where one group of inputs (the keypads, or the card readers) stands."""

    failures: int = 0
    """Wrong attempts in a row since the last lockout or success."""
    level: int = 0
    """Lockouts in a row (the next one is ``2**level`` times ``lockout_s``)."""
    locked_until: float = 0.0
    """Unix time the current lockout ends (0: none)."""
    last_failure: float = 0.0

    def is_locked(self, now: float) -> bool:
        """True while a lockout is on at unix time ``now``."""
        return now < self.locked_until

    def failed(self, policy: LockoutPolicy, now: float) -> LockoutState:
        """After a wrong attempt at ``now``: one more failure, a lockout at ``max_attempts``."""
        state = self._quiet_reset(policy, now)
        failures = state.failures + 1
        if failures < policy.max_attempts:
            return replace(state, failures=failures, last_failure=now)
        level = state.level + 1
        return LockoutState(0, level, now + policy.pause(level), now)

    def succeeded(self) -> LockoutState:
        """After a granted attempt: back to nothing."""
        return LockoutState()

    def _quiet_reset(self, policy: LockoutPolicy, now: float) -> LockoutState:
        quiet_since = max(self.last_failure, self.locked_until)
        if (self.failures or self.level) and now - quiet_since >= policy.quiet_s:
            return LockoutState()
        return self

    def to_json(self) -> dict[str, Any]:
        """The state as the file keeps it."""
        return {
            "failures": self.failures,
            "level": self.level,
            "locked_until": self.locked_until,
            "last_failure": self.last_failure,
        }

    @classmethod
    def from_json(cls, data: Any) -> LockoutState:
        """The state from the file; ValueError when it is malformed."""
        if data is None:
            return cls()
        if not isinstance(data, dict):
            raise ValueError("a lockout is not a table")
        failures, level = data.get("failures", 0), data.get("level", 0)
        until, last = data.get("locked_until", 0.0), data.get("last_failure", 0.0)
        if not all(type(v) is int and v >= 0 for v in (failures, level)):
            raise ValueError("lockout failures and level must be whole numbers")
        if not all(type(v) in (int, float) for v in (until, last)):
            raise ValueError("lockout times must be numbers")
        return cls(failures, level, float(until), float(last))
