"""Boards: the set of devices one intercom has, and the factories that build them.

A board is chosen by name (``build_board("sim")``); real boards join the
registry in ``board_factories`` later, importing their libraries lazily. The
GPIO side (buttons, relay, LEDs, proximity, backlight) is ``Board.io``; an indoor unit's
screen is ``Board.display`` (None on a door station).
"""

from __future__ import annotations

import dataclasses
import inspect
import shutil
import tempfile
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

from hal.audio import Microphone, RecordingSpeaker, Speaker, ToneMicrophone, VoiceMicrophone
from hal.backlight import make_sim_backlight_tree
from hal.camera import Camera, TestPatternCamera
from hal.cards import SimCardReader
from hal.display import Display, KmsDisplay, SimDisplay
from hal.errors import DeviceUnavailableError, HalError
from hal.gpio_specs import IoSpec
from hal.io_devices import SIM_BACKLIGHT, IoDevices, build_io, sim_io_spec
from hal.keypad import SimKeypad

_Device = TypeVar("_Device")


def _pick(board: str, kind: str, devices: Mapping[str, _Device], name: str | None) -> _Device:
    if name is None:
        for device in devices.values():
            return device
        raise DeviceUnavailableError(f"board {board!r} has no {kind}")
    try:
        return devices[name]
    except KeyError:
        available = ", ".join(repr(key) for key in devices) or "none"
        raise DeviceUnavailableError(
            f"board {board!r} has no {kind} {name!r} (available: {available})"
        ) from None


@dataclass(frozen=True)
class Board:
    """The devices of one intercom, each kind keyed by device name; GPIO devices in ``io``."""

    name: str
    cameras: Mapping[str, Camera]
    microphones: Mapping[str, Microphone]
    speakers: Mapping[str, Speaker]
    io: IoDevices = field(default_factory=IoDevices)
    display: Display | None = None

    def camera(self, name: str | None = None) -> Camera:
        """The camera called ``name``, or the first one; DeviceUnavailableError if none."""
        return _pick(self.name, "camera", self.cameras, name)

    def microphone(self, name: str | None = None) -> Microphone:
        """The microphone called ``name``, or the first one; DeviceUnavailableError if none."""
        return _pick(self.name, "microphone", self.microphones, name)

    def speaker(self, name: str | None = None) -> Speaker:
        """The speaker called ``name``, or the first one; DeviceUnavailableError if none."""
        return _pick(self.name, "speaker", self.speakers, name)

    async def close(self) -> None:
        """Close every device of the board, the GPIO side (relay) first; idempotent."""
        try:
            await self.io.close()
        finally:
            if self.display is not None:
                self.display.close()
            for camera in self.cameras.values():
                await camera.close()
            for microphone in self.microphones.values():
                await microphone.close()
            for speaker in self.speakers.values():
                await speaker.close()


def build_sim_board(
    name: str = "sim",
    *,
    tone_hz: float = 440.0,
    voice: bool = False,
    io: IoSpec | None = None,
    sysfs_root: Path | None = None,
    display_size: tuple[int, int] | None = None,
) -> Board:
    """A board of simulated devices for tests and the demo.

    Cameras "main" and "aux" (different patterns), microphone "main" playing a ``tone_hz``
    sine (or, with ``voice``, a speech-like voice pitched at ``tone_hz``), speakers
    "speaker" and "handset". GPIO devices follow ``io`` (default: ``sim_io_spec()``, every
    device on ``SIM_PINS``) on a MockFactory of this board's own (``board.io.pin_factory``),
    so two sim boards never share pins. The backlight is a sysfs tree created under
    ``sysfs_root`` (a temporary directory, removed on close, when None); start the devices
    with ``await board.io.start()``.
    ``display_size`` (width, height) gives it an in-memory ``SimDisplay`` (an indoor unit).
    """
    display = SimDisplay(*display_size) if display_size is not None else None
    microphone = VoiceMicrophone if voice else ToneMicrophone
    io_devices = build_sim_io(io, sysfs_root=sysfs_root)
    return Board(
        name=name,
        cameras=MappingProxyType(
            {"main": TestPatternCamera("main", seed=0), "aux": TestPatternCamera("aux", seed=1)}
        ),
        microphones=MappingProxyType({"main": microphone("main", frequency_hz=tone_hz)}),
        speakers=MappingProxyType(
            {"speaker": RecordingSpeaker("speaker"), "handset": RecordingSpeaker("handset")}
        ),
        io=io_devices,
        display=display,
    )


def _sim_sysfs_tree(sysfs_root: Path | None, device: str) -> tuple[Path, Path | None]:
    """The sysfs tree of the sim backlight, made when missing.

    Returns its root and the temporary root to remove on close (None when the root is the
    caller's). Start-up file I/O.
    """
    temp_root = None
    if sysfs_root is None:
        sysfs_root = temp_root = Path(tempfile.mkdtemp(prefix="callbox-sim-sysfs-"))
    if not (sysfs_root / device / "bl_power").exists():
        make_sim_backlight_tree(sysfs_root, device)
    return sysfs_root, temp_root


