"""The site CA the installer put on the boot partition, installed next to callbox.toml.

A unit whose broker is another machine pins the site CA (``broker.tls_ca``). The installer
copies the hosting unit's ``ca.crt`` onto the boot partition and names it there
(``tls_ca = "/boot/firmware/site-ca.crt"``); first boot checks that it is a CA certificate,
writes it to ``/etc/callbox/site-ca.crt`` (root, 0644: a certificate is public) and rewrites
``broker.tls_ca`` to that file, before the boot partition's files are retired.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import tomlkit

from device.config import CallboxConfig, ConfigError
from device.firstboot._rootfs import RootFs
from services.signaling.errors import SignalingError
from services.signaling.siteca import load_ca_certificates

BOOT_PREFIX = "/boot/"
SITE_CA_NAME = "site-ca.crt"


def site_ca_destination(config_file: str) -> str:
    """Where the pinned CA goes: next to the installed callbox.toml."""
    return str(PurePosixPath(config_file).parent / SITE_CA_NAME)


def boot_site_ca(config: CallboxConfig, rootfs: RootFs, source: str) -> str | None:
    """The PEM text of the CA ``broker.tls_ca`` names on the boot partition, checked.

    None when ``tls_ca`` is not on the boot partition (empty, or a file of the root filesystem).
    ConfigError naming ``source`` and ``broker.tls_ca`` when it is missing or not a CA.
    """
    name = config.broker.tls_ca
    if not name.startswith(BOOT_PREFIX):
        return None
    path = rootfs.path(name)
    try:
        load_ca_certificates(path)
        return path.read_text(encoding="ascii")
    except (SignalingError, OSError, UnicodeDecodeError) as err:
        raise ConfigError(Path(source), "broker.tls_ca", str(err)) from err


def with_site_ca(text: str, destination: str) -> str:
    """``text`` (the installer's file) with ``broker.tls_ca`` naming ``destination``."""
    document = tomlkit.parse(text)
    broker = document.get("broker")
    if broker is None:
        broker = tomlkit.table()
        document["broker"] = broker
    broker["tls_ca"] = destination
    return document.as_string()
