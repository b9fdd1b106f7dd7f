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
from blockbuster import BlockBuster, blockbuster_ctx
from gpiozero.threads import GPIOThread
from harness.push_endpoint import PushEndpoint
from harness.push_site import PushSite, start_push_site, vapid_on_disk
from harness.simsite import EndpointSpec, SimSite, start_site
from memory_broker import MemoryBroker
from support import Certificate, MakeSite, self_signed_certificate

from device.simulator import Simulator, start_simulator
from services.push.vapid import VapidKey

# Where callbox may block the event loop: (blocking functions, None = any; the file and the
# function they are called from), each with the reason. Keep it short: blocking work belongs
# in a thread (asyncio.to_thread) or in a back-end's own thread.
MAY_BLOCK: tuple[tuple[tuple[str, ...] | None, str, str], ...] = (
    # Log records go to pytest's capture file here; in production to stderr (journald),
    # which blockbuster exempts.
    (("io.TextIOWrapper.write", "io.BufferedWriter.write"), "logging/__init__.py", "emit"),
    # Start-up: a simulated board writes its sysfs tree (a few small files) once, while the
    # board is built, before it takes calls.
    (None, "hal/board.py", "_sim_sysfs_tree"),
    (None, "hal/backlight.py", "make_sim_backlight_tree"),
    # aiortc's RTCPeerConnection.close() joins its decoder threads on the loop (its code).
    (("threading.Lock.acquire",), "aiortc/rtcrtpreceiver.py", "__stop_decoder"),
    # The simulator's page servers (threads of their own) check their files once, at
    # start-up.
    (None, "device/phone/_webserver.py", "__init__"),
    (None, "device/simulator/_http.py", "__init__"),
    # A test's wait_for() polls its predicate on the loop; what the predicate reads (the
    # call log file, a sim backlight's sysfs file) is the test's own business.
    (None, "tests/support.py", "wait_for"),
    # The UI tests measure where a screen puts its text by rendering it on the loop; the
    # UI itself renders in its worker thread.
    (None, "tests/ui/ui_site.py", "text_box"),
    # Joins of threads that end at once, where the HAL must act synchronously: the door
    # relay releases in a `finally` that may run under cancellation (awaiting a thread
    # there is not safe) and joins its cancelled watchdog Timer; an LED switched off or to
    # another pattern joins gpiozero's blink thread, which an Event wakes.
    (("threading.Lock.acquire",), "hal/relay.py", "_stop_timer"),
    (("threading.Lock.acquire",), "hal/gpio.py", "switch_off_and_close"),
    (("threading.Lock.acquire",), "hal/leds.py", "_show"),
)


@pytest.fixture(autouse=True)
def blockbuster() -> Iterator[BlockBuster]:
    """Fail a test when callbox blocks the event loop (file or socket I/O, sleep, joins).

    As Home Assistant's tests do, with blockbuster; only calls made from hal/, services/ or
    device/ count (what a library or a test's own set-up does is not what this guards).
    """
    with blockbuster_ctx(["hal", "services", "device"]) as bb:
        for functions, filename, caller in MAY_BLOCK:
            for name in functions or bb.functions:
                bb.functions[name].can_block_in(filename, caller)
        yield bb


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
    """Register the ``site_broker`` and ``alone`` markers."""
    config.addinivalue_line(
        "markers",
        "site_broker(kind): what carries make_site's signaling, 'mosquitto' (default) or "
        "'memory' (tests/memory_broker.py)",
    )
    config.addinivalue_line(
        "markers",
        "alone: a test that measures wall-clock timing against a real-time device or network "
        "path, or changes the network namespace the others share; `make test` runs these after "
        "the others, one at a time, on an otherwise idle machine (the rest run in parallel, "
        "pytest-xdist)",
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


# Web Push (tests/push/) -------------------------------------------------------------------------


@pytest.fixture
async def site_key(tmp_path: Path) -> tuple[VapidKey, Path]:
    """A site's VAPID key and its 0600 file."""
    return await vapid_on_disk(tmp_path)


@pytest.fixture
async def push_service(site_key: tuple[VapidKey, Path]) -> AsyncIterator[PushEndpoint]:
    """The local push service (tests/harness/push_endpoint.py), expecting the site's key."""
    endpoint = PushEndpoint(site_key[0].application_server_key)
    await endpoint.start()
    yield endpoint
    await endpoint.close()


@pytest.fixture
async def push_site(
    tmp_path: Path, site_key: tuple[VapidKey, Path], push_service: PushEndpoint
) -> AsyncIterator[PushSite]:
    """A door with Web Push (1 s per push), an indoor unit, the phone and two outsiders."""
    site = await start_push_site(tmp_path / "site", site_key[1], push_service, timeout_s=1.0)
    yield site
    await site.close()
