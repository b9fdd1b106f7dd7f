"""Units reach the site broker over TLS and trust only the pinned site CA (issue 15, finding 2).

Against a real mosquitto whose TLS files are the site CA's (as ``callbox broker`` makes them):
a unit that pins that CA connects over TLS; a unit that pins another site's CA, or dials a
name the certificate does not carry, refuses to connect and says which broker, which CA and
why; a unit without a CA cannot talk plain MQTT to the TLS listener.
"""

from __future__ import annotations

import asyncio
import datetime
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from services.signaling.base import Inbound
from services.signaling.broker import (
    BrokerSettings,
    MosquittoBroker,
    free_port,
    write_broker_config,
)
from services.signaling.errors import SignalingError
from services.signaling.siteca import (
    SiteCaFiles,
    ensure_site_tls,
    fingerprint,
    load_ca_certificates,
)
from services.signaling.transport import BrokerAddress, MqttTransport, mqtt_transport

SITE = "tls"
LOOPBACK = ("localhost", "127.0.0.1", "::1")


@pytest.fixture
async def tls_broker(tmp_path: Path) -> AsyncIterator[MosquittoBroker]:
    """A mosquitto on a loopback port with the site CA's broker certificate."""
    site = await asyncio.to_thread(ensure_site_tls, SiteCaFiles(tmp_path / "tls"), LOOPBACK)
    settings = BrokerSettings(
        site=SITE,
        endpoints=("door",),
        port=free_port(),
        websockets_port=None,
        tls=site.files.tls_files(),
    )
    files = await asyncio.to_thread(write_broker_config, settings, tmp_path / "broker")
    broker = MosquittoBroker(files, settings)
    await broker.start()
    try:
        yield broker
    finally:
        await broker.close()


def unit(broker: MosquittoBroker, ca_file: Path | None, host: str = "127.0.0.1") -> MqttTransport:
    """The door's connection to ``broker``, pinning ``ca_file``."""
    transport = mqtt_transport(
        site=SITE,
        address="door",
        broker=BrokerAddress(
            host=host,
            port=broker.settings.port,
            username="door",
            password=broker.files.passwords["door"],
            ca_file=ca_file,
        ),
    )
    received: list[Inbound] = []
    transport.on_message = received.append
    return transport


async def test_a_unit_that_pins_the_site_ca_connects_over_tls(
    tls_broker: MosquittoBroker, tmp_path: Path
) -> None:
    transport = unit(tls_broker, tmp_path / "tls" / "ca.crt")
    try:
        await transport.start(timeout=10)
        assert transport.connected.is_set()
        client = transport._client
        assert client is not None
        sock = client._client.socket()
        assert isinstance(sock, ssl.SSLSocket)  # TLS, not plain MQTT
        assert sock.version() in ("TLSv1.2", "TLSv1.3")
    finally:
        await transport.close()


async def test_a_unit_that_pins_another_sites_ca_refuses_with_a_clear_error(
    tls_broker: MosquittoBroker, tmp_path: Path
) -> None:
    other = await asyncio.to_thread(ensure_site_tls, SiteCaFiles(tmp_path / "other"), LOOPBACK)
    transport = unit(tls_broker, other.files.ca_cert)
    started = time.monotonic()
    try:
        with pytest.raises(SignalingError) as refused:
            await transport.start(timeout=10)
    finally:
        await transport.close()
    message = str(refused.value)
    assert time.monotonic() - started < 5  # refused at once, not after the connect timeout
    assert f"refusing the broker at 127.0.0.1:{tls_broker.settings.port}" in message
    assert str(other.files.ca_cert) in message
    assert other.fingerprint in message
    assert "its TLS certificate is not signed by the pinned site CA" in message
    assert not transport.connected.is_set()


