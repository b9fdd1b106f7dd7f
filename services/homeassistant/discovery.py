"""The topics of one unit on HA's broker and its per-component discovery configs.

Discovery: ``<prefix>/<component>/<node_id>/<object_id>/config`` (retained JSON), one per
entity, each with the shared ``device`` block and ``availability``. States and commands live
under ``callbox/<node_id>/`` (docs/protocol.md "Home Assistant topics"). An entity that must
not exist (the door button with ``door_release`` off) gets an empty retained config, which
removes one a former configuration left on the broker.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

from services.homeassistant.settings import HaSettings, UnitInfo

ONLINE: Final = "online"
OFFLINE: Final = "offline"
PRESS: Final = "PRESS"
ON: Final = "ON"
OFF: Final = "OFF"
RING: Final = "ring"
CALL_STATES: Final = ("idle", "ringing", "in_call")


@dataclass(frozen=True)
class HaTopics:
    """Every topic of one unit: discovery under ``prefix``, states under ``callbox/<node>``."""

    prefix: str
    node_id: str

    @property
    def base(self) -> str:
        """Where this unit's states and commands live."""
        return f"callbox/{self.node_id}"

    @property
    def ha_status(self) -> str:
        """HA's own birth and last will (``online`` / ``offline``)."""
        return f"{self.prefix}/status"

    @property
    def availability(self) -> str:
        """This unit's ``online`` (birth) and ``offline`` (last will), retained."""
        return f"{self.base}/availability"

    def config(self, component: str, object_id: str) -> str:
        """The discovery config topic of one entity."""
        return f"{self.prefix}/{component}/{self.node_id}/{object_id}/config"

    def state(self, object_id: str) -> str:
        """The state topic of one entity."""
        return f"{self.base}/{object_id}/state"

    def attributes(self, object_id: str) -> str:
        """The JSON attributes topic of one entity."""
        return f"{self.base}/{object_id}/attributes"

    def command(self, object_id: str) -> str:
        """The command topic of one entity (HA publishes, the unit obeys)."""
        return f"{self.base}/{object_id}/set"


# object ids, unique per unit
DOORBELL: Final = "doorbell"
SNAPSHOT: Final = "snapshot"
DOOR: Final = "door"
OPEN_DOOR: Final = "open_door"
CALL: Final = "call"
MISSED: Final = "missed_calls"
DND: Final = "dnd"
DOOR_CONTACT: Final = "door_contact"
TAMPER: Final = "tamper"
DOOR_ALARM: Final = "door_alarm"
ALARM: Final = "alarm"
ALARM_KINDS: Final = ("door_left_open", "door_forced_open", "tamper")
"""The event types of the alarm event: services.intercom.alarm_message.AlarmKind's values."""
ACCESS: Final = "access"
GRANTED: Final = "granted"
REFUSED: Final = "refused"
ACCESS_EVENTS: Final = (GRANTED, REFUSED)
"""The event types of the Access event: one per code or card tried at the entrance."""


def device_block(unit: UnitInfo, node_id: str) -> dict[str, Any]:
    """The ``device`` every entity of the unit shares (one device in HA's registry)."""
    return {
        "identifiers": [f"callbox_{node_id}"],
        "name": unit.name or unit.address,
        "manufacturer": "callbox",
        "model": unit.role,
        "sw_version": unit.sw_version,
    }


def entity_configs(
    unit: UnitInfo, settings: HaSettings, topics: HaTopics
) -> list[tuple[str, dict[str, Any] | None]]:
    """(discovery topic, config) of every entity the unit announces; None: remove it.

    Every unit: call state, missed calls; an indoor unit: the do-not-disturb switch; a door
    station: doorbell event, visitor snapshot, door relay, and the door button only with
    ``door_release``.
    """
    node = topics.node_id
    shared = {
        "device": device_block(unit, node),
        "availability": [{"topic": topics.availability}],
    }

    def entity(object_id: str, name: str, **fields: Any) -> dict[str, Any]:
        return {
            "name": name,
            "unique_id": f"callbox_{node}_{object_id}",
            "object_id": f"{node}_{object_id}",
            **fields,
            **shared,
        }

    found: list[tuple[str, dict[str, Any] | None]] = [
        (
            topics.config("sensor", CALL),
            entity(
                CALL,
                "Call",
                state_topic=topics.state(CALL),
                json_attributes_topic=topics.attributes(CALL),
                device_class="enum",
                options=list(CALL_STATES),
                icon="mdi:phone",
            ),
        ),
        (
            topics.config("sensor", MISSED),
            entity(
                MISSED,
                "Missed calls",
                state_topic=topics.state(MISSED),
                state_class="total_increasing",
                icon="mdi:phone-missed",
            ),
        ),
    ]
    if not unit.is_door:
        found.append(
            (
                topics.config("switch", DND),
                entity(
                    DND,
                    "Do not disturb",
                    state_topic=topics.state(DND),
                    command_topic=topics.command(DND),
                    payload_on=ON,
                    payload_off=OFF,
                    icon="mdi:bell-off",
                ),
            )
        )
        return found
    found += [
        (
            topics.config("event", DOORBELL),
            entity(
                DOORBELL,
                "Doorbell",
                state_topic=topics.state(DOORBELL),
                device_class="doorbell",
                event_types=[RING],
            ),
        ),
        (
            topics.config("image", SNAPSHOT),
            entity(
                SNAPSHOT,
                "Visitor snapshot",
                image_topic=topics.state(SNAPSHOT),
                content_type="image/jpeg",
            ),
        ),
        (
            topics.config("binary_sensor", DOOR),
            entity(
                DOOR,
                "Door",
                state_topic=topics.state(DOOR),
                device_class="lock",
                payload_on=ON,
                payload_off=OFF,
            ),
        ),
        (
            topics.config("button", OPEN_DOOR),
            entity(
                OPEN_DOOR,
                "Open door",
                command_topic=topics.command(OPEN_DOOR),
                payload_press=PRESS,
                icon="mdi:door-open",
            )
            if settings.door_release
            else None,
        ),
    ]
    return found


