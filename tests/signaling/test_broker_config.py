"""The generated mosquitto configuration, and the ACL as the real mosquitto enforces it."""

from __future__ import annotations

import asyncio
import base64
import datetime
import hashlib
import ipaddress
import json
import stat
from pathlib import Path

import aiomqtt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from harness.simsite import EndpointSpec, SimSite
from signaling_harness import (
    QUIET_WINDOW_S,
    eventually,
    place_and_complete_call,
    publish_raw,
    raw_client,
    retained,
    topics,
    wait_rejected,
)
from support import TIMEOUT, MakeSite

from services.signaling.base import presence_payload
from services.signaling.broker import (
    ADMIN_PASSWORD_FILE,
    ADMIN_USER,
    PBKDF2_ITERATIONS,
    BrokerSettings,
    MosquittoBroker,
    TlsFiles,
    free_ports,
    write_broker_config,
)
from services.signaling.contacts import ContactBook
from services.signaling.endpoint import SignalingEndpoint
from services.signaling.errors import RejectReason, SignalingError
from services.signaling.identity import Identity
from services.signaling.transport import BrokerAddress, mqtt_transport

# --------------------------------------------------------------------------- the files


def settings(**overrides: object) -> BrokerSettings:
    values: dict[str, object] = {
        "site": "block-7",
        "endpoints": ("door", "flat-1"),
        "host": "127.0.0.1",
        "port": 18830,
        "websockets_port": 19001,
        "max_packet_size": 131072,
        "max_connections": 42,
    }
    values.update(overrides)
    return BrokerSettings(**values)  # type: ignore[arg-type]


def conf_lines(config: Path) -> list[str]:
    return [line.strip() for line in config.read_text().splitlines()]


def listener_blocks(lines: list[str]) -> dict[str, list[str]]:
    """The lines after each ``listener`` line, up to the next one, by listener line."""
    blocks: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in lines:
        if line.startswith("listener "):
            current = blocks.setdefault(line, [])
        elif current is not None and line:
            current.append(line)
    return blocks


def test_config_has_listeners_limits_and_nodelay(tmp_path: Path) -> None:
    files = write_broker_config(settings(), tmp_path)
    lines = conf_lines(files.config)
    assert "allow_anonymous false" in lines
    assert "set_tcp_nodelay true" in lines
    assert "max_packet_size 131072" in lines
    assert f"password_file {tmp_path / 'passwords'}" in lines
    assert f"acl_file {tmp_path / 'acl'}" in lines
    blocks = listener_blocks(lines)
    # a listener option before the first listener would open mosquitto's default 1883
    assert not any(
        line.startswith(("listener", "protocol", "max_connections", "use_username"))
        for line in lines[: lines.index("listener 1884 127.0.0.1")]
    )
    # mosquitto listens on loopback only: callbox's fronts serve the site address (MQTT on
    # 18830, WebSockets on 19001) and connect there, each capping its own connections
    assert set(blocks) == {"listener 1884 127.0.0.1"}
    (block,) = blocks.values()
    assert "protocol mqtt" in block
    assert "max_connections 84" in block  # two fronts of 42
    assert "use_username_as_clientid true" in block
    assert not any(line.startswith(("certfile", "keyfile", "cafile")) for line in block)
    assert not any("websockets" in line for line in lines)


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20"])
def test_mosquitto_never_listens_beyond_loopback(tmp_path: Path, host: str) -> None:
    files = write_broker_config(settings(websockets_port=None, host=host), tmp_path)
    blocks = listener_blocks(conf_lines(files.config))
    assert list(blocks) == ["listener 1884 127.0.0.1"]
    assert "max_connections 42" in blocks["listener 1884 127.0.0.1"]


def test_tls_files_go_to_the_fronts_not_to_mosquitto(tmp_path: Path) -> None:
    cert, key, ca = (tmp_path / name for name in ("broker.crt", "broker.key", "ca.crt"))
    for path in (cert, key, ca):
        path.write_text("PEM\n")
    files = write_broker_config(
        settings(tls=TlsFiles(certfile=cert, keyfile=key, cafile=ca), host="0.0.0.0"),
        tmp_path / "broker",
    )
    lines = conf_lines(files.config)
    # the fronts terminate TLS (front.py); mosquitto's loopback listener stays plaintext
    assert list(listener_blocks(lines)) == ["listener 1884 127.0.0.1"]
    assert not any(line.startswith(("certfile", "keyfile", "cafile")) for line in lines)


