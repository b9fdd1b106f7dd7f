"""The appliance's side of the browser phone: serving its page and its pairing link."""

from device.phone._pagefiles import TEST_PAGES, PageFiles
from device.phone._pageserver import PageServer, WebLimits, WebServerError, WebStats
from device.phone._pairing import Pairing, PairingError, PairingPeer
from device.phone._webserver import WebServer, WebTls, check_page, tls_context

__all__ = [
    "TEST_PAGES",
    "PageFiles",
    "PageServer",
    "Pairing",
    "PairingError",
    "PairingPeer",
    "WebLimits",
    "WebServer",
    "WebServerError",
    "WebStats",
    "WebTls",
    "check_page",
    "tls_context",
]
