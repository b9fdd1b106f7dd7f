"""The systemd units: the settings that keep the intercom up, confined and the door shut."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

UNITS = Path(__file__).resolve().parents[2] / "device" / "systemd"
DAEMON = UNITS / "callbox.service"
BROKER = UNITS / "callbox-broker.service"
WEB = UNITS / "callbox-web.service"
FIRSTBOOT = UNITS / "callbox-firstboot.service"
CALLBOX = "/opt/callbox/bin/callbox"
CONFIG = "/etc/callbox/callbox.toml"

HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectControlGroups": "yes",
    "RestrictSUIDSGID": "yes",
    "LockPersonality": "yes",
    "CapabilityBoundingSet": "",
    "DevicePolicy": "closed",
    "User": "callbox",
    "Group": "callbox",
    "Restart": "always",
    "RestartSec": "2",
}


class _Repeated(dict[str, Any]):
    """Keeps every value of a key given several times (DeviceAllow=, ReadWritePaths=, ...).

    configparser stores option values as lists while parsing and joins them with newlines
    afterwards, so extending the list keeps repeated keys as one value per line.
    """

    def __setitem__(self, key: str, value: Any) -> None:
        if isinstance(value, list) and isinstance(self.get(key), list):
            self[key].extend(value)
        else:
            super().__setitem__(key, value)


def parse_unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(
        strict=False, interpolation=None, delimiters=("=",), dict_type=_Repeated
    )
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read_string(path.read_text(encoding="utf-8"), source=str(path))
    return parser


def values(unit: configparser.ConfigParser, section: str, key: str) -> list[str]:
    """Every value of a key (space-separated lists split), in order."""
    return unit.get(section, key, fallback="").split()


@pytest.fixture(scope="module")
def daemon() -> configparser.ConfigParser:
    return parse_unit(DAEMON)


@pytest.fixture(scope="module")
def broker() -> configparser.ConfigParser:
    return parse_unit(BROKER)


def test_daemon_is_a_notify_service_with_a_watchdog(daemon: configparser.ConfigParser) -> None:
    service = daemon["Service"]
    assert service["Type"] == "notify"
    assert service["NotifyAccess"] == "main"
    assert service["WatchdogSec"] == "30"
    assert service["ExecStart"] == (
        f"{CALLBOX} run --config {CONFIG} --no-first-boot --wait-on-bad-config"
    )
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"


def test_daemon_releases_the_door_relay_after_any_exit(daemon: configparser.ConfigParser) -> None:
    assert daemon["Service"]["ExecStopPost"] == f"{CALLBOX} safe-state --config {CONFIG}"


def test_daemon_never_gives_up_restarting(daemon: configparser.ConfigParser) -> None:
    assert daemon["Unit"]["StartLimitIntervalSec"] == "0"
    assert daemon["Service"]["Restart"] == "always"
    assert daemon["Install"]["WantedBy"] == "multi-user.target"


@pytest.mark.parametrize("unit_path", [DAEMON, BROKER], ids=["daemon", "broker"])
def test_both_units_are_confined(unit_path: Path) -> None:
    service = parse_unit(unit_path)["Service"]
    for key, expected in HARDENING.items():
        assert service.get(key) == expected, f"{unit_path.name}: {key}"
    families = set(service["RestrictAddressFamilies"].split())
    assert families == {"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"}
    assert service["StateDirectoryMode"] == "0750"


def test_daemon_directories_and_groups(daemon: configparser.ConfigParser) -> None:
    service = daemon["Service"]
    assert service["StateDirectory"] == "callbox"
    assert service["RuntimeDirectory"] == "callbox"  # /run/callbox/control.sock
    assert service["ConfigurationDirectory"] == "callbox"
    assert set(values(daemon, "Service", "SupplementaryGroups")) == {
        "gpio",
        "video",
        "audio",
        "i2c",
        "input",  # a USB keypad (/dev/input/event*)
        "spi",  # a PN532 on SPI (/dev/spidev*)
    }
    assert service["RestrictRealtime"] == "no"  # audio threads


def test_daemon_may_write_only_the_backlight_and_its_config(
    daemon: configparser.ConfigParser,
) -> None:
    writable = {path.removeprefix("-") for path in values(daemon, "Service", "ReadWritePaths")}
    assert {"/sys/class/backlight", "/etc/callbox"} <= writable
    assert writable <= {"/sys/class/backlight", "/sys/devices/platform", "/etc/callbox"}


def test_daemon_reaches_only_the_intercom_hardware(daemon: configparser.ConfigParser) -> None:
    allowed = [line.split() for line in daemon["Service"]["DeviceAllow"].splitlines()]
    groups = {group for group, _access in allowed}
    assert {
        "char-gpiochip",  # /dev/gpiochip*
        "char-*gpiomem*",  # /dev/gpiomem
        "char-video4linux",  # /dev/video*
        "char-alsa",  # /dev/snd/*
        "char-i2c",  # /dev/i2c-*
        "char-input",  # /dev/input/event*: a USB keypad
        "char-spi",  # /dev/spidev*: a PN532 on SPI
    } <= groups
    assert all(access in ("r", "rw") for _group, access in allowed)  # never mknod
    assert ["char-input", "r"] in allowed  # a keypad is only read


def test_broker_runs_the_broker_command_without_devices(broker: configparser.ConfigParser) -> None:
    service = broker["Service"]
    assert service["Type"] == "notify"  # ready once mosquitto takes logins
    assert service["ExecStart"] == (
        f"{CALLBOX} broker --site-config {CONFIG} --config ${{STATE_DIRECTORY}}"
    )
    assert "DeviceAllow" not in service
    assert service["PrivateDevices"] == "yes"
    assert "ExecStopPost" not in service
    assert broker["Install"]["WantedBy"] == "multi-user.target"


def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed; the configparser checks above still ran")
    # verify insists that ExecStart binaries exist: point them at a stub, change nothing else.
    stub = tmp_path / "callbox"
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    copies = []
    for unit in (DAEMON, BROKER, WEB, FIRSTBOOT):
        copy = tmp_path / unit.name
        copy.write_text(unit.read_text(encoding="utf-8").replace(CALLBOX, str(stub)))
        copies.append(str(copy))
    result = subprocess.run(
        [analyze, "verify", "--man=no", "--generators=no", *copies],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    # verify exits 0 on unknown keys and bad values, and only prints them: any output fails.
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 0, output
    assert output == ""


def test_first_boot_runs_once_before_the_services_it_configures() -> None:
    unit = parse_unit(FIRSTBOOT)
    service = unit["Service"]
    assert service["Type"] == "oneshot"
    assert service["ExecStart"] == f"{CALLBOX} first-boot"
    before = values(unit, "Unit", "Before")
    for other in ("callbox.service", "ssh.service", "NetworkManager.service"):
        assert other in before
    conditions = unit.get("Unit", "ConditionPathExists").splitlines()
    assert conditions == ["|/boot/firmware/callbox.toml", "|!/var/lib/callbox-firstboot/done"]
    assert unit["Install"]["WantedBy"] == "multi-user.target"
