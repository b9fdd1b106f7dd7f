"""Boot the SD image in qemu-system-aarch64 and check it from the inside (issue 7, section 3).

A sparse copy of build/image/callbox-<version>.img gets, without any mount:
- a test callbox.toml on its FAT boot partition (mtools `mcopy` at the partition's offset): an
  indoor unit on simulated parts that hosts the site broker, with [system] hostname and an
  administrator whose SSH key the test just generated;
- a smoke unit, its script and the matching private key in its ext4 root (debugfs -w).

qemu boots it (`-M virt -cpu cortex-a72`, software emulation) with the image's own kernel and
initrd from the boot partition; the smoke unit checks first boot, callbox.service, the broker,
`callbox selftest --json` and sshd (key accepted, passwords refused), prints a marker line on
the serial console and powers off. This test waits for the marker. Run by `make image-test`.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest

from image.built import OUT, generic_image

SMOKE = Path(__file__).resolve().parent / "smoke"
BOOT_TIMEOUT = float(os.environ.get("CALLBOX_IMAGE_BOOT_TIMEOUT", "900"))
MARKER = "CALLBOX-SMOKE: "
HOSTNAME = "smoke-indoor"

pytestmark = pytest.mark.timeout(BOOT_TIMEOUT + 120)


def partitions(img: Path) -> list[tuple[int, int]]:
    """(byte offset, byte size) of the MBR's primary partitions."""
    with img.open("rb") as f:
        mbr = f.read(512)
    assert mbr[510:512] == b"\x55\xaa", "no MBR"
    parts = []
    for i in range(4):
        start, count = struct.unpack_from("<II", mbr, 0x1BE + 16 * i + 8)
        if count:
            parts.append((start * 512, count * 512))
    return parts


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def smoke_config(public_key: str) -> str:
    return f"""\
role = "indoor"
address = "flat1"
name = "Smoke test flat"
site = "smoke"
board = "sim"
targets = ["door"]

# this unit hosts the site broker (callbox-broker.service), which makes its password
[broker]
host = "127.0.0.1"
port = 1883
password_file = "/var/lib/callbox-broker/credentials/flat1.password"

[system]
hostname = "{HOSTNAME}"
timezone = "Europe/Berlin"

[system.admin]
user = "admin"
ssh_keys = ["{public_key}"]
"""


