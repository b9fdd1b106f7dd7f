#!/usr/bin/python3
"""Build callbox's flashable SD image: Debian bookworm arm64, the app in /opt/callbox.

Run as root on a Debian 12 machine (`make image` installs the tools and runs it):

    image-build/build.py [--out build/image] [--role door|indoor] [--rebuild-base]

Writes callbox-<version>.img.zst (the generic image: callbox.toml names the role) or, with
--role, callbox-<version>-<role>.img.zst, whose first boot gives that role to a callbox.toml
that names none (/usr/lib/callbox/image-role).

Stages, each with its time on the progress display:

1. host      binfmt_misc for arm64 (qemu-user-static), registered when it is not.
2. wheels    callbox's dependencies as aarch64 wheels for the image's CPython 3.11
             (`pip download --platform manylinux_2_xx_aarch64 --only-binary=:all:`) and the
             callbox wheel built from this tree.
3. aec3      (on a thread, beside 4 and 5) aec-audio-processing and callbox's tuned AEC3
             binding cross-compiled for aarch64 (aec3_aarch64.py: no aarch64 wheel on PyPI);
             reused while its version and the binding's source are unchanged.
4. base      `mmdebstrap --arch=arm64` of the chosen base (bases.py: Debian bookworm, or
             Raspberry Pi OS) into build/image/base-<name>/. update-initramfs is diverted to a
             no-op while packages install (the kernel postinst, initramfs-tools' trigger and
             raspi-firmware would each run it) and run once, at the end, with the modules
             MODULES=most takes chosen on the build machine (initramfs_modules.py; chosen
             under qemu-user, they took ~10 min). Reused while its inputs are unchanged.
5. headers   the image's CPython headers (libpython3.11-dev arm64), then pyalsaaudio
             cross-compiled against them.
6. rootfs    a copy of the base with the app (a venv installed offline from the wheels, on the
             host: the pure files are the same for every architecture and the binary wheels
             are aarch64 ones), the systemd units, the service user, SSH hardening, the role
             of a role image, and every secret removed (host keys, machine id, random seed).
7. image     root.ext4 by `mke2fs -d` (no loop device, no mount), the FAT32 boot partition by
             mkfs.vfat + mcopy, the MBR image by genimage; then .img.zst and .sha256.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path

import click
from aec3_aarch64 import Aec3Artifacts, build_aec3_aarch64
from bases import BASES, Base, KeyringError, fetch_keyrings, get_base
from rich.console import Console
from rich.live import Live
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text
from wheel_file import write_wheel

REPO = Path(__file__).resolve().parent.parent
OVERLAY = REPO / "image-build" / "overlay"
# Bump when the base's mmdebstrap command changes in a way Base.describe() does not show.
BASE_REVISION = "4"
# Fixed, so two builds from one commit differ only in timestamps; first boot may randomise them.
DISK_SIGNATURE = "0xc0110b01"
ROOT_UUID = "c0110b00-0000-4000-8000-000000000002"
ROOT_HASH_SEED = "c0110b00-0000-4000-8000-000000000003"
BOOT_SIZE_MIB = 256
BOOT_OFFSET_MIB = 4

# Dependencies with no aarch64 wheel for cp311 / manylinux_2_17.._2_36 on PyPI: built here
# (docs/operations.md, "Flashing the SD image").
NO_AARCH64_WHEEL = {
    "aec-audio-processing": "cross-compiled here (aec3_aarch64.py), with the tuned AEC3 binding",
    "pyalsaaudio": "cross-compiled here (aarch64-linux-gnu-gcc, one C file) into a wheel",
    "evdev": "cross-compiled here (aarch64-linux-gnu-gcc, three C files) into a wheel",
}
SDIST_ONLY = {
    "http-ece": "pure Python, published as an sdist only (pywebpush's RFC 8188/8291 encryption)",
}
"""Dependencies without any wheel on PyPI: a universal (py3-none-any) wheel is built here."""
PYALSAAUDIO = "0.11.0"
EVDEV = "2.0.0"  # python-evdev, within pyproject.toml's range (USB keypads: hal/keypad_evdev.py)
AEC3_VERSION = "1.0.1"  # aec-audio-processing, as pyproject.toml pins it
PIP_VERSION = "26.3"  # in /opt/callbox, for updates of the app on the unit

console = Console(stderr=True)


class Steps:
    """A progress display: one line per step with its state and time, the live log tail."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.rows: list[tuple[str, str, float]] = []
        self.current: str | None = None
        self.started = 0.0
        self.tail = ""
        self.live = Live(self._render(), console=console, refresh_per_second=4, transient=False)

    def _render(self) -> Table:
        table = Table.grid(padding=(0, 2))
        for name, state, secs in self.rows:
            mark = "[green]done[/]" if state == "done" else f"[yellow]{state}[/]"
            table.add_row(mark, name, f"{secs:6.0f} s")
        if self.current is not None:
            table.add_row(
                Spinner("dots"), self.current, f"{time.monotonic() - self.started:6.0f} s"
            )
            table.add_row("", Text(self.tail[-110:], style="dim"), "")
        return table

    def __enter__(self) -> Steps:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.update(self._render())
        self.live.__exit__(None, None, None)

    def step(self, name: str, fn: Callable[[], str | None]) -> None:
        """Run `fn` as the step `name`, shown live while it runs.

        The step's line then shows its note (what `fn` returns) and its time; a step that raises is
        marked FAILED and the exception goes on.
        """
        self.current, self.started, self.tail = name, time.monotonic(), ""
        self.live.update(self._render())
        try:
            note = fn()
        except BaseException:
            self.rows.append((name, "FAILED", time.monotonic() - self.started))
            self.current = None
            raise
        label = f"{name} ({note})" if note else name
        self.rows.append((label, "done", time.monotonic() - self.started))
        self.current = None
        self.live.update(self._render())

    def background(self, name: str, fn: Callable[[], str | None]) -> Callable[[], str]:
        """Start `fn` on a thread now; the returned function waits for it.

        That function re-raises what `fn` raised, and returns its note with the time it ran (for a
        later `step`).
        """
        result: dict[str, object] = {}
        started = time.monotonic()

        def target() -> None:
            try:
                result["note"] = fn()
            except BaseException as err:  # noqa: BLE001 - handed to the waiting thread
                result["error"] = err
            result["secs"] = time.monotonic() - started

        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()

        def wait() -> str:
            thread.join()
            if "error" in result:
                raise result["error"]  # type: ignore[misc]
            note = result.get("note")
            ran = f"ran {result['secs']:.0f} s beside the other steps"
            return f"{note}; {ran}" if note else ran

        return wait

    def quiet_run(self, cmd: Sequence[str | Path], log: str) -> None:
        """`run` for a background step: output to its log only."""
        self.run(cmd, log, show=False)

    def run(self, cmd: Sequence[str | Path], log: str, show: bool = True, **kw: object) -> None:
        """Run a command, its output to log_dir/<log>, its last line on the display."""
        path = self.log_dir / log
        argv = [str(c) for c in cmd]
        with path.open("a") as out:
            out.write(f"$ {' '.join(argv)}\n")
            out.flush()
            proc = subprocess.Popen(
                argv,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
                **kw,  # type: ignore[call-overload]
            )
            assert proc.stdout is not None
            for line in proc.stdout:
                out.write(line)
                if show and line.strip():
                    self.tail = line.strip()
                    self.live.update(self._render())
            rc = proc.wait()
        if rc != 0:
            raise click.ClickException(f"{argv[0]} failed ({rc}); see {path}")


