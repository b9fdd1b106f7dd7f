"""The administration commands of ``callbox``: run, config, status, call, log, keys, selftest.

They are what an administrator types over SSH. Values given on the command line are
parsed as TOML values or plain strings and validated; none reaches a shell.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any, NoReturn

import click

from device.config import (
    DEFAULT_CONFIG_PATH,
    FIRST_BOOT_PATH,
    CallboxConfig,
    ConfigError,
    ConfigStore,
    public_keys_of,
)
from device.daemon import (
    ControlError,
    DaemonNotRunningError,
    default_control_path,
    request_sync,
)
from device.firstboot import first_boot_error
from hal.backlight import SysfsBacklight
from hal.errors import HalError
from hal.gpio_specs import BacklightSpec, IoSpec, RelaySpec
from hal.io_devices import build_io
from services.intercom.calllog import read_call_log
from services.signaling.errors import SignalingError
from services.signaling.identity import PublicKeys, safety_number

config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="CALLBOX_CONFIG",
    default=DEFAULT_CONFIG_PATH,
    show_default=True,
    help="The configuration file.",
)
control_option = click.option(
    "--control",
    "control_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="The daemon's control socket (default: $CALLBOX_CONTROL or /run/callbox/control.sock).",
)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``message`` to stderr and exit with ``code``."""
    click.echo(f"callbox: {message}", err=True)
    sys.exit(code)


def load(config_path: Path) -> CallboxConfig:
    """The validated configuration.

    A `ConfigError` (file, key, reason) ends the command at the CLI's edge with exit 2.
    """
    return ConfigStore(config_path).load()


def ask_daemon(control_path: Path | None, command: str, **args: Any) -> dict[str, Any]:
    """Send ``command`` to the running daemon; the CLI's edge exits 3 when it is not running."""
    return request_sync(control_path or default_control_path(), command, args)


def register(main: click.Group) -> None:
    """Add the administration commands to the ``callbox`` group."""
    for command in (run, config, status, call, hangup, log, keys, selftest, safe_state):
        main.add_command(command)


# run ------------------------------------------------------------------------------------------


@click.command()
@config_option
@control_option
@click.option(
    "--first-boot",
    "first_boot",
    type=click.Path(path_type=Path, dir_okay=False),
    default=FIRST_BOOT_PATH,
    show_default=True,
    help="An installer's callbox.toml to import once, before starting.",
)
@click.option(
    "--no-first-boot",
    is_flag=True,
    help="Import nothing: callbox-firstboot.service (`callbox first-boot`) does it.",
)
@click.option(
    "--wait-on-bad-config",
    is_flag=True,
    help="A configuration that cannot be used: stay in the safe state, answering `callbox "
    "status` with the reasons, instead of exiting 2.",
)
def run(
    config_path: Path,
    control_path: Path | None,
    first_boot: Path,
    no_first_boot: bool,
    wait_on_bad_config: bool,
) -> None:
    """The daemon (systemd Type=notify): take calls until SIGTERM; SIGHUP reloads the config."""
    store = ConfigStore(config_path)
    try:
        if not no_first_boot and store.import_first_boot(first_boot):
            click.echo(f"imported {first_boot} into {config_path}", err=True)
    except ConfigError as err:
        click.echo(f"callbox: first-boot file refused, left in place:\n{err}", err=True)
    from device.daemon import run_daemon  # the call core: loaded by `run` only (CLI start-up)

    control = control_path or default_control_path()
    try:
        asyncio.run(run_daemon(config_path, control))
    except ConfigError as err:
        if not wait_on_bad_config:
            fail(str(err), 2)
        _safe_state(config_path, control, str(err))


def _safe_state(config_path: Path, control: Path, problem: str) -> None:
    """Wait in the safe state (`device.daemon.run_safe_daemon`); exit 0 once the file is valid."""
    click.echo(f"callbox: safe state, no calls until the file is fixed:\n{problem}", err=True)
    refused = first_boot_error()
    if refused:
        click.echo(f"callbox: first boot refused {FIRST_BOOT_PATH}:\n{refused}", err=True)
    from device.daemon import run_safe_daemon  # loaded only here (CLI start-up)

    asyncio.run(run_safe_daemon(config_path, control, problem))


