"""Checks of ``callbox.toml`` that involve several keys.

Each key's own checks are in `device.config._models`. Every rule yields (dotted key path, reason)
for the key to change.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from device.config._access import access_problems
from device.config._entrance import entrance_pin_users, entrance_problems
from device.config._models import I2C_PINS, GpioProximityConfig, I2cProximityConfig
from device.config._panel import bell_pins, panel_problems
from device.config._rtsp import rtsp_problems
from device.config._sensors import sensor_pins, sensor_problems
from services.addresses import is_loopback
from services.callapi.properties import VIDEO_BITRATE_RANGE_KBPS
from services.callapi.status import VideoCodec

if TYPE_CHECKING:
    from device.config._file import CallboxConfig

Problems = Iterator[tuple[str, str]]

SIM_CAMERAS = ("main", "aux")


def cross_field_problems(config: CallboxConfig) -> list[tuple[str, str]]:
    """Every cross-field problem of `config`, in file order."""
    rules: tuple[Callable[[CallboxConfig], Problems], ...] = (
        _targets,
        _broker,
        _contacts,
        _pins,
        _relay,
        _proximity,
        _board,
        _display,
        _call,
        _ice_servers,
        _push,
        _homeassistant,
        rtsp_problems,
        sensor_problems,
        access_problems,
        entrance_problems,
        panel_problems,
        _system,
    )
    return [problem for rule in rules for problem in rule(config)]


def _targets(config: CallboxConfig) -> Problems:
    if config.role == "door" and not config.targets:
        yield "targets", "a door station needs at least one address to ring"
    for index, target in enumerate(config.targets):
        if target == config.address:
            yield f"targets.{index}", f"{target!r} is this endpoint's own address"
        elif target in config.targets[:index]:
            yield f"targets.{index}", f"{target!r} is listed twice"
        elif target.startswith("flat:") and config.role != "door":
            yield f"targets.{index}", f"{target!r}: a flat is a ring group of a door station"
        elif target.startswith("flat:") and not config.directory.admin_key:
            yield (
                f"targets.{index}",
                f"{target!r} needs the site directory: set directory.admin_key",
            )


def _broker(config: CallboxConfig) -> Problems:
    broker = config.broker
    if broker.password and broker.password_file:
        yield "broker.password_file", "set either password or password_file, not both"
    if broker.tls_ca and not broker.tls:
        yield "broker.tls_ca", "is set but tls = false; set tls = true to use it"
    if not is_loopback(broker.host):
        if not broker.tls:
            yield (
                "broker.tls",
                f"false would send this unit's broker password in clear to {broker.host}: plain "
                "MQTT only to a broker on this machine (127.0.0.1); set tls = true and tls_ca",
            )
        elif not broker.tls_ca:
            yield (
                "broker.tls_ca",
                f"is required to reach the broker at {broker.host}: TLS is verified against the "
                "site CA alone. Copy ca.crt from the unit that hosts the broker (`callbox ca "
                "show` there prints where it is and its fingerprint) and give its path here",
            )
    if broker.websockets_port and broker.websockets_port == broker.port:
        yield "broker.websockets_port", f"is the same port as broker.port ({broker.port})"


def _contacts(config: CallboxConfig) -> Problems:
    seen: dict[str, int] = {}
    for index, contact in enumerate(config.contact_entries):
        if contact.address == config.address:
            yield f"contacts.{index}.address", f"{contact.address!r} is this endpoint itself"
        elif contact.address in seen:
            yield (
                f"contacts.{index}.address",
                f"{contact.address!r} is already contacts.{seen[contact.address]}",
            )
        seen.setdefault(contact.address, index)


def _pin_users(config: CallboxConfig) -> Iterator[tuple[str, str]]:
    """(key, GPIO name) of every pin the configuration uses, in file order."""
    for role, button in config.inputs.wired().items():
        yield f"inputs.{role}.pin", button.pin
    if config.relay is not None:
        yield "relay.pin", config.relay.pin
    for name, led in config.leds.items():
        yield f"leds.{name}.pin", led.pin
    yield from bell_pins(config)
    prox = config.proximity
    if isinstance(prox, GpioProximityConfig):
        yield "proximity.pin", prox.pin
    elif isinstance(prox, I2cProximityConfig):
        for pin in I2C_PINS.get(prox.bus, ()):
            yield "proximity.bus", pin
    yield from sensor_pins(config)
    yield from entrance_pin_users(config)


def _is_bus(key: str) -> bool:
    """A key whose pins are a shared bus (I2C, SPI0): devices on the bus share them."""
    return key.endswith((".bus", ".interface"))


def _pins(config: CallboxConfig) -> Problems:
    owners: dict[str, str] = {}
    for key, pin in _pin_users(config):
        owner = owners.get(pin)
        if owner is not None and owner != key and not (_is_bus(owner) and _is_bus(key)):
            yield key, f"{pin} is already used by {owner}"
        owners.setdefault(pin, key)


def _relay(config: CallboxConfig) -> Problems:
    relay = config.relay
    if relay is not None and relay.pulse_ms > relay.max_on_ms:
        yield (
            "relay.pulse_ms",
            f"{relay.pulse_ms} is longer than relay.max_on_ms ({relay.max_on_ms})",
        )


def _proximity(config: CallboxConfig) -> Problems:
    prox = config.proximity
    if isinstance(prox, I2cProximityConfig) and prox.hysteresis >= prox.near_threshold:
        yield (
            "proximity.hysteresis",
            f"must be smaller than proximity.near_threshold ({prox.near_threshold})",
        )


PI_CAMERA = re.compile(r"picamera(:\d)?|/dev/video\d{1,2}")


def _board(config: CallboxConfig) -> Problems:
    if config.gpio.pin_factory == "mock" and config.board != "sim":
        yield "gpio.pin_factory", "'mock' simulates the pins and is only allowed with board = 'sim'"
    device = config.camera.device
    if config.board == "sim" and device and device not in SIM_CAMERAS:
        yield "camera.device", f"the sim board has cameras {' and '.join(map(repr, SIM_CAMERAS))}"
    if config.board == "pi" and device and not PI_CAMERA.fullmatch(device):
        yield (
            "camera.device",
            (f"{device!r} is not a Pi camera: 'picamera', 'picamera:N' or '/dev/videoN'"),
        )


MIN_DISPLAY_SIZE = 64


def _display(config: CallboxConfig) -> Problems:
    display = config.display
    if display is None:
        return
    if config.role == "door" and display.enabled:
        yield "display.enabled", "a door station shows no call UI; remove [display]"
    if (display.width == 0) != (display.height == 0):
        missing = "height" if display.height == 0 else "width"
        yield (
            f"display.{missing}",
            "set width and height together (or neither: the panel's own size)",
        )
    for key, value in (("width", display.width), ("height", display.height)):
        if 0 < value < MIN_DISPLAY_SIZE:
            yield f"display.{key}", f"{value} is too small: at least {MIN_DISPLAY_SIZE} pixels"


def _call(config: CallboxConfig) -> Problems:
    call = config.call
    low, high = VIDEO_BITRATE_RANGE_KBPS[VideoCodec[call.codec]]
    if not low <= call.bitrate_kbps <= high:
        yield (
            "call.bitrate_kbps",
            f"{call.bitrate_kbps} is outside {low}..{high}, the range of the {call.codec} encoder",
        )


def _ice_servers(config: CallboxConfig) -> Problems:
    """TURN credentials come in pairs and only with a TURN URL; at most one STUN and one TURN URL.

    aiortc uses one STUN and one TURN URL (the first of each) and silently drops the others, so a
    second is refused.
    """
    first: dict[str, str] = {}
    for index, server in enumerate(config.network.ice_servers):
        key = f"network.ice_servers.{index}"
        turn = any(not url.startswith("stun:") for url in server.urls)
        if server.username and not server.credential:
            yield f"{key}.credential", "is required with username (TURN credentials)"
        elif server.credential and not server.username:
            yield f"{key}.username", "is required with credential (TURN credentials)"
        elif turn and not server.username:
            yield f"{key}.username", "a turn: or turns: server needs username and credential"
        elif server.username and not turn:
            yield f"{key}.username", "is only used by turn: and turns: servers; remove it"
        for number, url in enumerate(server.urls):
            kind = "stun:" if url.startswith("stun:") else "turn: or turns:"
            if kind in first:
                reason = f"only the first {kind} URL is used ({first[kind]}); aiortc drops the rest"
                yield f"{key}.urls.{number}", reason
            first.setdefault(kind, f"{key}.urls.{number}")


def _push(config: CallboxConfig) -> Problems:
    push = config.push
    if push.vapid_key and config.role != "door":
        yield "push.vapid_key", "only a door station sends Web Push; remove [push] here"
    if push.vapid_key and not push.subject:
        yield (
            "push.subject",
            "is required with push.vapid_key: push services refuse a VAPID token without a "
            "contact, e.g. 'mailto:admin@example.org'",
        )


def _homeassistant(config: CallboxConfig) -> Problems:
    """HA's broker: where, how to log in, and a door button only on a door station."""
    ha = config.homeassistant
    if ha.password and ha.password_file:
        yield "homeassistant.password_file", "set either password or password_file, not both"
    if ha.tls_ca and not ha.tls:
        yield "homeassistant.tls_ca", "is set but tls = false; set tls = true to use it"
    if (ha.password or ha.password_file) and not ha.username:
        yield "homeassistant.username", "is required with a password"
    if not ha.enabled:
        return
    if not ha.host:
        yield "homeassistant.host", "is required with enabled = true: the host of HA's broker"
    elif ha.door_release and not ha.tls and not is_loopback(ha.host):
        yield (
            "homeassistant.tls",
            f"false with door_release = true: whoever reads the password on the way to "
            f"{ha.host} can open the door. Set tls = true (HA's Mosquitto add-on listens for "
            "TLS on 8883), or door_release = false",
        )
    if ha.door_release and config.role != "door":
        yield "homeassistant.door_release", "only a door station has a door to open"


def _system(config: CallboxConfig) -> Problems:
    """Wi-Fi: a password from one place, the radio's country, each network once."""
    system = config.system
    if system.wifi and not system.wifi_country:
        yield (
            "system.wifi_country",
            "is required with [[system.wifi]]: the radio's two-letter country, e.g. 'DE'",
        )
    seen: dict[str, int] = {}
    for index, wifi in enumerate(system.wifi):
        key = f"system.wifi.{index}"
        if wifi.psk and wifi.psk_file:
            yield f"{key}.psk_file", "set either psk or psk_file, not both"
        elif wifi.open and (wifi.psk or wifi.psk_file):
            yield f"{key}.open", "an open network has no psk or psk_file; remove one"
        elif not wifi.open and not (wifi.psk or wifi.psk_file):
            yield f"{key}.psk", "is required (or psk_file; open = true for a network without one)"
        if wifi.ssid in seen:
            yield f"{key}.ssid", f"{wifi.ssid!r} is already system.wifi.{seen[wifi.ssid]}"
        seen.setdefault(wifi.ssid, index)
