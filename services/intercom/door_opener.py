"""The door station's side of door release: policy, relay pulse and audit trail.

The Call API has already checked the challenge and who asks (docs/protocol.md); this
module decides whether the door opens now (rate limit, relay present and working),
pulses the relay once per accepted request, and keeps a record of every request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from hal.relay import Relay
from services.callapi.door_release import UnlockRefused, UnlockRequest

_log = logging.getLogger(__name__)

RATE_WINDOW_S = 60.0


@dataclass(frozen=True)
class ReleaseRecord:
    """One door release request: who, when (unix time), and the result."""

    requester: str
    at: float
    opened: bool
    reason: str = ""
    call_id: str = ""
    monotonic_at: float = 0.0


class DoorOpener:
    """Pulses the door relay for accepted requests, at most ``per_minute`` times a minute."""

    def __init__(
        self,
        relay: Relay,
        *,
        per_minute: int = 6,
        on_record: Callable[[ReleaseRecord], None] | None = None,
        history: int = 100,
    ) -> None:
        self.relay = relay
        self.per_minute = per_minute
        self.on_record = on_record
        self.records: deque[ReleaseRecord] = deque(maxlen=history)
        self._accepted_at: deque[float] = deque()
        self._pulses: set[asyncio.Task[None]] = set()
        self.pulse_ended_at: float | None = None
        """When (``time.monotonic()``) the last relay pulse ended; None: none yet."""

    async def __call__(self, request: UnlockRequest) -> None:
        """The Call API's unlock handler: open for the requester or raise UnlockRefused."""
        await self.open(request.requester, call_id=request.call_id)

    async def open(self, requester: str, *, call_id: str = "") -> None:
        """Pulse the relay once for ``requester``; UnlockRefused (recorded) when not now."""
        now = time.monotonic()
        while self._accepted_at and now - self._accepted_at[0] > RATE_WINDOW_S:
            self._accepted_at.popleft()
        if len(self._accepted_at) >= self.per_minute:
            self._record(requester, call_id, "rate limited")
            raise UnlockRefused("rate limited")
        if self.relay.is_active:
            self._record(requester, call_id, "the door is already open")
            raise UnlockRefused("the door is already open")
        self._accepted_at.append(now)
        pulse = asyncio.create_task(self.relay.pulse(), name=f"door-pulse-{requester}")
        self._pulses.add(pulse)
        pulse.add_done_callback(self._pulse_done)
        await asyncio.sleep(0)  # the pulse energises the relay before its first await
        if pulse.done() and pulse.exception() is not None:
            err = pulse.exception()
            self._record(requester, call_id, f"relay failed: {err}")
            raise UnlockRefused(f"relay failed: {err}")
        self._record(requester, call_id, "")

    def releasing(self, grace_s: float) -> bool:
        """Whether a release pulse is in progress or ended at most ``grace_s`` ago.

        A door contact that opens now was released (services/intercom/alarms.py), not forced.
        """
        if self._pulses or self.relay.is_active:
            return True
        ended = self.pulse_ended_at
        return ended is not None and time.monotonic() - ended <= grace_s

    def _pulse_done(self, pulse: asyncio.Task[None]) -> None:
        self._pulses.discard(pulse)
        self.pulse_ended_at = time.monotonic()
        if not pulse.cancelled() and pulse.exception() is not None:
            _log.error("door relay pulse failed: %s", pulse.exception())

    async def wait_idle(self) -> None:
        """Wait for a pulse in progress to end (the relay releases itself either way)."""
        if self._pulses:
            await asyncio.gather(*self._pulses, return_exceptions=True)

    async def close(self) -> None:
        """Let a pulse in progress finish: a door never stays open, nor is cut short."""
        await self.wait_idle()

    def _record(self, requester: str, call_id: str, reason: str) -> None:
        record = ReleaseRecord(
            requester, time.time(), not reason, reason, call_id, time.monotonic()
        )
        self.records.append(record)
        if reason:
            _log.warning("door release for %s refused: %s", requester, reason)
        else:
            _log.info("door release for %s: relay pulsed", requester)
        if self.on_record is not None:
            self.on_record(record)
