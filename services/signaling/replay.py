"""Replay protection that does not rest on synchronised clocks alone.

Three layers (docs/protocol.md, "Replay protection"):
1. every (sender, nonce) seen is remembered for the freshness window, measured on the
   receiver's own monotonic clock, so a replay inside the window is caught whatever
   the clocks say;
2. ``ts`` must be within the window of the receiver's wall clock, so an old message
   is refused once its nonce has been forgotten;
3. an invite's call id is remembered much longer (bounded count), and every other
   message must belong to a call the receiver knows with that sender — checked by
   the call layer — so a replayed invite or answer is refused even with skewed clocks.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from services.signaling.errors import RejectedMessage, RejectReason


class ReplayGuard:
    """Remembers nonces and invite call ids; refuses repeats and stale messages."""

    def __init__(
        self,
        *,
        window_s: float = 120.0,
        max_nonces: int = 100_000,
        max_call_ids: int = 10_000,
        wall_clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window_s = window_s
        self._max_nonces = max_nonces
        self._max_call_ids = max_call_ids
        self._wall = wall_clock
        self._monotonic = monotonic
        self._nonces: OrderedDict[tuple[str, bytes], float] = OrderedDict()
        self._call_ids: OrderedDict[tuple[str, str], None] = OrderedDict()

    def check(self, sender: str, nonce: bytes, ts_ms: int) -> None:
        """Refuse a stale message or a repeated nonce; remember the nonce otherwise."""
        skew_s = abs(self._wall() - ts_ms / 1000)
        if skew_s > self.window_s:
            raise RejectedMessage(
                RejectReason.STALE,
                f"timestamp from {sender} is {skew_s:.0f} s away from this clock "
                f"(window {self.window_s:.0f} s)",
            )
        now = self._monotonic()
        self._expire(now)
        key = (sender, nonce)
        if key in self._nonces:
            raise RejectedMessage(RejectReason.REPLAY, f"nonce from {sender} was already used")
        self._nonces[key] = now
        while len(self._nonces) > self._max_nonces:
            self._nonces.popitem(last=False)

    def check_new_call(self, sender: str, call_id: str) -> None:
        """Refuse an invite whose call id this endpoint has already seen from ``sender``."""
        key = (sender, call_id)
        if key in self._call_ids:
            raise RejectedMessage(
                RejectReason.REPLAY, f"invite {call_id} from {sender} was already received"
            )
        self._call_ids[key] = None
        while len(self._call_ids) > self._max_call_ids:
            self._call_ids.popitem(last=False)

    def _expire(self, now: float) -> None:
        while self._nonces:
            _, seen_at = next(iter(self._nonces.items()))
            if now - seen_at <= self.window_s:
                return
            self._nonces.popitem(last=False)
