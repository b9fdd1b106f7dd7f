"""A door station and indoor units with their default call UI, and ways to look at the screen.

The checks are structural, never pixel-exact goldens: a region changes between two frames
(video), a region is not one flat colour (text, picture), a render of the same state without
a piece of text differs where that text goes. Screenshots go to test-output/ui/.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import av
import numpy as np
import numpy.typing as npt
from support import wait_for

from device.simulator import IntercomSite
from hal.display import SimDisplay
from hal.io_devices import SIM_PINS
from services.callapi import Call
from services.ui import DefaultCallUi, Rect, ScreenRenderer, UiState

SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output" / "ui"
MIN_PRESS_S = 0.05
Pixels = npt.NDArray[np.uint8]


def ui_of(site: IntercomSite, address: str) -> DefaultCallUi:
    """The default call UI of ``address``."""
    endpoint = site[address].endpoint
    assert endpoint is not None and endpoint.ui is not None, f"{address} has no call UI"
    return endpoint.ui


def display_of(site: IntercomSite, address: str) -> SimDisplay:
    """The in-memory display of ``address``."""
    endpoint = site[address].endpoint
    assert endpoint is not None
    display = endpoint.board.display
    assert isinstance(display, SimDisplay)
    return display


def active_call(site: IntercomSite, address: str) -> Call:
    """The call in progress at ``address`` (AssertionError when there is none)."""
    endpoint = site[address].endpoint
    assert endpoint is not None
    call = endpoint.calls.active_call
    assert call is not None, f"no call at {address}"
    return call


async def press(site: IntercomSite, address: str, role: str) -> None:
    """Press and release the button ``role`` of ``address`` for longer than the minimum."""
    pin = site.pin(address, SIM_PINS[role])
    pin.drive_low()
    await asyncio.sleep(MIN_PRESS_S * 2)  # the person's press: the input, not a wait
    pin.drive_high()


async def screen(ui: DefaultCallUi, name: str) -> None:
    """Wait until ``ui`` shows screen ``name``."""
    await wait_for(lambda: ui.screen == name, f"the {name} screen (now {ui.screen})")


async def fresh_frame(display: SimDisplay, what: str, frames: int = 1) -> Pixels:
    """A frame shown after ``frames`` more frames from now."""
    target = display.frames_shown + frames
    await wait_for(lambda: display.frames_shown >= target, what)
    frame = display.last_frame()
    assert frame is not None, f"{what}: the screen is blank"
    return frame.copy()


async def shown_frame(ui: DefaultCallUi, display: SimDisplay, name: str) -> Pixels:
    """The frame on the display once it shows screen ``name`` (static screens too)."""
    await wait_for(
        lambda: ui.shown is not None and ui.shown.screen == name, f"the {name} screen drawn"
    )
    frame = display.last_frame()
    assert frame is not None
    return frame.copy()


def crop(frame: Pixels, rect: Rect) -> Pixels:
    """The pixels of ``rect``."""
    return frame[rect.y : rect.y + rect.h, rect.x : rect.x + rect.w]


def non_uniform(pixels: Pixels) -> bool:
    """True when ``pixels`` are not one flat colour (something is drawn there)."""
    return bool(pixels.reshape(-1, 3).astype(np.int16).std(axis=0).max() > 8)


def changed_fraction(before: Pixels, after: Pixels) -> float:
    """The fraction of pixels that differ noticeably between two crops."""
    delta = np.abs(before.astype(np.int16) - after.astype(np.int16)).max(axis=2)
    return float((delta > 12).mean())


def diff_box(a: Pixels, b: Pixels) -> Rect | None:
    """The bounding box of the pixels that differ between two frames, or None."""
    ys, xs = np.nonzero(np.abs(a.astype(np.int16) - b.astype(np.int16)).max(axis=2) > 12)
    if len(xs) == 0:
        return None
    return Rect(
        int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)
    )


def text_box(ui: DefaultCallUi, state: UiState, within: Rect | None = None, **without: Any) -> Rect:
    """Where the renderer draws the fields of ``state`` named in ``without`` (in ``within``).

    Renders ``state`` and the same state with those fields replaced (offscreen, no video)
    and returns the bounding box of the difference: the text is drawn, and drawn there.
    """
    renderer = ScreenRenderer(*ui.display.size)
    area = within or renderer.layout.full
    with_text = crop(renderer.render(state), area)
    without_text = crop(renderer.render(dataclasses.replace(state, **without)), area)
    box = diff_box(with_text, without_text)
    assert box is not None, f"{without} changes nothing on the {state.screen} screen"
    return Rect(box.x + area.x, box.y + area.y, box.w, box.h)


def save(frame: Pixels, name: str) -> Path:
    """Write ``frame`` as test-output/ui/<name>.png (PyAV's PNG encoder)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    height, width = frame.shape[:2]
    codec = av.CodecContext.create("png", "w")
    codec.width, codec.height, codec.pix_fmt = width, height, "rgb24"
    image = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
    packets = [*codec.encode(image), *codec.encode(None)]
    path.write_bytes(b"".join(bytes(packet) for packet in packets))
    return path


def video_rect(ui: DefaultCallUi, rect: Rect) -> Rect:
    """The middle of a video area, away from overlays."""
    return Rect(rect.x + rect.w // 4, rect.y + rect.h // 4, rect.w // 2, rect.h // 2)
