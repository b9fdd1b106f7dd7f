"""Hardware abstraction layer: small interfaces, real and simulated back-ends.

Import the device modules (``hal.camera``, ``hal.audio``, ``hal.board``) directly;
this package only re-exports the light-weight exception tree.
"""

from hal.errors import CallboxError, DeviceUnavailableError, HalError

__all__ = ["CallboxError", "DeviceUnavailableError", "HalError"]
