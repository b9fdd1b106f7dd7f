"""The Home Assistant link of ``callbox run`` (``[homeassistant]``): built, attached, reloaded.

`HomeAssistantPart` owns the bridge across rebuilds of the endpoint: the link to HA's
broker stays up while the call service is rebuilt, and is re-attached to the new one. A
change to ``[homeassistant]`` (a live key) restarts only the link; calls go on.
"""

from __future__ import annotations

import asyncio
import logging
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from device.config import CallboxConfig
from services.homeassistant import HaSettings, HomeAssistantBridge, UnitInfo
from services.intercom.service import IntercomService

_log = logging.getLogger(__name__)


def _sw_version() -> str:
    try:
        return version("callbox")
    except PackageNotFoundError:
        return "unknown"


def homeassistant_bridge(config: CallboxConfig) -> HomeAssistantBridge | None:
    """The bridge ``[homeassistant]`` asks for (not started), or None when it is off.

    Blocking (reads a password file): call `homeassistant_settings` in a thread from async
    code. ConfigError naming the key when the password file cannot be read.
    """
    found = homeassistant_settings(config)
    return None if found is None else HomeAssistantBridge(*found)


def homeassistant_settings(config: CallboxConfig) -> tuple[HaSettings, UnitInfo] | None:
    """What the bridge needs from ``config`` (None: off); blocking, see above."""
    ha = config.homeassistant
    if not ha.enabled:
        return None
    settings = HaSettings(
        host=ha.host,
        port=ha.port,
        tls=ha.tls,
        ca_file=Path(ha.tls_ca) if ha.tls_ca else None,
        username=ha.username,
        password=config.homeassistant_password(),
        discovery_prefix=ha.discovery_prefix,
        node_id=ha.node_id or config.address,
        door_release=ha.door_release and config.role == "door",
    )
    unit = UnitInfo(
        address=config.address, name=config.name, role=config.role, sw_version=_sw_version()
    )
    return settings, unit


class HomeAssistantPart:
    """The running bridge (or none), the service it watches, and its restarts on reload."""

    def __init__(self) -> None:
        self.bridge: HomeAssistantBridge | None = None
        self._service: IntercomService | None = None
        self._lock = asyncio.Lock()

    async def start(self, config: CallboxConfig) -> None:
        """Start the bridge ``config`` asks for (nothing when it is off)."""
        async with self._lock:
            found = await asyncio.to_thread(homeassistant_settings, config)
            if found is None:
                return
            bridge = HomeAssistantBridge(*found)
            await bridge.start()
            self.bridge = bridge
            if self._service is not None:
                bridge.attach(self._service)

    def attach(self, service: IntercomService) -> None:
        """Watch ``service``, the call service running now."""
        self._service = service
        if self.bridge is not None:
            self.bridge.attach(service)

    def detach(self) -> None:
        """The call service is going away."""
        self._service = None
        if self.bridge is not None:
            self.bridge.detach()

    async def restart(self, config: CallboxConfig) -> None:
        """Apply a changed ``[homeassistant]``: a new link; a failure is logged, calls go on."""
        await self.close()
        try:
            await self.start(config)
        except Exception:  # noqa: BLE001 - a bad HA setting must not stop the intercom
            _log.exception("Home Assistant link not restarted")
        else:
            _log.info("Home Assistant link %s", "restarted" if self.bridge else "off")

    async def close(self) -> None:
        """Stop the bridge (the unit says offline on HA's broker); idempotent."""
        async with self._lock:
            bridge, self.bridge = self.bridge, None
            if bridge is not None:
                await bridge.close()
