"""``[turn]`` in callbox.toml and ``callbox turn secret|config|import``.

The configuration ``turn config`` writes is started by a real coturn (the fixture's way,
tests/harness/turnrelay.py), TLS listener included, with the site CA's broker certificate.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import ssl
import stat
import time
from pathlib import Path

import pytest
from aioice import turn
from click.testing import CliRunner
from harness.turnrelay import (
    TurnRelay,
    free_udp_port,
    spawn_turnserver,
    turnserver_path,
    wait_for_allocation,
)
from support import need

from device.cli import main
from device.config import ConfigError, parse_config
from device.daemon._selftest import check_turn_secret
from services.media.turn import credential_expiry, rest_password
from services.signaling.siteca import ensure_site_tls, site_ca_files

MINIMAL = 'role = "door"\naddress = "door"\nsite = "home"\ntargets = ["flat1"]\n'
URL = "turns:relay.home.example:5349?transport=tcp"


def turn_config(broker: Path, *extra: str) -> list[str]:
    """``callbox turn config`` on loopback for ``broker``'s secret, plus ``extra``."""
    common = ["--broker-config", str(broker), "--realm", "home", "--listen", "127.0.0.1"]
    return ["turn", "config", *common, *extra]


def run(*args: str) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_a_turn_section_with_a_secret_file_mints_credentials(tmp_path: Path) -> None:
    secret = tmp_path / "turn.secret"
    secret.write_text("s" * 40 + "\n")
    config = parse_config(
        MINIMAL + f"[turn]\nurls = ['{URL}']\nsecret_file = '{secret}'\ncredential_ttl_s = 3600\n"
    )
    minter = config.turn_minter()
    assert minter is not None and minter.urls == (URL,) and minter.ttl_s == 3600
    entry = minter.mint("phone", time.time())
    expiry = credential_expiry(entry.username)
    assert expiry is not None and expiry >= time.time() + 3600
    assert entry.credential == rest_password("s" * 40, f"{expiry}:phone")


def test_no_secret_file_mints_nothing() -> None:
    assert parse_config(MINIMAL + f"[turn]\nurls = ['{URL}']\n").turn_minter() is None


