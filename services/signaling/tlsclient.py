"""The TLS side of an endpoint's broker connection: the site CA is the only authority.

:func:`pinned_ca` builds the client context from the pinned site CA file
(``broker.tls_ca``): no system trust store, the host name checked, TLS 1.2 at least. A
broker certificate that the site CA did not sign, or that is not for the host the unit dials,
is refused; :func:`tls_refusal` turns that failure into an error that names the broker, the
CA file and the cause, for the log and for the error ``callbox run`` exits with.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.serialization import Encoding

from services.signaling.errors import SignalingError
from services.signaling.siteca import fingerprint, load_ca_certificates


@dataclass(frozen=True)
class PinnedCa:
    """The site CA an endpoint pins, and the TLS client context that trusts only it."""

    ca_file: Path
    fingerprints: tuple[str, ...]
    """SHA-256 of each CA in the file (:func:`~services.signaling.siteca.fingerprint`)."""
    context: ssl.SSLContext


def pinned_ca(ca_file: Path) -> PinnedCa:
    """A client context that trusts the site CA(s) in ``ca_file`` and nothing else.

    No system trust store; the chain and the host name are verified; TLS 1.2 at least. Blocking
    (reads the file): call it in a thread from async code. SignalingError naming the file when
    it is missing or holds no CA certificate.
    """
    certificates = load_ca_certificates(ca_file)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    pem = "".join(c.public_bytes(Encoding.PEM).decode() for c in certificates)
    try:
        context.load_verify_locations(cadata=pem)
    except ssl.SSLError as err:
        raise SignalingError(f"site CA file {ca_file}: {err}") from err
    return PinnedCa(ca_file, tuple(fingerprint(c) for c in certificates), context)


_NOT_SIGNED = "its TLS certificate is not signed by the pinned site CA"
_WHY = {
    9: "its TLS certificate is not valid yet (is this unit's clock right?)",
    10: "its TLS certificate has expired (renew it on the hosting unit: `callbox ca renew`)",
    18: _NOT_SIGNED,
    19: _NOT_SIGNED,
    20: _NOT_SIGNED,
    21: _NOT_SIGNED,
    62: "its TLS certificate is not for the host name {host}",
    64: "its TLS certificate is not for the host name {host}",
}
"""OpenSSL's verify codes (X509_V_ERR_*) in the operator's words."""


def tls_refusal(err: BaseException, host: str, port: int, pinned: PinnedCa | None) -> str | None:
    """What to tell the operator when ``err`` is a refused broker certificate, else None.

    aiomqtt hides the ssl error behind its own MqttError (``raise ... from None``): the ssl
    error is its ``__context__``, and its text carries ssl's reason.
    """
    if pinned is None:
        return None
    cause: BaseException | None = err
    while cause is not None and not isinstance(cause, ssl.SSLError):
        cause = cause.__cause__ or cause.__context__
    text = str(cause if cause is not None else err)
    verify_failed = isinstance(cause, ssl.SSLCertVerificationError)
    if not verify_failed and "CERTIFICATE_VERIFY_FAILED" not in text:
        return None
    detail = getattr(cause, "verify_message", "") or text
    why = _WHY.get(getattr(cause, "verify_code", 0), "it does not verify").format(host=host)
    return (
        f"refusing the broker at {host}:{port}: {why} ({detail}); the site CA pinned in "
        f"broker.tls_ca is {pinned.ca_file} (SHA-256 {', '.join(pinned.fingerprints)}). "
        "Either this unit pins another site's CA "
        "(copy the hosting unit's ca.crt: `callbox ca show` there), the broker's certificate "
        "does not name the host this unit dials (broker.host), or someone else answers at "
        "that address"
    )
