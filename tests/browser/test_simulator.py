"""The simulator page (``callbox demo``) in Debian's Chromium: a whole doorbell call by clicks.

The simulator runs in-process on a free port: a real mosquitto, a door station and an indoor
unit on simulated boards. Every step is a click on the page, and is checked twice: in the
page (what a person sees) and in the units (the UI's screen, the relay's MockFactory pin).
"""

from __future__ import annotations

import asyncio
import io
import itertools
from pathlib import Path

import av
import numpy as np
from playwright.async_api import Page
from support import need, wait_for

from device.simulator._phone import phone_page_built
from device.simulator._simulator import DOOR, FLAT, Simulator
from device.simulator._state import display_of, ui_of
from hal.io_devices import SIM_PINS

TIMEOUT_S = 15.0
ENDED_SHOW_S = 0.5  # the "ended" screen's stay before idle (4 s on a unit): the same steps
RELAY_PULSE_S = 1.0
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output" / "simulator"


async def wait_page(page: Page, condition: str, what: str) -> None:
    """Wait until the JS expression ``condition`` holds in the page (``$`` = getElementById)."""
    script = (
        f"() => {{ const $ = (i) => document.getElementById(i); return Boolean({condition}); }}"
    )
    try:
        await page.wait_for_function(script, timeout=TIMEOUT_S * 1000, polling=20)
    except Exception as err:
        status = await page.evaluate("() => JSON.stringify(window.simulator.state())")
        raise AssertionError(f"timed out waiting for the page: {what}; state: {status}") from err


def ui_screen(sim: Simulator) -> str | None:
    """The screen the indoor unit's default UI shows now."""
    endpoint = sim.site[FLAT].endpoint
    assert endpoint is not None
    ui = ui_of(endpoint)
    assert ui is not None, "the indoor unit has no default call UI"
    return ui.screen


async def wait_screen(sim: Simulator, page: Page, screen: str) -> None:
    """The UI shows ``screen``, and so do the page's caption and picture."""
    await wait_for(lambda: ui_screen(sim) == screen, f"the {screen} screen", TIMEOUT_S)
    await wait_page(
        page, f"$('flat-screen-name').dataset.screen === '{screen}'", f"{screen} in the page"
    )
    endpoint = sim.site[FLAT].endpoint
    assert endpoint is not None
    display = display_of(endpoint)
    assert display is not None
    shown = display.frames_shown  # the page's picture must be this one or a later one
    await wait_page(
        page, f"Number($('flat-screen').dataset.frames) >= {shown}", f"the {screen} picture"
    )


async def screen_pixels(page: Page) -> np.ndarray:
    """What the page's <img> of the indoor screen shows (RGB)."""
    png = await page.locator("#flat-screen").screenshot()
    with av.open(io.BytesIO(png), mode="r") as container:
        frame = next(container.decode(video=0))
    return np.asarray(frame.to_ndarray(format="rgb24"))


async def next_picture(page: Page) -> np.ndarray:
    """Wait until the page loads a newer picture of the indoor screen; return its pixels."""
    loads = await page.get_attribute("#flat-screen", "data-loads")
    await wait_page(
        page, f"Number($('flat-screen').dataset.loads) > {loads or 0}", "a new screen picture"
    )
    return await screen_pixels(page)


def relay_pulses(sim: Simulator) -> int:
    """How many times the door relay's pin went active."""
    states = [s.state for s in sim.site.pin(DOOR, SIM_PINS["relay"]).states]
    return sum(1 for before, after in itertools.pairwise(states) if after and not before)


