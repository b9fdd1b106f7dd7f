"""A userspace network impairment forwarder between two tun devices (this kernel has no netem).

Run inside the middle network namespace of a :class:`harness.netlab.NetLab`:
``python -m harness.impairment --tun-a tuna --tun-b tunb [--seed N]``. It creates both tun
devices, prints ``ready`` and then carries every IP packet the kernel routes into one tun out
of the other, after impairing it with the profile of its direction:

1. an outage (``{"outage_s": N}`` on stdin) drops everything, both ways, for N seconds;
2. independent random loss, then Gilbert-Elliott burst loss (a two-state chain stepped once
   per packet: good -> bad with ``burst_p``, bad -> good with ``burst_r``, a packet in the bad
   state is lost with ``burst_loss``; mean loss ``burst_loss * p / (p + r)``, mean burst
   ``1 / r`` packets);
3. a rate limit: a FIFO that serialises packets at ``rate_kbps``; a packet that would wait
   longer than ``queue_ms`` in it is dropped (tail drop of a bounded queue, like TBF);
4. a delay of ``delay_ms`` plus a uniform jitter in ``[-jitter_ms, +jitter_ms]``, drawn
   independently per packet. Packets are delivered when due, so two packets sent closer
   together than the jitter's spread may swap (netem's default behaviour): jitter implies
   that reordering and nothing more.

Control: one JSON object per stdin line, answered by one JSON line on stdout:
``{"set": {"a_to_b": {...}, "b_to_a": {...}}}`` (fields of :class:`Impairment`; a missing
direction is left as it is), ``{"outage_s": 20}``, ``{"stats": true}`` (counters per
direction). EOF on stdin stops the forwarder.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import json
import os
import random
import struct
import sys
from dataclasses import asdict, dataclass, field, fields
from typing import Any

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000


@dataclass(frozen=True)
class Impairment:
    """What one direction of the path does to its packets (all off by default)."""

    loss: float = 0.0
    burst_p: float = 0.0
    burst_r: float = 1.0
    burst_loss: float = 1.0
    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    rate_kbps: float = 0.0
    queue_ms: float = 100.0

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Impairment:
        """Build from a JSON object; unknown keys are an error (a typo must not pass)."""
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown impairment fields: {sorted(unknown)}")
        return cls(**{k: float(v) for k, v in values.items()})


@dataclass
class DirectionStats:
    """Counters of one direction."""

    packets: int = 0
    delivered: int = 0
    lost_random: int = 0
    lost_burst: int = 0
    lost_queue: int = 0
    lost_outage: int = 0
    write_errors: int = 0
    bytes_delivered: int = 0


@dataclass
class Direction:
    """One direction of the path: its impairment, its state and its counters."""

    impairment: Impairment = field(default_factory=Impairment)
    stats: DirectionStats = field(default_factory=DirectionStats)
    bad_state: bool = False
    queue_free_at: float = 0.0

    def departure(self, size: int, now: float, rng: random.Random) -> float | None:
        """When a packet of ``size`` bytes arriving at ``now`` leaves; None if it is dropped."""
        imp = self.impairment
        if imp.loss > 0 and rng.random() < imp.loss:
            self.stats.lost_random += 1
            return None
        if imp.burst_p > 0 or self.bad_state:
            self.bad_state = (
                rng.random() >= imp.burst_r if self.bad_state else rng.random() < imp.burst_p
            )
            if self.bad_state and rng.random() < imp.burst_loss:
                self.stats.lost_burst += 1
                return None
        leave = now
        if imp.rate_kbps > 0:
            start = max(now, self.queue_free_at)
            if start - now > imp.queue_ms / 1000:
                self.stats.lost_queue += 1
                return None
            self.queue_free_at = start + size * 8 / (imp.rate_kbps * 1000)
            leave = self.queue_free_at
        jitter = rng.uniform(-imp.jitter_ms, imp.jitter_ms) if imp.jitter_ms > 0 else 0.0
        return leave + max(0.0, imp.delay_ms + jitter) / 1000


def open_tun(name: str) -> int:
    """Create (or attach to) tun device ``name`` without packet info; a non-blocking fd."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    except OSError:
        os.close(fd)
        raise
    return fd


