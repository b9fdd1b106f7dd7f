"""Card and code (``[access] mode = "card_and_code"``): a card, then its resident's code.

Everything real but the keys and cards: the real KDF and access list on disk, a SimKeypad
and a SimCardReader, a DoorOpener over a GpioRelay on gpiozero's MockFactory; the access
check's clock is injected (the window and the lockout are judged by it).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from access_helpers import RELAY_PIN, Panel, enroll

from device.config import ConfigError, parse_config
from hal.gpio_specs import IoSpec, RelaySpec
from hal.io_devices import IoDevices, build_io
from hal.leds import FLASH_TIMES, LedPattern
from services.access import (
    CARD_AND_CODE,
    CARD_OR_CODE,
    AccessControl,
    AccessStore,
    EntryKind,
)
from services.access.entries import AccessEntry
from services.intercom.entrance import (
    FEEDBACK_LEDS,
    FEEDBACK_TONES,
    EntranceAttempt,
    Feedback,
)

CARD = ("nfc", "04a1b2c3d4e5f6")
SMITH = "Smith (flat 12)"


@pytest.fixture
async def io() -> AsyncIterator[IoDevices]:
    devices = build_io(IoSpec(pin_factory="mock", relay=RelaySpec(pin=RELAY_PIN, pulse_ms=50)))
    yield devices
    await devices.close()


@pytest.fixture
async def panel(tmp_path: Path, io: IoDevices) -> AsyncIterator[Panel]:
    made = Panel(tmp_path, io, per_minute=30, mode=CARD_AND_CODE, window_s=10.0, dial_codes=None)
    await made.start()
    yield made
    await made.close()


def residents(state_dir: Path) -> dict[str, AccessEntry]:
    """Smith's card and code (flat 12), Jones's code (flat 3), a visitor's one-time code."""
    return {
        "smith-card": enroll(state_dir, ":".join(CARD), kind=EntryKind.CARD),
        "smith-pin": enroll(state_dir, "2580"),
        "jones-pin": enroll(state_dir, "3691", "Jones", flat="3"),
        "visitor": enroll(state_dir, "4711", "Parcel", kind=EntryKind.VISITOR, once=True),
    }