async def test_a_doorbell_call_clicked_through_the_simulator_page(
    simulator: Simulator, page: Page
) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    flat = simulator.site[FLAT].endpoint
    assert flat is not None
    assert flat.ui is not None, "the indoor unit has no default call UI"
    flat.ui.ended_show_s = ENDED_SHOW_S
    await page.set_viewport_size({"width": 1280, "height": 900})
    await page.goto(simulator.url)
    await wait_page(page, "$('sim-connection').dataset.connected === 'true'", "the first state")
    await wait_screen(simulator, page, "idle")
    await wait_page(page, "!$('flat-screen').hidden", "the indoor screen's picture")

    # a visitor rings: the indoor unit shows the incoming screen with the live preview
    await page.click("#door-doorbell")
    await wait_screen(simulator, page, "incoming")
    await wait_page(page, "$('flat-status').dataset.call === 'INCOMING'", "the flat ringing")
    await wait_page(page, "$('door-status').dataset.call !== 'idle'", "the door calling")
    first = await next_picture(page)
    second = await next_picture(page)
    assert first.std() > 10.0, "the indoor screen in the page is one flat colour"
    assert first.shape == second.shape
    assert np.abs(first.astype(int) - second.astype(int)).mean() > 0.2, (
        "the preview on the indoor screen does not move between two refreshes"
    )
    await page.screenshot(path=str(SCREENSHOTS / "1-incoming.png"))

    # the resident answers
    await page.click("#flat-answer")
    await wait_screen(simulator, page, "in_call")
    await wait_page(page, "$('flat-status').dataset.answered === 'true'", "the flat in the call")
    await wait_page(page, "$('door-status').dataset.answered === 'true'", "the door in the call")
    await page.screenshot(path=str(SCREENSHOTS / "2-in-call.png"))

    # door release: the page shows the relay on, then off; its pin pulsed exactly once. The
    # page polls the units' state: a pulse longer than the door's 0.3 s leaves it time to see
    # the relay on even when the machine is busy
    door = simulator.site[DOOR].endpoint
    assert door is not None
    door.board.io.relay.pulse_s = RELAY_PULSE_S
    before = relay_pulses(simulator)
    await page.click("#flat-door-release")
    await wait_page(page, "$('door-relay').dataset.active === 'true'", "the relay on")
    await page.screenshot(path=str(SCREENSHOTS / "3-door-release.png"))
    await wait_page(page, "$('door-relay').dataset.active === 'false'", "the relay off again")
    opener = getattr(door.service, "opener")  # noqa: B009 - a DoorStation's
    await opener.wait_idle()
    assert relay_pulses(simulator) == before + 1
    await wait_page(page, f"$('door-relay-pulses').textContent === '{before + 1}'", "the count")

    # hang up: both idle
    await page.click("#flat-decline")
    await wait_page(page, "$('flat-status').dataset.call === 'idle'", "the flat idle")
    await wait_page(page, "$('door-status').dataset.call === 'idle'", "the door idle")
    await wait_for(lambda: not door.calls.is_call_in_progress(), "the door to be idle", TIMEOUT_S)
    await wait_screen(simulator, page, "idle")
    await page.screenshot(path=str(SCREENSHOTS / "4-idle.png"))
    error = await page.locator("#sim-error").is_visible()
    assert not error, await page.locator("#sim-error").text_content()


async def test_hook_proximity_and_touch_reach_the_unit(simulator: Simulator, page: Page) -> None:
    await page.goto(simulator.url)
    await wait_page(page, "$('sim-connection').dataset.connected === 'true'", "the first state")
    flat = simulator.site[FLAT].endpoint
    assert flat is not None
    await page.click("#flat-hook")
    await wait_page(page, "$('flat-hook').getAttribute('aria-pressed') === 'true'", "lifted")
    await wait_for(lambda: getattr(flat.service, "off_hook", False), "the unit off the hook")
    await page.click("#flat-proximity")
    await wait_for(lambda: flat.board.io.proximity.is_near, "the sensor near")
    # off the hook and near: the screen goes dark, and the page says so
    await wait_page(page, "$('flat-backlight').dataset.on === 'false'", "the backlight off")
    await page.click("#flat-proximity")
    await page.click("#flat-hook")
    await wait_page(page, "$('flat-backlight').dataset.on === 'true'", "the backlight on")
    await wait_for(lambda: not getattr(flat.service, "off_hook", True), "the unit on the hook")
    # a click on the screen is a touch at that pixel
    display = flat.board.display
    assert display is not None
    touches: list[tuple[int, int]] = []
    await wait_page(page, "!$('flat-screen').hidden", "the indoor screen's picture")
    display.on_touch = lambda x, y: touches.append((x, y))
    # a tap in the middle, once the picture is visible, stable and the topmost element there
    await page.locator("#flat-screen").click(timeout=TIMEOUT_S * 1000)
    await wait_for(lambda: bool(touches), "the touch to reach the display")
    width, height = display.size
    x, y = touches[0]
    assert abs(x - width / 2) <= 3 and abs(y - height / 2) <= 3


