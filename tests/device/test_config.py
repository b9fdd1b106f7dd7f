"""callbox.toml as an installer writes it: what is accepted and what the app gets from it.

And how a mistake is reported (file, key path, reason).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from aiortc import RTCIceServer
from aiortc.rtcicetransport import connection_kwargs
from pydantic import ValidationError

import device.config._file
from device.config import ConfigError, load_config, parse_config
from device.config._models import pin_number
from hal.gpio_specs import ButtonRole, GpioProximitySpec, I2cProximitySpec
from services.callapi.properties import IceServer, UserProfile
from services.callapi.status import VideoCodec
from services.media.errors import MediaError
from services.media.ice import IcePolicy
from services.signaling.contacts import Right
from services.signaling.identity import Identity, b64u_encode

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "callbox.example.toml"
FILE = Path("/etc/callbox/callbox.toml")
MINIMAL = 'role = "indoor"\naddress = "flat1"\nsite = "home"\n'


def keys() -> tuple[str, str]:
    public = Identity.generate().public_keys
    return b64u_encode(public.sign), b64u_encode(public.dh)


def refused(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(text, FILE)
    return info.value


def example(old: str, new: str) -> str:
    text = EXAMPLE.read_text()
    assert old in text
    return text.replace(old, new, 1)


# --------------------------------------------------------------------- the example file


def test_the_documented_example_is_a_valid_configuration() -> None:
    config = load_config(EXAMPLE)
    assert (config.role, config.address, config.site, config.board) == (
        "door",
        "door",
        "home",
        "pi",
    )
    assert config.targets == ("flat1", "flat1-phone")
    assert config.source == EXAMPLE


def test_the_example_wires_the_default_pin_map() -> None:
    spec = load_config(EXAMPLE).io_spec()
    pins = {role: button.pin for role, button in spec.buttons.items()}
    assert pins == {
        ButtonRole.DOORBELL: "GPIO17",
        ButtonRole.ANSWER: "GPIO27",
        ButtonRole.DECLINE: "GPIO22",
        ButtonRole.DOOR_RELEASE: "GPIO5",
        ButtonRole.MUTE: "GPIO6",
        ButtonRole.HOOK: "GPIO13",
        ButtonRole.MONITOR: "GPIO19",
    }
    doorbell = spec.buttons[ButtonRole.DOORBELL]
    assert (doorbell.pull_up, doorbell.debounce_ms, doorbell.min_press_ms) == (True, 20, 50)
    assert spec.relay is not None
    assert (spec.relay.pin, spec.relay.pulse_ms, spec.relay.max_on_ms) == ("GPIO24", 3000, 10000)
    assert spec.leds["status"].pin == "GPIO16"
    assert spec.proximity == GpioProximitySpec(pin="GPIO26")
    assert spec.backlight is not None
    assert (spec.backlight.device, spec.backlight.brightness) == (None, None)
    assert spec.pin_factory == "default"


def test_the_example_contacts_are_pinned_with_their_keys_and_rights() -> None:
    contacts = load_config(EXAMPLE).contacts()
    assert [c.address for c in contacts] == ["flat1", "flat1-phone"]
    flat1 = contacts[0]
    assert flat1.rights == frozenset({Right.UNLOCK, Right.MONITOR})
    assert (flat1.name, flat1.role, flat1.blocked) == ("Flat 1", "indoor", False)
    assert b64u_encode(flat1.keys.sign) == "uQ0m3s1cdQUnSoKWR09DHR2CiVJ-wzDp8D74yepxFu8"
    assert contacts[1].rights == frozenset({Right.UNLOCK})


def test_call_defaults_become_call_properties_a_call_accepts() -> None:
    text = example('codec = "VP8"', 'codec = "H264"').replace(
        "bitrate_kbps = 800", "bitrate_kbps = 2500"
    )
    text = text.replace("ring_timeout_s = 30", "ring_timeout_s = 45")
    props = parse_config(text).call_properties()
    assert props.video.codec is VideoCodec.H264
    assert (props.video.width, props.video.height, props.video.fps) == (640, 480, 30)
    assert props.video.bitrate_kbps == 2500
    assert (props.ring_timeout_s, props.connect_timeout_s, props.max_duration_s) == (45, 10, 180)
    assert props.hide_on_proximity and props.disable_speaker_on_proximity
    props.user = UserProfile("flat1")
    props.validate()


def test_a_minimal_indoor_unit_gets_the_defaults() -> None:
    config = parse_config(MINIMAL)
    assert config.board == "pi" and config.state_dir == "/var/lib/callbox"
    assert (config.broker.host, config.broker.port) == ("127.0.0.1", 1883)
    assert config.call.ring_timeout_s == 30 and config.logging.level == "INFO"
    spec = config.io_spec()
    assert not spec.buttons and spec.relay is None and spec.proximity is None
    assert spec.backlight is None and not spec.leds
    assert config.contacts() == [] and config.source is None


def test_the_configuration_cannot_be_changed_in_memory() -> None:
    config = parse_config(MINIMAL)
    with pytest.raises(ValidationError):
        config.call.fps = 10


# --------------------------------------------------------------------- how errors read


def test_an_error_names_file_key_and_reason_on_one_line() -> None:
    err = refused(MINIMAL + "[call]\nring_timeout_s = 0\n")
    assert str(err) == f"{FILE}: call.ring_timeout_s: must be > 0 (got 0)"
    assert (err.path, err.key) == (FILE, "call.ring_timeout_s")


def test_every_problem_is_reported_at_once() -> None:
    err = refused('role = "gate"\naddress = "Door 1"\n[call]\nfps = 0\n')
    assert [key for key, _ in err.problems] == ["role", "address", "site", "call.fps"]
    lines = str(err).splitlines()
    assert len(lines) == 4 and all(line.startswith(f"{FILE}: ") for line in lines)
    assert "site: is required" in str(err)


def test_a_toml_syntax_error_names_the_line() -> None:
    err = refused('role = "door"\naddress = "door"\nsite = = "home"\n')
    assert "line 3" in str(err) and str(err).startswith(f"{FILE}: not valid TOML")


def test_load_names_a_missing_or_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist") as info:
        load_config(tmp_path / "callbox.toml")
    assert info.value.path == tmp_path / "callbox.toml"
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"role = \xff\n")
    with pytest.raises(ConfigError, match=f"{binary}: not UTF-8"):
        load_config(binary)


def test_an_unknown_key_is_refused_with_the_likely_intended_one() -> None:
    err = refused(MINIMAL + "[inputs.doorbell]\npin = 'GPIO17'\nmin_pres_ms = 80\n")
    assert str(err) == (
        f"{FILE}: inputs.doorbell.min_pres_ms: unknown key; did you mean 'min_press_ms'?"
    )
    err = refused(MINIMAL + "colour = 'red'\n")
    assert err.key == "colour" and "allowed here: " in err.reason
    assert "address, audio," in err.reason


@pytest.mark.parametrize(
    ("line", "key", "reason"),
    [
        ("first_use_pinning = 1", "first_use_pinning", "must be true or false, not an integer"),
        ("[call]\nvideo = 'yes'", "call.video", "must be true or false, not a string"),
        ("[call]\nfps = 30.0", "call.fps", "must be an integer, not a float"),
        ("[broker]\nport = '1883'", "broker.port", "must be an integer, not a string"),
        ("targets = 'door'", "targets", "must be a list, not a string"),
        ("[call]\nring_timeout_s = inf", "call.ring_timeout_s", "finite number"),
    ],
)
def test_values_must_have_the_right_toml_type(line: str, key: str, reason: str) -> None:
    err = refused(MINIMAL + line + "\n")
    assert err.key == key and reason in err.reason


def test_a_type_error_never_repeats_the_value() -> None:
    err = refused(MINIMAL + "[broker]\npassword = 123456789\n")
    assert err.key == "broker.password" and "123456789" not in str(err)


# --------------------------------------------------------------------- pins


@pytest.mark.parametrize(
    ("name", "number"),
    [("GPIO17", 17), ("gpio17", 17), ("BCM4", 4), ("17", 17), ("BOARD11", 17), ("J8:40", 21)],
)
def test_pin_names_of_gpiozero_are_understood(name: str, number: int) -> None:
    assert pin_number(name) == number


@pytest.mark.parametrize(
    ("pin", "reason"),
    [
        ('"GPIO28"', "GPIO numbers are 0 to 27"),
        ('"BOARD1"', "power or ground"),
        ('"PIN17"', "not a pin name"),
        ('""', "not a pin name"),
        ("true", "must be a pin name"),
    ],
)
def test_a_wrong_relay_pin_is_refused(pin: str, reason: str) -> None:
    err = refused(MINIMAL + f"[relay]\npin = {pin}\n")
    assert err.key == "relay.pin" and reason in err.reason


def test_pins_are_canonical_so_one_pin_under_two_names_is_caught() -> None:
    text = MINIMAL + "[inputs.answer]\npin = 17\n[leds.status]\npin = 'BOARD11'\n"
    err = refused(text)
    assert str(err) == f"{FILE}: leds.status.pin: GPIO17 is already used by inputs.answer.pin"


def test_an_i2c_sensor_on_bus_1_occupies_gpio2_and_gpio3() -> None:
    err = refused(MINIMAL + "[inputs.mute]\npin = 'GPIO3'\n[proximity]\nkind = 'i2c'\n")
    assert err.key == "proximity.bus" and "GPIO3 is already used by inputs.mute.pin" in err.reason


def test_i2c_proximity_takes_the_chip_address_unless_given() -> None:
    config = parse_config(MINIMAL + "[proximity]\nkind = 'i2c'\nchip = 'vcnl4040'\n")
    assert config.io_spec().proximity == I2cProximitySpec(address=0x60, chip="vcnl4040")
    config = parse_config(MINIMAL + "[proximity]\nkind = 'i2c'\ni2c_address = 0x23\n")
    assert config.io_spec().proximity == I2cProximitySpec(address=0x23)


def test_proximity_keys_of_the_other_kind_are_refused() -> None:
    err = refused(MINIMAL + "[proximity]\nkind = 'i2c'\npin = 'GPIO26'\n")
    assert err.key == "proximity.pin" and err.reason.startswith("unknown key")
    err = refused(MINIMAL + "[proximity]\nkind = 'i2c'\nhysteresis = 2000\n")
    assert err.key == "proximity.hysteresis" and "near_threshold" in err.reason


# --------------------------------------------------------------------- cross-field rules


def test_a_door_station_needs_someone_to_ring() -> None:
    err = refused('role = "door"\naddress = "door"\nsite = "home"\n')
    assert err.key == "targets" and "at least one" in err.reason


@pytest.mark.parametrize(
    ("targets", "key", "reason"),
    [
        ('["flat1", "door"]', "targets.1", "own address"),
        ('["flat1", "flat1"]', "targets.1", "listed twice"),
        ('["Flat 1"]', "targets.0", "not a valid name"),
    ],
)
def test_targets_are_valid_distinct_other_addresses(targets: str, key: str, reason: str) -> None:
    err = refused(f'role = "door"\naddress = "door"\nsite = "home"\ntargets = {targets}\n')
    assert err.key == key and reason in err.reason


def contact(address: str, sign: str | None = None) -> str:
    sign_key, dh_key = keys()
    return (
        f'[[contacts]]\naddress = "{address}"\n'
        f'sign_key = "{sign or sign_key}"\ndh_key = "{dh_key}"\n'
    )


def test_contacts_are_distinct_and_not_this_endpoint() -> None:
    err = refused(MINIMAL + contact("door") + contact("door"))
    assert err.key == "contacts.1.address" and "already contacts.0" in err.reason
    err = refused(MINIMAL + contact("flat1"))
    assert err.key == "contacts.0.address" and "this endpoint itself" in err.reason


@pytest.mark.parametrize(
    ("sign", "reason"),
    [
        ("AAAA", "must decode to 32 bytes, not 3"),
        ("uQ0m3s1cdQUnSoKWR09DHR2CiVJ-wzDp8D74yepxFu8=", "not a base64url public key"),
        ("uQ0m3s1cdQUnSoKWR09DHR2CiVJ+wzDp8D74yepxFu8", "not a base64url public key"),
    ],
)
def test_contact_keys_must_be_32_byte_base64url(sign: str, reason: str) -> None:
    err = refused(MINIMAL + contact("door") + contact("door2", sign=sign))
    assert err.key == "contacts.1.sign_key" and reason in err.reason


@pytest.mark.parametrize(
    ("broker", "key", "reason"),
    [
        ("password = 'x'\npassword_file = '/etc/callbox/pw'", "broker.password_file", "not both"),
        ("tls = false\ntls_ca = '/etc/ssl/ca.pem'", "broker.tls_ca", "tls = true"),
        ("host = 'flat1.local'", "broker.tls_ca", "required to reach the broker at flat1.local"),
        ("host = '192.168.1.20'\ntls = false", "broker.tls", "in clear to 192.168.1.20"),
        ("websockets_port = 1883", "broker.websockets_port", "same port"),
        ("password_file = 'pw.txt'", "broker.password_file", "absolute path"),
        ("host = ''", "broker.host", "without spaces"),
    ],
)
def test_broker_settings_that_contradict_each_other(broker: str, key: str, reason: str) -> None:
    err = refused(MINIMAL + "[broker]\n" + broker + "\n")
    assert err.key == key and reason in err.reason


def test_tls_is_on_by_default_and_plain_mqtt_stays_on_loopback() -> None:
    assert parse_config(MINIMAL, Path("t.toml")).broker.tls  # loopback: plain without tls_ca
    remote = parse_config(
        MINIMAL + "[broker]\nhost = 'flat1.local'\ntls_ca = '/etc/callbox/ca.crt'\n", Path("t.toml")
    )
    assert remote.broker.tls and remote.broker.tls_ca == "/etc/callbox/ca.crt"
    for host in ("127.0.0.1", "::1", "localhost"):
        text = MINIMAL + f"[broker]\nhost = '{host}'\ntls = false\n"
        assert not parse_config(text, Path("t.toml")).broker.tls


@pytest.mark.parametrize(
    ("codec", "bitrate", "ok"),
    [("VP8", 250, True), ("VP8", 1500, True), ("VP8", 1600, False), ("H264", 400, False)],
)
def test_the_bitrate_is_within_the_codec_range(codec: str, bitrate: int, ok: bool) -> None:
    text = MINIMAL + f"[call]\ncodec = '{codec}'\nbitrate_kbps = {bitrate}\n"
    if ok:
        assert parse_config(text).call_properties().video.bitrate_kbps == bitrate
    else:
        err = refused(text)
        assert err.key == "call.bitrate_kbps" and f"the range of the {codec} encoder" in err.reason


def test_the_relay_pulse_fits_its_maximum() -> None:
    err = refused(MINIMAL + "[relay]\npin = 'GPIO24'\npulse_ms = 12000\n")
    assert str(err) == f"{FILE}: relay.pulse_ms: 12000 is longer than relay.max_on_ms (10000)"
    err = refused(MINIMAL + "[relay]\npin = 'GPIO24'\nmax_on_ms = 61000\n")
    assert err.key == "relay.max_on_ms" and "<= 60000" in err.reason


def test_simulated_pins_only_on_the_sim_board() -> None:
    err = refused(MINIMAL + "[gpio]\npin_factory = 'mock'\n")
    assert err.key == "gpio.pin_factory" and "board = 'sim'" in err.reason
    assert parse_config(MINIMAL + "board = 'sim'\n[gpio]\npin_factory = 'mock'\n").board == "sim"
    err = refused(MINIMAL + "board = 'sim'\n[camera]\ndevice = 'usb'\n")
    assert err.key == "camera.device"


# --------------------------------------------------------------------- do not disturb


@pytest.mark.parametrize("schedule", ["22:00-07:00", "07:00-22:00", "00:00-23:59", "23:59-00:00"])
def test_dnd_ranges_may_cross_midnight(schedule: str) -> None:
    config = parse_config(MINIMAL + f"[dnd]\nschedule = ['{schedule}']\n")
    assert config.dnd.schedule == (schedule,)


@pytest.mark.parametrize(
    ("schedule", "reason"),
    [
        ("7:00-22:00", "not a time range HH:MM-HH:MM"),
        ("22:00 - 07:00", "not a time range"),
        ("24:00-01:00", "not a time range"),
        ("22:60-23:00", "not a time range"),
        ("22:00-22:00", "starts and ends at the same time"),
    ],
)
def test_bad_dnd_ranges_are_refused(schedule: str, reason: str) -> None:
    err = refused(MINIMAL + f"[dnd]\nschedule = ['08:00-09:00', '{schedule}']\n")
    assert err.key == "dnd.schedule.1" and reason in err.reason


@pytest.mark.parametrize(
    ("days", "key", "reason"),
    [
        ("['mon', 'monday']", "dnd.days.1", "'mon', 'tue',"),
        ("['mon', 'mon']", "dnd.days", "more than once"),
        ("[]", "dnd.days", "at least 1"),
    ],
)
def test_dnd_days_are_mon_to_sun(days: str, key: str, reason: str) -> None:
    err = refused(MINIMAL + f"[dnd]\ndays = {days}\n")
    assert err.key == key and reason in err.reason


@pytest.mark.parametrize(
    ("when", "active"),
    [
        ("2024-05-17 23:00", True),  # Friday night
        ("2024-05-18 06:59", True),  # Saturday morning, the Friday range still runs
        ("2024-05-18 07:00", False),
        ("2024-05-17 03:00", False),  # Friday morning: Thursday has no range
        ("2024-05-18 23:00", False),  # Saturday night: not a listed day
    ],
)
def test_a_range_across_midnight_belongs_to_its_start_day(when: str, active: bool) -> None:
    config = parse_config(
        MINIMAL + "[dnd]\nenabled = true\nschedule = ['22:00-07:00']\ndays = ['fri']\n"
    )
    assert config.dnd.is_active(datetime.fromisoformat(when)) is active


def test_dnd_without_a_schedule_is_all_day_and_off_when_disabled() -> None:
    config = parse_config(MINIMAL + "[dnd]\nenabled = true\ndays = ['sun']\n")
    assert config.dnd.is_active(datetime(2024, 5, 19, 12, 0))
    assert not config.dnd.is_active(datetime(2024, 5, 20, 12, 0))
    assert not parse_config(MINIMAL).dnd.is_active(datetime(2024, 5, 19, 12, 0))


# --------------------------------------------------------------------- broker password


def test_the_broker_password_comes_from_the_file_or_the_config(tmp_path: Path) -> None:
    assert parse_config(MINIMAL + "[broker]\npassword = 's3cret'\n").broker_password() == "s3cret"
    secret = tmp_path / "broker.pw"
    secret.write_text("from-file\n")
    config = parse_config(MINIMAL + f"[broker]\npassword_file = '{secret}'\n", FILE)
    assert config.broker_password() == "from-file"
    secret.unlink()
    with pytest.raises(ConfigError) as info:
        config.broker_password()
    assert str(info.value).startswith(f"{FILE}: broker.password_file: cannot read {secret}")
    secret.write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        config.broker_password()


# --------------------------------------------------------------------- network


def network_example() -> str:
    """The commented-out ``[network]`` example of the documented file, uncommented."""
    lines = EXAMPLE.read_text().splitlines()
    start = lines.index("# [network]")
    block: list[str] = []
    for line in lines[start:]:
        if not line.startswith("#"):
            break
        block.append(line.removeprefix("#").removeprefix(" "))
    return "\n".join(block) + "\n"


def test_without_a_network_section_ice_takes_every_address_and_no_server() -> None:
    config = parse_config(MINIMAL)
    assert config.ice_policy() == IcePolicy()
    assert not config.ice_policy().restricted
    assert config.call_properties().ice_servers == []


def test_the_documented_network_example_is_valid_and_what_aiortc_uses() -> None:
    config = parse_config(EXAMPLE.read_text() + network_example())
    assert config.ice_policy() == IcePolicy(interfaces=("eth0",), addresses=("192.168.1.20",))
    props = config.call_properties()
    assert props.ice_servers == [
        IceServer(urls=("stun:stun.example.org:3478",)),
        IceServer(
            urls=("turn:turn.example.org:3478?transport=tcp",),
            username="callbox",
            credential="change-me",
        ),
    ]
    props.user = UserProfile("flat1")
    props.validate()
    servers = [RTCIceServer(list(s.urls), s.username, s.credential) for s in props.ice_servers]
    assert connection_kwargs(servers) == {
        "stun_server": ("stun.example.org", 3478),
        "turn_server": ("turn.example.org", 3478),
        "turn_ssl": False,
        "turn_transport": "tcp",
        "turn_username": "callbox",
        "turn_password": "change-me",
    }


@pytest.mark.parametrize(
    ("addresses", "policy"),
    [
        ("['127.0.0.1']", ("127.0.0.1",)),
        ("['192.168.1.20', 'fd00::20']", ("192.168.1.20", "fd00::20")),
        ("['FD00:0:0::0020']", ("fd00::20",)),  # as the interfaces report it
    ],
)
def test_ice_addresses_are_ip_addresses(addresses: str, policy: tuple[str, ...]) -> None:
    config = parse_config(MINIMAL + f"[network]\naddresses = {addresses}\n")
    assert config.ice_policy() == IcePolicy(addresses=policy)
    assert config.ice_policy().restricted


@pytest.mark.parametrize(
    ("line", "key", "reason"),
    [
        ("addresses = ['eth0']", "network.addresses.0", "'eth0' is not an IP address"),
        ("addresses = ['192.168.1.300']", "network.addresses.0", "not an IP address"),
        ("addresses = ['10.0.0.1', '10.0.0.01']", "network.addresses.1", "not an IP address"),
        ("addresses = ['0.0.0.0']", "network.addresses.0", "not the address of an interface"),
        ("addresses = ['fe80::1']", "network.addresses.0", "link-local"),
        ("addresses = ['fd00::1', 'FD00::1']", "network.addresses", "fd00::1 more than once"),
        ("addresses = '10.0.0.1'", "network.addresses", "must be a list, not a string"),
        ("addresses = [10]", "network.addresses.0", "must be a string in quotes"),
        ("interfaces = ['eth 0']", "network.interfaces.0", "not a network interface name"),
        ("interfaces = ['']", "network.interfaces.0", "not a network interface name"),
        ("interfaces = ['../eth0']", "network.interfaces.0", "not a network interface name"),
        ("interfaces = ['a-very-long-name0']", "network.interfaces.0", "1 to 15"),
        ("interfaces = ['eth0', 'eth0']", "network.interfaces", "eth0 more than once"),
        ("interface = ['eth0']", "network.interface", "did you mean 'interfaces'?"),
    ],
)
def test_bad_ice_addresses_and_interfaces_are_refused(line: str, key: str, reason: str) -> None:
    err = refused(MINIMAL + "[network]\n" + line + "\n")
    assert err.key == key and reason in err.reason


def test_interfaces_and_addresses_together() -> None:
    text = MINIMAL + "[network]\ninterfaces = ['eth0', 'wlan0', 'eth0:1']\naddresses = ['::1']\n"
    policy = parse_config(text).ice_policy()
    assert policy == IcePolicy(interfaces=("eth0", "wlan0", "eth0:1"), addresses=("::1",))


def test_an_address_the_media_layer_refuses_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(**_: object) -> IcePolicy:
        raise MediaError("ice address '10.0.0.1' is not an IP address")

    config = parse_config(MINIMAL + "[network]\naddresses = ['10.0.0.1']\n", FILE)
    monkeypatch.setattr(device.config._file, "IcePolicy", refuse)
    with pytest.raises(ConfigError) as info:
        config.ice_policy()
    assert (info.value.path, info.value.key) == (FILE, "network.addresses")


def ice_server(body: str) -> str:
    return MINIMAL + "[[network.ice_servers]]\n" + body + "\n"


@pytest.mark.parametrize(
    ("body", "server"),
    [
        ("urls = ['stun:stun.example.org']", IceServer(("stun:stun.example.org",))),
        ("urls = ['stun:192.0.2.1:19302']", IceServer(("stun:192.0.2.1:19302",))),
        (
            "urls = ['stun:t.example.org', 'turns:t.example.org:443']\n"
            "username = '1700000000:door'\ncredential = 'p a$$ word'",
            IceServer(
                ("stun:t.example.org", "turns:t.example.org:443"), "1700000000:door", "p a$$ word"
            ),
        ),
        (
            "urls = ['turn:t.example.org?transport=udp']\nusername = 'u'\ncredential = 'c'",
            IceServer(("turn:t.example.org?transport=udp",), "u", "c"),
        ),
    ],
)
def test_ice_servers_become_call_properties(body: str, server: IceServer) -> None:
    props = parse_config(ice_server(body)).call_properties()
    assert props.ice_servers == [server]
    props.user = UserProfile("door")
    props.validate()


@pytest.mark.parametrize(
    ("body", "key", "reason"),
    [
        ("urls = []", "network.ice_servers.0.urls", "must list at least 1"),
        ("username = 'u'\ncredential = 'c'", "network.ice_servers.0.urls", "is required"),
        ("urls = 'stun:stun.example.org'", "network.ice_servers.0.urls", "must be a list"),
        ("urls = ['http://stun.example.org']", "network.ice_servers.0.urls.0", "not a stun:"),
        ("urls = ['stuns:stun.example.org']", "network.ice_servers.0.urls.0", "not a stun:"),
        ("urls = ['stun:']", "network.ice_servers.0.urls.0", "not a stun:, turn: or turns: URL"),
        ("urls = ['stun:[::1]:3478']", "network.ice_servers.0.urls.0", "IPv4 address"),
        ("urls = ['stun:s.example.org:0']", "network.ice_servers.0.urls.0", "port must be 1"),
        ("urls = ['stun:s.example.org:70000']", "network.ice_servers.0.urls.0", "1 to 65535"),
        (
            "urls = ['stun:s.example.org?transport=udp']",
            "network.ice_servers.0.urls.0",
            "a stun: URL takes no transport",
        ),
        (
            "urls = ['turns:t.example.org?transport=udp']\nusername = 'u'\ncredential = 'c'",
            "network.ice_servers.0.urls.0",
            "a turns: URL takes only transport=tcp",
        ),
        (
            "urls = ['stun:a.example.org', 'stun:a.example.org']",
            "network.ice_servers.0.urls",
            "more than once",
        ),
        (
            "urls = ['stun:a.example.org', 'stun:b.example.org']",
            "network.ice_servers.0.urls.1",
            "only the first stun: URL is used (network.ice_servers.0.urls.0)",
        ),
        (
            "urls = ['turn:t.example.org']\nusername = 'u'",
            "network.ice_servers.0.credential",
            "is required with username",
        ),
        (
            "urls = ['turn:t.example.org']\ncredential = 'c'",
            "network.ice_servers.0.username",
            "is required with credential",
        ),
        (
            "urls = ['turns:t.example.org']",
            "network.ice_servers.0.username",
            "needs username and credential",
        ),
        (
            "urls = ['stun:s.example.org']\nusername = 'u'\ncredential = 'c'",
            "network.ice_servers.0.username",
            "only used by turn: and turns: servers",
        ),
        ("urls = ['stun:s.example.org']\npassword = 'x'", "network.ice_servers.0.password", ""),
    ],
)
def test_bad_ice_servers_are_refused(body: str, key: str, reason: str) -> None:
    err = refused(ice_server(body))
    assert err.key == key and reason in err.reason


def test_only_one_turn_server_is_used_across_tables() -> None:
    turn = "urls = ['turn:{host}']\nusername = 'u'\ncredential = 'c'\n"
    text = ice_server(turn.format(host="a.example.org"))
    text += "[[network.ice_servers]]\n" + turn.format(host="b.example.org")
    err = refused(text)
    assert err.key == "network.ice_servers.1.urls.0"
    assert "only the first turn: or turns: URL is used (network.ice_servers.0.urls.0)" in err.reason


SECRET = "turn-secret-9"
TURN = "urls = ['turn:t.example.org']\n"


@pytest.mark.parametrize(
    "body",
    [
        f"urls = ['turn:{SECRET}@t.example.org']\nusername = 'u'\ncredential = 'c'",
        f"urls = ['turn:u:{SECRET}@t.example.org']",
        TURN + f'username = "u"\ncredential = "{SECRET}\\t"',
        TURN + f"username = 'u'\ncredential = '{SECRET * 20}'",
        TURN + f"credential = '{SECRET}'",
        TURN + f"username = 'u'\ncredential = '{SECRET}'\nx = 1",
        f"urls = ['stun:s.example.org']\nusername = 'u'\ncredential = '{SECRET}'",
    ],
)
def test_a_turn_credential_is_never_echoed(body: str) -> None:
    err = refused(ice_server(body))
    assert err.key.startswith("network.ice_servers.0.")
    assert SECRET not in str(err)


# ---------------------------------------------------------------------- [push]

PUSH_DOOR = (
    'role = "door"\naddress = "door"\nsite = "home"\ntargets = ["flat"]\n[broker]\ntls = false\n'
)


def test_web_push_is_off_by_default_with_the_real_push_services_allowed() -> None:
    config = parse_config(PUSH_DOOR)
    assert config.push.vapid_key == ""
    assert config.push.hosts == (
        "fcm.googleapis.com",
        "updates.push.services.mozilla.com",
        "*.push.apple.com",
        "*.notify.windows.com",
    )
    assert load_config(EXAMPLE).push == config.push, "the example shows the defaults"


def test_a_push_key_needs_a_subject_and_a_door() -> None:
    err = refused(PUSH_DOOR + '[push]\nvapid_key = "/etc/callbox/vapid.key"\n')
    assert "push.subject" in str(err) and "mailto:" in str(err)
    indoor = PUSH_DOOR.replace('role = "door"', 'role = "indoor"')
    err = refused(indoor + '[push]\nvapid_key = "/k"\nsubject = "mailto:a@example.org"\n')
    assert "push.vapid_key" in str(err) and "only a door station" in str(err)


@pytest.mark.parametrize(
    ("line", "key", "reason"),
    [
        ('subject = "admin@example.org"', "push.subject", "not a contact push services accept"),
        ('subject = "https://example.org/path"', "push.subject", "no path"),
        ('hosts = ["https://fcm.googleapis.com"]', "push.hosts.0", "not a host name"),
        ('hosts = ["127.0.0.1:99999"]', "push.hosts.0", "port must be 1 to 65535"),
        ('hosts = ["a.example", "a.example"]', "push.hosts", "more than once"),
        ("max_subscriptions = 0", "push.max_subscriptions", "must be >= 1"),
        ('vapid_key = "vapid.key"', "push.vapid_key", "absolute path"),
    ],
)
def test_bad_push_keys_are_refused(line: str, key: str, reason: str) -> None:
    err = refused(PUSH_DOOR + "[push]\n" + line + "\n")
    assert key in str(err) and reason in str(err), str(err)
