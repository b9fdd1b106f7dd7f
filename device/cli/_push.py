"""The site's Web Push key on the command line: ``callbox push init|show|export|import``.

On the unit that hosts the broker, ``push init`` makes the site's VAPID key pair in
``<--broker-config>/push/vapid.key`` (0600) once; ``push show`` prints its public key (the
``applicationServerKey`` phones subscribe with, which ``keys pair-web`` puts into every
pairing link); ``push export`` prints the private key to copy it to the door stations. On each
door station, ``push import FILE --subject mailto:...`` installs it next to callbox.toml
(0600, owned by the daemon's user) and sets ``[push]`` (docs/operations.md, "Waking phones:
Web Push").
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from device.cli._admin import config_option, control_option, fail, load
from device.cli._shared import broker_config_option, install_settings
from device.cli._siteca import directory_owner
from services.push.errors import VapidKeyError
from services.push.vapid import (
    VAPID_KEY_NAME,
    VapidKey,
    generate_vapid_key,
    load_vapid_key,
    parse_vapid_pem,
    save_vapid_key,
    site_vapid_path,
)


def register(main: click.Group) -> None:
    """Add ``callbox push`` to the ``callbox`` group."""
    main.add_command(push)


@click.group()
def push() -> None:
    """Web Push: the site's VAPID key, which lets door stations wake the paired phones."""


@push.command("init")
@broker_config_option
def push_init(broker_config: Path) -> None:
    """Make the site's VAPID key pair on the broker host (once; an existing one is kept)."""
    path = site_vapid_path(broker_config)
    if path.exists():
        key = _load(path)
        click.echo(f"the site already has a VAPID key: {path} (kept)")
    else:
        key = generate_vapid_key()
        try:
            save_vapid_key(path, key, directory_owner(broker_config))
        except VapidKeyError as err:
            fail(str(err))
        click.echo(f"made the site's VAPID key: {path} (mode 0600)")
    _describe(path, key)


@push.command("show")
@broker_config_option
def push_show(broker_config: Path) -> None:
    """Print where the site's VAPID key is and its public key (applicationServerKey)."""
    path = site_vapid_path(broker_config)
    _describe(path, _load(path))


@push.command("export")
@broker_config_option
def push_export(broker_config: Path) -> None:
    """Print the site's VAPID private key (PEM) to copy it to a door station. A secret."""
    key = _load(site_vapid_path(broker_config))
    click.echo(
        "the VAPID private key: whoever holds it can push to every subscribed phone; copy it "
        "only to the door stations (e.g. over ssh) and delete the copy once imported",
        err=True,
    )
    click.echo(key.pem(), nl=False)


@push.command("import")
@click.argument("key_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--subject",
    help="The contact push services may write to about this site: mailto:you@example.org or "
    "https://example.org [default: keep push.subject].",
)
@config_option
@control_option
def push_import(
    key_file: Path, subject: str | None, config_path: Path, control_path: Path | None
) -> None:
    """Install the site's VAPID key (KEY_FILE, from `push export`) on this door station.

    It is copied next to the configuration as vapid.key (0600, owned by the daemon's user),
    and push.vapid_key (and push.subject) are set; the daemon then rebuilds its endpoint.
    """
    try:
        key = parse_vapid_pem(key_file.read_text(encoding="ascii"), str(key_file))
    except (OSError, UnicodeError) as err:
        fail(f"cannot read {key_file}: {err}")
    cfg = load(config_path)
    destination = config_path.parent / VAPID_KEY_NAME
    try:
        save_vapid_key(destination, key, directory_owner(Path(cfg.state_dir)))
    except VapidKeyError as err:
        fail(str(err))
    values = {"push.vapid_key": json.dumps(str(destination.resolve()))}
    if subject is not None:
        values["push.subject"] = json.dumps(subject)
    install_settings(
        config_path,
        values,
        f"installed the site's VAPID key {key.application_server_key[:16]}…: {destination}",
        control_path,
        not_changed=f"the key is in {destination}, but the configuration was not changed",
    )


def _load(path: Path) -> VapidKey:
    try:
        return load_vapid_key(path)
    except VapidKeyError as err:
        fail(str(err))


def _describe(path: Path, key: VapidKey) -> None:
    click.echo(f"VAPID key:            {path}")
    click.echo(f"applicationServerKey: {key.application_server_key}")
    click.echo("")
    click.echo("new pairing links (`callbox keys pair-web`) carry the public key as push_key.")
    click.echo("on every door station (the private key never goes anywhere else):")
    click.echo("  callbox push export > vapid.pem        # here; copy vapid.pem to the door")
    click.echo("  sudo callbox push import vapid.pem --subject mailto:you@example.org")
