"""The appliance's side of the browser phone: serving its page and its pairing link."""

from device.phone._pairing import Pairing, PairingError, PairingPeer
from device.phone._webserver import WebServer, WebServerError, WebTls

__all__ = [
    "Pairing",
    "PairingError",
    "PairingPeer",
    "WebServer",
    "WebServerError",
    "WebTls",
]
