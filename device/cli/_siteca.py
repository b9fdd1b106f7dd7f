"""The site CA on the command line: ``callbox ca show|renew|pin`` and the broker's TLS files.

On the unit that hosts the broker, ``callbox broker`` makes the site CA and the broker
certificate (services/signaling/siteca.py) in ``<--config>/tls/`` when it first listens beyond
loopback; ``ca show`` prints where they are and the CA's fingerprint, ``ca renew`` issues a new
broker certificate (or a new CA). On every other unit, ``ca pin FILE --fingerprint FP`` installs
that CA certificate, after checking its fingerprint, as the unit's ``broker.tls_ca``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import click

from device.cli._admin import config_option, control_option, fail
from device.cli._shared import broker_config_option, install_settings
from services.addresses import is_loopback
from services.signaling.broker import Owner, TlsFiles
from services.signaling.errors import SignalingError
from services.signaling.siteca import (
    SiteCaFiles,
    SiteTls,
    ensure_site_tls,
    fingerprint,
    load_ca_certificates,
    local_names,
    normalize_fingerprint,
    read_site_tls,
    renew_site_tls,
    site_ca_files,
)

PINNED_CA_NAME = "site-ca.crt"
"""The pinned CA's file name, next to the unit's callbox.toml (/etc/callbox/site-ca.crt)."""

names_option = click.option(
    "--name",
    "names",
    multiple=True,
    help="Another name or address the broker is reached by (repeat) [the host name, "
    "<host name>.local, localhost and every address of this machine are always in].",
)


def register(main: click.Group) -> None:
    """Add ``callbox ca`` to the ``callbox`` group."""
    main.add_command(ca)


def directory_owner(directory: Path) -> Owner | None:
    """Who files written into ``directory`` go to: its owner when root writes for another user."""
    try:
        info = directory.stat()
    except FileNotFoundError:
        return None
    return (info.st_uid, info.st_gid) if os.geteuid() == 0 and info.st_uid != 0 else None


def broker_tls(
    config_dir: Path, listen_host: str, tls: bool | None, names: tuple[str, ...]
) -> TlsFiles | None:
    """The site CA's TLS files for a broker listening on ``listen_host``, made when missing.

    ``tls`` None: on unless ``listen_host`` is loopback. Plain MQTT beyond loopback is refused.
    """
    if tls is None:
        tls = not is_loopback(listen_host)
    if not tls:
        if not is_loopback(listen_host):
            raise click.UsageError(
                f"--no-tls on {listen_host}: broker passwords would cross the network in clear; "
                "plain MQTT only on loopback (--listen 127.0.0.1:PORT)"
            )
        return None
    site = _ensure(site_ca_files(config_dir), local_names(listen_host, names), config_dir)
    for line in site.made:
        click.echo(f"made {line}")
    click.echo(f"site CA {site.files.ca_cert}: SHA-256 {site.fingerprint}")
    return site.files.tls_files()


def _ensure(files: SiteCaFiles, names: tuple[str, ...], config_dir: Path) -> SiteTls:
    try:
        return ensure_site_tls(files, names, owner=directory_owner(config_dir))
    except SignalingError as err:
        raise click.ClickException(str(err)) from err


@click.group()
def ca() -> None:
    """The site CA: what units pin and phones install to trust the site broker over TLS."""


@ca.command("show")
@broker_config_option
@click.option("--pem", is_flag=True, help="Print the CA certificate itself (to copy it).")
def ca_show(broker_config: Path, pem: bool) -> None:
    """Where the site CA is, its fingerprint, and the broker certificate's names and expiry."""
    try:
        site = read_site_tls(site_ca_files(broker_config))
    except SignalingError as err:
        fail(str(err))
    if pem:
        click.echo(site.files.ca_cert.read_text(), nl=False)
        return
    _describe(site)
    click.echo("")
    click.echo("on every other unit (copy ca.crt there first; its key ca.key never leaves here):")
    click.echo(f"  sudo callbox ca pin ca.crt --fingerprint {site.fingerprint}")


def _describe(site: SiteTls) -> None:
    click.echo(f"site CA:            {site.files.ca_cert}")
    click.echo(f"SHA-256:            {site.fingerprint}")
    click.echo(f"broker certificate: {site.files.server_cert}")
    click.echo(f"  valid until:      {site.not_after:%Y-%m-%d}")
    click.echo(f"  names:            {', '.join(site.names)}")


@ca.command("renew")
@broker_config_option
@names_option
@click.option(
    "--new-ca",
    is_flag=True,
    help="Make a new site CA too (every unit and phone then needs the new ca.crt).",
)
def ca_renew(broker_config: Path, names: tuple[str, ...], new_ca: bool) -> None:
    """Issue a new broker certificate signed by the site CA (with --new-ca: by a new CA).

    The broker takes it when it restarts (`sudo systemctl restart callbox-broker callbox-web`).
    """
    files = site_ca_files(broker_config)
    if not files.ca_cert.exists() and not new_ca:
        fail(f"no site CA in {files.directory}: `callbox broker` makes it when it first starts")
    old = read_site_tls(files).fingerprint if files.ca_cert.exists() else None
    try:
        site = renew_site_tls(
            files, local_names("", names), new_ca=new_ca, owner=directory_owner(broker_config)
        )
    except SignalingError as err:
        fail(str(err))
    _describe(site)
    click.echo("")
    click.echo("restart the broker and the page to use it:")
    click.echo("  sudo systemctl restart callbox-broker callbox-web")
    if site.fingerprint == old:
        click.echo("the site CA is the same: units and phones need nothing")
        return
    click.echo(f"a NEW site CA (the old one is {files.ca_cert}.old): on every other unit")
    click.echo(f"  sudo callbox ca pin ca.crt --fingerprint {site.fingerprint}")
    click.echo("with the new ca.crt, and install it on every phone (docs/operations.md)")


@ca.command("pin")
@click.argument("certificate", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--fingerprint",
    "expected",
    required=True,
    help="The CA's SHA-256 as `callbox ca show` prints it on the hosting unit.",
)
@config_option
@control_option
def ca_pin(certificate: Path, expected: str, config_path: Path, control_path: Path | None) -> None:
    """Pin the site CA in CERTIFICATE: TLS to the broker is then verified against it alone.

    It is checked against --fingerprint, copied next to the configuration as site-ca.crt, and
    broker.tls and broker.tls_ca are set (the daemon reconnects with it).
    """
    wanted = normalize_fingerprint(expected)
    if wanted is None:
        raise click.BadParameter("is not 64 hex digits (':' or spaces between them allowed)")
    try:
        found = [fingerprint(c) for c in load_ca_certificates(certificate)]
    except SignalingError as err:
        fail(str(err))
    if wanted not in found:
        fail(
            f"fingerprint mismatch: {certificate} holds {', '.join(found)}, not {wanted}. "
            "Nothing was pinned: copy ca.crt from the hosting unit again and read the "
            "fingerprint there (`callbox ca show`)"
        )
    destination = config_path.parent / PINNED_CA_NAME
    if certificate.resolve() != destination.resolve():
        shutil.copyfile(certificate, destination)
    destination.chmod(0o644)
    install_settings(
        config_path,
        {"broker.tls": "true", "broker.tls_ca": json.dumps(str(destination.resolve()))},
        f"pinned the site CA {wanted}: {destination}",
        control_path,
    )
