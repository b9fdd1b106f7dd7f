"""The sections of ``callbox.toml`` as frozen pydantic models, one per TOML table.

Every model refuses unknown keys and values of the wrong TOML type (no "30" for 30, no 1 for
true). Value checks that need one field live here; checks across fields live in
`device.config._rules`.
`docs/callbox.example.toml` shows every key with its default.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import datetime, time
from typing import Annotated, Any, ClassVar, Final, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    Tag,
)

from device.config._apply import Apply
from services.push.hosts import DEFAULT_PUSH_HOSTS, HostRule
from services.signaling.identity import KEY_SIZE, b64u_decode

BOARD_TO_BCM: Final = {
    3: 2, 5: 3, 7: 4, 8: 14, 10: 15, 11: 17, 12: 18, 13: 27, 15: 22, 16: 23, 18: 24, 19: 10,
    21: 9, 22: 25, 23: 11, 24: 8, 26: 7, 27: 0, 28: 1, 29: 5, 31: 6, 32: 12, 33: 13, 35: 19,
    36: 16, 37: 26, 38: 20, 40: 21,
}  # fmt: skip
"""Physical pin of the 40-pin header -> BCM GPIO number (the other header pins are power)."""

I2C_PINS: Final = {1: ("GPIO2", "GPIO3")}
"""The GPIOs an I2C bus occupies on the header (SDA, SCL)."""

CHIP_ADDRESSES: Final = {"vcnl4010": 0x13, "vcnl4040": 0x60}
"""Fixed I2C address of each supported proximity chip."""

DAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
_PIN = re.compile(r"(GPIO|BCM|BOARD|J8:)?(\d{1,2})", re.IGNORECASE)
_RANGE = re.compile(r"([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)")
_INTERFACE = re.compile(r"[A-Za-z0-9_.:-]{1,15}")
# What aiortc's STUN_REGEX/TURN_REGEX parse and its ICE gatherer then uses: a host name or
# IPv4 address (aiortc cannot parse an IPv6 literal), a port, for turn: the transport.
_ICE_URL = re.compile(
    r"(?P<scheme>stun|turn|turns):(?P<host>[A-Za-z0-9.-]+)(?::(?P<port>\d{1,5}))?"
    r"(?:\?transport=(?P<transport>[a-z]+))?"
)
ICE_TRANSPORTS: Final[dict[str, tuple[str | None, ...]]] = {
    "stun": (None,),
    "turn": (None, "udp", "tcp"),
    "turns": (None, "tcp"),
}
"""The transports aiortc uses per scheme (None: the default, udp for turn:, tcp for turns:);
it silently skips a server with any other."""


def _name(value: str) -> str:
    if not _NAME.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a valid name: 1 to 32 lowercase letters, digits, '_' or '-', "
            "starting with a letter or digit"
        )
    return value


_FLAT = re.compile(r"[A-Za-z0-9_.-]{1,32}")
FLAT_TARGET_PREFIX = "flat:"
"""A door's target ``flat:<flat>`` rings that flat's indoor units and phones (site directory)."""


def _target(value: str) -> str:
    if value.startswith(FLAT_TARGET_PREFIX):
        if not _FLAT.fullmatch(value.removeprefix(FLAT_TARGET_PREFIX)):
            raise ValueError(
                f"{value!r}: a flat is 1 to 32 letters, digits, '_', '.' or '-' after 'flat:'"
            )
        return value
    return _name(value)


def _text(value: str) -> str:
    if len(value) > 64:
        raise ValueError(f"is {len(value)} characters long; at most 64 are allowed")
    if any(not char.isprintable() for char in value):
        raise ValueError("must not contain control characters (tabs, new lines, ...)")
    return value


def _word(value: str) -> str:
    if (
        not value
        or len(value) > 128
        or any(char.isspace() or not char.isprintable() for char in value)
    ):
        raise ValueError(f"{value!r} must be 1 to 128 characters without spaces")
    return value


def _word_or_empty(value: str) -> str:
    return _word(value) if value else value


def _device_name(value: str) -> str:
    if value and ("/" in value or value in (".", "..")):
        raise ValueError(f"{value!r} must be a device name under sysfs_root, not a path")
    return _word_or_empty(value)


def _absolute_path(value: str) -> str:
    if not value.startswith("/") or "\0" in value:
        raise ValueError(f"{value!r} must be an absolute path (starting with '/')")
    return value


def _path_or_empty(value: str) -> str:
    return _absolute_path(value) if value else value


def pin_number(pin: str) -> int:
    """The BCM GPIO number of a gpiozero pin name (``GPIO17``, ``BCM17``, ``BOARD11``, ``17``).

    Raises ValueError with a plain reason for anything that is not a GPIO of the 40-pin header.
    """
    match = _PIN.fullmatch(pin.strip())
    if match is None:
        raise ValueError(f"{pin!r} is not a pin name such as 'GPIO17', 'BOARD11' or '17'")
    prefix, number = (match.group(1) or "GPIO").upper(), int(match.group(2))
    if prefix in ("BOARD", "J8:"):
        if number not in BOARD_TO_BCM:
            raise ValueError(f"{pin!r} is not a GPIO pin of the header (power or ground, or > 40)")
        return BOARD_TO_BCM[number]
    if number > 27:
        raise ValueError(f"{pin!r} is not on the header: GPIO numbers are 0 to 27")
    return number


def _pin(value: object) -> str:
    """Accept a pin name (or a bare BCM number) and return its canonical form ``GPIO<n>``."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise ValueError("must be a pin name such as 'GPIO17'")
    return f"GPIO{pin_number(value)}"


