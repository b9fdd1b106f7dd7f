"""First boot: ``callbox first-boot``, run as root by ``callbox-firstboot.service``.

In order, each step safe to run again (an interrupted first boot is finished by the next):

1. ``host-keys``: SSH host keys, only those missing (``ssh-keygen -A``);
2. ``machine-id``: a random ``/etc/machine-id`` when it is empty;
3. ``import`` (when ``/boot/firmware/callbox.toml`` exists): on a role image
   (``/usr/lib/callbox/image-role``), a file without ``role`` gets the image's; validate the
   whole file and
   what it needs of this system (the time zone exists, the administrator's name is not a
   system account, ``*_file`` secrets readable) before anything is written; move the secrets
   to 0600 files under ``/etc/callbox/secrets``; install the file, naming them, as
   ``/etc/callbox/callbox.toml``;
4. from the installed file: ``hostname``, ``timezone``, ``admin``, ``sshd``, ``wifi``,
   ``identity`` (the endpoint's keys, `device.config.load_or_create_identity`);
5. ``retire``: leave a copy without secrets on the boot partition
   (``callbox.toml.applied``), then overwrite with zeros and delete the installer's file
   and the boot-partition secret files it named;
6. ``grow-root``: the root partition and filesystem to the end of the card (once);
7. ``done``: ``/var/lib/callbox-firstboot/done``.

A file that is refused changes nothing: it stays on the boot partition, and the reasons
(``file: key: reason``) go to stderr (the console), ``/var/lib/callbox-firstboot/error``
(which ``callbox status`` and the daemon's safe state show) and ``/run/issue.d`` (the login
prompt on the screen). Every path is inside a `RootFs`, so the tests and an image build run
it on a directory tree.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from device.config import (
    CallboxConfig,
    ConfigError,
    ConfigStore,
    keys_dir,
    load_config,
    load_or_create_identity,
    parse_config,
)
from device.firstboot._rootfs import RootFs, RootFsError
from device.firstboot._secrets import (
    SECRETS_DIR,
    Secret,
    collect_secrets,
    read_secret_file,
    redacted,
    without_secrets,
)
from device.firstboot._siteca import boot_site_ca, site_ca_destination, with_site_ca
from device.firstboot._system import (
    FirstBootError,
    WifiNetwork,
    apply_admin,
    apply_hostname,
    apply_sshd,
    apply_timezone,
    apply_wifi,
    check_admin,
    check_timezone,
    ensure_host_keys,
    ensure_machine_id,
    grow_root,
)

_log = logging.getLogger(__name__)

BOOT_FILE: Final = "/boot/firmware/callbox.toml"
CONFIG_FILE: Final = "/etc/callbox/callbox.toml"
STATE_DIR: Final = "/var/lib/callbox-firstboot"
ISSUE_FILE: Final = "/run/issue.d/callbox-first-boot.issue"
IMAGE_ROLE_FILE: Final = "/usr/lib/callbox/image-role"
IMAGE_ROLES: Final = ("door", "indoor")
STATE_ENV: Final = "CALLBOX_FIRST_BOOT_STATE"


def first_boot_error(state_dir: Path | None = None) -> str | None:
    """The reasons the last first boot refused the boot partition's file, None when it did not.

    `state_dir`: default $CALLBOX_FIRST_BOOT_STATE, else /var/lib/callbox-firstboot.
    """
    directory = state_dir or Path(os.environ.get(STATE_ENV) or STATE_DIR)
    try:
        return (directory / "error").read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as err:
        return f"{directory / 'error'}: cannot read it: {err}"


@dataclass(frozen=True)
class FirstBootPaths:
    """The device paths first boot works with (inside the `RootFs`)."""

    boot_file: str = BOOT_FILE
    config: str = CONFIG_FILE
    state_dir: str = STATE_DIR
    image_role: str = IMAGE_ROLE_FILE

    @property
    def applied(self) -> str:
        """The copy without secrets left on the boot partition."""
        return self.boot_file + ".applied"


@dataclass
class FirstBootReport:
    """What a run did (one line each) and, when the file was refused, why."""

    done: list[str] = field(default_factory=list)
    error: str | None = None


class FirstBoot:
    """One run of first boot on `rootfs`; `on_step(name)` is called before every step."""

    def __init__(
        self,
        rootfs: RootFs,
        paths: FirstBootPaths = FirstBootPaths(),
        on_step: Callable[[str], None] | None = None,
    ) -> None:
        """Work on `rootfs` with `paths`; `on_step` reports progress (and lets a test stop)."""
        self.rootfs = rootfs
        self.paths = paths
        self.on_step = on_step or (lambda name: None)
        self.report = FirstBootReport()

    # the run ------------------------------------------------------------------------------

    def run(self) -> FirstBootReport:
        """Do every step; a refused file ends the run with `report.error` set.

        FirstBootError, RootFsError or KeystoreError: a step that could not be done (a tool
        missing, a disk error); running again continues where this run stopped.
        """
        state = self.rootfs.mkdir(self.paths.state_dir, 0o755)
        self._step("host-keys", self._host_keys)
        self._step("machine-id", self._machine_id)
        self._finish_retire()
        try:
            self._step("import", self._import)
        except ConfigError as err:
            self._refused(str(err))
            return self.report
        config = self._installed_config()
        self._apply(config)
        self._retire_boot_file(config)
        if config is None or config.system.grow_root:
            self._grow_once(state)
        self._step("done", self._done)
        return self.report

    def _step(self, name: str, action: Callable[[], object]) -> None:
        self.on_step(name)
        action()

    def _note(self, line: str) -> None:
        _log.info("%s", line)
        self.report.done.append(line)

    # 1, 2: the host ---------------------------------------------------------------------------

    def _host_keys(self) -> None:
        made = ensure_host_keys(self.rootfs)
        self._note(f"SSH host keys made: {', '.join(made)}" if made else "SSH host keys: present")

    def _machine_id(self) -> None:
        if ensure_machine_id(self.rootfs):
            self._note("machine id made")

    # 3: import ----------------------------------------------------------------------------------

    def _import(self) -> None:
        boot = self.rootfs.path(self.paths.boot_file)
        try:
            data = boot.read_bytes()
        except FileNotFoundError:
            self._note(f"no {self.paths.boot_file}: keeping the installed configuration")
            return
        except OSError as err:
            raise ConfigError(Path(self.paths.boot_file), "", f"cannot read it: {err}") from err
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as err:
            reason = f"not UTF-8 text (byte {err.start})"
            raise ConfigError(Path(self.paths.boot_file), "", reason) from err
        text = self._with_image_role(text)
        config = parse_config(text, Path(self.paths.boot_file))
        self._preflight(config)
        secrets = collect_secrets(config, self.rootfs, self.paths.boot_file)
        site_ca = boot_site_ca(config, self.rootfs, self.paths.boot_file)
        self._step("import:secrets", lambda: self._store_secrets(secrets))
        clean = without_secrets(text, secrets)
        if site_ca is not None:
            clean = self._install_site_ca(clean, site_ca)
        self._step("import:config", lambda: self._install(clean))
        moved = ", ".join(s.key for s in secrets) or "none"
        installed = f"installed {self.paths.boot_file} as {self.paths.config}"
        self._note(f"{installed} (secrets moved: {moved})")

    def _with_image_role(self, text: str) -> str:
        """`text` with the role image's role when it names none (the file wins otherwise)."""
        try:
            role = self.rootfs.path(self.paths.image_role).read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return text
        except (OSError, UnicodeDecodeError) as err:
            raise FirstBootError(f"{self.paths.image_role}: cannot read it: {err}") from err
        if role not in IMAGE_ROLES:
            raise FirstBootError(
                f"{self.paths.image_role}: {role!r} is not a role (one of {', '.join(IMAGE_ROLES)})"
            )
        try:
            named = tomllib.loads(text).get("role")
        except tomllib.TOMLDecodeError:
            return text  # parse_config names the syntax error
        if named is None:
            self._note(f"role {role!r} from the {role} image ({self.paths.boot_file} names none)")
            return f'role = "{role}"  # from the {role} image: {self.paths.image_role}\n{text}'
        if named != role:
            self._note(f"{self.paths.boot_file} sets role {named!r} on a {role} image: it wins")
        return text

    def _preflight(self, config: CallboxConfig) -> None:
        """What the file needs of this system, checked before anything is written."""
        source = Path(self.paths.boot_file)
        problems = []
        if config.system.timezone:
            try:
                check_timezone(self.rootfs, config.system.timezone)
            except FirstBootError as err:
                problems.append(("system.timezone", str(err)))
        if config.system.admin is not None:
            try:
                check_admin(self.rootfs, config.system.admin)
            except FirstBootError as err:
                problems.append(("system.admin.user", str(err)))
        if problems:
            raise ConfigError(source, problems=problems)

    def _store_secrets(self, secrets: list[Secret]) -> None:
        if not secrets:
            return
        callbox = self.rootfs.group_id("callbox") or 0
        self.rootfs.mkdir(SECRETS_DIR, 0o750, (0, callbox))
        for secret in secrets:
            owner = self.rootfs.owner_of(secret.owner) or (0, 0)
            self.rootfs.write(secret.destination, secret.value + "\n", 0o600, owner)

    def _install_site_ca(self, text: str, pem: str) -> str:
        """Write the boot partition's site CA next to the configuration; ``text`` naming it."""
        destination = site_ca_destination(self.paths.config)
        directory = str(Path(self.paths.config).parent)
        if not self.rootfs.path(directory).is_dir():
            self.rootfs.mkdir(directory, 0o770, (0, self.rootfs.group_id("callbox") or 0))
        self._step("import:site-ca", lambda: self.rootfs.write(destination, pem, 0o644))
        self._note(f"site CA pinned: {destination}")
        return with_site_ca(text, destination)

    def _install(self, text: str) -> None:
        callbox = self.rootfs.group_id("callbox") or 0
        directory = str(Path(self.paths.config).parent)
        if not self.rootfs.path(directory).is_dir():
            self.rootfs.mkdir(directory, 0o770, (0, callbox))
        path = self.rootfs.path(self.paths.config)
        ConfigStore(path).install(text)
        if os.geteuid() == 0:
            os.chown(path, 0, callbox)

    # 4: apply ---------------------------------------------------------------------------------

    def _installed_config(self) -> CallboxConfig | None:
        path = self.rootfs.path(self.paths.config)
        if not path.exists():
            self._note(f"no {self.paths.config}: only the SSH policy is applied")
            return None
        return load_config(path)

    def _apply(self, config: CallboxConfig | None) -> None:
        if config is None:
            self._step("sshd", lambda: apply_sshd(self.rootfs, None))
            return
        system = config.system
        self._step("hostname", lambda: apply_hostname(self.rootfs, config.hostname()))
        self._note(f"host name {config.hostname()}")
        if system.timezone:
            self._step("timezone", lambda: apply_timezone(self.rootfs, system.timezone))
            self._note(f"time zone {system.timezone}")
        admin = system.admin
        if admin is not None:
            self._step("admin", lambda: apply_admin(self.rootfs, admin))
            self._note(f"administrator {admin.user} with {len(admin.ssh_keys)} SSH key(s)")
        self._step("sshd", lambda: apply_sshd(self.rootfs, admin.user if admin else None))
        self._note("sshd: keys only, no root login" + (f", only {admin.user}" if admin else ""))
        networks = [self._network(config, index) for index in range(len(system.wifi))]
        self._step("wifi", lambda: apply_wifi(self.rootfs, system.wifi_country, networks))
        if networks:
            names = ", ".join(repr(n.ssid) for n in networks)
            self._note(f"Wi-Fi: {names} ({system.wifi_country})")
        self._step("identity", lambda: self._identity(config))

    def _network(self, config: CallboxConfig, index: int) -> WifiNetwork:
        wifi = config.system.wifi[index]
        if wifi.open:
            return WifiNetwork(wifi.ssid, None, wifi.hidden)
        if wifi.psk:
            return WifiNetwork(wifi.ssid, wifi.psk, wifi.hidden)
        try:
            psk = read_secret_file(self.rootfs, wifi.psk_file)
        except RootFsError as err:
            raise FirstBootError(f"system.wifi.{index}.psk_file: {err}") from err
        return WifiNetwork(wifi.ssid, psk, wifi.hidden)

    def _identity(self, config: CallboxConfig) -> None:
        state = self.rootfs.path(config.state_dir)
        owner = self.rootfs.owner_of("callbox")
        self.rootfs.mkdir(config.state_dir, 0o750, owner or (0, 0))
        identity = load_or_create_identity(state)
        if owner is not None and os.geteuid() == 0:
            directory = keys_dir(state)
            for path in (directory, *directory.iterdir()):
                os.chown(path, *owner, follow_symlinks=False)
        self._note(f"identity keys: fingerprint {identity.public_keys.fingerprint()}")

    # 5: retire ----------------------------------------------------------------------------------

    @property
    def _erase_list_file(self) -> str:
        return f"{self.paths.state_dir}/erase-on-boot-partition.json"

    @property
    def _erase_list(self) -> Path:
        return self.rootfs.path(self._erase_list_file)

    def _retire_boot_file(self, config: CallboxConfig | None) -> None:
        """Copy without secrets, then erase the installer's file and its secret files."""
        boot = self.rootfs.path(self.paths.boot_file)
        if config is None or not boot.exists():
            return
        self._step("retire:copy", lambda: self._write_applied(config))
        sources = [self.paths.boot_file, *self._boot_secret_sources(boot)]
        files = {p: _digest(self.rootfs.path(p)) for p in sources if self.rootfs.path(p).exists()}
        self.rootfs.write(self._erase_list_file, json.dumps(files), 0o600)
        self._step("retire:erase", self._finish_retire)

    def _boot_secret_sources(self, boot: Path) -> list[str]:
        """The ``*_file`` secrets under /boot the installer's file names.

        Read again: the installed file names the root copies.
        """
        try:
            original = parse_config(boot.read_text(encoding="utf-8"), boot)
        except (OSError, UnicodeDecodeError, ConfigError):
            return []
        secrets = collect_secrets(original, self.rootfs, str(boot))
        return [s.boot_source for s in secrets if s.boot_source]

    def _write_applied(self, config: CallboxConfig) -> None:
        installed = self.rootfs.path(self.paths.config).read_text(encoding="utf-8")
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        header = (
            f"# callbox first boot applied this file on {when} as {self.paths.config} and\n"
            f"# removed it from the boot partition. Secrets were moved to 0600 files in\n"
            f"# {SECRETS_DIR}/ on the root filesystem; TURN credentials are only in\n"
            f"# {self.paths.config}. To configure the unit again, write a new callbox.toml\n"
            "# here and reboot.\n\n"
        )
        self.rootfs.write(self.paths.applied, header + redacted(installed, config), None, None)

    def _finish_retire(self) -> None:
        """Erase what the erase list names (an interrupted run's too), never a new file.

        Each file only while it is the one listed (same digest) or already zeroed, and nothing once
        the installer put a new callbox.toml there, so a new file is never lost.
        """
        try:
            listed: dict[str, str] = json.loads(self._erase_list.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as err:
            raise FirstBootError(f"{self._erase_list}: cannot read it: {err}") from err
        boot = self.rootfs.path(self.paths.boot_file)
        replaced = boot.exists() and _digest(boot) not in (
            listed.get(self.paths.boot_file),
            _zero_digest(boot),
        )
        for device_path, digest in listed.items():
            path = self.rootfs.path(device_path)
            if replaced:  # a new installer's file: its import erases what it names
                break
            if path.exists() and _digest(path) in (digest, _zero_digest(path)):
                _shred(path)
                self._note(f"erased {device_path} from the boot partition")
        self._erase_list.unlink()

    # 3 refused, 6, 7 ---------------------------------------------------------------------------

    def _refused(self, reasons: str) -> None:
        message = (
            f"callbox first boot: {self.paths.boot_file} refused, nothing applied:\n{reasons}\n"
            "Fix the file (check it with `callbox config validate FILE`) and reboot.\n"
        )
        self.report.error = reasons
        self.rootfs.write(f"{self.paths.state_dir}/error", message, 0o644)
        self.rootfs.mkdir("/run/issue.d", 0o755)
        self.rootfs.write(ISSUE_FILE, message + "\n", 0o644)
        self.rootfs.remove(f"{self.paths.state_dir}/done")

    def _grow_once(self, state: Path) -> None:
        if (state / "grown").exists():
            return
        self.on_step("grow-root")
        result = grow_root(self.rootfs)
        self._note(f"root partition: {result}")
        if not result.startswith("skipped"):
            self.rootfs.write(f"{self.paths.state_dir}/grown", result + "\n", 0o644)

    def _done(self) -> None:
        self.rootfs.remove(f"{self.paths.state_dir}/error")
        self.rootfs.remove(ISSUE_FILE)
        summary = "".join(f"{line}\n" for line in self.report.done)
        self.rootfs.write(f"{self.paths.state_dir}/done", summary, 0o644)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _zero_digest(path: Path) -> str:
    return hashlib.sha256(bytes(path.stat().st_size)).hexdigest()


def _shred(path: Path) -> None:
    """Overwrite the file with zeros in place (a FAT file keeps its clusters), then delete it.

    Flash wear levelling may still keep old copies: the SD card itself is not wiped.
    """
    size = path.stat().st_size
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    try:
        os.write(fd, bytes(size))
        os.fsync(fd)
    finally:
        os.close(fd)
    path.unlink()
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
