"""Two network namespaces joined through the impairment forwarder: a lab for impaired paths.

The process that builds a :class:`NetLab` must run in a network namespace of its own (the
"middle" one): :func:`reexec_in_private_netns` re-executes the current script under
``unshare -rn`` (a user and network namespace; works as root and as an ordinary user).
Inside it the lab starts two holder processes, each in a new network namespace of its own
(``unshare -n``): side A (``10.77.1.2``, the door) and side B (``10.77.2.2``, the indoor
unit), each with one veth ``eth0`` to the middle namespace, where the other ends are
``veth-a`` (``10.77.1.1``) and ``veth-b`` (``10.77.2.1``) and the default routes of A and B
point. Policy routing sends whatever arrives from ``veth-a`` into tun ``tun-a`` and whatever
arrives from ``veth-b`` into ``tun-b``; the forwarder (:mod:`harness.impairment`) reads each
tun, impairs the packet and writes it into the other tun, from where the kernel routes it
out of the other veth. So every IP packet between A and B (UDP media and the broker's TCP)
crosses the forwarder, and nothing leaves these namespaces.

Programs run in a side with :meth:`NetLab.spawn` (``nsenter`` into the holder's namespace).
Every process the lab starts dies with the process that started it (``PR_SET_PDEATHSIG``);
:meth:`NetLab.close` kills whatever else still runs in a side's namespace; the namespaces
vanish with their last process.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

MARKER = "CALLBOX_NETLAB"
SIDES = {"a": ("10.77.1.2", "10.77.1.1"), "b": ("10.77.2.2", "10.77.2.1")}
"""Each side's address and its gateway (the middle namespace's end of its veth)."""

_PR_SET_PDEATHSIG = 1
TESTS = Path(__file__).resolve().parents[1]


def _die_with_parent() -> None:
    """preexec_fn: SIGKILL this child when the process that started it dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def missing_tools() -> list[str]:
    """The programs and devices the lab needs that this machine lacks."""
    missing = [t for t in ("unshare", "nsenter", "ip") if shutil.which(t) is None]
    if not os.path.exists("/dev/net/tun"):
        missing.append("/dev/net/tun")
    elif not os.access("/dev/net/tun", os.R_OK | os.W_OK):
        missing.append("read/write access to /dev/net/tun (Debian ships it 0666; root works)")
    return missing


def reexec_in_private_netns() -> None:
    """Re-execute this script under ``unshare -rn`` unless it already runs in its namespace.

    Raises RuntimeError naming what is missing when the lab cannot be built here.
    """
    if os.environ.get(MARKER) == "1":
        return
    missing = missing_tools()
    if missing:
        raise RuntimeError(f"the network lab needs {', '.join(missing)} (util-linux, iproute2)")
    env = {**os.environ, MARKER: "1"}
    os.execvpe("unshare", ["unshare", "-rn", sys.executable, *sys.argv], env)


