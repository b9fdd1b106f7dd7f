"""The simulator's HTTP API without a browser: state, a press that rings, clear refusals.

And the door's entrance panel through the same API: the keypad (the entry shown as dots),
a dialled bell ringing the flat, a resident's card opening the door and stopping the ring,
the door contact and tamper switches raising alarms at both units.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import socket
import sys
import urllib.error
import urllib.request
from typing import Any

import pytest
from support import need, wait_for

from device.phone._pairing import parse_pairing_url
from device.simulator import DEMO_CARD, DEMO_CODE
from device.simulator._phone import PHONE, phone_page_built
from device.simulator._simulator import DOOR, FLAT, Simulator
from hal.io_devices import SIM_PINS
from hal.leds import LedPattern
from services.callapi import DOOR_OPENED, CallStatus
from services.signaling.broker import free_port


def _request(
    url: str, body: bytes | None = None, content_type: str = "application/json"
) -> tuple[int, str, bytes]:
    """(status, content type, body) of a GET, or a POST when ``body`` is given."""
    request = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET")
    if body is not None:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], err.read()


async def request(
    sim: Simulator, path: str, body: Any = None, *, raw: bytes | None = None, **kwargs: str
) -> tuple[int, Any]:
    """Ask the simulator from another thread (its server hands the work to this loop)."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    status, content_type, payload = await asyncio.to_thread(
        _request, sim.url.rstrip("/") + path, data, **kwargs
    )
    if content_type == "application/json":
        return status, json.loads(payload)
    return status, payload


async def test_state_lists_both_units_idle(simulator: Simulator) -> None:
    status, state = await request(simulator, "/api/state")
    assert status == 200
    door, flat = state["units"][DOOR], state["units"][FLAT]
    assert (door["role"], flat["role"]) == ("door", "indoor")
    assert door["call"] is None and flat["call"] is None
    assert door["relay"] == {"active": False, "pulses": 0, "pulse_ms": 300, "pin": "GPIO24"}
    assert door["screen"]["kind"] == "none"  # no display, no call: camera off
    assert door["leds"]["status"]["pattern"] == "idle"
    assert flat["inputs"] == {
        "off_hook": False,
        "hook_pressed": False,
        "near": False,
        "sensor_near": False,
    }
    assert set(flat["audio"]) == {"speaker", "handset", "microphone-main"}
    status, page = await request(simulator, "/")
    assert status == 200 and b'id="door-doorbell"' in page


async def test_a_press_drives_the_pin_and_rings_the_flat(simulator: Simulator) -> None:
    pin = simulator.site.pin(DOOR, SIM_PINS["doorbell"])
    edges = len(pin.states)
    status, answer = await request(simulator, "/api/press", {"unit": DOOR, "button": "doorbell"})
    assert (status, answer) == (200, {"ok": True})
    pressed = [s for s in pin.states[edges:]]
    assert [s.state for s in pressed] == [False, True]  # low (pressed), then released
    assert pressed[1].timestamp >= 0.1  # held for longer than the 50 ms minimum
    flat = simulator.site[FLAT].endpoint
    assert flat is not None
    # the call is the flat's active call from the invite on, and INCOMING once it rings
    await wait_for(
        lambda: (
            flat.calls.active_call is not None
            and flat.calls.active_call.status == CallStatus.INCOMING
        ),
        "the flat to ring",
    )

    async def flat_state() -> dict[str, Any]:
        return (await request(simulator, "/api/state"))[1]["units"][FLAT]  # type: ignore[no-any-return]

    state = await flat_state()
    assert state["call"]["status"] == "INCOMING" and state["call"]["peer"] == DOOR
    status, _ = await request(
        simulator, "/api/set", {"unit": FLAT, "input": "hook", "active": True}
    )
    assert status == 200
    await wait_for(
        lambda: flat.calls.active_call is not None and flat.calls.active_call.is_answered(),
        "the answer",
    )
    assert (await flat_state())["inputs"]["off_hook"] is True
    door = simulator.site[DOOR].endpoint
    assert door is not None
    status, picture = await request(simulator, f"/api/{DOOR}/screen.jpg")
    assert status == 200 and picture[:2] == b"\xff\xd8"  # the door camera, as a JPEG
    await request(simulator, "/api/set", {"unit": FLAT, "input": "hook", "active": False})
    await wait_for(lambda: not door.calls.is_call_in_progress(), "the door to be idle")