def project_version() -> str:
    """The project's version, from pyproject.toml."""
    with (REPO / "pyproject.toml").open("rb") as f:
        return str(tomllib.load(f)["project"]["version"])


def dependencies() -> list[str]:
    """The project's runtime requirements, from pyproject.toml."""
    with (REPO / "pyproject.toml").open("rb") as f:
        deps: list[str] = tomllib.load(f)["project"]["dependencies"]
    return deps


def dist_name(req: str) -> str:
    """The distribution name of requirement `req`, normalised (lower case, ``-`` for ``_``)."""
    return re.split(r"[<>=!~; \[]", req, maxsplit=1)[0].strip().lower().replace("_", "-")


# -- 1. host -------------------------------------------------------------------------------


def ensure_binfmt() -> str:
    """Make sure qemu-aarch64 is registered with binfmt_misc, so arm64 programs run here.

    The chroot steps run the image's arm64 programs. Returns the step's note.
    """
    entry = Path("/proc/sys/fs/binfmt_misc/qemu-aarch64")
    if entry.exists() and entry.read_text().startswith("enabled"):
        return "already registered"
    if not Path("/proc/sys/fs/binfmt_misc/register").exists():
        subprocess.run(
            ["mount", "-t", "binfmt_misc", "binfmt_misc", "/proc/sys/fs/binfmt_misc"], check=True
        )
    subprocess.run(["update-binfmts", "--enable", "qemu-aarch64"], check=True)
    if not entry.exists():
        raise click.ClickException("qemu-aarch64 is not registered with binfmt_misc")
    return "registered qemu-aarch64"


# -- 2. wheels -----------------------------------------------------------------------------


def pip_platform_args() -> list[str]:
    """The pip options that select wheels the image can use: CPython 3.11 on aarch64 Linux.

    manylinux wheels up to bookworm's glibc 2.36, and pure-Python ones.
    """
    args = []
    # bookworm's glibc is 2.36; the oldest manylinux aarch64 wheels are manylinux2014 (2.17)
    for minor in range(17, 37):
        args += ["--platform", f"manylinux_2_{minor}_aarch64"]
    args += ["--platform", "manylinux2014_aarch64", "--platform", "linux_aarch64"]
    args += ["--python-version", "3.11", "--implementation", "cp"]
    args += ["--abi", "cp311", "--abi", "abi3", "--abi", "none"]
    return args


