"""What several ``callbox`` command groups share: the broker directory, installing settings.

``ca``, ``push``, ``turn`` and ``keys pair-web`` read the site's files in the broker's
directory (``--broker-config``); ``ca pin``, ``push import`` and ``turn import`` end alike:
set keys in callbox.toml (validated, written atomically) and have the running daemon apply them.
"""

from __future__ import annotations

from pathlib import Path

import click

from device.cli._admin import fail, reload_daemon
from device.config import ConfigError, ConfigStore

DEFAULT_SITE_DIR = Path.home() / ".callbox-site"
"""Where ``callbox site`` keeps the site admin key and the working list (``--dir``)."""
DEFAULT_BROKER_DIR = Path("/var/lib/callbox-broker")
"""Where callbox-broker.service keeps the broker's configuration (its StateDirectory)."""

broker_config_option = click.option(
    "--broker-config",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_BROKER_DIR,
    show_default=True,
    help="The site broker's directory (what `callbox broker --config` was given).",
)


def install_settings(
    config_path: Path,
    values: dict[str, str],
    done: str,
    control_path: Path | None,
    not_changed: str = "not changed",
) -> None:
    """Set ``values`` (TOML values by key) in ``config_path``, say ``done``, reload the daemon.

    A value the configuration refuses changes nothing: exit 2 with ``not_changed`` and why.
    """
    try:
        ConfigStore(config_path).set_many(values)
    except ConfigError as err:
        fail(f"{not_changed}:\n{err}", 2)
    click.echo(done)
    reload_daemon(control_path)
