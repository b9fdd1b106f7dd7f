"""``callbox web``: serve the browser phone's page (the built ``web/`` directory).

Browsers give camera and microphone only to secure contexts: a page served over https, or
over http from localhost. So ``callbox web`` speaks plain http on loopback only (development
on the machine itself) and refuses any other address without a certificate, unless told
``--insecure`` (a TLS proxy in front of it). callbox-web.service runs it with the unit's
certificate on port 8443.

The server (device/phone/_pageserver.py) serves only the built page (an allow-list: index.html,
style.css, dist/*, a manifest and icons), under handshake, header and idle timeouts and a
connection cap, on one asyncio event loop.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import click

from device.phone import PageFiles, PageServer, WebTls, tls_context
from services.addresses import is_loopback

DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "web"
"""The web/ directory of the source tree this package runs from."""

HTTP_LISTEN = "127.0.0.1:8080"
HTTPS_LISTEN = "0.0.0.0:8443"

SECURE_CONTEXT_HINT = (
    "browsers allow camera and microphone only in secure contexts (https, or http on "
    "localhost), so a phone could not answer calls from that page"
)


def register(main: click.Group) -> None:
    """Add ``web`` to the ``callbox`` group."""
    main.add_command(web)


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) as (host, port); BadParameter naming the problem.

    Port 0 means a free port (the URL printed at start names it).
    """
    host, _, port = value.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not host or not port.isdigit() or int(port) > 65535:
        raise click.BadParameter(
            f"{value!r} is not HOST:PORT with a port within 0..65535", param_hint="--listen"
        )
    return host, int(port)


def check_build(root: Path) -> None:
    """Raise ClickException unless ``root`` holds the page and its bundle."""
    if not root.is_dir():
        raise click.ClickException(
            f"{root}: no such directory: give --root with the web/ directory of the callbox "
            "source tree"
        )
    if not (root / "index.html").is_file():
        raise click.ClickException(f"{root}: no index.html: is this the web/ directory?")
    if not (root / "dist" / "main.js").is_file():
        raise click.ClickException(
            f"{root}: the page is not built (no dist/main.js): run `make web`, or "
            "`npm ci && npm run build` in web/"
        )


@click.command()
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_ROOT,
    show_default=True,
    help="The built web/ directory (index.html, dist/main.js).",
)
@click.option(
    "--listen",
    help=f"HOST:PORT [default: {HTTP_LISTEN}; with --tls-cert, {HTTPS_LISTEN}].",
)
@click.option(
    "--tls-cert",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="PEM certificate (chain) for HTTPS.",
)
@click.option(
    "--tls-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="PEM private key of --tls-cert.",
)
@click.option(
    "--insecure",
    is_flag=True,
    help="Serve plain http on an address other than loopback (e.g. behind a TLS proxy).",
)
def web(
    root: Path, listen: str | None, tls_cert: Path | None, tls_key: Path | None, insecure: bool
) -> None:
    """Serve the browser phone's page until SIGTERM or SIGINT."""
    if (tls_cert is None) != (tls_key is None):
        raise click.UsageError("--tls-cert and --tls-key go together")
    tls = WebTls(tls_cert, tls_key) if tls_cert and tls_key else None
    host, port = parse_listen(listen or (HTTPS_LISTEN if tls else HTTP_LISTEN))
    if tls is None and not is_loopback(host) and not insecure:
        raise click.UsageError(
            f"refusing to serve plain http on {host}: {SECURE_CONTEXT_HINT}. Give --tls-cert "
            'and --tls-key (docs/operations.md, "Browser phones"), listen on 127.0.0.1 for '
            "development, or add --insecure when a TLS proxy serves the page"
        )
    root = root.resolve()
    check_build(root)
    context = tls_context(tls) if tls is not None else None
    server = PageServer(PageFiles(root), host, port, context)
    asyncio.run(_serve(server, warn_plain=tls is None and not is_loopback(host)))


async def _serve(server: PageServer, *, warn_plain: bool) -> None:
    """Serve until SIGTERM or SIGINT, then close every connection."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGTERM, signal.SIGINT)
    received: list[signal.Signals] = []

    def on_signal(signum: signal.Signals) -> None:
        received.append(signum)
        stop.set()

    for signum in signals:
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        await server.start()
        try:
            click.echo(f"serving {server.files.root} on {server.url}")
            if warn_plain:
                click.echo(f"warning: plain http: {SECURE_CONTEXT_HINT}", err=True)
            await stop.wait()
            click.echo(f"{received[0].name}: stopping")
        finally:
            await server.close()
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)