async def test_a_card_then_its_residents_code_opens_once(
    panel: Panel, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    await asyncio.to_thread(residents, tmp_path)
    panel.reader.present(*CARD)
    assert await panel.told() is Feedback.CODE
    assert panel.pulses() == 0 and not panel.opener.records
    assert panel.access.status()["waiting_for_code"] == SMITH
    assert f"card accepted for {SMITH}, waiting for the code" in caplog.text
    panel.clock.advance(5.0)
    panel.keypad.press("*2580#")
    assert await panel.told() is Feedback.GRANTED
    await panel.opener.wait_idle()
    assert panel.pulses() == 1
    assert panel.opener.records[-1].requester == f"card+code:{SMITH}"
    assert panel.attempts.seen == [EntranceAttempt(True, "card+code", "keypad", SMITH)]
    assert f"card and code for {SMITH}" in caplog.text
    assert "2580" not in caplog.text and CARD[1] not in caplog.text
    # the window ended at that code: the same code again does not open
    panel.keypad.press("*2580#")
    assert await panel.told() is Feedback.REFUSED
    assert panel.pulses() == 1


async def test_a_card_alone_or_a_residents_code_alone_does_not_open(
    panel: Panel, tmp_path: Path
) -> None:
    await asyncio.to_thread(residents, tmp_path)
    panel.keypad.press("*2580#")
    assert await panel.told() is Feedback.REFUSED
    assert panel.attempts.seen[-1].reason.startswith("a resident's code needs the card first")
    panel.reader.present(*CARD)
    assert await panel.told() is Feedback.CODE
    assert panel.feedback.empty() and panel.pulses() == 0
    assert not panel.opener.records
    assert panel.access.status()["keypad_locked_until"] is None  # one wrong attempt so far
    assert [a.reason for a in panel.access.history][-1] == "card accepted, waiting for the code"


async def test_another_residents_code_after_a_card_is_refused_and_counts(
    panel: Panel, tmp_path: Path
) -> None:
    await asyncio.to_thread(residents, tmp_path)
    for _ in range(3):
        panel.reader.present(*CARD)
        assert await panel.told() is Feedback.CODE
        panel.keypad.press("*3691#")  # Jones's code after Smith's card
        assert await panel.told() in (Feedback.REFUSED, Feedback.LOCKED)
    assert panel.attempts.seen[0].reason == "the code is not the card owner's (card and code)"
    assert panel.access.status()["keypad_locked_until"] is not None  # 3 wrong in a row
    panel.reader.present(*CARD)
    assert await panel.told() is Feedback.CODE  # the readers are not locked
    panel.keypad.press("*2580#")
    assert await panel.told() is Feedback.LOCKED
    assert panel.pulses() == 0 and not panel.opener.records


async def test_the_window_times_out(panel: Panel, tmp_path: Path) -> None:
    await asyncio.to_thread(residents, tmp_path)
    panel.reader.present(*CARD)
    assert await panel.told() is Feedback.CODE
    panel.clock.advance(10.0)
    panel.keypad.press("*2580#")
    assert await panel.told() is Feedback.REFUSED
    assert panel.attempts.seen[-1].reason == "no code in time after the card (card and code)"
    assert panel.pulses() == 0


async def test_the_timer_ends_the_wait_and_says_so(tmp_path: Path, io: IoDevices) -> None:
    panel = Panel(tmp_path, io, per_minute=30, mode=CARD_AND_CODE, window_s=0.2, dial_codes=None)
    await panel.start()
    try:
        await asyncio.to_thread(residents, tmp_path)
        panel.reader.present(*CARD)
        assert await panel.told() is Feedback.CODE
        panel.clock.advance(1.0)  # the check's clock is past the window when the timer fires
        assert await panel.told() is Feedback.REFUSED
        assert panel.attempts.seen == [
            EntranceAttempt(False, "card", "entrance", SMITH, "no code in time after the card "
                            "(card and code)")
        ]  # fmt: skip
        assert panel.access.status()["waiting_for_code"] is None
    finally:
        await panel.close()


async def test_another_card_ends_the_wait(panel: Panel, tmp_path: Path) -> None:
    await asyncio.to_thread(residents, tmp_path)
    panel.reader.present(*CARD)
    assert await panel.told() is Feedback.CODE
    panel.reader.present("nfc", "0badcafe")
    assert await panel.told() is Feedback.REFUSED
    panel.keypad.press("*2580#")
    assert await panel.told() is Feedback.REFUSED
    assert panel.attempts.seen[-1].reason.startswith("a resident's code needs the card first")
    assert panel.pulses() == 0


async def test_a_visitor_code_opens_alone(panel: Panel, tmp_path: Path) -> None:
    await asyncio.to_thread(residents, tmp_path)
    panel.keypad.press("*4711#")
    assert await panel.told() is Feedback.GRANTED
    await panel.opener.wait_idle()
    assert panel.pulses() == 1
    assert panel.opener.records[-1].requester == "code:Parcel (flat 12)"


async def test_card_or_code_mode_is_unchanged(tmp_path: Path, io: IoDevices) -> None:
    panel = Panel(tmp_path, io, per_minute=30, mode=CARD_OR_CODE, window_s=10.0, dial_codes=None)
    await panel.start()
    try:
        await asyncio.to_thread(residents, tmp_path)
        panel.reader.present(*CARD)
        assert await panel.told() is Feedback.GRANTED
        await panel.opener.wait_idle()
        panel.keypad.press("*2580#")
        assert await panel.told() is Feedback.GRANTED
        await panel.opener.wait_idle()
        assert panel.pulses() == 2
        assert [r.requester for r in panel.opener.records] == [f"card:{SMITH}", f"code:{SMITH}"]
        assert "waiting_for_code" not in panel.access.status()
    finally:
        await panel.close()


def test_pairing_is_same_name_and_flat_card_with_pin(tmp_path: Path) -> None:
    made = residents(tmp_path)
    assert made["smith-card"].pairs_with(made["smith-pin"])
    assert made["smith-pin"].pairs_with(made["smith-card"])
    assert not made["smith-card"].pairs_with(made["jones-pin"])
    assert not made["smith-pin"].pairs_with(made["smith-pin"])
    other_flat = enroll(tmp_path, "nfc:0011223344", flat="14", kind=EntryKind.CARD)
    assert not other_flat.pairs_with(made["smith-pin"])


def test_an_unknown_mode_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="card_or_code, card_and_code"):
        AccessControl(AccessStore(tmp_path), mode="card_xor_code")


def test_the_enter_code_feedback_is_a_tone_and_a_flash_of_its_own() -> None:
    assert FEEDBACK_LEDS[Feedback.CODE] is LedPattern.CODE and LedPattern.CODE in FLASH_TIMES
    tones = [p.cadence_s for p in FEEDBACK_TONES.values()]
    assert tones.count(FEEDBACK_TONES[Feedback.CODE].cadence_s) == 1


DOOR = 'role = "door"\naddress = "door"\nsite = "home"\nboard = "sim"\ntargets = ["flat1"]\n'
KEYPAD = '[keypad]\nkind = "evdev"\ndevice = "/dev/input/by-id/usb-kp-event-kbd"\n'
READER = '[[card_readers]]\nname = "entrance"\nkind = "pn532"\n'
TWO = '[access]\nenabled = true\nmode = "card_and_code"\nsecond_factor_s = 15.0\n'


def test_the_config_needs_a_keypad_and_a_reader_for_card_and_code() -> None:
    config = parse_config(DOOR + KEYPAD + READER + TWO)
    assert (config.access.mode, config.access.second_factor_s) == ("card_and_code", 15.0)
    assert parse_config(DOOR).access.mode == "card_or_code"
    with pytest.raises(ConfigError) as info:
        parse_config(DOOR + TWO)
    problems = [why for key, why in info.value.problems if key == "access.mode"]
    assert any("[keypad]" in why for why in problems)
    assert any("[[card_readers]]" in why for why in problems)
    with pytest.raises(ConfigError, match=r"access\.mode"):
        parse_config(DOOR + KEYPAD + TWO)
    with pytest.raises(ConfigError, match=r"access\.mode"):
        parse_config(DOOR + '[access]\nmode = "card_or_pin"\n')
    with pytest.raises(ConfigError, match=r"access\.second_factor_s"):
        parse_config(DOOR + "[access]\nsecond_factor_s = 0.5\n")
    # off: the mode is not checked against the devices
    parse_config(DOOR + '[access]\nmode = "card_and_code"\n')