def fetch_wheels(steps: Steps, pip: list[str], wheels: Path) -> str:
    """Build the callbox wheel and download aarch64 wheels of its dependencies into `wheels`.

    pip is downloaded too, for updates in place on the unit. Dependencies with no aarch64 wheel
    (``NO_AARCH64_WHEEL``) are left out: they are built here; pure-Python ones published
    as sdists only (``SDIST_ONLY``) are built into universal wheels first, which the download
    then finds (``--find-links``). Returns the step's note.
    """
    shutil.rmtree(wheels, ignore_errors=True)
    wheels.mkdir(parents=True)
    steps.run([*pip, "wheel", "-q", "--no-deps", "-w", wheels, REPO], "wheels.log")
    for requirement in (r for r in dependencies() if dist_name(r) in SDIST_ONLY):
        steps.run([*pip, "wheel", "-q", "--no-deps", "-w", wheels, requirement], "wheels.log")
    reqs = [r for r in dependencies() if dist_name(r) not in NO_AARCH64_WHEEL]
    # pip itself, so that /opt/callbox/bin/pip updates the app in place (operations.md)
    reqs.append(f"pip=={PIP_VERSION}")
    download: list[str | Path] = [*pip, "download", "-q", "-d", wheels, "--find-links", wheels]
    steps.run([*download, "--only-binary=:all:", *pip_platform_args(), *reqs], "wheels.log")
    return f"{len(list(wheels.glob('*.whl')))} wheels; no aarch64 wheel: " + ", ".join(
        sorted(NO_AARCH64_WHEEL)
    )


# -- 3. base -------------------------------------------------------------------------------

ESSENTIAL_HOOK = r"""
set -e
chroot "$1" dpkg-divert --quiet --local --rename --add /usr/sbin/update-initramfs
printf '#!/bin/sh\necho "update-initramfs: deferred to the end of the callbox image build"\n' \
  > "$1/usr/sbin/update-initramfs"
chmod 755 "$1/usr/sbin/update-initramfs"
"""

# update-initramfs runs once, with the modules MODULES=most takes chosen on the build machine
# (initramfs_modules.py: ~10 min less than mkinitramfs choosing them under qemu-user).
# After the base's own firmware hook (bases.Base.firmware_hook).
CUSTOMIZE_HOOK = r"""
rm "$1/usr/sbin/update-initramfs"
chroot "$1" dpkg-divert --quiet --local --rename --remove /usr/sbin/update-initramfs
{python} {initramfs_modules} stage "$1"
echo "I: callbox: running update-initramfs once"
chroot "$1" update-initramfs -c -k all
{python} {initramfs_modules} unstage "$1"
chroot "$1" apt-get clean
"""


def customize_hook(base: Base) -> str:
    """The base's firmware hook, then the one update-initramfs (``$1`` is the root)."""
    hook = "\nset -e\n" + base.firmware_hook + CUSTOMIZE_HOOK
    return (
        hook.replace("{partuuid}", partuuid(2))
        .replace("{python}", shlex.quote(sys.executable))
        .replace("{initramfs_modules}", shlex.quote(str(REPO / "image-build/initramfs_modules.py")))
    )