def _public_key(value: str) -> str:
    try:
        raw = b64u_decode(value)
    except ValueError as err:
        raise ValueError(f"is not a base64url public key: {err}") from err
    if len(raw) != KEY_SIZE:
        raise ValueError(f"must decode to {KEY_SIZE} bytes, not {len(raw)}")
    return value


def _public_key_or_empty(value: str) -> str:
    return _public_key(value) if value else value


def _even(value: int) -> int:
    if value % 2:
        raise ValueError(f"must be even (got {value})")
    return value


def _time_range(value: str) -> str:
    match = _RANGE.fullmatch(value)
    if match is None:
        raise ValueError(f"{value!r} is not a time range HH:MM-HH:MM such as '22:00-07:00'")
    if value[:5] == value[6:]:
        raise ValueError(f"{value!r} starts and ends at the same time")
    return value


def _interface(value: str) -> str:
    if not _INTERFACE.fullmatch(value) or value in (".", ".."):
        raise ValueError(
            f"{value!r} is not a network interface name such as 'eth0' or 'wlan0': "
            "1 to 15 letters, digits, '_', '-', '.' or ':'"
        )
    return value


def _ip_address(value: str) -> str:
    """A literal IP address in the form the interfaces report it.

    ``fd00::1``, not ``fd00:0::0001``, so it compares equal to an interface's address.
    """
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address such as '192.168.1.20'") from None
    if address.is_unspecified or address.is_multicast:
        raise ValueError(f"{value!r} is not the address of an interface")
    if isinstance(address, ipaddress.IPv6Address) and (address.is_link_local or address.scope_id):
        raise ValueError(f"{value!r} is link-local or scoped: ICE never offers those")
    return str(address)


def _ice_url(value: str) -> str:
    if "@" in value:  # never echoed: turn:user:secret@host
        raise ValueError("must not contain a user or password; set username and credential")
    match = _ICE_URL.fullmatch(value)
    if match is None:
        raise ValueError(
            f"{value!r} is not a stun:, turn: or turns: URL such as 'stun:stun.example.org', "
            "'turn:turn.example.org:3478?transport=tcp' (host name or IPv4 address)"
        )
    scheme, port, transport = match.group("scheme", "port", "transport")
    if port is not None and not 1 <= int(port) <= 65535:
        raise ValueError(f"{value!r}: the port must be 1 to 65535")
    if transport not in ICE_TRANSPORTS[scheme]:
        allowed = [t for t in ICE_TRANSPORTS[scheme] if t]
        which = f"only transport={' or '.join(allowed)}" if allowed else "no transport"
        raise ValueError(f"{value!r}: a {scheme}: URL takes {which}")
    return value


def _secret(value: str) -> str:
    """Check a password without ever putting it in the reason."""
    if len(value) > 256:
        raise ValueError(f"is {len(value)} characters long; at most 256 are allowed")
    if any(not char.isprintable() for char in value):
        raise ValueError("must not contain control characters (tabs, new lines, ...)")
    return value


_SUBJECT = re.compile(
    r"mailto:[^@\s]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}|https://[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+"
)


def _push_subject(value: str) -> str:
    if value and not _SUBJECT.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a contact push services accept: 'mailto:admin@example.org' or "
            "'https://example.org' (no path)"
        )
    return value


