"""The entrance: sim keypad and reader, the real check, a real opener over a real relay.

The keypad is a SimKeypad, the reader a SimCardReader; the door opener drives a GpioRelay
on gpiozero's MockFactory (hal.io_devices.build_io with the "mock" pin factory). A grant
pulses the relay once and is recorded by the opener with its rate limit; dial codes go to
the dial callable; every outcome reaches the feedback callback.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from access_helpers import RELAY_PIN, Panel, enroll

from hal.cards import SimCardReader
from hal.errors import DeviceUnavailableError
from hal.gpio_specs import IoSpec, RelaySpec
from hal.io_devices import IoDevices, build_io
from hal.keypad import SimKeypad
from services.access import EntryKind
from services.intercom.entrance import EntranceAttempt, Feedback


@pytest.fixture
async def io() -> AsyncIterator[IoDevices]:
    devices = build_io(IoSpec(pin_factory="mock", relay=RelaySpec(pin=RELAY_PIN, pulse_ms=50)))
    yield devices
    await devices.close()


@pytest.fixture
async def panel(tmp_path: Path, io: IoDevices) -> AsyncIterator[Panel]:
    made = Panel(tmp_path, io)
    await made.start()
    made.pin.clear_states()
    yield made
    await made.close()


async def test_a_code_opens_the_door_with_one_recorded_pulse(
    panel: Panel, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    await asyncio.to_thread(enroll, tmp_path, "2580")
    panel.keypad.press("*2580#")
    assert await panel.told() is Feedback.GRANTED
    await panel.opener.wait_idle()
    assert not panel.pin.state
    assert panel.pulses() == 1
    record = panel.opener.records[-1]
    assert (record.requester, record.opened) == ("code:Smith (flat 12)", True)
    assert "2580" not in caplog.text


async def test_a_card_opens_the_door_and_an_unknown_one_is_refused(
    panel: Panel, tmp_path: Path
) -> None:
    await asyncio.to_thread(enroll, tmp_path, "nfc:04a1b2c3d4e5f6", "Jones", kind=EntryKind.CARD)
    panel.reader.present("nfc", "04a1b2c3d4e5f6")
    assert await panel.told() is Feedback.GRANTED
    assert panel.opener.records[-1].requester == "card:Jones (flat 12)"
    await panel.opener.wait_idle()
    panel.reader.present("nfc", "04a1b2c3d4e5f7")
    assert await panel.told() is Feedback.REFUSED
    assert panel.pulses() == 1


async def test_watchers_see_every_attempt_without_codes_or_known_card_numbers(
    panel: Panel, tmp_path: Path
) -> None:
    await asyncio.to_thread(enroll, tmp_path, "2580")
    await asyncio.to_thread(enroll, tmp_path, "nfc:04a1b2c3d4e5f6", "Jones", kind=EntryKind.CARD)
    panel.keypad.press("*2580#")
    assert await panel.told() is Feedback.GRANTED
    await panel.opener.wait_idle()
    panel.keypad.press("*1111#")
    assert await panel.told() is Feedback.REFUSED
    panel.keypad.press("12#")  # a dial code is no access attempt
    assert await panel.told() is Feedback.RINGING
    panel.reader.present("nfc", "04a1b2c3d4e5f6")
    assert await panel.told() is Feedback.GRANTED
    panel.reader.present("nfc", "0badcafe")
    assert await panel.told() is Feedback.REFUSED
    assert panel.attempts.seen == [
        EntranceAttempt(True, "code", "keypad", "Smith (flat 12)"),
        EntranceAttempt(False, "code", "keypad", "", "no such code"),
        EntranceAttempt(True, "card", "entrance", "Jones (flat 12)"),
        EntranceAttempt(False, "card", "entrance", "", "unknown card", card="nfc:0badcafe"),
    ]
    told = repr(panel.attempts.seen)
    assert "2580" not in told and "1111" not in told and "04a1b2c3d4e5f6" not in told


async def test_the_openers_rate_limit_holds_for_codes_too(tmp_path: Path, io: IoDevices) -> None:
    panel = Panel(tmp_path, io, per_minute=1)
    await panel.start()
    try:
        await asyncio.to_thread(enroll, tmp_path, "2580")
        panel.keypad.press("*2580#")
        assert await panel.told() is Feedback.GRANTED
        await panel.opener.wait_idle()
        panel.keypad.press("*2580#")
        assert await panel.told() is Feedback.REFUSED
        assert [r.reason for r in panel.opener.records] == ["", "rate limited"]
        refused = panel.attempts.seen[-1]
        assert (refused.granted, refused.who) == (False, "Smith (flat 12)")
        assert refused.reason.startswith("door not opened")
        assert sum(1 for s in panel.pin.states if s.state) == 1
    finally:
        await panel.close()


async def test_wrong_codes_lock_the_keypad(panel: Panel, tmp_path: Path) -> None:
    await asyncio.to_thread(enroll, tmp_path, "2580")
    for _ in range(3):
        panel.keypad.press("*1111#")
        assert await panel.told() is Feedback.REFUSED
    panel.keypad.press("*2580#")
    assert await panel.told() is Feedback.LOCKED
    assert not panel.opener.records and panel.pulses() == 0


async def test_dial_codes_ring_or_say_unknown_and_never_count_as_attempts(panel: Panel) -> None:
    panel.keypad.press("12#")
    assert await panel.told() is Feedback.RINGING
    for _ in range(4):
        panel.keypad.press("99#")
        assert await panel.told() is Feedback.UNKNOWN
    assert panel.dialled == ["12", "99", "99", "99", "99"]
    assert not panel.access.status()["keypad_locked_until"]


async def test_too_long_an_entry_is_refused(panel: Panel) -> None:
    panel.keypad.press("*1234567890123#")
    assert await panel.told() is Feedback.REFUSED
    assert not panel.access.history, "never checked"


async def test_codes_and_cards_with_access_off_are_refused(tmp_path: Path, io: IoDevices) -> None:
    panel = Panel(tmp_path, io)
    panel.entrance.access = None
    await panel.start()
    try:
        panel.keypad.press("*2580#")
        assert await panel.told() is Feedback.REFUSED
        panel.reader.present("wiegand26", "1:2")
        assert await panel.told() is Feedback.REFUSED
        panel.keypad.press("12#")
        assert await panel.told() is Feedback.RINGING
    finally:
        await panel.close()


async def test_close_unbinds_the_keypad_and_readers(panel: Panel) -> None:
    await panel.entrance.close()
    assert panel.keypad.on_key is None and panel.reader.on_card is None
    await panel.entrance.close()


async def test_io_devices_start_and_close_the_keypad_and_the_readers() -> None:
    keypad, reader = SimKeypad(), SimCardReader("entrance")
    devices = IoDevices(keypad=keypad, card_readers={"entrance": reader})
    await devices.start()
    keys: list[str] = []
    keypad.on_key = keys.append
    keypad.press("1#")
    reader.present("nfc", "04a1b2c3")
    assert keys == ["1", "#"]
    await devices.close()
    with pytest.raises(DeviceUnavailableError):
        keypad.press("1")
    with pytest.raises(DeviceUnavailableError):
        reader.present("nfc", "04a1b2c3")
