"""A building on one site broker: N real callbox signaling endpoints in a few processes.

Run: ``.venv/bin/python bench/site_scale.py --endpoints 100,300,1000 [--processes 4]``.
Prints one JSON object, one entry per N.

The endpoints are real :class:`~services.signaling.endpoint.SignalingEndpoint` objects (real
keys, signed and encrypted envelopes) laid out as a building (tests/harness/building.py:
door stations per entrance, flats of an indoor unit and two phones, each following its
contacts only), each with its own MQTT connection from its own loopback address, many per
process (bench/site_workers.py), against the broker callbox generates (its fronts and
mosquitto, its passwords and ACL, sized for the site) in a process of its own. Measured:

- start: time until every endpoint is connected, and until every one sees all it needs online;
- presence and profile messages per endpoint at connect (doors and flat members apart);
- memory: the endpoint processes' RSS / N (and above an idle process), mosquitto's RSS and
  the fronts' process RSS;
- broker restart: mosquitto and its fronts killed (SIGKILL) and started again; time until all
  are back and present, and TCP connections made;
- invites from doors to flat members at 1, 10 and 50 set-ups per second: invite (door's
  send -> member's verified, decrypted message) and invite -> ringing (back at the door),
  p50/p99; and, as the baseline on the same broker in the same run, a plain MQTT
  publish -> receive of a payload of the same size between two raw clients.

Everything runs on this one machine (on a site each endpoint is its own device): the
figures include the endpoints' own CPU contention.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import logging
import multiprocessing
import os
import signal
import statistics
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiomqtt
import tests_path  # noqa: F401 - puts tests/ on sys.path for the harness imports
from harness.building import Building, building, source_address
from site_workers import (
    INVITE_SDP_BYTES,
    broker_process,
    endpoints_process,
    raise_file_limit,
    rss_kib,
)

from services.signaling.broker import BrokerFiles, BrokerSettings, free_ports, write_broker_config
from services.signaling.topics import SiteTopics
from services.signaling.transport import BrokerAddress

START_TIMEOUT_S = 180.0
TARGET_PRESENT_S = 30.0
RATES = (1, 10, 50)
PROBES = ("probe-a", "probe-b")
"""Two raw MQTT accounts for the baseline."""

_ctx = multiprocessing.get_context("spawn")


def percentiles(values: list[float]) -> dict[str, float | int | None]:
    """p50 and p99 of ``values`` in ms (None when empty)."""
    if not values:
        return {"p50_ms": None, "p99_ms": None, "n": 0}
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {
        "p50_ms": round(statistics.median(ordered), 1),
        "p99_ms": round(p99, 1),
        "n": len(values),
    }


class Site:
    """The broker process and the endpoint processes of one run, and the pipes to them."""

    def __init__(self, layout: Building, settings: BrokerSettings, files: BrokerFiles) -> None:
        self.layout = layout
        self.settings = settings
        self.files = files
        self.broker: multiprocessing.process.BaseProcess | None = None
        self.mosquitto_pid: int | None = None
        self.workers: list[tuple[multiprocessing.process.BaseProcess, Connection]] = []
        self.idle_rss_kib: list[int] = []
        self.worker_of: dict[str, int] = {}

    def start_broker(self) -> None:
        """Start the broker process; return once it takes connections."""
        ours, theirs = _ctx.Pipe()
        self.broker = _ctx.Process(
            target=broker_process, args=(self.settings, self.files, theirs), daemon=True
        )
        self.broker.start()
        if not ours.poll(60):
            raise RuntimeError("the broker did not start within 60 s")
        self.mosquitto_pid = ours.recv()

    def kill_broker(self) -> None:
        """SIGKILL mosquitto and its fronts' process (a power cut of the broker's unit)."""
        assert self.broker is not None and self.mosquitto_pid is not None
        os.kill(self.mosquitto_pid, signal.SIGKILL)
        self.broker.kill()
        self.broker.join()

    def stop_broker(self) -> None:
        """SIGTERM: the fronts and mosquitto close."""
        if self.broker is not None and self.broker.is_alive():
            self.broker.terminate()
            self.broker.join(15)

    def start_workers(self, processes: int) -> None:
        """Spread the endpoints over ``processes`` processes (doors spread too)."""
        addresses = self.layout.addresses
        shares: list[dict[str, BrokerAddress]] = [{} for _ in range(processes)]
        for index, address in enumerate(addresses):
            login = BrokerAddress(
                "127.0.0.1",
                self.settings.port,
                address,
                self.files.passwords[address],
                source=source_address(index),
            )
            shares[index % processes][address] = login
            self.worker_of[address] = index % processes
        for share in shares:
            ours, theirs = _ctx.Pipe()
            process = _ctx.Process(
                target=endpoints_process, args=(self.layout, share, theirs), daemon=True
            )
            process.start()
            self.idle_rss_kib.append(ours.recv()["rss_kib"])
            self.workers.append((process, ours))

    async def ask(self, command: str, *args: Any) -> list[Any]:
        """Send ``command`` to every worker and gather their replies."""
        return await asyncio.gather(
            *(self.ask_one(i, command, *args) for i in range(len(self.workers)))
        )

    async def ask_one(self, index: int, command: str, *args: Any) -> Any:
        """Send ``command`` to worker ``index`` and wait for its reply."""
        pipe = self.workers[index][1]
        await asyncio.to_thread(pipe.send, (command, args))
        return await asyncio.to_thread(pipe.recv)

    async def close(self) -> None:
        """Close the endpoints, then the broker."""
        if self.workers:
            await self.ask("close")
        for process, _pipe in self.workers:
            process.join(15)
        self.stop_broker()


async def wait_all(site: Site, n: int, *, since: float, reconnected: int = 1) -> dict[str, Any]:
    """Poll until all ``n`` are connected (at least ``reconnected`` times) and present."""
    connected_at = present_at = None
    status: list[dict[str, Any]] = []
    while time.monotonic() - since < START_TIMEOUT_S:
        status = await site.ask("status")
        conns = [c for s in status for c in s["connections"].values()]
        back = sum(c >= reconnected for c in conns)
        connected = sum(s["connected"] for s in status)
        present = sum(s["present"] for s in status)
        now = time.monotonic()
        if connected_at is None and connected == n and back == n:
            connected_at = now - since
        if present == n and back == n:
            present_at = now - since
            break
        await asyncio.sleep(0.1)
    conns = [c for s in status for c in s["connections"].values()]
    return {
        "all_connected_s": None if connected_at is None else round(connected_at, 2),
        "all_present_s": None if present_at is None else round(present_at, 2),
        "present": sum(s["present"] for s in status),
        "tcp_connections_made": sum(conns),
        "failed": [f for s in status for f in s["failed"]],
    }


async def announcements(site: Site, connection: int) -> dict[str, Any]:
    """Presence and profile messages per endpoint on its ``connection``-th connection."""
    replies = await site.ask("announcements")
    counts = {a: c for reply in replies for a, c in reply.items()}

    def of(addresses: tuple[str, ...]) -> dict[str, float | None]:
        got = [counts[a][connection] for a in addresses if len(counts[a]) > connection]
        if not got:
            return {"median": None, "max": None}
        return {"median": statistics.median(got), "max": max(got)}

    return {"flat_members": of(site.layout.members()), "doors": of(site.layout.doors)}


async def invites(site: Site, rate: int, count: int) -> dict[str, Any]:
    """``count`` invites from doors to flat members at ``rate`` a second."""
    layout = site.layout
    callees = [m for m in layout.members()]
    door_of = {m: door for door in layout.doors for m in layout.needs[door]}
    start = time.monotonic() + 1.0
    schedules: list[list[tuple[float, str, str, str]]] = [[] for _ in site.workers]
    for i, callee in zip(range(count), itertools.cycle(callees), strict=False):
        door = door_of[callee]
        schedules[site.worker_of[door]].append((start + i / rate, door, callee, f"r{rate}-{i}"))
    await asyncio.gather(*(site.ask_one(w, "invite", s) for w, s in enumerate(schedules) if s))
    await asyncio.sleep(1.0)  # the last ringing on its way back
    replies = await site.ask("results")
    sent = {k: v for r in replies for k, v in r["sent"].items() if k.startswith(f"r{rate}-")}
    invited = {k: v for r in replies for k, v in r["invited"].items()}
    rang = {k: v for r in replies for k, v in r["rang"].items()}
    return {
        "invites": count,
        "invite": percentiles([(invited[k] - t) * 1000 for k, t in sent.items() if k in invited]),
        "invite_to_ringing": percentiles(
            [(rang[k] - t) * 1000 for k, t in sent.items() if k in rang]
        ),
        "lost": sum(k not in rang for k in sent),
    }


def probe(site: Site, account: str) -> aiomqtt.Client:
    """A raw MQTT 5 client of ``account`` through the broker's MQTT front."""
    return aiomqtt.Client(
        "127.0.0.1",
        site.settings.port,
        username=account,
        password=site.files.passwords[account],
        identifier=account,
        protocol=aiomqtt.ProtocolVersion.V5,
    )


