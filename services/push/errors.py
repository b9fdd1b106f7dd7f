"""The errors of Web Push: bad subscriptions, bad keys, refused registrations."""

from __future__ import annotations

from hal.errors import CallboxError


class PushError(CallboxError):
    """Base of every Web Push error; the message says what and why."""


class BadSubscription(PushError):
    """A push subscription that is not well formed or points where the door may not POST."""


class VapidKeyError(PushError):
    """The site's VAPID key file is missing, unreadable, damaged or too open."""
