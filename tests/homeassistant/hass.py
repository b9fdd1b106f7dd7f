"""A real Home Assistant (from `make homeassistant-venv`) and its own mosquitto, for tests.

`HaBroker`: a plain mosquitto on a free loopback port with two accounts (HA's and the
unit's), anonymous logins refused. `HomeAssistant`: HA 2024.3.3 from its own venv with a
generated configuration (http on 127.0.0.1 and a free port, api, config, onboarding; no
default_config), its MQTT config entry made through HA's public APIs (onboarding user ->
auth code -> token -> config flow), then driven and read through its REST API.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from services.signaling.broker import find_mosquitto, free_port, hash_password

HA_VERSION = "2024.3.3"
DEFAULT_VENV = Path.home() / ".cache" / "callbox" / f"homeassistant-{HA_VERSION}"
CLIENT_ID = "http://127.0.0.1/"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0


def ha_venv() -> Path:
    """Where `make homeassistant-venv` put HA (``HA_VENV`` as make takes it)."""
    return Path(os.environ.get("HA_VENV") or DEFAULT_VENV)


def ha_installed() -> bool:
    """True when that venv holds HA of the tested version (its stamp is there)."""
    venv = ha_venv()
    return (venv / f".stamp-callbox-{HA_VERSION}").exists() and (venv / "bin/python").exists()


@dataclass
class HaBroker:
    """mosquitto for HA: a loopback port, accounts ``homeassistant`` and ``callbox``."""

    directory: Path
    port: int = 0
    passwords: dict[str, str] = field(default_factory=dict)
    process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        """Write the config and password file, start mosquitto, wait until it listens.

        Started again after `close`, it keeps its port and accounts (retained messages are gone).
        """
        if not self.port:
            self.port = free_port()
            self.passwords = {u: secrets.token_urlsafe(12) for u in ("homeassistant", "callbox")}
            await asyncio.to_thread(self._write)
        executable = await asyncio.to_thread(find_mosquitto)
        log = await asyncio.to_thread((self.directory / "mosquitto.log").open, "ab")
        with log:
            self.process = await asyncio.create_subprocess_exec(
                executable, "-c", str(self.directory / "mosquitto.conf"), stdout=log, stderr=log
            )
        await wait_listening(self.port, "HA's mosquitto")

    def _write(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        passwords = self.directory / "passwords"
        passwords.write_text(
            "".join(f"{u}:{hash_password(p)}\n" for u, p in self.passwords.items())
        )
        passwords.chmod(0o600)
        (self.directory / "mosquitto.conf").write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous false\n"
            f"password_file {passwords}\n"
            "persistence false\n"
            "log_dest stderr\n" + ("user root\n" if os.geteuid() == 0 else "")
        )

    async def close(self) -> None:
        """Stop mosquitto."""
        await stop_process(self.process)
        self.process = None


async def wait_listening(port: int, what: str, timeout: float = 10.0) -> None:
    """Wait until 127.0.0.1:``port`` accepts connections."""
    async with asyncio.timeout(timeout):
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return


async def stop_process(process: asyncio.subprocess.Process | None) -> None:
    """SIGTERM, then SIGKILL after STOP_TIMEOUT_S; waits for the end."""
    if process is None or process.returncode is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
    except TimeoutError:
        process.kill()
        await process.wait()


CONFIGURATION = """
homeassistant:
  name: callbox test
  latitude: 0
  longitude: 0
  elevation: 0
  unit_system: metric
  time_zone: UTC
  currency: EUR
  country: DE
http:
  server_host: 127.0.0.1
  server_port: {port}
api:
config:
onboarding:
logger:
  default: warning
  logs:
    homeassistant.components.mqtt: info
