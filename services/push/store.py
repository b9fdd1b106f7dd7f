"""The door's push subscriptions: one per phone address, bounded, kept across restarts.

Stored as JSON under the state directory (``push-subscriptions.json``), written atomically and
fsynced (services/durable.py) before a registration is confirmed, so a power cut never loses a
subscription the phone was told about. On loading, entries that are damaged, expired, or whose
endpoint the allow-list no longer accepts are dropped and logged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path

from services.durable import write_atomically
from services.push.errors import BadSubscription, PushError
from services.push.hosts import PushHosts
from services.push.subscription import Subscription, subscription_from_json

_log = logging.getLogger(__name__)

STORE_FILE = "push-subscriptions.json"
"""The store's file name under the state directory."""
DEFAULT_MAX_SUBSCRIPTIONS = 32


class StoreFull(PushError):
    """No room for one more phone's subscription."""


class SubscriptionStore:
    """Push subscriptions by phone address; ``path`` None keeps them in memory only."""

    def __init__(
        self,
        path: Path | None,
        hosts: PushHosts,
        *,
        max_subscriptions: int = DEFAULT_MAX_SUBSCRIPTIONS,
    ) -> None:
        self.path = path
        self.hosts = hosts
        self.max_subscriptions = max_subscriptions
        self._subs: dict[str, Subscription] = {}
        self._lock = asyncio.Lock()

    def __len__(self) -> int:
        return len(self._subs)

    def get(self, address: str) -> Subscription | None:
        """The subscription of ``address``, or None."""
        return self._subs.get(address)

    def addresses(self) -> list[str]:
        """Every phone with a subscription, sorted."""
        return sorted(self._subs)

    async def load(self) -> None:
        """Take over what the file holds (nothing when there is no file)."""
        if self.path is None:
            return
        try:
            data = await asyncio.to_thread(self.path.read_bytes)
        except FileNotFoundError:
            return
        except OSError as err:
            raise PushError(f"{self.path}: cannot read the push subscriptions: {err}") from err
        try:
            entries = json.loads(data)["subscriptions"]
            if not isinstance(entries, list):
                raise TypeError("subscriptions is not a list")
        except (ValueError, KeyError, TypeError, RecursionError) as err:
            _log.error("%s: damaged, starting with no push subscriptions: %s", self.path, err)
            return
        now_ms = int(time.time() * 1000)
        for entry in entries[: self.max_subscriptions]:
            try:
                sub = subscription_from_json(entry, self.hosts)
            except BadSubscription as err:
                _log.warning("%s: a stored push subscription dropped: %s", self.path, err)
                continue
            if sub.expired(now_ms):
                _log.info("%s: the push subscription of %s expired", self.path, sub.address)
                continue
            self._subs[sub.address] = sub

    async def put(self, sub: Subscription) -> None:
        """Keep ``sub`` (replacing its phone's previous one), durably; StoreFull, PushError."""
        async with self._lock:
            if sub.address not in self._subs and len(self._subs) >= self.max_subscriptions:
                raise StoreFull(
                    f"this door already keeps {self.max_subscriptions} push subscriptions "
                    "([push] max_subscriptions)"
                )
            previous = self._subs.get(sub.address)
            self._subs[sub.address] = sub
            try:
                await self._save()
            except PushError:
                if previous is None:
                    del self._subs[sub.address]
                else:
                    self._subs[sub.address] = previous
                raise

    async def remove(self, address: str, endpoint: str | None = None) -> bool:
        """Forget ``address``'s subscription (only if it still is ``endpoint``, when given).

        True when one was removed. PushError when the file cannot be written (it is gone from
        memory all the same: nothing is sent to it any more).
        """
        async with self._lock:
            sub = self._subs.get(address)
            if sub is None or (endpoint is not None and sub.endpoint != endpoint):
                return False
            del self._subs[address]
            await self._save()
            return True

    async def _save(self) -> None:
        if self.path is None:
            return
        data = json.dumps(
            {"v": 1, "subscriptions": [s.to_json() for s in self._subs.values()]}, indent=1
        ).encode()
        try:
            await asyncio.to_thread(write_atomically, self.path, data)
        except OSError as err:
            raise PushError(f"{self.path}: cannot write the push subscriptions: {err}") from err
