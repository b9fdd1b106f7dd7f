"""The site's TURN relay on the command line: ``callbox turn secret|config|import``.

On the broker host: ``turn secret`` makes the site's shared secret (``<broker dir>/turn/secret``,
0600), ``turn config`` writes coturn's turnserver.conf from it (services/media/turnserver.py;
the TLS listener uses the site CA's broker certificate unless ``--cert``/``--key`` say
otherwise). On a door station (or any unit that should mint credentials): ``turn import FILE
--url URL`` copies the secret next to callbox.toml as turn.secret and sets ``[turn]``.
"""

from __future__ import annotations

import grp
import json
import os
from pathlib import Path

import click

from device.cli._admin import config_option, control_option, fail
from device.cli._shared import broker_config_option, install_settings
from services.media.errors import MediaError
from services.media.turn import MIN_SECRET_CHARS, new_secret
from services.media.turnserver import TurnServerSettings, coturn_config
from services.signaling.siteca import site_ca_files

COTURN_GROUP = "turnserver"
"""The group Debian's coturn service runs as: it must read turnserver.conf."""
SECRET_NAME = "turn.secret"
"""The imported secret's file name, next to the unit's callbox.toml."""


def register(main: click.Group) -> None:
    """Add ``callbox turn`` to the ``callbox`` group."""
    main.add_command(turn)


def secret_path(broker_config: Path) -> Path:
    """Where the site's TURN secret lives on the broker host."""
    return broker_config / "turn" / "secret"


def write_private(path: Path, text: str, mode: int = 0o600) -> None:
    """Write ``text`` to ``path`` readable by its owner only (``mode``), replacing it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".new")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(descriptor, "w", encoding="utf-8") as out:
        out.write(text)
    os.chmod(temporary, mode)
    temporary.replace(path)


def read_secret(path: Path) -> str:
    """The secret in ``path``; a ClickException naming the file when it is missing or bad."""
    try:
        secret = path.read_text(encoding="utf-8").strip()
    except OSError as err:
        raise click.ClickException(
            f"cannot read the TURN secret {path}: {err.strerror} (make it: callbox turn secret)"
        ) from err
    if len(secret) < MIN_SECRET_CHARS or any(c.isspace() for c in secret):
        raise click.ClickException(f"{path} holds no usable TURN secret (16+ characters)")
    return secret


@click.group()
def turn() -> None:
    """The site's TURN relay (coturn): its secret, its configuration, units that use it."""


@turn.command("secret")
@broker_config_option
@click.option("--force", is_flag=True, help="Replace an existing secret (units need the new one).")
def turn_secret(broker_config: Path, force: bool) -> None:
    """Make the site's TURN shared secret on the broker host (0600)."""
    path = secret_path(broker_config)
    if path.exists() and not force:
        fail(f"{path} exists: every unit that mints credentials has it (--force replaces it)")
    write_private(path, new_secret() + "\n")
    click.echo(f"made {path}")
    click.echo("copy it to each door station (scp, 0600) and there run:")
    url = "turns:<relay name>:5349?transport=tcp"
    click.echo(f"  sudo callbox turn import {path.name} --url {url}")


@turn.command("config")
@broker_config_option
@click.option("--realm", required=True, help="The relay's realm: the site's name.")
@click.option(
    "--listen", "listen", multiple=True, required=True, help="An address coturn listens on."
)
@click.option("--lan", multiple=True, help="The site's LAN (CIDR) the relay may send to (repeat).")
@click.option("--relay-ip", default="", help="The address relayed media leaves from.")
@click.option("--external-ip", default="", help="The public address, behind 1:1 NAT.")
@click.option("--port", default=3478, show_default=True, help="turn: (UDP and TCP).")
@click.option("--tls-port", default=5349, show_default=True, help="turns: (TLS over TCP).")
@click.option("--min-port", default=49152, show_default=True, help="First relay port (UDP).")
@click.option("--max-port", default=49407, show_default=True, help="Last relay port (UDP).")
@click.option("--cert", type=click.Path(path_type=Path, dir_okay=False), default=None)
@click.option("--key", type=click.Path(path_type=Path, dir_okay=False), default=None)
@click.option("--no-tls", is_flag=True, help="No turns: listener (a relay on loopback only).")
@click.option("--output", type=click.Path(path_type=Path, dir_okay=False), default=None)
def turn_config(
    broker_config: Path,
    realm: str,
    listen: tuple[str, ...],
    lan: tuple[str, ...],
    relay_ip: str,
    external_ip: str,
    port: int,
    tls_port: int,
    min_port: int,
    max_port: int,
    cert: Path | None,
    key: Path | None,
    no_tls: bool,
    output: Path | None,
) -> None:
    """Write coturn's turnserver.conf (stdout, or --output 0640) from the site's secret.

    The TLS listener uses the site CA's broker certificate (`callbox ca show`) unless --cert
    and --key name others.
    """
    if not no_tls and cert is None and key is None:
        files = site_ca_files(broker_config)
        cert, key = files.server_cert, files.server_key
        if not cert.exists():
            fail(f"no broker certificate in {files.directory}: give --cert/--key, or --no-tls")
    try:
        settings = TurnServerSettings(
            realm=realm,
            secret=read_secret(secret_path(broker_config)),
            listening_ips=listen,
            lan=lan,
            relay_ip=relay_ip,
            external_ip=external_ip,
            port=port,
            tls_port=tls_port,
            min_port=min_port,
            max_port=max_port,
            cert=None if no_tls else cert,
            key=None if no_tls else key,
        )
    except MediaError as err:
        fail(str(err), 2)
    text = coturn_config(settings)
    if output is None:
        click.echo(text, nl=False)
        return
    write_private(output, text, 0o640)
    group = _turnserver_group()
    if group is not None and os.geteuid() == 0:
        os.chown(output, 0, group)
        click.echo(f"wrote {output} (root:{COTURN_GROUP} 0640: it holds the secret)")
    else:
        click.echo(f"wrote {output} (0640: it holds the secret; coturn's group must read it)")


def _turnserver_group() -> int | None:
    """The gid of Debian's coturn service group, or None when coturn is not installed."""
    try:
        return grp.getgrnam(COTURN_GROUP).gr_gid
    except KeyError:
        return None


@turn.command("import")
@click.argument("secret_file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--url", "urls", multiple=True, required=True, help="The relay's turn(s): URL.")
@config_option
@control_option
def turn_import(
    secret_file: Path, urls: tuple[str, ...], config_path: Path, control_path: Path | None
) -> None:
    """Install the site's TURN secret on this unit and point ``[turn]`` at the relay."""
    secret = read_secret(secret_file)
    destination = config_path.parent / SECRET_NAME
    write_private(destination, secret + "\n")
    values = {
        "turn.urls": json.dumps(list(urls)),
        "turn.secret_file": json.dumps(str(destination.resolve())),
    }
    install_settings(
        config_path,
        values,
        f"installed the TURN secret in {destination}; relay {', '.join(urls)}",
        control_path,
    )
