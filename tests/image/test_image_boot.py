"""Boot the SD image in qemu-system-aarch64 and check it from the inside (issue 7, section 3).

A sparse copy of build/image/callbox-<version>.img gets, without any mount:
- a test callbox.toml on its FAT boot partition (mtools `mcopy` at the partition's offset): an
  indoor unit on simulated parts that hosts the site broker, with [system] hostname and an
  administrator whose SSH key the test just generated;
- a smoke unit, its script and the matching private key in its ext4 root (debugfs -w).

qemu boots it (`-M virt -cpu cortex-a72`, software emulation) with the image's own kernel and
initrd from the boot partition; the smoke unit checks first boot, callbox.service, the broker,
`callbox selftest --json`, AEC3, the listening ports, sshd (key accepted, passwords refused),
configuring and updating over SSH, prints a marker line on the serial console and powers
off. This test waits for the marker. A second boot, with a callbox.toml that is refused,
checks that nothing is applied and that the safe state says why (console, `callbox status`,
the daemon's status line, the login prompt). Run by `make image-test`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from image.built import OUT, generic_image, partitions

SMOKE = Path(__file__).resolve().parent / "smoke"
BOOT_TIMEOUT = float(os.environ.get("CALLBOX_IMAGE_BOOT_TIMEOUT", "900"))
MARKER = "CALLBOX-SMOKE: "
HOSTNAME = "smoke-indoor"

pytestmark = pytest.mark.timeout(BOOT_TIMEOUT + 120)


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


def debugfs_script(key: Path, mode: Path) -> str:
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
            f"write {mode} /root/.smoke/mode",
            "",
        ]
    )


@pytest.fixture(scope="module")
def image() -> Path:
    return generic_image()


@dataclasses.dataclass(frozen=True)
class Boot:
    """What one boot of a test copy of the image gave."""

    verdict: str
    checks: dict[str, Any]
    console: str
    seconds: float


def boot(image: Path, tmp_path: Path, mode: str, toml_text: Callable[[str], str]) -> Boot:
    """Boot a copy of `image` with its boot partition's callbox.toml and the smoke unit in `mode`.

    That callbox.toml is `toml_text(admin public key)`; its console and checks are kept under OUT.
    """
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
    toml = tmp_path / "callbox.toml"
    toml.write_text(toml_text(key.with_suffix(".pub").read_text().strip()))
    subprocess.run(["mcopy", "-i", fat, str(toml), "::callbox.toml"], check=True)

    # the test's part: the smoke unit, its mode and the private key, in the root partition
    mode_file = tmp_path / "mode"
    mode_file.write_text(mode + "\n")
    script = tmp_path / "debugfs.cmd"
    script.write_text(debugfs_script(key, mode_file))
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
    verdict = ""
    with console_log.open("wb") as log:
        qemu = subprocess.Popen(
            ["nice", "-n", "10", *argv], stdin=subprocess.DEVNULL, stdout=log, stderr=log
        )
        try:
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
    suffix = "" if mode == "configured" else f"-{mode}"
    shutil.copy(console_log, OUT / f"image-test{suffix}-console.log")
    checks: dict[str, Any] = {}
    for line in text.splitlines():
        if "CALLBOX-SMOKE-RESULT " in line:
            checks = json.loads(line.split("CALLBOX-SMOKE-RESULT ", 1)[1])
    (OUT / f"image-test{suffix}-result.json").write_text(
        json.dumps({"verdict": verdict, "seconds": round(elapsed), "checks": checks}, indent=1)
    )
    return Boot(verdict, checks, text, elapsed)


def assert_passed(result: Boot, mode: str) -> None:
    """The smoke unit printed PASS and every check is ok."""
    suffix = "" if mode == "configured" else f"-{mode}"
    keep = OUT / f"image-test{suffix}-console.log"
    assert result.verdict, (
        f"no {MARKER!r} line after {result.seconds:.0f} s; console in {keep}:\n"
        + result.console[-3000:]
    )
    failed = {k: v for k, v in result.checks.items() if not v["ok"]}
    assert failed == {}, f"smoke checks failed (console in {keep}): {json.dumps(failed, indent=1)}"
    assert result.verdict == "PASS"


def test_image_boots_and_passes_the_smoke_test(image: Path, tmp_path: Path) -> None:
    result = boot(image, tmp_path, "configured", smoke_config)
    assert_passed(result, "configured")
    print(f"booted and passed the smoke test in {result.seconds:.0f} s")


def test_a_refused_callbox_toml_boots_into_the_safe_state_and_says_why(
    image: Path, tmp_path: Path
) -> None:
    """A bad file changes nothing, and the reason reaches the console and `callbox status`.

    It also reaches the daemon's status line (the smoke unit's `refused` checks).
    """

    def bad_config(public_key: str) -> str:
        return smoke_config(public_key).replace(
            'site = "smoke"', 'site = "smoke"\nringtone_volume = 11'
        )

    result = boot(image, tmp_path, "refused", bad_config)
    assert_passed(result, "refused")
    reason = "/boot/firmware/callbox.toml: ringtone_volume: "
    assert reason in result.console, "first boot's reason is on the serial console"
