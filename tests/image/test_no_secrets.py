"""Nothing secret is baked into the SD image (issue 7, section 2).

Inspects the image's root filesystem twice: the directory `mke2fs -d` made the ext4 partition
from (build/image/rootfs, every file) and the ext4 partition of the built .img itself (with
debugfs, no mount) for the files that matter most. Run by `make image-test` after `make image`.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from image.built import OUT, REPO, generic_image, partitions

ROOTFS = OUT / "rootfs"

# A PEM private key: the header, then at least one base64 line (a parser's constant header
# string in a binary, as in NetworkManager, has none).
PRIVATE_KEY = re.compile(
    rb"-----BEGIN ([A-Z0-9 ]+ )?PRIVATE KEY-----\r?\n"
    rb"(?:[A-Za-z0-9+/=:, -]*\r?\n)*?[A-Za-z0-9+/=]{40,}\r?\n"
)
# Keys that are the same in every copy of a library, not this device's: a file name pattern
# and why it is allowed.
SAMPLE_KEYS: dict[str, str] = {
    r"libgnutls.*\.so[.0-9]*": "GnuTLS's built-in FIPS self-test keys",
}
# Password fields that let nobody in: "*" (no password), "!"/"!*" (locked, no hash).
NO_PASSWORD = {"*", "!", "!*"}


def image_path() -> Path:
    return generic_image()


def debugfs(img: Path, request: str) -> str:
    result = subprocess.run(
        ["debugfs", "-R", request, f"{img}?offset={partitions(img)[1][0]}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout


def debugfs_names(img: Path, directory: str) -> set[str]:
    """The entries of a directory of the image's root (debugfs ``ls``: ``inode (len) name``)."""
    return set(re.findall(r"\(\d+\)\s+(\S+)", debugfs(img, f"ls {directory}"))) - {".", ".."}


def shadow_problems(shadow: str) -> list[str]:
    problems = []
    for line in shadow.splitlines():
        if not line.strip():
            continue
        user, password = line.split(":")[:2]
        if password not in NO_PASSWORD:
            problems.append(f"{user}: password field {password[:3]!r}… is not locked")
    return problems


@pytest.fixture(scope="module")
def rootfs() -> Path:
    if not (ROOTFS / "etc/os-release").exists():
        pytest.fail(f"no root filesystem in {ROOTFS}: run `make image` first")
    return ROOTFS


def test_no_ssh_host_keys(rootfs: Path) -> None:
    assert sorted(p.name for p in (rootfs / "etc/ssh").glob("ssh_host_*")) == []


def test_machine_id_is_empty(rootfs: Path) -> None:
    assert (rootfs / "etc/machine-id").read_text() == ""
    assert not (rootfs / "var/lib/dbus/machine-id").exists() or (
        (rootfs / "var/lib/dbus/machine-id").resolve() == (rootfs / "etc/machine-id").resolve()
    )
    assert not (rootfs / "var/lib/systemd/random-seed").exists()


def test_no_password_hashes(rootfs: Path) -> None:
    assert shadow_problems((rootfs / "etc/shadow").read_text()) == []
    for backup in ("etc/shadow-", "etc/gshadow-"):
        assert not (rootfs / backup).exists(), backup
    for line in (rootfs / "etc/gshadow").read_text().splitlines():
        assert "$" not in line.split(":")[1], line


def test_no_device_keys_config_or_credentials(rootfs: Path) -> None:
    # callbox's state and configuration come from first boot, never from the image
    assert sorted(os.listdir(rootfs / "etc/callbox")) == []
    state = rootfs / "var/lib/callbox"
    assert not state.exists() or sorted(os.listdir(state)) == []
    # the broker's generated passwords live in callbox-broker's state directory
    assert not (rootfs / "var/lib/callbox-broker").exists()
    assert not (rootfs / "etc/mosquitto/passwd").exists()
    assert sorted(os.listdir(rootfs / "etc/NetworkManager/system-connections")) == []
    for home in [rootfs / "root", *sorted((rootfs / "home").iterdir())]:
        ssh = home / ".ssh"
        assert not ssh.exists() or sorted(os.listdir(ssh)) == [], ssh
    assert not (rootfs / "boot/firmware/callbox.toml").exists()


def test_no_private_key_anywhere(rootfs: Path) -> None:
    found = []
    for dirpath, dirnames, filenames in os.walk(rootfs):
        rel_dir = os.path.relpath(dirpath, rootfs)
        if rel_dir in ("proc", "sys", "dev"):
            dirnames.clear()
            continue
        for name in filenames:
            path = Path(dirpath) / name
            if path.is_symlink() or not path.is_file() or path.stat().st_size > 4 << 20:
                continue
            sample = any(re.fullmatch(pattern, name) for pattern in SAMPLE_KEYS)
            if not sample and PRIVATE_KEY.search(path.read_bytes()):
                found.append(f"/{path.relative_to(rootfs)}")
    assert found == []


def test_nothing_of_the_build_machine_is_in_the_app(rootfs: Path) -> None:
    """No path of the build machine (the tree, the work directory) in what the build added.

    A direct_url.json or a script naming them would tell of the machine and differ per build.
    """
    marks = (str(REPO).encode(), str(OUT.resolve()).encode())
    found = [
        f"/{path.relative_to(rootfs)}"
        for top in ("opt/callbox", "etc/callbox", "etc/systemd/system", "usr/local")
        for path in sorted((rootfs / top).rglob("*"))
        if path.is_file() and not path.is_symlink() and any(m in path.read_bytes() for m in marks)
    ]
    assert found == []


def test_the_image_itself_has_no_secrets() -> None:
    """The ext4 partition of the .img: the same facts, read with debugfs (no mount)."""
    img = image_path()
    ssh = debugfs_names(img, "/etc/ssh")
    assert "sshd_config" in ssh
    assert sorted(n for n in ssh if n.startswith("ssh_host_")) == []
    assert debugfs(img, "cat /etc/machine-id") == ""
    assert shadow_problems(debugfs(img, "cat /etc/shadow")) == []
    assert debugfs_names(img, "/etc/callbox") == set()
    assert debugfs_names(img, "/etc/NetworkManager/system-connections") == set()
