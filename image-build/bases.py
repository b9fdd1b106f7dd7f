"""The package bases of the SD image: what `build.py --base` chooses.

Both bases are bookworm arm64 built by the same steps (mmdebstrap, update-initramfs diverted
while packages install and run once at the end, the app, the boot partition split off); they
differ in their apt sources and keyring, their kernel and boot firmware, and a few packages:

- ``debian`` (the default, what the tests build): Debian's own archive only. Debian's
  ``linux-image-arm64`` kernel and ``raspi-firmware`` (which writes ``config.txt`` and
  ``cmdline.txt`` itself): Raspberry Pi 3, 4, 400 and Zero 2 W; USB (UVC) cameras only.
- ``raspios``: Debian's archive plus Raspberry Pi OS's (``archive.raspberrypi.com``), as
  Raspberry Pi OS bookworm is made (RPi-Distro/pi-gen, branch bookworm-arm64): its kernels for
  the BCM2710/2711 boards and the Pi 5 (BCM2712), its ``raspi-firmware``, libcamera and
  picamera2 for CSI cameras. Raspberry Pi OS's packages do not write ``config.txt`` or
  ``cmdline.txt`` (pi-gen writes them: stage1/00-boot-files), so ``Base.boot_config`` gives
  them.

The Raspberry Pi archive key is fetched when the image is built (no third-party key file is
committed here) and checked against a pinned fingerprint: ``fetch_keyrings``. It needs
``gpg`` (Debian package ``gpg``) and ``dpkg-deb`` (``dpkg``) on the build machine.
"""

from __future__ import annotations

import http.client
import io
import os
import re
import shlex
import subprocess
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

SUITE = "bookworm"

Runner = Callable[..., "subprocess.CompletedProcess[bytes]"]
"""``subprocess.run``, or a stand-in with its signature (argv, input=, capture_output=...)."""

Downloader = Callable[[str], bytes]
"""Fetches one URL's body; raises ``OSError`` (``urllib.error.URLError`` is one) on failure."""

DOWNLOAD_TIMEOUT_S = 30.0
DOWNLOAD_LIMIT_BYTES = 16 << 20  # a keyring .deb is a few kB; anything this big is not one


class UnknownBaseError(ValueError):
    """``get_base`` was given a name that is not one of ``BASES``."""


class KeyringError(RuntimeError):
    """An archive keyring could not be fetched, or it is not the key that was pinned."""


# -- keyrings -----------------------------------------------------------------------------

# The Raspberry Pi Archive Signing Key (rsa2048, 2012-06-17, no expiry), primary key
# fingerprint. The same key, computed here with `gpg --show-keys --with-colons`, is in:
#   RPi-Distro/pi-gen, branch bookworm-arm64: stage0/00-configure-apt/files/raspberrypi.gpg.key
#   RPi-Distro/pi-gen, branch master: stage0/00-configure-apt/files/raspberrypi-archive-keyring.pgp
#     (the same key with 2025-06-05 SHA-512 self-signatures: RPi-Distro/pi-gen#862/#863)
#   raspberrypi/rpi-image-gen: keydir/raspberrypi-archive-keyring.gpg
# and it is the key apt names when it refuses archive.raspberrypi.com's InRelease with the old
# SHA-1 self-signature (raspberrypi/rpi-image-gen#171).
RASPBERRY_PI_ARCHIVE_FINGERPRINT = "CF8A1AF502A2AA2D763BAE7E82B129927FA3303E"


@dataclass(frozen=True, kw_only=True)
class KeyringSpec:
    """An apt archive key beyond Debian's: where to fetch it, what it must be, what it signs.

    ``urls`` are tried in order while they cannot be downloaded (or hold no keyring); a
    keyring whose keys are not exactly ``fingerprints`` stops the build at once, whatever
    URLs are left. A URL ending in ``.deb`` is a keyring package: ``deb_member`` is the file
    taken from it. The checked keyring is written, binary (dearmored), as
    ``<keyring_dir>/<filename>``; the image's apt later finds the key at ``image_path``.
    """

    name: str
    source: str  # the one-line apt source this key signs, without options
    urls: tuple[str, ...]
    deb_member: str
    fingerprints: tuple[str, ...]
    filename: str
    image_path: str

    def path(self, keyring_dir: Path) -> Path:
        """Where ``fetch_keyring`` leaves the checked keyring on the build machine."""
        return keyring_dir / self.filename

    def source_line(self, keyring_dir: Path) -> str:
        """``source`` with ``[signed-by=<the build machine's copy>]``, for mmdebstrap."""
        return _with_signed_by(self.source, str(self.path(keyring_dir)))

    def image_source_line(self) -> str:
        """``source`` as the image's ``/etc/apt/sources.list`` holds it."""
        return _with_signed_by(self.source, self.image_path)