def _push_host(value: str) -> str:
    HostRule.parse(value)  # ValueError with the reason
    return value.strip().lower()


def _not_empty(values: tuple[Any, ...]) -> tuple[Any, ...]:
    """An empty list is refused only once its items are valid.

    pydantic's min_length would also call a list whose every item is wrong empty.
    """
    if not values:
        raise ValueError("must list at least 1")
    return values


def _no_duplicates(values: tuple[Any, ...]) -> tuple[Any, ...]:
    duplicates = sorted({str(v) for v in values if values.count(v) > 1})
    if duplicates:
        raise ValueError(f"lists {', '.join(duplicates)} more than once")
    return values


Name = Annotated[StrictStr, AfterValidator(_name)]
"""An address, site or LED name: ``[a-z0-9][a-z0-9_-]{0,31}``."""
Text = Annotated[StrictStr, AfterValidator(_text)]
Target = Annotated[StrictStr, AfterValidator(_target)]
"""A ring target: an address, or ``flat:<flat>`` (that flat's entries in the site directory)."""
Word = Annotated[StrictStr, AfterValidator(_word)]
OptionalWord = Annotated[StrictStr, AfterValidator(_word_or_empty)]
DeviceName = Annotated[StrictStr, AfterValidator(_device_name)]
AbsolutePath = Annotated[StrictStr, AfterValidator(_absolute_path)]
OptionalPath = Annotated[StrictStr, AfterValidator(_path_or_empty)]
Pin = Annotated[str, BeforeValidator(_pin)]
PublicKey = Annotated[StrictStr, AfterValidator(_public_key)]
Size = Annotated[StrictInt, Field(ge=16, le=4096), AfterValidator(_even)]
Seconds = Annotated[StrictFloat, Field(gt=0, le=3600, allow_inf_nan=False)]
DebounceMs = Annotated[StrictInt, Field(ge=0, le=1000)]
TimeRange = Annotated[StrictStr, AfterValidator(_time_range)]
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
InterfaceName = Annotated[StrictStr, AfterValidator(_interface)]
IpAddress = Annotated[StrictStr, AfterValidator(_ip_address)]
IceUrl = Annotated[StrictStr, AfterValidator(_ice_url)]
Secret = Annotated[StrictStr, AfterValidator(_secret)]
PushSubject = Annotated[StrictStr, AfterValidator(_push_subject)]
PushHost = Annotated[StrictStr, AfterValidator(_push_host)]


