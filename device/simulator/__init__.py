"""``callbox demo``: a whole site of device apps on simulated boards on one machine.

The scripted doorbell call (``callbox demo --scripted``, also what the benchmarks repeat)
with its entrance-panel act, and the interactive simulator page, both on a site built from
real ``callbox.toml`` files (`start_intercom_site`).
"""

from device.simulator._devicesite import (
    PRESENCE_TIMEOUT_S,
    IntercomSite,
    Unit,
    config_text,
    contact_toml,
    start_intercom_site,
    write_unit_config,
)
from device.simulator._http import SimulatorServerError
from device.simulator._panel import (
    DEMO_CARD,
    DEMO_CODE,
    ENTRANCE_TOML,
    PanelTimeline,
    enroll_demo_resident,
    panel_toml,
    run_panel_act,
)
from device.simulator._pin_scenario import PinTimeline, run_pin_doorbell_call
from device.simulator._scenario import Timeline, run_doorbell_call
from device.simulator._simulator import Simulator, run_simulator, start_simulator

__all__ = [
    "DEMO_CARD",
    "DEMO_CODE",
    "ENTRANCE_TOML",
    "PRESENCE_TIMEOUT_S",
    "IntercomSite",
    "PanelTimeline",
    "PinTimeline",
    "Simulator",
    "SimulatorServerError",
    "Timeline",
    "Unit",
    "config_text",
    "contact_toml",
    "enroll_demo_resident",
    "panel_toml",
    "run_doorbell_call",
    "run_panel_act",
    "run_pin_doorbell_call",
    "run_simulator",
    "start_intercom_site",
    "start_simulator",
    "write_unit_config",
]
