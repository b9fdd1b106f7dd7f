"""An auto-answering endpoint in its own process, so that a flood test can measure its memory.

Usage: ``python flood_peer.py serve CONFIG.json`` (``start_flood_peer`` writes the file and
starts it with ``tests/`` on ``PYTHONPATH``). The file holds the broker login, the site, the
address, the identity directory and the pinned contacts. The process prints "ready" once it
is online; then, for each line "counters" on its standard input, one JSON line with its
signaling endpoint's counters (what ``callbox status`` shows). It ends when its input closes.

``python flood_peer.py flood CONFIG.json`` is the attacker, in a process of its own too (as
on another machine of the LAN): it publishes the files the config names round-robin into
the target's inbox at the given rate for the given time, and prints how many it sent.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
from harness.peer_process import AutoAnswer, peer_signaling, write_peer_config
from harness.simsite import SimSite

from hal.board import build_sim_board
from services.callapi import Calls
from services.media.ice import LOOPBACK
from services.media.local import LocalMedia

TESTS = Path(__file__).resolve().parents[1]


async def serve(config: dict[str, Any]) -> None:
    """Run the endpoint described by ``config`` until standard input closes."""
    signaling = peer_signaling(config)
    calls = Calls(signaling, LocalMedia(build_sim_board(config["address"])), ice=LOOPBACK)
    calls.set_listener(AutoAnswer(calls))
    await calls.start()
    print("ready", flush=True)
    try:
        while line := await asyncio.to_thread(sys.stdin.readline):
            if line.strip() == "counters":
                print(json.dumps(signaling.counters()), flush=True)
    finally:
        await calls.close()


async def flood(config: dict[str, Any]) -> None:
    """Publish ``config["payloads"]`` into ``config["topic"]`` at ``config["rate"]`` a second."""
    payloads = [await asyncio.to_thread(Path(p).read_bytes) for p in config["payloads"]]
    broker = config["broker"]
    client = aiomqtt.Client(
        broker["host"],
        broker["port"],
        username=broker["username"],
        password=broker["password"],
        protocol=aiomqtt.ProtocolVersion.V5,
    )
    loop = asyncio.get_running_loop()
    started = loop.time()
    sent = 0
    async with client:
        while (elapsed := loop.time() - started) < config["seconds"]:
            due = int(elapsed * config["rate"]) + 1
            while sent < due:
                await client.publish(config["topic"], payloads[sent % len(payloads)], qos=0)
                sent += 1
            await asyncio.sleep(0.005)  # pacing the flood to its rate
    print(sent, flush=True)


async def run_flooder(config: dict[str, Any], directory: Path) -> int:
    """Run the flooder process described by ``config`` to its end; how many it sent."""
    path = directory / f"flood-{os.urandom(4).hex()}.json"
    await asyncio.to_thread(path.write_text, json.dumps(config))
    process = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "flood", str(path), stdout=asyncio.subprocess.PIPE, env=_env()
    )
    out, _ = await asyncio.wait_for(process.communicate(), config["seconds"] + 30)
    assert process.returncode == 0, f"the flooder failed ({process.returncode})"
    return int(out)


def _env() -> dict[str, str]:
    inherited = os.environ.get("PYTHONPATH")
    tests = str(TESTS)
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([tests, inherited] if inherited else [tests]),
    }


@dataclass
class FloodPeer:
    """The running process: its pid (to read its memory) and its counters on request."""

    process: asyncio.subprocess.Process

    def rss_kib(self) -> int:
        """The process's resident memory, in KiB (VmRSS of /proc)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS in /proc: not Linux?")

    async def counters(self) -> dict[str, Any]:
        """Its signaling endpoint's counters."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(b"counters\n")
        await self.process.stdin.drain()
        line = await asyncio.wait_for(self.process.stdout.readline(), 30)
        result = json.loads(line)
        assert isinstance(result, dict)
        return result

    async def stop(self) -> None:
        """Close its input (it goes offline and exits); kill it if it does not."""
        if self.process.returncode is not None:
            return
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            await asyncio.wait_for(self.process.wait(), 15)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


async def start_flood_peer(site: SimSite, address: str, directory: Path) -> FloodPeer:
    """Start endpoint ``address`` of ``site`` in its own process, pinned with the door.

    ``address`` needs a broker account (``extra_accounts``). Returns once the door sees it.
    """
    path = await write_peer_config(site, address, directory)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "serve",
        str(path),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env=_env(),
    )
    peer = FloodPeer(process)
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), 30)
    if line.strip() != b"ready":
        await peer.stop()
        raise RuntimeError(f"the flood peer {address} did not start: {line!r}")
    await site["door"].signaling.wait_presence(address, True, timeout=10)
    return peer


if __name__ == "__main__":
    command = {"serve": serve, "flood": flood}[sys.argv[1]]
    asyncio.run(command(json.loads(Path(sys.argv[2]).read_text())))
