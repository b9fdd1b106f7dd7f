"""image-build/bases.py: the Debian and Raspberry Pi OS bases, and the archive keyring's check.

The Debian base is exactly today's build; the Raspberry Pi OS base's sources, packages and boot
files; the archive keyring's fetch and fingerprint check.

No network: keys are made here with gpg in a throwaway home and served from loopback.
"""

from __future__ import annotations

import dataclasses
import http.server
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import bases
import pytest
from support import need

# build.py before the bases (DEBIAN_SOURCES["debian"], PACKAGES, the components): the
# default build must not change.
TODAYS_SOURCES = [
    "deb http://deb.debian.org/debian bookworm main non-free-firmware",
    "deb http://deb.debian.org/debian bookworm-updates main non-free-firmware",
    "deb http://deb.debian.org/debian-security bookworm-security main non-free-firmware",
]
# What every image needs of its base, whichever it is (the rest is in bases.COMMON_PACKAGES).
NEEDED_PACKAGES = [
    "initramfs-tools",
    "systemd-sysv",
    "openssh-server",
    "network-manager",
    "avahi-daemon",
    "python3",
    "mosquitto",
    "libasound2",
    "libspeexdsp1",
    "libopus0",
    "cloud-guest-utils",
]
RPI_LINE = "http://archive.raspberrypi.com/debian/ bookworm main"
RPI_KEYRING = "raspberrypi-archive-keyring.gpg"
IMAGE_KEYRING = "/usr/share/keyrings/raspberrypi-archive-keyring.gpg"
ROOT_PARTUUID = "c0110b01-02"


# -- the Debian base ----------------------------------------------------------------------


def test_the_debian_base_is_todays_build(tmp_path: Path) -> None:
    base = bases.get_base("debian")
    assert base is bases.BASES["debian"]
    assert base.suite == "bookworm"
    assert base.mmdebstrap_sources(tmp_path) == TODAYS_SOURCES
    assert base.mmdebstrap_options(tmp_path) == ["--components=main,non-free-firmware"]
    packages = base.packages()
    assert packages[:3] == ["linux-image-arm64", "raspi-firmware", "firmware-brcm80211"]
    assert not [p for p in NEEDED_PACKAGES if p not in packages]
    assert len(packages) == len(set(packages))
    assert base.keyrings == ()
    assert bases.fetch_keyrings(base, tmp_path / "keyrings") == []
    # Debian's raspi-firmware writes config.txt and cmdline.txt itself; nothing extra
    assert base.boot_config(ROOT_PARTUUID) == {}
    assert base.root_files == ()


def test_the_debian_firmware_hook_puts_the_root_and_consoles_in_raspi_firmware_s_defaults(
    tmp_path: Path,
) -> None:
    defaults = tmp_path / "etc/default/raspi-firmware"
    defaults.parent.mkdir(parents=True)
    defaults.write_text('#ROOTPART=/dev/mmcblk0p2\n#CONSOLES="auto"\nKERNEL_ARGS=""\n')
    hook = bases.DEBIAN.firmware_hook.replace("{partuuid}", ROOT_PARTUUID)
    subprocess.run(["sh", "-ec", hook, "hook", str(tmp_path)], check=True)
    assert defaults.read_text().splitlines() == [
        f'ROOTPART="PARTUUID={ROOT_PARTUUID}"',
        'CONSOLES="tty0 ttyS1,115200"',
        'KERNEL_ARGS=""',
    ]


def test_the_debian_boot_files_are_split_boots_check(tmp_path: Path) -> None:
    base = bases.DEBIAN
    needed = ["config.txt", "cmdline.txt", "start4.elf", "bootcode.bin"]
    assert base.missing_boot_files(tmp_path) == [*needed, "vmlinuz-*", "initrd.img-*"]
    for name in [*needed, "vmlinuz-6.1.0-31-arm64", "initrd.img-6.1.0-31-arm64"]:
        (tmp_path / name).write_text("x")
    assert base.missing_boot_files(tmp_path) == []
    (tmp_path / "initrd.img-6.1.0-31-arm64").unlink()
    assert base.missing_boot_files(tmp_path) == ["initrd.img-*"]


