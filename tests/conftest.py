"""Fixtures: endpoints on simulated boards, talking through a real mosquitto or an in-memory broker.

The mosquitto is on a free loopback port; the in-memory broker is used where a test directory says
so (``site_broker``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from gpiozero.threads import GPIOThread
from harness.simsite import EndpointSpec, SimSite, start_site
from memory_broker import MemoryBroker
from support import Certificate, MakeSite, self_signed_certificate

from device.simulator import Simulator, start_simulator


@pytest.fixture(autouse=True)
def _no_leaked_threads() -> Iterator[None]:
    """Fail a test that leaves a peer connection open or a GPIO device unclosed.

    A decoder thread would keep the process from exiting; a gpiozero blink thread or one
    of ours (relay watchdog, proximity poller) means a device was not closed: a leak on
    a device too.
    """
    before = set(threading.enumerate())
    yield
    new = set(threading.enumerate()) - before
    for thread in new:
        if _is_gpio(thread):
            thread.join(timeout=1.0)  # a cancelled timer may still be on its way out
    leaked = [t.name for t in new if t.is_alive() and (t.name.endswith("-decoder") or _is_gpio(t))]
    assert not leaked, f"threads still running after the test: {leaked}"


def _is_gpio(thread: threading.Thread) -> bool:
    return isinstance(thread, GPIOThread) or thread.name.startswith("callbox-")


@pytest.fixture(autouse=True)
def _quiet_libraries() -> None:
    logging.getLogger("aioice").setLevel(logging.WARNING)
    logging.getLogger("aiortc").setLevel(logging.WARNING)


SITE_BROKERS = ("mosquitto", "memory")


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``site_broker`` marker."""
    config.addinivalue_line(
        "markers",
        "site_broker(kind): what carries make_site's signaling, 'mosquitto' (default) or "
        "'memory' (tests/memory_broker.py)",
    )


@pytest.fixture
def site_broker(request: pytest.FixtureRequest) -> str:
    """What carries the signaling of ``make_site``'s sites: "mosquitto" or "memory".

    "mosquitto" is a real broker on loopback, "memory" is tests/memory_broker.py. Modules about the
    call state machine, which need routing but not the broker itself, say ``pytestmark =
    pytest.mark.site_broker("memory")``.
    """
    marker = request.node.get_closest_marker("site_broker")
    kind = str(marker.args[0]) if marker is not None else "mosquitto"
    assert kind in SITE_BROKERS, f"site_broker({kind!r}): not one of {SITE_BROKERS}"
    return kind


@pytest.fixture
async def make_site(tmp_path: Path, site_broker: str) -> AsyncIterator[MakeSite]:
    """Start sites from endpoint specs; they are closed at the end of the test.

    Usage: ``await make_site(EndpointSpec("door", role="door"), ...)``.
    """
    sites: list[SimSite] = []

    async def make(*specs: EndpointSpec, **options: Any) -> SimSite:
        if site_broker == "memory":
            options.setdefault("transports", MemoryBroker().transport)
        site = await start_site(tmp_path / f"site{len(sites)}", list(specs), **options)
        sites.append(site)
        return site

    yield make
    for site in sites:
        await site.close()


@pytest.fixture
async def door_and_indoor(make_site: MakeSite) -> SimSite:
    """A door station (440 Hz microphone) and one indoor unit (660 Hz microphone)."""
    return await make_site(
        EndpointSpec("door", role="door", name="Front door", tone_hz=440.0),
        EndpointSpec("indoor1", role="indoor", name="Flat 1", tone_hz=660.0),
    )


@pytest.fixture
async def simulator(tmp_path: Path) -> AsyncIterator[Simulator]:
    """The interactive simulator of ``callbox demo`` on a free loopback port."""
    sim = await start_simulator(tmp_path / "sim")
    try:
        yield sim
    finally:
        await sim.close()


@pytest.fixture
def certificate(tmp_path: Path) -> Certificate:
    """A self-signed certificate for 127.0.0.1 and localhost (a CA of its own)."""
    return self_signed_certificate(tmp_path)
