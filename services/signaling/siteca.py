"""The site CA: the certificate authority of one site, and the broker certificate it signs.

``callbox broker`` keeps both under ``<its --config directory>/tls/``:

- ``ca.crt``: the site CA (EC P-256, 10 years). Units pin it (``broker.tls_ca``), phones install
  it as a trusted authority; its SHA-256 fingerprint is in every pairing link.
- ``ca.key``: its private key, 0600. It never leaves the hosting unit: whoever holds it can
  pose as the broker to every unit of the site.
- ``server.crt`` / ``server.key`` (0600): the broker's certificate (825 days, the longest Apple
  devices accept), for every name and address units and phones reach the broker by.

:func:`ensure_site_tls` makes what is missing and re-issues the broker certificate when it is
not signed by the CA, lacks one of the names, or expires within :data:`RENEW_BEFORE`: units
pin the CA, not the certificate, so none of them needs anything then. The CA is made once and
never replaced unasked (:func:`renew_site_ca` does, and every unit and phone needs the new
``ca.crt`` then).
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import ifaddr
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from services.signaling.broker import Owner, TlsFiles, write_private
from services.signaling.errors import SignalingError

CA_LIFETIME = datetime.timedelta(days=3650)
SERVER_LIFETIME = datetime.timedelta(days=825)
RENEW_BEFORE = datetime.timedelta(days=30)
"""A broker certificate that expires sooner than this is re-issued when the broker starts."""
_BACKDATE = datetime.timedelta(minutes=5)  # a unit whose clock is a little behind accepts it

Names = tuple[str, ...]


@dataclass(frozen=True)
class SiteCaFiles:
    """Where the site CA and the broker certificate live (a ``tls/`` directory)."""

    directory: Path

    @property
    def ca_cert(self) -> Path:
        """The CA certificate (PEM): what units pin and phones install."""
        return self.directory / "ca.crt"

    @property
    def ca_key(self) -> Path:
        """The CA's private key (PEM, 0600): never copied anywhere."""
        return self.directory / "ca.key"

    @property
    def server_cert(self) -> Path:
        """The broker's certificate (PEM), signed by the CA."""
        return self.directory / "server.crt"

    @property
    def server_key(self) -> Path:
        """The broker certificate's private key (PEM, 0600)."""
        return self.directory / "server.key"

    def tls_files(self) -> TlsFiles:
        """The broker's TLS files (certificate, key, CA)."""
        return TlsFiles(self.server_cert, self.server_key, self.ca_cert)


def site_ca_files(broker_dir: Path) -> SiteCaFiles:
    """The site CA files of the broker whose configuration is in ``broker_dir``."""
    return SiteCaFiles(broker_dir / "tls")


@dataclass(frozen=True)
class SiteTls:
    """What :func:`ensure_site_tls` found or made."""

    files: SiteCaFiles
    fingerprint: str
    """The CA's SHA-256 fingerprint (:func:`fingerprint`)."""
    names: Names
    """Every DNS name and IP address in the broker certificate."""
    not_after: datetime.datetime
    made: tuple[str, ...] = ()
    """What was made this time, in words ("a new site CA", "the broker certificate: ...")."""


def fingerprint(certificate: x509.Certificate) -> str:
    """The SHA-256 fingerprint of ``certificate`` as phones show it: 32 hex pairs joined by ':'."""
    digest = certificate.fingerprint(hashes.SHA256()).hex().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def normalize_fingerprint(text: str) -> str | None:
    """``text`` (64 hex digits; ':', spaces or none between them) in :func:`fingerprint` form.

    None when it is not a SHA-256 fingerprint.
    """
    digits = "".join(ch for ch in text if ch not in ": \t").upper()
    if len(digits) != 64 or any(ch not in "0123456789ABCDEF" for ch in digits):
        return None
    return ":".join(digits[i : i + 2] for i in range(0, 64, 2))


