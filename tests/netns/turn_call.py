"""Runs in a network namespace of its own (``unshare -rn``): a call that only the relay carries.

This process's namespace is the TURN server's ("the middle"). Two sides hang off it, each in a
namespace of its own with one veth: the door (``10.16.1.2``, the site's LAN ``10.16.1.0/24``)
and the phone (``10.16.2.2``, "away from home"). The middle does not forward between them, so
the door and the phone can reach the middle's addresses and nothing of each other. coturn (the
configuration callbox generates: the LAN allowed, every other private range denied) listens on
both middle addresses and relays from ``10.16.1.1``; mosquitto listens on the middle's loopback
and a TCP forwarder lets each side reach it. The door holds the site's TURN secret and mints
credentials into its invite; the phone has none of its own.

``python turn_call.py SCENARIO``: ``relay`` (the door's secret is the relay's) or ``wrong``
(it is not). Prints one JSON line: each side's report (tests/harness/turn_peer.py).
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from harness.netlab import (
    MARKER,
    _die_with_parent,
    _kill_namespace,
    _wait_own_namespace,
    env_with_tests_on_path,
    forward_tcp,
    reexec_in_private_netns,
    run,
)
from harness.turnrelay import start_turnserver

from services.media.turn import new_secret
from services.signaling.broker import start_loopback_broker
from services.signaling.identity import Identity

SIDES = {
    "door": ("10.16.1.2", "10.16.1.1", "10.16.2.0/24"),
    "phone": ("10.16.2.2", "10.16.2.1", "10.16.1.0/24"),
}
"""Each side's address, its end of the middle, and the other side's network (routed to the
middle, which drops it: the path a direct ICE check would take)."""
SITE = "lab"


class Side:
    """A namespace held by a sleeping process, with one veth into the middle."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.holder: asyncio.subprocess.Process | None = None

    async def build(self) -> None:
        address, gateway, other = SIDES[self.name]
        self.holder = await asyncio.create_subprocess_exec(
            "unshare", "-n", "sleep", "infinity", preexec_fn=_die_with_parent
        )
        await _wait_own_namespace(self.holder.pid)
        veth = f"v-{self.name}"
        await run("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns",
                  str(self.holder.pid))  # fmt: skip
        await run("ip", "addr", "add", f"{gateway}/24", "dev", veth)
        await run("ip", "link", "set", veth, "up")
        inside = ["nsenter", "-t", str(self.holder.pid), "-n"]
        await run(*inside, "ip", "link", "set", "lo", "up")
        await run(*inside, "ip", "addr", "add", f"{address}/24", "dev", "eth0")
        await run(*inside, "ip", "link", "set", "eth0", "up")
        await run(*inside, "ip", "route", "add", other, "via", gateway)

    async def spawn(self, *argv: str) -> asyncio.subprocess.Process:
        """Start ``argv`` in this side's namespace; stdout piped."""
        assert self.holder is not None
        return await asyncio.create_subprocess_exec(
            "nsenter", "-t", str(self.holder.pid), "-n", *argv,
            stdout=asyncio.subprocess.PIPE, env=env_with_tests_on_path(),
            preexec_fn=_die_with_parent,
        )  # fmt: skip

    async def close(self) -> None:
        holder, self.holder = self.holder, None
        if holder is not None and holder.returncode is None:
            await asyncio.to_thread(_kill_namespace, holder.pid)
            holder.kill()
            await holder.wait()


async def read_report(process: asyncio.subprocess.Process, name: str) -> dict[str, Any]:
    assert process.stdout is not None
    lines = []
    async with asyncio.timeout(120):
        while line := await process.stdout.readline():
            lines.append(line.decode().strip())
    await process.wait()
    if not lines or not lines[-1].startswith("{"):
        raise RuntimeError(f"{name} gave no report (exit {process.returncode}): {lines[-5:]}")
    report: dict[str, Any] = json.loads(lines[-1])
    return report


async def main(scenario: str, directory: Path) -> dict[str, Any]:
    await run("ip", "link", "set", "lo", "up")
    await asyncio.to_thread(Path("/proc/sys/net/ipv4/ip_forward").write_text, "0")
    sides = {name: Side(name) for name in SIDES}
    servers: list[asyncio.Server] = []
    relay = broker = None
    try:
        for side in sides.values():
            await side.build()
        relay = await start_turnserver(
            directory / "turn", host="10.16.1.1", listening_ips=("10.16.1.1", "10.16.2.1"),
            relay_ip="10.16.1.1", lan=("10.16.1.0/24",),
        )  # fmt: skip
        broker = await start_loopback_broker(directory, site=SITE, endpoints=tuple(SIDES))
        port = broker.settings.port
        for _, gateway, _ in SIDES.values():
            servers.append(await forward_tcp(gateway, port, port))
        identities = {name: Identity.generate() for name in SIDES}
        processes = {}
        for name in ("phone", "door"):
            await asyncio.to_thread(identities[name].save, directory / name)
            other = "door" if name == "phone" else "phone"
            config: dict[str, Any] = {
                "role": name, "site": SITE, "address": name, "target": other,
                "identity_dir": str(directory / name),
                "broker": {"host": SIDES[name][1], "port": port, "username": name,
                           "password": broker.files.passwords[name]},
                "contacts": {other: identities[other].public_keys.to_json()},
            }  # fmt: skip
            if name == "door":
                secret = relay.secret if scenario == "relay" else new_secret()
                config["turn"] = {"urls": [relay.url], "secret": secret}
            path = directory / f"{name}.json"
            await asyncio.to_thread(path.write_text, json.dumps(config))
            process = await sides[name].spawn(sys.executable, "-m", "harness.turn_peer", str(path))
            assert process.stdout is not None
            ready = await asyncio.wait_for(process.stdout.readline(), 30)
            if ready.strip() != b"ready":
                raise RuntimeError(f"{name} did not start: {ready!r}")
            processes[name] = process
        door, phone = await asyncio.gather(
            read_report(processes["door"], "door"), read_report(processes["phone"], "phone")
        )
        return {"door": door, "phone": phone, "relay_port": relay.port}
    finally:
        for server in servers:
            server.close()
        if broker is not None:
            await broker.close()
        if relay is not None:
            await relay.close()
        for side in sides.values():
            await side.close()


if __name__ == "__main__":
    reexec_in_private_netns()
    assert MARKER
    with tempfile.TemporaryDirectory() as temporary:
        print(json.dumps(asyncio.run(main(sys.argv[1], Path(temporary)))))
