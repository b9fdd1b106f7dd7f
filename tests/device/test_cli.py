"""The ``callbox`` command line as an installer or a newcomer runs it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import aiomqtt
import pytest
from click.testing import CliRunner
from daemon_helpers import NotifySocket

from device.cli import main
from services.signaling.broker import free_ports
from services.signaling.identity import Identity

CALLBOX = [sys.executable, "-m", "device.cli"]


async def test_broker_command_runs_mosquitto_with_the_generated_config(tmp_path: Path) -> None:
    port, ws_port = free_ports(2)
    notify = NotifySocket(tmp_path / "notify")  # systemd's end: Type=notify
    process = await asyncio.create_subprocess_exec(
        *CALLBOX,
        "broker",
        "--site",
        "home",
        "--config",
        str(tmp_path / "broker"),
        "--listen",
        f"127.0.0.1:{port}",
        "--websockets-port",
        str(ws_port),
        "--endpoint",
        "door",
        "--endpoint",
        "indoor1",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "NOTIFY_SOCKET": str(notify.path)},
    )
    assert process.stdout is not None
    try:
        ready = await notify.next(timeout=20)
        assert ready.get("READY") == "1", ready
        # ready means logins work: units ordered after the broker read their password now
        password = (tmp_path / "broker" / "credentials" / "door.password").read_text().strip()
        async with aiomqtt.Client(
            "127.0.0.1", port, username="door", password=password, identifier="door"
        ) as client:
            await client.publish("callbox/v1/home/door/presence", b"{}", qos=1)
        output = b""
        while b"mosquitto listening" not in output:
            line = await asyncio.wait_for(process.stdout.readline(), 20)
            assert line, f"callbox broker exited: {output.decode()}"
            output += line
        assert (tmp_path / "broker" / "credentials" / "door.password").stat().st_mode & 0o777 == (
            0o600
        )
    finally:
        notify.close()
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), 10)
    assert process.returncode == 0
    with pytest.raises(OSError):  # mosquitto went with it
        await asyncio.open_connection("127.0.0.1", port)


def test_broker_command_refuses_a_bad_listen_address(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main,
        [
            "broker",
            "--site",
            "home",
            "--config",
            str(tmp_path),
            "--listen",
            "nowhere",
            "--endpoint",
            "door",
            "--generate-only",
        ],
    )
    assert result.exit_code != 0
    assert "'nowhere' is not HOST:PORT" in result.output


def test_broker_command_refuses_a_bad_site_name(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main,
        [
            "broker",
            "--site",
            "Home Site",
            "--config",
            str(tmp_path),
            "--endpoint",
            "door",
            "--generate-only",
        ],
    )
    assert result.exit_code != 0
    assert "site 'Home Site'" in result.output


async def test_scripted_demo_prints_a_complete_timeline() -> None:
    process = await asyncio.create_subprocess_exec(
        *CALLBOX, "demo", "--scripted", "--json", stdout=asyncio.subprocess.PIPE
    )
    stdout, _ = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, stdout
    timeline = json.loads(stdout.decode().strip().splitlines()[-1])
    assert timeline["ok"] is True
    for key in (
        "press_to_ringing_ms",
        "press_to_preview_ms",
        "answer_to_audio_ms",
        "release_to_relay_ms",
        "hangup_to_idle_ms",
    ):
        assert isinstance(timeline[key], float) and 0 < timeline[key] < 5000, key
    configured = timeline["relay_pulse_configured_ms"]
    assert configured * 0.95 <= timeline["relay_pulse_ms"] <= configured + 100
    panel = timeline["panel"]  # the entrance-panel act after the call
    assert panel["ok"] is True and panel["bell"] == "Flat 1 - Demo"
    for key in ("dial_to_ringing_ms", "card_to_relay_ms", "relay_to_ring_stop_ms"):
        assert isinstance(panel[key], float) and 0 < panel[key] < 5000, key


def test_broker_command_takes_the_site_from_a_callbox_toml(tmp_path: Path) -> None:
    flat = Identity.generate().public_keys.to_json()
    site_config = tmp_path / "callbox.toml"
    site_config.write_text(
        f"""role = "indoor"
address = "flat"
site = "home"
board = "sim"
state_dir = "{tmp_path / "state"}"
[broker]
port = 18830
websockets_port = 0
[[contacts]]
address = "door"
sign_key = "{flat["sign"]}"
dh_key = "{flat["dh"]}"
"""
    )
    generated = tmp_path / "broker"
    result = CliRunner().invoke(
        main,
        [
            "broker",
            "--site-config",
            str(site_config),
            "--config",
            str(generated),
            "--endpoint",
            "phone",
            "--generate-only",
        ],
    )
    assert result.exit_code == 0, result.output
    conf = (generated / "mosquitto.conf").read_text()
    # callbox's front (TLS: the site CA), mosquitto on loopback
    assert "MQTT over TLS on 0.0.0.0:18830" in conf
    assert "9001" not in conf, "websockets_port = 0 means no websockets listener"
    for account in ("flat", "door", "phone"):
        assert f"password of {account}" in result.output
    # it says what it sized the broker for (issue 18)
    assert "sized for 3 endpoints: 256 connections per front (1)" in result.output
    assert "max_queued_messages 1000" in conf


async def test_the_cli_loads_no_media_stack_for_its_configuration_and_key_commands() -> None:
    """`callbox config get` over SSH on a Pi must not wait for aiortc, PyAV and numpy to load."""
    script = (
        "import sys, device.cli; "
        "print(sorted(m for m in ('aiortc', 'av', 'numpy', 'services.callapi.call') "
        "if m in sys.modules))"
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await process.communicate()
    assert process.returncode == 0
    assert out.decode().strip() == "[]", f"`import device.cli` loaded {out.decode().strip()}"
