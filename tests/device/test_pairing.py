"""Pairing a browser phone: the link, ``callbox keys pair-web`` and ``callbox keys trust``.

``pair-web`` against a real ``callbox broker`` (mosquitto), and ``callbox keys trust ADDRESS
FINGERPRINT`` against a real daemon that sees the phone's retained profile on the broker.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
import pytest
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from daemon_helpers import CALLBOX, DaemonSite, NotifySocket, callbox, clean_env, door_toml
from support import need

from device.cli import main
from device.config import load_config, load_or_create_identity
from device.daemon import request
from device.phone._pairing import Pairing, PairingError, PairingPeer, parse_pairing_url
from services.signaling.broker import PID_FILE, free_ports, start_loopback_broker
from services.signaling.contacts import ContactBook
from services.signaling.endpoint import SignalingEndpoint
from services.signaling.envelope import canonical
from services.signaling.errors import SignalingError
from services.signaling.identity import Identity, PublicKeys, b64u_encode
from services.signaling.siteadmin import admin_public_text
from services.signaling.siteca import fingerprint, load_ca_certificates
from services.signaling.transport import BrokerAddress, mqtt_transport

TIMEOUT = 15.0


def invoke(*args: str | Path) -> Result:
    """``callbox ARGS`` in this process."""
    return CliRunner().invoke(main, [str(arg) for arg in args])


# the link ---------------------------------------------------------------------------------------


def sample_pairing() -> Pairing:
    return Pairing(
        site="home",
        address="flat1-phone",
        name="Flat 1 phone",
        broker="wss://flat1.local:9001",
        username="flat1-phone",
        password="pw-Ü+/=",
        peers=(
            PairingPeer("door", "Front door", "door", "4e93 5d74 df52 6cea 8f83 de9b 7c7b c4cd"),
        ),
        ca=":".join(["A7"] * 32),
    )


def test_pairing_link_round_trip() -> None:
    pairing = sample_pairing()
    url = pairing.url("https://flat1.local:8443/")
    assert url.startswith("https://flat1.local:8443/#pair=")
    assert "=" not in url.partition("#pair=")[2], "b64u without padding"
    assert parse_pairing_url(url) == pairing


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://flat1.local:8443/", "no #pair= fragment"),
        ("https://x/#pair=not*base64", "bad pairing payload"),
        ("https://x/#pair=e30", "pairing version None is not 1"),  # {}
    ],
)
def test_pairing_link_refusals(url: str, reason: str) -> None:
    with pytest.raises(PairingError, match=reason):
        parse_pairing_url(url)


def payload_url(payload: dict[str, object]) -> str:
    return f"https://x/#pair={b64u_encode(canonical(payload))}"


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("v", 2, "pairing version 2 is not 1"),
        ("broker", "mqtt://x:1883", "must start with ws:// or wss://"),
        ("address", "Flat Phone", "phone address 'Flat Phone' must be"),
        ("peers", [{"address": "door"}], "bad pairing payload"),
        ("password", None, "bad pairing payload: 'password'"),
        ("ca", "A7:B2", "site CA fingerprint 'A7:B2' is not 32 hex pairs"),
        ("admin_key", "AAAA", "admin_key: admin key is 3 bytes"),
    ],
)
def test_pairing_payload_refusals(field: str, value: object, reason: str) -> None:
    payload = sample_pairing().to_json()
    if value is None:
        del payload[field]
    else:
        payload[field] = value
    with pytest.raises((PairingError, SignalingError), match=reason):
        parse_pairing_url(payload_url(payload))


# pair-web against a real broker -----------------------------------------------------------------


def hosting_unit(directory: Path, *, ws_port: int, door_keys: PublicKeys) -> Path:
    """The indoor unit "flat" that hosts the site broker, with the door as a contact."""
    state = directory / "state"
    load_or_create_identity(state)
    keys = door_keys.to_json()
    path = directory / "callbox.toml"
    path.write_text(
        f"""role = "indoor"