"""


class HomeAssistant:
    """One HA process on a config dir; `setup` onboards it and adds the MQTT entry."""

    def __init__(self, config_dir: Path, broker: HaBroker) -> None:
        self.config_dir = config_dir
        self.broker = broker
        self.port = 0
        self.token = ""
        self.process: asyncio.subprocess.Process | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        """Where its HTTP API is."""
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Start HA (a new one on the same config dir after `stop`), wait for its API."""
        if not self.port:
            self.port = free_port()
            await asyncio.to_thread(self._write_config)
        python = ha_venv() / "bin" / "python"
        log = await asyncio.to_thread((self.config_dir / "ha-stdout.log").open, "ab")
        with log:
            self.process = await asyncio.create_subprocess_exec(
                str(python),
                "-m",
                "homeassistant",
                "--config",
                str(self.config_dir),
                "--skip-pip",
                stdout=log,
                stderr=log,
            )
        self._session = aiohttp.ClientSession()
        await self._wait_api()

    def _write_config(self) -> None:
        self.config_dir.mkdir(parents=True, exist_ok=True)
        (self.config_dir / "configuration.yaml").write_text(CONFIGURATION.format(port=self.port))

    async def _wait_api(self) -> None:
        assert self._session is not None
        async with asyncio.timeout(START_TIMEOUT_S):
            while True:
                if self.process is not None and self.process.returncode is not None:
                    raise AssertionError(f"Home Assistant exited: {await self.log_tail()}")
                try:
                    async with self._session.get(f"{self.url}/api/onboarding") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.2)

    async def log_tail(self) -> str:
        """The end of HA's log, for a failure message."""
        path = self.config_dir / "ha-stdout.log"
        text = await asyncio.to_thread(path.read_text, errors="replace")
        return text[-3000:]

    async def setup(self) -> None:
        """Onboard an owner, take a token, add the MQTT config entry for the test broker."""
        assert self._session is not None
        async with self._session.post(
            f"{self.url}/api/onboarding/users",
            json={
                "client_id": CLIENT_ID,
                "name": "Owner",
                "username": "owner",
                "password": "owner-password",
                "language": "en",
            },
        ) as response:
            assert response.status == 200, await response.text()
            code = (await response.json())["auth_code"]
        async with self._session.post(
            f"{self.url}/auth/token",
            data={"grant_type": "authorization_code", "code": code, "client_id": CLIENT_ID},
        ) as response:
            assert response.status == 200, await response.text()
            self.token = (await response.json())["access_token"]
        flow = await self.post("/api/config/config_entries/flow", {"handler": "mqtt"})
        result = await self.post(
            f"/api/config/config_entries/flow/{flow['flow_id']}",
            {
                "broker": "127.0.0.1",
                "port": self.broker.port,
                "username": "homeassistant",
                "password": self.broker.passwords["homeassistant"],
            },
        )
        assert result.get("type") == "create_entry", result

    @property
    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def post(self, path: str, body: dict[str, Any]) -> Any:
        """POST JSON to HA's API; its JSON answer (AssertionError on an error status)."""
        assert self._session is not None
        async with self._session.post(f"{self.url}{path}", json=body, headers=self._headers) as r:
            assert r.status in (200, 201), f"{path}: {r.status} {await r.text()}"
            return await r.json()

    async def state(self, entity_id: str) -> dict[str, Any] | None:
        """The entity's state object, or None while HA does not know it."""
        assert self._session is not None
        async with self._session.get(
            f"{self.url}/api/states/{entity_id}", headers=self._headers
        ) as response:
            if response.status == 404:
                return None
            assert response.status == 200, await response.text()
            result: dict[str, Any] = await response.json()
            return result

    async def state_changes(self) -> StateChanges:
        """Every state change from now on, through HA's WebSocket API (close it after)."""
        assert self._session is not None
        socket = await self._session.ws_connect(f"{self.url}/api/websocket")
        assert (await socket.receive_json())["type"] == "auth_required"
        await socket.send_json({"type": "auth", "access_token": self.token})
        assert (await socket.receive_json())["type"] == "auth_ok"
        await socket.send_json({"id": 1, "type": "subscribe_events", "event_type": "state_changed"})
        assert (await socket.receive_json())["success"]
        return StateChanges(socket)

    async def get_json(self, path: str) -> Any:
        """GET ``path`` as JSON (AssertionError on an error status)."""
        status, body = await self.get_bytes(path)
        assert status == 200, f"{path}: {status} {body[:200]!r}"
        return json.loads(body)

    async def get_bytes(self, path: str) -> tuple[int, bytes]:
        """GET ``path``: (status, body)."""
        assert self._session is not None
        async with self._session.get(f"{self.url}{path}", headers=self._headers) as response:
            return response.status, await response.read()

    async def wait_state(
        self,
        entity_id: str,
        check: Any = None,
        timeout: float = 30.0,
    ) -> dict[str, Any]:
        """Wait until the entity exists (and ``check(state)`` holds); its state object."""
        last: dict[str, Any] | None = None
        try:
            async with asyncio.timeout(timeout):
                while True:
                    last = await self.state(entity_id)
                    if last is not None and (check is None or check(last)):
                        return last
                    await asyncio.sleep(0.1)
        except TimeoutError:
            raise AssertionError(f"{entity_id}: last state {last}") from None

    async def stop(self) -> None:
        """Stop HA (it writes its state on the way out) and the HTTP session."""
        if self._session is not None:
            await self._session.close()
            self._session = None
        await stop_process(self.process)
        self.process = None


class StateChanges:
    """(entity_id, state) of each state change HA reports on one WebSocket subscription."""

    def __init__(self, socket: aiohttp.ClientWebSocketResponse) -> None:
        self.socket = socket
        self.seen: list[tuple[str, str]] = []
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self.socket:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(message.data)
            event = data.get("event", {}).get("data", {})
            new = event.get("new_state") or {}
            self.seen.append((event.get("entity_id", ""), new.get("state", "")))

    def states(self, entity_id: str) -> list[str]:
        """The states ``entity_id`` went through, in order."""
        return [state for entity, state in self.seen if entity == entity_id]

    async def close(self) -> None:
        """End the subscription."""
        await self.socket.close()
        await self._task
