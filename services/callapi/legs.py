"""The legs of a call: one media session per callee (per caller, for an incoming call).

An outgoing call rings every target at once, one leg each; the first leg to accept
becomes the winner and the others are closed with "answered elsewhere". A closed leg is
remembered, so its late messages are expected rather than refused. A target that was
offline when the call started is waited for: if it comes online while the call still
rings (a phone woken by a push), it gets its own leg then (a late joiner).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from services.callapi.reasons import GROUP_OUTCOME_PRIORITY
from services.callapi.status import CallStatus
from services.media.session import MediaSession


@dataclass
class Leg:
    """One callee of a call (or, for an incoming call, the caller) and its media session."""

    address: str
    session: MediaSession
    rang: bool = False
    outcome: CallStatus | None = None
    generation: int = 0


class Legs:
    """The legs of one call, which of them won, and which were closed."""

    def __init__(self, incoming: bool) -> None:
        self._incoming = incoming
        self.by_address: dict[str, Leg] = {}
        self.winner: str | None = None
        self._former: set[str] = set()
        self._waiting: dict[str, bool] = {}  # offline target -> the endpoint can wake it

    def __contains__(self, address: object) -> bool:
        return address in self.by_address

    def __iter__(self) -> Iterator[Leg]:
        return iter(list(self.by_address.values()))

    def add(self, leg: Leg) -> None:
        """Ring ``leg`` (or, incoming, take the caller's leg)."""
        self.by_address[leg.address] = leg

    def get(self, address: str) -> Leg | None:
        """The leg with ``address``, or None."""
        return self.by_address.get(address)

    def active(self) -> Leg | None:
        """The leg shown and talked to: the winner, or the caller of an incoming call."""
        if self.winner is not None:
            return self.by_address.get(self.winner)
        if self._incoming and self.by_address:
            return next(iter(self.by_address.values()))
        return None

    def shows(self, address: str) -> bool:
        """True when video from ``address`` is the call's video (no winner yet, or it)."""
        active = self.active()
        return active is None or active is self.by_address.get(address)

    def wait_for(self, address: str, *, wakeable: bool) -> None:
        """``address`` was offline when the call started: invite it if it comes online."""
        self._waiting[address] = wakeable

    def waits_for(self, address: str) -> bool:
        """True for an offline target still waited for (no leg yet, no winner)."""
        return self.winner is None and address in self._waiting

    def take_waiting(self, address: str) -> bool:
        """Stop waiting for ``address`` (it gets a leg now); False if it was not waited for."""
        return self.waits_for(address) and self._waiting.pop(address, None) is not None

    def wakeable_waiting(self) -> list[str]:
        """The offline targets still waited for that the endpoint woke (pushed)."""
        if self.winner is not None:
            return []
        return [address for address, wakeable in self._waiting.items() if wakeable]

    def stop_waiting(self) -> None:
        """The ring is over (answered, cancelled, timed out): invite nobody else."""
        self._waiting.clear()

    def retire(self, address: str) -> Leg | None:
        """Stop ringing ``address``: forget its leg, remember that it was one."""
        leg = self.by_address.pop(address, None)
        if leg is not None:
            self._former.add(address)
        return leg

    def was_leg(self, address: str) -> bool:
        """True for a callee this call stopped ringing."""
        return address in self._former

    def all_ended(self) -> bool:
        """True when every leg has an outcome (the whole ring group failed)."""
        return all(leg.outcome is not None for leg in self.by_address.values())

    def group_outcome(self) -> CallStatus:
        """How the ring group ends: the common outcome, else the highest in priority."""
        outcomes = {leg.outcome for leg in self.by_address.values() if leg.outcome is not None}
        if len(outcomes) == 1:
            return outcomes.pop()
        return next((s for s in GROUP_OUTCOME_PRIORITY if s in outcomes), CallStatus.ERROR)