async def unit_state(sim: Simulator, unit: str) -> dict[str, Any]:
    """``unit`` as the page sees it."""
    status, state = await request(sim, "/api/state")
    assert status == 200
    return state["units"][unit]  # type: ignore[no-any-return]


async def test_the_door_shows_its_entrance_panel_and_the_entry_as_dots(
    simulator: Simulator,
) -> None:
    door = await unit_state(simulator, DOOR)
    panel = door["panel"]
    assert panel["keypad"] == "keypad" and panel["card_readers"] == ["entrance"]
    assert {"name": "flat1", "label": "Flat 1 - Demo", "code": "1"} in panel["bells"]
    assert (panel["door_open"], panel["tampered"], panel["entry"]) == (False, False, "")
    assert panel["access"]["enabled"] is True and panel["access"]["entries"] == 2
    assert door["alarms"] == [] and (await unit_state(simulator, FLAT))["panel"] is None

    status, _ = await request(simulator, "/api/keypad", {"unit": DOOR, "keys": "*25"})
    assert status == 200
    door = await unit_state(simulator, DOOR)
    assert door["panel"]["entry"] == "*••", "what a display shows: never the digits"
    await request(simulator, "/api/keypad", {"unit": DOOR, "keys": "81#"})  # *2581#: wrong
    await wait_for_state(simulator, DOOR, lambda s: s["panel"]["access"]["last_attempts"])
    door = await unit_state(simulator, DOOR)
    (attempt,) = door["panel"]["access"]["last_attempts"]
    assert (attempt["kind"], attempt["granted"], door["panel"]["entry"]) == ("code", False, "")
    assert "2581" not in json.dumps(door), "the code typed is nowhere in the state"
    assert door["relay"]["pulses"] == 0


async def wait_for_state(
    sim: Simulator, unit: str, predicate: Any, what: str = "the state"
) -> dict[str, Any]:
    """Poll ``/api/state`` (as the page does) until ``predicate(unit's state)`` holds."""
    states: list[dict[str, Any]] = []

    async def poll() -> None:
        states.append(await unit_state(sim, unit))

    async with asyncio.timeout(10):
        await poll()
        while not predicate(states[-1]):
            await poll()
    return states[-1]


async def test_a_dialled_bell_rings_the_flat_and_the_residents_card_opens_the_door(
    simulator: Simulator,
) -> None:
    status, _ = await request(simulator, "/api/keypad", {"unit": DOOR, "keys": "1#"})
    assert status == 200
    flat = await wait_for_state(
        simulator, FLAT, lambda s: s["call"] and s["call"]["status"] == "INCOMING", "ringing"
    )
    bell = {"name": "flat1", "label": "Flat 1 - Demo", "via": "code"}
    assert flat["call"]["bell"] == bell, "the flat shows which bell rang"
    assert (await unit_state(simulator, DOOR))["call"]["bell"] == bell
    endpoint = simulator.site[FLAT].endpoint
    assert endpoint is not None and endpoint.calls.active_call is not None
    callee = endpoint.calls.active_call

    card = {"unit": DOOR, "reader": "entrance", "card": DEMO_CARD}
    status, _ = await request(simulator, "/api/card", card)
    assert status == 200
    await asyncio.wait_for(callee.ended.wait(), 10)
    assert (callee.status, callee.end_reason) == (CallStatus.CANCEL, DOOR_OPENED)
    door = await wait_for_state(
        simulator, DOOR, lambda s: s["relay"]["pulses"] == 1 and not s["relay"]["active"], "pulse"
    )
    attempt = door["panel"]["access"]["last_attempts"][-1]
    assert (attempt["kind"], attempt["granted"], attempt["who"]) == (
        "card",
        True,
        "Demo resident (flat 1)",
    )
    # the resident's code opens too, once the pulse is over (the opener's limit: 6 a minute)
    await request(simulator, "/api/keypad", {"unit": DOOR, "keys": f"*{DEMO_CODE}#"})
    await wait_for_state(simulator, DOOR, lambda s: s["relay"]["pulses"] == 2, "a second pulse")