address = "flat"
name = "Flat 1"
site = "home"
board = "sim"
state_dir = "{state}"

[broker]
port = 1883
websockets_port = {ws_port}

[[contacts]]
address = "door"
name = "Front door"
role = "door"
sign_key = "{keys["sign"]}"
dh_key = "{keys["dh"]}"

[[contacts]]
address = "old-phone"
role = "web"
sign_key = "{keys["sign"]}"
dh_key = "{keys["dh"]}"
"""
    )
    return path


class BrokerProcess:
    """``callbox broker --site-config`` as its own process (what callbox-broker.service runs)."""

    def __init__(self, site_config: Path, directory: Path, port: int, ws_port: int) -> None:
        self.args = [
            "broker", "--site-config", str(site_config), "--config", str(directory),
            "--listen", f"127.0.0.1:{port}", "--websockets-port", str(ws_port),
        ]  # fmt: skip
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            CALLBOX,
            *self.args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=clean_env(),
        )
        await self.read_until("mosquitto listening")

    async def read_until(self, text: str) -> str:
        """The broker's output up to the first line containing ``text``."""
        assert self.process is not None and self.process.stdout is not None
        output = ""
        while text not in output:
            line = await asyncio.wait_for(self.process.stdout.readline(), TIMEOUT)
            assert line, f"callbox broker exited:\n{output}"
            output += line.decode()
        return output

    async def stop(self) -> int:
        assert self.process is not None
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.process.wait(), TIMEOUT)


async def log_in(port: int, username: str, password: str, *, websockets: bool) -> None:
    """Log in to mosquitto (MQTT 5) and publish the presence of ``username``."""
    async with aiomqtt.Client(
        "127.0.0.1",
        port,
        username=username,
        password=password,
        identifier=username,
        protocol=aiomqtt.ProtocolVersion.V5,
        transport="websockets" if websockets else "tcp",
    ) as client:
        await client.publish(
            f"callbox/v1/home/{username}/presence", b'{"state":"online"}', qos=1, retain=True
        )


async def log_in_once_reloaded(port: int, username: str, password: str) -> None:
    """Log in over WebSockets, retrying while mosquitto has not yet re-read its password file.

    SIGHUP has no acknowledgement: the deadline bounds the retries.
    """
    deadline = time.monotonic() + TIMEOUT
    while True:
        try:
            await log_in(port, username, password, websockets=True)
            return
        except aiomqtt.MqttError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


