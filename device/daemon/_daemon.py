"""`callbox run`: the daemon under systemd (Type=notify, watchdog, SIGHUP reload, SIGTERM).

- READY=1 once the endpoint is on the broker; WATCHDOG=1 while it is healthy;
- SIGHUP (or ``reload`` on the control socket, which ``callbox config set`` sends) reads
  the file again: a bad file is refused, logged with its file, key and reason, and the
  running configuration stays in force; a good one is applied without dropping a call
  that the change does not touch;
- SIGTERM/SIGINT end the active call, release the relay and every device, and exit 0.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path
from typing import Any

from device.config import CallboxConfig, ConfigError, load_config
from device.daemon._app import DeviceApp
from device.daemon._control import ControlError, ControlServer, Handler
from device.daemon._sdnotify import SystemdNotifier
from device.daemon._selftest import run_selftest
from device.firstboot import first_boot_error
from hal.gpio_specs import ButtonRole
from hal.inputs import GpioButton
from hal.io_devices import IoDevices
from hal.proximity import GpioProximitySensor
from hal.switches import GpioSwitch
from services.callapi import CallError
from services.intercom.calllog import CallLogError, read_call_log
from services.media.ice import IcePolicy
from services.signaling.identity import PublicKeys

_log = logging.getLogger(__name__)

LOOK_UP_TIMEOUT_S = 2.0
"""How long `callbox keys show` waits for the retained profile of an address not yet followed."""
LAST_CALLS = 5
"""How many calls ``callbox status`` lists."""


class Daemon:
    """The running ``callbox run``: the app, its control socket and systemd plumbing."""

    def __init__(
        self,
        config_path: Path,
        config: CallboxConfig,
        control_path: Path,
        *,
        ice: IcePolicy | None = None,
        notifier: SystemdNotifier | None = None,
    ) -> None:
        self.config_path = config_path
        self.app = DeviceApp(config, ice=ice)
        self.control = ControlServer(control_path, self._handlers())
        self.notifier = notifier or SystemdNotifier()
        self.stopping = asyncio.Event()
        self._reloading = asyncio.Lock()
        self._watchdog: asyncio.Task[None] | None = None
        self._reload_tasks: set[asyncio.Task[list[str]]] = set()

    def _handlers(self) -> dict[str, Handler]:
        return {
            "status": self._status,
            "reload": self._reload_request,
            "call": self._call,
            "hangup": self._hangup,
            "press": self._press,
            "selftest": self._selftest,
            "peer_keys": self._peer_keys,
        }

    async def run(self) -> None:
        """Start, serve until SIGTERM/SIGINT, stop cleanly.

        The control socket comes first: a second daemon is refused there before it logs in
        to the broker under the running one's name (which would push the running one off).
        The signal handlers come before the app, so a SIGTERM during start-up still stops
        cleanly and a SIGHUP reloads once the app has started.
        """
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.stopping.set)
        loop.add_signal_handler(signal.SIGINT, self.stopping.set)
        loop.add_signal_handler(signal.SIGHUP, self._sighup)
        try:
            await self.control.start()
            try:
                async with self._reloading:
                    await self.app.start()
                self.notifier.ready(f"{self.app.config.role} {self.app.config.address} running")
                self._watchdog = asyncio.create_task(self.notifier.run_watchdog(self._healthy))
                await self.stopping.wait()
                _log.info("stopping")
            finally:
                self.notifier.stopping()
                if self._watchdog is not None:
                    self._watchdog.cancel()
                await self.control.close()
                await self.app.close()
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(signum)

    def _healthy(self) -> bool:
        return self.app.endpoint is not None and not self.stopping.is_set()

    def _sighup(self) -> None:
        if self.stopping.is_set():
            _log.info("SIGHUP ignored: stopping")
            return
        task = asyncio.get_running_loop().create_task(self.reload())
        self._reload_tasks.add(task)  # a reference until it is done
        task.add_done_callback(self._reload_done)

    def _reload_done(self, task: asyncio.Task[list[str]]) -> None:
        self._reload_tasks.discard(task)
        if not task.cancelled():
            task.exception()  # collected: reload() logged it, with its reason, already

    async def reload(self) -> list[str]:
        """Read the config file again and apply it; ConfigError leaves the running one.

        systemd hears RELOADING=1 and then READY=1 whatever the outcome, so it never waits
        for a reload that failed.
        """
        async with self._reloading:
            self.notifier.reloading()
            status = f"{self.app.config.role} {self.app.config.address} running"
            try:
                try:
                    new = await asyncio.to_thread(load_config, self.config_path)
                except ConfigError as err:
                    _log.error("reload refused, the running configuration stays:\n%s", err)
                    status = f"config refused: {err}"
                    raise
                changed = await self._apply(new)
                status = f"{new.role} {new.address} running"
                return changed
            finally:
                self.notifier.ready(status)

    async def _apply(self, new: CallboxConfig) -> list[str]:
        logging.getLogger().setLevel(new.logging.level)
        try:
            changed = await self.app.apply(new)
        except Exception:
            _log.exception("applying the new configuration of %s failed", self.config_path)
            raise
        pending = self.app.pending_restart
        _log.info(
            "reloaded %s: changed %s%s",
            self.config_path,
            ", ".join(changed) or "nothing",
            f" ({', '.join(pending)}: rebuilt once no call is in progress)" if pending else "",
        )
        return changed

    # control commands ---------------------------------------------------------------------------

    async def _status(self, args: dict[str, Any]) -> dict[str, Any]:
        result = self.app.status()
        result["first_boot_error"] = first_boot_error()
        log = Path(self.app.config.state_dir) / "calls.sqlite"
        try:
            records = await asyncio.to_thread(read_call_log, log, LAST_CALLS)
        except CallLogError as err:
            _log.error("status: %s", err)
            records = []
        result["last_calls"] = [
            {
                "peer": r.peer_name or r.peer,
                "direction": r.direction,
                "started_at": r.started_at,
                "status": r.status,
                "missed": r.missed,
                "duration_s": round(r.duration_s, 1),
            }
            for r in records
        ]
        return result

    async def _reload_request(self, args: dict[str, Any]) -> dict[str, Any]:
        try:
            changed = await self.reload()
        except ConfigError as err:
            raise ControlError(str(err)) from err
        return {"changed": changed, "pending_restart": self.app.pending_restart}

    async def _call(self, args: dict[str, Any]) -> dict[str, Any]:
        endpoint = self._endpoint()
        address = args.get("address")
        if not isinstance(address, str) or not address:
            raise ControlError("call: 'address' must be a non-empty string")
        try:
            call = await endpoint.service.place_call(address, bool(args.get("video", False)))
        except CallError as err:
            raise ControlError(str(err)) from err
        if call is None:
            raise ControlError("a call is already in progress")
        return {"call_id": call.call_id, "status": call.status.name}

    async def _hangup(self, args: dict[str, Any]) -> dict[str, Any]:
        call = self._endpoint().calls.active_call
        if call is None or call.is_ended():
            raise ControlError("no call in progress")
        await call.hangup()
        return {"status": call.status.name}

    async def _press(self, args: dict[str, Any]) -> dict[str, Any]:
        """Simulated board only: press a button (``role``) or move the proximity sensor."""
        endpoint = self._endpoint()
        if self.app.config.board != "sim":
            raise ControlError("press works on the simulated board only")
        role = args.get("role")
        if not isinstance(role, str):
            raise ControlError("press: 'role' must be a button role or 'near'/'far'")
        await press_sim_input(endpoint.board.io, role)
        return {"pressed": role}

    async def _selftest(self, args: dict[str, Any]) -> dict[str, Any]:
        """The checks on the devices this daemon holds (media devices are in use: not opened)."""
        endpoint = self._endpoint()
        checks = await run_selftest(self.app.config, endpoint.board, media=False)
        return {"checks": [check.as_json() for check in checks]}

    async def _peer_keys(self, args: dict[str, Any]) -> dict[str, Any]:
        """The keys, name and role that ``address``'s retained profile advertises.

        None when this endpoint has seen no profile of it. ``callbox keys trust ADDRESS
        FINGERPRINT`` pins them when their fingerprint is the one a person read off the peer.
        """
        address = args.get("address")
        if not isinstance(address, str) or not address:
            raise ControlError("peer_keys: 'address' must be a non-empty string")
        signaling = self._endpoint().signaling
        profile = signaling.profiles.get(address)
        if profile is None:  # not a contact: its profile is not followed until asked for
            profile = await signaling.look_up(address, timeout=LOOK_UP_TIMEOUT_S)
        if profile is None:
            return {"address": address, "profile": None, "online": False}
        keys = PublicKeys.from_json(profile["keys"])  # checked when the profile arrived
        name, role = profile.get("name"), profile.get("role")
        return {
            "address": address,
            "profile": {
                "keys": keys.to_json(),
                "fingerprint": keys.fingerprint(),
                "name": name if isinstance(name, str) else "",
                "role": role if isinstance(role, str) else "",
            },
            "online": signaling.is_online(address),
        }

    def _endpoint(self) -> Any:
        endpoint = self.app.endpoint
        if endpoint is None:
            raise ControlError("the endpoint is restarting; try again")
        return endpoint


SWITCH_ROLES = {
    "door_open": ("door_contact", True),
    "door_closed": ("door_contact", False),
    "tampered": ("tamper", True),
    "untampered": ("tamper", False),
}
"""The door contact's and tamper switch's levels ``press`` sets: role -> (switch, active)."""


async def press_sim_input(io: IoDevices, role: str) -> None:
    """Act on a MockFactory pin as a person would.

    Press and release a button for twice its minimum press, put the proximity sensor
    ``near``/``far``, the door contact ``door_open``/``door_closed`` or the tamper switch
    ``tampered``/``untampered``; ControlError when the simulated board has no such input.
    """
    if role in ("near", "far"):
        sensor = io.proximity
        if not isinstance(sensor, GpioProximitySensor):
            raise ControlError("press: this board has no GPIO proximity sensor")
        low = sensor.spec.near_when_low == (role == "near")
        _drive(io.pin_factory.pin(sensor.spec.pin), low)
        return
    if role in SWITCH_ROLES:
        switch_name, active = SWITCH_ROLES[role]
        switch = getattr(io, switch_name)
        if not isinstance(switch, GpioSwitch):
            raise ControlError(f"press: this board has no GPIO {switch_name.replace('_', ' ')}")
        _drive(io.pin_factory.pin(switch.spec.pin), active != switch.spec.active_high)
        return
    try:
        button = io.button(ButtonRole(role))
    except ValueError:
        known = ", ".join([*(r.value for r in ButtonRole), "near", "far", *SWITCH_ROLES])
        raise ControlError(f"press: no input {role!r} (known: {known})") from None
    if not isinstance(button, GpioButton):
        raise ControlError(f"press: this board has no {role} button")
    pin = io.pin_factory.pin(button.spec.pin)
    pressed_low = button.spec.pull_up  # to GND against the pull-up: pressed is low
    _drive(pin, pressed_low)
    await asyncio.sleep(2 * button.spec.min_press_ms / 1000.0)  # the press itself
    _drive(pin, not pressed_low)


def _drive(pin: Any, low: bool) -> None:
    if low:
        pin.drive_low()
    else:
        pin.drive_high()


async def run_daemon(config_path: Path, control_path: Path, ice: IcePolicy | None = None) -> None:
    """Load the configuration (ConfigError when it is bad) and run until told to stop."""
    config = await asyncio.to_thread(load_config, config_path)
    logging.getLogger().setLevel(config.logging.level)
    await Daemon(config_path, config, control_path, ice=ice).run()
