"""`callbox run` under a service manager: READY, status, SIGHUP reload, SIGTERM.

The daemon is a real process on the simulated board, logged in to a real mosquitto; the
test plays systemd (the notify socket) and the administrator (the ``callbox`` CLI).
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from daemon_helpers import DaemonSite, callbox, start_daemon_site

from device.config import ConfigStore, load_config
from device.daemon import ControlError, request
from device.simulator import IntercomSite, Unit, start_intercom_site
from hal.io_devices import SIM_PINS
from services.callapi import Call, CallStatus
from services.intercom.calllog import CallLog, CallRecord
from services.media.aec import DEFAULTS_DETAIL, TUNED_DETAIL

MIN_PRESS_S = 0.05  # the default minimum press


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[DaemonSite]:
    site = await start_daemon_site(tmp_path)
    yield site
    await site.close()


async def test_ready_then_status_shows_the_endpoint_on_the_broker(site: DaemonSite) -> None:
    await site.start_daemon(env={"WATCHDOG_USEC": "400000"})
    assert await site.notify.next() == {"WATCHDOG": "1"}, "the watchdog is fed"

    result = await callbox("status", "--json", "--control", site.control_path)
    assert result.code == 0, result.stderr
    status = json.loads(result.stdout)
    assert (status["role"], status["address"], status["name"]) == ("door", "door", "Front door")
    assert status["broker"]["connected"] is True
    assert status["active_call"] is None
    assert status["hardware"]["relay_active"] is False
    assert status["echo_canceller"] == "webrtc-aec3", "on by default, AEC3 preferred"
    assert status["echo_canceller_detail"] in (TUNED_DETAIL, DEFAULTS_DETAIL)

    text = await callbox("status", env={"CALLBOX_CONTROL": str(site.control_path)})
    assert text.code == 0, text.stderr
    assert "Front door (door), door in site test" in text.stdout
    assert f"broker 127.0.0.1:{site.settings.port}: connected" in text.stdout
    assert "call: none" in text.stdout
    assert f"echo canceller: webrtc-aec3 ({status['echo_canceller_detail']})" in text.stdout

    assert await request(site.control_path, "press", {"role": "near"}) == {"pressed": "near"}
    deadline = time.monotonic() + 5.0  # the sensor's 50 ms debounce has no event to wait on
    while not (await request(site.control_path, "status"))["hardware"]["near"]:
        assert time.monotonic() < deadline, "the simulated proximity sensor never read near"
        await asyncio.sleep(0.02)
    with pytest.raises(ControlError, match="no input 'bogus' \\(known: doorbell"):
        await request(site.control_path, "press", {"role": "bogus"})

    # the tamper switch of the sim door: an alarm in status, and a line of `callbox status`
    assert await request(site.control_path, "press", {"role": "tampered"}) == {
        "pressed": "tampered"
    }
    deadline = time.monotonic() + 5.0  # the switch's 50 ms debounce, then the alarm
    while not (await request(site.control_path, "status")).get("alarms"):
        assert time.monotonic() < deadline, "the tamper alarm never showed in status"
        await asyncio.sleep(0.02)
    (alarm,) = (await request(site.control_path, "status"))["alarms"]
    assert (alarm["door"], alarm["kind"]) == ("door", "tamper")
    tampered = await callbox("status", "--control", site.control_path)
    assert "ALARM tamper at door since " in tampered.stdout
    assert "tampered: True" in tampered.stdout
    await request(site.control_path, "press", {"role": "untampered"})

    second = await callbox(
        "run", "--config", site.config_path, "--control", site.control_path,
        "--first-boot", site.directory / "none.toml",
    )  # fmt: skip
    assert second.code == 1
    assert "already running" in second.stderr
    status_after = await callbox("status", "--json", "--control", site.control_path)
    assert json.loads(status_after.stdout)["broker"]["connected"] is True, "first one unharmed"


async def test_status_lists_the_last_calls(site: DaemonSite) -> None:
    await site.start_daemon()
    state = Path((await asyncio.to_thread(load_config, site.config_path)).state_dir)
    log = CallLog(state / "calls.sqlite")
    await log.open()
    now = time.time()
    await log.add(
        CallRecord(
            call_id="c1", peer="flat", peer_name="Flat 1", direction="out", video=True,
            started_at=now - 60, answered_at=now - 55, ended_at=now - 10,
            status="COMPLETE", missed=False,
        )
    )  # fmt: skip
    await log.close()
    result = await callbox("status", "--json", "--control", site.control_path)
    (last,) = json.loads(result.stdout)["last_calls"]
    assert (last["peer"], last["status"], last["duration_s"]) == ("Flat 1", "COMPLETE", 45.0)
    text = await callbox("status", "--control", site.control_path)
    assert "-> Flat 1 COMPLETE" in text.stdout


async def test_sighup_applies_a_good_file_and_refuses_a_broken_one(site: DaemonSite) -> None:
    daemon = await site.start_daemon()

    site.write_config(name="Main entrance")
    daemon.signal(signal.SIGHUP)
    assert "RELOADING" in await site.notify.next()
    assert (await site.notify.next())["READY"] == "1"
    status = await callbox("status", "--json", "--control", site.control_path)
    assert json.loads(status.stdout)["name"] == "Main entrance"

    text = site.config_path.read_text().replace("ring_timeout_s = 30", "ring_timeout_s = -5")
    site.config_path.write_text(text.replace("Main entrance", "Never shown"))
    daemon.signal(signal.SIGHUP)
    assert "RELOADING" in await site.notify.next()
    ready = await site.notify.next()
    assert ready["READY"] == "1" and "refused" in ready["STATUS"]

    log = daemon.log()
    assert f"{site.config_path}: call.ring_timeout_s: must be > 0 (got -5)" in log
    status = await callbox("status", "--json", "--control", site.control_path)
    assert status.code == 0
    assert json.loads(status.stdout)["name"] == "Main entrance", "the old config stays"
    assert daemon.process.returncode is None


async def test_config_set_is_applied_to_the_running_daemon(site: DaemonSite) -> None:
    daemon = await site.start_daemon()
    before = site.config_path.read_bytes()

    ok = await callbox(
        "config", "--config", site.config_path,
        "set", "call.ring_timeout_s", "20", "--control", site.control_path,
    )  # fmt: skip
    assert ok.code == 0, ok.stderr
    assert "applied to the running daemon" in ok.stdout
    assert "RELOADING" in await site.notify.next()
    assert (await site.notify.next())["READY"] == "1"
    assert "ring_timeout_s = 20" in site.config_path.read_text()
    assert (site.config_path.parent / "callbox.toml.bak").read_bytes() == before
    assert "# the door station of the daemon tests" in site.config_path.read_text()
    assert "changed call" in daemon.log()

    after_good = site.config_path.read_bytes()
    bad = await callbox(
        "config", "--config", site.config_path,
        "set", "call.ring_timeout_s", "-1", "--control", site.control_path,
    )  # fmt: skip
    assert bad.code == 2
    assert "call.ring_timeout_s" in bad.stderr and "must be > 0" in bad.stderr
    assert site.config_path.read_bytes() == after_good, "the file is byte for byte the same"
    assert "applied" not in bad.stdout


async def test_sigterm_stops_cleanly_and_removes_the_control_socket(site: DaemonSite) -> None:
    daemon = await site.start_daemon()
    assert site.control_path.exists()

    daemon.signal(signal.SIGTERM)

    assert await site.notify.next() == {"STOPPING": "1"}
    assert await daemon.wait() == 0
    assert not site.control_path.exists()
    assert "Traceback" not in daemon.log()
    gone = await callbox("status", "--control", site.control_path)
    assert gone.code == 3 and "not running" in gone.stderr


# a config change during a call (in-process: the apps of device.simulator) -----------------------


@pytest.fixture
async def intercom(tmp_path: Path) -> AsyncIterator[IntercomSite]:
    site = await start_intercom_site(tmp_path, [Unit("door", "door"), Unit("flat", "indoor")])
    yield site
    await site.close()


async def press(site: IntercomSite, address: str, role: str) -> None:
    """A person pressing a button for twice the minimum press (the sleep is the input)."""
    pin = site.pin(address, SIM_PINS[role])
    pin.drive_low()
    await asyncio.sleep(MIN_PRESS_S * 2)
    pin.drive_high()


async def wait_until(predicate: Callable[[], object], what: str, timeout: float = 10.0) -> None:
    """Poll ``predicate`` (state without an event of its own) until it holds, with a deadline."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def connected_call(site: IntercomSite) -> tuple[Call, Call]:
    """Ring the flat from the door's button and answer with the flat's answer button."""
    await press(site, "door", "doorbell")
    flat, door = site["flat"].endpoint, site["door"].endpoint
    assert flat is not None and door is not None
    await wait_until(lambda: flat.calls.active_call is not None, "the flat to ring")
    await press(site, "flat", "answer")
    flat_call, door_call = flat.calls.active_call, door.calls.active_call
    assert flat_call is not None and door_call is not None
    await wait_until(
        lambda: flat_call.status == door_call.status == CallStatus.CONNECTED, "connected"
    )
    return flat_call, door_call