def _with_signed_by(source: str, keyring: str) -> str:
    kind, rest = source.split(" ", 1)
    return f"{kind} [signed-by={keyring}] {rest}"


RASPBERRY_PI_ARCHIVE_KEYRING = KeyringSpec(
    name="Raspberry Pi archive",
    # RPi-Distro/pi-gen, bookworm-arm64: stage0/00-configure-apt/files/raspi.list
    source=f"deb http://archive.raspberrypi.com/debian/ {SUITE} main",
    urls=(
        # The keyring package Raspberry Pi OS installs (pi-gen bookworm-arm64:
        # stage0/00-configure-apt/01-packages), in the version whose key carries SHA-256+
        # self-signatures (raspberrypi/rpi-image-gen#171: apt's sqv refuses SHA-1 ones
        # since 2026-02-01; Debian 12's gpgv still takes them).
        "https://archive.raspberrypi.com/debian/pool/main/r/raspberrypi-archive-keyring/"
        "raspberrypi-archive-keyring_2025.1+rpt1_all.deb",
        # The armoured key the archive publishes: the same key, older self-signatures.
        "https://archive.raspberrypi.com/debian/raspberrypi.gpg.key",
    ),
    deb_member="usr/share/keyrings/raspberrypi-archive-keyring.gpg",
    fingerprints=(RASPBERRY_PI_ARCHIVE_FINGERPRINT,),
    filename="raspberrypi-archive-keyring.gpg",
    # where raspberrypi-archive-keyring installs it (raspberrypi/rpi-image-gen:
    # templates/debian/apt/rpi-bookworm.sources names it); the image's sources name it there
    image_path="/usr/share/keyrings/raspberrypi-archive-keyring.gpg",
)


def download(url: str) -> bytes:
    """The body at ``url`` (http, https or file), at most ``DOWNLOAD_LIMIT_BYTES``."""
    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
        data: bytes = response.read(DOWNLOAD_LIMIT_BYTES + 1)
    if len(data) > DOWNLOAD_LIMIT_BYTES:
        raise OSError(f"more than {DOWNLOAD_LIMIT_BYTES} bytes: not a keyring")
    return data


class _ToolMissingError(KeyringError):
    """gpg or dpkg-deb is not installed: no URL can help."""


def _gpg(run: Runner, args: Sequence[str], data: bytes | None = None) -> bytes:
    """Run gpg with a throwaway home: nothing read from or written to the caller's ~/.gnupg."""
    with tempfile.TemporaryDirectory(prefix="callbox-gpg-") as home:
        try:
            proc = run(
                ["gpg", "--batch", "--no-options", "--homedir", home, *args],
                input=data,
                capture_output=True,
                check=False,
            )
        except FileNotFoundError as err:
            raise _ToolMissingError("gpg is not installed (Debian package: gpg)") from err
    if proc.returncode != 0:
        said = proc.stderr.decode(errors="replace").strip()
        raise KeyringError(f"gpg {args[0]} failed ({proc.returncode}): {said}")
    return proc.stdout


def primary_keys(keyring: Path, run: Runner = subprocess.run) -> dict[str, str]:
    """Each primary key in ``keyring``: fingerprint -> gpg's validity letter.

    ``-`` when unknown, ``r`` revoked, ``e`` expired; from ``gpg --show-keys --with-colons``.
    """
    out = _gpg(run, ["--with-colons", "--show-keys", str(keyring)]).decode(errors="replace")
    keys: dict[str, str] = {}
    validity: str | None = None  # set by a pub record, until its fpr record
    for line in out.splitlines():
        fields = line.split(":")
        if fields[0] == "pub":
            validity = fields[1]
        elif fields[0] == "fpr" and validity is not None:
            keys[fields[9].upper()] = validity
            validity = None
        elif fields[0] in ("sub", "uid"):
            validity = None
    return keys