def sensor_configs(
    unit: UnitInfo, topics: HaTopics, *, door_contact: bool, tamper: bool
) -> list[tuple[str, dict[str, Any] | None]]:
    """(discovery topic, config or None) of a door station's supervision entities.

    ``binary_sensor`` "Door contact" (device class door: on = open) and "Tamper" (device
    class tamper: on = tampered) when the board has that switch; with either, the
    ``binary_sensor`` "Door alarm" (device class problem: on while any alarm is active, the
    active ones in its attributes) and the ``event`` "Alarm" (one event per raised alarm,
    its type the alarm's kind) for automations. None removes what a former wiring left.
    """
    node = topics.node_id

    def entity(object_id: str, name: str, **fields: Any) -> dict[str, Any]:
        return {
            "name": name,
            "unique_id": f"callbox_{node}_{object_id}",
            "object_id": f"{node}_{object_id}",
            **fields,
            "device": device_block(unit, node),
            "availability": [{"topic": topics.availability}],
        }

    def binary(object_id: str, name: str, device_class: str, **fields: Any) -> dict[str, Any]:
        return entity(
            object_id,
            name,
            state_topic=topics.state(object_id),
            device_class=device_class,
            payload_on=ON,
            payload_off=OFF,
            **fields,
        )

    alarms = door_contact or tamper
    return [
        (
            topics.config("binary_sensor", DOOR_CONTACT),
            binary(DOOR_CONTACT, "Door contact", "door") if door_contact else None,
        ),
        (
            topics.config("binary_sensor", TAMPER),
            binary(TAMPER, "Tamper", "tamper") if tamper else None,
        ),
        (
            topics.config("binary_sensor", DOOR_ALARM),
            binary(
                DOOR_ALARM,
                "Door alarm",
                "problem",
                json_attributes_topic=topics.attributes(DOOR_ALARM),
            )
            if alarms
            else None,
        ),
        (
            topics.config("event", ALARM),
            entity(
                ALARM,
                "Alarm",
                state_topic=topics.state(ALARM),
                event_types=list(ALARM_KINDS),
                icon="mdi:alarm-light",
            )
            if alarms
            else None,
        ),
    ]


def encode(config: dict[str, Any] | None) -> bytes:
    """A discovery payload: compact JSON, or empty (removes the entity)."""
    if config is None:
        return b""
    return json.dumps(config, separators=(",", ":"), sort_keys=True).encode()


def command_topics(unit: UnitInfo, topics: HaTopics) -> tuple[str, ...]:
    """The topics the unit listens on for HA's commands.

    A door station listens on the button's even with ``door_release`` off, to log a press.
    """
    return (topics.command(OPEN_DOOR),) if unit.is_door else (topics.command(DND),)


def access_config(
    unit: UnitInfo, topics: HaTopics, *, entrance: bool
) -> tuple[str, dict[str, Any] | None]:
    """(discovery topic, config or None) of a door station's ``event`` "Access".

    One event per access code or card tried at the entrance (``granted`` or ``refused``,
    who, via which keypad or reader, why); only when the door has a keypad or a card
    reader. None removes what a former wiring left.
    """
    node = topics.node_id
    config = {
        "name": "Access",
        "unique_id": f"callbox_{node}_{ACCESS}",
        "object_id": f"{node}_{ACCESS}",
        "state_topic": topics.state(ACCESS),
        "event_types": list(ACCESS_EVENTS),
        "icon": "mdi:key-chain",
        "device": device_block(unit, node),
        "availability": [{"topic": topics.availability}],
    }
    return topics.config("event", ACCESS), config if entrance else None
