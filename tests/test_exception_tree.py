"""One exception tree, with the CLI catching its root once at its edge.

Every error class of hal/, services/ and device/ derives from `CallboxError`, and the CLI
turns it into a message and an exit status.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from layering_rules import LAYERS, discover

from device.cli._main import CallboxGroup
from device.config import ConfigError
from device.daemon import DaemonNotRunningError
from hal.errors import CallboxError, HalError
from services.media.errors import MediaError
from services.signaling.errors import SignalingError

ROOT = Path(__file__).resolve().parents[1]


def _error_classes() -> list[type[BaseException]]:
    """Every public exception class defined (not just imported) in our modules."""
    found: list[type[BaseException]] = []
    for name in discover(ROOT, LAYERS):
        module = importlib.import_module(name)
        for attr, value in vars(module).items():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__ == name
                and not attr.startswith("_")
            ):
                found.append(value)
    return found


@pytest.mark.parametrize("error", _error_classes(), ids=lambda e: f"{e.__module__}.{e.__name__}")
def test_every_error_derives_from_callbox_error(error: type[BaseException]) -> None:
    assert issubclass(error, CallboxError), f"{error.__module__}.{error.__name__}"


def test_the_layer_roots_hang_under_callbox_error() -> None:
    for root in (HalError, MediaError, SignalingError, ConfigError):
        assert root.__mro__[1] is CallboxError, root


def _run(error: Exception) -> tuple[int, str]:
    group = CallboxGroup()

    @group.command()
    def boom() -> None:
        raise error

    result = CliRunner().invoke(group, ["boom"])
    assert not isinstance(result.exception, CallboxError), "the edge let it through"
    return result.exit_code, result.output


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (SignalingError("mosquitto is not running"), 1),
        (HalError("no such device"), 1),
        (ConfigError(Path("/etc/callbox/callbox.toml"), "relay.pin", "not a GPIO pin"), 2),
        (DaemonNotRunningError("the daemon is not running"), 3),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Exception) else str(v),
)
def test_cli_edge_prints_the_message_with_the_exit_status(error: Exception, code: int) -> None:
    exit_code, output = _run(error)
    assert exit_code == code
    assert f"callbox: {error}" in output


def test_cli_edge_leaves_other_errors_alone() -> None:
    group = CallboxGroup()

    @group.command()
    def boom() -> None:
        raise click.UsageError("give --site")

    result = CliRunner().invoke(group, ["boom"])
    assert result.exit_code == 2 and "give --site" in result.output
