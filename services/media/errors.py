"""Errors of the media layer."""

from hal.errors import CallboxError


class MediaError(CallboxError):
    """A media session could not do what was asked (bad SDP, codec, device, ICE setting)."""


class SecurityError(MediaError):
    """The peer's DTLS identity does not match the fingerprint in its signed SDP."""
