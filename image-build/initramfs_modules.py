"""The initramfs's kernel modules, chosen on the build machine instead of under qemu-user.

`mkinitramfs` with initramfs-tools' default `MODULES=most` copies ~900 modules, spawning
`realpath`, `readlink`, `mkdir`, `cp` and `modinfo` for each one; under qemu-user every spawn
costs a new emulated process, and the whole run takes ~10 minutes. This module makes the same
choice natively, in seconds: the module directories and names of initramfs-tools'
``auto_add_modules`` (all its classes, as ``MODULES=most`` uses them; copied from
``/usr/share/initramfs-tools/hook-functions`` of initramfs-tools 0.142, Debian 12), with the
dependencies the build machine's ``modprobe --show-depends`` resolves in the root (kmod 30 on
both sides) and the firmware they name (``modinfo``). The build stages
them in a directory of the root; a hook (:data:`HOOK`) copies the directory into the initramfs
with one ``cp``, and mkinitramfs runs with ``MODULES=list`` (its hooks still add what they
need) and its own ``depmod`` over the result. The build removes all of it afterwards: on the
device, a later ``update-initramfs`` (a kernel update) runs as Debian ships it.
"""

from __future__ import annotations

import fnmatch
import gzip
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

STAGE = "var/tmp/callbox-initramfs-modules"
HOOK_PATH = "etc/initramfs-tools/hooks/zz-callbox-staged-modules"
HOOK = f"""#!/bin/sh
# callbox image build: the modules MODULES=most would copy, chosen on the build machine
# (image-build/initramfs_modules.py), copied in with one cp. Absent on a device: no-op.
set -e
case "$1" in prereqs) exit 0 ;; esac
. /usr/share/initramfs-tools/hook-functions
if [ -d /{STAGE} ]; then
	cp -a /{STAGE}/. "$DESTDIR"/
	# mkinitramfs resolved these before the hooks ran, over a tree without the staged modules
	hidden_dep_add_modules
fi
"""
# With the staged modules, mkinitramfs must not add MODULES=most itself. A conf-hooks.d file
# is read after conf.d and, unlike conf.d, not copied into the initramfs.
BUILD_CONF_PATH = "usr/share/initramfs-tools/conf-hooks.d/zz-callbox-image-build"
BUILD_CONF = (
    "# callbox image build only: the modules are staged (image-build/initramfs_modules.py)\n"
    "MODULES=list\n"
)