class Section(BaseModel):
    """Base of every table: frozen, unknown keys refused, and how a change to it applies."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    APPLY: ClassVar[Apply | None] = None
    """How a running daemon applies a change to any key of this table (`device.config.Apply`);
    None: as the table or key that holds this one declares."""


class BrokerConfig(Section):
    """``[broker]``: the MQTT broker this endpoint signals through.

    ``tls`` (on by default): TLS verified against the site CA in ``tls_ca`` alone, which a
    broker on another machine requires; a broker on this machine (loopback) without ``tls_ca``
    is reached in plain MQTT, which never leaves the machine.
    """

    APPLY = Apply.ENDPOINT
    host: Word = "127.0.0.1"
    port: StrictInt = Field(default=1883, ge=1, le=65535)
    username: StrictStr = ""
    password: StrictStr = ""
    password_file: OptionalPath = ""
    tls: StrictBool = True
    tls_ca: OptionalPath = ""
    websockets_port: StrictInt = Field(default=0, ge=0, le=65535)


class ContactConfig(Section):
    """``[[contacts]]``: a peer with its pinned public keys and rights."""

    APPLY = Apply.LIVE
    address: Name
    name: Text = ""
    role: Literal["", "door", "indoor", "web"] = ""
    sign_key: PublicKey
    dh_key: PublicKey
    rights: Annotated[tuple[Literal["unlock", "monitor"], ...], AfterValidator(_no_duplicates)] = ()
    blocked: StrictBool = False


class DirectoryConfig(Section):
    """``[directory]``: the signed site directory of a building (docs/operations.md).

    ``admin_key``: the site admin's Ed25519 public key (base64url, ``callbox site init``
    prints it); set, the unit trusts the entries of a directory it signs as contacts. ""
    (the default): no directory, ``[[contacts]]`` only (a house).
    """

    APPLY = Apply.ENDPOINT
    admin_key: Annotated[StrictStr, AfterValidator(_public_key_or_empty)] = ""


class ButtonConfig(Section):
    """``[inputs.<role>]``: a push button or switch wired from a GPIO to ground."""

    pin: Pin
    pull_up: StrictBool = True
    debounce_ms: DebounceMs = 20
    min_press_ms: StrictInt = Field(default=50, ge=0, le=10_000)


class InputsConfig(Section):
    """``[inputs]``: one optional table per button role."""

    APPLY = Apply.DEVICES
    doorbell: ButtonConfig | None = None
    answer: ButtonConfig | None = None
    decline: ButtonConfig | None = None
    door_release: ButtonConfig | None = None
    mute: ButtonConfig | None = None
    hook: ButtonConfig | None = None
    monitor: ButtonConfig | None = None

    def wired(self) -> dict[str, ButtonConfig]:
        """The configured buttons by role name."""
        return {
            role: getattr(self, role) for role in type(self).model_fields if getattr(self, role)
        }


class RelayConfig(Section):
    """``[relay]``: the door strike relay."""

    APPLY = Apply.DEVICES
    pin: Pin
    active_high: StrictBool = True
    pulse_ms: StrictInt = Field(default=3000, ge=100, le=60_000)
    max_on_ms: StrictInt = Field(default=10_000, ge=100, le=60_000)


class LedConfig(Section):
    """``[leds.<name>]``: an LED (``status`` shows the call state)."""

    APPLY = Apply.DEVICES
    pin: Pin
    active_high: StrictBool = True


class GpioProximityConfig(Section):
    """``[proximity]`` with ``kind = "gpio"``: a digital proximity sensor on a GPIO."""

    APPLY = Apply.DEVICES
    kind: Literal["gpio"] = "gpio"
    pin: Pin
    near_when_low: StrictBool = True
    pull_up: StrictBool = True
    debounce_ms: DebounceMs = 50


class I2cProximityConfig(Section):
    """``[proximity]`` with ``kind = "i2c"``: a VCNL4010/VCNL4040 on an I2C bus."""

    APPLY = Apply.DEVICES
    kind: Literal["i2c"] = "i2c"
    bus: StrictInt = Field(default=1, ge=0, le=31)
    i2c_address: StrictInt | None = Field(default=None, ge=0x03, le=0x77)
    chip: Literal["vcnl4010", "vcnl4040"] = "vcnl4010"
    near_threshold: StrictInt = Field(default=2000, ge=1, le=65535)
    hysteresis: StrictInt = Field(default=200, ge=0, le=65535)
    poll_ms: StrictInt = Field(default=100, ge=10, le=10_000)

    def address(self) -> int:
        """The configured I2C address, or the chip's fixed one."""
        return CHIP_ADDRESSES[self.chip] if self.i2c_address is None else self.i2c_address


def _proximity_kind(value: object) -> str | None:
    kind = value.get("kind", "gpio") if isinstance(value, dict) else getattr(value, "kind", None)
    return kind if isinstance(kind, str) else None


ProximityConfig = Annotated[
    Annotated[GpioProximityConfig, Tag("gpio")] | Annotated[I2cProximityConfig, Tag("i2c")],
    Discriminator(_proximity_kind),
]
PROXIMITY_KINDS: Final = ("gpio", "i2c")


class BacklightConfig(Section):
    """``[backlight]``: the display backlight in sysfs, switched off while the handset is near."""

    APPLY = Apply.DEVICES
    sysfs_root: AbsolutePath = "/sys/class/backlight"
    device: DeviceName = ""
    brightness: StrictInt = Field(default=-1, ge=-1, le=1_000_000)


class DisplayConfig(Section):
    """``[display]``: the indoor unit's screen and its default call UI.

    ``width``/``height`` 0: the panel's own size (KMS/DRM on a Pi; 800x480 on the sim board).
    On a Pi the call UI is drawn only when this table is present and ``enabled``.
    """

    APPLY = Apply.ENDPOINT
    enabled: StrictBool = True
    width: StrictInt = Field(default=0, ge=0, le=7680)
    height: StrictInt = Field(default=0, ge=0, le=4320)


class GpioConfig(Section):
    """``[gpio]``: which gpiozero pin factory drives the pins."""

    APPLY = Apply.DEVICES
    pin_factory: Literal["default", "lgpio", "rpigpio", "mock"] = "default"


