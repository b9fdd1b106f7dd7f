"""A site of device apps built from real ``callbox.toml`` files on simulated boards.

Each endpoint is what ``callbox run`` builds: its configuration file, its keys in its own
state directory, a simulated board whose GPIO pins are gpiozero MockFactory pins and
whose backlight is a sysfs tree in its state directory; a real mosquitto on loopback
carries the signaling. ``callbox demo`` and the end-to-end tests use it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from device.config import CallboxConfig, load_config, load_or_create_identity
from device.daemon import DeviceApp
from hal.io_devices import SIM_PINS
from services.signaling.broker import (
    BrokerSettings,
    MosquittoBroker,
    start_loopback_broker,
)
from services.signaling.identity import PublicKeys

PRESENCE_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Unit:
    """One endpoint to put in the site."""

    address: str
    role: str
    extra_toml: str = ""  # more tables, e.g. "[dnd]\nenabled = true"
    call_toml: str = ""  # more keys of [call], e.g. "unlock_per_minute = 1"


@dataclass
class IntercomSite:
    """The broker and the running apps, by address."""

    directory: Path
    broker: MosquittoBroker
    settings: BrokerSettings
    apps: dict[str, DeviceApp] = field(default_factory=dict)
    config_paths: dict[str, Path] = field(default_factory=dict)

    def __getitem__(self, address: str) -> DeviceApp:
        return self.apps[address]

    def pin(self, address: str, name: str) -> Any:
        """The MockFactory pin ``name`` (e.g. "GPIO17") of ``address``'s board."""
        endpoint = self.apps[address].endpoint
        assert endpoint is not None
        return endpoint.board.io.pin_factory.pin(name)

    def bl_power(self, address: str) -> str:
        """What the sysfs backlight of ``address`` says (``0`` on, ``1`` off)."""
        root = Path(self.apps[address].config.state_dir) / "sim-sysfs"
        (power,) = root.glob("*/bl_power")
        return power.read_text().strip()

    async def close(self) -> None:
        """Stop every app, then the broker."""
        for app in self.apps.values():
            await app.close()
        await self.broker.close()


def config_text(
    unit: Unit, site: str, port: int, password: str, contacts: str, targets: list[str]
) -> str:
    """A complete callbox.toml for ``unit`` on the site's broker."""
    return f"""
role = "{unit.role}"
address = "{unit.address}"
name = "{unit.address.capitalize()}"
site = "{site}"
board = "sim"
state_dir = "{{state}}"
targets = {targets!r}

[broker]
host = "127.0.0.1"
port = {port}
password = "{password}"

[call]
ring_timeout_s = 30
max_duration_s = 120
{unit.call_toml}

[network]
addresses = ["127.0.0.1"]

[relay]
pin = "{SIM_PINS["relay"]}"
pulse_ms = 300
max_on_ms = 2000

{unit.extra_toml}
{contacts}
"""


def contact_toml(address: str, role: str, keys: PublicKeys) -> str:
    """A [[contacts]] table pinning ``address``'s keys with both rights."""
    return f"""
[[contacts]]
address = "{address}"
name = "{address.capitalize()}"
role = "{role}"
sign_key = "{keys.to_json()["sign"]}"
dh_key = "{keys.to_json()["dh"]}"
rights = ["unlock", "monitor"]
"""


async def start_intercom_site(
    directory: Path,
    units: list[Unit],
    *,
    site: str = "test",
    accounts: tuple[str, ...] = (),
    websockets: bool = False,
) -> IntercomSite:
    """Write every unit's config, start mosquitto and every app; presence of all awaited.

    ``accounts``: more broker logins (a browser phone); ``websockets``: a WebSocket
    listener too (what a browser connects to).
    """
    broker = await start_loopback_broker(
        directory,
        site=site,
        endpoints=(*(u.address for u in units), *accounts),
        websockets=websockets,
    )
    settings, files = broker.settings, broker.files
    running = IntercomSite(directory, broker, settings)
    keys = {
        u.address: (
            await asyncio.to_thread(load_or_create_identity, directory / u.address)
        ).public_keys
        for u in units
    }
    try:
        for unit in units:
            others = [u for u in units if u.address != unit.address]
            contacts = "".join(contact_toml(o.address, o.role, keys[o.address]) for o in others)
            targets = [o.address for o in others if (o.role == "door") != (unit.role == "door")]
            password = files.passwords[unit.address]
            text = config_text(unit, site, settings.port, password, contacts, targets)
            path = directory / unit.address / "callbox.toml"
            text = text.replace("{state}", str(directory / unit.address))
            config = await asyncio.to_thread(write_unit_config, path, text)
            running.config_paths[unit.address] = path
            app = DeviceApp(config)
            running.apps[unit.address] = app
            await app.start()
        for app in running.apps.values():
            endpoint = app.endpoint
            assert endpoint is not None
            for other in running.apps:
                if other != app.config.address:
                    await endpoint.signaling.wait_presence(other, True, timeout=PRESENCE_TIMEOUT_S)
    except BaseException:
        await running.close()
        raise
    return running


def write_unit_config(path: Path, text: str) -> CallboxConfig:
    """Write a unit's callbox.toml and load it back (blocking: run it in a thread)."""
    path.write_text(text)
    return load_config(path)