# -- the Raspberry Pi OS base -------------------------------------------------------------


def test_the_raspios_sources_are_debians_and_the_signed_raspberry_pi_archive(
    tmp_path: Path,
) -> None:
    base = bases.get_base("raspios")
    assert base.suite == "bookworm"
    assert base.mmdebstrap_sources(tmp_path) == [
        *TODAYS_SOURCES,
        f"deb [signed-by={tmp_path / RPI_KEYRING}] {RPI_LINE}",
    ]
    assert base.mmdebstrap_options(tmp_path)[0] == "--components=main,non-free-firmware"
    (spec,) = base.keyrings
    assert spec.fingerprints == ("CF8A1AF502A2AA2D763BAE7E82B129927FA3303E",)
    assert spec.image_source_line() == f"deb [signed-by={IMAGE_KEYRING}] {RPI_LINE}"
    assert all(url.startswith("https://archive.raspberrypi.com/") for url in spec.urls)


def test_the_raspios_packages_are_its_kernels_firmware_and_the_camera_stack() -> None:
    packages = bases.RASPIOS.packages()
    assert len(packages) == len(set(packages))
    for name in (
        "linux-image-rpi-v8",
        "linux-image-rpi-2712",
        "raspi-firmware",
        "firmware-brcm80211",
        "raspberrypi-archive-keyring",
        "python3-picamera2",
        "python3-libcamera",
        "libcamera-ipa",
    ):
        assert name in packages
    assert "linux-image-arm64" not in packages
    # the same system around the kernel: every package but Debian's boot ones
    assert [p for p in packages if p in bases.COMMON_PACKAGES] == list(bases.COMMON_PACKAGES)


def test_boards_and_cameras_for_the_docs() -> None:
    assert "Raspberry Pi 5" in bases.RASPIOS.boards
    assert "Raspberry Pi 5" not in bases.DEBIAN.boards
    assert set(bases.DEBIAN.boards) < set(bases.RASPIOS.boards)
    assert "picamera2" in bases.RASPIOS.cameras
    assert "CSI camera does not" in bases.DEBIAN.cameras


def test_the_signed_by_hook_points_the_image_at_the_packaged_keyring(tmp_path: Path) -> None:
    base = bases.RASPIOS
    keyrings = tmp_path / "keyrings"
    keyrings.mkdir()
    (keyrings / RPI_KEYRING).write_bytes(b"checked key")
    root = tmp_path / "root"
    (root / "etc/apt").mkdir(parents=True)
    # what mmdebstrap writes: one-line sources go to /etc/apt/sources.list as given
    sources = root / "etc/apt/sources.list"
    sources.write_text("\n\n".join(base.mmdebstrap_sources(keyrings)) + "\n")
    hooks = [
        option.removeprefix("--customize-hook=")
        for option in base.mmdebstrap_options(keyrings)
        if option.startswith("--customize-hook=")
    ]
    assert len(hooks) == 1

    # mmdebstrap runs a hook as `sh -c HOOK exec ROOT`
    subprocess.run(["sh", "-c", hooks[0], "exec", str(root)], check=True)
    text = sources.read_text()
    assert str(keyrings) not in text
    assert f"deb [signed-by={IMAGE_KEYRING}] {RPI_LINE}\n" in text
    assert all(line in text for line in TODAYS_SOURCES)
    # raspberrypi-archive-keyring did not put the key there: the checked one is installed
    installed = root / IMAGE_KEYRING.lstrip("/")
    assert installed.read_bytes() == b"checked key"
    assert installed.stat().st_mode & 0o777 == 0o644

    # a key the package installed is left alone
    installed.write_bytes(b"packaged key")
    sources.write_text("\n\n".join(base.mmdebstrap_sources(keyrings)) + "\n")
    subprocess.run(["sh", "-c", hooks[0], "exec", str(root)], check=True)
    assert installed.read_bytes() == b"packaged key"
    assert str(keyrings) not in sources.read_text()


