"""The statuses and listeners of one call.

Every status reaches every listener in order; a terminal status (``status & 0x40``)
is reached exactly once and nothing follows it. The first listener is the one given to
``Call.start``; others (the default call UI) are added with ``Call.add_listener``. Only
the first listener's answer to a question (``on_play_in_call_sound``) counts.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Generic, TypeVar

from services.callapi.observer import CallObserver, notify
from services.callapi.status import CallStatus, is_ended

_log = logging.getLogger(__name__)
CallT = TypeVar("CallT")


class CallEvents(Generic[CallT]):
    """The status of ``call`` and the listeners that hear about it."""

    def __init__(self, call: CallT, label: str, video: bool) -> None:
        self._call = call
        self._label = label
        self._video = video
        self.status = CallStatus.NONE
        self.statuses: list[CallStatus] = []
        self.first: CallObserver[CallT] | None = None
        self._more: list[CallObserver[CallT]] = []
        self._lock = asyncio.Lock()

    def is_ended(self) -> bool:
        """True once a terminal status was reached."""
        return is_ended(self.status)

    async def set_status(self, status: CallStatus) -> None:
        """Move to ``status`` and tell every listener (nothing after a terminal status)."""
        async with self._lock:
            if self.is_ended() or (status == self.status and not is_ended(status)):
                return
            self.status = status
            self.statuses.append(status)
        _log.info("%s %s", self._label, status.name)
        for listener in self.listeners():
            await notify("on_status", listener.on_status, self._call, status, self._video)

    def add(self, listener: CallObserver[CallT]) -> None:
        """Let ``listener`` hear the call too, after the first one."""
        if listener not in self._more:
            self._more.append(listener)

    def remove(self, listener: CallObserver[CallT]) -> None:
        """Stop telling ``listener`` (one added with :meth:`add`)."""
        if listener in self._more:
            self._more.remove(listener)

    def listeners(self) -> list[CallObserver[CallT]]:
        """The first listener (if any), then the added ones."""
        first = [self.first] if self.first is not None else []
        return first + [extra for extra in self._more if extra is not self.first]

    async def emit(self, name: str, *args: Any) -> Any:
        """Call ``name(call, *args)`` on every listener; the first listener's result."""
        result = None
        for index, listener in enumerate(self.listeners()):
            value = await notify(name, getattr(listener, name), self._call, *args)
            if index == 0 and listener is self.first:
                result = value
        return result

    async def emit_optional(self, name: str, *args: Any) -> None:
        """Call ``name(call, *args)`` on every listener that has it (an optional method)."""
        for listener in self.listeners():
            method = getattr(listener, name, None)
            if method is not None:
                await notify(name, method, self._call, *args)
