"""What the simulator page shows of each unit, and what its controls do to the unit.

Everything here runs on the event loop of the site (the HTTP thread marshals each request
to it), except :func:`jpeg_of_frame` and :meth:`SimulatorControls.display_jpeg`, which
encode pictures in the HTTP thread so the loop never waits for a JPEG encoder.

The controls act only where a person would: a button is a press of its gpiozero
MockFactory pin (driven active for ``PRESS_S``, longer than the 50 ms ``min_press_ms``
that filters phantom rings), the hook switch and the proximity sensor are pin levels held
until changed again, and a tap on the indoor screen goes to the display's touch input.
An entrance panel's keypad and card readers are the sim board's ``SimKeypad`` and
``SimCardReader``s (what the HAL builds from ``[keypad]`` and ``[[card_readers]]`` on a
sim board); its door contact and tamper switch are MockFactory pins held like the hook.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import time
from collections.abc import Mapping
from typing import Any, Protocol

import av

from device.daemon import DeviceApp, Endpoint
from device.simulator._phone import SimPhone
from hal.audio import RecordingSpeaker, ToneMicrophone
from hal.cards import CARD_FORMATS, CardRead, SimCardReader
from hal.display import SimDisplay
from hal.errors import CallboxError
from hal.gpio_specs import ButtonRole
from hal.inputs import GpioButton
from hal.keypad import SimKeypad
from hal.leds import GpioLed
from hal.proximity import GpioProximitySensor
from hal.relay import GpioRelay
from hal.switches import GpioSwitch
from services.callapi import AudioDevice

_log = logging.getLogger(__name__)

PRESS_S = 0.15
"""How long a click holds a button pin active (a person's short press)."""
LEVEL_WINDOW_MS = 100
"""The meters show the RMS level of the last this many milliseconds."""
LEVEL_HOLD_S = 0.3
"""A speaker or microphone that did nothing for this long reads 0."""
CAMERA_WAIT_S = 0.5
"""How long the door's camera picture may take (it comes from the running call)."""
TOGGLES = ("hook", "proximity", "door_contact", "tamper")
"""Inputs that stay where they are put: the handset's hook switch, the proximity sensor, and
a door station's door contact (active = the door is open) and tamper switch (active = the
housing is open)."""
PANEL_KEYS = "0123456789*#"
"""The keys of the page's keypad (a 3x4 entrance keypad)."""
MAX_KEYS = 16
"""Keys in one ``/api/keypad`` request."""
MAX_CARD = 64
"""Characters of a card in one ``/api/card`` request."""
BUTTONS = tuple(role.value for role in ButtonRole if role != ButtonRole.HOOK)
"""Push buttons a click presses (every role but the hook switch)."""


class SimulatorRequestError(CallboxError):
    """A request the simulator refuses; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class _Alarms(Protocol):
    """What the simulator uses of a unit's alarms (a door's, or an indoor unit's inbox)."""

    def status(self) -> list[dict[str, Any]]: ...


class _Ui(Protocol):
    """What the simulator uses of services.ui.DefaultCallUi."""

    screen: str
    status_text: str


def display_of(endpoint: Endpoint) -> SimDisplay | None:
    """The board's simulated display (``board.display``), None on a door station."""
    display = endpoint.board.display
    return display if isinstance(display, SimDisplay) else None


def ui_of(endpoint: Endpoint) -> _Ui | None:
    """The default call UI of an indoor unit (``endpoint.ui``), None without one."""
    ui: _Ui | None = getattr(endpoint, "ui", None)
    return ui


def jpeg_of_frame(frame: av.VideoFrame, quality: int = 5) -> bytes:
    """``frame`` as one JPEG picture (PyAV's MJPEG encoder; ``quality`` 2 best .. 31)."""
    codec = av.CodecContext.create("mjpeg", "w")
    codec.width, codec.height = frame.width, frame.height
    codec.pix_fmt = "yuvj420p"
    codec.options = {"qmin": str(quality), "qmax": str(quality)}
    picture = frame.reformat(format="yuvj420p")
    packets = [*codec.encode(picture), *codec.encode(None)]
    return b"".join(bytes(packet) for packet in packets)


class SimulatorControls:
    """The units of a running site as the page sees and drives them (by address)."""

    def __init__(self, apps: Mapping[str, DeviceApp], *, phone: SimPhone | None = None) -> None:
        """``apps``: the site's device apps by address (a door station and indoor units).

        ``phone``: the browser phone, when the site has one.
        """
        self._apps = apps
        self.phone = phone
        self._pressing: set[tuple[str, str]] = set()

    # reading --------------------------------------------------------------------------------

    @property
    def units(self) -> list[str]:
        """The addresses of the units, in site order."""
        return list(self._apps)

    def endpoint(self, unit: object) -> Endpoint:
        """The running endpoint of ``unit``; SimulatorRequestError naming the known ones."""
        if not isinstance(unit, str) or unit not in self._apps:
            known = ", ".join(repr(u) for u in self._apps)
            raise SimulatorRequestError(f"unknown unit {unit!r} (units: {known})")
        endpoint = self._apps[unit].endpoint
        if endpoint is None:
            raise SimulatorRequestError(f"unit {unit!r} is not running", status=503)
        return endpoint

    def state(self) -> dict[str, Any]:
        """Every unit's state, JSON-ready: ``{"units": {address: unit_state}, "phone": ...}``."""
        phone = self.phone
        return {
            "at": round(time.time(), 3),
            "units": {unit: self.unit_state(unit) for unit in self._apps},
            "phone": None if phone is None else {"url": phone.url, "paired": phone.paired},
        }

    def unit_state(self, unit: str) -> dict[str, Any]:
        """One unit: its call, screen, buttons, toggles, LEDs, relay and audio levels."""
        app = self._apps[unit]
        endpoint = self.endpoint(unit)
        io_state = endpoint.board.io.state()
        return {
            "address": unit,
            "name": app.config.name,
            "role": app.config.role,
            "call": self._call_state(endpoint),
            "ui": self._ui_state(endpoint),
            "screen": self._screen_state(unit, endpoint),
            "buttons": io_state["buttons"],
            "inputs": self._toggle_state(endpoint),
            "backlight_on": io_state["backlight_on"],
            "leds": self._led_state(endpoint),
            "relay": self._relay_state(endpoint),
            "audio": self._audio_state(endpoint),
            "missed_calls": endpoint.calls.missed_calls,
            "alarms": self._alarm_state(endpoint),
            "panel": self._panel_state(endpoint),
        }

    def _call_state(self, endpoint: Endpoint) -> dict[str, Any] | None:
        call = endpoint.calls.active_call
        if call is None or call.is_ended():
            return None
        return {
            "status": call.status.name,
            "peer": call.peer.address,
            "incoming": call.is_incoming(),
            "answered": call.is_answered(),
            "video": call.is_video_call(),
            "duration_s": round(call.duration(), 1),
            "muted": call.get_mute_status(audio=True, video=False),
            "audio_device": AudioDevice(endpoint.calls.audio_device).name.lower(),
            "bell": None if call.props.bell is None else dataclasses.asdict(call.props.bell),
        }

    @staticmethod
    def _alarm_state(endpoint: Endpoint) -> list[dict[str, Any]]:
        """The unit's active alarms (a door's own, an indoor unit's doors'), oldest first."""
        alarms: _Alarms | None = getattr(endpoint.service, "alarms", None)
        return [] if alarms is None else alarms.status()

    @staticmethod
    def _panel_state(endpoint: Endpoint) -> dict[str, Any] | None:
        """A door station's entrance panel; None without a keypad, reader, bell or sensor.

        ``entry`` is what the panel's display may show of the keys typed (dots, never a
        digit); ``access`` is the door's ``access`` status (lockouts, last attempts).
        """
        io = endpoint.board.io
        settings = endpoint.service.settings
        wired = io.door_contact.wired or io.tamper.wired
        if settings.role != "door" or not (
            io.keypad is not None or io.card_readers or settings.panel.bells or wired
        ):
            return None
        part = endpoint.entrance
        entry = ""
        if part is not None and part.entrance.keypad is not None:
            entry = part.entrance.entry.shown(part.entrance.clock())
        state = io.state()
        return {
            "keypad": None if io.keypad is None else io.keypad.name,
            "entry": entry,
            "card_readers": sorted(io.card_readers),
            "bells": [
                {"name": bell.name, "label": bell.label or bell.name, "code": bell.code}
                for bell in settings.bells().values()
            ],
            "door_open": state["door_open"],
            "tampered": state["tampered"],
            "access": None if part is None else part.status(),
        }

    def _ui_state(self, endpoint: Endpoint) -> dict[str, Any] | None:
        ui = ui_of(endpoint)
        if ui is None:
            return None
        return {"screen": ui.screen, "status_text": ui.status_text}

    def _screen_state(self, unit: str, endpoint: Endpoint) -> dict[str, Any]:
        display = display_of(endpoint)
        if display is not None:
            width, height = display.size
            return {
                "kind": "display",
                "frames": display.frames_shown,
                "width": width,
                "height": height,
                "blank": display.blank,
            }
        if self._apps[unit].config.role == "door" and self._camera_live(endpoint):
            camera = endpoint.calls.media.camera
            assert camera is not None
            fmt = camera.format
            return {
                "kind": "camera",
                "frames": int(getattr(camera.camera, "frames_captured", 0)),
                "width": fmt.width,
                "height": fmt.height,
                "blank": False,
            }
        return {"kind": "none", "frames": 0, "width": 0, "height": 0, "blank": True}

    @staticmethod
    def _camera_live(endpoint: Endpoint) -> bool:
        """The camera runs for a video call (it is not opened just to be watched here)."""
        call = endpoint.calls.active_call
        return (
            endpoint.calls.media.camera is not None
            and call is not None
            and not call.is_ended()
            and call.is_video_call()
        )

    @staticmethod
    def _toggle_state(endpoint: Endpoint) -> dict[str, Any]:
        """Where the switches are (pin levels) and what the unit made of them."""
        io = endpoint.board.io
        hook = io.button(ButtonRole.HOOK)
        off_hook = False
        if isinstance(hook, GpioButton):
            level = bool(io.pin_factory.pin(hook.spec.pin).state)
            off_hook = level != hook.spec.pull_up
        near = False
        sensor = io.proximity
        if isinstance(sensor, GpioProximitySensor):
            level = bool(io.pin_factory.pin(sensor.spec.pin).state)
            near = level != sensor.spec.near_when_low
        return {
            "off_hook": off_hook,  # the hook switch's position
            "hook_pressed": hook is not None and hook.is_pressed,  # counted by the unit
            "near": near,  # the proximity pin's level
            "sensor_near": sensor.is_near,  # what the sensor reports
        }

    @staticmethod
    def _led_state(endpoint: Endpoint) -> dict[str, Any]:
        leds: dict[str, Any] = {}
        for name, led in endpoint.board.io.leds.items():
            lit = led.is_lit if isinstance(led, GpioLed) else False
            leds[name] = {"pattern": led.pattern.value, "lit": lit}
        return leds

    @staticmethod
    def _relay_state(endpoint: Endpoint) -> dict[str, Any] | None:
        relay = endpoint.board.io.relay
        if not isinstance(relay, GpioRelay):
            return None
        pin = endpoint.board.io.pin_factory.pin(relay.spec.pin)
        levels = [bool(s.state) == relay.spec.active_high for s in pin.states]
        pulses = sum(1 for before, after in itertools.pairwise(levels) if after and not before)
        return {
            "active": relay.is_active,
            "pulses": pulses,
            "pulse_ms": round(relay.pulse_s * 1000),
            "pin": relay.spec.pin,
        }

    @staticmethod
    def _audio_state(endpoint: Endpoint) -> dict[str, Any]:
        now = time.monotonic()
        levels: dict[str, Any] = {}
        for name, speaker in endpoint.board.speakers.items():
            if isinstance(speaker, RecordingSpeaker):
                playing = (
                    speaker.last_played_at is not None
                    and now - speaker.last_played_at < LEVEL_HOLD_S
                )
                level = speaker.rms(LEVEL_WINDOW_MS) if playing else 0.0
                levels[name] = {"kind": "speaker", "level": round(level, 4), "active": playing}
        for name, microphone in endpoint.board.microphones.items():
            if isinstance(microphone, ToneMicrophone):
                at = microphone.last_captured_at
                capturing = at is not None and now - at < LEVEL_HOLD_S
                level = microphone.last_rms if capturing else 0.0
                levels[f"microphone-{name}"] = {
                    "kind": "microphone",
                    "level": round(level, 4),
                    "active": capturing,
                }
        return levels

    # pictures -------------------------------------------------------------------------------

    def display_of_unit(self, unit: str) -> SimDisplay | None:
        """The simulated display of ``unit`` (checked), None when it has none."""
        return display_of(self.endpoint(unit))

    async def camera_frame(self, unit: str) -> av.VideoFrame | None:
        """The latest picture of a door station's camera while a video call runs it."""
        endpoint = self.endpoint(unit)
        camera = endpoint.calls.media.camera
        if self._apps[unit].config.role != "door" or camera is None:
            return None
        if not self._camera_live(endpoint):
            return None
        try:
            _, frame = await asyncio.wait_for(camera.shared.next_frame(0), CAMERA_WAIT_S)
        except TimeoutError:
            return None
        return frame if isinstance(frame, av.VideoFrame) else None

    # acting ---------------------------------------------------------------------------------

    def _button(self, endpoint: Endpoint, unit: str, name: object) -> GpioButton:
        if not isinstance(name, str) or name not in BUTTONS:
            raise SimulatorRequestError(
                f"unknown button {name!r} (buttons: {', '.join(BUTTONS)}; "
                f"the hook switch and proximity sensor are set with /api/set)"
            )
        button = endpoint.board.io.button(ButtonRole(name))
        if not isinstance(button, GpioButton):
            raise SimulatorRequestError(f"unit {unit!r} has no {name} button")
        return button

    async def press(self, unit: object, name: object) -> None:
        """Press ``unit``'s button ``name`` like a person: active for ``PRESS_S``, released."""
        endpoint = self.endpoint(unit)
        assert isinstance(unit, str)
        button = self._button(endpoint, unit, name)
        key = (unit, button.role.value)
        if key in self._pressing:
            raise SimulatorRequestError(
                f"the {button.role.value} button of {unit!r} is being pressed", status=409
            )
        pin = endpoint.board.io.pin_factory.pin(button.spec.pin)
        self._pressing.add(key)
        try:
            _log.info("simulator: pressing %s's %s button", unit, button.role.value)
            _drive(pin, active_low=button.spec.pull_up, active=True)
            await asyncio.sleep(PRESS_S)  # the press itself: the pin held active
        finally:
            _drive(pin, active_low=button.spec.pull_up, active=False)
            self._pressing.discard(key)

    async def set_input(self, unit: object, name: object, active: object) -> None:
        """Put the hook switch (active = off the hook) or proximity sensor (active = near)."""
        endpoint = self.endpoint(unit)
        if name not in TOGGLES:
            raise SimulatorRequestError(
                f"unknown input {name!r} (inputs: {', '.join(TOGGLES)}; "
                "buttons are pressed with /api/press)"
            )
        if not isinstance(active, bool):
            raise SimulatorRequestError(f"'active' must be true or false, got {active!r}")
        io = endpoint.board.io
        if name in ("door_contact", "tamper"):
            switch = getattr(io, name)
            what = name.replace("_", " ")
            if not isinstance(switch, GpioSwitch):
                raise SimulatorRequestError(f"unit {unit!r} has no {what} wired")
            pin = io.pin_factory.pin(switch.spec.pin)
            _drive(pin, active_low=not switch.spec.active_high, active=active)
            _log.info("simulator: %s's %s %s", unit, what, "open" if active else "closed")
            return
        if name == "hook":
            hook = io.button(ButtonRole.HOOK)
            if not isinstance(hook, GpioButton):
                raise SimulatorRequestError(f"unit {unit!r} has no hook switch")
            pin = io.pin_factory.pin(hook.spec.pin)
            _drive(pin, active_low=hook.spec.pull_up, active=active)
            _log.info("simulator: %s's handset %s", unit, "lifted" if active else "put back")
            return
        sensor = io.proximity
        if not isinstance(sensor, GpioProximitySensor):
            raise SimulatorRequestError(f"unit {unit!r} has no GPIO proximity sensor")
        pin = io.pin_factory.pin(sensor.spec.pin)
        _drive(pin, active_low=sensor.spec.near_when_low, active=active)
        _log.info("simulator: %s's proximity sensor %s", unit, "near" if active else "far")

    def keypad(self, unit: object, keys: object) -> None:
        """Press ``keys`` (e.g. ``"12#"``) on ``unit``'s keypad, one after the other."""
        endpoint = self.endpoint(unit)
        keypad = endpoint.board.io.keypad
        if not isinstance(keypad, SimKeypad):
            raise SimulatorRequestError(f"unit {unit!r} has no keypad")
        if not isinstance(keys, str) or not 1 <= len(keys) <= MAX_KEYS:
            raise SimulatorRequestError(
                f"'keys' must be a string of 1 to {MAX_KEYS} keys, got a {type(keys).__name__}"
                + (f" of {len(keys)}" if isinstance(keys, str) else "")
            )
        bad = sorted(set(keys) - set(PANEL_KEYS))
        if bad:  # named alone: the rest may be someone's access code
            raise SimulatorRequestError(
                f"no key {', '.join(map(repr, bad))} on the keypad (keys: 0-9, * and #)"
            )
        _log.info("simulator: %d key(s) pressed on %s's keypad", len(keys), unit)
        keypad.press(keys)

    def card(self, unit: object, reader: object, card: object) -> None:
        """Present ``card`` (``<format>:<number>``, e.g. ``wiegand26:12:34567``) to ``reader``."""
        endpoint = self.endpoint(unit)
        readers = endpoint.board.io.card_readers
        if not readers:
            raise SimulatorRequestError(f"unit {unit!r} has no card reader")
        if not isinstance(reader, str) or reader not in readers:
            known = ", ".join(repr(name) for name in sorted(readers))
            raise SimulatorRequestError(f"unknown card reader {reader!r} (readers: {known})")
        sim_reader = readers[reader]
        if not isinstance(sim_reader, SimCardReader):
            raise SimulatorRequestError(f"card reader {reader!r} is not simulated")
        example = "'<format>:<number>', e.g. 'wiegand26:12:34567'"
        if not isinstance(card, str) or not 0 < len(card) <= MAX_CARD or ":" not in card:
            raise SimulatorRequestError(f"'card' must be {example} (formats: {CARD_FORMATS})")
        card_format, _, number = card.partition(":")
        try:
            CardRead(reader, card_format, number)
        except ValueError as err:
            raise SimulatorRequestError(f"card: {err}") from err
        _log.info("simulator: card %s presented to %s's reader %s", card, unit, reader)
        sim_reader.present(card_format, number)

    def touch(self, unit: object, x: object, y: object) -> None:
        """A tap at pixel (x, y) of ``unit``'s screen."""
        endpoint = self.endpoint(unit)
        display = display_of(endpoint)
        if display is None:
            raise SimulatorRequestError(f"unit {unit!r} has no touch screen")
        width, height = display.size
        for axis, value, limit in (("x", x, width), ("y", y, height)):
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < limit:
                raise SimulatorRequestError(
                    f"'{axis}' must be an integer pixel in 0..{limit - 1}, got {value!r}"
                )
        assert isinstance(x, int) and isinstance(y, int)
        _log.info("simulator: touch at (%d, %d) on %s's screen", x, y, unit)
        display.touch(x, y)


def _drive(pin: Any, *, active_low: bool, active: bool) -> None:
    """Drive a MockFactory input pin to its active or idle level."""
    if active == active_low:
        pin.drive_low()
    else:
        pin.drive_high()