def verify_keys(keys: dict[str, str], expected: Sequence[str], source: str) -> None:
    """Raise ``KeyringError`` unless ``keys`` are exactly the ``expected`` fingerprints.

    ``keys`` as ``primary_keys`` gives them; none may be revoked or expired. ``source`` is named in
    the error.
    """
    want = {f.replace(" ", "").upper() for f in expected}
    if set(keys) != want:
        raise KeyringError(
            f"the keyring from {source} is not the pinned key: expected fingerprint "
            f"{', '.join(sorted(want))}, got {', '.join(sorted(keys)) or 'no key'}"
        )
    states = {"r": "revoked", "e": "expired", "i": "invalid", "d": "disabled"}
    bad = sorted((fpr, states[v]) for fpr, v in keys.items() if v in states)
    if bad:
        listed = ", ".join(f"{fpr} ({state})" for fpr, state in bad)
        raise KeyringError(f"the keyring from {source} has an unusable key: {listed}")


def check_keyring(
    keyring: Path, expected: Sequence[str], source: str, run: Runner = subprocess.run
) -> None:
    """Raise ``KeyringError`` unless the keyring file holds exactly the ``expected`` primary keys.

    None may be revoked or expired. ``source`` (its URL) is named in the error.
    """
    verify_keys(primary_keys(keyring, run), expected, source)


def _deb_member(deb: bytes, member: str, run: Runner) -> bytes:
    """One file of a .deb's data, by ``dpkg-deb --fsys-tarfile`` (nothing is unpacked)."""
    with tempfile.NamedTemporaryFile(suffix=".deb") as tmp:
        tmp.write(deb)
        tmp.flush()
        try:
            proc = run(["dpkg-deb", "--fsys-tarfile", tmp.name], capture_output=True, check=False)
        except FileNotFoundError as err:
            raise _ToolMissingError("dpkg-deb is not installed (Debian package: dpkg)") from err
    if proc.returncode != 0:
        raise OSError(f"not a .deb: {proc.stderr.decode(errors='replace').strip()}")
    with tarfile.open(fileobj=io.BytesIO(proc.stdout)) as tar:
        files = {m.name.removeprefix("./"): m for m in tar.getmembers() if m.isfile()}
        if member not in files:
            keyrings = sorted(n for n in files if n.endswith((".gpg", ".pgp", ".asc")))
            raise OSError(f"no {member} in it (keyrings there: {', '.join(keyrings) or 'none'})")
        f = tar.extractfile(files[member])
        assert f is not None
        return f.read()


def _why(err: Exception) -> str:
    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP {err.code} {err.reason}"
    if isinstance(err, urllib.error.URLError):
        return str(err.reason)
    return str(err) or type(err).__name__


def fetch_keyring(
    spec: KeyringSpec,
    dest_dir: Path,
    run: Runner = subprocess.run,
    fetch: Downloader = download,
) -> Path:
    """Download ``spec``'s keyring, check its fingerprints, write it to ``spec.path(dest_dir)``.

    A URL that cannot be downloaded, or holds no keyring gpg can read, is skipped for the
    next. A keyring whose keys are not the pinned ones stops at once with ``KeyringError``
    naming the URL and the expected and actual fingerprints (no further URL is tried, nothing
    is written); when no URL gives a keyring, ``KeyringError`` names each URL and why.
    ``dest_dir`` and the file are made readable by all: apt reads signed-by keyrings as its
    unprivileged ``_apt`` user.
    """
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest_dir.chmod(0o755)
    target = spec.path(dest_dir)
    failures = []
    for url in spec.urls:
        try:
            data = fetch(url)
            if url.endswith(".deb"):
                data = _deb_member(data, spec.deb_member, run)
        except (OSError, ValueError, http.client.HTTPException, tarfile.TarError) as err:
            failures.append(f"{url}: {_why(err)}")
            continue
        fd, tmp_name = tempfile.mkstemp(prefix=".keyring-", dir=dest_dir)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            try:
                if data.lstrip().startswith(b"-----BEGIN PGP"):
                    tmp.write_bytes(_gpg(run, ["--dearmor", "--output", "-", str(tmp)]))
                keys = primary_keys(tmp, run)
            except _ToolMissingError:
                raise
            except KeyringError as err:
                failures.append(f"{url}: no keyring gpg can read ({err})")
                continue
            verify_keys(keys, spec.fingerprints, url)
            tmp.chmod(0o644)
            tmp.replace(target)
            return target
        finally:
            tmp.unlink(missing_ok=True)
    raise KeyringError(
        f"cannot fetch the {spec.name} keyring (is the archive reachable from here?): "
        + "; ".join(failures)
    )


