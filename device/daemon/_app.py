"""The device app: one endpoint built from ``callbox.toml`` (the composition root of `callbox run`).

Builds the board (simulated or GPIO) from the configuration, the identity from the state
directory, signaling, media, the Call API and the call service for the role, and applies
a new configuration without dropping a call that the change does not touch.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from device.config import (
    Apply,
    CallboxConfig,
    ConfigError,
    apply_of,
    load_or_create_identity,
    panel_settings,
)
from device.daemon._compose import compose_calls
from device.daemon._entrance import EntrancePart, entrance_part
from device.daemon._homeassistant import HomeAssistantPart
from device.daemon._rtsp import rtsp_service
from hal.board import Board, build_sim_board, build_sim_io
from hal.board import build_board as build_named_board
from hal.errors import HalError
from hal.gpio_specs import GpioProximitySpec, IoSpec, SwitchSpec
from hal.io_devices import IoDevices, build_io, sim_io_spec
from hal.media_types import AudioFormat
from services.callapi import Calls
from services.intercom.calllog import CallLog
from services.intercom.dnd import ManualDnd
from services.intercom.door import DoorStation
from services.intercom.indoor import IndoorUnit
from services.intercom.service import IntercomService
from services.intercom.settings import IntercomSettings
from services.intercom.snapshots import SnapshotStore
from services.media.aec import make_echo_canceller
from services.media.ice import IcePolicy
from services.push.service import PushService, PushSettings
from services.push.store import STORE_FILE
from services.push.vapid import load_vapid_key
from services.rtsp import RtspService
from services.signaling.contacts import ContactBook
from services.signaling.directory import STATE_FILE as DIRECTORY_STATE_FILE
from services.signaling.directory import SiteDirectory, admin_public_key
from services.signaling.endpoint import SignalingEndpoint
from services.signaling.replay import ReplayGuard
from services.signaling.transport import BrokerAddress, mqtt_transport
from services.tasks import cancel_and_wait
from services.ui import DefaultCallUi

_log = logging.getLogger(__name__)

SIM_DISPLAY_SIZE = (800, 480)
"""The sim board's screen when ``[display]`` gives no size."""
_REBUILDS = (Apply.DEVICES, Apply.ENDPOINT)
"""The ways of applying a change that rebuild parts (`device.config.apply_of`); every other
way (live, first boot) applies at once or not at all here."""


REPLAY_FILE = "replay.json"
"""The endpoint's replay memory under the state directory (services/signaling/replay.py)."""


def intercom_settings(config: CallboxConfig) -> IntercomSettings:
    """The call service's settings from the configuration."""
    from services.intercom.dnd import DndSchedule
    from services.intercom.settings import AlarmSettings

    contact = config.door_contact
    return IntercomSettings(
        role=config.role,
        targets=tuple(config.targets),
        video=config.call.video,
        auto_answer_monitor=config.call.auto_answer_monitor,
        unlock_per_minute=config.call.unlock_per_minute,
        dnd=DndSchedule.from_config(
            config.dnd.enabled, list(config.dnd.schedule), list(config.dnd.days)
        ),
        alarms=AlarmSettings(left_open_s=contact.left_open_s, forced_grace_s=contact.forced_grace_s)
        if contact is not None
        else AlarmSettings(),
        doorbell_label=config.name,
        panel=panel_settings(config),
    )


async def site_directory(config: CallboxConfig, signaling: SignalingEndpoint) -> None:
    """Have ``signaling`` trust the signed site directory when ``[directory]`` pins an admin key.

    The last accepted directory is restored from the state directory first (its version is the
    floor a newer one must pass, across restarts too).
    """
    if not config.directory.admin_key:
        return
    directory = SiteDirectory(
        site=config.site,
        admin_key=admin_public_key(config.directory.admin_key),
        contacts=signaling.contacts,
        state_file=Path(config.state_dir) / DIRECTORY_STATE_FILE,
        own_address=config.address,
    )
    await asyncio.to_thread(directory.load)
    signaling.use_directory(directory)


def display_size(config: CallboxConfig) -> tuple[int, int] | None:
    """The screen size ``[display]`` asks for, or None for the panel's own."""
    display = config.display
    if display is None or not (display.width and display.height):
        return None
    return display.width, display.height


def wants_display(config: CallboxConfig) -> bool:
    """An indoor unit with a screen: always on the sim board, with ``[display]`` on a Pi."""
    if config.role != "indoor":
        return False
    if config.display is None:
        return config.board == "sim"
    return config.display.enabled


