"""The site CA as an installer meets it: made by `callbox broker`, shown, renewed and pinned.

`callbox broker` on a port beyond loopback (what callbox-broker.service runs) makes the site CA
once and keeps it across restarts, and a unit that pinned it with `callbox ca pin` reaches the
broker (a real mosquitto, run by the command as its own process) over TLS.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from click.testing import CliRunner, Result
from daemon_helpers import callbox, door_toml

from device.cli import main
from device.config import load_config
from services.signaling.base import Inbound
from services.signaling.broker import free_port
from services.signaling.siteca import (
    SiteCaFiles,
    ensure_site_tls,
    fingerprint,
    load_ca_certificates,
)
from services.signaling.transport import BrokerAddress, mqtt_transport

CALLBOX = [sys.executable, "-m", "device.cli"]
TIMEOUT = 20.0


def invoke(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(arg) for arg in args])


def site_config(directory: Path) -> Path:
    """The hosting unit's callbox.toml (its broker on this machine)."""
    path = directory / "callbox.toml"
    path.write_text(
        f'role = "indoor"\naddress = "flat"\nsite = "home"\nboard = "sim"\n'
        f'state_dir = "{directory / "state"}"\n[broker]\nport = 18831\nwebsockets_port = 0\n'
    )
    return path


def ca_fingerprint(broker_dir: Path) -> str:
    (ca,) = load_ca_certificates(broker_dir / "tls" / "ca.crt")
    return fingerprint(ca)


def test_the_broker_makes_the_site_ca_once_and_keeps_it(tmp_path: Path) -> None:
    config, broker_dir = site_config(tmp_path), tmp_path / "broker"
    args = ("broker", "--site-config", config, "--config", broker_dir, "--generate-only")

    first = invoke(*args)
    assert first.exit_code == 0, first.output
    made = ca_fingerprint(broker_dir)
    assert "made a new site CA" in first.output
    assert f"site CA {broker_dir / 'tls' / 'ca.crt'}: SHA-256 {made}" in first.output
    conf = (broker_dir / "mosquitto.conf").read_text()
    # the front terminates TLS with the site CA's broker certificate; mosquitto is plain,
    # on loopback
    assert "MQTT over TLS on 0.0.0.0:18831" in conf
    assert "listener 1884 127.0.0.1" in conf and "certfile" not in conf
    assert (broker_dir / "tls" / "server.crt").is_file()
    assert (broker_dir / "tls" / "ca.key").stat().st_mode & 0o777 == 0o600

    again = invoke(*args)  # a restart of callbox-broker.service
    assert again.exit_code == 0, again.output
    assert "made" not in again.output
    assert ca_fingerprint(broker_dir) == made

    shown = invoke("ca", "show", "--broker-config", broker_dir)
    assert shown.exit_code == 0, shown.output
    assert made in shown.output
    assert f"callbox ca pin ca.crt --fingerprint {made}" in shown.output


def test_plain_mqtt_beyond_loopback_is_refused(tmp_path: Path) -> None:
    result = invoke(
        "broker", "--site", "home", "--endpoint", "door", "--config", tmp_path / "broker",
        "--listen", "0.0.0.0:18832", "--no-tls", "--generate-only",
    )  # fmt: skip
    assert result.exit_code == 2
    assert "plain MQTT only on loopback" in result.output
    assert not (tmp_path / "broker" / "mosquitto.conf").exists()


