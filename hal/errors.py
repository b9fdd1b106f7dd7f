"""The one callbox exception tree, rooted here because hal/ is the lowest layer.

Every error callbox raises on purpose derives from `CallboxError`, so the CLI catches the
root once at its edge and prints the message. Each layer hangs its own branch below it
(`HalError` here; `MediaError`, `SignalingError`, `CallError` in services/; `ConfigError`
and the device errors in device/); library errors are translated at the edge with
``raise ... from err``.
"""


class CallboxError(Exception):
    """Root of every callbox error: ``str()`` is a clear message for the person at the CLI."""


class HalError(CallboxError):
    """Root of the HAL exception tree (bad formats, missing devices, back-end failures)."""


class DeviceUnavailableError(HalError):
    """A device is missing, busy, not open, or closed while in use."""