def build_board(config: CallboxConfig, state_dir: Path) -> Board:
    """The board the configuration names; a sim board keeps its sysfs tree in the state dir."""
    if config.board == "sim":
        return build_sim_board(
            config.address,
            io=sim_board_io(config.io_spec()),
            sysfs_root=state_dir / "sim-sysfs",
            display_size=(display_size(config) or SIM_DISPLAY_SIZE)
            if wants_display(config)
            else None,
        )
    audio = config.audio
    speakers = {
        name: pcm
        for name, pcm in (
            ("speaker", audio.speaker),
            ("handset", audio.handset),
            ("headset", audio.headset),
        )
        if pcm
    }
    return build_named_board(
        config.board,
        name=config.address,
        io=config.io_spec(),
        speakers=speakers,
        microphone=audio.microphone or None,
        camera=config.camera.device or "picamera",
        camera_input_format=config.camera.input_format,
        display=wants_display(config),
        display_size=display_size(config),
    )


def build_board_io(config: CallboxConfig, state_dir: Path) -> IoDevices:
    """Only the GPIO devices of the configured board (a hardware-only change)."""
    if config.board == "sim":
        return build_sim_io(sim_board_io(config.io_spec()), sysfs_root=state_dir / "sim-sysfs")
    return build_io(config.io_spec())


def snapshot_store(config: CallboxConfig) -> SnapshotStore:
    """Where visitor snapshots go, and how many and how long they are kept."""
    return SnapshotStore(
        Path(config.state_dir) / "snapshots",
        keep_count=config.snapshots.keep_count,
        max_age_s=config.snapshots.max_age_days * 86400.0,
    )


def call_service(
    config: CallboxConfig,
    calls: Calls,
    io: IoDevices,
    call_log: CallLog,
    ui: DefaultCallUi | None = None,
    push: PushService | None = None,
    manual_dnd: ManualDnd | None = None,
) -> IntercomService:
    """The call service of the configured role on ``io`` (an indoor unit with its ``ui``).

    A door station gets ``push``, its Web Push (when ``[push]`` has a key); an indoor unit
    ``manual_dnd``, the do-not-disturb switched by hand (it outlives a rebuild).
    """
    settings = intercom_settings(config)
    if config.role == "door":
        return DoorStation(
            calls, io, settings, call_log=call_log, snapshots=snapshot_store(config), push=push
        )
    return IndoorUnit(
        calls,
        io,
        settings,
        call_log=call_log,
        snapshots=snapshot_store(config),
        ui=ui,
        manual_dnd=manual_dnd,
    )


async def push_service(config: CallboxConfig, calls: Calls) -> PushService | None:
    """The door station's Web Push from ``[push]`` (not started), or None without a key.

    VapidKeyError (a CallboxError naming the file) when the key cannot be used.
    """
    push = config.push
    if not push.vapid_key or config.role != "door":
        return None
    vapid = await asyncio.to_thread(load_vapid_key, Path(push.vapid_key))
    settings = PushSettings(
        vapid=vapid,
        subject=push.subject,
        hosts=push.hosts,
        max_subscriptions=push.max_subscriptions,
        timeout_s=push.timeout_s,
        store=Path(config.state_dir) / STORE_FILE,
    )
    return PushService(settings, calls.signaling, name=config.name)


def call_ui(config: CallboxConfig, calls: Calls, board: Board) -> DefaultCallUi | None:
    """The default call UI on the board's display (an indoor unit with a screen), or None."""
    if board.display is None or config.role != "indoor":
        return None
    ui = DefaultCallUi(calls, board.display, name=config.name, answer_video=config.call.video)
    calls.set_default_ui(ui)
    return ui


def sim_board_io(configured: IoSpec) -> IoSpec:
    """A simulated board has every device: what the config wires, the rest on SIM_PINS.

    A default device whose pin the config uses for something else is left out.
    """
    default = sim_io_spec()
    used = {b.pin for b in configured.buttons.values()} | {
        led.pin for led in configured.leds.values()
    }
    used |= {bell.pin for bell in configured.bells.values()}
    if configured.relay is not None:
        used.add(configured.relay.pin)
    if isinstance(configured.proximity, GpioProximitySpec):
        used.add(configured.proximity.pin)
    used |= {s.pin for s in (configured.door_contact, configured.tamper) if s is not None}
    buttons = {r: b for r, b in default.buttons.items() if b.pin not in used}
    leds = {n: led for n, led in default.leds.items() if led.pin not in used}
    relay = default.relay if default.relay is not None and default.relay.pin not in used else None
    proximity = default.proximity
    if isinstance(proximity, GpioProximitySpec) and proximity.pin in used:
        proximity = None
    return dataclasses.replace(
        configured,
        pin_factory="mock",
        buttons={**buttons, **configured.buttons},
        leds={**leds, **configured.leds},
        relay=configured.relay or relay,
        proximity=configured.proximity or proximity,
        backlight=configured.backlight or default.backlight,
        door_contact=configured.door_contact or _unless_used(default.door_contact, used),
        tamper=configured.tamper or _unless_used(default.tamper, used),
    )


