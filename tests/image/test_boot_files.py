"""The boot partition's initramfs holds what a Raspberry Pi needs to find its root.

And the build leaves nothing of its initramfs shortcut behind (issue 7, section 1).

The build chooses the initramfs's modules on the build machine (image-build/
initramfs_modules.py) instead of letting mkinitramfs choose them under qemu-user; the qemu
boot in test_image_boot.py proves the virtio path only, so this test reads the initramfs the
Pi would load and checks the drivers of the Pi's own boot path are in it. Run by
`make image-test` after `make image`.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from initramfs_modules import initramfs_archive

from image.built import OUT, generic_image

BOOTFS = OUT / "bootfs"
ROOTFS = OUT / "rootfs"
# the SD card (Pi 3: sdhost and sdhci-iproc; Pi 4/400: emmc2, sdhci-iproc), a USB disk (Pi 4:
# VL805 xHCI behind PCIe, needs reset-raspberrypi; Pi 3/Zero 2 W: dwc2), the filesystem, and
# the emulator's disk
BOOT_MODULES = (
    "sdhci-iproc.ko",
    "bcm2835.ko",
    "sdhci-pltfm.ko",
    "ext4.ko",
    "usb-storage.ko",
    "uas.ko",
    "xhci-pci.ko",
    "reset-raspberrypi.ko",
    "dwc2.ko",
    "virtio_blk.ko",
)


@pytest.fixture(scope="module")
def initramfs_files() -> list[str]:
    generic_image()
    initrds = sorted(BOOTFS.glob("initrd.img-*"))
    assert len(initrds) == 1, f"one initramfs on the boot partition, found {initrds}"
    raw = initramfs_archive(initrds[0])
    listing = subprocess.run(["cpio", "-t", "--quiet"], input=raw, capture_output=True, check=True)
    return listing.stdout.decode().splitlines()


def test_the_initramfs_has_the_drivers_of_every_boot_path(initramfs_files: list[str]) -> None:
    names = {Path(f).name for f in initramfs_files}
    assert not [m for m in BOOT_MODULES if m not in names]
    # MODULES=most: ~900 modules (the Debian kernel 6.1 gives 926); a list of a few would not
    # boot the boards nobody tested
    assert sum(1 for n in names if n.endswith(".ko")) > 800
    assert "usr/lib/modules" in "\n".join(initramfs_files)
    assert not [f for f in initramfs_files if "callbox" in f], "no build file in the initramfs"


def test_the_build_s_initramfs_shortcut_is_gone_from_the_root() -> None:
    generic_image()
    for leftover in (
        "var/tmp/callbox-initramfs-modules",
        "etc/initramfs-tools/hooks/zz-callbox-staged-modules",
        "usr/share/initramfs-tools/conf-hooks.d/zz-callbox-image-build",
    ):
        assert not (ROOTFS / leftover).exists(), leftover
    # a kernel update on the device runs update-initramfs as Debian ships it
    assert "MODULES=most" in (ROOTFS / "etc/initramfs-tools/initramfs.conf").read_text()
    assert not (ROOTFS / "usr/sbin/update-initramfs").read_text().startswith("#!/bin/sh\necho")


def test_the_pi_boots_the_kernel_and_root_it_is_given() -> None:
    generic_image()
    config = (BOOTFS / "config.txt").read_text()
    cmdline = (BOOTFS / "cmdline.txt").read_text()
    kernel = next(BOOTFS.glob("vmlinuz-*")).name
    initrd = next(BOOTFS.glob("initrd.img-*")).name
    assert f"kernel={kernel}" in config and f"initramfs {initrd}" in config
    assert "root=PARTUUID=c0110b01-02" in cmdline