def base_key(base: Base) -> str:
    """The cache key of the mmdebstrap base: a digest of everything that makes it.

    The base's description, the hooks, the disk signature, initramfs_modules.py and
    ``BASE_REVISION``.
    """
    blob = json.dumps(
        [
            BASE_REVISION,
            base.describe(),
            ESSENTIAL_HOOK,
            CUSTOMIZE_HOOK,
            DISK_SIGNATURE,
            (REPO / "image-build/initramfs_modules.py").read_text(),
        ]
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def partuuid(n: int) -> str:
    """The PARTUUID of partition `n` of the image (the fixed disk signature and `n`)."""
    return f"{int(DISK_SIGNATURE, 16):08x}-{n:02d}"


def build_base(steps: Steps, base: Base, target: Path, keyrings: Path) -> str:
    """Build the mmdebstrap base of `base` into `target`, or reuse the one there.

    The one there is reused when its stamp holds the same `base_key`. Returns the step's note: built
    or reused.
    """
    stamp = target.with_name(target.name + ".stamp")
    if target.is_dir() and stamp.exists() and stamp.read_text().strip() == base_key(base):
        return "reused"
    shutil.rmtree(target, ignore_errors=True)
    stamp.unlink(missing_ok=True)
    try:
        fetch_keyrings(base, keyrings)
    except KeyringError as err:
        raise click.ClickException(str(err)) from err
    cmd: list[str | Path] = [
        "mmdebstrap",
        "--mode=root",
        "--arch=arm64",
        "--variant=minbase",
        *base.mmdebstrap_options(keyrings),
        f"--include={','.join(base.packages())}",
        "--aptopt=Acquire::Retries=3",
        "--dpkgopt=path-exclude=/usr/share/doc/*",
        "--dpkgopt=path-include=/usr/share/doc/*/copyright",
        "--dpkgopt=path-exclude=/usr/share/man/*",
        "--dpkgopt=path-exclude=/usr/share/locale/*",
        "--dpkgopt=path-include=/usr/share/locale/locale.alias",
        f"--essential-hook={ESSENTIAL_HOOK}",
        f"--customize-hook={customize_hook(base)}",
        base.suite,
        target,
        *base.mmdebstrap_sources(keyrings),
    ]
    steps.run(cmd, "base.log", env={**os.environ, "LC_ALL": "C.UTF-8"})
    stamp.write_text(base_key(base) + "\n")
    return "built"


def dpkg_version(root: Path, package: str) -> str:
    """The installed version of `package` in `root`, from dpkg's status file.

    ClickException when it is not installed.
    """
    status = (root / "var/lib/dpkg/status").read_text().split("\n\n")
    for para in status:
        if f"Package: {package}\n" in para and "Version: " in para:
            return para.split("Version: ", 1)[1].split("\n", 1)[0]
    raise click.ClickException(f"{package} is not installed in {root}")


def python_headers(base: Path, work: Path) -> Path:
    """The image's own CPython headers (pyconfig.h differs per architecture).

    Debian's libpython3.11-dev arm64 of the version in `base`, unpacked into `work`; returns the
    directory of Python.h.
    """
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    version = dpkg_version(base, "libpython3.11-minimal")
    deb = work / "libpython3.11-dev.deb"
    for pool in ("debian/pool/main", "debian-security/pool/updates/main"):
        url = f"http://deb.debian.org/{pool}/p/python3.11/libpython3.11-dev_{version}_arm64.deb"
        if subprocess.run(["curl", "-fsL", "-o", str(deb), url], check=False).returncode == 0:
            break
    else:
        raise click.ClickException(f"libpython3.11-dev {version} arm64 not found")
    subprocess.run(["dpkg-deb", "-x", str(deb), str(work / "dev")], check=True)
    return work / "dev/usr/include/python3.11"


def cross_build_pyalsaaudio(
    steps: Steps, pip: list[str], base: Path, wheels: Path, include: Path
) -> str:
    """Cross-compile pyalsaaudio's one C file and pack a wheel of it (it has no wheel at all).

    Compiled with Debian's aarch64 cross compiler against the image's libasound and CPython headers
    (`include`: Python.h's directory).
    """
    work = wheels.parent / "pyalsaaudio"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    steps.run(
        [
            *pip,
            "download",
            "-q",
            "--no-deps",
            "--no-binary",
            ":all:",
            "-d",
            work,
            f"pyalsaaudio=={PYALSAAUDIO}",
        ],
        "pyalsaaudio.log",
    )
    subprocess.run(
        ["tar", "-xzf", str(next(work.glob("pyalsaaudio-*.tar.gz"))), "-C", str(work)], check=True
    )
    src = work / f"pyalsaaudio-{PYALSAAUDIO}"
    # the ALSA headers (libasound2-dev) are the same on every architecture: only those
    (work / "inc").mkdir()
    (work / "inc/alsa").symlink_to("/usr/include/alsa")
    tag = "cpython-311-aarch64-linux-gnu"
    so = work / f"alsaaudio.{tag}.so"
    steps.run(
        [
            "aarch64-linux-gnu-gcc",
            "-shared",
            "-fPIC",
            "-O2",
            "-Wall",
            # as CPython builds its extensions: no assert() (which would keep the headers'
            # paths on this machine in the binary), and any other path made relative
            "-DNDEBUG",
            "-fwrapv",
            f"-ffile-prefix-map={wheels.parent}=.",
            "-I",
            include.parent,
            "-I",
            include,
            "-I",
            work / "inc",
            src / "alsaaudio.c",
            "-o",
            so,
            base / "usr/lib/aarch64-linux-gnu/libasound.so.2",
        ],
        "pyalsaaudio.log",
    )
    name = f"pyalsaaudio-{PYALSAAUDIO}-cp311-cp311-linux_aarch64.whl"
    write_wheel(wheels / name, "pyalsaaudio", PYALSAAUDIO, {so.name: so.read_bytes()})
    return name


def cross_build_evdev(steps: Steps, pip: list[str], wheels: Path, include: Path) -> str:
    """Cross-compile python-evdev's three C extensions and pack a wheel (it has no wheel at all).

    ``ecodes.c`` is generated by evdev's own ``genecodes_c.py`` from the kernel uAPI headers the
    cross compiler includes (linux-libc-dev-arm64-cross, with libc6-dev-arm64-cross); the
    sdist's ``ecodes.py`` reads the codes from that module at import time (evdev's setup.py
    falls back to the same when it cannot run the built module, as when cross-compiling).
    Compiled like pyalsaaudio, against the image's CPython headers (`include`).
    """
    work = wheels.parent / "evdev"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    download: list[str | Path] = [*pip, "download", "-q", "--no-deps", "--no-binary", ":all:"]
    steps.run([*download, "-d", work, f"evdev=={EVDEV}"], "evdev.log")
    subprocess.run(
        ["tar", "-xzf", str(next(work.glob("evdev-*.tar.gz"))), "-C", str(work)], check=True
    )
    src = work / f"evdev-{EVDEV}" / "src" / "evdev"
    # the headers the cross compiler itself includes (linux-libc-dev-arm64-cross)
    uapi = [
        f"/usr/aarch64-linux-gnu/include/linux/{name}"
        for name in ("input.h", "input-event-codes.h", "uinput.h")
    ]
    with (src / "ecodes.c").open("w") as out:
        subprocess.run(
            [sys.executable, src / "genecodes_c.py", "--reproducible", "--ecodes", *uapi],
            check=True,
            stdout=out,
        )
    tag = "cpython-311-aarch64-linux-gnu"
    files: dict[str, bytes] = {}
    for module, source in (("_input", "input.c"), ("_uinput", "uinput.c"), ("_ecodes", "ecodes.c")):
        so = work / f"{module}.{tag}.so"
        steps.run(
            [
                "aarch64-linux-gnu-gcc",
                "-shared",
                "-fPIC",
                "-O2",
                # evdev's setup.py flags, then CPython's (as for pyalsaaudio)
                "-std=c99",
                "-Wno-error=declaration-after-statement",
                "-DNDEBUG",
                "-fwrapv",
                f"-ffile-prefix-map={wheels.parent}=.",
                "-I",
                include.parent,
                "-I",
                include,
                src / source,
                "-o",
                so,
            ],
            "evdev.log",
        )
        files[f"evdev/{so.name}"] = so.read_bytes()
    for path in sorted(src.glob("*.py")):
        files[f"evdev/{path.name}"] = path.read_bytes()
    files["evdev/py.typed"] = b""
    name = f"evdev-{EVDEV}-cp311-cp311-linux_aarch64.whl"
    license_file = src.parents[1] / "LICENSE"
    write_wheel(
        wheels / name, "evdev", EVDEV, files, licenses={"LICENSE": license_file.read_bytes()}
    )
    return name


# -- 4. rootfs -----------------------------------------------------------------------------

# The venv's commands, for the device's interpreter (pip --target wrote the build host's).
LAUNCHERS = {
    "callbox": "from device.cli import main",
    "pip": "from pip._internal.cli.main import main",
}
LAUNCHER = """#!/opt/callbox/bin/python3
import sys

{import_main}

sys.exit(main())
"""


def wheel_requirement(wheel: Path) -> str:
    """``name==version`` of a wheel file (``name-version-tags.whl``)."""
    name, version = wheel.name.split("-")[:2]
    return f"{name}=={version}"


def install_app(
    steps: Steps, pip: list[str], wheels: Path, root: Path, base: Base, aec3_binding: Path
) -> str:
    """Install the app into /opt/callbox of `root`; the callbox wheel's name.

    A venv-like tree on Debian's python3 with the wheels, the tuned AEC3 binding, the launchers, the
    device's bytecode and the built web page.
    """
    venv = root / "opt/callbox"
    site = venv / "lib/python3.11/site-packages"
    (venv / "bin").mkdir(parents=True)
    site.mkdir(parents=True)
    (venv / "lib64").symlink_to("lib")
    (venv / "include").mkdir()
    for name in ("python", "python3", "python3.11"):
        (venv / "bin" / name).symlink_to("/usr/bin/python3")
    (venv / "pyvenv.cfg").write_text(
        "home = /usr/bin\n"
        f"include-system-site-packages = {str(base.system_site_packages).lower()}\n"
        "version = 3.11.2\n"
        "executable = /usr/bin/python3.11\n"
    )
    callbox_wheel = next(wheels.glob("callbox-*.whl"))
    steps.run(
        [
            *pip,
            "install",
            "-q",
            "--no-index",
            "--find-links",
            wheels,
            "--no-compile",
            "--only-binary=:all:",
            *pip_platform_args(),
            "--target",
            site,
            "--no-deps",
            # by name from --find-links, not by path: a path would be recorded in each
            # package's direct_url.json (the build machine's, and one more difference
            # between two builds)
            *(wheel_requirement(w) for w in sorted(wheels.glob("*.whl"))),
        ],
        "rootfs.log",
    )
    # --target puts console scripts (with the build host's interpreter) under site/bin.
    shutil.rmtree(site / "bin", ignore_errors=True)
    shutil.copy2(aec3_binding, site / "services/media" / aec3_binding.name)
    for name, import_main in LAUNCHERS.items():
        launcher = venv / "bin" / name
        launcher.write_text(LAUNCHER.format(import_main=import_main))
        launcher.chmod(0o755)
    # Same CPython minor version on both sides: the bytecode is the device's.
    steps.run(
        [
            "/usr/bin/python3.11",
            "-m",
            "compileall",
            "-q",
            "-j",
            "2",
            "--invalidation-mode",
            "checked-hash",
            "-d",
            "/opt/callbox/lib/python3.11/site-packages",
            site,
        ],
        "rootfs.log",
    )
    web = REPO / "web"
    if (web / "dist").is_dir():
        (venv / "web").mkdir()
        for name in ("index.html", "style.css", "manifest.webmanifest"):
            if (web / name).exists():
                shutil.copy2(web / name, venv / "web" / name)
        shutil.copytree(web / "dist", venv / "web/dist")
        shutil.copytree(web / "icons", venv / "web/icons")
    (root / "usr/local/bin/callbox").symlink_to("/opt/callbox/bin/callbox")
    return callbox_wheel.name


def chroot_tool(root: Path, *argv: str) -> None:
    """Run a shadow-utils tool (``groupadd``, ``useradd``) on `root`, through its ``--root``."""
    subprocess.run([argv[0], "--root", str(root), *argv[1:]], check=True, stdout=subprocess.DEVNULL)


def configure_system(root: Path, base: Base) -> str:
    """Configure the root tree; the services enabled.

    The overlay, the base's root files, the callbox units, its groups and user, /etc/callbox, the
    services enabled (not Debian's mosquitto) and /etc/fstab by PARTUUID.
    """
    # the overlay: SSH hardening, host-key generation unit, drop-ins, udev rules, hostname
    shutil.copytree(OVERLAY, root, dirs_exist_ok=True, symlinks=True)
    for relative, text in base.root_files:
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text)
    units = root / "etc/systemd/system"
    installed = []
    for unit in sorted((REPO / "device/systemd").glob("*.service")):
        shutil.copy2(unit, units / unit.name)
        installed.append(unit.name)
    # groups the unit's SupplementaryGroups= needs (Debian has video, audio and input, not gpio,
    # i2c, spi)
    for group in ("gpio", "i2c", "spi", "callbox"):
        chroot_tool(root, "groupadd", "--system", "-f", group)
    chroot_tool(
        root,
        "useradd",
        "--system",
        "--gid",
        "callbox",
        "--groups",
        "gpio,i2c,spi,input,video,audio",
        "--home-dir",
        "/var/lib/callbox",
        "--no-create-home",
        "--shell",
        "/usr/sbin/nologin",
        "callbox",
    )
    gid = next(
        line.split(":")[2]
        for line in (root / "etc/group").read_text().splitlines()
        if line.startswith("callbox:")
    )
    etc_callbox = root / "etc/callbox"
    etc_callbox.mkdir(exist_ok=True)
    os.chown(etc_callbox, 0, int(gid))
    etc_callbox.chmod(0o770)
    enable = [
        "callbox.service",
        "callbox-broker.service",
        "callbox-web.service",
        "callbox-ssh-keygen.service",
        "ssh.service",
        "NetworkManager.service",
        "avahi-daemon.service",
        "systemd-timesyncd.service",
    ]
    if "callbox-firstboot.service" in installed:
        enable.insert(0, "callbox-firstboot.service")
    subprocess.run(["systemctl", "--root", str(root), "--quiet", "enable", *enable], check=True)
    # the site broker runs as callbox-broker (its own generated config), not Debian's default
    subprocess.run(
        ["systemctl", "--root", str(root), "--quiet", "disable", "mosquitto.service"], check=True
    )
    (root / "etc/fstab").write_text(
        "# callbox image: partitions by PARTUUID (MBR disk signature "
        f"{DISK_SIGNATURE})\n"
        f"PARTUUID={partuuid(2)}  /              ext4  defaults,noatime  0 1\n"
        f"PARTUUID={partuuid(1)}  /boot/firmware vfat  defaults,umask=0077  0 2\n"
    )
    return "enabled " + ", ".join(enable)


