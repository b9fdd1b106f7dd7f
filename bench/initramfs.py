"""update-initramfs under qemu-user: Debian's own MODULES=most against the build's staged modules.

The staged modules are the image build's, chosen on the build machine
(image-build/initramfs_modules.py).

Run as root after `make image`: ``sudo .venv/bin/python bench/initramfs.py [--repeats 1]``.
Prints one JSON object.

Each phase works on its own copy of the image's base (``build/image/base-debian``, which the
build made with the staged modules) and runs ``chroot COPY update-initramfs -u -k all`` under
qemu-user (binfmt_misc), as the build does:

- ``baseline``: as Debian ships it (``MODULES=most``: mkinitramfs chooses and copies the
  modules itself, several emulated processes per module);
- ``staged``: the build's way (``initramfs_modules.stage`` on the build machine, one ``cp``
  in mkinitramfs, ``MODULES=list``).

Figures: wall seconds per run (median over ``--repeats``), the ratio baseline/staged, and
whether the two initramfs images hold the same files (paths and contents, compared after
unpacking them with cpio): the shortcut must not change what a Pi boots.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "image-build"))

import initramfs_modules  # noqa: E402 - image-build/ is a directory of scripts, not a package

BASE = REPO / "build/image/base-debian"


def initrd_files(initrd: Path) -> dict[str, str]:
    """Path -> sha256 of every regular file in a (gzip or zstd) initramfs image."""
    raw = initramfs_modules.initramfs_archive(initrd)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["cpio", "-idm", "--quiet"], input=raw, cwd=tmp, check=True)
        return {
            str(p.relative_to(tmp)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(tmp).rglob("*"))
            if p.is_file() and not p.is_symlink()
        }


def run_phase(phase: str, work: Path) -> tuple[float, dict[str, str]]:
    """One update-initramfs on a fresh copy of the base; its time and its files."""
    copy = work / phase
    subprocess.run(["rm", "-rf", str(copy)], check=True)
    subprocess.run(["cp", "-a", "--reflink=auto", str(BASE), str(copy)], check=True)
    try:
        if phase == "staged":
            initramfs_modules.stage(copy)
        started = time.monotonic()
        # /proc in the chroot, as mmdebstrap's hooks have it (raspi-firmware's hook tells a
        # chroot from an unmounted /boot/firmware by it); a private mount namespace drops it
        result = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "sh", "-ec",
             'mount -t proc proc "$1/proc"; exec chroot "$1" update-initramfs -u -k all',
             "sh", str(copy)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        seconds = time.monotonic() - started
        if result.returncode != 0:
            raise SystemExit(f"{phase}: update-initramfs failed:\n{result.stderr[-2000:]}")
        initrd = next((copy / "boot").glob("initrd.img-*"))
        return seconds, initrd_files(initrd)
    finally:
        subprocess.run(["rm", "-rf", str(copy)], check=True)


def main() -> int:
    """Run both phases ``--repeats`` times, interleaved; print the JSON summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    if os.geteuid() != 0 or not BASE.is_dir():
        parser.error(f"run as root after `make image` (needs {BASE})")
    times: dict[str, list[float]] = {"baseline": [], "staged": []}
    files: dict[str, dict[str, str]] = {}
    with tempfile.TemporaryDirectory(dir=BASE.parent) as work:
        for _ in range(args.repeats):
            for phase in times:
                seconds, files[phase] = run_phase(phase, Path(work))
                times[phase].append(seconds)
    medians = {phase: statistics.median(t) for phase, t in times.items()}
    modules = {p: sum(1 for f in fs if f.endswith(".ko")) for p, fs in files.items()}
    print(
        json.dumps(
            {
                "bench": "initramfs",
                "cpus": os.cpu_count(),
                "update_initramfs_s": {p: round(m, 1) for p, m in medians.items()},
                "runs_s": {p: [round(t, 1) for t in ts] for p, ts in times.items()},
                "ratio_baseline_over_staged": round(medians["baseline"] / medians["staged"], 1),
                "modules": modules,
                "same_files": files["baseline"] == files["staged"],
                "differing_files": sorted(
                    set(files["baseline"].items()) ^ set(files["staged"].items())
                )[:10],
            },
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
