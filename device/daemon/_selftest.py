"""`callbox selftest`: check every configured device, file and permission, and say what is wrong.

Run on a stopped daemon it opens each device itself (camera: one frame; microphone: one
read; speakers: one silent frame; GPIO: every configured pin claimed; backlight: its
sysfs files; relay: claimed and idle, never pulsed). With the daemon running, the daemon
runs the same checks on the devices it holds (GPIO pins cannot be claimed twice).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import av

from device.config import (
    CallboxConfig,
    ConfigError,
    KeystoreError,
    identity_path,
    public_keys_of,
)
from hal.backlight import Backlight, SysfsBacklight, find_backlight
from hal.board import Board
from hal.errors import HalError
from hal.io_devices import IoDevices
from hal.media_types import AudioFormat
from services.callapi.calls import permission_status
from services.media.aec import engine_details
from services.push.errors import VapidKeyError
from services.push.vapid import load_vapid_key

_log = logging.getLogger(__name__)

DEVICE_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class Check:
    """One line of the report."""

    name: str
    ok: bool
    detail: str

    def as_json(self) -> dict[str, Any]:
        """For ``--json``."""
        return asdict(self)


async def _check(name: str, probe: Callable[[], Awaitable[str]]) -> Check:
    try:
        detail = await asyncio.wait_for(probe(), DEVICE_TIMEOUT_S)
    except TimeoutError:
        return Check(name, False, f"no answer within {DEVICE_TIMEOUT_S:.0f} s")
    except (HalError, OSError, KeystoreError, av.FFmpegError) as err:
        return Check(name, False, str(err))
    return Check(name, True, detail)


def check_files(config: CallboxConfig) -> list[Check]:
    """State directory writable, identity keys present and private."""
    state = Path(config.state_dir)
    checks = []
    if state.is_dir() and os.access(state, os.W_OK):
        checks.append(Check("state directory", True, f"{state} writable"))
    else:
        checks.append(Check("state directory", False, f"{state} missing or not writable"))
    if not identity_path(state).exists():
        checks.append(Check("keys", False, f"no keys in {state} yet: `callbox run` creates them"))
    else:
        try:
            fingerprint = public_keys_of(state).fingerprint()
            checks.append(Check("keys", True, f"fingerprint {fingerprint}"))
        except KeystoreError as err:
            checks.append(Check("keys", False, str(err)))
    if config.push.vapid_key:
        checks.append(check_push_key(Path(config.push.vapid_key)))
    if config.turn.secret_file:
        checks.append(check_turn_secret(config))
    return checks


def check_turn_secret(config: CallboxConfig) -> Check:
    """The site's TURN secret (``[turn]``): readable, usable; never shows the secret itself."""
    try:
        minter = config.turn_minter()
    except ConfigError as err:
        return Check("turn secret", False, err.reason)
    assert minter is not None
    return Check("turn secret", True, f"{config.turn.secret_file}: relay {minter.urls[0]}")


def check_push_key(path: Path) -> Check:
    """The door's Web Push (VAPID) key: there, private, a P-256 key."""
    try:
        key = load_vapid_key(path)
    except VapidKeyError as err:
        return Check("web push key", False, str(err))
    return Check("web push key", True, f"{path}: {key.application_server_key[:16]}…")


async def check_media(config: CallboxConfig, board: Board) -> list[Check]:
    """Open the camera, microphone and speakers the config uses, one read or write each."""
    fmt = AudioFormat()

    async def camera() -> str:
        device = board.camera(config.camera.device or None)
        await device.open(device.format)
        try:
            frame = await device.read()
        finally:
            await device.close()
        return f"{device.name}: {frame.width}x{frame.height} frame read"

    async def microphone() -> str:
        device = board.microphone()
        await device.open(fmt)
        try:
            frame = await device.read()
        finally:
            await device.close()
        return f"{device.name}: {frame.samples} samples read"

    checks = [await _check("camera", camera)] if config.call.video else []
    checks.append(await _check("microphone", microphone))
    for name in board.speakers:

        async def speaker(name: str = name) -> str:
            device = board.speaker(name)
            await device.open(fmt)
            try:
                await device.play(_silence(fmt))
            finally:
                await device.close()
            return f"{name}: played 20 ms of silence"

        checks.append(await _check(f"speaker {name}", speaker))
    return checks


def _silence(fmt: AudioFormat) -> av.AudioFrame:
    import numpy as np

    samples = fmt.sample_rate // 50
    frame = av.AudioFrame.from_ndarray(
        np.zeros((1, samples * fmt.channels), dtype=np.int16), format="s16", layout="mono"
    )
    frame.sample_rate = fmt.sample_rate
    return frame


def check_io(io: IoDevices, failed: Mapping[str, str] | None = None) -> list[Check]:
    """Every configured GPIO device, as the started IoDevices hold it.

    ``failed`` maps the names of devices that did not start to the reason.
    """
    failed = failed or {}
    checks = [
        Check(f"button {role.value}", True, "pressed" if button.is_pressed else "released")
        for role, button in io.buttons.items()
    ]
    # the relay is only ever energised inside a pulse (bounded by max_on_ms): active means
    # the door is being opened right now
    pulsing = "energised: a door-release pulse is in progress"
    checks.append(Check("door relay", True, pulsing if io.relay.is_active else "idle"))
    checks.extend(Check(f"led {name}", True, led.pattern.value) for name, led in io.leds.items())
    checks.append(Check("proximity", True, "near" if io.proximity.is_near else "far"))
    # the door station's supervision switches: what they read, for the installer to compare
    if io.door_contact.wired:
        checks.append(
            Check("door contact", True, "open" if io.door_contact.is_active else "closed")
        )
    if io.tamper.wired:
        tampered = "TAMPERED (the cover is off or a wire is cut)"
        checks.append(Check("tamper", True, tampered if io.tamper.is_active else "closed"))
    checks.append(check_backlight(io.backlight))
    return [
        Check(check.name, False, failed[check.name]) if check.name in failed else check
        for check in checks
    ]


