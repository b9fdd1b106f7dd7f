"""The device configuration, ``/etc/callbox/callbox.toml``, parsed and validated.

It is turned into what the app needs (HAL wiring, contacts, call defaults, ICE).

A bad file is refused as a whole with a `ConfigError` that names the file, the dotted key path
(``inputs.doorbell.min_press_ms``, ``contacts.1.sign_key``) and the reason, so the running
configuration stays in force. The sections are in `device.config._models`, the rules across
keys in `device.config._rules`, the wording of errors in `device.config._errors`.
"""

from __future__ import annotations

import functools
import tomllib
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Final, Literal

from pydantic import Field, PrivateAttr, StrictBool, ValidationError

from device.config._access import AccessConfig
from device.config._apply import Apply, declared_keys, way_under
from device.config._entrance import (
    CardReaderConfig,
    KeypadConfig,
    card_reader_specs,
    keypad_spec,
)
from device.config._errors import ConfigError, validation_problems
from device.config._models import (
    AbsolutePath,
    AudioConfig,
    BacklightConfig,
    BrokerConfig,
    CallConfig,
    CameraConfig,
    ContactConfig,
    DirectoryConfig,
    DisplayConfig,
    DndConfig,
    GpioConfig,
    GpioProximityConfig,
    HomeAssistantConfig,
    InputsConfig,
    LedConfig,
    LoggingConfig,
    Name,
    NetworkConfig,
    ProximityConfig,
    PushConfig,
    RelayConfig,
    Section,
    SnapshotsConfig,
    Target,
    Text,
    TurnConfig,
)
from device.config._panel import BellConfig, PanelConfig, TargetDndConfig, bell_buttons
from device.config._rtsp import RtspConfig
from device.config._rules import cross_field_problems
from device.config._sensors import DoorContactConfig, TamperConfig
from device.config._system import SystemConfig, hostname_from_address
from hal.errors import HalError
from hal.gpio_specs import (
    BacklightSpec,
    ButtonRole,
    ButtonSpec,
    GpioProximitySpec,
    I2cProximitySpec,
    IoSpec,
    LedSpec,
    RelaySpec,
)
from services.callapi.properties import CallProperties, IceServer, VideoProperties
from services.callapi.status import VideoCodec
from services.media.errors import MediaError
from services.media.ice import IcePolicy
from services.media.turn import TurnMinter
from services.signaling.contacts import Contact, Right
from services.signaling.identity import PublicKeys, b64u_decode

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "FIRST_BOOT_PATH",
    "CallboxConfig",
    "ConfigError",
    "apply_of",
    "config_keys",
    "load_config",
    "parse_config",
]

DEFAULT_CONFIG_PATH: Final = Path("/etc/callbox/callbox.toml")
FIRST_BOOT_PATH: Final = Path("/boot/firmware/callbox.toml")