def env_with_tests_on_path(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment with ``tests/`` (the ``harness`` package) on PYTHONPATH."""
    inherited = os.environ.get("PYTHONPATH")
    path = os.pathsep.join([str(TESTS), inherited] if inherited else [str(TESTS)])
    return {**os.environ, "PYTHONPATH": path, **(extra or {})}


async def run(*argv: str) -> None:
    """Run a setup command; RuntimeError with its stderr if it fails."""
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {stderr.decode(errors='replace')}")


async def forward_tcp(host: str, port: int, target: int) -> asyncio.Server:
    """Accept TCP on ``host:port`` and pipe each connection to ``127.0.0.1:target``."""

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target)
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    return await asyncio.start_server(connected, host, port)


class NetLab:
    """The middle namespace (this process's), sides A and B, and the forwarder between them."""

    def __init__(self, *, seed: int = 1) -> None:
        self.seed = seed
        self._holders: dict[str, asyncio.subprocess.Process] = {}
        self._forwarder: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> NetLab:
        try:
            await self.start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Build the namespaces, links and routes and start the forwarder."""
        if os.environ.get(MARKER) != "1":
            raise RuntimeError("NetLab needs its own network namespace: reexec_in_private_netns()")
        await run("ip", "link", "set", "lo", "up")
        await asyncio.to_thread(_write_sysctls)
        self._forwarder = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "harness.impairment",
            "--tun-a",
            "tun-a",
            "--tun-b",
            "tun-b",
            "--seed",
            str(self.seed),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=env_with_tests_on_path(),
            preexec_fn=_die_with_parent,
        )
        assert self._forwarder.stdout is not None
        line = await asyncio.wait_for(self._forwarder.stdout.readline(), 20)
        if line.strip() != b"ready":
            raise RuntimeError(f"the impairment forwarder did not start: {line!r}")
        for side, table in (("a", "101"), ("b", "102")):
            await self._build_side(side, table)

    async def _build_side(self, side: str, table: str) -> None:
        address, gateway = SIDES[side]
        holder = await asyncio.create_subprocess_exec(
            "unshare", "-n", "sleep", "infinity", preexec_fn=_die_with_parent
        )
        self._holders[side] = holder
        await _wait_own_namespace(holder.pid)
        veth = f"veth-{side}"
        await run("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns",
                  str(holder.pid))  # fmt: skip
        await run("ip", "addr", "add", f"{gateway}/24", "dev", veth)
        await run("ip", "link", "set", veth, "up")
        await run("ip", "link", "set", f"tun-{side}", "up")
        await run("ip", "rule", "add", "iif", veth, "lookup", table)
        await run("ip", "route", "add", "default", "dev", f"tun-{side}", "table", table)
        inside = ["nsenter", "-t", str(holder.pid), "-n"]
        await run(*inside, "ip", "link", "set", "lo", "up")
        await run(*inside, "ip", "addr", "add", f"{address}/24", "dev", "eth0")
        await run(*inside, "ip", "link", "set", "eth0", "up")
        await run(*inside, "ip", "route", "add", "default", "via", gateway)
        await run(*inside, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")

    async def spawn(
        self, side: str, argv: Sequence[str], *, env: dict[str, str] | None = None, **kwargs: Any
    ) -> asyncio.subprocess.Process:
        """Start ``argv`` in side ``side``'s namespace (same pid: ``nsenter`` execs it)."""
        holder = self._holders[side]
        return await asyncio.create_subprocess_exec(
            "nsenter",
            "-t",
            str(holder.pid),
            "-n",
            *argv,
            env=env or env_with_tests_on_path(),
            preexec_fn=_die_with_parent,
            **kwargs,
        )

    async def control(self, command: dict[str, Any]) -> dict[str, Any]:
        """Send one command to the forwarder and return its answer."""
        forwarder = self._forwarder
        if forwarder is None or forwarder.stdin is None or forwarder.stdout is None:
            raise RuntimeError("the forwarder is not running")
        async with self._lock:
            forwarder.stdin.write(json.dumps(command).encode() + b"\n")
            await forwarder.stdin.drain()
            line = await asyncio.wait_for(forwarder.stdout.readline(), 10)
        answer: dict[str, Any] = json.loads(line)
        if not answer.get("ok"):
            raise RuntimeError(f"the forwarder refused {command}: {answer}")
        return answer

    async def set_profile(self, a_to_b: dict[str, float], b_to_a: dict[str, float]) -> None:
        """Impair A -> B and B -> A as given (fields of ``harness.impairment.Impairment``)."""
        await self.control({"set": {"a_to_b": a_to_b, "b_to_a": b_to_a}})

    async def outage(self, seconds: float) -> None:
        """Drop everything between A and B for ``seconds`` from now."""
        await self.control({"outage_s": seconds})

    async def stats(self) -> dict[str, Any]:
        """The forwarder's counters per direction."""
        return await self.control({"stats": True})

    async def close(self) -> None:
        """Stop the forwarder and the holders (their namespaces go with them); idempotent."""
        forwarder, self._forwarder = self._forwarder, None
        if forwarder is not None:
            if forwarder.stdin is not None:
                forwarder.stdin.close()
            try:
                await asyncio.wait_for(forwarder.wait(), 5)
            except TimeoutError:
                forwarder.kill()
                await forwarder.wait()
        holders, self._holders = self._holders, {}
        for holder in holders.values():
            if holder.returncode is None:
                await asyncio.to_thread(_kill_namespace, holder.pid)
                holder.kill()
            await holder.wait()


def _write_sysctls() -> None:
    """Forward between the veths and tuns; no reverse-path filter (tun-b carries A's source)."""
    Path("/proc/sys/net/ipv4/ip_forward").write_text("1")
    for conf in Path("/proc/sys/net/ipv4/conf").iterdir():
        (conf / "rp_filter").write_text("0")


async def _wait_own_namespace(pid: int, timeout: float = 10.0) -> None:
    """Return once ``pid`` runs in a network namespace other than ours (``unshare`` did it).

    Until then a veth moved "into its namespace" would land in ours.
    """
    ours = os.stat("/proc/self/ns/net").st_ino
    deadline = time.monotonic() + timeout
    while os.stat(f"/proc/{pid}/ns/net").st_ino == ours:
        if time.monotonic() > deadline:
            raise RuntimeError(f"process {pid} did not enter a network namespace of its own")
        await asyncio.sleep(0.005)  # unshare(2) runs right after the exec


def _kill_namespace(holder: int) -> None:
    """SIGKILL every process left in ``holder``'s network namespace, but the holder.

    A process started there that outlived its parent (mosquitto, when the endpoint that
    started it was killed) would keep the namespace alive. The lab created the namespace:
    whatever runs in it is the lab's.
    """
    try:
        namespace = os.stat(f"/proc/{holder}/ns/net").st_ino
    except OSError:
        return
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == holder:
            continue
        try:
            if os.stat(entry / "ns" / "net").st_ino == namespace:
                os.kill(int(entry.name), signal.SIGKILL)
        except OSError:
            continue  # gone, or not ours to look at
