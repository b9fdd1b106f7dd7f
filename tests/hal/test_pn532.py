"""The PN532 reader's polling thread against tests/fake_pn532.py (no PN532 here).

A tag is reported once while it stays on the reader (a missed poll does not re-report it),
again after it was removed, at once when another tag comes; reader errors are logged and
retried with a growing backoff; close stops the thread and closes the reader.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest
from fake_pn532 import FakePn532Bus

from hal.cards import CardRead
from hal.errors import DeviceUnavailableError, HalError
from hal.gpio_specs import Pn532Spec
from hal.pn532 import REMOVED_AFTER, Pn532Reader, open_adafruit_pn532

TIMEOUT = 5.0
TAG = bytes.fromhex("04a1b2c3d4e580")
OTHER = bytes.fromhex("deadbeef")


class Rig:
    def __init__(self, reader: Pn532Reader, bus: FakePn532Bus) -> None:
        self.reader = reader
        self.bus = bus
        self.reads: asyncio.Queue[CardRead] = asyncio.Queue()
        reader.on_card = self.reads.put_nowait

    async def read(self) -> CardRead:
        return await asyncio.wait_for(self.reads.get(), TIMEOUT)

    async def polls(self, count: int) -> None:
        assert await asyncio.to_thread(self.bus.wait_reads, count, TIMEOUT)


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    bus = FakePn532Bus()
    reader = Pn532Reader(
        "lobby",
        Pn532Spec(poll_ms=20),
        open_reader=bus.open,
        backoff_first_s=0.02,
        backoff_max_s=0.08,
    )
    await reader.start()
    yield Rig(reader, bus)
    await reader.close()


async def test_a_tag_is_reported_once_while_it_stays(rig: Rig) -> None:
    rig.bus.tag = TAG
    assert await rig.read() == CardRead("lobby", "nfc", "04a1b2c3d4e580")
    rig.bus.miss_next = REMOVED_AFTER - 1  # a poll that misses the tag still on the reader
    await rig.polls(10)
    assert rig.reads.empty()


async def test_a_removed_tag_reports_again_and_another_tag_at_once(rig: Rig) -> None:
    rig.bus.tag = TAG
    assert (await rig.read()).number == TAG.hex()
    rig.bus.tag = OTHER
    assert (await rig.read()).number == "deadbeef"
    rig.bus.tag = None
    await rig.polls(REMOVED_AFTER + 1)
    rig.bus.tag = OTHER
    assert (await rig.read()).number == "deadbeef"


async def test_errors_are_logged_and_retried_with_backoff(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    rig.bus.tag = TAG
    assert (await rig.read()).number == TAG.hex()
    with caplog.at_level(logging.ERROR, logger="hal.pn532"):
        rig.bus.fail_opens = 3
        rig.bus.fail_reads = 1
        await rig.polls(1)
        rig.bus.tag = OTHER
        assert (await rig.read()).number == "deadbeef"  # recovered by itself
    assert rig.reader.errors == 4
    assert rig.reader.is_connected
    assert rig.bus.devices[0].closed  # the failed reader was closed before reopening
    assert "PN532 reader 'lobby' (I2C bus 1 address 0x24) failed: OSError" in caplog.text
    assert "RuntimeError: Did not receive expected ACK from PN532!" in caplog.text
    assert "retrying in 0 s" in caplog.text


async def test_a_uid_of_an_odd_length_is_ignored_with_a_warning(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="hal.pn532"):
        rig.bus.tag = b"\x01\x02"
        await rig.polls(3)
        await asyncio.sleep(0)
    assert rig.reads.empty()
    assert "ignored a tag: nfc card number '0102' is malformed" in caplog.text


async def test_close_stops_polling_and_closes_the_reader() -> None:
    bus = FakePn532Bus()
    reader = Pn532Reader(
        "gate", Pn532Spec(interface="spi", cs="GPIO8", poll_ms=20), open_reader=bus.open
    )
    await reader.start()
    assert await asyncio.to_thread(bus.wait_reads, 2, TIMEOUT)
    await reader.close()
    await reader.close()
    reads = bus.reads
    await asyncio.sleep(0.1)
    assert bus.reads == reads
    assert bus.devices[0].closed
    assert not reader.is_connected
    with pytest.raises(DeviceUnavailableError):
        await reader.start()


def test_without_the_driver_opening_says_what_to_install() -> None:
    with pytest.raises(DeviceUnavailableError, match="pn532 extra"):
        open_adafruit_pn532(Pn532Spec())


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"interface": "spi"}, "needs its chip-select pin"),
        ({"interface": "uart"}, "interface 'uart' is unknown"),
        ({"i2c_address": 0x90}, "I2C address must be in"),
        ({"poll_ms": 5}, "poll_ms must be in 20..10000"),
    ],
)
def test_bad_specs_are_refused(fields: dict[str, object], message: str) -> None:
    with pytest.raises(HalError, match=message):
        Pn532Spec(**fields)  # type: ignore[arg-type]
