"""The site of device apps for end-to-end tests (``device.devicesite``), and waiting on it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from device.devicesite import IntercomSite, Unit, start_intercom_site

__all__ = ["TIMEOUT", "IntercomSite", "Unit", "start_intercom_site", "wait_for"]

TIMEOUT = 10.0


async def wait_for(predicate: Callable[[], object], what: str, timeout: float = TIMEOUT) -> None:
    """Wait until ``predicate()`` holds, checking every 10 ms; AssertionError naming ``what``.

    For state that has no event of its own (a mock pin's level, a sysfs file): the
    deadline bounds the wait, the check is the thing the user would notice.
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.01)