# config -----------------------------------------------------------------------------------------


@click.group()
@config_option
@click.pass_context
def config(ctx: click.Context, config_path: Path) -> None:
    """Show, read, change and check the configuration (changes reload the daemon)."""
    ctx.obj = ConfigStore(config_path)


@config.command("show")
@click.pass_obj
def config_show(store: ConfigStore) -> None:
    """Print the file as written."""
    click.echo(store.show(), nl=False)


@config.command("get")
@click.argument("key")
@click.pass_obj
def config_get(store: ConfigStore, key: str) -> None:
    """Print the value in force at KEY (dotted: call.ring_timeout_s, contacts.0.name)."""
    value = store.get(key)
    click.echo(json.dumps(value) if not isinstance(value, str) else value)


@config.command("set", context_settings={"ignore_unknown_options": True})
@click.argument("key")
@click.argument("value")
@control_option
@click.option("--no-reload", is_flag=True, help="Only write the file.")
@click.pass_obj
def config_set(
    store: ConfigStore, key: str, value: str, control_path: Path | None, no_reload: bool
) -> None:
    """Set KEY to VALUE (a TOML value or a plain string): validated, written atomically, applied."""
    try:
        store.set(key, value)
    except ConfigError as err:
        fail(f"not changed:\n{err}", 2)
    click.echo(f"{key} set in {store.path}")
    if not no_reload:
        reload_daemon(control_path)


def reload_daemon(control_path: Path | None) -> None:
    """Ask the running daemon to apply the file just written; say what it did."""
    try:
        result = request_sync(control_path or default_control_path(), "reload")
    except DaemonNotRunningError:
        click.echo("the daemon is not running: the change applies when it starts")
        return
    except ControlError as err:
        fail(f"the daemon refused the new file: {err}", 1)
    changed = ", ".join(result.get("changed", [])) or "nothing"
    pending = result.get("pending_restart") or []
    click.echo(f"applied to the running daemon (changed: {changed})")
    if pending:
        click.echo(f"{', '.join(pending)}: applied once no call is in progress")


@config.command("validate")
@click.argument("file", required=False, type=click.Path(path_type=Path, dir_okay=False))
@click.pass_obj
def config_validate(store: ConfigStore, file: Path | None) -> None:
    """Check FILE (default: the configuration file) without changing anything."""
    store.validate(file)
    click.echo(f"{file or store.path}: valid")


@config.command("edit")
@control_option
@click.pass_obj
def config_edit(store: ConfigStore, control_path: Path | None) -> None:
    """Edit a copy in $EDITOR; install it only when it validates."""
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    with tempfile.TemporaryDirectory(prefix="callbox-edit-") as directory:
        copy = Path(directory) / "callbox.toml"
        copy.write_text(store.show())
        while True:
            # $EDITOR may carry options ("nano -w"): split like a shell would, run without one
            subprocess.run([*shlex.split(editor), str(copy)], check=False)
            try:
                store.install(copy.read_text())
                break
            except ConfigError as err:
                click.echo(str(err), err=True)
                if not click.confirm("edit again?", default=True):
                    fail("not changed", 2)
    click.echo(f"{store.path} updated")
    reload_daemon(control_path)


# status, call, log ------------------------------------------------------------------------------


