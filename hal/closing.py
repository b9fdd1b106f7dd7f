"""`CloseOnce`: makes an async ``close()`` idempotent, with a second call waiting for the first.

aiortc's ``RTCPeerConnection.close`` is the model: the first call does the work; a call made
while that close is under way waits until it is over, and a call made after returns at once.
Returning at once while the first close is still releasing a device (a thread being joined,
a process being stopped) would let the caller reuse or delete what is not yet free.

It lives in hal/, the lowest layer, so that back-ends and services share it.
"""

from __future__ import annotations

import asyncio


class CloseOnce:
    """The close state of one resource: not started, under way, or done.

    Usage, in the resource's ``close()``::

        if not await self._close.begin():
            return
        try:
            ...  # release everything
        finally:
            self._close.finish()

    A close that raises or is cancelled still finishes (its waiters go on; the error is the
    first caller's to handle), so no caller waits forever.
    """

    def __init__(self) -> None:
        """Not started; the event is made lazily, on the loop of the first close."""
        self._done: asyncio.Event | None = None
        self._closer: asyncio.Task[object] | None = None

    @property
    def started(self) -> bool:
        """True from the first `begin` on: the resource takes no new work."""
        return self._done is not None

    @property
    def done(self) -> bool:
        """True once the first close has finished (or failed)."""
        return self._done is not None and self._done.is_set()

    async def begin(self) -> bool:
        """True: the caller is the first and does the close. False once that close is over.

        A call from inside the close itself (a callback the close triggers, in the same task)
        returns False at once instead of waiting for itself.
        """
        if self._done is None:
            self._done = asyncio.Event()
            self._closer = asyncio.current_task()
            return True
        if self._closer is not None and self._closer is asyncio.current_task():
            return False
        await self._done.wait()
        return False

    def finish(self) -> None:
        """The close is over: release the callers waiting in `begin`."""
        if self._done is None:
            raise RuntimeError("CloseOnce.finish() without begin()")
        self._closer = None
        self._done.set()
