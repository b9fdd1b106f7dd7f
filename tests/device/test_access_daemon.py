"""The entrance in a running door station: a reload switches it on, keys open the door.

``[access]`` is switched on by a reload, a code is added while the daemon runs (as the CLI
does), and the keys become one relay pulse through the door opener.

The sim board has no keypad yet (the HAL part of issue 19 adds one): the test hands the
keys to the door station's `Entrance`, the keypad's callback, as a keypad would.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from device.config import ConfigStore, load_config
from device.simulator import IntercomSite, Unit, start_intercom_site
from hal.io_devices import SIM_PINS
from services.access import AccessStore, EntryKind
from services.access.enroll import Enrollment, add_entry


@pytest.fixture
async def intercom(tmp_path: Path) -> AsyncIterator[IntercomSite]:
    site = await start_intercom_site(tmp_path, [Unit("door", "door"), Unit("flat", "indoor")])
    yield site
    await site.close()


async def wait_until(predicate: Callable[[], object], what: str, timeout: float = 10.0) -> None:
    """Poll ``predicate`` (state without an event of its own) until it holds, with a deadline."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def test_access_switched_on_by_reload_opens_the_door_for_a_code(
    intercom: IntercomSite,
) -> None:
    door = intercom["door"]
    assert door.endpoint is not None and door.endpoint.entrance is None, "off: no entrance"
    store = ConfigStore(intercom.config_paths["door"])
    await asyncio.to_thread(store.set, "access.enabled", "true")
    changed = await door.apply(await asyncio.to_thread(load_config, store.path))
    assert changed == ["access"]
    await wait_until(lambda: door.pending_restart == [], "the door's devices rebuilt")
    endpoint = door.endpoint
    assert endpoint is not None and endpoint.entrance is not None
    state_dir = Path(door.config.state_dir)
    new = Enrollment(EntryKind.PIN, "Smith", "2580", flat="12")
    await asyncio.to_thread(add_entry, AccessStore(state_dir), new)  # while it runs

    relay = intercom.pin("door", SIM_PINS["relay"])
    relay.clear_states()
    for key in "*2580#":
        endpoint.entrance.entrance.key_pressed(key)
    await wait_until(lambda: any(s.state for s in relay.states), "the relay to pulse")
    record = endpoint.service.opener.records[-1]  # type: ignore[attr-defined]
    assert (record.requester, record.opened) == ("code:Smith (flat 12)", True)
    speaker = endpoint.board.speakers["speaker"]
    await wait_until(lambda: speaker.frames_played > 0, "the granted tone")  # type: ignore[attr-defined]
    status = door.status()["access"]
    assert status["enabled"] and status["entries"] == 1
    assert status["last_attempts"][-1]["granted"] is True