class AudioConfig(Section):
    """``[audio]``: ALSA PCM names ("" = not fitted); the sim board ignores them."""

    APPLY = Apply.ENDPOINT
    speaker: OptionalWord = "default"
    handset: OptionalWord = ""
    headset: OptionalWord = ""
    microphone: OptionalWord = "default"
    echo_cancellation: StrictBool = True
    echo_canceller: Literal["webrtc-aec3", "speexdsp"] = "webrtc-aec3"


class CameraConfig(Section):
    """``[camera]``: which camera sends video.

    ``""``: the board's own (sim: ``main``; pi: the camera connector, ``picamera``). Sim:
    ``main`` or ``aux``. Pi: ``picamera`` or ``picamera:N`` (libcamera camera N), or a USB
    camera ``/dev/videoN`` whose ``input_format`` is ``mjpeg``, ``h264`` (passed through
    without re-encoding when the call uses H.264) or ``yuyv422``.
    """

    APPLY = Apply.ENDPOINT
    device: OptionalWord = ""
    input_format: Literal["mjpeg", "h264", "yuyv422"] = "mjpeg"


class CallConfig(Section):
    """``[call]``: defaults of every call this endpoint places or answers."""

    APPLY = Apply.LIVE
    video: StrictBool = True
    codec: Literal["VP8", "H264"] = "VP8"
    width: Size = 640
    height: Size = 480
    fps: StrictInt = Field(default=30, ge=1, le=120)
    bitrate_kbps: StrictInt = Field(default=800, ge=1)
    ring_timeout_s: Seconds = 30.0
    max_duration_s: StrictFloat = Field(default=180.0, ge=0, le=86_400, allow_inf_nan=False)
    connect_timeout_s: Seconds = 10.0
    hide_on_proximity: StrictBool = True
    disable_speaker_on_proximity: StrictBool = True
    auto_answer_monitor: StrictBool = True
    unlock_per_minute: StrictInt = Field(default=6, ge=1, le=60)


class DndConfig(Section):
    """``[dnd]``: do not disturb; an empty schedule means all day on the listed days.

    A range that crosses midnight belongs to the day it starts on: ``22:00-07:00`` with
    ``days = ["fri"]`` covers Friday 22:00 to Saturday 07:00.
    """

    APPLY = Apply.LIVE
    enabled: StrictBool = False
    schedule: Annotated[tuple[TimeRange, ...], AfterValidator(_no_duplicates)] = ()
    days: Annotated[tuple[Day, ...], AfterValidator(_not_empty), AfterValidator(_no_duplicates)] = (
        DAYS
    )

    def ranges(self) -> list[tuple[time, time]]:
        """The schedule as (start, end) local times."""
        return [(time.fromisoformat(r[:5]), time.fromisoformat(r[6:])) for r in self.schedule]

    def is_active(self, now: datetime) -> bool:
        """Whether do-not-disturb is in force at the local time `now`."""
        if not self.enabled:
            return False
        today, yesterday = DAYS[now.weekday()], DAYS[now.weekday() - 1]
        if not self.schedule:
            return today in self.days
        moment = now.time()
        for start, end in self.ranges():
            if start < end and today in self.days and start <= moment < end:
                return True
            if start > end and (
                (today in self.days and moment >= start)
                or (yesterday in self.days and moment < end)
            ):
                return True
        return False


class IceServerConfig(Section):
    """``[[network.ice_servers]]``: a STUN server or a TURN server, with the TURN credentials.

    A STUN server finds the public address behind NAT, a TURN server relays media; the TURN
    credentials come both or neither.
    """

    urls: Annotated[tuple[IceUrl, ...], AfterValidator(_not_empty), AfterValidator(_no_duplicates)]
    username: OptionalWord = ""
    credential: Secret = ""


class NetworkConfig(Section):
    """``[network]``: where the media of calls may flow.

    ICE host candidates come from the addresses of `interfaces` and from `addresses`; both
    empty = every non-loopback address of the unit. `ice_servers`: none = host candidates
    only, enough on one LAN.
    """

    APPLY = Apply.ENDPOINT
    interfaces: Annotated[tuple[InterfaceName, ...], AfterValidator(_no_duplicates)] = ()
    addresses: Annotated[tuple[IpAddress, ...], AfterValidator(_no_duplicates)] = ()
    ice_servers: tuple[IceServerConfig, ...] = ()


