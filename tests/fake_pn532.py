"""The one fake of a PN532 in the tests: stands in for ``hal.pn532``'s open device.

There is no PN532 here, so ``hal.pn532.Pn532Reader`` (its polling thread, the once-per-tag
rule and the error backoff) is tested against this stand-in of what ``open_adafruit_pn532``
returns: ``read_uid(timeout)`` (the tag in the field: ``bytes`` or None, as
``adafruit_pn532``'s ``read_passive_target`` gives it) and ``close()``. What is in the field
and what fails is set by the test on ``FakePn532Bus``: ``tag`` (the UID on the reader, None
for none), ``miss_next`` (polls that see nothing though a tag is there, as a real reader
does now and then), ``fail_reads`` / ``fail_opens`` (raise ``OSError`` like a bus error, or
``RuntimeError`` like the library's "no answer from the PN532"). Adafruit's driver itself
(``open_adafruit_pn532``) runs only on a Pi with a reader: docs/hardware.md says so.
"""

from __future__ import annotations

import threading

from hal.gpio_specs import Pn532Spec


class FakePn532:
    """An open fake reader on ``bus``."""

    def __init__(self, bus: FakePn532Bus) -> None:
        self.bus = bus
        self.closed = False

    def read_uid(self, timeout: float) -> bytes | None:
        with self.bus.changed:
            self.bus.reads += 1
            self.bus.changed.notify_all()
            if self.bus.fail_reads:
                self.bus.fail_reads -= 1
                raise OSError(121, "Remote I/O error")
            if self.bus.miss_next:
                self.bus.miss_next -= 1
                return None
            return self.bus.tag

    def close(self) -> None:
        self.closed = True


class FakePn532Bus:
    """The field and the faults of a fake reader; ``open`` is the reader's ``open_reader``."""

    def __init__(self) -> None:
        self.changed = threading.Condition()
        self.tag: bytes | None = None
        self.miss_next = 0
        self.fail_reads = 0
        self.fail_opens = 0
        self.reads = 0
        self.opens = 0
        self.specs: list[Pn532Spec] = []
        self.devices: list[FakePn532] = []

    def open(self, spec: Pn532Spec) -> FakePn532:
        with self.changed:
            self.opens += 1
            self.specs.append(spec)
            self.changed.notify_all()
            if self.fail_opens:
                self.fail_opens -= 1
                raise RuntimeError("Did not receive expected ACK from PN532!")
            device = FakePn532(self)
            self.devices.append(device)
            return device

    def wait_reads(self, count: int, timeout: float) -> bool:
        """Block until at least ``count`` more polls happened than now; False on timeout."""
        with self.changed:
            target = self.reads + count
            return self.changed.wait_for(lambda: self.reads >= target, timeout)