def mark_role(root: Path, role: str | None) -> str:
    """A role image: first boot gives `role` to a callbox.toml without one."""
    if role is None:
        return "generic: callbox.toml names the role"
    marker = root / "usr/lib/callbox/image-role"
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(role + "\n")
    return f"{role}: /usr/lib/callbox/image-role"


def remove_secrets(root: Path) -> str:
    """Remove what must differ per unit or must not ship; how many files went.

    SSH host keys, the machine id, backup account files, passwords (every account locked), apt lists
    and log contents.
    """
    removed = []
    for key in sorted((root / "etc/ssh").glob("ssh_host_*")):
        key.unlink()
        removed.append(key.name)
    # empty machine id: systemd generates a unique one on the first boot
    (root / "etc/machine-id").write_text("")
    for path in (
        "var/lib/dbus/machine-id",
        "var/lib/systemd/random-seed",
        "var/cache/debconf/config.dat-old",
        "var/cache/debconf/templates.dat-old",
        "etc/shadow-",
        "etc/gshadow-",
        "etc/passwd-",
        "etc/group-",
    ):
        p = root / path
        if p.exists() or p.is_symlink():
            p.unlink()
            removed.append(path)
    # no password for anyone: root stays locked ("*"); accounts come from first boot
    shadow = root / "etc/shadow"
    lines = []
    for line in shadow.read_text().splitlines():
        fields = line.split(":")
        if fields[1] not in ("*", "!", "!*"):
            fields[1] = "*"
        lines.append(":".join(fields))
    shadow.write_text("\n".join(lines) + "\n")
    for home_ssh in (root / "root/.ssh", *(root / "home").glob("*/.ssh")):
        if home_ssh.is_dir() and not any(home_ssh.iterdir()):
            home_ssh.rmdir()
    for lists in (root / "var/lib/apt/lists").glob("*"):
        if lists.is_file():
            lists.unlink()
    for log in (root / "var/log").rglob("*"):
        if log.is_file():
            log.write_text("")
    return f"removed {len(removed)} files"