def test_a_keyring_directory_the_hook_cannot_quote_is_refused() -> None:
    with pytest.raises(ValueError, match="only letters, digits"):
        bases.RASPIOS.mmdebstrap_options(Path("/tmp/with space"))


def test_the_hooks_are_valid_shell() -> None:
    for base in bases.BASES.values():
        subprocess.run(["sh", "-n", "-c", base.firmware_hook], check=True)
    # the Raspberry Pi OS kernels' hook, which no package may have run in time
    assert "/etc/kernel/postinst.d/z50-raspi-firmware" in bases.RASPIOS.firmware_hook
    assert "{partuuid}" in bases.DEBIAN.firmware_hook


def test_the_raspios_boot_config_is_written_by_the_build() -> None:
    files = bases.RASPIOS.boot_config(ROOT_PARTUUID)
    assert set(files) == {"config.txt", "cmdline.txt"}
    config = files["config.txt"].splitlines()
    for line in (
        "arm_64bit=1",
        "dtoverlay=vc4-kms-v3d",
        "camera_auto_detect=1",
        "auto_initramfs=1",
        "enable_uart=1",
    ):
        assert line in config
    assert not any(line.startswith(("kernel=", "initramfs ")) for line in config)
    assert files["cmdline.txt"] == (
        "console=serial0,115200 console=tty1 root=PARTUUID=c0110b01-02 rootfstype=ext4 "
        "fsck.repair=yes rootwait\n"
    )


def test_the_raspios_boot_files(tmp_path: Path) -> None:
    base = bases.RASPIOS
    assert "kernel8.img" in base.missing_boot_files(tmp_path)
    for name in base.boot_files:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    assert base.missing_boot_files(tmp_path) == []
    (tmp_path / "kernel_2712.img").unlink()
    (tmp_path / "overlays/README").unlink()
    assert base.missing_boot_files(tmp_path) == ["kernel_2712.img", "overlays/README"]
    for want in ("initramfs8", "initramfs_2712", "bcm2712-rpi-5-b.dtb", "start4.elf"):
        assert want in base.boot_files


def test_the_raspios_root_gives_the_dma_heaps_to_video() -> None:
    ((path, text),) = bases.RASPIOS.root_files
    assert path.startswith("etc/udev/rules.d/")
    assert 'SUBSYSTEM=="dma_heap", GROUP="video", MODE="0660"' in text.splitlines()


def test_describe_is_json_with_no_build_machine_path() -> None:
    described = {name: json.dumps(base.describe()) for name, base in bases.BASES.items()}
    assert described["debian"] != described["raspios"]
    assert IMAGE_KEYRING in described["raspios"]
    assert "signed-by=/tmp" not in described["raspios"]


def test_an_unknown_base_names_the_valid_ones() -> None:
    with pytest.raises(bases.UnknownBaseError, match="unknown base 'nope': choose one of") as e:
        bases.get_base("nope")
    assert "debian" in str(e.value)
    assert "raspios" in str(e.value)
    assert isinstance(e.value, ValueError)


# -- the archive keyring ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Key:
    """A throwaway OpenPGP key: its fingerprint, binary and armoured exports."""

    fingerprint: str
    binary: bytes
    armoured: bytes