@pytest.mark.parametrize(
    ("body", "key", "reason"),
    [
        ("urls = ['stun:s.example.org']", "turn.urls.0", "not a turn: or turns: URL"),
        ("urls = ['http://x']", "turn.urls.0", "not a stun:, turn: or turns: URL"),
        ("secret_file = 'relative'", "turn.secret_file", "absolute path"),
        ("credential_ttl_s = 10", "turn.credential_ttl_s", "must be >= 600"),
    ],
)
def test_bad_turn_settings_are_refused(body: str, key: str, reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(MINIMAL + "[turn]\n" + body + "\n")
    assert info.value.key == key and reason in info.value.reason


def test_an_unreadable_or_short_secret_names_the_key(tmp_path: Path) -> None:
    missing = parse_config(MINIMAL + f"[turn]\nurls = ['{URL}']\nsecret_file = '/nonexistent'\n")
    with pytest.raises(ConfigError, match="cannot read /nonexistent") as info:
        missing.turn_minter()
    assert info.value.key == "turn.secret_file"
    short = tmp_path / "short"
    short.write_text("abc\n")
    config = parse_config(MINIMAL + f"[turn]\nurls = ['{URL}']\nsecret_file = '{short}'\n")
    with pytest.raises(ConfigError, match="too short"):
        config.turn_minter()


def test_secret_import_sets_the_turn_section(tmp_path: Path) -> None:
    broker = tmp_path / "broker"
    run("turn", "secret", "--broker-config", str(broker))
    secret = broker / "turn" / "secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    again = CliRunner().invoke(main, ["turn", "secret", "--broker-config", str(broker)])
    assert again.exit_code != 0 and "exists" in again.output
    unit = tmp_path / "unit"
    unit.mkdir()
    (unit / "callbox.toml").write_text(MINIMAL)
    config_path = str(unit / "callbox.toml")
    control = str(tmp_path / "no-daemon.sock")
    out = run(
        "turn", "import", str(secret), "--url", URL, "--config", config_path, "--control", control
    )
    assert "installed the TURN secret" in out
    imported = unit / "turn.secret"
    assert imported.read_text() == secret.read_text()
    assert stat.S_IMODE(imported.stat().st_mode) == 0o600
    config = parse_config((unit / "callbox.toml").read_text())
    assert config.turn.urls == (URL,) and config.turn.secret_file == str(imported.resolve())


def test_config_without_a_secret_says_how_to_make_one(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, turn_config(tmp_path, "--no-tls"))
    assert result.exit_code != 0 and "callbox turn secret" in result.output


def test_config_refuses_loopback_as_the_site_lan(tmp_path: Path) -> None:
    run("turn", "secret", "--broker-config", str(tmp_path))
    result = CliRunner().invoke(main, turn_config(tmp_path, "--lan", "127.0.0.0/8", "--no-tls"))
    assert result.exit_code == 2 and "never sends to loopback" in result.output


def test_the_generated_config_has_the_hardening_lines(tmp_path: Path) -> None:
    run("turn", "secret", "--broker-config", str(tmp_path))
    ensure_site_tls(site_ca_files(tmp_path), ("relay.home.example", "127.0.0.1"))
    text = run("turn", "config", "--broker-config", str(tmp_path), "--realm", "home",
               "--listen", "192.168.1.2", "--lan", "192.168.1.0/24")  # fmt: skip
    lines = set(text.splitlines())
    secret = (tmp_path / "turn" / "secret").read_text().strip()
    for line in (
        "use-auth-secret", f"static-auth-secret={secret}", "realm=home", "fingerprint",
        "no-cli", "no-multicast-peers", "no-tlsv1", "no-tlsv1_1", "tls-listening-port=5349",
        f"cert={site_ca_files(tmp_path).server_cert}", "user-quota=8", "total-quota=128",
        "denied-peer-ip=127.0.0.0-127.255.255.255", "denied-peer-ip=192.168.0.0-192.168.255.255",
        "denied-peer-ip=10.0.0.0-10.255.255.255", "allowed-peer-ip=192.168.1.0-192.168.1.255",
    ):  # fmt: skip
        assert line in lines, line
    assert not any("allow-loopback-peers" in line for line in lines)


async def test_coturn_runs_the_written_file_and_allocates_over_turns(tmp_path: Path) -> None:
    need(turnserver_path() is not None, "turnserver (Debian's coturn)")
    await asyncio.to_thread(run, "turn", "secret", "--broker-config", str(tmp_path))
    files = site_ca_files(tmp_path)
    await asyncio.to_thread(ensure_site_tls, files, ("127.0.0.1",))
    port, tls_port = free_udp_port("127.0.0.1"), free_udp_port("127.0.0.1")
    conf = tmp_path / "turnserver.conf"
    await asyncio.to_thread(
        run, "turn", "config", "--broker-config", str(tmp_path), "--realm", "home",
        "--listen", "127.0.0.1", "--port", str(port), "--tls-port", str(tls_port),
        "--min-port", "50100", "--max-port", "50163", "--output", str(conf),
    )  # fmt: skip
    assert stat.S_IMODE(conf.stat().st_mode) == 0o640
    with contextlib.suppress(KeyError):  # Debian's coturn made its group: it may read the file
        assert conf.stat().st_gid == grp.getgrnam("turnserver").gr_gid
    # where this test's coturn keeps its pid and database (callbox's file leaves coturn's own)
    local = f"pidfile={tmp_path}/turn.pid\nuserdb={tmp_path}/turndb\nlog-file=stdout\n"
    await asyncio.to_thread(lambda: conf.write_text(conf.read_text() + local))
    process, log = await spawn_turnserver(conf)
    secret = (await asyncio.to_thread((tmp_path / "turn" / "secret").read_text)).strip()
    relay = TurnRelay("127.0.0.1", port, secret, tmp_path, process, log)
    try:
        await wait_for_allocation(relay, 15)
        context = ssl.create_default_context(cafile=str(files.ca_cert))
        transport, _ = await turn.create_turn_endpoint(
            asyncio.DatagramProtocol,
            server_addr=("127.0.0.1", tls_port),
            username=relay.credentials("phone").username,
            password=relay.credentials("phone").credential,
            ssl=context,
            transport="tcp",
        )
        assert transport.get_extra_info("sockname")[0] == "127.0.0.1"
        transport.close()
    finally:
        await relay.close()


def test_port_zero_is_refused(tmp_path: Path) -> None:
    run("turn", "secret", "--broker-config", str(tmp_path))
    result = CliRunner().invoke(main, turn_config(tmp_path, "--port", "0", "--no-tls"))
    assert result.exit_code == 2 and "port 0 must be 1 to 65535" in result.output


def test_selftest_checks_the_turn_secret_without_showing_it(tmp_path: Path) -> None:
    secret = tmp_path / "turn.secret"
    secret.write_text("s" * 40 + "\n")
    config = parse_config(MINIMAL + f"[turn]\nurls = ['{URL}']\nsecret_file = '{secret}'\n")
    check = check_turn_secret(config)
    assert check.ok and URL in check.detail and "s" * 40 not in check.detail
    secret.unlink()
    check = check_turn_secret(config)
    assert not check.ok and f"cannot read {secret}" in check.detail
