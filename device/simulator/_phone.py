"""The browser phone of ``web/`` as the simulator's third endpoint (when the page is built).

The simulator gives the phone a broker login (the site's mosquitto has a WebSocket listener
for it), serves ``web/`` with :class:`device.phone.WebServer` and prints the phone's
pairing link, as ``callbox keys pair-web`` would. A browser that opens the link makes the
phone's keys and advertises them in its profile; the simulator then does what the site's
administrator does with ``callbox keys trust``: the door station pins those keys (with the
unlock and monitor rights) and rings the phone together with the indoor unit.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from pathlib import Path

from device.phone import Pairing, PairingPeer, WebServer
from device.simulator._devicesite import IntercomSite
from services.signaling.contacts import Contact, Right

_log = logging.getLogger(__name__)

PHONE = "phone"
WEB_ROOT = Path(__file__).resolve().parents[2] / "web"
WATCH_S = 0.5
"""How often the door station's contact book is looked at for the phone's keys."""


def phone_page_built(web_root: Path = WEB_ROOT) -> bool:
    """Whether the browser phone's page is built (``web/dist/main.js``, made by ``make``)."""
    return (web_root / "dist" / "main.js").is_file() and (web_root / "index.html").is_file()


class SimPhone:
    """The phone's page server, its pairing and the task that trusts its keys once seen."""

    def __init__(self, site: IntercomSite, door: str, indoor: str, web_root: Path = WEB_ROOT):
        """Serve ``web_root`` on a free loopback port; the site needs a WebSocket listener."""
        ws_port = site.settings.websockets_port
        if ws_port is None:
            raise ValueError("the site's broker has no WebSocket listener for the phone")
        peers = []
        for address in (door, indoor):
            app = site[address]
            endpoint = app.endpoint
            assert endpoint is not None
            keys = endpoint.signaling.identity.public_keys
            peers.append(PairingPeer(address, app.config.name, app.config.role, keys.fingerprint()))
        self.pairing = Pairing(
            site=site.settings.site,
            address=PHONE,
            name="Phone",
            broker=f"ws://127.0.0.1:{ws_port}",
            username=PHONE,
            password=site.broker.files.passwords[PHONE],
            peers=tuple(peers),
        )
        self._site = site
        self._door = door
        self.paired = False
        self.server = WebServer(web_root)
        self._task = asyncio.get_running_loop().create_task(self._adopt(), name="sim-phone")

    @property
    def url(self) -> str:
        """The pairing link to open in a browser on this machine."""
        return self.pairing.url(self.server.url)

    async def _adopt(self) -> None:
        """Wait for the phone's profile at the door, then pin its keys and ring it too."""
        while True:
            endpoint = self._site[self._door].endpoint
            if endpoint is not None:
                # not a contact yet: the door follows its profile once looked up
                await endpoint.signaling.look_up(PHONE, timeout=WATCH_S)
                keys = endpoint.signaling.contacts.advertised.get(PHONE)
                if keys is not None:
                    break
            else:
                await asyncio.sleep(WATCH_S)  # the door is restarting: look again
        endpoint.signaling.contacts.add(
            Contact(
                address=PHONE,
                keys=keys,
                name="Phone",
                role="web",
                rights=frozenset({Right.UNLOCK, Right.MONITOR}),
            )
        )
        service = endpoint.service
        targets = (*service.settings.targets, PHONE)
        service.apply_settings(dataclasses.replace(service.settings, targets=targets))
        self.paired = True
        _log.info("simulator: the browser phone is paired (key %s)", keys.fingerprint())

    async def close(self) -> None:
        """Stop watching and serving the page."""
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await asyncio.to_thread(self.server.close)
