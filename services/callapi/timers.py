"""The timers and background loops of one call, all cancelled when the call ends."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any


class CallTimers:
    """Ring, connect and duration timeouts and the link watchdog of one call."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._tasks: list[asyncio.Task[None]] = []

    def after(self, delay: float, action: Callable[[], Awaitable[None]]) -> None:
        """Run ``action`` once, ``delay`` seconds from now, unless the call ends first."""

        async def run() -> None:
            await asyncio.sleep(delay)  # a call timer
            await action()

        self.run(run(), f"timer-{self._name}")

    def run(self, loop: Coroutine[Any, Any, None], name: str) -> None:
        """Run ``loop`` in the background until it returns or the call ends."""
        self._tasks.append(asyncio.create_task(loop, name=name))

    def cancel(self) -> None:
        """Cancel every timer, except the one that is running this (it is ending the call)."""
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