async def refused_once_reloaded(port: int, username: str, password: str) -> None:
    """Wait until mosquitto refuses the login (it re-reads its password file after SIGHUP)."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        try:
            await log_in(port, username, password, websockets=False)
        except aiomqtt.MqttError:
            return
        assert time.monotonic() < deadline, f"{username} can still log in"
        await asyncio.sleep(0.05)


def link_of(output: str) -> str:
    lines = [line for line in output.splitlines() if "#pair=" in line]
    assert len(lines) == 1, output
    return lines[0]


async def test_pair_web_creates_a_login_mosquitto_accepts_and_a_link_with_fingerprints(
    tmp_path: Path,
) -> None:
    need(shutil.which("mosquitto") is not None, "mosquitto")
    port, ws_port = free_ports(2)
    door = Identity.generate().public_keys
    config = await asyncio.to_thread(
        hosting_unit, tmp_path / "flat", ws_port=ws_port, door_keys=door
    )
    own = (
        await asyncio.to_thread(load_or_create_identity, tmp_path / "flat" / "state")
    ).public_keys
    broker_dir = tmp_path / "broker"
    broker = BrokerProcess(config, broker_dir, port, ws_port)
    await broker.start()
    try:
        assert broker.process is not None
        assert (broker_dir / PID_FILE).read_text().strip() == str(broker.process.pid)
        result = await asyncio.to_thread(
            invoke,
            "keys", "--config", config, "pair-web", "flat1-phone", "--name", "Flat 1 phone",
            "--url", "http://127.0.0.1:8080", "--broker-config", broker_dir,
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        assert "a new password" in result.stdout
        assert "asked the running broker" in result.stdout
        assert "callbox keys trust flat1-phone <fingerprint>" in result.stdout
        assert "█" in result.stdout, "the QR code"

        pairing = parse_pairing_url(link_of(result.stdout))
        password = (broker_dir / "credentials" / "flat1-phone.password").read_text().strip()
        assert (broker_dir / "credentials" / "flat1-phone.password").stat().st_mode & 0o777 == 0o600
        assert pairing == Pairing(
            site="home",
            address="flat1-phone",
            name="Flat 1 phone",
            broker=f"ws://127.0.0.1:{ws_port}",
            username="flat1-phone",
            password=password,
            peers=(
                PairingPeer("flat", "Flat 1", "indoor", own.fingerprint()),
                PairingPeer("door", "Front door", "door", door.fingerprint()),
            ),
        ), "this unit and its door, not the other phone"

        await broker.read_until("reloaded")  # callbox broker wrote its config and told mosquitto
        await log_in_once_reloaded(ws_port, "flat1-phone", password)
        with pytest.raises(aiomqtt.MqttError):
            await log_in(ws_port, "flat1-phone", "wrong", websockets=True)

        again = await asyncio.to_thread(
            invoke,
            "keys", "--config", config, "pair-web", "flat1-phone", "--url",
            "http://127.0.0.1:8080", "--broker-config", broker_dir, "--no-qr",
        )  # fmt: skip
        assert again.exit_code == 0, again.output
        assert "its existing password" in again.stdout
        assert "█" not in again.stdout
        assert parse_pairing_url(link_of(again.stdout)).password == password, "reused"

        assert await broker.stop() == 0
        assert not (broker_dir / PID_FILE).exists()
        await broker.start()  # a restart: the phone has a credentials file, so it keeps its login
        await log_in(port, "flat1-phone", password, websockets=False)
        await log_in(ws_port, "flat1-phone", password, websockets=True)

        # removing the phone: its credentials file goes, `systemctl reload` sends SIGHUP
        (broker_dir / "credentials" / "flat1-phone.password").unlink()
        assert broker.process is not None
        broker.process.send_signal(signal.SIGHUP)
        reloaded = await broker.read_until("reloaded")
        assert "flat1-phone" not in reloaded.rpartition("accounts for")[2]
        await refused_once_reloaded(port, "flat1-phone", password)
        door_password = (broker_dir / "credentials" / "door.password").read_text().strip()
        await log_in(port, "door", door_password, websockets=False)  # the others stay
    finally:
        await broker.stop()


def test_the_pairing_link_carries_the_site_admin_key(tmp_path: Path) -> None:
    """With ``[directory] admin_key`` the link carries it; without, the link is as before."""
    config = hosting_unit(tmp_path, ws_port=9001, door_keys=Identity.generate().public_keys)
    broker_dir = tmp_path / "broker"
    generated = invoke("broker", "--site-config", config, "--config", broker_dir, "--generate-only")
    assert generated.exit_code == 0, generated.output
    args = ("keys", "--config", config, "pair-web", "phone", "--url", "https://flat1.example:8443")

    house = invoke(*args, "--broker-config", broker_dir)
    assert house.exit_code == 0, house.output
    pairing = parse_pairing_url(link_of(house.stdout))
    assert pairing.admin_key == "" and "admin_key" not in pairing.to_json()

    admin = admin_public_text(Ed25519PrivateKey.generate())
    with config.open("a") as toml:
        toml.write(f'\n[directory]\nadmin_key = "{admin}"\n')
    building = invoke(*args, "--broker-config", broker_dir)
    assert building.exit_code == 0, building.output
    pairing = parse_pairing_url(link_of(building.stdout))
    assert pairing.admin_key == admin and pairing.to_json()["v"] == 1
    assert f"site admin key in the link: {admin}" in building.stdout


def test_pair_web_without_a_running_broker_says_so(tmp_path: Path) -> None:
    config = hosting_unit(tmp_path, ws_port=9001, door_keys=Identity.generate().public_keys)
    broker_dir = tmp_path / "broker"
    generated = invoke("broker", "--site-config", config, "--config", broker_dir, "--generate-only")
    assert generated.exit_code == 0, generated.output

    result = invoke(
        "keys", "--config", config, "pair-web", "phone", "--url", "https://flat1.example:8443",
        "--broker-config", broker_dir,
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    assert "no running `callbox broker` found" in result.stdout
    pairing = parse_pairing_url(link_of(result.stdout))
    assert pairing.broker == "wss://flat1.example:9001", "wss on the page's host"
    # the broker listens beyond loopback, so it made the site CA; the link carries its SHA-256
    (ca,) = load_ca_certificates(broker_dir / "tls" / "ca.crt")
    assert pairing.ca == fingerprint(ca)
    assert f"site CA in the link: SHA-256 {fingerprint(ca)}" in result.stdout
    assert "install it as a CA certificate" in result.stdout
    assert "phone:" in (broker_dir / "passwords").read_text(), "the password file has the phone"
    regenerated = invoke(
        "broker", "--site-config", config, "--config", broker_dir, "--generate-only"
    )
    assert "password of phone" in regenerated.stdout, "--site-config keeps paired phones"


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["flat"], 2, "'flat' is this unit's own address"),
        (["door"], 2, "already a contact of this unit with role door"),
        (["Flat Phone"], 2, "is not a valid name"),
        (["phone", "--name", "a\tb"], 2, "--name"),
        (["phone", "--url", "ftp://x"], 2, "not an http:// or https:// URL"),
        (["phone", "--url", "https://x/#a"], 2, "has a query or fragment"),
        (["phone", "--broker-url", "ws://flat1.example:9001"], 2, "mixed content"),
        (["phone", "--broker-url", "mqtt://x:1"], 2, "not a ws:// or wss:// URL"),
        (["phone", "--broker-config", "/nonexistent"], 1, "no site broker configuration here"),
        (["admin"], 1, "'admin' is the site admin's broker account"),
    ],
)
def test_pair_web_refusals(tmp_path: Path, args: list[str], code: int, message: str) -> None:
    config = hosting_unit(tmp_path, ws_port=9001, door_keys=Identity.generate().public_keys)
    broker_dir = tmp_path / "broker"
    invoke("broker", "--site-config", config, "--config", broker_dir, "--generate-only")
    extra = [] if "--broker-config" in args else ["--broker-config", str(broker_dir)]
    url = [] if "--url" in args else ["--url", "https://flat1.example:8443"]
    result = invoke("keys", "--config", config, "pair-web", *args, *extra, *url)
    assert result.exit_code == code, result.output
    assert message in result.output
    assert not (broker_dir / "credentials" / "phone.password").exists(), "nothing was created"


def test_pair_web_needs_a_websockets_port(tmp_path: Path) -> None:
    config = hosting_unit(tmp_path, ws_port=0, door_keys=Identity.generate().public_keys)
    result = invoke("keys", "--config", config, "pair-web", "phone", "--broker-config", tmp_path)
    assert result.exit_code == 1
    assert "broker.websockets_port is 0" in result.stderr


# keys trust by fingerprint against a running daemon ------------------------------------------


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[DaemonSite]:
    """The door's daemon on a broker that also has an account for "phone"."""
    need(shutil.which("mosquitto") is not None, "mosquitto")
    broker = await start_loopback_broker(tmp_path, site="test", endpoints=("door", "flat", "phone"))
    site = DaemonSite(
        directory=tmp_path,
        broker=broker,
        files=broker.files,
        settings=broker.settings,
        notify=NotifySocket(tmp_path / "notify.sock"),
        config_path=tmp_path / "callbox.toml",
        control_path=tmp_path / "control.sock",
    )
    site.write_config()
    yield site
    await site.close()