@pytest.mark.parametrize("missing", ["certfile", "keyfile"])
def test_missing_tls_file_is_a_clear_error(tmp_path: Path, missing: str) -> None:
    tls = TlsFiles(certfile=tmp_path / "broker.crt", keyfile=tmp_path / "broker.key")
    absent = getattr(tls, missing)
    present = tls.keyfile if missing == "certfile" else tls.certfile
    present.write_text("PEM\n")
    with pytest.raises(SignalingError, match=f"{absent} does not exist"):
        write_broker_config(settings(tls=tls), tmp_path / "broker")
    assert not (tmp_path / "broker" / "mosquitto.conf").exists()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"site": "Block 7"}, "site"),
        ({"endpoints": ("door", "flat/1")}, "endpoint address"),
        ({"port": 0}, "port 0"),
        ({"websockets_port": 70000}, "websockets_port 70000"),
        ({"max_packet_size": 8192}, "max_packet_size 8192"),
        ({"port": 1884}, "must differ"),
        ({"websockets_port": 18830}, "must differ"),
        ({"max_pending_per_source": 200}, "max_pending_per_source"),
        ({"connect_timeout_s": 0}, "connect_timeout_s 0"),
    ],
)
def test_bad_settings_are_refused(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(SignalingError, match=message):
        settings(**overrides)


def test_passwords_are_pbkdf2_hashes_and_credentials_are_private(tmp_path: Path) -> None:
    files = write_broker_config(settings(), tmp_path)
    assert set(files.passwords) == {"door", "flat-1"}
    entries = dict(line.split(":", 1) for line in (tmp_path / "passwords").read_text().split())
    assert set(entries) == {"door", "flat-1", ADMIN_USER}  # the site admin: the directory
    admin = (tmp_path / ADMIN_PASSWORD_FILE).read_text().strip()
    for address, hashed in entries.items():
        password = admin if address == ADMIN_USER else files.passwords[address]
        assert hashed.startswith("$7$")
        _, seven, iterations, salt, digest = hashed.split("$")
        assert (seven, int(iterations)) == ("7", PBKDF2_ITERATIONS)
        expected = hashlib.pbkdf2_hmac(
            "sha512", password.encode(), base64.b64decode(salt), PBKDF2_ITERATIONS
        )
        assert base64.b64decode(digest) == expected
        assert password not in (tmp_path / "passwords").read_text()
    for private in (
        files.password_file("door"),
        files.password_file("flat-1"),
        tmp_path / "passwords",
        tmp_path / ADMIN_PASSWORD_FILE,
        tmp_path / "acl",
        files.config,
    ):
        assert stat.S_IMODE(private.stat().st_mode) == 0o600, private
    assert files.password_file("door").read_text().strip() == files.passwords["door"]
    assert files.passwords["door"] != files.passwords["flat-1"]


def test_regeneration_keeps_passwords_and_adds_new_endpoints(tmp_path: Path) -> None:
    first = write_broker_config(settings(), tmp_path)
    second = write_broker_config(settings(endpoints=("door", "flat-1", "flat-2")), tmp_path)
    assert second.passwords["door"] == first.passwords["door"]
    assert second.passwords["flat-1"] == first.passwords["flat-1"]
    assert set(second.passwords) == {"door", "flat-1", "flat-2"}
    assert stat.S_IMODE(second.password_file("flat-2").stat().st_mode) == 0o600
    assert "flat-2:$7$" in (tmp_path / "passwords").read_text()


def test_acl_text_names_the_site(tmp_path: Path) -> None:
    files = write_broker_config(settings(), tmp_path)
    acl = (files.directory / "acl").read_text().splitlines()
    assert "pattern read callbox/v1/block-7/%u/inbox" in acl
    assert "pattern write callbox/v1/block-7/door/inbox" in acl
    assert not any("+/inbox" in line for line in acl), "only the site's own inboxes are writable"
    assert "pattern readwrite callbox/v1/block-7/%u/presence" in acl
    assert "pattern readwrite callbox/v1/block-7/%u/profile" in acl
    # the signed site directory: everyone reads it, the admin account alone writes it
    assert "pattern read callbox/v1/block-7/directory" in acl
    assert acl[acl.index(f"user {ADMIN_USER}") + 1] == "topic write callbox/v1/block-7/directory"


def test_the_admin_account_is_not_an_endpoint_address() -> None:
    with pytest.raises(SignalingError, match="site admin's broker account"):
        settings(endpoints=("door", ADMIN_USER))


# --------------------------------------------------------------------------- the real broker


@pytest.fixture
async def acl_site(make_site: MakeSite) -> SimSite:
    """A site with door and indoor1 as endpoints; eve and mallory as bare broker accounts."""
    return await make_site(
        EndpointSpec("door", role="door"),
        EndpointSpec("indoor1"),
        extra_accounts=("mallory", "eve"),
    )


async def test_only_the_owner_reads_an_inbox(acl_site: SimSite) -> None:
    indoor1 = acl_site["indoor1"]
    async with raw_client(acl_site, "eve") as eve:
        # mosquitto 2.0 grants the subscription and checks read access on each delivery
        await eve.subscribe(topics(acl_site).inbox("indoor1"), qos=1)
        await publish_raw(acl_site, "indoor1", b"acl probe", as_user="mallory")
        # the owner's own subscription gets it (and drops it: it is not JSON) ...
        await wait_rejected(indoor1, RejectReason.BAD_JSON, 1)
        # ... eve's does not
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(QUIET_WINDOW_S):  # nothing may arrive in this window
                async for message in eve.messages:
                    raise AssertionError(f"eve read {message.payload!r} from indoor1's inbox")


async def test_nobody_overwrites_another_endpoints_presence_or_profile(acl_site: SimSite) -> None:
    t = topics(acl_site)
    profile_before = await retained(acl_site, t.profile("indoor1"))
    async with raw_client(acl_site, "mallory") as mallory:
        await mallory.publish(t.presence("indoor1"), presence_payload(False), qos=1, retain=True)
        await mallory.publish(
            t.profile("indoor1"), json.dumps({"name": "evil"}).encode(), qos=1, retain=True
        )
        # a publish on its own presence is allowed: proves the publishes above were sent
        await mallory.publish(t.presence("mallory"), presence_payload(True), qos=1, retain=True)
    assert json.loads(await retained(acl_site, t.presence("mallory"))) == {"state": "online"}
    assert json.loads(await retained(acl_site, t.presence("indoor1"))) == {"state": "online"}
    assert await retained(acl_site, t.profile("indoor1")) == profile_before
    assert acl_site["door"].signaling.is_online("indoor1")
    assert acl_site["door"].signaling.profiles["indoor1"]["name"] != "evil"


async def test_wrong_password_is_refused(acl_site: SimSite) -> None:
    with pytest.raises(aiomqtt.MqttError) as info:
        async with raw_client(acl_site, "eve", password="not-the-password"):
            pass
    assert "not authorized" in str(info.value).lower() or "bad user" in str(info.value).lower()


async def test_anonymous_is_refused(acl_site: SimSite) -> None:
    with pytest.raises(aiomqtt.MqttError):
        async with raw_client(acl_site, None):
            pass


async def test_unknown_account_is_refused(acl_site: SimSite) -> None:
    with pytest.raises(aiomqtt.MqttError):
        async with raw_client(acl_site, "stranger", password="guess"):
            pass


async def test_websockets_listener_serves_the_same_acl(acl_site: SimSite) -> None:
    port = acl_site.broker_settings.websockets_port
    assert port is not None
    t = topics(acl_site)
    async with raw_client(acl_site, "eve", transport="websockets", port=port) as eve:
        await eve.subscribe(t.all_presence(), qos=1)
        async with asyncio.timeout(TIMEOUT):
            seen: dict[str, bytes] = {}
            async for message in eve.messages:
                assert isinstance(message.payload, bytes)
                seen[str(message.topic)] = message.payload
                if {t.presence("door"), t.presence("indoor1")} <= set(seen):
                    break
        assert json.loads(seen[t.presence("door")]) == {"state": "online"}


async def test_packet_over_max_packet_size_is_dropped_by_the_broker(acl_site: SimSite) -> None:
    indoor1 = acl_site["indoor1"]
    limit = acl_site.broker_settings.max_packet_size
    received_before = indoor1.signaling.received
    # QoS 0: nothing to wait for but the broker's verdict, which is to cut mallory off
    with pytest.raises(aiomqtt.MqttError, match="Disconnected"):
        async with raw_client(acl_site, "mallory") as mallory:
            await mallory.publish(topics(acl_site).inbox("indoor1"), b"x" * (limit + 1), qos=0)
            async with asyncio.timeout(TIMEOUT):
                async for _ in mallory.messages:
                    raise AssertionError("mallory received a message")
    await eventually(
        lambda: "disconnected due to oversize packet" in acl_site.broker.log_file.read_text(),
        "mosquitto to log the oversize packet",
    )
    await asyncio.sleep(QUIET_WINDOW_S)  # nothing may reach indoor1 in this window
    assert sum(indoor1.signaling.rejected.values()) == 0
    assert indoor1.signaling.received == received_before
    assert indoor1.signaling.transport.connections == 1
    # a packet right at the limit still goes through (and the envelope parser refuses it)
    await publish_raw(acl_site, "indoor1", b"x" * (limit - 1024))
    await wait_rejected(indoor1, RejectReason.OVERSIZE, 1)
    await place_and_complete_call(acl_site)


async def test_no_account_can_take_over_another_endpoints_connection(acl_site: SimSite) -> None:
    """MQTT hands a client id to its newest connection; the id must be the login name."""
    door, indoor1 = acl_site["door"], acl_site["indoor1"]
    presence_seen: list[tuple[str, bool]] = []
    forward = indoor1.signaling.on_presence
    assert forward is not None

    def record(address: str, online: bool) -> None:
        presence_seen.append((address, online))
        forward(address, online)

    indoor1.signaling.on_presence = record
    indoor1.signaling.set_targets(["mallory"])  # followed, to see its presence arrive
    async with raw_client(acl_site, "mallory", identifier="door") as mallory:
        await mallory.publish(
            topics(acl_site).presence("mallory"), presence_payload(True), qos=1, retain=True
        )
        await asyncio.sleep(QUIET_WINDOW_S)  # the door must not be kicked off in this window
    assert door.signaling.transport.connections == 1
    assert door.signaling.transport.connected.is_set()
    assert ("door", False) not in presence_seen
    assert ("mallory", True) in presence_seen
    await place_and_complete_call(acl_site)


def make_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it: (ca, cert, key) PEM files."""
    now = datetime.datetime.now(datetime.UTC)

    def build(
        subject: str,
        key: ec.EllipticCurvePrivateKey,
        issuer: str,
        signer: ec.EllipticCurvePrivateKey,
    ) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        build("callbox test CA", ca_key, "callbox test CA", ca_key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        build("127.0.0.1", key, "callbox test CA", ca_key)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = directory / "ca.crt", directory / "broker.crt", directory / "broker.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    paths[2].chmod(0o600)
    return paths


async def test_tls_configuration_runs_on_the_real_broker(tmp_path: Path) -> None:
    ca, cert, key = make_certificates(tmp_path)
    port, websockets_port, bridge_port = free_ports(3)
    tls_settings = BrokerSettings(
        site="sim",
        endpoints=("door",),
        port=port,
        websockets_port=websockets_port,
        bridge_port=bridge_port,
        tls=TlsFiles(certfile=cert, keyfile=key),
    )
    files = await asyncio.to_thread(write_broker_config, tls_settings, tmp_path / "broker")
    login = {"username": "door", "password": files.passwords["door"], "timeout": 5}
    async with MosquittoBroker(files, tls_settings):
        for listener, transport in (
            (tls_settings.port, "tcp"),
            (tls_settings.websockets_port, "websockets"),
        ):
            assert listener is not None
            async with aiomqtt.Client(
                "127.0.0.1",
                listener,
                tls_params=aiomqtt.TLSParameters(ca_certs=str(ca)),
                transport=transport,  # type: ignore[arg-type]
                **login,  # type: ignore[arg-type]
            ) as client:
                await client.publish("callbox/v1/sim/door/presence", b"{}", qos=1)
        # the endpoint's own transport, verifying the broker against the CA
        endpoint = SignalingEndpoint(
            transport=mqtt_transport(
                site="sim",
                address="door",
                broker=BrokerAddress(
                    "127.0.0.1", tls_settings.port, "door", files.passwords["door"], ca_file=ca
                ),
            ),
            identity=Identity.generate(),
            contacts=ContactBook(),
        )
        try:
            await endpoint.start(timeout=TIMEOUT)  # subscribed and announced over TLS
            assert endpoint.transport.connected.is_set()
        finally:
            await endpoint.close()
        # plaintext on the wss listener is refused (plain MQTT over loopback on the MQTT
        # port is the hosting unit's own: tests/netns/test_tls_listener.py)
        with pytest.raises(aiomqtt.MqttError):
            async with aiomqtt.Client(
                "127.0.0.1",
                websockets_port,
                transport="websockets",
                username="door",
                password=files.passwords["door"],
                timeout=1,
            ):
                pass