class Forwarder:
    """Moves packets between two tun fds, each way through its own :class:`Direction`."""

    def __init__(self, fd_a: int, fd_b: int, *, seed: int = 0) -> None:
        self._loop = asyncio.get_running_loop()
        self._rng = random.Random(seed)
        self._fds = {"a_to_b": (fd_a, fd_b), "b_to_a": (fd_b, fd_a)}
        self.directions = {"a_to_b": Direction(), "b_to_a": Direction()}
        self.outage_until = 0.0

    def start(self) -> None:
        """Start reading both tun devices."""
        for name, (source, _) in self._fds.items():
            self._loop.add_reader(source, self._read, name)

    def stop(self) -> None:
        """Stop reading (packets already scheduled are still written)."""
        for source, _ in self._fds.values():
            self._loop.remove_reader(source)

    def set(self, name: str, impairment: Impairment) -> None:
        """Give direction ``name`` a new impairment (its counters and queue carry on)."""
        self.directions[name].impairment = impairment

    def outage(self, seconds: float) -> None:
        """Drop every packet, both ways, for ``seconds`` from now."""
        self.outage_until = self._loop.time() + seconds

    def _read(self, name: str) -> None:
        source, sink = self._fds[name]
        direction = self.directions[name]
        while True:
            try:
                packet = os.read(source, 65535)
            except BlockingIOError:
                return
            now = self._loop.time()
            direction.stats.packets += 1
            if now < self.outage_until:
                direction.stats.lost_outage += 1
                continue
            due = direction.departure(len(packet), now, self._rng)
            if due is None:
                continue
            if due <= now:
                self._write(sink, packet, direction)
            else:
                self._loop.call_at(due, self._write, sink, packet, direction)

    @staticmethod
    def _write(sink: int, packet: bytes, direction: Direction) -> None:
        try:
            os.write(sink, packet)
        except OSError:
            direction.stats.write_errors += 1
            return
        direction.stats.delivered += 1
        direction.stats.bytes_delivered += len(packet)

    def handle(self, command: dict[str, Any]) -> dict[str, Any]:
        """Apply one control command; the JSON answer."""
        if "set" in command:
            for name, values in command["set"].items():
                self.set(name, Impairment.from_dict(values))
        if "outage_s" in command:
            self.outage(float(command["outage_s"]))
        return {
            "ok": True,
            "now": self._loop.time(),
            "outage_until": self.outage_until,
            "directions": {
                name: {"impairment": asdict(d.impairment), "stats": asdict(d.stats)}
                for name, d in self.directions.items()
            },
        }


async def serve(tun_a: str, tun_b: str, seed: int) -> None:
    """Create the tun devices, forward, and obey stdin until it closes."""
    fd_a, fd_b = open_tun(tun_a), open_tun(tun_b)
    forwarder = Forwarder(fd_a, fd_b, seed=seed)
    forwarder.start()
    reader = asyncio.StreamReader()
    await asyncio.get_running_loop().connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), sys.stdin
    )
    print("ready", flush=True)
    try:
        while line := await reader.readline():
            try:
                answer = forwarder.handle(json.loads(line))
            except (ValueError, TypeError, KeyError) as err:
                answer = {"ok": False, "error": str(err)}
            print(json.dumps(answer), flush=True)
    finally:
        forwarder.stop()
        os.close(fd_a)
        os.close(fd_b)


def main() -> None:
    """Parse arguments and forward until stdin closes."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tun-a", required=True)
    parser.add_argument("--tun-b", required=True)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    asyncio.run(serve(args.tun_a, args.tun_b, args.seed))


if __name__ == "__main__":
    main()
