"""The processes of bench/site_scale.py: many signaling endpoints each, and the site broker.

:func:`endpoints_process` runs a share of the building's endpoints in one asyncio loop, each
with its own MQTT connection from its own loopback address, and answers the driver's
commands over a pipe (start, status, announcements, invites, memory, close).
:func:`broker_process` runs the generated broker (callbox's fronts and mosquitto) until it is
killed, as ``callbox broker`` does under systemd.

Times are ``time.monotonic()``: CLOCK_MONOTONIC is one clock for every process of a machine,
so an invite sent here and received in another process is timed across them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import signal
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import tests_path  # noqa: F401 - puts tests/ on sys.path for the harness imports
from harness.building import Announcements, Building, building_endpoint, present

from services.signaling.broker import BrokerFiles, BrokerSettings, MosquittoBroker
from services.signaling.endpoint import Message, SignalingEndpoint
from services.signaling.transport import BrokerAddress

INVITE_SDP_BYTES = 2000
"""About the size of a real invite's SDP offer (audio, video, ICE candidates)."""


def rss_kib(pid: int | str = "self") -> int:
    """Resident memory of process ``pid`` in KiB (0 if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return 0
    return 0


def raise_file_limit() -> None:
    """Raise this process's open-files limit to its hard limit (many connections)."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def broker_process(settings: BrokerSettings, files: BrokerFiles, ready: Connection) -> None:
    """Run the site broker until killed; send mosquitto's pid once it takes connections."""
    raise_file_limit()
    logging.basicConfig(level=logging.ERROR)

    async def run() -> None:
        broker = MosquittoBroker(files, settings)
        await broker.start(timeout=30)
        ready.send(broker.pid)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await broker.close()

    asyncio.run(run())


class Worker:
    """The endpoints of one process and what they measured."""

    def __init__(self, layout: Building, logins: dict[str, BrokerAddress]) -> None:
        self.layout = layout
        self.counts = {a: Announcements() for a in logins}
        self.endpoints = {
            a: building_endpoint(layout, a, login, self.counts[a]) for a, login in logins.items()
        }
        self.starting: list[asyncio.Task[None]] = []
        self.sent: dict[str, float] = {}
        self.invited: dict[str, float] = {}
        self.rang: dict[str, float] = {}
        self.failed: list[str] = []
        for endpoint in self.endpoints.values():
            endpoint.on_message = self._handler(endpoint)

    def _handler(self, endpoint: SignalingEndpoint) -> Any:
        async def handle(message: Message) -> None:
            if message.type == "invite":
                self.invited[message.call_id] = message.received_at
                await endpoint.send(message.sender, "ringing", message.call_id, {})
            elif message.type == "ringing":
                self.rang[message.call_id] = message.received_at

        return handle

    async def start(self) -> dict[str, Any]:
        """Start every endpoint in the background (the driver polls :meth:`status`)."""
        for endpoint in self.endpoints.values():
            self.starting.append(asyncio.create_task(self._start(endpoint)))
        return {}

    async def _start(self, endpoint: SignalingEndpoint) -> None:
        try:
            await endpoint.start(timeout=600)
        except Exception as err:  # noqa: BLE001 - reported to the driver, not raised
            self.failed.append(f"{endpoint.address}: {err}")

    async def status(self) -> dict[str, Any]:
        """How many are connected and present, and their connection counts."""
        endpoints = self.endpoints.values()
        return {
            "connected": sum(e.transport.connected.is_set() for e in endpoints),
            "present": sum(present(e) for e in endpoints),
            "connections": {a: e.transport.connections for a, e in self.endpoints.items()},
            "failed": self.failed[:5],
        }

    async def announcements(self) -> dict[str, list[int]]:
        """Presence and profile messages received, per endpoint and connection."""
        return {a: list(c.counts) for a, c in self.counts.items()}

    async def invite(self, schedule: list[tuple[float, str, str, str]]) -> dict[str, Any]:
        """Send each (at, door, callee, call_id) invite at its time; return once all are sent."""
        body = {"sdp": "v=0 " + "a" * INVITE_SDP_BYTES}
        sends = [
            asyncio.create_task(self._invite_at(at, door, callee, call_id, body))
            for at, door, callee, call_id in schedule
        ]
        await asyncio.gather(*sends)
        return {}

    async def _invite_at(
        self, at: float, door: str, callee: str, call_id: str, body: dict[str, Any]
    ) -> None:
        await asyncio.sleep(max(0.0, at - time.monotonic()))
        self.sent[call_id] = time.monotonic()
        try:
            await self.endpoints[door].send(callee, "invite", call_id, body)
        except Exception as err:  # noqa: BLE001 - counted as lost, reported
            self.failed.append(f"invite {call_id}: {err}")

    async def results(self) -> dict[str, Any]:
        """Send, receive and ringing times by call id."""
        return {"sent": self.sent, "invited": self.invited, "rang": self.rang}

    async def memory(self) -> dict[str, Any]:
        """This process's resident memory."""
        return {"rss_kib": rss_kib()}

    async def close(self) -> dict[str, Any]:
        """Close every endpoint."""
        await asyncio.gather(*(e.close() for e in self.endpoints.values()))
        return {}


def endpoints_process(layout: Building, logins: dict[str, BrokerAddress], pipe: Connection) -> None:
    """Run the endpoints of ``logins`` and answer the driver's commands until "close"."""
    raise_file_limit()
    logging.basicConfig(level=logging.ERROR)
    pipe.send({"rss_kib": rss_kib(), "pid": os.getpid()})  # before any endpoint exists

    async def run() -> None:
        worker = Worker(layout, logins)
        while True:
            command, args = await asyncio.to_thread(pipe.recv)
            reply = await getattr(worker, command)(*args)
            await asyncio.to_thread(pipe.send, reply)
            if command == "close":
                return

    asyncio.run(run())
