"""The interactive simulator of ``callbox demo``: a whole site on one local page.

It starts what ``device.simulator._devicesite`` starts for the scripted demo (a real mosquitto on
loopback, a door station "door" and an indoor unit "flat", each built from its own
``callbox.toml`` as ``callbox run`` builds it, on simulated boards whose GPIO pins are
gpiozero MockFactory pins) and serves ``web/simulator/`` on 127.0.0.1: both units side by
side with their screens, buttons, hook switch, proximity sensor, LEDs, door relay, speaker
and microphone levels and call status. The page's controls drive the pins
(``device.simulator._state``); the server is ``device.simulator._http``.

The door is an entrance panel too (``device.simulator._panel``): a bell "flat1" with dial code 1, a
keypad, a Wiegand card reader "entrance", ``[access]`` with one resident's code and card
(``DEMO_CODE``, ``DEMO_CARD``), a door contact and a tamper switch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from device.simulator._devicesite import IntercomSite, Unit, start_intercom_site
from device.simulator._http import SimulatorServer
from device.simulator._panel import DEMO_CARD, DEMO_CODE, enroll_demo_resident, panel_toml
from device.simulator._phone import PHONE, SimPhone, phone_page_built
from device.simulator._state import SimulatorControls

_log = logging.getLogger(__name__)

DOOR = "door"
FLAT = "flat"
SITE = "demo"


@dataclass
class Simulator:
    """A running simulator: the site, the controls the page uses, the page's server."""

    site: IntercomSite
    controls: SimulatorControls
    server: SimulatorServer
    phone: SimPhone | None = None

    @property
    def url(self) -> str:
        """The page, e.g. ``http://127.0.0.1:8080/``."""
        return self.server.url

    async def close(self) -> None:
        """Stop the page's server, the phone's page, then the apps and the broker.

        Requests in flight to the page's server finish.
        """
        try:
            await asyncio.to_thread(self.server.close)
            if self.phone is not None:
                await self.phone.close()
        finally:
            await self.site.close()


async def start_simulator(
    directory: Path, *, host: str = "127.0.0.1", port: int = 0, phone: bool = True
) -> Simulator:
    """Start the site in ``directory`` (configs, keys, broker files) and serve the page.

    ``port`` 0 takes a free one. ``phone``: add the browser phone of ``web/`` when its page
    is built. Raises SimulatorServerError when the page cannot be served, and whatever the
    site's start raises (nothing stays running either way).
    """
    with_phone = phone and await asyncio.to_thread(phone_page_built)
    await asyncio.to_thread(enroll_demo_resident, directory / DOOR)  # its state_dir
    site = await start_intercom_site(
        directory,
        [Unit(DOOR, "door", extra_toml=panel_toml(FLAT)), Unit(FLAT, "indoor")],
        site=SITE,
        accounts=(PHONE,) if with_phone else (),
        websockets=with_phone,
    )
    sim_phone: SimPhone | None = None
    try:
        if with_phone:
            sim_phone = SimPhone(site, DOOR, FLAT)
        controls = SimulatorControls(site.apps, phone=sim_phone)
        server = SimulatorServer(controls, asyncio.get_running_loop(), host=host, port=port)
    except BaseException:
        if sim_phone is not None:
            await sim_phone.close()
        await site.close()
        raise
    return Simulator(site, controls, server, sim_phone)


async def run_simulator(
    *, host: str = "127.0.0.1", port: int = 0, echo: Callable[[str], None] = print
) -> None:
    """``callbox demo``: start the simulator, say where it is, run until SIGINT or SIGTERM."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    with tempfile.TemporaryDirectory(prefix="callbox-sim-") as directory:
        echo(
            "starting a broker, a door station and an indoor unit "
            "(simulated boards, GPIO on gpiozero mock pins)"
        )
        simulator = await start_simulator(Path(directory), host=host, port=port)
        try:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, stop.set)
            echo(f"simulator: {simulator.url}")
            if simulator.phone is not None:
                echo(
                    "browser phone (optional; it rings with the indoor unit once opened): "
                    f"{simulator.phone.url}"
                )
            echo(
                "open it in a browser: press the doorbell, answer, open the door, hang up. "
                "Ctrl-C stops it; `callbox demo --scripted` runs one call without a browser."
            )
            echo(
                f"entrance panel: dial 1# for flat 1; resident code *{DEMO_CODE}#, "
                f"card {DEMO_CARD} at the reader 'entrance'"
            )
            await stop.wait()
            echo("stopping the simulator")
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(ValueError, RuntimeError):
                    loop.remove_signal_handler(signum)
            await simulator.close()