# -- bases --------------------------------------------------------------------------------

# Every base's packages besides its kernel and boot firmware: build.py's list before the
# bases (the first three of its PACKAGES are now Base.boot_packages).
COMMON_PACKAGES = (
    "initramfs-tools",
    "systemd-sysv",
    "udev",
    "kmod",
    "dbus",
    "e2fsprogs",
    "dosfstools",
    "cloud-guest-utils",
    "fdisk",
    # administration
    "openssh-server",
    "openssh-client",
    "sudo",
    "less",
    "nano",
    "procps",
    "iproute2",
    "iputils-ping",
    "ca-certificates",
    "tzdata",
    "systemd-timesyncd",
    # network: wired by DHCP, Wi-Fi from callbox.toml; door.local by mDNS
    "network-manager",
    "wpasupplicant",
    "avahi-daemon",
    "libnss-mdns",
    # the app: its interpreter, the site broker, audio (ALSA, Speex AEC fallback, Opus loss
    # concealment and FEC in the receive path), I2C
    "python3",
    "mosquitto",
    "libasound2",
    "alsa-utils",
    "libspeexdsp1",
    "libopus0",
    "i2c-tools",
    # the RTSP stream for NVRs (services/rtsp: [rtsp], off by default): GStreamer's RTSP
    # server, run by Debian's python3 through PyGObject
    "python3-gi",
    "python3-gst-1.0",
    "gir1.2-gst-rtsp-server-1.0",
    "gstreamer1.0-plugins-base",
    "gstreamer1.0-plugins-good",
    "gstreamer1.0-plugins-bad",
)

DEBIAN_SOURCES = (
    f"deb http://deb.debian.org/debian {SUITE} main non-free-firmware",
    f"deb http://deb.debian.org/debian {SUITE}-updates main non-free-firmware",
    f"deb http://deb.debian.org/debian-security {SUITE}-security main non-free-firmware",
)

_SAFE_PATH = re.compile(r"[A-Za-z0-9_./+-]+")