async def test_a_unit_that_dials_a_name_the_certificate_lacks_refuses(
    tmp_path: Path,
) -> None:
    site = await asyncio.to_thread(ensure_site_tls, SiteCaFiles(tmp_path / "tls"), ("flat1.local",))
    settings = BrokerSettings(
        site=SITE, endpoints=("door",), port=free_port(), websockets_port=None,
        tls=site.files.tls_files(),
    )  # fmt: skip
    files = await asyncio.to_thread(write_broker_config, settings, tmp_path / "broker")
    async with MosquittoBroker(files, settings) as broker:
        transport = unit(broker, site.files.ca_cert)
        try:
            with pytest.raises(
                SignalingError,
                match=r"its TLS certificate is not for the host name 127\.0\.0\.1 .*mismatch",
            ):
                await transport.start(timeout=10)
        finally:
            await transport.close()


async def test_the_hosting_units_own_daemon_logs_in_plain_over_loopback(
    tls_broker: MosquittoBroker,
) -> None:
    """From the LAN the same login is refused: tests/netns/test_tls_listener.py."""
    transport = unit(tls_broker, None)
    try:
        await transport.start(timeout=5)
        client = transport._client
        assert client is not None
        assert not isinstance(client._client.socket(), ssl.SSLSocket)
    finally:
        await transport.close()


async def test_a_missing_ca_file_is_named(tls_broker: MosquittoBroker, tmp_path: Path) -> None:
    transport = unit(tls_broker, tmp_path / "nowhere.crt")
    try:
        with pytest.raises(SignalingError, match=r"site CA file .*nowhere\.crt: cannot read it"):
            await transport.start(timeout=10)
    finally:
        await transport.close()


# the site CA files ------------------------------------------------------------------------------


def test_the_site_ca_is_made_once_and_kept(tmp_path: Path) -> None:
    files = SiteCaFiles(tmp_path / "tls")
    first = ensure_site_tls(files, LOOPBACK)
    assert any("new site CA" in line for line in first.made)
    ca_pem, server_pem = files.ca_cert.read_bytes(), files.server_cert.read_bytes()
    again = ensure_site_tls(files, LOOPBACK)
    assert again.made == ()
    assert again.fingerprint == first.fingerprint
    assert (files.ca_cert.read_bytes(), files.server_cert.read_bytes()) == (ca_pem, server_pem)
    assert files.ca_key.stat().st_mode & 0o777 == 0o600
    assert files.server_key.stat().st_mode & 0o777 == 0o600
    (ca,) = load_ca_certificates(files.ca_cert)
    assert fingerprint(ca) == first.fingerprint
    public = ca.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert isinstance(public.curve, ec.SECP256R1)
    server = x509.load_pem_x509_certificate(server_pem)
    server.verify_directly_issued_by(ca)
    assert set(first.names) == set(LOOPBACK)


def test_the_broker_certificate_is_reissued_under_the_same_ca(tmp_path: Path) -> None:
    files = SiteCaFiles(tmp_path / "tls")
    first = ensure_site_tls(files, LOOPBACK)
    # a new address of the unit
    more = ensure_site_tls(files, (*LOOPBACK, "192.0.2.7"))
    assert "192.0.2.7" in more.names
    assert more.fingerprint == first.fingerprint
    assert any("new names: 192.0.2.7" in line for line in more.made)
    # close to expiry
    late = first.not_after - datetime.timedelta(days=10)
    renewed = ensure_site_tls(files, (*LOOPBACK, "192.0.2.7"), now=late)
    assert renewed.fingerprint == first.fingerprint
    assert renewed.not_after > first.not_after


def test_a_ca_certificate_without_its_key_is_never_replaced(tmp_path: Path) -> None:
    files = SiteCaFiles(tmp_path / "tls")
    ensure_site_tls(files, LOOPBACK)
    pinned = files.ca_cert.read_bytes()
    files.ca_key.unlink()
    with pytest.raises(SignalingError, match=r"its key .* is not"):
        ensure_site_tls(files, LOOPBACK)
    assert files.ca_cert.read_bytes() == pinned