async def test_the_door_contact_and_tamper_switches_raise_alarms_at_both_units(
    simulator: Simulator,
) -> None:
    def kinds(state: dict[str, Any]) -> set[str]:
        return {alarm["kind"] for alarm in state["alarms"]}

    body = {"unit": DOOR, "input": "tamper", "active": True}
    assert (await request(simulator, "/api/set", body))[0] == 200
    door = await wait_for_state(simulator, DOOR, lambda s: "tamper" in kinds(s), "tamper")
    assert door["panel"]["tampered"] is True
    await wait_for_state(simulator, FLAT, lambda s: "tamper" in kinds(s), "tamper at the flat")
    body = {"unit": DOOR, "input": "door_contact", "active": True}  # nobody released it
    assert (await request(simulator, "/api/set", body))[0] == 200
    door = await wait_for_state(
        simulator, DOOR, lambda s: "door_forced_open" in kinds(s), "forced open"
    )
    assert door["panel"]["door_open"] is True
    for name in ("tamper", "door_contact"):
        await request(simulator, "/api/set", {"unit": DOOR, "input": name, "active": False})
    await wait_for_state(simulator, FLAT, lambda s: not kinds(s), "the alarms cleared")


async def test_a_refused_code_flashes_the_doors_led_then_idle(simulator: Simulator) -> None:
    endpoint = simulator.site[DOOR].endpoint
    assert endpoint is not None
    led = endpoint.board.io.led()
    seen: list[LedPattern] = []
    original = led.set_pattern

    def recording(pattern: LedPattern) -> None:
        seen.append(pattern)
        original(pattern)

    led.set_pattern = recording  # type: ignore[method-assign]
    await request(simulator, "/api/keypad", {"unit": DOOR, "keys": "*1111#"})
    await wait_for_state(simulator, DOOR, lambda s: LedPattern.REFUSED in seen, "the flash")
    door = await wait_for_state(
        simulator, DOOR, lambda s: s["leds"]["status"]["pattern"] == "idle", "idle again"
    )
    assert seen == [LedPattern.REFUSED, LedPattern.IDLE] and door["call"] is None


