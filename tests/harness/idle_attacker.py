"""An attacker on the LAN that holds many idle TCP connections to a port (issue 15).

Its sockets come from 127.0.0.66, another loopback address, so that a per-source limit meant
for it does not hit the units and phones of a test, which connect from 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import random

ATTACKER = "127.0.0.66"
OPEN_TIMEOUT_S = 10.0


class IdleAttacker:
    """Holds ``count`` TCP connections from ``ATTACKER`` that never send a byte.

    Each one the server closes is opened again after a random pause (``count / rate``
    seconds on average: about ``rate`` new connections a second in all), as a persistent
    attacker would.
    """

    def __init__(self, port: int, *, count: int = 1000, rate: float = 200.0) -> None:
        """``count`` sockets to 127.0.0.1:``port``, reopened at about ``rate`` a second."""
        self.port = port
        self.count = count
        self.pause_s = count / rate
        self.opened = 0
        self.closed_by_server = 0
        self.held = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._all_opened = asyncio.Event()

    async def __aenter__(self) -> IdleAttacker:
        self._tasks = [asyncio.create_task(self._hold()) for _ in range(self.count)]
        await asyncio.wait_for(self._all_opened.wait(), OPEN_TIMEOUT_S)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _hold(self) -> None:
        while True:
            try:
                reader, writer = await asyncio.open_connection(
                    "127.0.0.1", self.port, local_addr=(ATTACKER, 0)
                )
            except OSError:
                await asyncio.sleep(random.uniform(0, 2 * self.pause_s))  # attacker's pacing
                continue
            self.opened += 1
            if self.opened == self.count:
                self._all_opened.set()
            self.held += 1
            try:
                await reader.read()  # until the server closes it
            except OSError:
                pass
            finally:
                self.held -= 1
                writer.close()
            self.closed_by_server += 1
            await asyncio.sleep(random.uniform(0, 2 * self.pause_s))  # attacker's pacing
