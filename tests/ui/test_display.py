"""The in-memory display, the KMS display's refusals, the ``[display]`` table and the boards."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import av
import numpy as np
import pytest

from device.config import ConfigError, parse_config
from device.daemon._app import build_board
from hal.display import KmsDisplay, SimDisplay
from hal.errors import HalError

FILE = Path("/etc/callbox/callbox.toml")
INDOOR = 'role = "indoor"\naddress = "flat1"\nsite = "home"\nboard = "sim"\n'
DOOR = 'role = "door"\naddress = "door"\nsite = "home"\nboard = "sim"\ntargets = ["flat1"]\n'


def refused(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(text, FILE)
    return str(info.value)


async def test_sim_display_keeps_the_last_frame_as_jpeg_and_blanks() -> None:
    display = SimDisplay(320, 240)
    assert display.size == (320, 240) and display.last_frame() is None
    assert display.last_jpeg() is None
    frame = np.zeros((240, 320, 3), np.uint8)
    frame[:, 160:] = (255, 0, 0)
    await display.show(frame)
    assert display.frames_shown == 1 and display.frame_event.is_set()
    jpeg = display.last_jpeg()
    assert jpeg is not None and jpeg[:2] == b"\xff\xd8"
    assert display.last_jpeg() is jpeg, "encoded once per frame"
    with av.open(io.BytesIO(jpeg), mode="r") as container:
        decoded = next(container.decode(video=0))
    pixels = decoded.to_ndarray(format="rgb24")
    assert pixels.shape == (240, 320, 3)
    assert pixels[120, 40].max() < 40 and pixels[120, 280, 0] > 200, "the picture survives"

    await display.set_blank(True)
    assert display.blank and display.last_frame() is None and display.last_jpeg() is None
    await display.show(frame)
    assert display.frames_shown == 1, "nothing is shown while blank"
    await display.set_blank(False)
    await display.show(frame)
    assert display.frames_shown == 2


async def test_sim_display_refuses_wrong_frames_and_touches_off_screen() -> None:
    display = SimDisplay(320, 240)
    with pytest.raises(HalError, match=r"must be uint8 of shape \(240, 320, 3\)"):
        await display.show(np.zeros((240, 320, 4), np.uint8))
    with pytest.raises(ValueError, match="outside the 320x240 display"):
        display.touch(320, 10)
    with pytest.raises(HalError, match="display width 10 must be within"):
        SimDisplay(10, 240)


async def test_a_touch_from_another_thread_reaches_the_handler_on_the_loop() -> None:
    display = SimDisplay(320, 240)
    loop = asyncio.get_running_loop()
    touched: asyncio.Future[tuple[int, int, bool]] = loop.create_future()

    def handler(x: int, y: int) -> None:
        running = asyncio.get_running_loop() is loop
        touched.set_result((x, y, running))

    display.on_touch = handler
    await asyncio.to_thread(display.touch, 10, 20)
    assert await asyncio.wait_for(touched, 5) == (10, 20, True)


def test_kms_display_size_is_checked_and_unknown_before_start() -> None:
    with pytest.raises(HalError, match="width and height go together"):
        KmsDisplay(800, None)
    with pytest.raises(HalError, match="not started"):
        _ = KmsDisplay().size


def test_the_display_table_is_checked_with_file_key_and_reason() -> None:
    assert parse_config(INDOOR + "[display]\nwidth = 1280\nheight = 720\n").display is not None
    together = "set width and height together (or neither: the panel's own size)"
    assert refused(INDOOR + "[display]\nwidth = 1280\n") == f"{FILE}: display.height: {together}"
    assert (
        refused(INDOOR + "[display]\nwidth = 32\nheight = 32\n").splitlines()[0]
        == f"{FILE}: display.width: 32 is too small: at least 64 pixels"
    )
    assert refused(INDOOR + "[display]\nwidth = -1\nheight = 480\n").startswith(
        f"{FILE}: display.width: "
    )
    assert (
        refused(DOOR + "[display]\n")
        == f"{FILE}: display.enabled: a door station shows no call UI; remove [display]"
    )
    assert "display.enabled" in refused(INDOOR + "[display]\nenabled = 'yes'\n")


async def test_boards_get_a_display_for_indoor_units_only(tmp_path: Path) -> None:
    indoor = build_board(parse_config(INDOOR), tmp_path / "a")
    door = build_board(parse_config(DOOR), tmp_path / "b")
    big = build_board(parse_config(INDOOR + "[display]\nwidth=1280\nheight=720\n"), tmp_path / "c")
    off = build_board(parse_config(INDOOR + "[display]\nenabled = false\n"), tmp_path / "d")
    try:
        assert isinstance(indoor.display, SimDisplay) and indoor.display.size == (800, 480)
        assert door.display is None and off.display is None
        assert isinstance(big.display, SimDisplay) and big.display.size == (1280, 720)
    finally:
        for board in (indoor, door, big, off):
            await board.close()