@click.command()
@control_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
def status(control_path: Path | None, as_json: bool) -> None:
    """Role, broker connection, presence, the active call, hardware state.

    Or why the unit is in the safe state, and what first boot refused.
    """
    refused = first_boot_error()
    if refused and not as_json:
        click.echo(f"FIRST BOOT REFUSED {FIRST_BOOT_PATH}, nothing of it applied:\n{refused}")
    result = ask_daemon(control_path, "status")
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    if result.get("state") == "safe":
        click.echo(f"SAFE STATE: no calls until the configuration is fixed:\n{result['problem']}")
        sys.exit(1)
    who = f"{result['name']} ({result['address']})" if result["name"] else result["address"]
    click.echo(f"{who}, {result['role']} in site {result['site']}")
    if not result.get("running", True):
        click.echo("restarting to apply a new configuration")
        return
    broker = result.get("broker", {})
    click.echo(
        f"broker {broker.get('host')}:{broker.get('port')}: "
        + ("connected" if broker.get("connected") else "NOT connected")
    )
    online = [a for a, up in result.get("presence", {}).items() if up]
    click.echo(f"online: {', '.join(sorted(online)) or 'nobody'}")
    active = result.get("active_call")
    click.echo(
        f"call: {active['status']} with {active['peer']} ({active['duration_s']} s)"
        if active
        else "call: none"
    )
    click.echo(f"missed calls: {result.get('missed_calls', 0)}")
    dropped = result.get("dropped_messages", {})
    click.echo(f"dropped messages: {', '.join(f'{r} {n}' for r, n in dropped.items()) or 'none'}")
    directory = result.get("signaling", {}).get("site_directory")
    if directory is not None:
        refused = ", ".join(f"{r} {n}" for r, n in directory["refused"].items()) or "none refused"
        version = directory["version"] or "none accepted yet"
        click.echo(f"site directory: version {version}, {directory['entries']} entries, {refused}")
    detail = f" ({result['echo_canceller_detail']})" if "echo_canceller_detail" in result else ""
    click.echo(f"echo canceller: {result.get('echo_canceller', 'unknown')}{detail}")
    if "camera" in result:
        click.echo(f"camera: {result['camera']}")
    push = result.get("push")
    if push is not None:
        phones = ", ".join(push["subscribed"]) or "none"
        refused = push["refused_registrations"]
        click.echo(f"web push: phones subscribed: {phones}; registrations refused: {refused}")
        for sent in push["last_pushes"]:
            click.echo(f"  push to {sent['to']}: {sent['outcome']} ({sent['status'] or '-'})")
    for alarm in result.get("alarms", []):
        since = time.strftime("%Y-%m-%d %H:%M", time.localtime(alarm["since"]))
        click.echo(f"ALARM {alarm['kind']} at {alarm['door']} since {since}")
    rtsp = result.get("rtsp")
    if rtsp is not None:
        why = rtsp["failure"] or "starting"
        state = "listening" if rtsp["listening"] else f"NOT listening ({why})"
        click.echo(f"rtsp: {rtsp['url']}, {state}, clients {rtsp['clients']}")
    access = result.get("access")
    if access is not None:
        _echo_access(access)
    for last in result.get("last_calls", []):
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(last["started_at"]))
        arrow = "<-" if last["direction"] == "in" else "->"
        missed = " MISSED" if last["missed"] else ""
        click.echo(f"  {when} {arrow} {last['peer']} {last['status']}{missed}")
    for name, value in sorted(result.get("hardware", {}).items()):
        click.echo(f"  {name}: {value}")
    if result.get("pending_restart"):
        pending = ", ".join(result["pending_restart"])
        click.echo(f"waiting until no call is in progress to apply: {pending}")


def _echo_access(access: dict[str, Any]) -> None:
    """The entrance's lines of ``callbox status`` (codes and cards, lockouts, last attempts)."""
    if not access["enabled"]:
        click.echo("access codes and cards: off")
        return
    locks = [
        f"{what} LOCKED until {access[key]}"
        for what, key in (("keypad", "keypad_locked_until"), ("card readers", "cards_locked_until"))
        if access.get(key)
    ]
    click.echo(
        f"access codes and cards: {access['entries']} entries; {', '.join(locks) or 'not locked'}"
    )
    if access.get("problem"):
        click.echo(f"  ACCESS LIST UNUSABLE: {access['problem']}")
    for attempt in access.get("last_attempts", []):
        outcome = "granted" if attempt["granted"] else f"refused ({attempt['reason']})"
        who = attempt["who"] or attempt.get("card", "")
        click.echo(
            f"  {attempt['at']} {attempt['kind']} at {attempt['via']}: {outcome} {who}".rstrip()
        )