def check_backlight(backlight: Backlight) -> Check:
    """The backlight's state; a sysfs one also needs ``bl_power`` writable by this user."""
    state = "on" if backlight.is_on else "off"
    path = backlight.path if isinstance(backlight, SysfsBacklight) else None
    if path is None:
        return Check("backlight", True, state)
    if not os.access(path / "bl_power", os.W_OK):
        reason = "not writable by this user (add it to the video group or a udev rule)"
        return Check("backlight", False, f"{path / 'bl_power'}: {reason}")
    return Check("backlight", True, f"{path}: {state}")


def check_configured_backlight(config: CallboxConfig, io: IoDevices) -> Check | None:
    """Does the sysfs device the file's ``[backlight]`` names exist?

    Checked when the board does not drive the backlight itself (the sim board has a backlight of its
    own).
    """
    wanted = config.backlight
    held = io.backlight
    if wanted is None or (
        isinstance(held, SysfsBacklight) and Path(held.spec.sysfs_root) == Path(wanted.sysfs_root)
    ):
        return None
    try:
        path = find_backlight(Path(wanted.sysfs_root), wanted.device or None)
    except HalError as err:
        return Check("backlight (configured)", False, str(err))
    return Check("backlight (configured)", True, f"{path} present")


async def check_broker(config: CallboxConfig) -> Check:
    """Can this machine open a TCP connection to the broker?"""

    async def connect() -> str:
        _, writer = await asyncio.open_connection(config.broker.host, config.broker.port)
        writer.close()
        await writer.wait_closed()
        return f"{config.broker.host}:{config.broker.port} reachable"

    return await _check("broker", connect)


def check_permissions(config: CallboxConfig, board: Board) -> Check:
    """The checkPermissions of mesibo for this board: 0 ready, negative when a device is missing."""
    status = permission_status(
        microphone=bool(board.microphones),
        speaker=bool(board.speakers),
        camera=bool(board.cameras),
        video=config.call.video,
    )
    meaning = {
        0: "camera, microphone and speaker present" if config.call.video else "audio present",
        -1: "no microphone or no speaker",
        -2: "video calls are configured but there is no camera",
    }
    return Check("call permissions", status >= 0, f"{status}: {meaning[status]}")


def check_echo_canceller(config: CallboxConfig) -> Check:
    """Which echo canceller the microphone path would use, and whether it loads."""
    if not config.audio.echo_cancellation:
        return Check("echo canceller", True, "off ([audio] echo_cancellation = false)")
    details = engine_details()
    loaded = [engine for engine in details if engine != "none"]
    wanted = config.audio.echo_canceller
    if not loaded:
        return Check("echo canceller", False, "no engine loads: the speakerphone will echo")
    active = wanted if wanted in loaded else loaded[0]
    fallback = "" if active == wanted else f"; {wanted} does not load here"
    return Check(
        "echo canceller",
        True,
        f"{active} ({details[active]}{fallback}); loads: {', '.join(loaded)}",
    )


async def run_selftest(
    config: CallboxConfig,
    board: Board,
    *,
    media: bool = True,
    failed: Mapping[str, str] | None = None,
) -> list[Check]:
    """Every check for ``board``, whose IoDevices must be started.

    ``failed``: those that did not start, by check name, with the reason; ``media`` opens the media
    devices.
    """
    checks = check_files(config)
    checks.append(check_permissions(config, board))
    checks.append(await asyncio.to_thread(check_echo_canceller, config))  # loads libraries
    if media:
        checks.extend(await check_media(config, board))
    checks.extend(check_io(board.io, failed))
    configured = check_configured_backlight(config, board.io)
    if configured is not None:
        checks.append(configured)
    checks.append(await check_broker(config))
    return checks


async def start_io(io: IoDevices) -> dict[str, str]:
    """Start each GPIO device on its own; the ones that fail, by check name, with why."""
    devices: list[tuple[str, Any]] = [
        ("door relay", io.relay),
        *((f"button {role.value}", button) for role, button in io.buttons.items()),
        *((f"led {name}", led) for name, led in io.leds.items()),
        ("proximity", io.proximity),
        ("backlight", io.backlight),
    ]
    failed = {}
    for name, device in devices:
        try:
            await device.start()
        except (HalError, OSError) as err:
            failed[name] = str(err)
    return failed


async def selftest_stopped_daemon(config: CallboxConfig) -> list[Check]:
    """Build the board from ``config``, run every check, release everything."""
    from device.daemon._app import build_board

    try:
        board = build_board(config, Path(config.state_dir))
    except (HalError, OSError) as err:
        return [*check_files(config), Check("board", False, str(err))]
    try:
        failed = await start_io(board.io)
        checks = await run_selftest(config, board, failed=failed)
    finally:
        try:
            await board.close()
        except HalError as err:
            _log.error("selftest: releasing the devices failed: %s", err)
    return checks
