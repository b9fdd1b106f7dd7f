"""Home Assistant MQTT discovery: a unit shows up in HA as a device with its entities.

`HomeAssistantBridge` watches the call service (services/intercom/observer.py) and publishes
per-component discovery configs and states on HA's broker through `HaLink` (birth, last will,
reconnect, republish when HA says online); HA's commands come back as a door button press
(only with ``door_release``) and the do-not-disturb switch. HA observes: nothing of the
end-to-end signaling goes through it. Topics: docs/protocol.md "Home Assistant topics".
"""

from services.homeassistant.bridge import HomeAssistantBridge
from services.homeassistant.errors import CommandError, HomeAssistantError
from services.homeassistant.settings import HaSettings, UnitInfo

__all__ = ["CommandError", "HaSettings", "HomeAssistantBridge", "HomeAssistantError", "UnitInfo"]
