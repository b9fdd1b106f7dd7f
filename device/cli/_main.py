"""The ``callbox`` command line."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from device.cli._access import register as register_access
from device.cli._admin import fail, keys, register
from device.cli._pairing import register as register_pairing
from device.cli._push import register as register_push
from device.cli._site import register as register_site
from device.cli._siteca import broker_tls
from device.cli._siteca import register as register_siteca
from device.cli._system import register as register_system
from device.cli._turn import register as register_turn
from device.cli._web import parse_listen
from device.cli._web import register as register_web
from device.config import ConfigError, load_config
from device.daemon import DaemonNotRunningError, SystemdNotifier
from hal.errors import CallboxError
from services.signaling.broker import (
    ADMIN_PASSWORD_FILE,
    PID_FILE,
    BrokerFiles,
    BrokerSettings,
    MosquittoBroker,
    TlsFiles,
    credential_addresses,
    write_broker_config,
    write_private,
)

if TYPE_CHECKING:
    from device.simulator import PanelTimeline, PinTimeline


def exit_code(err: CallboxError) -> int:
    """The exit status for an error that reached the CLI's edge.

    2 a refused configuration, 3 no daemon to talk to, 1 anything else.
    """
    if isinstance(err, ConfigError):
        return 2
    if isinstance(err, DaemonNotRunningError):
        return 3
    return 1


class CallboxGroup(click.Group):
    """The command group whose invocation is the CLI's one edge for callbox's errors.

    Any `CallboxError` a command lets through is printed as ``callbox: <message>`` on
    stderr with `exit_code`, so commands translate only what they add context to.
    """

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; a callbox error ends it with its message and exit status."""
        try:
            return super().invoke(ctx)
        except CallboxError as err:
            fail(str(err), exit_code(err))


