"""A real coturn for tests: the configuration callbox generates, on free ports, started here.

Debian's coturn package ships a service of its own (disabled under these tests: nothing here
touches it); :func:`start_turnserver` runs ``turnserver`` itself with a configuration from
services/media/turnserver.py written to a temporary directory (pid file and user database
there too), and returns once a real TURN allocation with minted credentials succeeds.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from aioice import stun, turn

from services.media.turn import IceServerEntry, TurnMinter, new_secret
from services.media.turnserver import TurnServerSettings, coturn_config
from services.signaling.broker import LISTEN_PORTS

TURNSERVER = "turnserver"
LOOPBACK_PEERS = ("allow-loopback-peers", "allowed-peer-ip=127.0.0.1")
"""Test-only lines: two peers on one machine can only meet on loopback (callbox never
writes them; tests/media/test_turn_relay.py checks the relay refuses loopback without)."""
REALM = "sim"


def turnserver_path() -> str | None:
    """Where Debian's coturn put ``turnserver``, or None when it is not installed."""
    return shutil.which(TURNSERVER) or (
        "/usr/bin/turnserver" if Path("/usr/bin/turnserver").exists() else None
    )


def free_udp_port(host: str) -> int:
    """A UDP port (also free for TCP) on ``host`` right now, outside the ephemeral range.

    From :data:`LISTEN_PORTS`, as ``free_ports`` picks: every ICE socket of the tests binds
    port 0 in the ephemeral range, and could take a port picked there before coturn binds it.
    """
    pick = random.SystemRandom()
    while True:
        port = pick.choice(LISTEN_PORTS)
        with (
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp,
            socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp,
        ):
            try:
                udp.bind((host, port))
                tcp.bind((host, port))
            except OSError:
                continue
            return port


class PeerProbe(asyncio.DatagramProtocol):
    """The application side of a test allocation: the errors and data it gets."""

    def __init__(self) -> None:
        self.errors: asyncio.Queue[Exception] = asyncio.Queue(maxsize=16)
        self.received: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue(maxsize=16)

    def error_received(self, exc: Exception) -> None:
        if not self.errors.full():
            self.errors.put_nowait(exc)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if not self.received.full():
            self.received.put_nowait((data, addr))


@dataclass
class TurnRelay:
    """A running coturn: where it listens, its secret, and the process."""

    host: str
    port: int
    secret: str
    directory: Path
    process: asyncio.subprocess.Process
    log: Path
    extra: tuple[str, ...] = field(default=())

    @property
    def url(self) -> str:
        """Its ``turn:`` URL (UDP)."""
        return f"turn:{self.host}:{self.port}?transport=udp"

    def minter(self, ttl_s: int = 3600) -> TurnMinter:
        """Mints credentials this relay accepts."""
        return TurnMinter(urls=(self.url,), secret=self.secret, ttl_s=ttl_s)

    def credentials(self, address: str = "test", ttl_s: int = 3600) -> IceServerEntry:
        """Fresh valid credentials for ``address``."""
        return self.minter(ttl_s).mint(address, time.time())

    async def allocate(self, entry: IceServerEntry) -> tuple[str, int]:
        """Make one TURN allocation with ``entry``'s credentials; the relayed address."""
        transport, _ = await self.open(entry)
        try:
            relayed = transport.get_extra_info("sockname")
            return str(relayed[0]), int(relayed[1])
        finally:
            transport.close()

    async def open(self, entry: IceServerEntry) -> tuple[turn.TurnTransport, PeerProbe]:
        """An allocation with ``entry``'s credentials and a probe that records what it hears."""
        return await turn.create_turn_endpoint(
            PeerProbe,
            server_addr=(self.host, self.port),
            username=entry.username,
            password=entry.credential,
        )

    async def close(self) -> None:
        """Stop coturn; idempotent."""
        if self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 5)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


async def start_turnserver(
    directory: Path,
    *,
    host: str = "127.0.0.1",
    listening_ips: tuple[str, ...] = (),
    relay_ip: str = "",
    lan: tuple[str, ...] = (),
    extra_lines: tuple[str, ...] = (),
    timeout: float = 15.0,
) -> TurnRelay:
    """Start coturn with a generated configuration; returns once an allocation works.

    ``host``: where the tests reach it; ``extra_lines`` are appended to the generated file
    (a test that needs loopback peers says so there; callbox never writes such lines).
    """
    await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
    port = free_udp_port(host)
    low = random.randrange(50000, 60000, 64)
    settings = TurnServerSettings(
        realm=REALM,
        secret=new_secret(),
        listening_ips=listening_ips or (host,),
        relay_ip=relay_ip or host,
        lan=lan,
        port=port,
        min_port=low,
        max_port=low + 63,
        log_file=str(directory / "turnserver.log"),
        pid_file=str(directory / "turnserver.pid"),
        db_file=str(directory / "turndb"),
    )
    config = directory / "turnserver.conf"
    text = coturn_config(settings) + "".join(f"{line}\n" for line in extra_lines)
    await asyncio.to_thread(config.write_text, text)
    process, log = await spawn_turnserver(config)
    relay = TurnRelay(host, port, settings.secret, directory, process, log, extra_lines)
    try:
        await wait_for_allocation(relay, timeout)
    except BaseException:
        await relay.close()
        raise
    return relay


async def spawn_turnserver(config: Path) -> tuple[asyncio.subprocess.Process, Path]:
    """Start ``turnserver -c config``; its output goes to ``turnserver.out`` beside it."""
    program = turnserver_path()
    if program is None:
        raise RuntimeError("turnserver is missing: make deps installs Debian's coturn")
    log = config.parent / "turnserver.out"
    out = await asyncio.to_thread(log.open, "wb")
    try:
        process = await asyncio.create_subprocess_exec(
            program, "-c", str(config), stdout=out, stderr=asyncio.subprocess.STDOUT
        )
    finally:
        out.close()
    return process, log


async def wait_for_allocation(relay: TurnRelay, timeout: float) -> None:
    """Return once ``relay`` gives an allocation; RuntimeError with its output if it exits."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if relay.process.returncode is not None:
            output = await asyncio.to_thread(relay.log.read_text, errors="replace")
            raise RuntimeError(f"turnserver exited {relay.process.returncode}: {output[-2000:]}")
        try:
            await asyncio.wait_for(relay.allocate(relay.credentials("probe")), 2)
            return
        except (OSError, TimeoutError, ConnectionError, stun.TransactionError) as err:
            last = err
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(relay.process.wait(), 0.1)  # started, or exited
    raise RuntimeError(f"turnserver on {relay.host}:{relay.port} gave no allocation: {last!r}")