def _relay_url(value: str) -> str:
    if not value.startswith(("turn:", "turns:")):
        raise ValueError(f"{value!r} is not a turn: or turns: URL (the site relay)")
    return value


class TurnConfig(Section):
    """``[turn]``: the site's TURN relay (coturn, ``callbox turn config``) for this unit's calls.

    `urls`: the relay as units and phones reach it. `secret_file`: the site's shared secret
    (``callbox turn secret``, copied from the broker host, 0600); a unit that has it mints
    credentials for its own side and, in each invite it sends, for the callee ("" = it mints
    none, and uses only what invites bring). `credential_ttl_s`: how long minted credentials
    stay valid (a call longer than that loses its relay at the next allocation refresh).
    """

    APPLY = Apply.ENDPOINT
    urls: Annotated[
        tuple[Annotated[IceUrl, AfterValidator(_relay_url)], ...],
        AfterValidator(_no_duplicates),
    ] = ()
    secret_file: OptionalPath = ""
    credential_ttl_s: StrictInt = Field(default=86400, ge=600, le=7 * 86400)


class PushConfig(Section):
    """``[push]``: Web Push from a door station to the phones it rings (docs/operations.md).

    ``vapid_key``: the site's VAPID private key (``callbox push import`` puts it there); ""
    means no Web Push. ``subject``: the contact push services may write to about this site
    (``mailto:`` or ``https:``), required with a key. ``hosts``: the push services a
    subscription may point to (``*.`` for subdomains, ``host:port`` for a port other than 443;
    ``http://`` only to a loopback host listed with its port). ``max_subscriptions``: phones
    kept at most. ``timeout_s``: how long one push may take.
    """

    APPLY = Apply.ENDPOINT
    vapid_key: OptionalPath = ""
    subject: PushSubject = ""
    hosts: Annotated[tuple[PushHost, ...], AfterValidator(_no_duplicates)] = DEFAULT_PUSH_HOSTS
    max_subscriptions: StrictInt = Field(default=32, ge=1, le=1000)
    timeout_s: Annotated[StrictFloat, Field(gt=0, le=60, allow_inf_nan=False)] = 5.0


class SnapshotsConfig(Section):
    """``[snapshots]``: visitor pictures kept under the state directory (0 = no limit)."""

    APPLY = Apply.LIVE
    keep_count: StrictInt = Field(default=50, ge=0, le=100_000)
    max_age_days: StrictInt = Field(default=30, ge=0, le=3650)


class LoggingConfig(Section):
    """``[logging]``: the log level of the daemon."""

    APPLY = Apply.LIVE
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


_TOPIC_PREFIX = re.compile(r"[A-Za-z0-9_-]{1,64}(/[A-Za-z0-9_-]{1,64}){0,3}")
_NODE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _topic_prefix(value: str) -> str:
    if not _TOPIC_PREFIX.fullmatch(value):
        raise ValueError(
            f"{value!r} is not an MQTT topic prefix such as 'homeassistant': 1 to 4 levels of "
            "letters, digits, '_' or '-' joined by '/', no wildcards, no leading or trailing '/'"
        )
    return value


def _node_id(value: str) -> str:
    if value and not _NODE_ID.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a Home Assistant node id: 1 to 64 letters, digits, '_' or '-'"
        )
    return value


class HomeAssistantConfig(Section):
    """``[homeassistant]``: MQTT discovery on Home Assistant's broker (docs/operations.md).

    Off by default. ``host``/``port``: HA's broker (usually not the site's); ``tls`` verifies
    it against the system's trust store, or ``tls_ca`` alone when set. ``discovery_prefix``:
    HA's (``homeassistant``); ``node_id``: this unit's in the topics ("" = its address).
    ``door_release``: announce an "Open door" button on a door station: whoever can publish
    on its command topic can open the door, so it is off unless set here.
    A change applies at once: the link to HA's broker is restarted, calls go on.
    """

    APPLY = Apply.LIVE
    enabled: StrictBool = False
    host: OptionalWord = ""
    port: StrictInt = Field(default=1883, ge=1, le=65535)
    tls: StrictBool = False
    tls_ca: OptionalPath = ""
    username: OptionalWord = ""
    password: Secret = ""
    password_file: OptionalPath = ""
    discovery_prefix: Annotated[StrictStr, AfterValidator(_topic_prefix)] = "homeassistant"
    node_id: Annotated[StrictStr, AfterValidator(_node_id)] = ""
    door_release: StrictBool = False
