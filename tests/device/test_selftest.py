"""`callbox selftest`: every configured device, file and permission, with a real broker.

On a stopped daemon the command opens the devices itself; with the daemon running it asks
the daemon, which checks the devices it holds.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from daemon_helpers import CliResult, DaemonSite, callbox, start_daemon_site

from device.config import load_or_create_identity


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[DaemonSite]:
    site = await start_daemon_site(tmp_path)
    await asyncio.to_thread(load_or_create_identity, site.state_dir)
    yield site
    await site.close()


async def selftest(site: DaemonSite, config: Path, *options: str) -> CliResult:
    return await callbox("selftest", "--config", config, "--control", site.control_path, *options)


def lines_of(result: CliResult) -> dict[str, str]:
    """Each report line by check name: ``{"door relay": "ok   door relay: idle"}``."""
    return {line[5:].split(":")[0]: line for line in result.stdout.splitlines()}


async def test_a_good_simulated_board_passes(site: DaemonSite) -> None:
    result = await selftest(site, site.config_path)

    assert result.code == 0, result.stdout + result.stderr
    lines = lines_of(result)
    assert lines["camera"].startswith("ok   camera: main: 640x480 frame read")
    assert lines["microphone"].startswith("ok   microphone: main:")
    assert lines["speaker speaker"].startswith("ok ")
    assert lines["speaker handset"].startswith("ok ")
    for role in ("doorbell", "answer", "decline", "door_release", "hook"):
        assert lines[f"button {role}"] == f"ok   button {role}: released"
    assert lines["door relay"] == "ok   door relay: idle"
    assert lines["door contact"] == "ok   door contact: closed", "the sim contact idles closed"
    assert lines["tamper"] == "ok   tamper: closed"
    assert lines["echo canceller"].startswith(
        ("ok   echo canceller: webrtc-aec3 (tuned AEC3", "ok   echo canceller: webrtc-aec3 (AEC3")
    ), "the engine and which AEC3 runs in it"
    assert "; loads: webrtc-aec3, webrtc-aec3-defaults" in lines["echo canceller"]
    assert lines["broker"] == f"ok   broker: 127.0.0.1:{site.settings.port} reachable"
    assert not any(line.startswith("FAIL") for line in lines.values())


async def test_a_missing_backlight_directory_fails_and_is_named(site: DaemonSite) -> None:
    missing = site.directory / "no-such-sysfs"
    config = site.directory / "with-backlight.toml"
    config.write_text(site.config_path.read_text() + f'\n[backlight]\nsysfs_root = "{missing}"\n')

    result = await selftest(site, config)

    assert result.code == 1
    failed = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    assert len(failed) == 1, result.stdout
    assert "backlight" in failed[0] and str(missing) in failed[0]
    assert "ok   door relay: idle" in result.stdout, "the other checks still run"


async def test_missing_keys_and_broker_are_reported(site: DaemonSite) -> None:
    config = site.directory / "fresh.toml"
    text = site.config_path.read_text().replace(str(site.state_dir), str(site.directory / "new"))
    config.write_text(text.replace(f"port = {site.settings.port}", "port = 9"))

    result = await selftest(site, config, "--json")

    assert result.code == 1
    checks = {check["name"]: check for check in json.loads(result.stdout)}
    assert not checks["keys"]["ok"] and "`callbox run` creates them" in checks["keys"]["detail"]
    assert not checks["broker"]["ok"]
    assert checks["camera"]["ok"] and checks["door relay"]["ok"]


async def test_selftest_through_the_running_daemon(site: DaemonSite) -> None:
    await site.start_daemon()

    result = await selftest(site, site.config_path, "--json")

    assert result.code == 0, result.stdout + result.stderr
    checks = {check["name"]: check for check in json.loads(result.stdout)}
    assert checks["door relay"] == {"name": "door relay", "ok": True, "detail": "idle"}
    assert checks["broker"]["ok"] and checks["keys"]["ok"]
    assert checks["button doorbell"]["detail"] == "released"
    assert "camera" not in checks, "the daemon holds the media devices: not opened twice"
