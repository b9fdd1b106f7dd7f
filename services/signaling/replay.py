"""Replay protection that does not rest on synchronised clocks alone.

Three layers (docs/protocol.md, "Replay protection"):
1. every (sender, nonce) seen is remembered for the freshness window, measured on the
   receiver's own monotonic clock, so a replay inside the window is caught whatever
   the clocks say;
2. ``ts`` must be within the window of the receiver's wall clock, so an old message
   is refused once its nonce has been forgotten;
3. an invite's call id is remembered much longer (bounded count), and every other
   message must belong to a call the receiver knows with that sender — checked by
   the call layer — so a replayed invite or answer is refused even with skewed clocks.

With a ``store`` (the device gives ``<state_dir>/replay.json``) this memory survives the
endpoint: it is written (atomically, off the event loop) as soon as it changes and flushed
when the endpoint closes, and loaded when the next one starts. So a message captured and
replayed after an endpoint rebuild (``callbox config set name``) or a restart is refused for
the whole freshness window, and a replayed invite's call id for much longer. What is lost
is only what a crash (power cut) catches between accepting a message and writing the file,
a few milliseconds.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from services.durable import write_atomically
from services.signaling.errors import RejectedMessage, RejectReason
from services.signaling.identity import b64u_decode, b64u_encode

_log = logging.getLogger(__name__)

MAX_STORED_CALL_IDS = 1000
"""Invite call ids written to the store (the most recent); the memory keeps more."""


class ReplayGuard:
    """Remembers nonces and invite call ids; refuses repeats and stale messages."""

    def __init__(
        self,
        *,
        window_s: float = 120.0,
        max_nonces: int = 100_000,
        max_call_ids: int = 10_000,
        wall_clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        store: Path | None = None,
    ) -> None:
        self.window_s = window_s
        self.store = store
        self._loaded = False
        self._dirty = False
        self._saver: asyncio.Task[None] | None = None
        self._failing = False
        self._max_nonces = max_nonces
        self._max_call_ids = max_call_ids
        self._wall = wall_clock
        self._monotonic = monotonic
        self._nonces: OrderedDict[tuple[str, bytes], float] = OrderedDict()
        self._call_ids: OrderedDict[tuple[str, str], None] = OrderedDict()

    def check(self, sender: str, nonce: bytes, ts_ms: int) -> None:
        """Refuse a stale message or a repeated nonce; remember the nonce otherwise."""
        skew_s = abs(self._wall() - ts_ms / 1000)
        if skew_s > self.window_s:
            raise RejectedMessage(
                RejectReason.STALE,
                f"timestamp from {sender} is {skew_s:.0f} s away from this clock "
                f"(window {self.window_s:.0f} s)",
            )
        now = self._monotonic()
        self._expire(now)
        key = (sender, nonce)
        if key in self._nonces:
            raise RejectedMessage(RejectReason.REPLAY, f"nonce from {sender} was already used")
        self._nonces[key] = now
        while len(self._nonces) > self._max_nonces:
            self._nonces.popitem(last=False)
        self._changed()

    def check_new_call(self, sender: str, call_id: str) -> None:
        """Refuse an invite whose call id this endpoint has already seen from ``sender``."""
        key = (sender, call_id)
        if key in self._call_ids:
            raise RejectedMessage(
                RejectReason.REPLAY, f"invite {call_id} from {sender} was already received"
            )
        self._call_ids[key] = None
        while len(self._call_ids) > self._max_call_ids:
            self._call_ids.popitem(last=False)
        self._changed()

    def _expire(self, now: float) -> None:
        while self._nonces:
            _, seen_at = next(iter(self._nonces.items()))
            if now - seen_at <= self.window_s:
                return
            self._nonces.popitem(last=False)

    # the store ----------------------------------------------------------------------------------

    async def load(self) -> None:
        """Take over what the store remembers (once; nothing without a store or a file).

        An unreadable or damaged file is logged and replaced: the wall-clock check still
        refuses what is older than the window.
        """
        if self.store is None or self._loaded:
            return
        self._loaded = True
        try:
            data = await asyncio.to_thread(self.store.read_bytes)
        except FileNotFoundError:
            return
        except OSError as err:
            _log.error("replay memory %s cannot be read, starting empty: %s", self.store, err)
            return
        try:
            self._seed(json.loads(data))
        except (ValueError, TypeError, KeyError, IndexError, RecursionError) as err:
            _log.error("replay memory %s is damaged, starting empty: %s", self.store, err)

    def _seed(self, saved: dict[str, Any]) -> None:
        now_wall, now = self._wall(), self._monotonic()
        nonces = []
        for sender, nonce, seen_wall in saved["nonces"]:
            age = max(0.0, now_wall - float(seen_wall))
            if age <= self.window_s:
                nonces.append((now - age, str(sender), b64u_decode(nonce)))
        for seen_at, sender, nonce in sorted(nonces):  # oldest first, as check() adds them
            self._nonces[(sender, nonce)] = seen_at
        for sender, call_id in saved["call_ids"]:
            self._call_ids[(str(sender), str(call_id))] = None

    async def flush(self) -> None:
        """Wait until everything remembered so far is in the store."""
        while self._saver is not None and not self._saver.done():
            await asyncio.shield(self._saver)

    def _changed(self) -> None:
        if self.store is None:
            return
        self._dirty = True
        if self._saver is None or self._saver.done():
            self._saver = asyncio.get_running_loop().create_task(self._save())

    async def _save(self) -> None:
        assert self.store is not None
        while self._dirty:
            self._dirty = False
            data = self._snapshot()
            try:
                await asyncio.to_thread(write_atomically, self.store, data)
            except OSError as err:
                if not self._failing:  # once, not once per message
                    _log.error("replay memory cannot be written to %s: %s", self.store, err)
                self._failing = True
                return
            if self._failing:
                _log.info("replay memory is written to %s again", self.store)
            self._failing = False

    def _snapshot(self) -> bytes:
        now_wall, now = self._wall(), self._monotonic()
        self._expire(now)
        call_ids = list(self._call_ids)[-MAX_STORED_CALL_IDS:]
        return json.dumps(
            {
                "v": 1,
                "nonces": [
                    [sender, b64u_encode(nonce), round(now_wall - (now - seen_at), 3)]
                    for (sender, nonce), seen_at in self._nonces.items()
                ],
                "call_ids": [list(key) for key in call_ids],
            }
        ).encode()