@pytest.fixture
async def phone(site: DaemonSite) -> AsyncIterator[SignalingEndpoint]:
    """A browser phone's stand-in: logged in as "phone", its profile retained on the broker."""
    endpoint = SignalingEndpoint(
        transport=mqtt_transport(
            site="test",
            address="phone",
            broker=BrokerAddress(
                "127.0.0.1", site.settings.port, "phone", site.files.passwords["phone"]
            ),
        ),
        identity=Identity.generate(),
        contacts=ContactBook(),
        name="Anna's phone",
        role="web",
    )
    await endpoint.start()
    yield endpoint
    await endpoint.close()


async def wait_for_profile(site: DaemonSite, address: str) -> dict[str, object]:
    """What the daemon's ``peer_keys`` says once it has received ``address``'s profile.

    No event reaches the test: poll the control socket with a deadline.
    """
    deadline = time.monotonic() + TIMEOUT
    while True:
        result = await request(site.control_path, "peer_keys", {"address": address})
        if result["profile"] is not None:
            return result
        assert time.monotonic() < deadline, f"the daemon never saw the profile of {address}"
        await asyncio.sleep(0.02)


async def test_trust_by_fingerprint_pins_the_advertised_keys(
    site: DaemonSite, phone: SignalingEndpoint
) -> None:
    await site.start_daemon()
    seen = await wait_for_profile(site, "phone")
    keys = phone.identity.public_keys
    assert seen["profile"] == {
        "keys": keys.to_json(),
        "fingerprint": keys.fingerprint(),
        "name": "Anna's phone",
        "role": "web",
    }
    before = site.config_path.read_text()
    base: list[str | Path] = ["keys", "--config", site.config_path, "trust", "phone"]
    control: list[str | Path] = ["--control", site.control_path]

    other = Identity.generate().public_keys.fingerprint()
    mismatch = await callbox(*base, other, *control)
    assert mismatch.code == 1, mismatch.stderr
    assert f"key mismatch: phone advertises keys with fingerprint {keys.fingerprint()}" in (
        mismatch.stderr
    )
    assert "someone" in mismatch.stderr and "else's keys" in mismatch.stderr
    assert site.config_path.read_text() == before, "nothing trusted"

    unknown = await callbox("keys", "--config", site.config_path, "trust", "ghost", other, *control)
    assert unknown.code == 1
    assert "ghost has published no profile" in unknown.stderr

    # copied from the phone's screen: 8 groups, unquoted
    trusted = await callbox(
        *base, *keys.fingerprint().split(), "--rights", "unlock,monitor", "--ring", *control
    )
    assert trusted.code == 0, trusted.stderr
    assert f"trusted phone: fingerprint {keys.fingerprint()}" in trusted.stdout
    assert "role web" in trusted.stdout
    assert "the doorbell rings it" in trusted.stdout
    assert "applied to the running daemon" in trusted.stdout

    config = await asyncio.to_thread(load_config, site.config_path)
    contact = next(c for c in config.contacts() if c.address == "phone")
    assert contact.keys == keys
    assert (contact.name, contact.role) == ("Anna's phone", "web")
    assert {r.value for r in contact.rights} == {"unlock", "monitor"}
    assert config.targets == ("flat", "phone")

    # the same fingerprint without spaces, again: idempotent, rights changed
    compact = keys.fingerprint().replace(" ", "").upper()
    again = await callbox(*base, compact, "--rights", "", "--ring", *control)
    assert again.code == 0, again.stderr
    config = await asyncio.to_thread(load_config, site.config_path)
    assert config.targets == ("flat", "phone")
    assert next(c for c in config.contacts() if c.address == "phone").rights == frozenset()