@dataclass(frozen=True, kw_only=True)
class Base:
    """One package base: its apt sources and keys, kernel and firmware, boards, cameras.

    ``firmware_hook`` is shell run first in build.py's mmdebstrap customize hook (``$1`` is
    the root; ``{partuuid}`` stands for the root partition's PARTUUID), before the one
    ``update-initramfs -c -k all``. ``boot_files`` are paths, or ``Path.glob`` patterns, the
    boot partition must have. ``root_files`` are written into the root directory (relative
    path, text).
    """

    name: str
    title: str
    suite: str
    components: tuple[str, ...]
    sources: tuple[str, ...]
    keyrings: tuple[KeyringSpec, ...]
    boot_packages: tuple[str, ...]
    extra_packages: tuple[str, ...]
    firmware_hook: str
    boot_files: tuple[str, ...]
    root_files: tuple[tuple[str, str], ...]
    config_txt: str | None  # None: the base's own packages write config.txt and cmdline.txt
    cmdline_txt: str | None  # with {partuuid}
    boards: tuple[str, ...]
    cameras: str
    # /opt/callbox sees the system's Python packages (Raspberry Pi OS: picamera2 from apt)
    system_site_packages: bool

    def packages(self) -> list[str]:
        """Everything mmdebstrap --include installs: kernel and firmware first."""
        return [*self.boot_packages, *COMMON_PACKAGES, *self.extra_packages]

    def mmdebstrap_sources(self, keyring_dir: Path) -> list[str]:
        """The MIRROR arguments (after SUITE and TARGET): one-line apt sources.

        Each extra archive is signed-by its keyring in ``keyring_dir`` (``fetch_keyrings`` fills
        it).
        """
        return [*self.sources, *(k.source_line(keyring_dir) for k in self.keyrings)]

    def mmdebstrap_options(self, keyring_dir: Path) -> list[str]:
        """Options before SUITE: the components, and a customize hook for each extra keyring.

        The hook points the image's sources at ``image_path`` instead of the build machine's copy
        (apt reads a signed-by path on the host while mmdebstrap runs; mmdebstrap writes the sources
        into the image as given) and installs the checked key there when the keyring package did
        not.
        """
        options = [f"--components={','.join(self.components)}"]
        for spec in self.keyrings:
            options.append(f"--customize-hook={_signed_by_hook(spec, keyring_dir)}")
        return options

    def boot_config(self, root_partuuid: str) -> dict[str, str]:
        """Files build.py writes onto the boot partition: name -> text.

        None for Debian, whose raspi-firmware writes them from /etc/default/raspi-firmware.
        """
        files = {}
        if self.config_txt is not None:
            files["config.txt"] = self.config_txt
        if self.cmdline_txt is not None:
            files["cmdline.txt"] = self.cmdline_txt.replace("{partuuid}", root_partuuid)
        return files

    def missing_boot_files(self, bootfs: Path) -> list[str]:
        """The ``boot_files`` entries that nothing in ``bootfs`` matches."""
        return [
            want
            for want in self.boot_files
            if not (any(bootfs.glob(want)) if _is_pattern(want) else (bootfs / want).is_file())
        ]

    def describe(self) -> dict[str, object]:
        """Everything that makes this base, as JSON-able data.

        For build.py's base cache key; no build-machine path in it.
        """
        return {
            "name": self.name,
            "suite": self.suite,
            "components": list(self.components),
            "sources": [*self.sources, *(k.image_source_line() for k in self.keyrings)],
            "keyrings": [
                {"urls": list(k.urls), "member": k.deb_member, "fingerprints": list(k.fingerprints)}
                for k in self.keyrings
            ],
            "packages": self.packages(),
            "firmware_hook": self.firmware_hook,
            "boot_files": list(self.boot_files),
            "root_files": [list(f) for f in self.root_files],
            "config_txt": self.config_txt,
            "cmdline_txt": self.cmdline_txt,
        }


def _is_pattern(path: str) -> bool:
    return any(c in path for c in "*?[")


def _signed_by_hook(spec: KeyringSpec, keyring_dir: Path) -> str:
    host = str(spec.path(keyring_dir))
    if not _SAFE_PATH.fullmatch(host) or not _SAFE_PATH.fullmatch(spec.image_path):
        raise ValueError(f"keyring path {host!r}: only letters, digits and _./+- are allowed")
    # a sed BRE: of the characters allowed, only "." is special
    sed = "s|signed-by=" + host.replace(".", r"\.") + "|signed-by=" + spec.image_path + "|g"
    image = shlex.quote(spec.image_path)
    return (
        "set -e\n"
        f'sed -i {shlex.quote(sed)} "$1/etc/apt/sources.list"\n'
        f'if grep -rqsF {shlex.quote(host)} "$1/etc/apt"; then\n'
        f'  echo "E: callbox: the image\'s apt sources still name {host}" >&2\n'
        "  exit 1\n"
        "fi\n"
        f'if [ ! -e "$1"{image} ]; then\n'
        f'  install -D -m 644 {shlex.quote(host)} "$1"{image}\n'
        "fi\n"
    )


def fetch_keyrings(
    base: Base,
    keyring_dir: Path,
    run: Runner = subprocess.run,
    fetch: Downloader = download,
) -> list[Path]:
    """``fetch_keyring`` for each of ``base``'s keyrings (none for Debian)."""
    return [fetch_keyring(spec, keyring_dir, run, fetch) for spec in base.keyrings]


