"""The safe state's screen: the notice, and which display the composition picks.

The notice on an injected in-memory display, closed when a valid file ends the safe state, a display
that cannot open only logged; and which display the composition picks from a file that does not
validate.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import tomllib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np
import pytest

from device.config import ConfigError, load_config
from device.daemon import ControlError, request
from device.daemon._safe_daemon import NOTICE_TITLE, SafeDaemon
from device.daemon._safe_screen import (
    DisplayChoice,
    admin_user,
    build_display,
    display_choice,
    fix_hint,
    read_toml,
    safe_screen,
)
from hal.display import Display, KmsDisplay, SimDisplay
from services.ui import NoticeLayout, NoticeScreen, Rect
from services.ui.paint import Pixels

TIMEOUT = 10.0
HINT = ("Fix it over SSH: ssh anna@flat.local, then sudo callbox config edit",)
INDOOR = 'role = "indoor"\naddress = "flat"\nsite = "test"\nboard = "sim"\n'
BAD = INDOOR + 'typo = 1\n\n[relay]\npin = "GPIO99"\n'
"""Refused twice: an unknown key and a relay pin that is not on the header."""
SIM_DEFAULT = DisplayChoice("sim", (800, 480))


@pytest.fixture(autouse=True)
def _no_first_boot_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLBOX_FIRST_BOOT_STATE", str(tmp_path / "firstboot"))
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)


class LogEvent(logging.Handler):
    """Sets ``event`` when a record of ``level`` or worse containing ``words`` is logged."""

    def __init__(self, words: str, level: int = logging.ERROR) -> None:
        super().__init__(level)
        self.words = words
        self.event = asyncio.Event()
        self._loop = asyncio.get_running_loop()

    def emit(self, record: logging.LogRecord) -> None:
        if self.words in record.getMessage():
            self._loop.call_soon_threadsafe(self.event.set)


@asynccontextmanager
async def safe_state(
    directory: Path, display: Display, text: str = BAD
) -> AsyncIterator[tuple[SafeDaemon, asyncio.Task[bool]]]:
    """A safe daemon for ``text`` (refused) on ``display``; stopped at the end."""
    config = directory / "callbox.toml"
    config.write_text(text)
    with pytest.raises(ConfigError) as refused:
        await asyncio.to_thread(load_config, config)
    daemon = SafeDaemon(
        config, directory / "control.sock", str(refused.value),
        display=display, display_name="the test display", hint=HINT,
    )  # fmt: skip
    task = asyncio.create_task(daemon.run())
    try:
        yield daemon, task
    finally:
        daemon.stopping.set()
        await asyncio.wait_for(task, TIMEOUT)


async def shown(display: SimDisplay) -> Pixels:
    """The frame on ``display`` once one was shown (the event, bounded)."""
    await asyncio.wait_for(display.frame_event.wait(), TIMEOUT)
    display.frame_event.clear()
    frame = display.last_frame()
    assert frame is not None
    return frame.copy()


def light_pixels(frame: Pixels, rect: Rect) -> int:
    """Bright pixels (text) in ``rect``: every background of the notice is dark."""
    area = frame[rect.y : rect.y + rect.h, rect.x : rect.x + rect.w]
    return int((area.min(axis=2) >= 150).sum())


def reasons_with_text(frame: Pixels, arranged: NoticeLayout) -> int:
    """How many reasons have text drawn in their first row."""
    return sum(
        1
        for index in range(arranged.shown)
        if light_pixels(frame, next(r for r in arranged.rows if r.reason == index).rect) > 20
    )


# the notice ---------------------------------------------------------------------------------------


async def test_the_notice_shows_every_reason_and_status_keeps_them(tmp_path: Path) -> None:
    display = SimDisplay(800, 480)
    async with safe_state(tmp_path, display) as (daemon, _):
        frame = await shown(display)
        assert not display.blank
        assert frame.reshape(-1, 3).std(axis=0).max() > 8, "not a blank screen"
        notice = daemon.notice()
        assert notice.title == NOTICE_TITLE
        assert notice.lines == tuple(daemon.problem.splitlines())
        assert len(notice.lines) == 2 and "typo: unknown key" in daemon.problem
        assert "relay.pin:" in daemon.problem
        arranged = await asyncio.to_thread(NoticeScreen(800, 480).arrange, notice)  # loads fonts
        (title,) = arranged.rows_of("title")
        assert light_pixels(frame, title.rect) > 200
        assert reasons_with_text(frame, arranged) == len(notice.lines) == arranged.shown
        assert all(light_pixels(frame, row.rect) > 20 for row in arranged.rows_of("hint"))

        status = await request(daemon.control.path, "status")
        assert status["state"] == "safe" and status["running"] is False
        assert status["problem"] == daemon.problem, "the reasons reach `callbox status` as is"
    assert display.closed, "stopping the safe state closes the display"


async def test_at_480x320_many_reasons_wrap_and_end_with_and_n_more(tmp_path: Path) -> None:
    typos = "".join(f"typo{i} = {i}\n" for i in range(14))
    display = SimDisplay(480, 320)
    text = INDOOR + typos + BAD.removeprefix(INDOOR)
    async with safe_state(tmp_path, display, text) as (daemon, _):
        frame = await shown(display)
        notice = daemon.notice()
        assert len(notice.lines) == 16
        arranged = await asyncio.to_thread(NoticeScreen(480, 320).arrange, notice)
        assert 0 < arranged.shown < 16 and arranged.hidden == 16 - arranged.shown
        (more,) = arranged.rows_of("more")
        assert more.text == f"… and {arranged.hidden} more"
        assert light_pixels(frame, more.rect) > 20
        assert reasons_with_text(frame, arranged) == arranged.shown
        assert len(arranged.rows_of("reason")) > arranged.shown, "the long lines wrap"


# the end of the safe state ----------------------------------------------------------------------


async def test_a_valid_file_reloaded_over_the_control_socket_closes_the_display(
    tmp_path: Path,
) -> None:
    display = SimDisplay(800, 480)
    async with safe_state(tmp_path, display) as (daemon, task):
        await shown(display)
        daemon.config_path.write_text(INDOOR)
        answer = await request(daemon.control.path, "reload")
        assert answer["changed"] == ["all: the daemon restarts with the file"]
        assert await asyncio.wait_for(task, TIMEOUT) is True
        assert display.closed


async def test_sighup_with_a_valid_file_closes_the_display(tmp_path: Path) -> None:
    display = SimDisplay(800, 480)
    async with safe_state(tmp_path, display) as (daemon, task):
        await shown(display)
        daemon.config_path.write_text(INDOOR)
        os.kill(os.getpid(), signal.SIGHUP)
        assert await asyncio.wait_for(task, TIMEOUT) is True
        assert display.closed


async def test_a_reload_still_refused_shows_its_own_reasons(tmp_path: Path) -> None:
    display = SimDisplay(800, 480)
    async with safe_state(tmp_path, display) as (daemon, task):
        before = await shown(display)
        daemon.config_path.write_text(INDOOR + "other_typo = 2\n")
        with pytest.raises(ControlError, match="still in the safe state"):
            await request(daemon.control.path, "reload")
        after = await shown(display)
        assert not np.array_equal(before, after)
        (line,) = daemon.notice().lines
        assert line.startswith(f"{daemon.config_path}: other_typo: unknown key")
        status = await request(daemon.control.path, "status")
        assert "other_typo" in status["problem"] and "relay.pin" not in status["problem"]
        assert not task.done() and not display.closed


async def test_a_display_that_cannot_open_leaves_status_served(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("SDL_VIDEODRIVER", "callbox-no-such-driver")
    display = KmsDisplay(driver="callbox-no-such-driver")
    logged = LogEvent("cannot show the reasons")
    logging.getLogger("device.daemon._safe_daemon").addHandler(logged)
    try:
        async with safe_state(tmp_path, display) as (daemon, task):
            await asyncio.wait_for(logged.event.wait(), TIMEOUT)
            status = await request(daemon.control.path, "status")
            assert status["state"] == "safe" and status["problem"] == daemon.problem
            assert not task.done()
    finally:
        logging.getLogger("device.daemon._safe_daemon").removeHandler(logged)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    message = next(r.getMessage() for r in errors if "cannot show" in r.getMessage())
    assert "the test display" in message and "callbox-no-such-driver" in message


# which display ------------------------------------------------------------------------------------


def choice(text: str) -> DisplayChoice | None:
    return display_choice(tomllib.loads(text))


def test_ok__a_valid_display_table_is_used_though_the_rest_is_refused() -> None:
    text = (
        'role = "indoor"\nboard = "pi"\ntypo = 1\n[relay]\npin = "GPIO99"\n'
        "[display]\nwidth = 1280\nheight = 720\n"
    )
    assert choice(text) == DisplayChoice("pi", (1280, 720))
    assert isinstance(build_display(DisplayChoice("pi", (1280, 720))), KmsDisplay)
    small = choice(INDOOR + "[display]\nwidth = 480\nheight = 320\n")
    assert small == DisplayChoice("sim", (480, 320))
    sim = build_display(small)
    assert isinstance(sim, SimDisplay) and sim.size == (480, 320)


def test_ok__an_indoor_unit_without_a_usable_display_table_gets_its_boards_default() -> None:
    assert choice(INDOOR) == SIM_DEFAULT
    assert choice(INDOOR + '[display]\nwidth = "wide"\n') == SIM_DEFAULT
    assert choice(INDOOR + "[display]\nwidth = 1280\n") == SIM_DEFAULT, "height missing"
    assert choice(INDOOR + "[display]\nwidth = 32\nheight = 32\n") == SIM_DEFAULT
    on_a_pi = choice('role = "indoor"\n[display]\ncolour = "red"\n')
    assert on_a_pi is None, "a Pi draws only with a [display] table"


def test_ok__the_panel_size_when_the_table_gives_none() -> None:
    assert choice('role = "indoor"\n[display]\n') == DisplayChoice("pi", None)
    assert isinstance(build_display(DisplayChoice("pi")), KmsDisplay)


def test_fail__no_display_for_a_door_a_disabled_one_or_an_unknown_board() -> None:
    assert choice('role = "door"\nboard = "sim"\n') is None
    assert choice('role = "door"\nboard = "pi"\ntypo = 1\n') is None
    assert choice(INDOOR + "[display]\nenabled = false\n") is None
    assert choice('role = "indoor"\nboard = "pi5"\n[display]\n') is None


def test_fail__a_file_that_is_not_toml_gives_the_default_boards_default_none(
    tmp_path: Path,
) -> None:
    broken = tmp_path / "callbox.toml"
    broken.write_text('role = "indoor\nboard = "sim"\n')
    assert read_toml(broken) is None
    assert read_toml(tmp_path / "missing.toml") is None
    assert display_choice(None) is None
    screen = safe_screen(broken)
    assert screen.display is None and screen.hint


def test_a_refused_first_boot_takes_the_screen_from_the_installers_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "firstboot-state"
    state.mkdir()
    (state / "error").write_text("callbox first boot: /boot/firmware/callbox.toml refused\n")
    monkeypatch.setenv("CALLBOX_FIRST_BOOT_STATE", str(state))
    boot_file = tmp_path / "boot.toml"
    boot_file.write_text(INDOOR + "typo = 1\n[display]\nwidth = 480\nheight = 320\n")
    screen = safe_screen(tmp_path / "missing.toml", boot_file)
    assert isinstance(screen.display, SimDisplay) and screen.display.size == (480, 320)
    assert "480x320" in screen.name
    assert any("boot partition" in line for line in screen.hint)
    assert not any("ssh " in line for line in screen.hint), "no administrator account yet"


# what to do --------------------------------------------------------------------------------------


def test_the_hint_names_the_administrator_the_host_and_its_addresses() -> None:
    hint = fix_hint("flat-1", ["192.0.2.7", "2001:db8::7"], "anna")
    assert hint[0] == "Fix it over SSH: ssh anna@flat-1.local, then sudo callbox config edit"
    assert "This unit: flat-1.local (192.0.2.7, 2001:db8::7)" in hint


def test_the_hint_stays_generic_when_the_administrator_is_unknown() -> None:
    hint = fix_hint("flat-1")
    assert "log in to flat-1.local as the administrator" in hint[0]
    assert "This unit: flat-1.local" in hint
    refused = fix_hint("flat-1", admin="anna", first_boot_refused=True)
    assert refused[1].startswith("Or fix callbox.toml on the SD card's boot partition")


def test_fail__no_administrator_named_unless_valid_and_present() -> None:
    assert admin_user(None) is None
    assert admin_user({"system": {"admin": {"user": "callbox-test-nobody"}}}) is None
    assert admin_user({"system": {"admin": {"user": "root"}}}) is None, "a system account"
    assert admin_user({"system": {"admin": {"user": "Not A Name"}}}) is None
    assert admin_user({"system": "admin"}) is None


def test_the_status_line_names_the_first_reason(tmp_path: Path) -> None:
    config = tmp_path / "callbox.toml"
    daemon = SafeDaemon(config, tmp_path / "control.sock", f"{config}: relay.pin: bad\nmore")
    assert daemon.status_line() == f"safe state: {config}: relay.pin: bad"


def test_the_status_line_names_what_first_boot_refused_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The status line names first boot's refusal on a new unit whose installer's file was refused.

    There the installed file does not exist: the status line says why first boot refused the
    installer's file instead.
    """
    state = tmp_path / "firstboot"
    state.mkdir()
    (state / "error").write_text(
        "callbox first boot: /boot/firmware/callbox.toml refused, nothing applied:\n"
        "/boot/firmware/callbox.toml: ringtone_volume: unknown key\n"
        "Fix the file (check it with `callbox config validate FILE`) and reboot.\n"
    )
    monkeypatch.setenv("CALLBOX_FIRST_BOOT_STATE", str(state))
    config = tmp_path / "callbox.toml"
    daemon = SafeDaemon(config, tmp_path / "control.sock", f"{config}: the file does not exist")
    assert daemon.status_line() == (
        "safe state: first boot refused /boot/firmware/callbox.toml: ringtone_volume: unknown key"
    )
