"""``callbox web``: the browser phone's page over HTTP on loopback and over HTTPS.

As its own process answering real requests; its refusals in process; callbox-web.service.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import urllib.error
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from support import Certificate
from test_systemd_units import HARDENING, parse_unit
from web_helpers import INDEX, MAIN_JS, WebProcess, WebProcesses, get, make_root

from device.cli import main

UNITS = Path(__file__).resolve().parents[2] / "device" / "systemd"


def invoke(*args: str | Path) -> Result:
    """``callbox ARGS`` in this process."""
    return CliRunner().invoke(main, [str(arg) for arg in args])


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A built page without npm: index.html, style.css and dist/main.js."""
    return make_root(tmp_path)


StartWeb = Callable[..., Awaitable[WebProcess]]


@pytest.fixture
async def start_web() -> AsyncIterator[StartWeb]:
    """Start ``callbox web ARGS`` and return it once it says where it serves.

    Usage: ``await start_web(*args)``; every process started is stopped at the end of the test.
    """
    processes = WebProcesses()
    yield processes.start
    await processes.stop_all()


async def test_serves_the_page_and_its_module_over_http_on_loopback(
    root: Path, start_web: StartWeb
) -> None:
    web = await start_web("--root", root, "--listen", "127.0.0.1:0")
    assert web.url.startswith("http://127.0.0.1:")

    assert await asyncio.to_thread(get, f"{web.url}/") == (200, "text/html; charset=utf-8", INDEX)
    assert await asyncio.to_thread(get, f"{web.url}/dist/main.js") == (
        200,
        "text/javascript",
        MAIN_JS,
    )
    status, kind, _ = await asyncio.to_thread(get, f"{web.url}/style.css")
    assert (status, kind) == (200, "text/css")
    status, _, _ = await asyncio.to_thread(get, f"{web.url}/nothing.js")
    assert status == 404

    assert await web.stop() == 0


async def test_serves_https_with_a_certificate(
    root: Path, certificate: Certificate, start_web: StartWeb
) -> None:
    web = await start_web(
        "--root", root, "--listen", "127.0.0.1:0",
        "--tls-cert", certificate.cert, "--tls-key", certificate.key,
    )  # fmt: skip
    assert web.url.startswith("https://127.0.0.1:")
    trusting = ssl.create_default_context(cafile=str(certificate.cert))

    assert await asyncio.to_thread(get, f"{web.url}/index.html", trusting) == (
        200,
        "text/html; charset=utf-8",
        INDEX,
    )
    status, kind, body = await asyncio.to_thread(get, f"{web.url}/dist/main.js", trusting)
    assert (status, kind, body) == (200, "text/javascript", MAIN_JS)

    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        await asyncio.to_thread(get, f"{web.url}/", ssl.create_default_context())
    plain = web.url.replace("https://", "http://")
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        await asyncio.to_thread(get, f"{plain}/")  # no plain http on the TLS port
    assert await web.stop() == 0


async def test_insecure_serves_plain_http_on_every_address_with_a_warning(
    root: Path, start_web: StartWeb
) -> None:
    web = await start_web("--root", root, "--listen", "0.0.0.0:0", "--insecure")
    port = web.url.rsplit(":", 1)[1]
    status, _, body = await asyncio.to_thread(get, f"http://127.0.0.1:{port}/")
    assert (status, body) == (200, INDEX)
    assert await web.stop() == 0
    assert "secure contexts" in (await web.stderr.read()).decode()


def test_refuses_plain_http_beyond_loopback(root: Path) -> None:
    result = invoke("web", "--root", root, "--listen", "0.0.0.0:8080")
    assert result.exit_code == 2
    assert "refusing to serve plain http on 0.0.0.0" in result.output
    assert "browsers allow camera and microphone only in secure contexts" in result.output
    lan = invoke("web", "--root", root, "--listen", "192.168.1.20:8080")
    assert lan.exit_code == 2 and "secure contexts" in lan.output


def test_refuses_a_missing_build(root: Path) -> None:
    (root / "dist" / "main.js").unlink()
    result = invoke("web", "--root", root, "--listen", "127.0.0.1:0")
    assert result.exit_code == 1
    assert "the page is not built (no dist/main.js): run `make web`" in result.output
    assert "npm run build` in web/" in result.output

    (root / "index.html").unlink()
    assert "no index.html" in invoke("web", "--root", root).output
    assert "no such directory" in invoke("web", "--root", root / "nope").output


def test_refuses_a_port_in_use(root: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = invoke("web", "--root", root, "--listen", f"127.0.0.1:{port}")
    assert result.exit_code == 1
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in result.output


def test_refuses_a_bad_certificate(root: Path, certificate: Certificate, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    result = invoke(
        "web", "--root", root, "--listen", "127.0.0.1:0",
        "--tls-cert", garbage, "--tls-key", certificate.key,
    )  # fmt: skip
    assert result.exit_code == 1
    assert f"cannot use certificate {garbage} with key {certificate.key}" in result.output

    other_key = tmp_path / "other.key"
    other_key.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    mismatched = invoke(
        "web", "--root", root, "--listen", "127.0.0.1:0",
        "--tls-cert", certificate.cert, "--tls-key", other_key,
    )  # fmt: skip
    assert mismatched.exit_code == 1 and "cannot use certificate" in mismatched.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--listen", "8080"], "is not HOST:PORT"),
        (["--listen", "127.0.0.1:99999"], "within 0..65535"),
        (["--tls-cert", "{cert}"], "--tls-cert and --tls-key go together"),
        (["--tls-key", "/nonexistent.key"], "does not exist"),
    ],
)
def test_refuses_bad_options(
    root: Path, certificate: Certificate, args: list[str], message: str
) -> None:
    filled = [arg.replace("{cert}", str(certificate.cert)) for arg in args]
    result = invoke("web", "--root", root, *filled)
    assert result.exit_code == 2
    assert message in result.output


# the systemd unit -------------------------------------------------------------------------------


def test_web_unit_serves_https_confined() -> None:
    unit = parse_unit(UNITS / "callbox-web.service")
    service = unit["Service"]
    for key, expected in HARDENING.items():
        assert service.get(key) == expected, key
    assert service["ExecStart"] == (
        "/opt/callbox/bin/callbox web --root /opt/callbox/web --listen 0.0.0.0:8443 "
        "--tls-cert /var/lib/callbox-broker/tls/server.crt "
        "--tls-key /var/lib/callbox-broker/tls/server.key"
    )
    assert "callbox-broker.service" in unit["Unit"]["After"], "the site certificate first"
    assert service["PrivateDevices"] == "yes"
    assert "ReadWritePaths" not in service
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_broker_unit_reloads_with_sighup() -> None:
    service = parse_unit(UNITS / "callbox-broker.service")["Service"]
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