@click.group(cls=CallboxGroup)
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def main(verbose: int) -> None:
    """callbox: the firmware of a Raspberry Pi video intercom."""
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)]
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if verbose < 2:
        for noisy in ("aioice", "aiortc"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


@main.command()
@click.option(
    "--scripted", is_flag=True, help="Run the scripted doorbell call without a browser and exit."
)
@click.option(
    "--json", "as_json", is_flag=True, help="With --scripted: the timeline as one JSON object."
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help="The simulator page's port on 127.0.0.1 (0: a free one).",
)
def demo(scripted: bool, as_json: bool, port: int) -> None:
    """A broker, a door station and an indoor unit on simulated boards.

    Without --scripted: the interactive simulator, a page on 127.0.0.1 showing both units
    (screens, buttons, LEDs, door relay, audio levels) until Ctrl-C. With --scripted: one
    doorbell call driven through the GPIO pins, timed, then exit (1 if a step failed).
    """
    if not scripted:
        if as_json:
            raise click.UsageError("--json goes with --scripted")
        _interactive_demo(port)
        return
    timeline, panel = asyncio.run(_scripted_demo(quiet=as_json))
    if as_json:
        click.echo(json.dumps({**timeline.as_json(), "panel": panel and panel.as_json()}))
    else:
        _print_timeline(timeline, panel)
    sys.exit(0 if timeline.ok and panel is not None and panel.ok else 1)


def _interactive_demo(port: int) -> None:
    from device.simulator import run_simulator  # a whole site: loaded by `demo` only

    asyncio.run(run_simulator(port=port, echo=click.echo))


async def _scripted_demo(quiet: bool) -> tuple[PinTimeline, PanelTimeline | None]:
    """The doorbell call, then (when it went well) the entrance-panel act."""
    from device.simulator import (
        Unit,
        enroll_demo_resident,
        panel_toml,
        run_panel_act,
        run_pin_doorbell_call,
        start_intercom_site,
    )

    with tempfile.TemporaryDirectory(prefix="callbox-demo-") as directory:
        if not quiet:
            click.echo(
                "starting a broker, a door station with an entrance panel and an indoor unit "
                "(simulated boards, GPIO on gpiozero mock pins)"
            )
        await asyncio.to_thread(enroll_demo_resident, Path(directory) / "door")
        door = Unit("door", "door", extra_toml=panel_toml("flat"))
        site = await start_intercom_site(
            Path(directory), [door, Unit("flat", "indoor")], site="demo"
        )
        try:
            if not quiet:
                click.echo(
                    "pressing the doorbell pin, lifting the handset, pressing door release, "
                    "hanging up"
                )
            call = await run_pin_doorbell_call(site, "door", "flat")
            if not call.ok:
                return call, None
            if not quiet:
                click.echo(
                    "entrance panel: dialling 1# on the keypad, then the resident's card opens "
                    "the door"
                )
            return call, await run_panel_act(site, "door", "flat")
        finally:
            await site.close()


def _print_timeline(timeline: PinTimeline, panel: PanelTimeline | None) -> None:
    rows = [
        ("doorbell pin -> indoor unit ringing", timeline.press_to_ringing_ms),
        ("doorbell pin -> first preview frame", timeline.press_to_preview_ms),
        ("handset lifted -> two-way audio", timeline.answer_to_audio_ms),
        ("door-release pin -> relay on", timeline.release_to_relay_ms),
        ("relay pulse length", timeline.relay_pulse_ms),
        ("handset on hook -> both idle", timeline.hangup_to_idle_ms),
    ]
    click.echo("timeline (pin times include the 50 ms minimum press)")
    for label, value in rows:
        shown = f"{value:8.1f} ms" if value is not None else "  failed"
        click.echo(f"  {label:<40} {shown}")
    if timeline.relay_pulse_configured_ms is not None:
        click.echo(f"  (relay pulse configured: {timeline.relay_pulse_configured_ms:.0f} ms)")
    if panel is not None:
        click.echo(f"entrance panel (bell shown: {panel.bell or '?'!r})")
        for label, value in (
            ("keypad 1# -> indoor unit ringing", panel.dial_to_ringing_ms),
            ("resident's card -> relay on", panel.card_to_relay_ms),
            ("relay on -> ring stopped (door opened)", panel.relay_to_ring_stop_ms),
        ):
            shown = f"{value:8.1f} ms" if value is not None else "  failed"
            click.echo(f"  {label:<40} {shown}")
    failed = timeline.error or (panel.error if panel is not None else "")
    ok = timeline.ok and panel is not None and panel.ok
    click.echo("result: " + ("ok" if ok else f"FAILED: {failed}"))
    click.echo(
        "see and drive the same site in a browser (screens, buttons, relay): "
        "`make demo ARGS=` or `callbox demo` opens the interactive simulator"
    )


@main.command()
@click.option(
    "--site-config",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Take the site, the endpoints (this unit and its contacts, plus any --endpoint) and "
    "the ports from this callbox.toml (the unit that hosts the site broker).",
)
@click.option("--site", help="The site name (topic prefix).")
@click.option(
    "--config",
    "config_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for the generated mosquitto configuration and credentials.",
)
@click.option(
    "--listen",
    help="MQTT HOST:PORT [default: 127.0.0.1:1883; with --site-config, "
    "0.0.0.0 and the config's broker.port].",
)
@click.option(
    "--websockets-port",
    type=int,
    help="[default: 9001; with --site-config, the config's broker.websockets_port, 0 = none]",
)
@click.option("--endpoint", "endpoints", multiple=True, help="An address (repeat).")
@click.option(
    "--tls/--no-tls",
    default=None,
    help="TLS with the site CA's certificate (made in <--config>/tls/ when missing) [default: "
    "on unless --listen is loopback; plain MQTT beyond loopback is refused].",
)
@click.option(
    "--tls-name",
    "tls_names",
    multiple=True,
    help="Another name or address units and phones reach the broker by, for its certificate "
    "(repeat) [the host name, <host name>.local and this machine's addresses are always in].",
)
@click.option(
    "--tls-cert", type=click.Path(path_type=Path), help="A PEM certificate of your own instead."
)
@click.option("--tls-key", type=click.Path(path_type=Path), help="Its PEM private key.")
@click.option("--tls-ca", type=click.Path(path_type=Path), help="Its PEM CA bundle.")
@click.option("--generate-only", is_flag=True, help="Write the configuration, do not run.")
def broker(
    site_config: Path | None,
    site: str | None,
    config_dir: Path,
    listen: str | None,
    websockets_port: int | None,
    endpoints: tuple[str, ...],
    tls: bool | None,
    tls_names: tuple[str, ...],
    tls_cert: Path | None,
    tls_key: Path | None,
    tls_ca: Path | None,
    generate_only: bool,
) -> None:
    """Generate the site broker's mosquitto configuration and run mosquitto in the foreground.

    Every address with a credentials file in the --config directory (a browser phone paired
    with `callbox keys pair-web`) keeps its account. SIGHUP (`systemctl reload
    callbox-broker`) writes the configuration again and makes mosquitto re-read its
    passwords and ACL.

    Every listener beyond loopback speaks TLS: with the site CA's broker certificate (see
    `callbox ca`), or with --tls-cert/--tls-key.
    """
    if (tls_cert is None) != (tls_key is None):
        raise click.BadParameter("--tls-cert and --tls-key go together")
    listen_host = parse_listen(listen)[0] if listen else ("0.0.0.0" if site_config else "127.0.0.1")
    tls_files = (
        TlsFiles(tls_cert, tls_key, tls_ca)
        if tls_cert and tls_key
        else broker_tls(config_dir, listen_host, tls, tls_names)
    )

    def generate() -> tuple[BrokerFiles, BrokerSettings]:
        """The settings the options and files say now, written to ``config_dir``."""
        named_site, named, address = site, endpoints, listen
        ws_port = websockets_port
        if site_config is not None:
            named_site, from_config, address, ws_port = _from_site_config(
                site_config, listen, websockets_port
            )
            named = (*from_config, *endpoints)  # + browsers, other units
        if not named_site or not named:
            raise click.UsageError("give --site and --endpoint, or --site-config")
        host, port = parse_listen(address or "127.0.0.1:1883")
        try:
            settings = BrokerSettings(
                site=named_site,
                endpoints=tuple(dict.fromkeys((*named, *credential_addresses(config_dir)))),
                host=host,
                port=port,
                websockets_port=9001 if ws_port is None else (ws_port or None),
                tls=tls_files,
            )
            return write_broker_config(settings, config_dir), settings
        except OSError as err:
            raise click.ClickException(f"cannot write the broker configuration: {err}") from err

    files, settings = generate()
    click.echo(f"configuration written to {files.config}")
    click.echo(f"  {settings.sizing()}")
    for address in settings.endpoints:
        click.echo(f"  password of {address}: {files.password_file(address)}")
    click.echo(
        f"  password of the site admin (`callbox site publish`): {config_dir / ADMIN_PASSWORD_FILE}"
    )
    if generate_only:
        return
    sys.exit(asyncio.run(_run_broker(files, settings, generate)))


def _from_site_config(
    path: Path, listen: str | None, websockets_port: int | None
) -> tuple[str, tuple[str, ...], str, int]:
    try:
        config = load_config(path)
    except ConfigError as err:
        raise click.ClickException(str(err)) from err
    endpoints = (config.address, *(c.address for c in config.contacts()))
    listen = listen or f"0.0.0.0:{config.broker.port}"
    ws = config.broker.websockets_port if websockets_port is None else websockets_port
    return config.site, endpoints, listen, ws


async def _run_broker(
    files: BrokerFiles,
    settings: BrokerSettings,
    generate: Callable[[], tuple[BrokerFiles, BrokerSettings]],
) -> int:
    process = MosquittoBroker(files, settings, log_to_terminal=True)
    await process.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGHUP, _reload_broker, process, generate)
    pid_file = files.directory / PID_FILE  # once SIGHUP reloads: `callbox keys pair-web` sends it
    write_private(pid_file, f"{os.getpid()}\n")
    click.echo(f"mosquitto listening on {settings.host}:{settings.port}")
    # Type=notify: units ordered after the broker start once it takes logins with the
    # credentials written above (callbox.service reads its own password file).
    SystemdNotifier().ready(f"mosquitto listening on {settings.host}:{settings.port}")
    waiting = asyncio.create_task(process.wait())
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({waiting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        loop.remove_signal_handler(signal.SIGHUP)
        stopping.cancel()
        await process.close()  # SIGTERM to mosquitto, then wait for it
        with contextlib.suppress(OSError):
            if pid_file.read_text().strip() == str(os.getpid()):
                pid_file.unlink()
    if waiting.done() and not stop.is_set():
        code = waiting.result()
        click.echo(f"mosquitto exited with code {code}", err=True)
        return code
    waiting.cancel()
    return 0


def _reload_broker(
    process: MosquittoBroker, generate: Callable[[], tuple[BrokerFiles, BrokerSettings]]
) -> None:
    """SIGHUP: write the configuration again and make mosquitto re-read its passwords and ACL.

    Writing it again takes in new contacts and paired phones. A configuration that cannot be written
    keeps the old one.
    """
    try:
        files, settings = generate()
        process.reload()
    except (click.ClickException, CallboxError) as err:
        message = err.format_message() if isinstance(err, click.ClickException) else str(err)
        click.echo(f"reload refused, the broker keeps its configuration: {message}", err=True)
        return
    if (settings.host, settings.port, settings.websockets_port) != (
        process.settings.host,
        process.settings.port,
        process.settings.websockets_port,
    ) or settings.tls != process.settings.tls:
        click.echo("listener changes apply at the next restart of the broker", err=True)
    click.echo(f"reloaded {files.config}: accounts for {', '.join(settings.endpoints)}")
    if settings.connection_cap != process.settings.connection_cap:
        click.echo(
            f"{settings.sizing()}; the connection caps apply at the next restart of the broker",
            err=True,
        )


register(main)
register_pairing(keys)
register_web(main)
register_siteca(main)
register_site(main)
register_push(main)
register_system(main)
register_turn(main)
register_access(main)