async def assert_media_flows(*calls: Call) -> None:
    """Fresh video frames arrive on every call (each side sees the other's camera)."""
    for call in calls:
        call.remote_frame.clear()
        await asyncio.wait_for(call.remote_frame.wait(), 10.0)


async def reconfigure(intercom: IntercomSite, address: str, values: dict[str, str]) -> list[str]:
    """Set ``values`` (key -> TOML value) in ``address``'s file and apply it; the changed keys."""
    store = ConfigStore(intercom.config_paths[address])
    for key, value in values.items():
        await asyncio.to_thread(store.set, key, value)  # file I/O: off the event loop
    return await intercom[address].apply(await asyncio.to_thread(load_config, store.path))


async def test_a_live_change_keeps_the_call_and_applies_at_once(intercom: IntercomSite) -> None:
    flat_call, door_call = await connected_call(intercom)
    flat_app = intercom["flat"]

    changed = await reconfigure(
        intercom, "flat", {"call.ring_timeout_s": "20", "dnd.enabled": "true"}
    )

    assert changed == ["call", "dnd"]
    assert flat_app.pending_restart == []
    assert flat_app.endpoint is not None
    assert flat_app.endpoint.calls.active_call is flat_call
    assert flat_call.status == door_call.status == CallStatus.CONNECTED
    await assert_media_flows(flat_call, door_call)
    assert flat_app.endpoint.calls.defaults.ring_timeout_s == 20
    assert flat_app.endpoint.service.settings.dnd.enabled