# Debian's raspi-firmware writes config.txt (kernel=vmlinuz-..., initramfs initrd.img-...)
# and cmdline.txt from /etc/default/raspi-firmware in its z50-raspi-firmware hooks (Debian
# bookworm's raspi-firmware_1.20220830+ds-1: etc/kernel/postinst.d/z50-raspi-firmware): here
# the root by PARTUUID, the HDMI and the Pi 3/4's mini UART consoles. build.py's hook as it was.
DEBIAN_FIRMWARE_HOOK = r"""sed -i -e 's|^#\?ROOTPART=.*|ROOTPART="PARTUUID={partuuid}"|' \
       -e 's|^#\?CONSOLES=.*|CONSOLES="tty0 ttyS1,115200"|' "$1/etc/default/raspi-firmware"
"""

# Raspberry Pi OS's raspi-firmware (RPi-Distro/firmware, debian/) lays out /boot/firmware
# from hooks: /etc/kernel/postinst.d/z50-raspi-firmware copies the newest kernel of each
# flavour (vmlinuz-*-rpi-v8 -> kernel8.img, vmlinuz-*-rpi-2712 -> kernel_2712.img), the
# bcm27*.dtb device trees and overlays/; /etc/initramfs/post-update.d/z50-raspi-firmware
# copies initrd.img-*-rpi-v8 -> initramfs8 and -rpi-2712 -> initramfs_2712 whenever
# update-initramfs runs (so build.py's one run at the end makes those). The kernel hook is
# a conffile of raspi-firmware, which may be configured after the kernels, so it is run
# here for every installed kernel (it is idempotent).
RASPIOS_FIRMWARE_HOOK = r"""for kernel in "$1"/boot/vmlinuz-*-rpi-*; do
  version="${kernel##*/vmlinuz-}"
  chroot "$1" env DEB_MAINT_PARAMS=configure /etc/kernel/postinst.d/z50-raspi-firmware \
    "$version" "/boot/vmlinuz-$version"
done
"""

# After RPi-Distro/pi-gen, bookworm-arm64: stage1/00-boot-files/files/config.txt (the
# firmware picks kernel8.img on the Pi 3/4/400/Zero 2 W in 64-bit mode, kernel_2712.img on
# the Pi 5, and with auto_initramfs the initramfs named like it), with the serial console
# on, as the Debian base has it.
RASPIOS_CONFIG_TXT = """\
# callbox image, Raspberry Pi OS base (after pi-gen's config.txt); see
# https://www.raspberrypi.com/documentation/computers/config_txt.html

# I2C (a proximity sensor on I2C): uncomment, as on the Debian base
#dtparam=i2c_arm=on

# on-board audio (snd_bcm2835)
dtparam=audio=on

# overlays for the CSI camera and DSI display that are plugged in
camera_auto_detect=1
display_auto_detect=1

# initramfs8 / initramfs_2712, matched to the kernel the firmware loads
auto_initramfs=1

# the KMS display driver; the kernel's default video mode
dtoverlay=vc4-kms-v3d
max_framebuffers=2
disable_fw_kms_setup=1

arm_64bit=1
disable_overscan=1
arm_boost=1

# serial console on GPIO 14/15 (cmdline.txt: console=serial0,115200)
enable_uart=1

[cm4]
otg_mode=1

[cm5]
dtoverlay=dwc2,dr_mode=host

[all]
"""

# RPi-Distro/pi-gen, bookworm-arm64: stage1/00-boot-files/files/cmdline.txt, ROOTDEV as
# export-image/04-set-partuuid/00-run.sh fills it in. One line.
RASPIOS_CMDLINE_TXT = (
    "console=serial0,115200 console=tty1 root=PARTUUID={partuuid} rootfstype=ext4 "
    "fsck.repair=yes rootwait\n"
)

# libcamera allocates frame buffers from /dev/dma_heap/*, root's alone by default; the
# camera's users are in the video group. Raspberry Pi OS gives them to video in
# raspberrypi-sys-mods (lib/udev/rules.d/60-dma-heap.rules), which this image leaves out
# (it brings Raspberry Pi OS's first-boot, user and SSH set-up, and pulls in raspi-config).
RASPIOS_DMA_HEAP_RULES = """\
# callbox image, Raspberry Pi OS base: libcamera (picamera2) runs as a member of video
SUBSYSTEM=="dma_heap", GROUP="video", MODE="0660"
"""