def test_loopback_stays_plain_unless_asked(tmp_path: Path) -> None:
    result = invoke(
        "broker", "--site", "home", "--endpoint", "door", "--config", tmp_path / "broker",
        "--listen", "127.0.0.1:18833", "--generate-only",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "certfile" not in (tmp_path / "broker" / "mosquitto.conf").read_text()
    assert not (tmp_path / "broker" / "tls").exists()


def test_renew_keeps_the_ca_and_a_new_ca_is_said_loudly(tmp_path: Path) -> None:
    config, broker_dir = site_config(tmp_path), tmp_path / "broker"
    invoke("broker", "--site-config", config, "--config", broker_dir, "--generate-only")
    ca, server = ca_fingerprint(broker_dir), (broker_dir / "tls" / "server.crt").read_bytes()

    renewed = invoke("ca", "renew", "--broker-config", broker_dir, "--name", "door.example")
    assert renewed.exit_code == 0, renewed.output
    assert ca_fingerprint(broker_dir) == ca
    assert (broker_dir / "tls" / "server.crt").read_bytes() != server
    assert "door.example" in renewed.output
    assert "units and phones need nothing" in renewed.output
    assert "systemctl restart callbox-broker" in renewed.output

    new = invoke("ca", "renew", "--broker-config", broker_dir, "--new-ca")
    assert new.exit_code == 0, new.output
    assert ca_fingerprint(broker_dir) != ca
    assert "a NEW site CA" in new.output
    (old,) = load_ca_certificates(broker_dir / "tls" / "ca.crt.old")
    assert fingerprint(old) == ca


def test_pin_checks_the_fingerprint_before_it_changes_anything(tmp_path: Path) -> None:
    hosting, broker_dir = site_config(tmp_path), tmp_path / "broker"
    invoke("broker", "--site-config", hosting, "--config", broker_dir, "--generate-only")
    unit_dir = tmp_path / "door"
    unit_dir.mkdir()
    unit = unit_dir / "callbox.toml"
    unit.write_text(
        'role = "indoor"\naddress = "door"\nsite = "home"\n[broker]\nhost = "127.0.0.1"\n'
    )
    ca_file = broker_dir / "tls" / "ca.crt"

    wrong = invoke("ca", "pin", ca_file, "--fingerprint", "AB" * 32, "--config", unit)
    assert wrong.exit_code == 1
    assert "fingerprint mismatch" in wrong.output and "Nothing was pinned" in wrong.output
    assert not (unit_dir / "site-ca.crt").exists()
    assert load_config(unit).broker.tls_ca == ""

    right = ca_fingerprint(broker_dir).replace(":", " ").lower()  # as typed
    pinned = invoke("ca", "pin", ca_file, "--fingerprint", right, "--config", unit)
    assert pinned.exit_code == 0, pinned.output
    assert (unit_dir / "site-ca.crt").read_bytes() == ca_file.read_bytes()
    broker = load_config(unit).broker
    assert broker.tls and broker.tls_ca == str((unit_dir / "site-ca.crt").resolve())


async def test_a_pinned_unit_reaches_callbox_broker_over_tls_after_a_restart(
    tmp_path: Path,
) -> None:
    broker_dir, port = tmp_path / "broker", free_port()
    args = [
        "broker", "--site", "home", "--endpoint", "door", "--config", str(broker_dir),
        "--listen", f"127.0.0.1:{port}", "--websockets-port", "0", "--tls",
    ]  # fmt: skip
    fingerprints = []
    for _ in range(2):  # the CA made at the first start is the one used after the restart
        process = await asyncio.create_subprocess_exec(
            *CALLBOX, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        try:
            await read_until(process, "mosquitto listening")
            fingerprints.append(await asyncio.to_thread(ca_fingerprint, broker_dir))
            password_file = broker_dir / "credentials" / "door.password"
            password = (await asyncio.to_thread(password_file.read_text)).strip()
            transport = mqtt_transport(
                site="home",
                address="door",
                broker=BrokerAddress(
                    "127.0.0.1", port, "door", password, ca_file=broker_dir / "tls" / "ca.crt"
                ),
            )
            received: list[Inbound] = []
            transport.on_message = received.append
            try:
                await transport.start(timeout=TIMEOUT)
            finally:
                await transport.close()
        finally:
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.wait(), TIMEOUT)
    assert fingerprints[0] == fingerprints[1]


async def test_the_daemon_refuses_a_broker_its_pinned_ca_did_not_sign(tmp_path: Path) -> None:
    """`callbox run` pinned to another site's CA exits 1 and says which broker, CA and why."""
    broker_dir, port = tmp_path / "broker", free_port()
    other = await asyncio.to_thread(
        ensure_site_tls, SiteCaFiles(tmp_path / "other-site"), ("localhost", "127.0.0.1")
    )
    process = await asyncio.create_subprocess_exec(
        *CALLBOX, "broker", "--site", "test", "--endpoint", "door", "--config", str(broker_dir),
        "--listen", f"127.0.0.1:{port}", "--websockets-port", "0", "--tls",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        await read_until(process, "mosquitto listening")
        password_file = broker_dir / "credentials" / "door.password"
        password = (await asyncio.to_thread(password_file.read_text)).strip()
        config = tmp_path / "callbox.toml"
        text = door_toml(port=port, password=password, state_dir=tmp_path / "state")
        pinned = other.files.ca_cert
        await asyncio.to_thread(
            config.write_text, text.replace("[broker]\n", f'[broker]\ntls_ca = "{pinned}"\n')
        )
        run = await callbox(
            "run", "--config", config, "--control", tmp_path / "control.sock",
            "--first-boot", tmp_path / "no-first-boot.toml",
        )  # fmt: skip
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), TIMEOUT)
    assert run.code == 1, run.stderr
    assert (
        f"door: refusing the broker at 127.0.0.1:{port}: its TLS certificate is not signed by "
        "the pinned site CA"
    ) in run.stderr
    assert f"{pinned} (SHA-256 {other.fingerprint})" in run.stderr


async def read_until(process: asyncio.subprocess.Process, text: str) -> str:
    assert process.stdout is not None
    output = ""
    while text not in output:
        line = await asyncio.wait_for(process.stdout.readline(), TIMEOUT)
        assert line, f"callbox broker exited:\n{output}"
        output += line.decode()
    return output
