"""A door station's entrance (keypad, card readers, ``[access]``) built from the configuration.

Built, started and closed with the call service (its door opener is the service's), so
it is rebuilt whenever the service is: ``[access]`` declares `Apply.DEVICES`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from device.config import CallboxConfig
from hal.io_devices import IoDevices
from services.access import AccessControl, AccessStore
from services.callapi import Calls
from services.intercom.door import DoorStation
from services.intercom.entrance import Entrance, Feedback, LedFeedback, ToneFeedback
from services.intercom.service import IntercomService


@dataclass
class EntrancePart:
    """The entrance, the tones it plays and the LED flashes; `status` for ``callbox status``."""

    entrance: Entrance
    feedback: ToneFeedback
    led: LedFeedback

    async def start(self) -> None:
        """Bind the keypad and the readers (the board's devices are started by their owner)."""
        await self.entrance.start()

    async def close(self) -> None:
        """Unbind, end checks under way and the tones; idempotent."""
        await self.entrance.close()
        await self.feedback.close()

    def status(self) -> dict[str, Any]:
        """``access`` in ``callbox status``: enabled, entries, lockouts, last attempts."""
        access = self.entrance.access
        result: dict[str, Any] = access.status() if access is not None else {"enabled": False}
        result["keypad"] = self.entrance.keypad.name if self.entrance.keypad else None
        result["card_readers"] = [reader.name for reader in self.entrance.readers]
        return result


def entrance_part(
    config: CallboxConfig, calls: Calls, service: IntercomService, io: IoDevices
) -> EntrancePart | None:
    """The entrance of a door station with ``[access] enabled``, a keypad or a card reader."""
    if not isinstance(service, DoorStation):
        return None
    readers = list(io.card_readers.values())
    if not (config.access.enabled or io.keypad is not None or readers):
        return None
    access = (
        AccessControl(
            AccessStore(Path(config.state_dir)),
            policy=config.access.policy(),
            mode=config.access.mode,
            second_factor_s=config.access.second_factor_s,
        )
        if config.access.enabled
        else None
    )
    # DoorStation.dial (issue 19's ring part) rings the bell or flat of a dial code
    dial: Callable[[str], Awaitable[bool]] | None = getattr(service, "dial", None)
    tone = ToneFeedback(calls)
    led = LedFeedback(service.flash_led)

    def tell(feedback: Feedback) -> None:
        """A tone on the speaker (when idle) and a flash of the status LED."""
        try:
            tone(feedback)
        finally:
            led(feedback)

    entrance = Entrance(
        opener=service.opener,
        access=access,
        dial=dial,
        keypad=io.keypad,
        readers=readers,
        entry_timeout_s=config.access.entry_timeout_s,
        on_feedback=tell,
        watchers=service.watchers,  # Home Assistant's bridge: the Access event
    )
    return EntrancePart(entrance, tone, led)
