"""Pairing commands of ``callbox keys``: ``trust`` and ``pair-web``.

``trust`` pins a full key, or a fingerprint checked against the keys the peer advertises;
``pair-web`` gives a browser phone its broker login and link.

A browser phone joins a site in two steps (docs/operations.md, "Browser phones"):

1. ``callbox keys pair-web NAME`` on the unit that hosts the site broker gives NAME a broker
   login and prints a link (and its QR code) with that login and the fingerprints of the
   units the phone may pin. The phone opens it, makes its own keys and publishes them in its
   profile.
2. ``callbox keys trust NAME FINGERPRINT`` on each unit that calls the phone pins the keys the
   phone's profile advertises, only if they have the fingerprint the phone shows.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
import socket
from pathlib import Path
from urllib.parse import urlsplit

import click
import segno
from pydantic import TypeAdapter, ValidationError

from device.cli._admin import (
    control_option,
    fail,
    load,
    own_keys,
    parse_key_text,
    reload_daemon,
)
from device.cli._shared import DEFAULT_SITE_DIR, broker_config_option
from device.config import CallboxConfig, ConfigError, ConfigStore, Name
from device.daemon import DaemonNotRunningError, default_control_path, request_sync
from device.phone import Pairing, PairingError, PairingPeer
from services.push.errors import VapidKeyError
from services.push.vapid import site_push_key, site_vapid_path
from services.signaling.broker import (
    credential_addresses,
    credential_path,
    endpoint_password,
    signal_running_broker,
    write_password_file,
)
from services.signaling.errors import SignalingError
from services.signaling.identity import PublicKeys
from services.signaling.siteadmin import SiteBook
from services.signaling.siteca import read_site_tls, site_ca_files

DEFAULT_WEB_PORT = 8443
"""The HTTPS port of ``callbox web`` (callbox-web.service)."""

CONTACT_ROLES = ("door", "indoor", "web")
RIGHTS = ("unlock", "monitor")
_FINGERPRINT = re.compile(r"[0-9a-f]{32}")
_LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


def register(keys: click.Group) -> None:
    """Add ``trust`` and ``pair-web`` to the ``callbox keys`` group."""
    keys.add_command(keys_trust)
    keys.add_command(pair_web)


def normalize_fingerprint(text: str) -> str | None:
    """``text`` as a fingerprint in its printed form (8 groups of 4 lower-case hex digits).

    None when it is not 32 hex digits (spaces anywhere are ignored).
    """
    digits = "".join(text.split()).lower()
    if not _FINGERPRINT.fullmatch(digits):
        return None
    return " ".join(digits[i : i + 4] for i in range(0, 32, 4))


def parse_rights(text: str) -> tuple[str, ...]:
    """``unlock,monitor`` as a tuple; BadParameter naming a word that is not a right."""
    rights = tuple(dict.fromkeys(word.strip() for word in text.split(",") if word.strip()))
    for right in rights:
        if right not in RIGHTS:
            raise click.BadParameter(
                f"{right!r} is not a right (known: {', '.join(RIGHTS)})", param_hint="--rights"
            )
    return rights


# keys trust -------------------------------------------------------------------------------------


@click.command("trust", context_settings={"ignore_unknown_options": True})
@click.argument("address")
@click.argument("key", nargs=-1, required=True)
@click.option(
    "--role",
    type=click.Choice(CONTACT_ROLES),
    help="The contact's role [default with a fingerprint: the role its profile advertises].",
)
@click.option(
    "--rights",
    help="Comma-separated rights of ADDRESS on this unit: unlock, monitor ('' for none).",
)
@click.option("--ring", is_flag=True, help="Add ADDRESS to this unit's targets (the doorbell).")
@control_option
@click.pass_obj
def keys_trust(
    config_path: Path,
    address: str,
    key: tuple[str, ...],
    role: str | None,
    rights: str | None,
    ring: bool,
    control_path: Path | None,
) -> None:
    """Pin ADDRESS's keys: KEY, or the FINGERPRINT a browser phone shows.

    KEY as `callbox keys show` prints it on ADDRESS; a FINGERPRINT (32 hex digits, spaces optional)
    pins the keys ADDRESS's profile advertises only if they have that fingerprint (asks the running
    daemon).
    """
    granted = parse_rights(rights) if rights is not None else None
    cfg = load(config_path)
    if address == cfg.address:
        raise click.BadParameter(f"{address!r} is this unit's own address", param_hint="ADDRESS")
    fingerprint = normalize_fingerprint(" ".join(key))
    name = ""
    if fingerprint is not None:
        peer, advertised_name, advertised_role = _advertised_keys(
            control_path, address, fingerprint
        )
        name = advertised_name
        if role is None and advertised_role in CONTACT_ROLES:
            role = advertised_role
    elif len(key) == 1:
        peer = parse_key_text(key[0])
    else:
        raise click.BadParameter(
            f"expected one key (`<sign>.<dh>` or JSON) or a fingerprint of 32 hex digits, "
            f"got {len(key)} words that are neither",
            param_hint="KEY",
        )
    _pin(ConfigStore(config_path), cfg, address, peer, name, role, granted, ring)
    details = [f"role {role}"] if role else []
    if granted is not None:
        details.append(f"rights {', '.join(granted) or 'none'}")
    extra = f" ({'; '.join(details)})" if details else ""
    click.echo(f"trusted {address}: fingerprint {peer.fingerprint()}{extra}")
    if ring:
        click.echo(f"{address} is in this unit's targets: the doorbell rings it")
    reload_daemon(control_path)


def _advertised_keys(
    control_path: Path | None, address: str, fingerprint: str
) -> tuple[PublicKeys, str, str]:
    """The keys (and name, role) ``address``'s profile advertises.

    As the running daemon received them; exits unless their fingerprint is ``fingerprint``.
    """
    try:
        result = request_sync(
            control_path or default_control_path(), "peer_keys", {"address": address}
        )
    except DaemonNotRunningError as err:
        fail(
            f"{err}: trusting by fingerprint takes the keys {address} advertises on the broker, "
            "which the running daemon receives. Start it, or give the full key instead",
            3,
        )
    profile = result.get("profile")
    if not isinstance(profile, dict):
        fail(
            f"{address} has published no profile that this unit has seen: is it connected "
            "to the site broker (a phone: is its page open and online)? Check the address"
        )
    try:
        keys = PublicKeys.from_json(profile["keys"])
    except (KeyError, SignalingError) as err:
        fail(f"the daemon returned unusable keys for {address}: {err}")
    if keys.fingerprint() != fingerprint:
        fail(
            f"key mismatch: {address} advertises keys with fingerprint {keys.fingerprint()}, "
            f"not {fingerprint}. Nothing was trusted. A mismatch means these are someone "
            f"else's keys (another device, or someone posing as {address}) or a mistyped "
            "fingerprint: read it again on the device itself"
        )
    name, role = profile.get("name"), profile.get("role")
    return keys, _valid_text(name), role if isinstance(role, str) else ""


def _valid_text(value: object) -> str:
    """An advertised name fit for ``contacts.N.name`` (printable, at most 64), else ''."""
    if isinstance(value, str) and len(value) <= 64 and value.isprintable():
        return value
    return ""


def _pin(
    store: ConfigStore,
    cfg: CallboxConfig,
    address: str,
    peer: PublicKeys,
    name: str,
    role: str | None,
    rights: tuple[str, ...] | None,
    ring: bool,
) -> None:
    """Write the contact (new, or new keys and the role and rights given) and the target."""
    keys = peer.to_json()
    index = next((i for i, c in enumerate(cfg.contacts()) if c.address == address), None)
    targets = [*cfg.targets, address] if ring and address not in cfg.targets else None
    try:
        if index is None:
            store.add_contact(
                address, keys["sign"], keys["dh"], name=name, role=role or "", rights=rights or ()
            )
            changes: dict[str, str] = {}
        else:
            changes = {
                f"contacts.{index}.sign_key": json.dumps(keys["sign"]),
                f"contacts.{index}.dh_key": json.dumps(keys["dh"]),
            }
            if role is not None:
                changes[f"contacts.{index}.role"] = json.dumps(role)
            if rights is not None:
                changes[f"contacts.{index}.rights"] = json.dumps(list(rights))
        if targets is not None:
            changes["targets"] = json.dumps(targets)
        if changes:
            store.set_many(changes)
    except ConfigError as err:
        fail(f"not changed:\n{err}", 2)


# keys pair-web ----------------------------------------------------------------------------------


@click.command("pair-web")
@click.argument("address")
@click.option("--name", help='How units show the phone, e.g. "Flat 1 phone" [default: ADDRESS].')
@click.option(
    "--url",
    "base_url",
    help=f"The page as the phone opens it [default: https://<this host>.local:{DEFAULT_WEB_PORT}].",
)
@click.option(
    "--broker-url",
    help="The broker's WebSocket URL for the phone [default: wss:// (ws:// for an http page) "
    "on the page's host and this unit's broker.websockets_port].",
)
@broker_config_option
@click.option("--no-qr", is_flag=True, help="Print the link without its QR code.")
@click.option(
    "--flat",
    help="A building's phone: its flat. The link also names the site directory's door "
    "stations and that flat's indoor units (from --site-dir); then add the phone to the "
    "directory once (`callbox site add --fingerprint`).",
)
@click.option(
    "--site-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="CALLBOX_SITE_DIR",
    help="With --flat: the `callbox site --dir` directory [default: ~/.callbox-site].",
)
@click.pass_obj
def pair_web(
    config_path: Path,
    address: str,
    name: str | None,
    base_url: str | None,
    broker_url: str | None,
    broker_config: Path,
    no_qr: bool,
    flat: str | None,
    site_dir: Path | None,
) -> None:
    """Give the browser phone ADDRESS a broker login and print its pairing link and QR code.

    Run it on the unit that hosts the site broker. The link carries the phone's broker
    password: show it only to the phone's owner.
    """
    _check_address(address)
    if name is not None and (not name or _valid_text(name) != name):
        raise click.BadParameter(
            f"{name!r} must be 1 to 64 printable characters (no tabs or new lines)",
            param_hint="--name",
        )
    cfg, own = own_keys(config_path)
    _check_not_a_unit(cfg, address)
    page = _page_url(base_url)
    broker = _broker_url(broker_url, page, cfg)
    if not (broker_config / "mosquitto.conf").is_file():
        fail(
            f"{broker_config}: no site broker configuration here (no mosquitto.conf). Run "
            "pair-web on the unit that hosts the site broker (callbox-broker.service), or give "
            "--broker-config with the directory `callbox broker --config` writes to"
        )
    new_login = not credential_path(broker_config, address).exists()
    password = _broker_login(broker_config, address)
    ca = _site_ca(broker_config)
    pairing = _pairing(cfg, own, address, name or address, broker, password, ca)
    if flat is not None:
        pairing = dataclasses.replace(
            pairing, peers=_building_peers(pairing.peers, site_dir, flat, address)
        )
    pairing = dataclasses.replace(
        pairing, push_key=_push_key(broker_config), admin_key=cfg.directory.admin_key
    )
    link = pairing.url(page)

    click.echo(f"browser phone {address} ({pairing.name}) in site {cfg.site}")
    how = "a new" if new_login else "its existing"
    click.echo(f"broker login: {how} password in {credential_path(broker_config, address)}")
    _reload_broker(broker_config)
    for peer in pairing.peers:
        role = peer.role or "no role"
        click.echo(f"peer in the link: {peer.address} ({role}) {peer.fingerprint}")
    if ca:
        click.echo(f"site CA in the link: SHA-256 {ca}")
    if pairing.push_key:
        click.echo(f"Web Push key in the link: {pairing.push_key[:16]}…")
    if pairing.admin_key:
        click.echo(
            f"site admin key in the link: {pairing.admin_key} (the phone follows the "
            "signed site directory)"
        )
    click.echo("")
    if ca:
        ca_file = site_ca_files(broker_config).ca_cert
        click.echo("first, if the phone does not trust the site CA yet: copy")
        click.echo(f"  {ca_file}")
        click.echo("to it, install it as a CA certificate and check that the phone shows the")
        click.echo('SHA-256 fingerprint above (docs/operations.md, "Browser phones"); only then')
        click.echo("open the link, so that nobody else's page ever sees it.")
        click.echo("")
    click.echo(f"The link holds {address}'s broker password: show it only to the phone's owner.")
    click.echo(link)
    if not no_qr:
        click.echo("")
        click.echo(_qr_text(link), nl=False)
    click.echo("")
    click.echo("next:")
    click.echo("  1. open the link on the phone (scan the code); the page shows its fingerprint")
    if flat is not None:
        click.echo("  2. add it to the site directory once, with the fingerprint the phone shows:")
        click.echo(
            f"       callbox site add {address} --role web --flat {flat} --fingerprint "
            "<fingerprint> --publish"
        )
        click.echo("     (--rights unlock lets it open the door without answering a call)")
        return
    click.echo("  2. if this unit calls the phone or takes its calls, trust it here with the")
    click.echo("     fingerprint the phone shows:")
    click.echo(f"       sudo callbox keys trust {address} <fingerprint>")
    click.echo("  3. and on each door station, so that the doorbell rings the phone:")
    click.echo(f"       sudo callbox keys trust {address} <fingerprint> --ring --rights monitor")
    click.echo("     (add `unlock` to --rights to let it open the door without answering a call)")


def _check_address(address: str) -> None:
    try:
        TypeAdapter(Name).validate_python(address)
    except ValidationError as err:
        reason = err.errors()[0]["msg"].removeprefix("Value error, ")
        raise click.BadParameter(reason, param_hint="ADDRESS") from err


def _check_not_a_unit(cfg: CallboxConfig, address: str) -> None:
    """Refuse the address of this unit or of a contact that is not a browser phone.

    The link would hand out that device's broker password.
    """
    if address == cfg.address:
        raise click.BadParameter(f"{address!r} is this unit's own address", param_hint="ADDRESS")
    contact = next((c for c in cfg.contact_entries if c.address == address), None)
    if contact is not None and contact.role != "web":
        raise click.BadParameter(
            f"{address!r} is already a contact of this unit with role "
            f'{contact.role or "(none)"}, not "web": a browser phone needs an address of its '
            "own (the link would carry that device's broker password). If it is a phone, set "
            'its contact\'s role to "web" first',
            param_hint="ADDRESS",
        )


def _page_url(base_url: str | None) -> str:
    page = base_url or f"https://{socket.gethostname()}.local:{DEFAULT_WEB_PORT}"
    parts = urlsplit(page)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise click.BadParameter(
            f"{page!r} is not an http:// or https:// URL with a host", param_hint="--url"
        )
    if parts.query or parts.fragment:
        raise click.BadParameter(
            f"{page!r} has a query or fragment: give the page's base address", param_hint="--url"
        )
    if parts.scheme == "http" and parts.hostname not in _LOOPBACK_HOSTS:
        click.echo(
            f"warning: an http:// page on {parts.hostname} gets no camera or microphone on the "
            "phone: browsers allow them only in secure contexts (https, or http on localhost)",
            err=True,
        )
    return page


def _broker_url(broker_url: str | None, page: str, cfg: CallboxConfig) -> str:
    page_parts = urlsplit(page)
    if broker_url is None:
        port = cfg.broker.websockets_port
        if not port:
            fail(
                "this unit's broker.websockets_port is 0, so the broker has no WebSocket "
                "listener for browsers: set it (e.g. `callbox config set "
                "broker.websockets_port 9001`, then restart callbox-broker), or give --broker-url"
            )
        scheme = "wss" if page_parts.scheme == "https" else "ws"
        host = page_parts.hostname or ""
        host = f"[{host}]" if ":" in host else host
        broker_url = f"{scheme}://{host}:{port}"
    parts = urlsplit(broker_url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise click.BadParameter(
            f"{broker_url!r} is not a ws:// or wss:// URL with a host", param_hint="--broker-url"
        )
    if (
        page_parts.scheme == "https"
        and parts.scheme == "ws"
        and parts.hostname not in (_LOOPBACK_HOSTS)
    ):
        raise click.BadParameter(
            f"browsers refuse {broker_url} from an https page (mixed content): give a wss:// "
            "URL (the broker's WebSocket listener speaks TLS whenever it listens beyond "
            "loopback)",
            param_hint="--broker-url",
        )
    return broker_url


def _broker_login(directory: Path, address: str) -> str:
    """``address``'s password (created once, then reused), and a password file.

    The password file holds it and every other address that has a credentials file. Files written as
    root go to the owner of ``directory`` (the broker's user), which must be able to read them.
    """
    info = directory.stat()
    owner = (info.st_uid, info.st_gid) if os.geteuid() == 0 and info.st_uid != 0 else None
    try:
        password = endpoint_password(directory, address, owner)
        write_password_file(directory, credential_addresses(directory), owner)
    except PermissionError as err:
        fail(
            f"cannot write {err.filename}: permission denied. Run as root (sudo) or as the "
            "broker's user"
        )
    except (OSError, SignalingError) as err:
        fail(f"cannot update the broker's passwords in {directory}: {err}")
    return password


def _reload_broker(directory: Path) -> None:
    try:
        pid = signal_running_broker(directory)
    except PermissionError:
        click.echo(
            "cannot signal the running broker: run as root (sudo), or "
            "`sudo systemctl reload callbox-broker`, so that it loads the new login",
            err=True,
        )
        return
    if pid is None:
        click.echo(
            f"no running `callbox broker` found for {directory}: the login works once it starts"
        )
    else:
        click.echo(f"asked the running broker (pid {pid}) to reload its passwords")


def _site_ca(broker_config: Path) -> str:
    """The site CA's fingerprint for the link; "" when the broker has no site CA (own files)."""
    files = site_ca_files(broker_config)
    if not files.ca_cert.exists():
        click.echo(
            f"note: no site CA in {files.directory} (a broker with a certificate of its own, or "
            "one that never listened beyond loopback): the link carries no CA fingerprint",
            err=True,
        )
        return ""
    try:
        return read_site_tls(files).fingerprint
    except SignalingError as err:
        fail(f"cannot read the site CA: {err}")


def _push_key(broker_config: Path) -> str:
    """The site's VAPID public key for the link; "" when the site has none (no Web Push)."""
    try:
        key = site_push_key(broker_config)
    except VapidKeyError as err:
        fail(f"cannot read the site's VAPID key: {err}")
    if not key:
        click.echo(
            f"note: no VAPID key in {site_vapid_path(broker_config).parent} (`callbox push "
            "init`): the link carries no push_key, the phone rings only while its page is open",
            err=True,
        )
    return key


def _pairing(
    cfg: CallboxConfig,
    own: PublicKeys,
    address: str,
    name: str,
    broker: str,
    password: str,
    ca: str,
) -> Pairing:
    """The link's payload: this unit and its contacts that are units.

    Units: door, indoor, or no role given; each with the fingerprints of its pinned keys.
    """
    peers = [PairingPeer(cfg.address, cfg.name or cfg.address, cfg.role, own.fingerprint())]
    for contact in cfg.contacts():
        if contact.role == "web" or contact.blocked or contact.address == address:
            continue
        if not contact.role:
            click.echo(
                f"note: contact {contact.address} has no role: set it (door or indoor) so that "
                "the phone knows which peer is a door",
                err=True,
            )
        peers.append(
            PairingPeer(
                contact.address,
                contact.name or contact.address,
                contact.role,
                contact.keys.fingerprint(),
            )
        )
    try:
        return Pairing(
            site=cfg.site,
            address=address,
            name=name,
            broker=broker,
            username=address,
            password=password,
            peers=tuple(peers),
            ca=ca,
        )
    except (PairingError, SignalingError) as err:
        fail(f"cannot make the pairing link: {err}")


def _building_peers(
    peers: tuple[PairingPeer, ...], site_dir: Path | None, flat: str, address: str
) -> tuple[PairingPeer, ...]:
    """``peers`` and the site directory's door stations and indoor units of ``flat``."""
    try:
        book = SiteBook.load(site_dir or DEFAULT_SITE_DIR)
    except SignalingError as err:
        fail(f"--flat needs the site directory: {err}")
    listed = {p.address for p in peers}
    more = [
        PairingPeer(e.address, e.name, e.role, e.keys.fingerprint())
        for e in book.entries.values()
        if e.address not in listed
        and e.address != address
        and (e.role == "door" or (e.role == "indoor" and e.flat == flat))
    ]
    if not any(e.flat == flat for e in book.entries.values()):
        click.echo(f"note: the site directory lists nobody in flat {flat} yet", err=True)
    return (*peers, *more)


def _qr_text(link: str) -> str:
    """The link's QR code drawn with block characters (two rows of modules per line)."""
    code = segno.make(link, error="l", micro=False)
    out = io.StringIO()
    code.terminal(out=out, compact=True, border=2)
    return out.getvalue()
