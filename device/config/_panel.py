"""``[panel]``, ``[[bells]]`` and ``[[target_dnd]]``: an entrance panel's bells and how they ring.

Its own module so the tables, their checks across keys and the settings the call service
gets from them stay together (docs/operations.md, "An entrance panel: bells, dial codes and
escalation"). The top-level ``targets`` with ``[inputs.doorbell]`` stay the default bell,
named ``doorbell``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated, Final

from pydantic import AfterValidator, BeforeValidator, Field, StrictBool, StrictFloat, StrictInt

from device.config._apply import Apply
from device.config._models import (
    DAYS,
    Day,
    DebounceMs,
    Name,
    Section,
    Target,
    Text,
    TimeRange,
    _no_duplicates,
    _not_empty,
    _pin,
)
from hal.gpio_specs import ButtonSpec
from services.intercom.dnd import DndSchedule
from services.intercom.settings import DEFAULT_BELL, BellSettings, PanelSettings

if TYPE_CHECKING:
    from device.config._file import CallboxConfig

_CODE: Final = re.compile(r"\d{1,8}")

Delay = Annotated[StrictFloat, Field(ge=0, le=3600, allow_inf_nan=False)]
"""Seconds after the press at which a stage starts (0: at once)."""


def _code(value: str) -> str:
    if value and not _CODE.fullmatch(value):
        raise ValueError(f"{value!r} is not a dial code: 1 to 8 digits, or '' for none")
    return value


def _optional_pin(value: object) -> str:
    return "" if value == "" else _pin(value)


class PanelConfig(Section):
    """``[panel]``: how every bell rings (the stages of a staged ring group).

    Stage 1 rings a bell's indoor units at once; stage 2 its phones (contacts with role
    "web") ``phones_after_s`` later (0: together, as a plain doorbell does); stage 3
    ``fallback`` (a caretaker's unit) ``fallback_after_s`` after the press. A stage with
    nobody to ring starts the next at once. ``dial_directory``: a dialled code that is no
    bell's rings the site directory's ``flat:<code>`` when it lists that flat.
    """

    APPLY = Apply.LIVE
    phones_after_s: Delay = 0.0
    fallback: Annotated[tuple[Target, ...], AfterValidator(_no_duplicates)] = ()
    fallback_after_s: Delay = 20.0
    dial_directory: StrictBool = True


class BellConfig(Section):
    """``[[bells]]``: one flat button or dial code of an entrance panel.

    ``targets`` as the top-level ``targets``; ``code`` its keypad dial code (1 to 8 digits,
    "" none); ``pin`` its own push button ("" none) wired as ``[inputs.*]``; the optional
    ``phones_after_s`` / ``fallback_after_s`` override ``[panel]`` for this bell.
    """

    APPLY = Apply.LIVE
    name: Name
    label: Text = ""
    targets: Annotated[
        tuple[Target, ...], AfterValidator(_not_empty), AfterValidator(_no_duplicates)
    ]
    code: Annotated[str, AfterValidator(_code)] = ""
    pin: Annotated[str, BeforeValidator(_optional_pin), Apply.DEVICES] = ""
    pull_up: Annotated[StrictBool, Apply.DEVICES] = True
    debounce_ms: Annotated[DebounceMs, Apply.DEVICES] = 20
    min_press_ms: Annotated[StrictInt, Field(ge=0, le=10_000), Apply.DEVICES] = 50
    phones_after_s: Delay | None = None
    fallback_after_s: Delay | None = None

    def button(self) -> ButtonSpec | None:
        """The bell's push button for ``IoSpec.bells``, or None when it has none."""
        if not self.pin:
            return None
        return ButtonSpec(
            pin=self.pin,
            pull_up=self.pull_up,
            debounce_ms=self.debounce_ms,
            min_press_ms=self.min_press_ms,
        )


class TargetDndConfig(Section):
    """``[[target_dnd]]``: hours in which the door does not ring ``address`` (as ``[dnd]``).

    An empty ``schedule`` means all day on ``days``.
    """

    APPLY = Apply.LIVE
    address: Name
    schedule: Annotated[tuple[TimeRange, ...], AfterValidator(_no_duplicates)] = ()
    days: Annotated[tuple[Day, ...], AfterValidator(_not_empty), AfterValidator(_no_duplicates)] = (
        DAYS
    )


def bell_buttons(config: CallboxConfig) -> dict[str, ButtonSpec]:
    """The bells' push buttons by bell name (``IoSpec.bells``)."""
    return {bell.name: spec for bell in config.bells if (spec := bell.button()) is not None}


def bell_pins(config: CallboxConfig) -> Iterator[tuple[str, str]]:
    """(key, GPIO name) of every bell's push button, for the pin-uniqueness rule."""
    for index, bell in enumerate(config.bells):
        if bell.pin:
            yield f"bells.{index}.pin", bell.pin


def panel_settings(config: CallboxConfig) -> PanelSettings:
    """``[panel]``, ``[[bells]]`` and ``[[target_dnd]]`` as the call service's settings."""
    panel = config.panel
    bells = tuple(
        BellSettings(
            name=bell.name,
            label=bell.label or bell.name,
            targets=bell.targets,
            code=bell.code,
            phones_after_s=bell.phones_after_s,
            fallback_after_s=bell.fallback_after_s,
        )
        for bell in config.bells
    )
    dnd = {
        entry.address: DndSchedule.from_config(True, list(entry.schedule), list(entry.days))
        for entry in config.target_dnd
    }
    return PanelSettings(
        phones_after_s=panel.phones_after_s,
        fallback=panel.fallback,
        fallback_after_s=panel.fallback_after_s,
        dial_directory=panel.dial_directory,
        bells=bells,
        target_dnd=dnd,
    )


def panel_problems(config: CallboxConfig) -> Iterator[tuple[str, str]]:
    """The cross-key problems of the panel tables (see `device.config._rules`)."""
    panel, ring_timeout = config.panel, config.call.ring_timeout_s
    if config.role != "door":
        if config.bells:
            yield "bells", "only a door station has bells; remove [[bells]] here"
        if panel.fallback:
            yield "panel.fallback", "only a door station rings a fallback; remove it here"
    fallback = bool(panel.fallback)  # without one, fallback_after_s is never used
    yield from _delays(
        "panel", panel.phones_after_s, panel.fallback_after_s if fallback else None, ring_timeout
    )
    yield from _flats("panel.fallback", panel.fallback, config)
    if config.address in panel.fallback:
        yield "panel.fallback", f"{config.address!r} is this endpoint's own address"
    names: dict[str, str] = {DEFAULT_BELL: "the default bell (targets, [inputs.doorbell])"}
    codes: dict[str, str] = {}
    for index, bell in enumerate(config.bells):
        key = f"bells.{index}"
        if bell.name in names:
            yield f"{key}.name", f"{bell.name!r} is already {names[bell.name]}"
        names.setdefault(bell.name, key)
        if bell.code and bell.code in codes:
            yield f"{key}.code", f"{bell.code!r} is already the code of {codes[bell.code]}"
        if bell.code:
            codes.setdefault(bell.code, key)
        if config.address in bell.targets:
            yield f"{key}.targets", f"{config.address!r} is this endpoint's own address"
        yield from _flats(f"{key}.targets", bell.targets, config)
        yield from _delays(
            key, bell.phones_after_s, bell.fallback_after_s if fallback else None, ring_timeout
        )
    seen: dict[str, int] = {}
    for index, entry in enumerate(config.target_dnd):
        if entry.address in seen:
            yield (
                f"target_dnd.{index}.address",
                f"{entry.address!r} is already target_dnd.{seen[entry.address]}",
            )
        seen.setdefault(entry.address, index)


def _delays(
    key: str, phones: float | None, fallback: float | None, ring_timeout: float
) -> Iterator[tuple[str, str]]:
    for name, value in (("phones_after_s", phones), ("fallback_after_s", fallback)):
        if value is not None and value >= ring_timeout:
            yield (
                f"{key}.{name}",
                f"{value} must be shorter than call.ring_timeout_s ({ring_timeout}): "
                "that stage would never ring",
            )


def _flats(key: str, targets: tuple[str, ...], config: CallboxConfig) -> Iterator[tuple[str, str]]:
    for index, target in enumerate(targets):
        if target.startswith("flat:") and not config.directory.admin_key:
            yield f"{key}.{index}", f"{target!r} needs the site directory: set directory.admin_key"
