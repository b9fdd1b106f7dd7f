"""The HAL exception tree: every error raised by hal/ derives from HalError."""


class HalError(Exception):
    """Root of the HAL exception tree (bad formats, missing devices, back-end failures)."""


class DeviceUnavailableError(HalError):
    """A device is missing, busy, not open, or closed while in use."""
