"""Stopping background tasks reliably.

Python 3.11's ``asyncio.wait_for`` (used inside aiomqtt's publish, among others) can
swallow a cancellation that arrives just as the awaited thing completes; the task then
keeps running and whoever awaits it after ``cancel()`` waits forever (fixed in 3.12).
``cancel_and_wait`` cancels again until the tasks are really done.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

RECANCEL_AFTER_S = 0.5


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel ``tasks`` and wait until every one has finished; their results are dropped.

    A task that outlives its cancellation (see the module docstring) is cancelled again
    every ``RECANCEL_AFTER_S`` seconds. Never call it from one of ``tasks``.
    """
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=RECANCEL_AFTER_S)
