"""close() is idempotent and a call made while a close is under way waits for it.

`CloseOnce` on its own (a close held open by an event, no timing), then a resource that
uses it: the I/O devices of a board.
"""

from __future__ import annotations

import asyncio

import pytest

from hal.closing import CloseOnce
from hal.io_devices import IoDevices
from hal.relay import NullRelay


class _GatedClose:
    """A resource whose close blocks until `release` is set, counting the closes done."""

    def __init__(self) -> None:
        self.closing = CloseOnce()
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.closes = 0

    async def close(self) -> None:
        if not await self.closing.begin():
            return
        try:
            self.entered.set()
            await self.release.wait()
            self.closes += 1
        finally:
            self.closing.finish()


async def test_ok__second_close_waits_for_the_one_under_way() -> None:
    resource = _GatedClose()
    first = asyncio.create_task(resource.close())
    await resource.entered.wait()
    second = asyncio.create_task(resource.close())
    await asyncio.sleep(0)  # let the second call reach its wait
    assert not second.done(), "the second close() returned while the first was under way"
    resource.release.set()
    await asyncio.gather(first, second)
    assert resource.closes == 1
    assert resource.closing.done


async def test_ok__close_after_close_returns_at_once() -> None:
    resource = _GatedClose()
    resource.release.set()
    await resource.close()
    await resource.close()
    assert resource.closes == 1


async def test_ok__close_from_inside_the_close_does_not_wait_for_itself() -> None:
    closing = CloseOnce()
    assert await closing.begin()
    assert not await closing.begin()  # a callback of the close, same task
    closing.finish()


async def test_ok__waiters_go_on_when_the_first_close_fails() -> None:
    closing = CloseOnce()
    entered, fail = asyncio.Event(), asyncio.Event()

    async def close() -> None:
        if not await closing.begin():
            return
        try:
            entered.set()
            await fail.wait()
            raise OSError("device gone")
        finally:
            closing.finish()

    first = asyncio.create_task(close())
    await entered.wait()
    second = asyncio.create_task(close())
    fail.set()
    with pytest.raises(OSError, match="device gone"):
        await first
    await second  # returns: the close is over, even if it failed


def test_fail__finish_without_begin() -> None:
    with pytest.raises(RuntimeError):
        CloseOnce().finish()


class _GatedRelay(NullRelay):
    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.closed = False

    async def close(self) -> None:
        self.entered.set()
        await self.release.wait()
        self.closed = True


async def test_ok__io_devices_second_close_waits_for_the_relay() -> None:
    relay = _GatedRelay()
    io = IoDevices(relay=relay)
    first = asyncio.create_task(io.close())
    await relay.entered.wait()
    second = asyncio.create_task(io.close())
    await asyncio.sleep(0)
    assert not second.done()
    relay.release.set()
    await second
    assert relay.closed, "the second close() returned before the relay was released"
    await first