def load_ca_certificates(path: Path) -> list[x509.Certificate]:
    """The CA certificates in the PEM file ``path`` (one, or old and new while renewing).

    SignalingError naming the file when it cannot be read or holds no CA certificate.
    """
    try:
        data = path.read_bytes()
    except OSError as err:
        raise SignalingError(f"site CA file {path}: cannot read it: {err}") from err
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError as err:
        raise SignalingError(f"site CA file {path}: not a PEM certificate: {err}") from err
    for certificate in certificates:
        if not _is_ca(certificate):
            raise SignalingError(
                f"site CA file {path}: {certificate.subject.rfc4514_string()} is not a CA "
                "certificate: give the site CA (ca.crt of the broker), not the broker's own"
            )
    return certificates


def local_names(listen_host: str = "", extra: Iterable[str] = ()) -> Names:
    """The names and addresses this machine is reached by, for the broker certificate.

    Its host name and ``<host name>.local`` (mDNS), ``localhost``, 127.0.0.1, ::1, every address
    of its interfaces but link-local ones, ``listen_host`` unless it is a wildcard, and ``extra``.
    """
    host = socket.gethostname().split(".")[0]
    names = [host, f"{host}.local", "localhost", "127.0.0.1", "::1", *extra]
    if listen_host and listen_host not in ("0.0.0.0", "::"):
        names.append(listen_host)
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            value = ip.ip if isinstance(ip.ip, str) else ip.ip[0]
            address = ipaddress.ip_address(value.split("%")[0])
            if not address.is_link_local:
                names.append(str(address))
    return tuple(dict.fromkeys(n for n in names if n))


def ensure_site_tls(
    files: SiteCaFiles,
    names: Names,
    *,
    owner: Owner | None = None,
    now: datetime.datetime | None = None,
) -> SiteTls:
    """The site CA and a current broker certificate for ``names``, made where missing.

    Blocking (files, key generation): run it in a thread from async code. SignalingError when
    the CA is half there (a certificate without its key) or damaged: it is never replaced
    silently, every unit of the site pins it.
    """
    now = now or datetime.datetime.now(datetime.UTC)
    made = []
    ca_key, ca_cert, ca_made = _load_or_make_ca(files, owner, now)
    if ca_made:
        made.append(f"a new site CA {files.ca_cert}")
    reason = _server_needs(files, ca_cert, names, now)
    if reason is not None:
        _issue_server(files, ca_key, ca_cert, names, owner, now)
        made.append(f"the broker certificate {files.server_cert} ({reason})")
    server = _read_certificate(files.server_cert)
    return SiteTls(
        files, fingerprint(ca_cert), _san_names(server), server.not_valid_after_utc, tuple(made)
    )


def renew_site_tls(
    files: SiteCaFiles,
    names: Names,
    *,
    new_ca: bool = False,
    owner: Owner | None = None,
    now: datetime.datetime | None = None,
) -> SiteTls:
    """A new broker certificate for ``names``; with ``new_ca`` a new site CA first.

    A new CA replaces ``ca.crt`` and ``ca.key`` (the old pair is kept as ``ca.crt.old`` and
    ``ca.key.old``): every unit needs the new ``ca.crt`` in its ``broker.tls_ca`` and every phone
    the new CA installed. Blocking.
    """
    now = now or datetime.datetime.now(datetime.UTC)
    if new_ca:
        for path in (files.ca_cert, files.ca_key):
            if path.exists():
                path.replace(path.with_name(path.name + ".old"))
    for path in (files.server_cert, files.server_key):
        path.unlink(missing_ok=True)
    return ensure_site_tls(files, names, owner=owner, now=now)


def read_site_tls(files: SiteCaFiles) -> SiteTls:
    """The site CA and broker certificate as they are (SignalingError when missing)."""
    if not files.ca_cert.exists():
        raise SignalingError(
            f"no site CA in {files.directory}: `callbox broker` makes it when it first starts"
        )
    (ca,) = load_ca_certificates(files.ca_cert)[:1]
    server = _read_certificate(files.server_cert)
    return SiteTls(files, fingerprint(ca), _san_names(server), server.not_valid_after_utc)


# the CA -------------------------------------------------------------------------------------------