class CallboxConfig(Section):
    """The whole file.

    Build it with `parse_config` or `load_config` (they add the cross-field checks of
    `device.config._rules`).
    """

    # how a change applies: each table declares it (`Section.APPLY`), these keys here
    role: Annotated[Literal["door", "indoor"], Apply.ENDPOINT]
    address: Annotated[Name, Apply.ENDPOINT]
    name: Annotated[Text, Apply.ENDPOINT] = ""
    site: Annotated[Name, Apply.ENDPOINT]
    board: Annotated[Literal["sim", "pi"], Apply.ENDPOINT] = "pi"
    state_dir: Annotated[AbsolutePath, Apply.ENDPOINT] = "/var/lib/callbox"
    targets: Annotated[tuple[Target, ...], Apply.LIVE] = ()
    first_use_pinning: Annotated[StrictBool, Apply.ENDPOINT] = False
    broker: BrokerConfig = BrokerConfig()
    # `contacts` is the TOML key; the attribute name leaves `contacts()` to the method
    contact_entries: tuple[ContactConfig, ...] = Field(default=(), alias="contacts")
    directory: DirectoryConfig = DirectoryConfig()
    inputs: InputsConfig = InputsConfig()
    relay: RelayConfig | None = None
    leds: dict[Name, LedConfig] = Field(default_factory=dict)
    proximity: ProximityConfig | None = None
    backlight: BacklightConfig | None = None
    display: DisplayConfig | None = None
    gpio: GpioConfig = GpioConfig()
    audio: AudioConfig = AudioConfig()
    camera: CameraConfig = CameraConfig()
    call: CallConfig = CallConfig()
    network: NetworkConfig = NetworkConfig()
    turn: TurnConfig = TurnConfig()
    dnd: DndConfig = DndConfig()
    snapshots: SnapshotsConfig = SnapshotsConfig()
    push: PushConfig = PushConfig()
    homeassistant: HomeAssistantConfig = HomeAssistantConfig()
    rtsp: RtspConfig = RtspConfig()
    door_contact: DoorContactConfig | None = None
    tamper: TamperConfig | None = None
    access: AccessConfig = AccessConfig()
    keypad: KeypadConfig | None = None  # device/config/_entrance.py
    card_readers: tuple[CardReaderConfig, ...] = ()
    panel: PanelConfig = PanelConfig()
    bells: tuple[BellConfig, ...] = ()
    target_dnd: tuple[TargetDndConfig, ...] = ()
    logging: LoggingConfig = LoggingConfig()
    system: SystemConfig = SystemConfig()

    _source: Path | None = PrivateAttr(default=None)

    @property
    def source(self) -> Path | None:
        """The file this configuration was read from (None when parsed from text)."""
        return self._source

    def hostname(self) -> str:
        """The host name first boot sets: ``system.hostname``, else one made of the address."""
        return self.system.hostname or hostname_from_address(self.address)

    def io_spec(self) -> IoSpec:
        """The GPIO wiring for `hal.board.build_io`; ConfigError if the HAL refuses it."""
        try:
            return self._io_spec()
        except HalError as err:
            raise ConfigError(self._source, "", f"the hardware layer refuses it: {err}") from err

    def _io_spec(self) -> IoSpec:
        buttons = {
            ButtonRole(role): ButtonSpec(
                pin=b.pin, pull_up=b.pull_up, debounce_ms=b.debounce_ms, min_press_ms=b.min_press_ms
            )
            for role, b in self.inputs.wired().items()
        }
        relay = self.relay
        return IoSpec(
            pin_factory=self.gpio.pin_factory,
            buttons=MappingProxyType(buttons),
            relay=RelaySpec(
                pin=relay.pin,
                active_high=relay.active_high,
                pulse_ms=relay.pulse_ms,
                max_on_ms=relay.max_on_ms,
            )
            if relay
            else None,
            leds=MappingProxyType(
                {
                    n: LedSpec(pin=led.pin, active_high=led.active_high)
                    for n, led in self.leds.items()
                }
            ),
            bells=MappingProxyType(bell_buttons(self)),
            proximity=self._proximity_spec(),
            backlight=self._backlight_spec(),
            door_contact=self.door_contact.spec() if self.door_contact else None,
            tamper=self.tamper.spec() if self.tamper else None,
            keypad=keypad_spec(self),
            card_readers=card_reader_specs(self),
        )

    def _proximity_spec(self) -> GpioProximitySpec | I2cProximitySpec | None:
        prox = self.proximity
        if isinstance(prox, GpioProximityConfig):
            return GpioProximitySpec(
                pin=prox.pin,
                near_when_low=prox.near_when_low,
                pull_up=prox.pull_up,
                debounce_ms=prox.debounce_ms,
            )
        if prox is None:
            return None
        return I2cProximitySpec(
            bus=prox.bus,
            address=prox.address(),
            chip=prox.chip,
            near_threshold=prox.near_threshold,
            hysteresis=prox.hysteresis,
            poll_ms=prox.poll_ms,
        )

    def _backlight_spec(self) -> BacklightSpec | None:
        light = self.backlight
        if light is None:
            return None
        return BacklightSpec(
            sysfs_root=light.sysfs_root,
            device=light.device or None,
            brightness=None if light.brightness < 0 else light.brightness,
        )

    def contacts(self) -> list[Contact]:
        """The pinned contacts for the signaling endpoint's `ContactBook`."""
        return [
            Contact(
                address=c.address,
                keys=PublicKeys(sign=b64u_decode(c.sign_key), dh=b64u_decode(c.dh_key)),
                name=c.name,
                role=c.role,
                rights=frozenset(Right(right) for right in c.rights),
                blocked=c.blocked,
            )
            for c in self.contact_entries
        ]

    def call_properties(self) -> CallProperties:
        """The defaults of every call (``[call]``); the caller fills in the peer."""
        call = self.call
        return CallProperties(
            video=VideoProperties(
                enabled=call.video,
                width=call.width,
                height=call.height,
                fps=call.fps,
                bitrate_kbps=call.bitrate_kbps,
                codec=VideoCodec[call.codec],
            ),
            hide_on_proximity=call.hide_on_proximity,
            disable_speaker_on_proximity=call.disable_speaker_on_proximity,
            ring_timeout_s=call.ring_timeout_s,
            connect_timeout_s=call.connect_timeout_s,
            max_duration_s=call.max_duration_s,
            ice_servers=self._ice_servers(),
        )

    def _ice_servers(self) -> list[IceServer]:
        """The STUN and TURN servers of ``[[network.ice_servers]]`` ("" credentials as None)."""
        return [
            IceServer(
                urls=server.urls,
                username=server.username or None,
                credential=server.credential or None,
            )
            for server in self.network.ice_servers
        ]

    def turn_minter(self) -> TurnMinter | None:
        """What mints this unit's relay credentials (``[turn]``), or None without a secret.

        Reads ``turn.secret_file`` (blocking: call it off the event loop); ConfigError naming
        the key when it cannot be read or the settings are unusable.
        """
        turn = self.turn
        if not turn.secret_file:
            return None
        if not turn.urls:
            raise ConfigError(self._source, "turn.urls", "turn.secret_file needs the relay's URLs")
        try:
            secret = Path(turn.secret_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as err:
            reason = getattr(err, "strerror", None) or str(err)
            raise ConfigError(
                self._source, "turn.secret_file", f"cannot read {turn.secret_file}: {reason}"
            ) from err
        try:
            return TurnMinter(urls=turn.urls, secret=secret, ttl_s=turn.credential_ttl_s)
        except MediaError as err:
            raise ConfigError(self._source, "turn.secret_file", str(err)) from err

    def ice_policy(self) -> IcePolicy:
        """Where ICE host candidates come from (``network.interfaces`` and ``addresses``)."""
        network = self.network
        try:
            return IcePolicy(interfaces=network.interfaces, addresses=network.addresses)
        except MediaError as err:
            raise ConfigError(self._source, "network.addresses", str(err)) from err

    def broker_password(self) -> str:
        """The broker password: ``broker.password``, or the first line of ``password_file``."""
        return self._secret_file(
            "broker.password_file", self.broker.password_file, self.broker.password
        )

    def homeassistant_password(self) -> str:
        """HA's broker password: ``homeassistant.password``, or the first line of its file."""
        return self._secret_file(
            "homeassistant.password_file",
            self.homeassistant.password_file,
            self.homeassistant.password,
        )

    def _secret_file(self, key: str, file: str, inline: str) -> str:
        if not file:
            return inline
        try:
            text = Path(file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            reason = getattr(err, "strerror", None) or str(err)
            raise ConfigError(self._source, key, f"cannot read {file}: {reason}") from err
        password = text.splitlines()[0] if text else ""
        if not password:
            raise ConfigError(self._source, key, f"{file} is empty")
        return password


@functools.cache
def config_keys() -> Mapping[str, Apply | None]:
    """Every key of ``callbox.toml``, nested ones included, and how a change to it applies.

    See `device.config._apply.declared_keys`; None: declared nowhere.
    """
    return MappingProxyType(declared_keys(CallboxConfig))


def apply_of(key: str) -> Apply:
    """How a running daemon applies a change to the top-level ``key`` (`way_under`)."""
    return way_under(config_keys(), key)


def load_config(path: Path) -> CallboxConfig:
    """Read and validate the file at `path`; raise ConfigError naming it."""
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except FileNotFoundError as err:
        raise ConfigError(path, "", "the file does not exist") from err
    except OSError as err:
        raise ConfigError(path, "", f"cannot read the file: {err.strerror or err}") from err
    except UnicodeDecodeError as err:
        raise ConfigError(path, "", f"not UTF-8 text (byte {err.start})") from err
    return parse_config(text, path)


def parse_config(text: str, path: Path | None = None) -> CallboxConfig:
    """Validate TOML `text`; raise ConfigError naming `path`, every bad key and why."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(path, "", f"not valid TOML: {err}") from err
    except RecursionError as err:  # tomllib recurses once per level of arrays and tables
        raise ConfigError(path, "", "not valid TOML: arrays or tables nested too deeply") from err
    try:
        config = CallboxConfig.model_validate(data)
    except ValidationError as err:
        problems = validation_problems(err, CallboxConfig)
        raise ConfigError(path, problems=problems) from err
    problems = cross_field_problems(config)
    if problems:
        raise ConfigError(path, problems=problems)
    config._source = path
    return config