@click.command("call")
@click.argument("address")
@click.option("--video", is_flag=True, help="A video call (default: audio only).")
@control_option
def call(address: str, video: bool, control_path: Path | None) -> None:
    """Call ADDRESS from the running daemon."""
    result = ask_daemon(control_path, "call", address=address, video=video)
    click.echo(f"calling {address}: {result['status']} (call {result['call_id']})")


@click.command()
@control_option
def hangup(control_path: Path | None) -> None:
    """End the running daemon's active call."""
    result = ask_daemon(control_path, "hangup")
    click.echo(f"call ended: {result['status']}")


@click.command()
@config_option
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 10000))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def log(config_path: Path, limit: int, as_json: bool) -> None:
    """The call log, newest first."""
    state = Path(load(config_path).state_dir)
    records = read_call_log(state / "calls.sqlite", limit)
    if not records and not as_json:
        click.echo("no calls yet")
    for record in records:
        if as_json:
            click.echo(json.dumps({**record.__dict__, "duration_s": record.duration_s}))
            continue
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.started_at))
        arrow = "<-" if record.direction == "in" else "->"
        missed = " MISSED" if record.missed else ""
        note = f"  ({record.note})" if record.note else ""
        note = f"  [{record.bell}]{note}" if record.bell else note
        click.echo(
            f"{when} {arrow} {record.peer_name or record.peer:<16} {record.status:<12}"
            f" {record.duration_s:6.0f} s{missed}{note}"
        )


# keys -------------------------------------------------------------------------------------------


@click.group()
@config_option
@click.pass_context
def keys(ctx: click.Context, config_path: Path) -> None:
    """This endpoint's keys, trusting a peer's keys, safety codes, pairing browser phones."""
    ctx.obj = config_path


def own_keys(config_path: Path) -> tuple[CallboxConfig, PublicKeys]:
    """The configuration and this unit's public keys (a missing key ends the command)."""
    cfg = load(config_path)
    return cfg, public_keys_of(Path(cfg.state_dir))


def key_text(keys: PublicKeys) -> str:
    """The one-word form ``keys trust`` accepts: ``<sign>.<dh>`` in b64u."""
    as_json = keys.to_json()
    return f"{as_json['sign']}.{as_json['dh']}"


def parse_key_text(text: str) -> PublicKeys:
    """``<sign>.<dh>`` (as ``keys show`` prints) or the JSON ``{"sign": …, "dh": …}``."""
    try:
        if text.lstrip().startswith("{"):
            return PublicKeys.from_json(json.loads(text))
        sign, _, dh = text.partition(".")
        return PublicKeys.from_json({"sign": sign, "dh": dh})
    except (ValueError, TypeError, SignalingError) as err:
        raise click.BadParameter(f"not a public key pair: {err}", param_hint="KEY") from err


@keys.command("show")
@click.pass_obj
def keys_show(config_path: Path) -> None:
    """Print this endpoint's public keys and fingerprint (give them to the peers' admins)."""
    cfg, own = own_keys(config_path)
    click.echo(f"address:     {cfg.address}")
    click.echo(f"fingerprint: {own.fingerprint()}")
    click.echo(f"key:         {key_text(own)}")


@keys.command("safety-code")
@click.argument("address")
@click.pass_obj
def keys_safety_code(config_path: Path, address: str) -> None:
    """The code both sides read out to check they pinned each other's real keys."""
    cfg, own = own_keys(config_path)
    contact = next((c for c in cfg.contacts() if c.address == address), None)
    if contact is None:
        fail(f"{address!r} is not a contact in {config_path}")
    click.echo(safety_number(own, contact.keys))


# selftest, relay-off ----------------------------------------------------------------------------