@pytest.fixture(scope="module")
def gpg_key() -> Iterator[Key]:
    need(shutil.which("gpg") is not None, "gpg (Debian package gpg)")
    home = Path(tempfile.mkdtemp(prefix="gpgh-"))  # short: gpg-agent's socket lives in it
    env = {**os.environ, "GNUPGHOME": str(home)}

    def gpg(*args: str) -> bytes:
        return subprocess.run(
            ["gpg", "--batch", *args], env=env, check=True, capture_output=True
        ).stdout

    try:
        gpg("--quick-gen-key", "--passphrase", "", "test@example.invalid", "ed25519")
        colons = gpg("--with-colons", "--list-keys", "test@example.invalid").decode()
        fingerprint = next(
            line.split(":")[9] for line in colons.splitlines() if line.startswith("fpr:")
        )
        yield Key(
            fingerprint,
            gpg("--export", "test@example.invalid"),
            gpg("--armor", "--export", "test@example.invalid"),
        )
    finally:
        subprocess.run(["gpgconf", "--kill", "all"], env=env, check=False, capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


class Server:
    """An HTTP server on loopback serving fixed bodies by path; it logs every request."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(self.path)
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib override
                pass

        self.httpd = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, args=(0.02,), name="keyring-http"
        )
        self.thread.start()

    def url(self, path: str) -> str:
        """The URL of ``path`` on this server."""
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def close(self) -> None:
        """Stop serving and wait for the thread."""
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    try:
        yield s
    finally:
        s.close()


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def pinned_to(key: Key, *urls: str) -> bases.KeyringSpec:
    """The real Raspberry Pi archive keyring spec, expecting ``key`` from ``urls``."""
    return dataclasses.replace(
        bases.RASPBERRY_PI_ARCHIVE_KEYRING, urls=urls, fingerprints=(key.fingerprint,)
    )


def test_the_check_accepts_the_pinned_key(gpg_key: Key, tmp_path: Path) -> None:
    keyring = tmp_path / "key.gpg"
    keyring.write_bytes(gpg_key.binary)
    bases.check_keyring(keyring, [gpg_key.fingerprint], "test")
    # as fingerprints are printed: spaced, any case
    spaced = " ".join(gpg_key.fingerprint[i : i + 4] for i in range(0, 40, 4)).lower()
    bases.check_keyring(keyring, [spaced], "test")
    assert bases.primary_keys(keyring) == {gpg_key.fingerprint: "-"}


def test_the_check_refuses_another_key(gpg_key: Key, tmp_path: Path) -> None:
    keyring = tmp_path / "key.gpg"
    keyring.write_bytes(gpg_key.binary)
    with pytest.raises(bases.KeyringError) as e:
        bases.check_keyring(keyring, [bases.RASPBERRY_PI_ARCHIVE_FINGERPRINT], "https://x/k")
    assert str(e.value) == (
        "the keyring from https://x/k is not the pinned key: expected fingerprint "
        f"{bases.RASPBERRY_PI_ARCHIVE_FINGERPRINT}, got {gpg_key.fingerprint}"
    )


def test_the_check_refuses_an_extra_key(gpg_key: Key, tmp_path: Path) -> None:
    keys = {gpg_key.fingerprint: "-", bases.RASPBERRY_PI_ARCHIVE_FINGERPRINT: "-"}
    with pytest.raises(bases.KeyringError, match="not the pinned key"):
        bases.verify_keys(keys, [gpg_key.fingerprint], "test")
    with pytest.raises(bases.KeyringError, match=f"{gpg_key.fingerprint} \\(revoked\\)"):
        bases.verify_keys({gpg_key.fingerprint: "r"}, [gpg_key.fingerprint], "test")


def test_fetch_an_armoured_key(gpg_key: Key, server: Server, tmp_path: Path) -> None:
    server.files["/raspberrypi.gpg.key"] = gpg_key.armoured
    base = dataclasses.replace(
        bases.RASPIOS, keyrings=(pinned_to(gpg_key, server.url("/raspberrypi.gpg.key")),)
    )
    keyrings = tmp_path / "keyrings"
    (keyring,) = bases.fetch_keyrings(base, keyrings)
    assert keyring == keyrings / RPI_KEYRING
    assert keyring.read_bytes() == gpg_key.binary  # dearmoured: apt wants .gpg binary
    assert keyring.stat().st_mode & 0o777 == 0o644  # apt's _apt user reads it
    assert keyrings.stat().st_mode & 0o777 == 0o755
    assert os.listdir(keyrings) == [RPI_KEYRING]
    assert base.mmdebstrap_sources(keyrings)[-1] == f"deb [signed-by={keyring}] {RPI_LINE}"


def make_deb(tmp_path: Path, files: dict[str, bytes]) -> bytes:
    """A minimal .deb holding ``files`` (path in the root -> content), by dpkg-deb."""
    need(shutil.which("dpkg-deb") is not None, "dpkg-deb (Debian package dpkg)")
    tree = Path(tempfile.mkdtemp(dir=tmp_path))
    (tree / "DEBIAN").mkdir()
    (tree / "DEBIAN/control").write_text(
        "Package: test-keyring\nVersion: 1\nArchitecture: all\n"
        "Maintainer: test <test@example.invalid>\nDescription: test\n"
    )
    for path, data in files.items():
        (tree / path).parent.mkdir(parents=True, exist_ok=True)
        (tree / path).write_bytes(data)
    deb = tmp_path / "test.deb"
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "-b", str(tree), str(deb)],
        check=True,
        capture_output=True,
    )
    return deb.read_bytes()


def test_fetch_the_key_from_its_package(gpg_key: Key, server: Server, tmp_path: Path) -> None:
    member = bases.RASPBERRY_PI_ARCHIVE_KEYRING.deb_member
    server.files["/k.deb"] = make_deb(tmp_path, {member: gpg_key.binary})
    spec = pinned_to(gpg_key, server.url("/k.deb"), server.url("/never.key"))
    keyring = bases.fetch_keyring(spec, tmp_path / "keyrings")
    assert keyring.read_bytes() == gpg_key.binary
    assert server.requests == ["/k.deb"]


def test_a_package_without_the_key_falls_back_to_the_next_url(
    gpg_key: Key, server: Server, tmp_path: Path
) -> None:
    server.files["/k.deb"] = make_deb(tmp_path, {"usr/share/keyrings/other.gpg": b"x"})
    server.files["/k.key"] = gpg_key.armoured
    spec = pinned_to(gpg_key, server.url("/k.deb"), server.url("/k.key"))
    assert bases.fetch_keyring(spec, tmp_path / "keyrings").read_bytes() == gpg_key.binary

    del server.files["/k.key"]
    with pytest.raises(bases.KeyringError) as e:
        bases.fetch_keyring(spec, tmp_path / "other")
    said = str(e.value)
    assert f"{server.url('/k.deb')}: no {spec.deb_member} in it" in said
    assert "keyrings there: usr/share/keyrings/other.gpg" in said
    assert f"{server.url('/k.key')}: HTTP 404" in said


def test_a_body_that_is_no_key_falls_back_to_the_next_url(
    gpg_key: Key, server: Server, tmp_path: Path
) -> None:
    server.files["/portal"] = b"<html>please log in</html>"
    server.files["/k.key"] = gpg_key.armoured
    spec = pinned_to(gpg_key, server.url("/portal"), server.url("/k.key"))
    assert bases.fetch_keyring(spec, tmp_path / "keyrings").read_bytes() == gpg_key.binary


def test_another_key_stops_the_fetch(gpg_key: Key, server: Server, tmp_path: Path) -> None:
    server.files["/k.key"] = gpg_key.armoured
    spec = dataclasses.replace(
        bases.RASPBERRY_PI_ARCHIVE_KEYRING, urls=(server.url("/k.key"), server.url("/k2.key"))
    )
    keyrings = tmp_path / "keyrings"
    with pytest.raises(bases.KeyringError) as e:
        bases.fetch_keyring(spec, keyrings)
    assert str(e.value) == (
        f"the keyring from {server.url('/k.key')} is not the pinned key: expected fingerprint "
        f"{bases.RASPBERRY_PI_ARCHIVE_FINGERPRINT}, got {gpg_key.fingerprint}"
    )
    assert server.requests == ["/k.key"]  # a wrong key is not worked around
    assert os.listdir(keyrings) == []


def test_an_unreachable_archive_fails_cleanly(tmp_path: Path) -> None:
    urls = (f"http://127.0.0.1:{closed_port()}/k.deb", f"http://127.0.0.1:{closed_port()}/")
    spec = dataclasses.replace(bases.RASPBERRY_PI_ARCHIVE_KEYRING, urls=urls)
    keyrings = tmp_path / "keyrings"
    with pytest.raises(bases.KeyringError) as e:
        bases.fetch_keyring(spec, keyrings)
    said = str(e.value)
    assert said.startswith(
        "cannot fetch the Raspberry Pi archive keyring (is the archive reachable from here?): "
    )
    for url in urls:
        assert f"{url}: [Errno 111] Connection refused" in said
    assert os.listdir(keyrings) == []