async def plain_mqtt(site: Site, rate: int, count: int) -> dict[str, Any]:
    """The baseline: raw MQTT publish -> receive between two accounts, same payload size."""
    topics = SiteTopics(site.layout.site)
    a, b = PROBES
    received: dict[int, float] = {}
    payload_pad = b"x" * (INVITE_SDP_BYTES + 800)  # an invite envelope's size
    async with probe(site, a) as sender, probe(site, b) as receiver:
        await receiver.subscribe(topics.inbox(b), qos=1)

        async def receive() -> None:
            async for message in receiver.messages:
                payload = message.payload
                assert isinstance(payload, bytes)
                received[int(payload.split(b" ", 1)[0])] = time.monotonic()
                if len(received) == count:
                    return

        receiving = asyncio.create_task(receive())
        sent: dict[int, float] = {}
        start = time.monotonic() + 0.2
        for i in range(count):
            await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
            sent[i] = time.monotonic()
            await sender.publish(topics.inbox(b), str(i).encode() + b" " + payload_pad, qos=1)
        with contextlib.suppress(TimeoutError):  # what is lost is counted by its absence
            await asyncio.wait_for(receiving, 5)
    return percentiles([(received[i] - t) * 1000 for i, t in sent.items() if i in received])


async def measure(n: int, processes: int, directory: Path) -> dict[str, Any]:
    """Every figure for a building of ``n`` endpoints."""
    layout = building(n)
    port, websockets_port, bridge_port = free_ports(3)
    settings = BrokerSettings(
        site=layout.site,
        endpoints=(*layout.addresses, *PROBES),
        port=port,
        websockets_port=websockets_port,
        bridge_port=bridge_port,
    )
    files = await asyncio.to_thread(write_broker_config, settings, directory / f"broker-{n}")
    site = Site(layout, settings, files)
    result: dict[str, Any] = {"endpoints": n, "processes": processes, "broker": settings.sizing()}
    try:
        site.start_broker()
        site.start_workers(processes)
        since = time.monotonic()
        await site.ask("start")
        result["start"] = await wait_all(site, n, since=since)
        await asyncio.sleep(1.0)  # late retained deliveries counted too
        result["messages_at_connect"] = await announcements(site, 0)
        rss = [r["rss_kib"] for r in await site.ask("memory")]
        assert site.mosquitto_pid is not None and site.broker is not None
        result["memory"] = {
            "endpoint_processes_mib": round(sum(rss) / 1024, 1),
            "per_endpoint_kib": round(sum(rss) / n),
            "per_endpoint_above_idle_process_kib": round((sum(rss) - sum(site.idle_rss_kib)) / n),
            "mosquitto_mib": round(rss_kib(site.mosquitto_pid) / 1024, 1),
            "fronts_process_mib": round(rss_kib(site.broker.pid or 0) / 1024, 1),
        }
        result["setups"] = {}
        for rate in RATES:
            count = min(rate * 20, 500)
            result["setups"][f"{rate}_per_s"] = {
                "callbox": await invites(site, rate, count),
                "baseline_plain_mqtt": await plain_mqtt(site, rate, count),
            }
        before = (await wait_all(site, n, since=time.monotonic()))["tcp_connections_made"]
        killed = time.monotonic()
        site.kill_broker()
        site.start_broker()
        restarted = time.monotonic()
        back = await wait_all(site, n, since=killed, reconnected=2)
        back["tcp_connections_made"] -= before
        back["broker_down_s"] = round(restarted - killed, 2)
        result["broker_restart"] = back
        result["messages_at_reconnect"] = await announcements(site, 1)
        result["memory"]["mosquitto_after_restart_mib"] = round(
            rss_kib(site.mosquitto_pid) / 1024, 1
        )
    finally:
        await site.close()
    return result


async def run(sizes: list[int], processes: int) -> dict[str, Any]:
    """Measure each size in turn."""
    raise_file_limit()
    with tempfile.TemporaryDirectory(prefix="callbox-scale-") as directory:
        runs = [await measure(n, processes, Path(directory)) for n in sizes]
    return {
        "machine": f"{os.cpu_count()} cores, shared with everything else running",
        "load_average_at_end": os.getloadavg(),
        "targets": {
            "all_present_s": TARGET_PRESENT_S,
            "invite_p99_ms_at_10_per_s": 100,
            "mosquitto_mib_at_1000": 150,
        },
        "runs": runs,
    }


def main() -> None:
    """Parse arguments, run, print JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--endpoints", default="100,300,1000", help="sizes, comma-separated")
    parser.add_argument("--processes", type=int, default=4)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    sizes = [int(s) for s in args.endpoints.split(",")]
    print(json.dumps(asyncio.run(run(sizes, args.processes)), indent=2))


if __name__ == "__main__":
    main()
