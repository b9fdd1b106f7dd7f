"""The signed site directory of a building: ``callbox site init|add|remove|list|rights|publish``.

Run on the installer's machine or the broker host, never on a unit: ``--dir`` (or
``$CALLBOX_SITE_DIR``) holds the site admin key and the working list
(services/signaling/siteadmin.py). ``publish`` signs the next version and puts it on the site
broker as its ``admin`` account (the password ``callbox broker`` wrote to
``<broker dir>/admin.password``). docs/operations.md, "Setting up a building", walks through it.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import click

from device.cli._admin import fail, parse_key_text
from device.cli._pairing import CONTACT_ROLES, normalize_fingerprint, parse_rights
from device.cli._shared import DEFAULT_BROKER_DIR, DEFAULT_SITE_DIR
from services.signaling.broker import ADMIN_PASSWORD_FILE, ADMIN_USER
from services.signaling.contacts import Right
from services.signaling.directory import DirectoryEntry
from services.signaling.errors import SignalingError
from services.signaling.identity import PublicKeys
from services.signaling.siteadmin import (
    SiteBook,
    admin_public_text,
    advertised_profile,
    create_admin_key,
    load_admin_key,
    publish,
)
from services.signaling.transport import BrokerAddress


def register(main: click.Group) -> None:
    """Add ``callbox site`` to the ``callbox`` group."""
    main.add_command(site)


@click.group()
@click.option(
    "--dir",
    "site_dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="CALLBOX_SITE_DIR",
    default=DEFAULT_SITE_DIR,
    show_default=True,
    help="Where the site admin key and the working list live (back it up; never on a unit).",
)
@click.pass_context
def site(ctx: click.Context, site_dir: Path) -> None:
    """The signed site directory of a building (admin key, entries, publishing)."""
    ctx.obj = site_dir


def broker_options(command: Any) -> Any:
    """The options that say how to reach the site broker as its admin account."""
    options = [
        click.option("--broker-host", default="127.0.0.1", show_default=True),
        click.option("--broker-port", type=int, default=1883, show_default=True),
        click.option(
            "--broker-config",
            type=click.Path(file_okay=False, path_type=Path),
            default=DEFAULT_BROKER_DIR,
            show_default=True,
            help=f"The broker's directory, for {ADMIN_PASSWORD_FILE}.",
        ),
        click.option(
            "--password-file",
            type=click.Path(dir_okay=False, path_type=Path),
            help=f"The admin account's password [default: <broker-config>/{ADMIN_PASSWORD_FILE}].",
        ),
        click.option(
            "--tls-ca",
            type=click.Path(dir_okay=False, path_type=Path),
            help="The site CA to verify the broker with (needed beyond loopback).",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _broker(
    host: str, port: int, broker_config: Path, password_file: Path | None, tls_ca: Path | None
) -> BrokerAddress:
    path = password_file or broker_config / ADMIN_PASSWORD_FILE
    try:
        password = path.read_text().strip()
    except OSError as err:
        fail(
            f"cannot read the site admin's broker password {path}: {err.strerror or err} "
            "(`callbox broker` writes it; give --broker-config or --password-file)"
        )
    return BrokerAddress(host, port, ADMIN_USER, password, ca_file=tls_ca)


def _book(site_dir: Path) -> SiteBook:
    try:
        return SiteBook.load(site_dir)
    except SignalingError as err:
        fail(str(err))


def _save(book: SiteBook, site_dir: Path) -> None:
    try:
        book.save(site_dir)
    except SignalingError as err:
        fail(str(err))


def _publish(book: SiteBook, site_dir: Path, broker: BrokerAddress) -> None:
    try:
        key = load_admin_key(site_dir)
        directory = asyncio.run(publish(broker, book, key))
    except SignalingError as err:
        fail(f"not published: {err}")
    _save(book, site_dir)
    click.echo(
        f"site directory version {directory.version} published on {broker.host}:{broker.port} "
        f"({len(directory.entries)} entries)"
    )


@site.command("init")
@click.option("--site", "site_name", required=True, help="The site's name (as units' `site`).")
@click.pass_obj
def site_init(site_dir: Path, site_name: str) -> None:
    """Make the site admin key (once) and the empty list; print the key units pin."""
    try:
        try:
            key = load_admin_key(site_dir)
            made = False
        except SignalingError:
            if (site_dir / "admin.key").exists():
                raise
            key = create_admin_key(site_dir)
            made = True
        try:
            book = SiteBook.load(site_dir)
        except SignalingError:
            book = SiteBook(site=site_name)
            book.save(site_dir)
    except (SignalingError, FileExistsError) as err:
        fail(str(err))
    if book.site != site_name:
        fail(f"{site_dir} already holds site {book.site!r}, not {site_name!r}: use another --dir")
    click.echo(f"{'made' if made else 'kept'} the site admin key in {site_dir / 'admin.key'}")
    click.echo("back up that directory; never copy it to a unit. Each unit's callbox.toml:")
    click.echo("")
    click.echo("[directory]")
    click.echo(f'admin_key = "{admin_public_text(key)}"')


def _keys_from(key: str | None, key_file: Path | None) -> tuple[PublicKeys | None, dict[str, str]]:
    """The keys given with --key or --key-file, and the name and role a profile names."""
    if key is not None:
        return parse_key_text(key), {}
    if key_file is None:
        return None, {}
    try:
        text = key_file.read_text().strip()
    except OSError as err:
        raise click.BadParameter(f"{err.strerror or err}", param_hint="--key-file") from err
    if text.startswith("{"):
        try:
            obj = json.loads(text)
        except ValueError as err:
            raise click.BadParameter(f"not JSON: {err}", param_hint="--key-file") from err
        if isinstance(obj, dict) and "keys" in obj:  # a profile
            try:
                keys = PublicKeys.from_json(obj["keys"])
            except SignalingError as err:
                raise click.BadParameter(str(err), param_hint="--key-file") from err
            named = {k: obj[k] for k in ("name", "role") if isinstance(obj.get(k), str)}
            return keys, named
        return parse_key_text(text), {}
    for line in text.splitlines():  # `callbox keys show` output
        if line.startswith("key:"):
            return parse_key_text(line.removeprefix("key:").strip()), {}
    return parse_key_text(text), {}


@site.command("add")
@click.argument("address")
@click.option("--role", type=click.Choice(CONTACT_ROLES), help="[default: what a profile says]")
@click.option("--name", help="How units show it [default: its profile's name, or ADDRESS].")
@click.option("--flat", default="", help="Its flat: doors with target flat:<flat> ring it.")
@click.option("--rights", default="", help="Comma-separated: unlock, monitor.")
@click.option("--key", help="Its public keys, as `callbox keys show` prints them (<sign>.<dh>).")
@click.option(
    "--key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A file with its keys: `callbox keys show` output, or its profile JSON.",
)
@click.option(
    "--fingerprint",
    help="A phone's: take the keys its profile on the broker advertises, if they have this "
    "fingerprint (as the phone shows it).",
)
@click.option("--publish", "then_publish", is_flag=True, help="Publish the directory after.")
@broker_options
@click.pass_obj
def site_add(
    site_dir: Path,
    address: str,
    role: str | None,
    name: str | None,
    flat: str,
    rights: str,
    key: str | None,
    key_file: Path | None,
    fingerprint: str | None,
    then_publish: bool,
    broker_host: str,
    broker_port: int,
    broker_config: Path,
    password_file: Path | None,
    tls_ca: Path | None,
) -> None:
    """List ADDRESS: its keys (--key, --key-file or --fingerprint), role, flat and rights."""
    if sum(x is not None for x in (key, key_file, fingerprint)) != 1:
        raise click.UsageError("give exactly one of --key, --key-file, --fingerprint")
    book = _book(site_dir)
    broker = None
    keys, named = _keys_from(key, key_file)
    if fingerprint is not None:
        wanted = normalize_fingerprint(fingerprint)
        if wanted is None:
            raise click.BadParameter("not 32 hex digits", param_hint="--fingerprint")
        broker = _broker(broker_host, broker_port, broker_config, password_file, tls_ca)
        try:
            profile = asyncio.run(advertised_profile(broker, book.site, address))
        except SignalingError as err:
            fail(str(err))
        keys = profile.keys
        if keys.fingerprint() != wanted:
            fail(
                f"key mismatch: {address} advertises keys with fingerprint "
                f"{keys.fingerprint()}, not {wanted}. Nothing was added: read the fingerprint "
                "again on the device itself"
            )
        named = {k: v for k in ("name", "role") if isinstance(v := profile.fields.get(k), str)}
    assert keys is not None
    role = role or named.get("role") or ""
    if role not in CONTACT_ROLES:
        raise click.UsageError(f"give --role ({', '.join(CONTACT_ROLES)}): none is known")
    try:
        entry = DirectoryEntry(
            address=address,
            name=name or named.get("name") or address,
            role=role,
            flat=flat,
            keys=keys,
            rights=frozenset(Right(r) for r in parse_rights(rights)),
        )
        book.add(entry)
    except SignalingError as err:
        fail(f"not added: {err}", 2)
    _save(book, site_dir)
    click.echo(f"{address} added ({role}, flat {flat or '-'}, key {keys.fingerprint()})")
    if then_publish:
        broker = broker or _broker(broker_host, broker_port, broker_config, password_file, tls_ca)
        _publish(book, site_dir, broker)
    else:
        click.echo("not published yet: `callbox site publish`")


@site.command("remove")
@click.argument("address")
@click.option("--publish", "then_publish", is_flag=True, help="Publish the directory after.")
@broker_options
@click.pass_obj
def site_remove(
    site_dir: Path,
    address: str,
    then_publish: bool,
    broker_host: str,
    broker_port: int,
    broker_config: Path,
    password_file: Path | None,
    tls_ca: Path | None,
) -> None:
    """Unlist ADDRESS: once published, no unit accepts its messages any more."""
    book = _book(site_dir)
    try:
        book.remove(address)
    except SignalingError as err:
        fail(str(err))
    _save(book, site_dir)
    click.echo(f"{address} removed")
    if then_publish:
        _publish(
            book,
            site_dir,
            _broker(broker_host, broker_port, broker_config, password_file, tls_ca),
        )


@site.command("rights")
@click.argument("address")
@click.argument("rights")
@click.pass_obj
def site_rights(site_dir: Path, address: str, rights: str) -> None:
    """Set ADDRESS's RIGHTS (comma-separated: unlock, monitor; '' for none)."""
    book = _book(site_dir)
    entry = book.entries.get(address)
    if entry is None:
        fail(f"{address} is not in the site directory")
    parsed = frozenset(Right(r) for r in parse_rights(rights))
    book.entries[address] = DirectoryEntry(
        entry.address, entry.name, entry.role, entry.flat, entry.keys, parsed
    )
    _save(book, site_dir)
    click.echo(f"{address}: rights {', '.join(sorted(r.value for r in parsed)) or 'none'}")


@site.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
@click.pass_obj
def site_list(site_dir: Path, as_json: bool) -> None:
    """The entries of the working list, and the last published version."""
    book = _book(site_dir)
    entries = [book.entries[a] for a in sorted(book.entries)]
    if as_json:
        click.echo(
            json.dumps(
                {
                    "site": book.site,
                    "version": book.version,
                    "entries": [e.to_json() for e in entries],
                }
            )
        )
        return
    click.echo(f"site {book.site}, last published version {book.version or 'none'}")
    for e in entries:
        rights = ",".join(sorted(r.value for r in e.rights)) or "-"
        click.echo(
            f"  {e.address:24} {e.role:7} flat {e.flat or '-':6} rights {rights:14} "
            f"{e.keys.fingerprint()}  {e.name}"
        )


@site.command("publish")
@broker_options
@click.pass_obj
def site_publish(
    site_dir: Path,
    broker_host: str,
    broker_port: int,
    broker_config: Path,
    password_file: Path | None,
    tls_ca: Path | None,
) -> None:
    """Sign the next version and publish it (retained) on the site broker as its admin."""
    book = _book(site_dir)
    _publish(
        book, site_dir, _broker(broker_host, broker_port, broker_config, password_file, tls_ca)
    )