# auto_add_modules' classes (hook-functions, initramfs-tools 0.142): directories under
# kernel/ with the names `find -name … -prune` leaves out, and single modules by name.
MOST_DIRS: tuple[tuple[str, tuple[str, ...]], ...] = (
    # base
    (
        "drivers/usb/host",
        ("hwa-hc.ko", "sl811_cs.ko", "sl811-hcd.ko", "u132-hcd.ko", "whci-hcd.ko"),
    ),
    ("drivers/usb/c67x00", ()),
    ("drivers/usb/chipidea", ()),
    ("drivers/usb/dwc2", ()),
    ("drivers/usb/dwc3", ()),
    ("drivers/usb/isp1760", ()),
    ("drivers/usb/musb", ()),
    ("drivers/usb/renesas_usbhs", ()),
    ("drivers/usb/typec/tcpm", ()),
    ("drivers/input/keyboard", ()),
    (
        "drivers/hid",
        (
            "hid-*ff.ko", "hid-a4tech.ko", "hid-cypress.ko", "hid-dr.ko", "hid-elecom.ko",
            "hid-gyration.ko", "hid-icade.ko", "hid-kensington.ko", "hid-kye.ko",
            "hid-lcpower.ko", "hid-magicmouse.ko", "hid-ntrig.ko", "hid-petalynx.ko",
            "hid-picolcd.ko", "hid-pl.ko", "hid-ps3remote.ko", "hid-quanta.ko",
            "hid-roccat-ko*.ko", "hid-roccat-pyra.ko", "hid-saitek.ko", "hid-sensor-hub.ko",
            "hid-sony.ko", "hid-speedlink.ko", "hid-tivo.ko", "hid-twinhan.ko",
            "hid-uclogic.ko", "hid-wacom.ko", "hid-waltop.ko", "hid-wiimote.ko",
            "hid-zydacron.ko",
        ),
    ),
    ("drivers/bus", ()),
    ("drivers/clk", ()),
    ("drivers/gpio", ()),
    ("drivers/i2c/busses", ()),
    ("drivers/i2c/muxes", ()),
    ("drivers/mfd", ()),
    ("drivers/pci/controller", ()),
    ("drivers/phy", ()),
    ("drivers/pinctrl", ()),
    ("drivers/regulator", ()),
    ("drivers/reset", ()),
    ("drivers/spi", ()),
    ("drivers/usb/phy", ()),
    ("drivers/rtc", ()),
    # net
    (
        "drivers/net",
        (
            "appletalk", "arcnet", "bonding", "can", "cdc-phonet.ko", "cdc_mbim.ko",
            "cdc_subset.ko", "cx82310_eth.ko", "dummy.ko", "gl620a.ko", "hamradio", "hippi",
            "hso.ko", "huawei_cdc_ncm.ko", "ifb.ko", "ipheth.ko", "irda", "kalmia.ko",
            "lg-vl600.ko", "macvlan.ko", "macvtap.ko", "net1080.ko", "pcmcia", "plusb.ko",
            "qmi_wwan.ko", "sb1000.ko", "sierra_net.ko", "team", "tokenring", "tun.ko",
            "veth.ko", "wan", "wimax", "wireless", "xen-netback.ko", "zaurus.ko",
        ),
    ),
    # ide, mmc, scsi, ata, block, usb_storage
    ("drivers/ide", ()),
    ("drivers/mmc", ()),
    ("drivers/scsi", ()),
    ("drivers/ufs", ()),
    ("drivers/ata", ()),
    ("drivers/block", ()),
    ("drivers/nvme", ()),
    ("drivers/usb/storage", ()),
)  # fmt: skip
MOST_NAMES: tuple[str, ...] = (
    # base
    "btrfs", "ext2", "ext3", "ext4", "f2fs", "isofs", "jfs", "reiserfs", "udf", "xfs",
    "nfs", "nfsv2", "nfsv3", "nfsv4", "af_packet", "atkbd", "i8042", "psmouse",
    "virtio_pci", "virtio_mmio", "extcon-usb-gpio", "extcon-usbc-cros-ec",
    "axp20x_usb_power", "onboard_usb_hub", "onboard_usb_dev", "cros_ec_spi",
    "hyperv-keyboard",
    # net
    "nvmem-imx-ocotp",
    # scsi, block, dasd, firewire
    "mptfc", "mptsas", "mptscsih", "mptspi", "zfcp", "vmd",
    "dasd_diag_mod", "dasd_eckd_mod", "dasd_fba_mod", "firewire-ohci", "firewire-sbp2",
    # fb
    "rockchipdrm", "pwm-cros-ec", "pwm_bl", "pwm-rockchip", "panel-simple",
    "analogix-anx6345", "pwm-sun4i", "sun4i-drm", "sun8i-mixer", "panel-edp",
    "pwm_imx27", "nwl-dsi", "ti-sn65dsi86", "imx-dcss", "mux-mmio", "mxsfb",
    "imx8mq-interconnect",
)  # fmt: skip
FIRMWARE_DIRS = ("updates/{version}", "updates", "{version}", "")


@dataclass(frozen=True)
class StagedModules:
    """What `stage` copied: module and firmware paths relative to the root."""

    modules: tuple[str, ...]
    firmware: tuple[str, ...]


