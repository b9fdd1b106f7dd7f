"""The site of device apps for end-to-end tests (``device.simulator``), and waiting on it."""

from __future__ import annotations

from support import TIMEOUT, wait_for

from device.simulator import IntercomSite, Unit, start_intercom_site

__all__ = ["TIMEOUT", "IntercomSite", "Unit", "start_intercom_site", "wait_for"]