async def test_a_hardware_change_waits_for_the_call_to_end(intercom: IntercomSite) -> None:
    flat_call, door_call = await connected_call(intercom)
    door_app = intercom["door"]

    changed = await reconfigure(intercom, "door", {"relay.pulse_ms": "500"})

    assert changed == ["relay"]
    assert door_app.pending_restart == ["relay"]
    assert door_app.status()["pending_restart"] == ["relay"]
    await assert_media_flows(flat_call, door_call)
    assert door_call.status == CallStatus.CONNECTED
    old_endpoint = door_app.endpoint
    assert old_endpoint is not None
    old_signaling, old_relay = old_endpoint.signaling, old_endpoint.board.io.relay

    await press(intercom, "flat", "decline")
    await asyncio.wait_for(door_call.ended.wait(), 10.0)
    await wait_until(lambda: door_app.pending_restart == [], "the door's devices rebuilt")
    endpoint = door_app.endpoint
    assert endpoint is not None and endpoint.board.io.relay is not old_relay
    assert endpoint.board.io.relay.pulse_s == 0.5
    assert endpoint.signaling is old_signaling, "a hardware change keeps the broker connection"
    await press(intercom, "door", "door_release")  # the exit button, on the new devices
    await wait_until(lambda: endpoint.board.io.relay.is_active, "the new relay to pulse")
    assert door_call.is_ended() and flat_call.is_ended()