def split_boot(root: Path, bootfs: Path, base: Base) -> str:
    """Move the boot partition's files from `root`'s /boot/firmware into `bootfs`.

    With the GPU firmware, the base's boot configuration and the example callbox.toml;
    ClickException when a boot file is missing. Returns the step's note.
    """
    shutil.rmtree(bootfs, ignore_errors=True)
    firmware = root / "boot/firmware"
    shutil.copytree(firmware, bootfs)
    for entry in firmware.iterdir():
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    # raspi-firmware's postinst copies the GPU firmware only on a mounted /boot/firmware
    for blob in (root / "usr/lib/raspi-firmware").glob("*"):
        if blob.is_file() and not (bootfs / blob.name).exists():
            shutil.copy2(blob, bootfs / blob.name)
    for name, text in base.boot_config(partuuid(2)).items():
        (bootfs / name).write_text(text)
    shutil.copy2(REPO / "docs/callbox.example.toml", bootfs / "callbox.toml.example")
    missing = base.missing_boot_files(bootfs)
    if missing:
        raise click.ClickException(f"the boot partition has no {', '.join(missing)}")
    return f"{len(list(bootfs.iterdir()))} files"


# -- 5. image ------------------------------------------------------------------------------


def du_mib(path: Path) -> int:
    """The disk usage of `path` in MiB (``du -sxm``)."""
    out = subprocess.run(["du", "-sxm", str(path)], check=True, capture_output=True, text=True)
    return int(out.stdout.split()[0])