def _unless_used(spec: SwitchSpec | None, used: set[str]) -> SwitchSpec | None:
    return spec if spec is not None and spec.pin not in used else None


def _dnd_now(endpoint: Endpoint) -> Callable[[], bool]:
    """Whether do-not-disturb is on now, by the endpoint's current service settings."""

    def active() -> bool:
        return endpoint.service.dnd_active(datetime.datetime.now())

    return active


@dataclass
class Endpoint:
    """The running parts of one endpoint."""

    board: Board
    signaling: SignalingEndpoint
    calls: Calls
    service: IntercomService
    call_log: CallLog
    ui: DefaultCallUi | None = None
    """The default call UI on the display (an indoor unit with a screen), else None."""
    push: PushService | None = None
    """A door station's Web Push (``[push]`` with a key), else None."""
    rtsp: RtspService | None = None
    """A door station's RTSP stream for NVRs (``[rtsp]`` enabled), else None."""
    entrance: EntrancePart | None = None
    """A door station's keypad, card readers and access codes (issue 19), else None."""


class DeviceApp:
    """One intercom endpoint, started from a configuration and reconfigured while running."""

    def __init__(
        self,
        config: CallboxConfig,
        *,
        board: Board | None = None,
        ice: IcePolicy | None = None,
    ) -> None:
        self.config = config
        self._given_board = board
        self._ice = ice
        self.endpoint: Endpoint | None = None
        self.started_at = time.time()
        self.pending_restart: list[str] = []
        self._restart_task: asyncio.Task[None] | None = None
        self.manual_dnd = ManualDnd()
        """Do-not-disturb switched by hand (Home Assistant); it outlives endpoint rebuilds."""
        self.homeassistant = HomeAssistantPart()
        """The link to Home Assistant (``[homeassistant]``), kept across endpoint rebuilds."""
        self._ha_task: asyncio.Task[None] | None = None

    @property
    def state_dir(self) -> Path:
        """Keys, call log and snapshots live here."""
        return Path(self.config.state_dir)

    async def start(self) -> None:
        """Build and start every part; on failure, close what was started and raise."""
        self.endpoint = await self._build(self.config)
        try:
            await self.homeassistant.start(self.config)
        except BaseException:
            await self.close()
            raise

    async def _build(self, config: CallboxConfig) -> Endpoint:
        state_dir = Path(config.state_dir)
        identity = await asyncio.to_thread(load_or_create_identity, state_dir)
        board = self._given_board or build_board(config, state_dir)
        contacts = ContactBook(first_use=config.first_use_pinning)
        for contact in config.contacts():
            contacts.add(contact)
        broker = config.broker
        transport = mqtt_transport(
            site=config.site,
            address=config.address,
            broker=BrokerAddress(
                host=broker.host,
                port=broker.port,
                username=broker.username or config.address,
                password=config.broker_password(),
                ca_file=Path(broker.tls_ca) if broker.tls_ca else None,
            ),
        )
        canceller = (
            make_echo_canceller(AudioFormat().sample_rate, prefer=config.audio.echo_canceller)
            if config.audio.echo_cancellation
            else None
        )
        calls = compose_calls(
            role=config.role,
            name=config.name,
            transport=transport,
            identity=identity,
            contacts=contacts,
            board=board,
            ice=self._ice or config.ice_policy(),
            defaults=config.call_properties(),
            camera=config.camera.device or None,
            echo_canceller=canceller,
            # the replay memory outlives this endpoint: a rebuild or restart keeps refusing
            # what it already accepted (docs/protocol.md, "Replay protection")
            replay=ReplayGuard(store=state_dir / REPLAY_FILE),
            turn=await asyncio.to_thread(config.turn_minter),
        )
        signaling = calls.signaling
        signaling.set_targets(config.targets)  # their presence is followed, with the contacts'
        await site_directory(config, signaling)
        call_log = CallLog(state_dir / "calls.sqlite")
        ui = call_ui(config, calls, board)
        push = await push_service(config, calls)
        service = call_service(config, calls, board.io, call_log, ui, push, self.manual_dnd)
        endpoint = Endpoint(board, signaling, calls, service, call_log, ui, push)
        if signaling.directory is not None and isinstance(service, DoorStation):
            door = service  # a new ring group: its offers are prepared anew
            signaling.directory.watch(lambda _directory: door.spawn(door.prewarm()))
        endpoint.rtsp = await rtsp_service(config, calls)
        endpoint.entrance = entrance_part(config, calls, service, board.io)
        try:
            if push is not None:
                await push.start()
            if board.display is not None:
                await board.display.start()
            if ui is not None:
                ui.dnd_active = _dnd_now(endpoint)
                await ui.start()
            await board.io.start()
            await call_log.open()
            await service.start()
            if endpoint.entrance is not None:
                await endpoint.entrance.start()
            await calls.start()
            if endpoint.rtsp is not None:
                await endpoint.rtsp.start()
        except BaseException:
            await self._close_endpoint(endpoint)
            raise
        self.homeassistant.attach(service)
        _log.info("%s: %s %r started", config.address, config.role, config.name)
        return endpoint

    async def _close_endpoint(self, endpoint: Endpoint) -> None:
        self.homeassistant.detach()
        if endpoint.rtsp is not None:
            await endpoint.rtsp.close()
        if endpoint.ui is not None:
            await endpoint.ui.close()
        if endpoint.entrance is not None:
            await endpoint.entrance.close()
        await endpoint.service.close()
        await endpoint.calls.close()
        if endpoint.push is not None:
            await endpoint.push.close()
        await endpoint.call_log.close()
        if self._given_board is None:
            await endpoint.board.close()
        else:
            await endpoint.board.io.close()

    async def close(self) -> None:
        """End calls, release the relay and every device; idempotent."""
        task = self._restart_task
        if task is not None and task is not asyncio.current_task():
            self._restart_task = None
            await cancel_and_wait([task])
        ha_task, self._ha_task = self._ha_task, None
        if ha_task is not None:
            await cancel_and_wait([ha_task])
        await self.homeassistant.close()
        await self._close_current()

    async def _close_current(self) -> None:
        endpoint, self.endpoint = self.endpoint, None
        if endpoint is not None:
            await self._close_endpoint(endpoint)

    # reconfiguration ----------------------------------------------------------------------------

    def changed_keys(self, new: CallboxConfig) -> list[str]:
        """The top-level keys whose values differ between the running and ``new`` config."""
        old_dump = self.config.model_dump(by_alias=True)
        new_dump = new.model_dump(by_alias=True)
        return sorted(k for k in new_dump if old_dump.get(k) != new_dump.get(k))

    async def apply(self, new: CallboxConfig) -> list[str]:
        """Use ``new``: live changes at once, a rebuild in the background once no call is on.

        Returns the changed top-level keys. A call is never dropped by a change that does
        not touch it: hardware, broker, identity and media changes rebuild the endpoint
        when the line is idle (``pending_restart`` lists them until then). A rebuild that
        fails goes back to the previous configuration.
        """
        changed = self.changed_keys(new)
        endpoint = self.endpoint
        previous, self.config = self.config, new
        if endpoint is None or not changed:
            return changed
        if "homeassistant" in changed:
            self._restart_homeassistant(new)
        rebuild = [k for k in changed if apply_of(k) in _REBUILDS]
        if any(apply_of(k) is Apply.LIVE for k in changed):
            # at once, also when other keys wait for a rebuild: a devices-only rebuild
            # would never apply them (an endpoint rebuild applies them again, harmlessly)
            self._apply_live(endpoint, previous, new)
        if rebuild:
            self.pending_restart = sorted({*self.pending_restart, *rebuild})
            if endpoint.calls.is_call_in_progress():
                _log.info("config: %s change waits until the call ends", ", ".join(rebuild))
            if self._restart_task is None or self._restart_task.done():
                self._restart_task = asyncio.create_task(self._restart_when_idle(previous))
        return changed

    def _apply_live(self, endpoint: Endpoint, previous: CallboxConfig, new: CallboxConfig) -> None:
        endpoint.calls.defaults = new.call_properties()
        # contacts from the file are replaced as a whole (a removed one is no longer
        # trusted); contacts pinned at first use, never in the file, stay
        book = endpoint.signaling.contacts
        configured = {c.address for c in previous.contacts()}
        learned = {a: c for a, c in book.contacts.items() if a not in configured}
        book.contacts = learned | {c.address: c for c in new.contacts()}
        endpoint.signaling.set_targets(new.targets)
        endpoint.service.apply_settings(intercom_settings(new))
        endpoint.service.snapshots = snapshot_store(new)
        logging.getLogger().setLevel(new.logging.level)
        _log.info("config applied without a restart")

    def _restart_homeassistant(self, new: CallboxConfig) -> None:
        """A new link to HA's broker in the background, after any restart under way."""
        previous = self._ha_task

        async def restart() -> None:
            if previous is not None:
                await asyncio.wait([previous])
            await self.homeassistant.restart(new)

        self._ha_task = asyncio.create_task(restart(), name="homeassistant-restart")

    async def _restart_when_idle(self, previous: CallboxConfig) -> None:
        endpoint = self.endpoint
        while endpoint is not None and endpoint.calls.is_call_in_progress():
            call = endpoint.calls.active_call
            assert call is not None
            await call.ended.wait()
        if self.endpoint is endpoint and self.pending_restart:
            await self._restart(previous)

    async def _restart(self, previous: CallboxConfig) -> None:
        """Apply the pending keys; ``pending_restart`` empties once they are in force."""
        keys = list(self.pending_restart)
        endpoint = self.endpoint
        try:
            if endpoint is not None and all(apply_of(k) is Apply.DEVICES for k in keys):
                await self._restart_hardware(endpoint, previous)
            else:
                await self._rebuild(previous)
        finally:
            self.pending_restart = [k for k in self.pending_restart if k not in keys]

    async def _rebuild(self, previous: CallboxConfig) -> None:
        await self._close_current()
        try:
            self.endpoint = await self._build(self.config)
            return
        except Exception:  # noqa: BLE001 - any failure of the new config: go back, say why
            _log.exception("the new configuration could not start; back to the previous one")
        self.config = previous
        self.endpoint = await self._build(previous)  # failing too: no endpoint, the watchdog
        # stops and systemd restarts the daemon with the file as it is

    async def _restart_hardware(self, endpoint: Endpoint, previous: CallboxConfig) -> None:
        """New GPIO devices and call service; signaling, media and the call log stay."""
        if endpoint.entrance is not None:
            await endpoint.entrance.close()
        await endpoint.service.close()
        await endpoint.board.io.close()
        state_dir = Path(self.config.state_dir)
        try:
            io = build_board_io(self.config, state_dir)
        except (HalError, ConfigError):
            _log.exception("the new hardware configuration cannot start; back to the previous")
            self.config = previous
            io = build_board_io(previous, state_dir)
        endpoint.board = dataclasses.replace(endpoint.board, io=io)
        self.homeassistant.detach()
        endpoint.service = call_service(
            self.config,
            endpoint.calls,
            io,
            endpoint.call_log,
            endpoint.ui,
            endpoint.push,
            self.manual_dnd,
        )
        endpoint.entrance = entrance_part(self.config, endpoint.calls, endpoint.service, io)
        await io.start()
        await endpoint.service.start()
        if endpoint.entrance is not None:
            await endpoint.entrance.start()
        self.homeassistant.attach(endpoint.service)
        _log.info("%s: GPIO devices rebuilt, the broker connection kept", self.config.address)

    # status ---------------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """What ``callbox status`` prints: role, broker, presence, call, hardware."""
        config = self.config
        result: dict[str, Any] = {
            "address": config.address,
            "name": config.name,
            "role": config.role,
            "site": config.site,
            "board": config.board,
            "uptime_s": round(time.time() - self.started_at, 1),
            "pending_restart": list(self.pending_restart),
        }
        endpoint = self.endpoint
        if endpoint is None:
            result["running"] = False
            return result
        result["running"] = True
        result["broker"] = {
            "host": config.broker.host,
            "port": config.broker.port,
            "connected": endpoint.signaling.transport.connected.is_set(),
        }
        result["presence"] = dict(endpoint.signaling.presence)
        result["dropped_messages"] = endpoint.calls.dropped_messages()
        result["signaling"] = endpoint.signaling.counters()
        if endpoint.calls.media.camera is not None:
            failure = endpoint.calls.camera_failure
            result["camera"] = f"failed, retrying: {failure}" if failure else "ok"
        canceller = endpoint.calls.media.echo_canceller
        result["echo_canceller"] = canceller.engine if canceller is not None else "off"
        if canceller is not None:
            result["echo_canceller_detail"] = canceller.detail
        if endpoint.rtsp is not None:
            result["rtsp"] = endpoint.rtsp.status()
        if endpoint.entrance is not None:
            result["access"] = endpoint.entrance.status()
        result.update(endpoint.service.status())
        if self.homeassistant.bridge is not None:
            result["homeassistant"] = self.homeassistant.bridge.status()
        return result
