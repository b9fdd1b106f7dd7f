"""`callbox run` as a real process: a mosquitto, a config file, a notify socket, the CLI.

The daemon is the installed ``callbox`` script next to this interpreter, on the simulated
board, started the way systemd starts it: ``NOTIFY_SOCKET`` names a datagram socket the
test reads, so a test waits for READY=1 (and RELOADING=1, STOPPING=1) instead of sleeping.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path

from services.signaling.broker import (
    BrokerFiles,
    BrokerSettings,
    MosquittoBroker,
    start_loopback_broker,
)

CALLBOX = Path(sys.executable).with_name("callbox")
TIMEOUT = 15.0
"""Bound of every wait: a daemon start on a loaded 2-core machine takes a few seconds."""


@dataclass(frozen=True)
class CliResult:
    """What a ``callbox`` command printed and its exit code."""

    code: int
    stdout: str
    stderr: str


async def callbox(*args: str | Path, env: dict[str, str] | None = None) -> CliResult:
    """Run ``callbox ARGS`` as its own process and wait for it (bounded by TIMEOUT)."""
    process = await asyncio.create_subprocess_exec(
        CALLBOX,
        *map(str, args),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**clean_env(), **(env or {})},
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), TIMEOUT)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return CliResult(process.returncode, out.decode(), err.decode())


def clean_env() -> dict[str, str]:
    """This environment without the variables that would point callbox elsewhere."""
    env = dict(os.environ)
    for name in ("CALLBOX_CONFIG", "CALLBOX_CONTROL", "NOTIFY_SOCKET", "WATCHDOG_USEC"):
        env.pop(name, None)
    return env


class NotifySocket:
    """The service manager's end of sd_notify: a datagram socket the daemon reports to."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.setblocking(False)
        self._sock.bind(str(path))

    async def next(self, timeout: float = TIMEOUT) -> dict[str, str]:
        """The next message, as its KEY=VALUE lines."""
        loop = asyncio.get_running_loop()
        data = await asyncio.wait_for(loop.sock_recv(self._sock, 65536), timeout)
        lines = data.decode().splitlines()
        return dict(line.split("=", 1) for line in lines)

    async def next_except_watchdog(self, timeout: float = TIMEOUT) -> dict[str, str]:
        """The next message that is not a watchdog ping."""
        while True:
            message = await self.next(timeout)
            if message != {"WATCHDOG": "1"}:
                return message

    def close(self) -> None:
        """Stop listening."""
        self._sock.close()


def door_toml(*, port: int, password: str, state_dir: Path, name: str = "Front door") -> str:
    """A door station on the simulated board, logged in to the test broker."""
    return f"""# the door station of the daemon tests
role = "door"
address = "door"
name = "{name}"
site = "test"
board = "sim"
state_dir = "{state_dir}"
targets = ["flat"]

[broker]
host = "127.0.0.1"
port = {port}
password = "{password}"

[call]
ring_timeout_s = 30

[network]
addresses = ["127.0.0.1"]  # ICE on loopback only: the tests send nothing elsewhere
"""


@dataclass
class Daemon:
    """One ``callbox run`` process; its stderr (the log) goes to a file."""

    process: asyncio.subprocess.Process
    log_path: Path

    def log(self) -> str:
        """What the daemon logged so far."""
        return self.log_path.read_text(errors="replace")

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the daemon."""
        self.process.send_signal(signum)

    async def wait(self, timeout: float = TIMEOUT) -> int:
        """Wait for the daemon to exit; its exit code."""
        return await asyncio.wait_for(self.process.wait(), timeout)

    async def stop(self) -> None:
        """SIGTERM, and SIGKILL if it does not exit in time (teardown of a failed test)."""
        if self.process.returncode is not None:
            return
        self.signal(signal.SIGTERM)
        try:
            await self.wait()
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


@dataclass
class DaemonSite:
    """A broker, the door's config file and control socket path, and the notify socket."""

    directory: Path
    broker: MosquittoBroker
    files: BrokerFiles
    settings: BrokerSettings
    notify: NotifySocket
    config_path: Path
    control_path: Path
    daemons: list[Daemon] = field(default_factory=list)

    @property
    def state_dir(self) -> Path:
        """The door's state directory (keys, call log)."""
        return self.directory / "state"

    def write_config(self, **values: str) -> None:
        """(Re)write the door's config file; ``values`` go to `door_toml`."""
        self.config_path.write_text(
            door_toml(
                port=self.settings.port,
                password=self.files.passwords["door"],
                state_dir=self.state_dir,
                **values,
            )
        )

    async def start_daemon(self, env: dict[str, str] | None = None) -> Daemon:
        """Start ``callbox run`` and wait for its READY=1 (returned as the first message)."""
        log_path = self.directory / f"daemon{len(self.daemons)}.log"
        with log_path.open("wb") as log:
            process = await asyncio.create_subprocess_exec(
                CALLBOX,
                "run",
                "--config",
                str(self.config_path),
                "--control",
                str(self.control_path),
                "--first-boot",
                str(self.directory / "no-first-boot.toml"),
                stdout=log,
                stderr=log,
                env={**clean_env(), "NOTIFY_SOCKET": str(self.notify.path), **(env or {})},
            )
        daemon = Daemon(process, log_path)
        self.daemons.append(daemon)
        try:
            message = await self.notify.next_except_watchdog()
        except TimeoutError:
            raise AssertionError(f"no READY=1 within {TIMEOUT} s:\n{daemon.log()}") from None
        assert message.get("READY") == "1", f"{message}\n{daemon.log()}"
        return daemon

    async def close(self) -> None:
        """Stop every daemon, the broker, the notify socket."""
        for daemon in self.daemons:
            await daemon.stop()
        await self.broker.close()
        self.notify.close()


async def start_daemon_site(directory: Path) -> DaemonSite:
    """A running broker that knows "door" and "flat", and the door's config file."""
    broker = await start_loopback_broker(directory, site="test", endpoints=("door", "flat"))
    settings, files = broker.settings, broker.files
    site = DaemonSite(
        directory=directory,
        broker=broker,
        files=files,
        settings=settings,
        notify=NotifySocket(directory / "notify.sock"),
        config_path=directory / "callbox.toml",
        control_path=directory / "control.sock",
    )
    site.write_config()
    return site
