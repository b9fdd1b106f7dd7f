"""``callbox first-boot`` and ``callbox factory-reset``: commands that change the OS.

They change the operating system and run as root (first boot by ``callbox-firstboot.service``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from device.config import KeystoreError
from device.firstboot import (
    BOOT_FILE,
    CONFIG_FILE,
    STATE_DIR,
    FirstBoot,
    FirstBootError,
    FirstBootPaths,
    RootFs,
    RootFsError,
    factory_reset,
    reset_plan,
)

__all__ = ["register"]

root_option = click.option(
    "--root",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    default=Path("/"),
    show_default=True,
    help="The root filesystem to work on (an image tree; the other paths are inside it).",
)


def register(main: click.Group) -> None:
    """Add ``first-boot`` and ``factory-reset`` to the ``callbox`` group."""
    main.add_command(first_boot)
    main.add_command(factory_reset_command)


@click.command("first-boot")
@root_option
@click.option("--boot-file", default=BOOT_FILE, show_default=True, help="The installer's file.")
@click.option("--config", "config", default=CONFIG_FILE, show_default=True, help="Installed as.")
@click.option("--state", default=STATE_DIR, show_default=True, help="First boot's own records.")
def first_boot(root: Path, boot_file: str, config: str, state: str) -> None:
    """Set the unit up from the boot partition's callbox.toml (run once by systemd).

    SSH host keys and machine id, the configuration with its secrets moved to 0600 files,
    host name, time zone, administrator, sshd policy, Wi-Fi, identity keys, then the
    installer's file replaced by a copy without secrets and the root partition grown. Safe to
    run again. Exit 2 when the file is refused (nothing applied), 1 when a step failed.
    """
    paths = FirstBootPaths(boot_file=boot_file, config=config, state_dir=state)
    runner = FirstBoot(RootFs(root), paths, on_step=lambda name: click.echo(f"first boot: {name}"))
    try:
        report = runner.run()
    except (FirstBootError, RootFsError, KeystoreError) as err:
        click.echo(f"callbox first boot: stopped, run again to finish: {err}", err=True)
        sys.exit(1)
    for line in report.done:
        click.echo(f"  {line}")
    if report.error is not None:
        click.echo(
            f"callbox first boot: {boot_file} refused, nothing applied:\n{report.error}", err=True
        )
        sys.exit(2)
    click.echo("first boot: done")


@click.command("factory-reset")
@root_option
@click.option("--config", "config", default=CONFIG_FILE, show_default=True)
@click.option("--yes", is_flag=True, help="Do not ask (needed without a terminal).")
@click.option("--dry-run", is_flag=True, help="Only list what would be removed.")
def factory_reset_command(root: Path, config: str, yes: bool, dry_run: bool) -> None:
    """Erase keys, configuration and pairings, Wi-Fi, call log and snapshots; arm first boot.

    After it, write a new callbox.toml to the boot partition and reboot.
    """
    rootfs = RootFs(root)
    plan = reset_plan(rootfs, config)
    if not plan:
        click.echo("nothing to remove: the unit is already as flashed")
        return
    if dry_run or not yes:
        click.echo("factory reset removes:")
        for removal in plan:
            click.echo(f"  {removal.path}  ({removal.what})")
    if dry_run:
        return
    if not yes:
        if not sys.stdin.isatty():
            click.echo("callbox: factory-reset: refused without --yes (no terminal)", err=True)
            sys.exit(1)
        if not click.confirm("Erase all of this for good?", default=False):
            click.echo("nothing removed")
            sys.exit(1)
    try:
        done = factory_reset(rootfs, config)
    except RootFsError as err:
        click.echo(f"callbox: factory-reset stopped: {err}\nrun it again for the rest", err=True)
        sys.exit(1)
    for removal in done:
        click.echo(f"removed {removal.path}  ({removal.what})")
    click.echo(
        "first boot is armed: write callbox.toml to the boot partition, then reboot "
        "(`sudo reboot`); until then the running services keep what they loaded"
    )