def build_sim_io(io: IoSpec | None = None, *, sysfs_root: Path | None = None) -> IoDevices:
    """The GPIO side of a sim board: ``io`` (default ``sim_io_spec()``) on a MockFactory of its own.

    The backlight is in a sysfs tree under ``sysfs_root`` (a temporary one, removed on close, when
    None). A keypad in ``io`` becomes a ``SimKeypad``, each card reader a ``SimCardReader`` of
    the same name (the simulator and tests press keys and present cards).
    """
    spec = dataclasses.replace(io or sim_io_spec(), pin_factory="mock")
    keypad = SimKeypad() if spec.keypad is not None else None
    readers = {name: SimCardReader(name) for name in spec.card_readers}
    spec = dataclasses.replace(spec, keypad=None, card_readers={})
    temp_root: Path | None = None
    if spec.backlight is not None:
        device = spec.backlight.device or SIM_BACKLIGHT
        sysfs_root, temp_root = _sim_sysfs_tree(sysfs_root, device)
        backlight = dataclasses.replace(spec.backlight, sysfs_root=str(sysfs_root), device=device)
        spec = dataclasses.replace(spec, backlight=backlight)
    try:
        io_devices = build_io(spec)
    except HalError:
        if temp_root is not None:
            shutil.rmtree(temp_root, ignore_errors=True)
        raise
    if temp_root is not None:
        # Also removed when a board that was never closed is collected.
        io_devices.cleanups.append(weakref.finalize(io_devices, shutil.rmtree, temp_root, True))
    io_devices.keypad = keypad
    io_devices.card_readers = MappingProxyType(readers)
    return io_devices


def build_pi_board(
    name: str = "pi",
    *,
    io: IoSpec | None = None,
    speakers: Mapping[str, str] | None = None,
    microphone: str | None = None,
    camera: str = "picamera",
    camera_input_format: str = "mjpeg",
    display: bool = False,
    display_size: tuple[int, int] | None = None,
) -> Board:
    """A Raspberry Pi: GPIO devices as ``io`` wires them, ALSA speakers and microphone, a camera.

    GPIO devices are on gpiozero's pin factory for this Pi (lgpio on a Pi 5, RPi.GPIO before);
    speakers map a logical name to a PCM name, e.g. ``{"speaker": "default", "handset":
    "plughw:CARD=Headset,DEV=0"}``.

    ``camera``: ``picamera`` / ``picamera:N`` (libcamera through picamera2, hardware H.264
    where the Pi has an encoder) or ``/dev/videoN`` (a USB camera through PyAV, in
    ``camera_input_format``); ``""`` for none. Nothing is opened here: devices open when
    a call or a tone first uses them.
    """
    from hal.alsa_audio import alsa_devices

    alsa_speakers, alsa_microphones = alsa_devices(speakers or {}, microphone)
    return Board(
        name=name,
        cameras=MappingProxyType(_pi_cameras(camera, camera_input_format)),
        microphones=MappingProxyType(dict(alsa_microphones)),
        speakers=MappingProxyType(dict(alsa_speakers)),
        io=build_io(io or IoSpec()),
        display=_kms_display(display_size) if display else None,
    )


def _kms_display(size: tuple[int, int] | None) -> KmsDisplay:
    return KmsDisplay(*size) if size is not None else KmsDisplay()


def _pi_cameras(camera: str, input_format: str) -> dict[str, Camera]:
    if not camera:
        return {}
    if camera.startswith("picamera"):
        from hal.picamera import PiCamera

        number = int(camera.partition(":")[2] or 0)
        return {camera: PiCamera(camera, camera_num=number)}
    if camera.startswith("/dev/video"):
        from hal.v4l2_camera import V4l2Camera

        return {camera: V4l2Camera(camera, camera, input_format=input_format)}
    raise HalError(f"unknown camera {camera!r}: 'picamera', 'picamera:N' or '/dev/videoN'")


def board_factories() -> Mapping[str, Callable[..., Board]]:
    """The board kinds this build knows, each with the factory that builds it."""
    return MappingProxyType({"sim": build_sim_board, "pi": build_pi_board})


def build_board(kind: str, **options: Any) -> Board:
    """Build the board ``kind`` with ``options``; HalError for unknown kinds or options."""
    factories = board_factories()
    try:
        factory = factories[kind]
    except KeyError:
        known = ", ".join(repr(name) for name in sorted(factories))
        raise HalError(f"unknown board {kind!r} (known: {known})") from None
    try:
        inspect.signature(factory).bind(**options)
    except TypeError as err:
        raise HalError(f"bad options for board {kind!r}: {err}") from err
    return factory(**options)