class ModuleIndex:
    """The modules of one kernel in a root directory, resolved by the build machine's own kmod.

    ``modprobe -d ROOT -S VERSION`` (Debian 12's kmod 30 on both sides) with the root's
    ``modprobe.d``, as ``manual_add_modules`` resolves them on the device.
    """

    def __init__(self, root: Path, version: str, config_dir: Path) -> None:
        """`config_dir`: an empty directory for a copy of the root's modprobe.d files."""
        self.root = root
        self.version = version
        self.dir = root / "usr/lib/modules" / version
        self.config = config_dir
        for directory in ("usr/lib/modprobe.d", "etc/modprobe.d"):  # etc/ wins, as in kmod
            for conf in sorted((root / directory).glob("*.conf")):
                shutil.copy2(conf, config_dir / conf.name)

    def closure(self, names: list[str]) -> set[str]:
        """The module files (relative to the root) that loading `names` loads.

        Soft dependencies included (``modprobe --show-depends``, once with ``--ignore-install`` and
        once without, as hook-functions does).
        """
        paths: set[str] = set()
        root = self.root.resolve()
        for extra in (["--ignore-install"], []):
            out = subprocess.run(
                ["modprobe", "--all", "-d", str(root), "-S", self.version, "-C", str(self.config),
                 *extra, "--quiet", "--show-depends", *names],
                capture_output=True, text=True, check=False,
            ).stdout  # fmt: skip
            for line in out.splitlines():
                words = line.split()
                if len(words) >= 2 and words[0] == "insmod":
                    paths.add(str(Path(words[1]).resolve().relative_to(root)))
        return paths

    def most(self) -> set[str]:
        """The module files ``MODULES=most`` puts into the initramfs."""
        names = list(MOST_NAMES)
        for directory, excludes in MOST_DIRS:
            names += _find_modules(self.dir / "kernel" / directory, excludes)
        return self.closure(names)

    def firmware(self, modules: set[str]) -> set[str]:
        """The firmware files (relative to the root) the modules name and the root has."""
        named = subprocess.run(
            ["modinfo", "-F", "firmware", *(str(self.root / m) for m in sorted(modules))],
            capture_output=True, text=True, check=True,
        ).stdout.split()  # fmt: skip
        found = set()
        for name in named:
            for sub in FIRMWARE_DIRS:
                candidate = Path("usr/lib/firmware") / sub.format(version=self.version) / name
                if (self.root / candidate).is_file():
                    found.add(str(candidate))
                    break
        return found


def _find_modules(top: Path, excludes: tuple[str, ...]) -> list[str]:
    """Module names under `top`, as ``find top -name X -prune -o … -name '*.ko*'`` finds them."""
    patterns = [e + "*" if e.endswith(".ko") else e for e in excludes]
    names: list[str] = []
    for _dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = [d for d in dirnames if not any(fnmatch.fnmatch(d, p) for p in patterns)]
        for f in filenames:
            if ".ko" in f and not any(fnmatch.fnmatch(f, p) for p in patterns):
                names.append(f.split(".", 1)[0])
    return names


def initramfs_archive(initrd: Path) -> bytes:
    """The cpio archive inside an initramfs image, gzip (this image) or zstd compressed."""
    data = initrd.read_bytes()
    if data[:2] == b"\x1f\x8b":
        return gzip.decompress(data)
    return subprocess.run(["zstd", "-dc"], input=data, capture_output=True, check=True).stdout


def kernel_versions(root: Path) -> list[str]:
    """The kernels installed in `root` (their module directories)."""
    return sorted(p.name for p in (root / "usr/lib/modules").iterdir() if re.match(r"\d", p.name))


def stage(root: Path) -> StagedModules:
    """Copy what ``MODULES=most`` would take into `root`/:data:`STAGE` and make mkinitramfs use it.

    Installs the hook and the build-only configuration that make mkinitramfs use it.
    """
    target = root / STAGE
    shutil.rmtree(target, ignore_errors=True)
    modules: list[str] = []
    firmware: list[str] = []
    for version in kernel_versions(root):
        with tempfile.TemporaryDirectory() as config:
            index = ModuleIndex(root, version, Path(config))
            chosen = index.most()
        modules += sorted(chosen)
        firmware += sorted(index.firmware(chosen))
    for rel in [*modules, *firmware]:
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, target / rel)
    hook = root / HOOK_PATH
    hook.parent.mkdir(parents=True, exist_ok=True)
    hook.write_text(HOOK)
    hook.chmod(0o755)
    (root / BUILD_CONF_PATH).parent.mkdir(parents=True, exist_ok=True)
    (root / BUILD_CONF_PATH).write_text(BUILD_CONF)
    return StagedModules(tuple(modules), tuple(firmware))


def unstage(root: Path) -> None:
    """Remove the staged modules, the hook and the build-only configuration."""
    shutil.rmtree(root / STAGE, ignore_errors=True)
    (root / HOOK_PATH).unlink(missing_ok=True)
    (root / BUILD_CONF_PATH).unlink(missing_ok=True)


def main(argv: list[str]) -> int:
    """``initramfs_modules.py stage|unstage ROOT``: for mmdebstrap's customize hook."""
    if len(argv) != 3 or argv[1] not in ("stage", "unstage"):
        print(f"usage: {argv[0]} stage|unstage ROOT", file=sys.stderr)
        return 2
    root = Path(argv[2])
    if argv[1] == "unstage":
        unstage(root)
        return 0
    staged = stage(root)
    print(
        f"I: callbox: staged {len(staged.modules)} modules and {len(staged.firmware)} firmware "
        "files for the initramfs (MODULES=most, chosen natively)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
