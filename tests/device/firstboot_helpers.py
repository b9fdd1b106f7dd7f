"""A small Debian-like root tree for first boot and factory reset, and an installer's file."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from support import need

from services.signaling.siteca import SiteCaFiles, ensure_site_tls

SSH_KEY = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKqM9lhJp834VhkFYYpFabest5cV66pigsYFNhlqyuex "
    "installer@laptop"
)
BROKER_PASSWORD = "broker-Secret-4711"
HOME_PSK = "home wifi passphrase"
CABIN_PSK = "cabin-psk-from-a-file"
TURN_SECRET = "turn-Secret-0815"
SECRETS = (BROKER_PASSWORD, HOME_PSK, CABIN_PSK, TURN_SECRET)
CALLBOX_UID = 990

INSTALLER_FILE = f"""# the installer's file
role = "indoor"
address = "flat_1"
name = "Flat 1"
site = "home"

[broker]
host = "door.local"
password = "{BROKER_PASSWORD}"
tls_ca = "/boot/firmware/site-ca.crt"

[[network.ice_servers]]
urls = ["turn:turn.example.org:3478"]
username = "callbox"
credential = "{TURN_SECRET}"

[system]
timezone = "Europe/Berlin"
wifi_country = "DE"

[system.admin]
user = "anna"
ssh_keys = ["{SSH_KEY}"]

[[system.wifi]]
ssid = "Home net"
psk = "{HOME_PSK}"

[[system.wifi]]
ssid = "cabin;5G"
psk_file = "/boot/firmware/cabin.psk"
hidden = true
"""


def make_root(root: Path) -> Path:
    """A tree with the accounts, time zones and directories of the image."""
    for directory in (
        "etc/ssh",
        "etc/skel",
        "boot/firmware",
        "usr/share/zoneinfo/Europe",
        "var/lib",
        "home",
    ):
        (root / directory).mkdir(parents=True, exist_ok=True)
    etc = root / "etc"
    (etc / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/bash\n"
        f"callbox:x:{CALLBOX_UID}:{CALLBOX_UID}:callbox:/var/lib/callbox:/usr/sbin/nologin\n"
    )
    (etc / "shadow").write_text("root:*:20000:0:99999:7:::\ncallbox:!:20000::::::\n")
    (etc / "group").write_text(f"root:x:0:\nshadow:x:42:\ncallbox:x:{CALLBOX_UID}:\n")
    (etc / "gshadow").write_text("root:*::\nshadow:*::\ncallbox:!::\n")
    for name, mode in (("passwd", 0o644), ("group", 0o644), ("shadow", 0o640), ("gshadow", 0o640)):
        (etc / name).chmod(mode)
        if "shadow" in name and os.geteuid() == 0:
            os.chown(etc / name, 0, 42)  # root:shadow, as on Debian
    (etc / "machine-id").write_text("")
    (etc / "hosts").write_text("127.0.0.1\tlocalhost\n127.0.1.1\tdebian\n")
    (etc / "skel" / ".bashrc").write_text("# bashrc\n")
    (root / "usr/share/zoneinfo/Europe/Berlin").write_bytes(b"TZif2 Berlin")
    (root / "usr/share/zoneinfo/UTC").write_bytes(b"TZif2 UTC")
    (root / "etc/callbox").mkdir(mode=0o770)
    return root


def write_installer_file(root: Path, text: str = INSTALLER_FILE) -> Path:
    """The installer's callbox.toml on the boot partition.

    With the passphrase file and the site CA (the hosting unit's ca.crt) it names.
    """
    boot = root / "boot/firmware"
    (boot / "cabin.psk").write_text(CABIN_PSK + "\n")
    site = ensure_site_tls(SiteCaFiles(root.parent / "hosting-unit-tls"), ("door.local",))
    (boot / "site-ca.crt").write_bytes(site.files.ca_cert.read_bytes())  # the hosting unit's
    path = boot / "callbox.toml"
    path.write_text(text)
    return path


def need_ssh_keygen() -> None:
    """ssh-keygen (Debian's openssh-client) makes the host keys."""
    need(shutil.which("ssh-keygen") is not None, "ssh-keygen (openssh-client)")


def all_text(directory: Path) -> str:
    """Every regular file under `directory`, as text (bytes that are not UTF-8 replaced)."""
    return "\n".join(
        p.read_bytes().decode("utf-8", "replace")
        for p in sorted(directory.rglob("*"))
        if p.is_file() and not p.is_symlink()
    )


def ssh_keygen_fingerprint(line: str, tmp: Path) -> str:
    """ssh-keygen's own check of a public key line (it refuses a damaged one)."""
    key = tmp / "check.pub"
    key.write_text(line + "\n")
    result = subprocess.run(
        ["ssh-keygen", "-l", "-f", str(key)], capture_output=True, text=True, check=False
    )
    return result.stdout if result.returncode == 0 else ""