def _load_or_make_ca(
    files: SiteCaFiles, owner: Owner | None, now: datetime.datetime
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate, bool]:
    has_cert, has_key = files.ca_cert.exists(), files.ca_key.exists()
    if has_cert and not has_key:
        raise SignalingError(
            f"site CA {files.ca_cert} is there but its key {files.ca_key} is not: restore the "
            "key from a backup, or make a new CA with `callbox ca renew --new-ca` (every unit "
            "and phone then needs the new ca.crt)"
        )
    if has_cert:
        key = _read_key(files.ca_key)
        cert = _read_certificate(files.ca_cert)
        if cert.public_key() != key.public_key():
            raise SignalingError(
                f"site CA {files.ca_cert} does not belong to the key {files.ca_key}"
            )
        return key, cert, False
    # the key first: a power cut before the certificate leaves a key nobody pins yet
    key = _read_key(files.ca_key) if has_key else _new_key(files.ca_key, owner)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "callbox"),
            x509.NameAttribute(
                NameOID.COMMON_NAME,
                f"callbox site CA {socket.gethostname().split('.')[0]} {now:%Y-%m-%d}",
            ),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + CA_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_CA_USAGE, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_public(files.ca_cert, cert, owner)
    return key, cert, True


_CA_USAGE = x509.KeyUsage(
    digital_signature=False,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)
_SERVER_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=False,
    crl_sign=False,
    encipher_only=False,
    decipher_only=False,
)


# the broker certificate ---------------------------------------------------------------------------


def _server_needs(
    files: SiteCaFiles, ca: x509.Certificate, names: Names, now: datetime.datetime
) -> str | None:
    """Why the broker certificate must be issued again, or None when it is good."""
    if not files.server_cert.exists() or not files.server_key.exists():
        return "missing"
    server = _read_certificate(files.server_cert)
    try:
        server.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return "not signed by the site CA"
    if server.public_key() != _read_key(files.server_key).public_key():
        return "does not belong to its key"
    if server.not_valid_after_utc - now < RENEW_BEFORE:
        return f"expires {server.not_valid_after_utc:%Y-%m-%d}"
    missing = [n for n in names if n not in _san_names(server)]
    if missing:
        return f"new names: {', '.join(missing)}"
    return None


def _issue_server(
    files: SiteCaFiles,
    ca_key: ec.EllipticCurvePrivateKey,
    ca: x509.Certificate,
    names: Names,
    owner: Owner | None,
    now: datetime.datetime,
) -> None:
    if not names:
        raise SignalingError("the broker certificate needs at least one name or address")
    key = _new_key(files.server_key, owner)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(min(now + SERVER_LIFETIME, ca.not_valid_after_utc))
        .add_extension(x509.SubjectAlternativeName([_general_name(n) for n in names]), False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_SERVER_USAGE, critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write_public(files.server_cert, cert, owner)


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        pass
    try:
        return x509.DNSName(name.encode("idna").decode("ascii"))
    except UnicodeError as err:
        raise SignalingError(f"{name!r} is not a host name or an IP address") from err


def _san_names(certificate: x509.Certificate) -> Names:
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    dns = san.get_values_for_type(x509.DNSName)
    ips = [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    return (*dns, *ips)


# files --------------------------------------------------------------------------------------------


def _is_ca(certificate: x509.Certificate) -> bool:
    try:
        return certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def _new_key(path: Path, owner: Owner | None) -> ec.EllipticCurvePrivateKey:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    _write(path, pem.decode(), owner)
    return key


def _write_public(path: Path, certificate: x509.Certificate, owner: Owner | None) -> None:
    _write(path, certificate.public_bytes(serialization.Encoding.PEM).decode(), owner)
    path.chmod(0o644)  # a certificate is public; units and phones copy it


def _write(path: Path, text: str, owner: Owner | None) -> None:
    try:
        write_private(path, text, owner)
    except OSError as err:
        raise SignalingError(f"cannot write {path}: {err}") from err


def _read_certificate(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError) as err:
        raise SignalingError(f"cannot read the certificate {path}: {err}") from err


def _read_key(path: Path) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as err:
        raise SignalingError(f"cannot read the private key {path}: {err}") from err
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise SignalingError(f"{path} is not an EC private key")
    return key