async def test_a_live_change_with_a_hardware_change_applies_at_once(
    intercom: IntercomSite,
) -> None:
    flat_call, door_call = await connected_call(intercom)
    door_app = intercom["door"]

    changed = await reconfigure(
        intercom, "door", {"call.ring_timeout_s": "20", "relay.pulse_ms": "500"}
    )

    assert changed == ["call", "relay"]
    assert door_app.pending_restart == ["relay"]
    assert door_app.endpoint is not None
    assert door_app.endpoint.calls.defaults.ring_timeout_s == 20, "[call] applies at once"
    await press(intercom, "flat", "decline")
    await asyncio.wait_for(door_call.ended.wait(), 10.0)
    await wait_until(lambda: door_app.pending_restart == [], "the door's devices rebuilt")
    endpoint = door_app.endpoint
    assert endpoint is not None and endpoint.board.io.relay.pulse_s == 0.5
    assert endpoint.calls.defaults.ring_timeout_s == 20, "and stays after the rebuild"
    assert flat_call.is_ended()


async def test_an_endpoint_change_waits_for_the_call_then_rebuilds_the_endpoint(
    intercom: IntercomSite,
) -> None:
    flat_call, door_call = await connected_call(intercom)
    flat_app = intercom["flat"]

    changed = await reconfigure(intercom, "flat", {"name": json.dumps("Flat 1, second floor")})

    assert changed == ["name"]
    assert flat_app.pending_restart == ["name"]
    old_endpoint = flat_app.endpoint
    assert old_endpoint is not None and old_endpoint.calls.active_call is flat_call
    await assert_media_flows(flat_call, door_call)

    await press(intercom, "flat", "decline")
    await asyncio.wait_for(flat_call.ended.wait(), 10.0)
    await wait_until(lambda: flat_app.pending_restart == [], "the flat's endpoint rebuilt")
    endpoint = flat_app.endpoint
    assert endpoint is not None and endpoint is not old_endpoint
    assert endpoint.signaling is not old_endpoint.signaling, "a new broker login"
    assert endpoint.calls.name == "Flat 1, second floor"


async def test_a_first_boot_change_leaves_the_running_endpoint_alone(
    intercom: IntercomSite,
) -> None:
    flat_app = intercom["flat"]
    old_endpoint = flat_app.endpoint

    changed = await reconfigure(intercom, "flat", {"system.timezone": json.dumps("Europe/Berlin")})

    assert changed == ["system"]
    assert flat_app.pending_restart == []
    assert flat_app.endpoint is old_endpoint
    assert flat_app.config.system.timezone == "Europe/Berlin"


async def test_a_change_that_cannot_start_falls_back_to_the_running_config(
    intercom: IntercomSite, tmp_path: Path
) -> None:
    flat_app = intercom["flat"]
    old_endpoint, old_state = flat_app.endpoint, flat_app.config.state_dir
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    store = ConfigStore(intercom.config_paths["flat"])

    await asyncio.to_thread(store.set, "state_dir", json.dumps(str(blocker / "state")))  # no keys
    new = await asyncio.to_thread(load_config, store.path)
    assert await flat_app.apply(new) == ["state_dir"]

    await wait_until(
        lambda: flat_app.endpoint not in (None, old_endpoint), "the flat to come back", timeout=10
    )
    assert flat_app.config.state_dir == old_state
    flat = flat_app.endpoint
    assert flat is not None
    await wait_until(lambda: flat.signaling.is_online("door"), "the flat back on the broker")
    calls = await connected_call(intercom)  # rings and answers: the unit works as before
    assert all(call.status == CallStatus.CONNECTED for call in calls)