@pytest.mark.parametrize(
    ("path", "body", "status", "reason"),
    [
        ("/api/press", {"unit": "garage", "button": "doorbell"}, 400, "unknown unit 'garage'"),
        ("/api/press", {"unit": FLAT, "button": "bell"}, 400, "unknown button 'bell'"),
        ("/api/press", {"unit": FLAT}, 400, "missing 'button'"),
        ("/api/press", {"unit": FLAT, "button": "mute", "x": 1}, 400, "unknown 'x'"),
        ("/api/press", [1, 2], 400, "must be a JSON object"),
        ("/api/set", {"unit": FLAT, "input": "hook", "active": "yes"}, 400, "'active' must be"),
        ("/api/set", {"unit": FLAT, "input": "volume", "active": True}, 400, "unknown input"),
        ("/api/touch", {"unit": DOOR, "x": 1, "y": 1}, 400, "no touch screen"),
        ("/api/reboot", {}, 404, "no such API: POST /api/reboot"),
        ("/api/keypad", {"unit": DOOR, "keys": "2580x#"}, 400, "no key 'x' on the keypad"),
        ("/api/keypad", {"unit": DOOR, "keys": ""}, 400, "1 to 16 keys"),
        ("/api/keypad", {"unit": DOOR, "keys": "1" * 17}, 400, "1 to 16 keys"),
        ("/api/keypad", {"unit": DOOR, "keys": 12}, 400, "got a int"),
        ("/api/keypad", {"unit": FLAT, "keys": "1#"}, 400, "'flat' has no keypad"),
        ("/api/card", {"unit": DOOR, "reader": "back", "card": DEMO_CARD}, 400, "'entrance'"),
        ("/api/card", {"unit": DOOR, "reader": "entrance", "card": "12"}, 400, "e.g. 'wiegand"),
        (
            "/api/card",
            {"unit": DOOR, "reader": "entrance", "card": "wiegand26:123456"},
            400,
            "malformed",
        ),
        ("/api/card", {"unit": DOOR, "reader": "entrance", "card": "visa:1"}, 400, "'visa'"),
        ("/api/card", {"unit": FLAT, "reader": "entrance", "card": DEMO_CARD}, 400, "no card"),
        ("/api/set", {"unit": DOOR, "input": "tamper", "active": 1}, 400, "'active' must be"),
    ],
)
async def test_bad_requests_are_refused_with_the_reason(
    simulator: Simulator,
    path: str,
    body: Any,
    status: int,
    reason: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    got, answer = await request(simulator, path, body)
    assert got == status
    assert reason in answer["error"]
    assert "2580" not in answer["error"], "a bad key names itself, not the code around it"
    with caplog.at_level(logging.WARNING, logger="device.simulator._http"):
        await request(simulator, path, body)
    assert answer["error"] in caplog.text, "the refusal is logged"


async def test_not_json_and_not_declared_json_are_refused(simulator: Simulator) -> None:
    status, answer = await request(simulator, "/api/press", raw=b"{unit: door")
    assert status == 400 and answer["error"].startswith("the body is not JSON")
    status, answer = await request(
        simulator, "/api/press", {"unit": DOOR, "button": "doorbell"}, content_type="text/plain"
    )
    assert status == 415 and "application/json" in answer["error"]
    status, answer = await request(simulator, "/api/garage/screen.jpg")
    assert status == 400 and "unknown unit 'garage'" in answer["error"]


CALLBOX = [sys.executable, "-m", "device.cli"]


async def test_callbox_demo_serves_the_page_until_sigterm() -> None:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        *CALLBOX, "demo", "--port", str(port), stdout=asyncio.subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        lines: list[str] = []
        async with asyncio.timeout(60):
            while not any(line.startswith("simulator: ") for line in lines):
                line = (await process.stdout.readline()).decode()
                assert line, f"callbox demo ended early: {lines}"
                lines.append(line)
        assert f"simulator: http://127.0.0.1:{port}/\n" in lines
        status, _, body = await asyncio.to_thread(_request, f"http://127.0.0.1:{port}/api/state")
        assert status == 200 and set(json.loads(body)["units"]) == {DOOR, FLAT}
        process.send_signal(signal.SIGTERM)
        rest, _ = await asyncio.wait_for(process.communicate(), 30)
        assert process.returncode == 0
        assert "stopping the simulator" in rest.decode()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_callbox_demo_says_when_its_port_is_taken() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = await asyncio.create_subprocess_exec(
            *CALLBOX, "demo", "--port", str(port), stderr=asyncio.subprocess.PIPE
        )
        _, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in stderr.decode()


async def test_the_browser_phone_gets_a_pairing_link_naming_both_units(
    simulator: Simulator,
) -> None:
    need(await asyncio.to_thread(phone_page_built), "the built page web/dist/main.js")
    assert simulator.phone is not None
    status, state = await request(simulator, "/api/state")
    assert status == 200 and state["phone"]["paired"] is False
    pairing = parse_pairing_url(state["phone"]["url"])
    assert (pairing.site, pairing.address, pairing.username) == ("demo", PHONE, PHONE)
    assert pairing.broker == f"ws://127.0.0.1:{simulator.site.settings.websockets_port}"
    fingerprints = {peer.address: peer.fingerprint for peer in pairing.peers}
    for unit in (DOOR, FLAT):
        endpoint = simulator.site[unit].endpoint
        assert endpoint is not None
        assert fingerprints[unit] == endpoint.signaling.identity.public_keys.fingerprint()