def make_image(steps: Steps, root: Path, bootfs: Path, work: Path, img: Path) -> str:
    """Make the SD image `img` from `root` and `bootfs`, with `work` for the partition images.

    An ext4 root and a FAT boot partition with fixed ids and timestamps, put together by genimage.
    Returns its size.
    """
    epoch = (
        os.environ.get("SOURCE_DATE_EPOCH")
        or subprocess.run(
            ["git", "-C", str(REPO), "log", "-1", "--format=%ct"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        or "0"
    )
    env = {**os.environ, "E2FSPROGS_FAKE_TIME": epoch}
    root_mib = int(du_mib(root) * 1.25) + 256
    root_img = work / "root.ext4"
    root_img.unlink(missing_ok=True)
    steps.run(
        [
            "mke2fs",
            "-q",
            "-t",
            "ext4",
            "-d",
            root,
            "-L",
            "callbox-root",
            "-U",
            ROOT_UUID,
            "-E",
            f"hash_seed={ROOT_HASH_SEED},root_owner=0:0",
            "-m",
            "1",
            root_img,
            f"{root_mib}M",
        ],
        "image.log",
        env=env,
    )
    boot_img = work / "boot.vfat"
    boot_img.unlink(missing_ok=True)
    steps.run(
        [
            "mkfs.vfat",
            "-F",
            "32",
            "-n",
            "BOOT",
            "-i",
            DISK_SIGNATURE[2:],
            "-C",
            boot_img,
            str(BOOT_SIZE_MIB * 1024),
        ],
        "image.log",
    )
    steps.run(
        ["mcopy", "-s", "-p", "-m", "-i", boot_img, *sorted(bootfs.iterdir()), "::"], "image.log"
    )
    cfg = work / "genimage.cfg"
    cfg.write_text(f"""
image {img.name} {{
    hdimage {{
        partition-table-type = "mbr"
        disk-signature = {DISK_SIGNATURE}
    }}
    partition boot {{
        partition-type = 0xC
        bootable = true
        offset = {BOOT_OFFSET_MIB}M
        image = "boot.vfat"
    }}
    partition root {{
        partition-type = 0x83
        image = "root.ext4"
    }}
}}
""")
    empty = work / "genimage-root"
    shutil.rmtree(empty, ignore_errors=True)
    empty.mkdir()
    tmp = work / "genimage-tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    steps.run(
        [
            "genimage",
            "--config",
            cfg,
            "--rootpath",
            empty,
            "--tmppath",
            tmp,
            "--inputpath",
            work,
            "--outputpath",
            img.parent,
        ],
        "image.log",
    )
    shutil.rmtree(tmp, ignore_errors=True)
    return f"{img.stat().st_size >> 20} MiB (root {root_mib} MiB)"


def compress(steps: Steps, img: Path) -> str:
    """Compress `img` with zstd next to it and write the sha256 file of the result.

    Returns the compressed file's name and size.
    """
    zst = img.with_name(img.name + ".zst")
    zst.unlink(missing_ok=True)
    steps.run(["zstd", "-q", "-T2", "-9", img, "-o", zst], "image.log")
    digest = hashlib.sha256()
    with zst.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    zst.with_name(zst.name + ".sha256").write_text(f"{digest.hexdigest()}  {zst.name}\n")
    return f"{zst.name}: {zst.stat().st_size >> 20} MiB"


@click.command()
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=REPO / "build/image",
    show_default=True,
    help="Work and output directory.",
)
@click.option(
    "--base",
    "base_name",
    type=click.Choice(sorted(BASES)),
    default="debian",
    show_default=True,
    help="Package base: "
    + "; ".join(f"{b.name}: {b.title}, {', '.join(b.boards)}" for b in BASES.values())
    + ". Only debian is built and booted by the tests (docs/operations.md).",
)
@click.option(
    "--role",
    type=click.Choice(["door", "indoor"]),
    default=None,
    help="Build a role image (callbox-<version>-<role>.img.zst): the role a callbox.toml "
    "without one gets. Default: the generic image.",
)
@click.option("--rebuild-base", is_flag=True, help="Rebuild the mmdebstrap base even if current.")
@click.option(
    "--pip",
    "pip_python",
    default=str(REPO / ".venv/bin/python"),
    show_default=True,
    help="The Python whose pip downloads the wheels and installs them.",
)
def main(out: Path, base_name: str, role: str | None, rebuild_base: bool, pip_python: str) -> None:
    """Build build/image/callbox-<version>[-raspios][-<role>].img.zst (+ .sha256)."""
    if os.geteuid() != 0:
        raise click.ClickException("run as root (mmdebstrap --mode=root, file ownership)")
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    logs = out / "logs"
    logs.mkdir(exist_ok=True)
    for old in logs.glob("*.log"):
        old.unlink()
    version = project_version()
    pip = [pip_python, "-m", "pip"]
    base = get_base(base_name)
    wheels, root, bootfs = out / "wheels", out / "rootfs", out / "bootfs"
    base_dir = out / f"base-{base.name}"
    suffix = "".join(f"-{part}" for part in (base.name, role) if part not in (None, "debian"))
    img = out / f"callbox-{version}{suffix}.img"
    if rebuild_base:
        base_dir.with_name(base_dir.name + ".stamp").unlink(missing_ok=True)
    timings: dict[str, float] = {}
    t0 = time.monotonic()

    def copy_base() -> str:
        if root.exists():
            subprocess.run(["rm", "-rf", str(root)], check=True)
        subprocess.run(["cp", "-a", "--reflink=auto", str(base_dir), str(root)], check=True)
        return f"{du_mib(root)} MiB"

    headers: list[Path] = []
    headers_ready = threading.Event()

    def image_python_headers() -> Path:
        headers_ready.wait()
        if not headers:
            raise click.ClickException("aec3: no image headers (the base step failed)")
        return headers[0]

    def fetch_headers() -> str:
        try:
            headers.append(python_headers(base_dir, out / "python-headers"))
        finally:
            headers_ready.set()
        return str(headers[0].relative_to(out))

    aec3: list[Aec3Artifacts] = []

    def cross_build_aec3() -> str:
        aec3.append(
            build_aec3_aarch64(
                steps.quiet_run, pip, out / "aec3-aarch64", image_python_headers, AEC3_VERSION
            )
        )
        shutil.copy2(aec3[0].wheel, wheels / aec3[0].wheel.name)
        return "reused" if aec3[0].reused else "built"

    with Steps(logs) as steps:
        steps.step("host: binfmt_misc for arm64", ensure_binfmt)
        steps.step(
            "wheels: aarch64 wheels + callbox wheel", lambda: fetch_wheels(steps, pip, wheels)
        )
        try:
            wait_aec3 = steps.background("aec3: cross-compiled aarch64 wheel", cross_build_aec3)
            steps.step(
                f"base: mmdebstrap {base.title} arm64 + one update-initramfs",
                lambda: build_base(steps, base, base_dir, out / "keyrings"),
            )
            steps.step("python headers: libpython3.11-dev arm64", fetch_headers)
        finally:
            headers_ready.set()
        steps.step(
            "pyalsaaudio: cross-compiled aarch64 wheel",
            lambda: cross_build_pyalsaaudio(steps, pip, base_dir, wheels, headers[0]),
        )
        steps.step(
            "evdev: cross-compiled aarch64 wheel",
            lambda: cross_build_evdev(steps, pip, wheels, headers[0]),
        )
        steps.step("aec3: cross-compiled aarch64 wheel + tuned binding", wait_aec3)
        steps.step("rootfs: copy of the base", copy_base)
        steps.step(
            "rootfs: /opt/callbox venv (offline)",
            lambda: install_app(steps, pip, wheels, root, base, aec3[0].binding),
        )
        steps.step("rootfs: units, users, SSH, fstab", lambda: configure_system(root, base))
        steps.step("rootfs: role", lambda: mark_role(root, role))
        steps.step("rootfs: remove secrets", lambda: remove_secrets(root))
        steps.step("boot partition files", lambda: split_boot(root, bootfs, base))
        steps.step(
            "image: mke2fs -d, mkfs.vfat + mcopy, genimage",
            lambda: make_image(steps, root, bootfs, out, img),
        )
        steps.step("compress: zstd + sha256", lambda: compress(steps, img))
        timings = {name: secs for name, _, secs in steps.rows}
    total = time.monotonic() - t0
    (out / "build-times.json").write_text(
        json.dumps(
            {"total_s": round(total), "steps": {k: round(v) for k, v in timings.items()}}, indent=1
        )
        + "\n"
    )
    console.print(f"[bold]built[/] {img}.zst in {total / 60:.1f} min")


if __name__ == "__main__":
    sys.exit(main())