DEBIAN = Base(
    name="debian",
    title="Debian 12 (bookworm)",
    suite=SUITE,
    components=("main", "non-free-firmware"),
    sources=DEBIAN_SOURCES,
    keyrings=(),
    # the Debian kernel (Pi 3/4/400/Zero 2 W device trees), the GPU firmware, Wi-Fi firmware
    boot_packages=("linux-image-arm64", "raspi-firmware", "firmware-brcm80211"),
    extra_packages=(),
    firmware_hook=DEBIAN_FIRMWARE_HOOK,
    boot_files=(
        "config.txt",
        "cmdline.txt",
        "start4.elf",
        "bootcode.bin",
        "vmlinuz-*",
        "initrd.img-*",
    ),
    root_files=(),
    config_txt=None,
    cmdline_txt=None,
    boards=("Raspberry Pi 3", "Raspberry Pi 4", "Raspberry Pi 400", "Raspberry Pi Zero 2 W"),
    cameras="USB (UVC) cameras through V4L2; a CSI camera does not work (no libcamera or "
    "picamera2, and not Raspberry Pi OS's kernel).",
    system_site_packages=False,
)

RASPIOS = Base(
    name="raspios",
    title="Raspberry Pi OS (bookworm)",
    suite=SUITE,
    components=("main", "non-free-firmware"),
    sources=DEBIAN_SOURCES,
    keyrings=(RASPBERRY_PI_ARCHIVE_KEYRING,),
    # RPi-Distro/pi-gen, bookworm-arm64: stage0/02-firmware/01-packages (without the
    # kernel headers) and stage2/02-net-tweaks/00-packages (firmware-brcm80211, which the
    # Raspberry Pi archive also builds); rpi-v8 is the BCM2710/2711 kernel, rpi-2712 the Pi 5's
    boot_packages=(
        "linux-image-rpi-v8",
        "linux-image-rpi-2712",
        "raspi-firmware",
        "firmware-brcm80211",
    ),
    extra_packages=(
        # the archive key's own package (pi-gen: stage0/00-configure-apt/01-packages)
        "raspberrypi-archive-keyring",
        # CSI cameras: picamera2 and libcamera's Python bindings (pi-gen:
        # stage3/00-install-packages/00-packages has python3-picamera2); libcamera-ipa (the
        # Raspberry Pi ISP's algorithms) is only a Recommends of libcamera0.x
        # (raspberrypi/libcamera: debian/control) and mmdebstrap installs no Recommends
        "python3-picamera2",
        "python3-libcamera",
        "libcamera-ipa",
    ),
    firmware_hook=RASPIOS_FIRMWARE_HOOK,
    boot_files=(
        "config.txt",
        "cmdline.txt",
        "bootcode.bin",
        "start4.elf",
        "kernel8.img",
        "initramfs8",
        "kernel_2712.img",
        "initramfs_2712",
        "bcm2710-rpi-3-b.dtb",
        "bcm2710-rpi-zero-2-w.dtb",
        "bcm2711-rpi-4-b.dtb",
        "bcm2711-rpi-400.dtb",
        "bcm2712-rpi-5-b.dtb",
        "overlays/README",
    ),
    root_files=(("etc/udev/rules.d/60-callbox-dma-heap.rules", RASPIOS_DMA_HEAP_RULES),),
    config_txt=RASPIOS_CONFIG_TXT,
    cmdline_txt=RASPIOS_CMDLINE_TXT,
    boards=(
        "Raspberry Pi 3",
        "Raspberry Pi 4",
        "Raspberry Pi 400",
        "Raspberry Pi Zero 2 W",
        "Raspberry Pi 5",
    ),
    cameras="CSI cameras through libcamera and picamera2 (python3-picamera2; "
    "camera_auto_detect=1), and USB (UVC) cameras through V4L2.",
    system_site_packages=True,
)

BASES: dict[str, Base] = {base.name: base for base in (DEBIAN, RASPIOS)}
"""Every base by name; ``debian`` is the default."""


def get_base(name: str) -> Base:
    """The base called ``name``; ``UnknownBaseError`` names the valid ones."""
    try:
        return BASES[name]
    except KeyError:
        raise UnknownBaseError(
            f"unknown base {name!r}: choose one of {', '.join(sorted(BASES))}"
        ) from None