def callbox_wheel() -> Path:
    """The callbox wheel the build installed (the smoke test reinstalls it as an update)."""
    wheels = sorted((OUT / "wheels").glob("callbox-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def debugfs_script(key: Path) -> str:
    unit = "/etc/systemd/system/callbox-image-smoke.service"
    wheel = callbox_wheel()
    return "\n".join(
        [
            f"write {SMOKE / 'callbox-image-smoke'} /usr/local/sbin/callbox-image-smoke",
            "sif /usr/local/sbin/callbox-image-smoke mode 0100755",
            f"write {SMOKE / 'callbox-image-smoke.service'} {unit}",
            f"sif {unit} mode 0100644",
            f"symlink /etc/systemd/system/multi-user.target.wants/callbox-image-smoke.service "
            f"{unit}",
            "mkdir /root/.smoke",
            "sif /root/.smoke mode 040700",
            f"write {key} /root/.smoke/id_ed25519",
            "sif /root/.smoke/id_ed25519 mode 0100600",
            f"write {wheel} /root/.smoke/{wheel.name}",
            "",
        ]
    )


@pytest.fixture(scope="module")
def image() -> Path:
    return generic_image()


def test_image_boots_and_passes_the_smoke_test(image: Path, tmp_path: Path) -> None:
    for tool in ("qemu-system-aarch64", "mcopy", "debugfs", "ssh-keygen"):
        assert shutil.which(tool), f"{tool} is missing (make image-test installs it)"
    disk = tmp_path / "disk.img"
    subprocess.run(["cp", "--sparse=always", str(image), str(disk)], check=True)
    # room for first boot to grow the root partition into
    with disk.open("r+b") as f:
        f.truncate(disk.stat().st_size + (512 << 20))
    (boot_off, _), (root_off, _) = partitions(disk)[:2]
    fat = f"{disk}@@{boot_off}"

    # the image's own kernel and initrd, from its boot partition
    listing = subprocess.run(
        ["mdir", "-b", "-i", fat, "::"], capture_output=True, text=True, check=True
    ).stdout
    names = [line.rsplit("/", 1)[-1].strip() for line in listing.splitlines()]
    kernel = next(n for n in names if n.startswith("vmlinuz-"))
    initrd = next(n for n in names if n.startswith("initrd.img-"))
    for name in (kernel, initrd):
        subprocess.run(["mcopy", "-n", "-i", fat, f"::{name}", str(tmp_path / name)], check=True)
    cmdline = subprocess.run(
        ["mtype", "-i", fat, "::cmdline.txt"], capture_output=True, text=True, check=True
    ).stdout
    root_arg = next(arg for arg in cmdline.split() if arg.startswith("root="))

    # the installer's part: callbox.toml on the boot partition
    key = tmp_path / "id_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "smoke", "-f", str(key)], check=True
    )
    public = key.with_suffix(".pub").read_text().strip()
    toml = tmp_path / "callbox.toml"
    toml.write_text(smoke_config(public))
    subprocess.run(["mcopy", "-i", fat, str(toml), "::callbox.toml"], check=True)

    # the test's part: the smoke unit and the private key, in the root partition
    script = tmp_path / "debugfs.cmd"
    script.write_text(debugfs_script(key))
    subprocess.run(
        ["debugfs", "-w", "-f", str(script), f"{disk}?offset={root_off}"],
        check=True,
        capture_output=True,
    )

    console_log = tmp_path / "console.log"
    port = free_port()
    argv = [
        "qemu-system-aarch64",
        "-M", "virt",
        "-cpu", "cortex-a72",
        "-smp", "2",
        "-m", "1024",
        "-nographic",
        "-no-reboot",
        "-kernel", str(tmp_path / kernel),
        "-initrd", str(tmp_path / initrd),
        "-append", f"{root_arg} rw rootwait console=ttyAMA0 net.ifnames=0 systemd.show_status=1",
        "-drive", f"file={disk},format=raw,if=virtio,cache=unsafe",
        # loopback only; romfile= : no iPXE boot ROM (package ipxe-qemu) for a -kernel boot
        "-netdev", f"user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:{port}-:22",
        "-device", "virtio-net-pci,netdev=net0,romfile=",
        "-object", "rng-random,filename=/dev/urandom,id=rng0",
        "-device", "virtio-rng-pci,rng=rng0",
    ]  # fmt: skip
    started = time.monotonic()
    with console_log.open("wb") as log:
        qemu = subprocess.Popen(
            ["nice", "-n", "10", *argv], stdin=subprocess.DEVNULL, stdout=log, stderr=log
        )
        try:
            verdict = ""
            while time.monotonic() - started < BOOT_TIMEOUT:
                text = console_log.read_text(errors="replace")
                if MARKER in text:
                    verdict = text.split(MARKER, 1)[1].split()[0]
                    break
                if qemu.poll() is not None:
                    break
                time.sleep(2)
            try:
                qemu.wait(timeout=120)
            except subprocess.TimeoutExpired:
                qemu.kill()
                qemu.wait()
        finally:
            if qemu.poll() is None:
                qemu.kill()
                qemu.wait()
    elapsed = time.monotonic() - started
    text = console_log.read_text(errors="replace")
    keep = OUT / "image-test-console.log"
    shutil.copy(console_log, keep)
    results = {}
    for line in text.splitlines():
        if "CALLBOX-SMOKE-RESULT " in line:
            results = json.loads(line.split("CALLBOX-SMOKE-RESULT ", 1)[1])
    failed = {k: v for k, v in results.items() if not v["ok"]}
    (OUT / "image-test-result.json").write_text(
        json.dumps({"verdict": verdict, "seconds": round(elapsed), "checks": results}, indent=1)
    )
    assert verdict, f"no {MARKER!r} line after {elapsed:.0f} s; console in {keep}:\n{text[-3000:]}"
    assert failed == {}, f"smoke checks failed (console in {keep}): {json.dumps(failed, indent=1)}"
    assert verdict == "PASS"
    print(f"booted and passed the smoke test in {elapsed:.0f} s")
