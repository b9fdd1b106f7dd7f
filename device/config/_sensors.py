"""``[door_contact]`` and ``[tamper]``: a door station's supervision inputs (its alarms).

Its own module so the two tables, their checks across keys and their HAL specs stay together
(docs/hardware.md, "Door contact and tamper switch"; docs/operations.md, "Door alarms").

The usual wiring, and the defaults: a normally closed (NC) reed contact on the frame, its
magnet on the door, between the pin and GND with the internal pull-up. Door closed: the
magnet holds the contact closed and the pin reads low; door open (or the wire cut): the
pin reads high, ``open_when_high = true``. A normally open (NO) reed (closed while the door
is open) wired the same way reads low when open: ``open_when_high = false`` (not fail-safe:
a cut wire reads closed; prefer NC). A tamper microswitch held pressed by the cover, NC to
GND with the pull-up, is the same: ``tampered_when_high = true``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated

from pydantic import Field, StrictBool, StrictFloat

from device.config._apply import Apply
from device.config._models import DebounceMs, Pin, Seconds, Section
from hal.gpio_specs import SwitchSpec

if TYPE_CHECKING:
    from device.config._file import CallboxConfig

GraceSeconds = Annotated[StrictFloat, Field(ge=0, le=60, allow_inf_nan=False)]


class DoorContactConfig(Section):
    """``[door_contact]``: the door's reed contact (docs/hardware.md), a door station's.

    ``left_open_s``: the "door left open" alarm after the door stayed open this long.
    ``forced_grace_s``: the door opening this long after a release pulse ended still counts
    as released (the visitor pushes late); later, or with no pulse, it is "door forced open".
    Changing any key rebuilds the GPIO devices and the call service once no call is on.
    """

    APPLY = Apply.DEVICES
    pin: Pin
    pull_up: StrictBool = True
    open_when_high: StrictBool = True
    debounce_ms: DebounceMs = 50
    left_open_s: Seconds = 30.0
    forced_grace_s: GraceSeconds = 5.0

    def spec(self) -> SwitchSpec:
        """The HAL's spec of this contact (active = open)."""
        return SwitchSpec(
            pin=self.pin,
            active_high=self.open_when_high,
            pull_up=self.pull_up,
            debounce_ms=self.debounce_ms,
        )


class TamperConfig(Section):
    """``[tamper]``: the door station's tamper switch (docs/hardware.md)."""

    APPLY = Apply.DEVICES
    pin: Pin
    pull_up: StrictBool = True
    tampered_when_high: StrictBool = True
    debounce_ms: DebounceMs = 50

    def spec(self) -> SwitchSpec:
        """The HAL's spec of this switch (active = tampered with)."""
        return SwitchSpec(
            pin=self.pin,
            active_high=self.tampered_when_high,
            pull_up=self.pull_up,
            debounce_ms=self.debounce_ms,
        )


def sensor_pins(config: CallboxConfig) -> Iterator[tuple[str, str]]:
    """(key, GPIO name) of the door contact's and the tamper switch's pins."""
    if config.door_contact is not None:
        yield "door_contact.pin", config.door_contact.pin
    if config.tamper is not None:
        yield "tamper.pin", config.tamper.pin


def sensor_problems(config: CallboxConfig) -> Iterator[tuple[str, str]]:
    """The cross-key problems of ``[door_contact]`` and ``[tamper]`` (`device.config._rules`)."""
    if config.role == "door":
        return
    if config.door_contact is not None:
        yield "door_contact.pin", "only a door station has a door contact; remove [door_contact]"
    if config.tamper is not None:
        yield "tamper.pin", "only a door station has a tamper input; remove [tamper] here"