@click.command()
@config_option
@control_option
@click.option("--json", "as_json", is_flag=True, help="One JSON list.")
def selftest(config_path: Path, control_path: Path | None, as_json: bool) -> None:
    """Check every configured device, file and permission; exit 1 when one fails."""
    from device.daemon import Check, selftest_stopped_daemon  # the board: only here (start-up)

    cfg = load(config_path)
    try:
        result = request_sync(control_path or default_control_path(), "selftest")
        checks = [Check(**c) for c in result["checks"]]
    except DaemonNotRunningError:
        checks = asyncio.run(selftest_stopped_daemon(cfg))
    if as_json:
        click.echo(json.dumps([c.as_json() for c in checks], indent=2))
    else:
        for check in checks:
            click.echo(f"{'ok  ' if check.ok else 'FAIL'} {check.name}: {check.detail}")
    sys.exit(0 if all(c.ok for c in checks) else 1)


@click.command("safe-state")
@config_option
def safe_state(config_path: Path) -> None:
    """Door relay inactive, screen on: what systemd runs after the daemon stops or crashes.

    A file that does not validate any more still names the relay: its ``[relay]`` table is
    used on its own, since the door must not stay open because of an unrelated typo.
    """
    try:
        cfg = ConfigStore(config_path).load()
        board, factory, relay = str(cfg.board), str(cfg.gpio.pin_factory), cfg.io_spec().relay
        backlight = cfg.io_spec().backlight
    except ConfigError as err:
        fallback = _relay_of_invalid_file(config_path)
        if fallback is None:
            fail(str(err), 2)
        click.echo(f"callbox: {err}\nusing its [relay] and [backlight] tables alone", err=True)
        board, factory, relay, backlight = fallback
    if board == "sim":
        click.echo("simulated board: no door relay or screen to make safe")
        return
    problems = []
    if relay is None:
        click.echo("no door relay configured: nothing to release")
    else:
        try:
            asyncio.run(_release_relay(factory, relay))
            click.echo(f"door relay on {relay.pin} inactive")
        except HalError as err:
            problems.append(f"cannot release the door relay on {relay.pin}: {err}")
    if backlight is not None:
        try:
            asyncio.run(_screen_on(backlight))
            click.echo("screen on")
        except HalError as err:
            problems.append(f"cannot switch the screen on: {err}")
    if problems:
        fail("\n".join(problems))


def _relay_of_invalid_file(
    config_path: Path,
) -> tuple[str, str, RelaySpec | None, BacklightSpec | None] | None:
    """(board, pin factory, relay, backlight) as far as an invalid file says them.

    None if it cannot.
    """
    try:
        data = tomllib.loads(config_path.read_text(encoding="utf-8"))
        table = data.get("relay")
        gpio = data.get("gpio", {})
        relay = (
            RelaySpec(pin=table["pin"], active_high=bool(table.get("active_high", True)))
            if isinstance(table, dict)
            else None
        )
        screen = data.get("backlight")
        backlight = (
            BacklightSpec(
                sysfs_root=str(screen.get("sysfs_root", "/sys/class/backlight")),
                device=str(screen["device"]) if screen.get("device") else None,
            )
            if isinstance(screen, dict)
            else None
        )
        board = str(data.get("board", "pi"))
        return board, str(gpio.get("pin_factory", "default")), relay, backlight
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, KeyError, TypeError) as err:
        click.echo(f"callbox: cannot read the relay from {config_path}: {err}", err=True)
    except (AttributeError, HalError) as err:
        click.echo(f"callbox: the relay in {config_path} is unusable: {err}", err=True)
    return None


async def _screen_on(spec: BacklightSpec) -> None:
    backlight = SysfsBacklight(spec)
    await backlight.start()
    try:
        await backlight.set_power(True)
    finally:
        await backlight.close()


async def _release_relay(pin_factory: str, relay: RelaySpec) -> None:
    io = build_io(IoSpec(pin_factory=pin_factory, relay=relay))
    await io.start()  # the relay is built inactive and released on close
    await io.close()


__all__ = ["register"]
