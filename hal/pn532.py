"""A PN532 NFC reader on I2C or SPI, through Adafruit's ``adafruit-circuitpython-pn532``.

Why that library: it is the maintained PN532 driver for Linux too (Adafruit, MIT, releases
through 2026), speaks I2C, SPI and UART over Blinka's ``busio``, and is what PN532 breakout
vendors document; ``pn532pi`` and ``py532lib`` are small one-author ports with few
releases, and nfcpy has no PN532 over I2C/SPI. It and Blinka are Pi-only dependencies
(``pip install 'callbox[pn532]'``, docs/hardware.md), imported only when a reader opens.

A thread (``callbox-pn532-<name>``) polls the reader every ``poll_ms`` for an ISO 14443A
tag (``read_passive_target``, a blocking bus transaction). A tag is reported once,
``CardRead(name, "nfc", <UID in lowercase hex>)``, and again only after it was away for
``REMOVED_AFTER`` polls in a row (one missed poll with the tag still there is common) or
another tag came. A reader error (bus error, no answer, a PN532 that is not there) is
logged, the reader closed and reopened after 1 s, then at growing intervals up to 60 s;
it recovers by itself when the reader answers again. The reads reach the event loop with
``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import re
import threading
from collections.abc import Callable
from typing import Any, Protocol

from hal.cards import CardRead, CardReader
from hal.errors import DeviceUnavailableError
from hal.gpio import call_in_loop
from hal.gpio_specs import Pn532Spec

__all__ = ["REMOVED_AFTER", "Pn532Device", "Pn532Reader", "open_adafruit_pn532"]

_log = logging.getLogger(__name__)

REMOVED_AFTER = 2
"""Polls in a row without the tag before it counts as removed (and reports again)."""
READ_TIMEOUT_S = 0.1
"""How long one ``read_passive_target`` waits for a tag."""
BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 60.0
JOIN_TIMEOUT_S = 5.0


class Pn532Device(Protocol):
    """What the reader uses of an open PN532 (a wrapper of the library's ``PN532`` object)."""

    def read_uid(self, timeout: float) -> bytes | None:
        """The UID of the ISO 14443A tag in the field, None without one (blocking)."""

    def close(self) -> None:
        """Release the bus and pins."""


class _AdafruitPn532:
    """``adafruit_pn532``'s PN532_I2C/PN532_SPI and the Blinka objects it holds."""

    def __init__(self, pn532: Any, releases: list[Any]) -> None:
        self._pn532 = pn532
        self._releases = releases
        version = pn532.firmware_version  # (IC, version, revision, support); raises if mute
        _log.info("PN532 firmware %s.%s", version[1], version[2])
        pn532.SAM_configuration()

    def read_uid(self, timeout: float) -> bytes | None:
        uid = self._pn532.read_passive_target(timeout=timeout)
        return None if uid is None else bytes(uid)

    def close(self) -> None:
        for part in reversed(self._releases):
            part.deinit()
        self._releases.clear()


def _import(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise DeviceUnavailableError(
            f"the PN532 driver cannot be imported ({err}): install callbox with its pn532 "
            "extra (adafruit-circuitpython-pn532 and Adafruit Blinka), docs/hardware.md"
        ) from err


def open_adafruit_pn532(spec: Pn532Spec) -> Pn532Device:
    """Open the PN532 of ``spec`` with Adafruit's driver (blocking: call it in a thread)."""
    releases: list[Any] = []
    try:
        if spec.interface == "i2c":
            extended_bus = _import("adafruit_extended_bus")
            pn532_i2c = _import("adafruit_pn532.i2c")
            i2c = extended_bus.ExtendedI2C(spec.i2c_bus)
            releases.append(i2c)
            pn532 = pn532_i2c.PN532_I2C(i2c, address=spec.i2c_address)
        else:
            board, busio, digitalio = (_import(m) for m in ("board", "busio", "digitalio"))
            pn532_spi = _import("adafruit_pn532.spi")
            spi = busio.SPI(board.SCK, MOSI=board.MOSI, MISO=board.MISO)
            releases.append(spi)
            assert spec.cs is not None
            cs = digitalio.DigitalInOut(getattr(board, f"D{_bcm(spec.cs)}"))
            releases.append(cs)
            pn532 = pn532_spi.PN532_SPI(spi, cs)
        return _AdafruitPn532(pn532, releases)
    except BaseException:
        for part in reversed(releases):
            part.deinit()
        raise


def _bcm(pin: str) -> int:
    match = re.fullmatch(r"(?:GPIO|BCM)?(\d{1,2})", pin, re.IGNORECASE)
    if match is None:
        raise DeviceUnavailableError(f"PN532 cs {pin!r}: name it by its BCM number (GPIO8)")
    return int(match.group(1))


class Pn532Reader(CardReader):
    """A PN532 polled in a thread of its own (see the module docstring).

    ``open_reader`` opens the device of a spec (default: Adafruit's driver); tests pass a
    fake (tests/fake_pn532.py).
    """

    def __init__(
        self,
        name: str,
        spec: Pn532Spec,
        *,
        open_reader: Callable[[Pn532Spec], Pn532Device] = open_adafruit_pn532,
        backoff_first_s: float = BACKOFF_FIRST_S,
        backoff_max_s: float = BACKOFF_MAX_S,
    ) -> None:
        """A reader called ``name``, not started (nothing is opened yet)."""
        super().__init__(name)
        self.spec = spec
        self._open_reader = open_reader
        self._backoff_first_s = backoff_first_s
        self._backoff_max_s = backoff_max_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._connected = False
        self.errors = 0
        """Reader errors so far (status and tests)."""

    @property
    def is_connected(self) -> bool:
        """True while the PN532 is open and answering."""
        return self._connected

    async def start(self) -> None:
        """Start the polling thread (it opens the reader)."""
        if self._closed:
            raise DeviceUnavailableError(f"PN532 reader {self.name!r} is closed")
        if self._thread is not None:
            return
        loop = asyncio.get_running_loop()
        self._thread = threading.Thread(
            target=self._run, args=(loop,), name=f"callbox-pn532-{self.name}", daemon=True
        )
        self._thread.start()

    async def close(self) -> None:
        """Stop polling and close the reader; idempotent."""
        self._closed = True
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            await asyncio.to_thread(thread.join, JOIN_TIMEOUT_S)
            if thread.is_alive():
                _log.error("PN532 reader %r: the polling thread did not stop", self.name)

    def _report(self, uid: bytes) -> None:
        """In the loop thread: one tag read."""
        if self._closed:
            return
        try:
            read = CardRead(self.name, "nfc", uid.hex())
        except ValueError as err:
            _log.warning("PN532 reader %r: ignored a tag: %s", self.name, err)
            return
        self.card_read(read)

    def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        device: Pn532Device | None = None
        delay = self._backoff_first_s
        present: bytes | None = None
        misses = 0
        poll_s = self.spec.poll_ms / 1000.0
        try:
            while not self._stop.is_set():
                try:
                    if device is None:
                        device = self._open_reader(self.spec)
                        self._connected = True
                        _log.info("PN532 reader %r: open (%s)", self.name, self._where())
                    uid = device.read_uid(READ_TIMEOUT_S)
                except Exception as err:  # noqa: BLE001 - any driver error: reopen later
                    self.errors += 1
                    self._connected = False
                    _log.error(
                        "PN532 reader %r (%s) failed: %s: %s; retrying in %.0f s",
                        self.name,
                        self._where(),
                        type(err).__name__,
                        err,
                        delay,
                    )
                    _close_quietly(self.name, device)
                    device = None
                    self._stop.wait(delay)
                    delay = min(delay * 2, self._backoff_max_s)
                    continue
                delay = self._backoff_first_s
                if uid is None:
                    misses += 1
                    if misses >= REMOVED_AFTER:
                        present = None
                elif uid != present:
                    present, misses = uid, 0
                    call_in_loop(loop, self._report, uid)
                else:
                    misses = 0
                self._stop.wait(poll_s)
        finally:
            self._connected = False
            _close_quietly(self.name, device)

    def _where(self) -> str:
        spec = self.spec
        if spec.interface == "i2c":
            return f"I2C bus {spec.i2c_bus} address {spec.i2c_address:#04x}"
        return f"SPI, cs {spec.cs}"


def _close_quietly(name: str, device: Pn532Device | None) -> None:
    if device is None:
        return
    try:
        device.close()
    except Exception as err:  # noqa: BLE001 - closing a failed reader: nothing more to do
        _log.warning("PN532 reader %r: closing failed: %s", name, err)