async def test_the_browser_phone_pairs_and_rings_with_the_indoor_unit(
    simulator: Simulator, page: Page
) -> None:
    need(await asyncio.to_thread(phone_page_built), "the built page web/dist/main.js")
    phone_site = simulator.phone
    assert phone_site is not None
    await page.goto(simulator.url)
    await wait_page(page, "!$('sim-phone').hidden", "the phone's pairing link")
    phone = await page.context.new_page()
    await phone.goto(str(await page.get_attribute("#sim-phone-link", "href")))
    await phone.wait_for_function("() => window.callbox !== undefined")
    await phone.evaluate("() => window.callbox.ready")
    await wait_for(lambda: phone_site.paired, "the door to trust the phone's keys", TIMEOUT_S)
    await wait_page(page, "$('sim-phone-status').dataset.paired === 'true'", "paired, shown")
    await phone.wait_for_function(
        "() => { const s = window.callbox.snapshot(); return s.peers.door && s.peers.door.pinned"
        " && s.peers.door.online; }",
        timeout=TIMEOUT_S * 1000,
    )

    # the doorbell rings both; the indoor unit answers; the phone stops ringing
    await page.click("#door-doorbell")
    await phone.wait_for_function(
        "() => { const s = window.callbox.snapshot();"
        " return s.call && s.call.status === 'INCOMING'; }",
        timeout=TIMEOUT_S * 1000,
    )
    await wait_page(page, "$('flat-status').dataset.call === 'INCOMING'", "the flat ringing")
    await page.click("#flat-answer")
    await wait_page(page, "$('flat-status').dataset.answered === 'true'", "the flat in the call")
    await phone.wait_for_function("() => !window.callbox.snapshot().call", timeout=TIMEOUT_S * 1000)
    await phone.screenshot(path=str(SCREENSHOTS / "phone-after-flat-answered.png"))
    await page.click("#flat-decline")
    await wait_page(page, "$('door-status').dataset.call === 'idle'", "the door idle")


async def test_the_entrance_panel_clicked_through_the_simulator_page(
    simulator: Simulator, page: Page
) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.set_viewport_size({"width": 1280, "height": 1100})
    await page.goto(simulator.url)
    await wait_page(page, "!$('door-panel').hidden", "the door's entrance panel")
    flat = simulator.site[FLAT].endpoint
    assert flat is not None

    # a wrong access code: the display shows dots, never the digits; then refused
    for key in "*97":
        await page.click(f"#door-panel button[data-key='{key}']")
    await wait_page(page, "$('door-entry').dataset.entry === '*••'", "the entry as dots")
    await page.click("#door-panel button[data-key='#']")
    await wait_page(page, "$('door-attempts').querySelector('li.refused')", "refused")
    assert "97" not in (await page.locator("#door-panel").inner_text())

    # a visitor dials flat 1: the flat rings and both units show the bell
    await page.click("#door-panel button[data-key='1']")
    await page.click("#door-panel button[data-key='#']")
    await wait_page(page, "$('flat-status').dataset.call === 'INCOMING'", "the flat ringing")
    await wait_page(page, "$('flat-bell').dataset.bell === 'flat1'", "the bell at the flat")
    await wait_page(page, "$('door-bell').dataset.bell === 'flat1'", "the bell at the door")
    await page.screenshot(path=str(SCREENSHOTS / "5-panel-dialled.png"))

    # the resident's card (the field holds the demo card): the door opens, the ring stops
    await page.click("#door-present-entrance")
    await wait_page(page, "$('door-attempts').querySelector('li.granted')", "granted")
    await wait_page(page, "$('flat-status').dataset.call === 'idle'", "the ring stopped")
    await wait_for(lambda: flat.calls.active_call is None, "the flat idle", TIMEOUT_S)

    # the housing is opened: the tamper alarm at the door and at the flat
    await page.click("#door-tamper")
    await wait_page(page, "$('flat-alarms').querySelector('li.tamper')", "the flat's alarm")
    await wait_page(page, "$('door-alarms').querySelector('li.tamper')", "the door's alarm")
    await page.screenshot(path=str(SCREENSHOTS / "6-panel-tamper.png"))
    await page.click("#door-tamper")
    await wait_page(page, "!$('flat-alarms').querySelector('li.tamper')", "the alarm cleared")
    error = await page.locator("#sim-error").is_visible()
    assert not error, await page.locator("#sim-error").text_content()