async def test_trust_by_fingerprint_needs_the_daemon(tmp_path: Path) -> None:
    config = tmp_path / "callbox.toml"
    config.write_text(door_toml(port=1883, password="x", state_dir=tmp_path / "state"))
    fingerprint = Identity.generate().public_keys.fingerprint()
    result = await callbox(
        "keys", "--config", config, "trust", "phone", fingerprint,
        "--control", tmp_path / "none.sock",
    )  # fmt: skip
    assert result.code == 3
    assert "trusting by fingerprint takes the keys phone advertises" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["phone", "abc", "def"], "got 2 words that are neither"),
        (["phone", "not-a-key"], "not a public key pair"),
        (["door", "x"], "'door' is this unit's own address"),
        (["phone", "0" * 32, "--rights", "unlock,fly"], "'fly' is not a right"),
        (["phone", "0" * 32, "--role", "robot"], "'robot' is not one of"),
    ],
)
def test_trust_refusals(tmp_path: Path, args: list[str], message: str) -> None:
    config = tmp_path / "callbox.toml"
    config.write_text(door_toml(port=1883, password="x", state_dir=tmp_path / "state"))
    result = invoke("keys", "--config", config, "trust", *args, "--control", tmp_path / "x.sock")
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_trust_with_a_full_key_sets_role_rights_and_ring(tmp_path: Path) -> None:
    config = tmp_path / "callbox.toml"
    config.write_text(door_toml(port=1883, password="x", state_dir=tmp_path / "state"))
    keys = Identity.generate().public_keys.to_json()
    text = f"{keys['sign']}.{keys['dh']}"
    result = invoke(
        "keys", "--config", config, "trust", "tablet", text, "--role", "web", "--rights",
        "monitor", "--ring", "--control", tmp_path / "none.sock",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    loaded = load_config(config)
    contact = next(c for c in loaded.contacts() if c.address == "tablet")
    assert contact.role == "web" and {r.value for r in contact.rights} == {"monitor"}
    assert loaded.targets == ("flat", "tablet")
    assert contact.keys.to_json() == keys
    assert "the daemon is not running: the change applies when it starts" in result.stdout


def test_pair_web_for_a_flat_names_the_directory_doors_and_flat(tmp_path: Path) -> None:
    """A building's phone: its link names the site directory's doors and its flat's units."""
    config = hosting_unit(tmp_path, ws_port=9001, door_keys=Identity.generate().public_keys)
    broker_dir = tmp_path / "broker"
    invoke("broker", "--site-config", config, "--config", broker_dir, "--generate-only")
    site_dir = tmp_path / "site"
    assert invoke("site", "--dir", site_dir, "init", "--site", "home").exit_code == 0
    keys = {a: Identity.generate().public_keys for a in ("door-b", "f12-hall", "f13-hall")}
    for address, role, flat in (
        ("door-b", "door", ""),
        ("f12-hall", "indoor", "12"),
        ("f13-hall", "indoor", "13"),
    ):
        text = f"{keys[address].to_json()['sign']}.{keys[address].to_json()['dh']}"
        added = invoke(
            "site", "--dir", site_dir, "add", address, "--role", role, "--flat", flat,
            "--key", text,
        )  # fmt: skip
        assert added.exit_code == 0, added.output
    result = invoke(
        "keys", "--config", config, "pair-web", "f12-phone", "--url", "https://flat1.example:8443",
        "--broker-config", broker_dir, "--flat", "12", "--site-dir", site_dir, "--no-qr",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    pairing = parse_pairing_url(link_of(result.stdout))
    peers = {p.address: p.fingerprint for p in pairing.peers}
    assert peers["door-b"] == keys["door-b"].fingerprint()
    assert peers["f12-hall"] == keys["f12-hall"].fingerprint()
    assert "f13-hall" not in peers, "another flat's unit is not the phone's peer"
    assert "callbox site add f12-phone --role web --flat 12 --fingerprint" in result.stdout
    assert "keys trust" not in result.stdout, "not on every door: once, in the directory"
