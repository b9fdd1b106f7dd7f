"""Identity: public keys, fingerprints, safety numbers and the private key file."""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from services.signaling.errors import KeyChangedError, SignalingError
from services.signaling.identity import (
    KEY_FILE_NAME,
    Identity,
    PublicKeys,
    b64u_decode,
    b64u_encode,
    safety_number,
)

VECTORS_FILE = Path(__file__).resolve().parents[1] / "vectors" / "envelope_v1.json"

FINGERPRINT_RE = re.compile(r"[0-9a-f]{4}( [0-9a-f]{4}){7}")
SAFETY_RE = re.compile(r"[0-9]{5}( [0-9]{5}){11}")


@pytest.fixture
def vectors() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(VECTORS_FILE.read_text(encoding="utf-8"))
    return data


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --------------------------------------------------------------------------- base64url


def test_b64u_round_trip_and_strictness() -> None:
    for size in range(0, 40):
        data = os.urandom(size)
        text = b64u_encode(data)
        assert "=" not in text and b64u_decode(text) == data
    for bad in ("AA==", "A", "AAAAA", "AB", "AA A", "+/", "AA\n", "ÄA"):
        with pytest.raises(ValueError):
            b64u_decode(bad)


# --------------------------------------------------------------------------- PublicKeys


def test_public_keys_json_round_trip() -> None:
    keys = Identity.generate().public_keys
    obj = keys.to_json()
    assert set(obj) == {"sign", "dh"}
    assert b64u_decode(obj["sign"]) == keys.sign and b64u_decode(obj["dh"]) == keys.dh
    assert PublicKeys.from_json(json.loads(json.dumps(obj))) == keys


@pytest.mark.parametrize(
    ("obj", "field"),
    [
        ({"dh": b64u_encode(bytes(32))}, "sign"),
        ({"sign": b64u_encode(bytes(32))}, "dh"),
        ({"sign": b64u_encode(bytes(31)), "dh": b64u_encode(bytes(32))}, "sign"),
        ({"sign": b64u_encode(bytes(32)), "dh": b64u_encode(bytes(33))}, "dh"),
        ({"sign": b64u_encode(bytes(32)) + "=", "dh": b64u_encode(bytes(32))}, "sign"),
        ({"sign": b64u_encode(bytes(32)), "dh": 5}, "dh"),
        ({"sign": b64u_encode(bytes(32)), "dh": b64u_encode(bytes(32)), "pq": "x"}, "pq"),
    ],
)
def test_public_keys_from_json_names_the_bad_field(obj: dict[str, Any], field: str) -> None:
    with pytest.raises(SignalingError, match=f"'{field}'"):
        PublicKeys.from_json(obj)


def test_public_keys_from_json_refuses_non_objects() -> None:
    with pytest.raises(SignalingError):
        PublicKeys.from_json(["sign", "dh"])


def test_public_keys_constructor_checks_lengths() -> None:
    with pytest.raises(SignalingError, match="'dh'"):
        PublicKeys(sign=bytes(32), dh=bytes(16))
    with pytest.raises(SignalingError, match="'sign'"):
        PublicKeys(sign=bytes(33), dh=bytes(32))


def test_fingerprint(vectors: dict[str, Any]) -> None:
    for party in ("sender", "recipient"):
        keys = PublicKeys.from_json(vectors[party]["public_keys"])
        assert keys.fingerprint() == vectors[party]["fingerprint"]
        assert FINGERPRINT_RE.fullmatch(keys.fingerprint())
    keys = Identity.generate().public_keys
    assert FINGERPRINT_RE.fullmatch(keys.fingerprint())
    other = PublicKeys(sign=keys.sign, dh=Identity.generate().public_keys.dh)
    assert other.fingerprint() != keys.fingerprint()


# --------------------------------------------------------------------------- safety number


def test_safety_number_is_order_independent_and_matches_the_vector(
    vectors: dict[str, Any],
) -> None:
    a = PublicKeys.from_json(vectors["sender"]["public_keys"])
    b = PublicKeys.from_json(vectors["recipient"]["public_keys"])
    assert safety_number(a, b) == safety_number(b, a) == vectors["safety_number"]
    assert SAFETY_RE.fullmatch(vectors["safety_number"])


def test_safety_number_changes_with_any_key() -> None:
    for _ in range(20):
        a, b = Identity.generate().public_keys, Identity.generate().public_keys
        number = safety_number(a, b)
        assert SAFETY_RE.fullmatch(number)
        assert number == safety_number(b, a)
        c = Identity.generate().public_keys
        assert safety_number(a, PublicKeys(sign=b.sign, dh=c.dh)) != number
        assert safety_number(PublicKeys(sign=c.sign, dh=a.dh), b) != number


# --------------------------------------------------------------------------- Identity


def test_sign_and_dh() -> None:
    alice, bob = Identity.generate(), Identity.generate()
    sig = alice.sign(b"hello")
    assert len(sig) == 64
    Ed25519PublicKey.from_public_bytes(alice.public_keys.sign).verify(sig, b"hello")
    assert alice.dh(bob.public_keys.dh) == bob.dh(alice.public_keys.dh)
    assert len(alice.dh(bob.public_keys.dh)) == 32


def test_dh_refuses_bad_peer_keys() -> None:
    alice = Identity.generate()
    with pytest.raises(SignalingError):
        alice.dh(bytes(31))
    with pytest.raises(SignalingError, match="X25519"):
        alice.dh(bytes(32))  # low-order point: all-zero shared secret


def test_from_private_bytes(vectors: dict[str, Any]) -> None:
    party = vectors["sender"]
    identity = Identity.from_private_bytes(
        bytes.fromhex(party["sign_private_hex"]), bytes.fromhex(party["dh_private_hex"])
    )
    assert identity.public_keys.sign.hex() == party["sign_public_hex"]
    assert identity.public_keys.dh.hex() == party["dh_public_hex"]
    with pytest.raises(SignalingError, match="'sign'"):
        Identity.from_private_bytes(bytes(31), bytes(32))
    with pytest.raises(SignalingError, match="'dh'"):
        Identity.from_private_bytes(bytes(32), bytes(64))


def test_repr_shows_no_private_key(tmp_path: Path) -> None:
    identity = Identity.generate()
    identity.save(tmp_path)
    stored = json.loads((tmp_path / KEY_FILE_NAME).read_text())
    text = repr(identity)
    assert identity.public_keys.fingerprint() in text
    assert stored["sign"] not in text and stored["dh"] not in text


# --------------------------------------------------------------------------- key file


@pytest.mark.usefixtures("permissive_umask")
def test_save_writes_mode_0600_json_and_load_reads_it_back(tmp_path: Path) -> None:
    identity = Identity.generate()
    path = identity.save(tmp_path / "state")
    assert path == tmp_path / "state" / KEY_FILE_NAME
    assert _mode(path) == 0o600
    stored = json.loads(path.read_text())
    assert set(stored) == {"sign", "dh"}
    assert len(b64u_decode(stored["sign"])) == 32 and len(b64u_decode(stored["dh"])) == 32
    assert Identity.load(tmp_path / "state").public_keys == identity.public_keys
    assert os.listdir(tmp_path / "state") == [KEY_FILE_NAME]


def test_load_or_create_creates_once_then_loads(tmp_path: Path) -> None:
    first = Identity.load_or_create(tmp_path / "new")
    assert _mode(tmp_path / "new" / KEY_FILE_NAME) == 0o600
    second = Identity.load_or_create(tmp_path / "new")
    assert first.public_keys == second.public_keys
    assert os.listdir(tmp_path / "new") == [KEY_FILE_NAME]


@pytest.mark.parametrize(
    "mode", [0o644, 0o640, 0o604, 0o660, 0o620, 0o602, 0o700], ids=lambda mode: f"{mode:04o}"
)
def test_key_file_accessible_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = Identity.generate().save(tmp_path)
    path.chmod(mode)
    if mode & 0o077:
        for load in (Identity.load, Identity.load_or_create):
            with pytest.raises(SignalingError) as excinfo:
                load(tmp_path)
            assert str(path) in str(excinfo.value)
            assert f"{mode:04o}" in str(excinfo.value)
        assert path.read_bytes()  # nothing was overwritten
    else:
        Identity.load(tmp_path)


def test_key_file_symlink_and_directory_are_refused(tmp_path: Path) -> None:
    real = Identity.generate().save(tmp_path / "real")
    (tmp_path / "link").mkdir()
    (tmp_path / "link" / KEY_FILE_NAME).symlink_to(real)
    with pytest.raises(SignalingError, match=re.escape(str(tmp_path / "link" / KEY_FILE_NAME))):
        Identity.load_or_create(tmp_path / "link")
    (tmp_path / "dir" / KEY_FILE_NAME).mkdir(parents=True)
    with pytest.raises(SignalingError):
        Identity.load_or_create(tmp_path / "dir")


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"not json",
        b"[]",
        b'{"sign": "AAAA"}',
        b'{"sign": "' + b"A" * 43 + b'", "dh": "' + b"A" * 42 + b'"}',
        b'{"sign": "' + b"A" * 43 + b'", "dh": "' + b"A" * 43 + b'", "x": 1}',
    ],
)
def test_corrupt_key_file_is_refused_naming_the_path(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / KEY_FILE_NAME
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, content)
    os.close(fd)
    with pytest.raises(SignalingError, match=re.escape(str(path))):
        Identity.load_or_create(tmp_path)
    assert path.read_bytes() == content


def test_load_of_a_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SignalingError, match="does not exist"):
        Identity.load(tmp_path)


def test_save_goes_through_an_exclusive_0600_temp_file_and_os_replace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[tuple[str, int, int]] = []
    replaced: list[tuple[str, str]] = []
    real_open, real_replace = os.open, os.replace

    def spy_open(path: Any, flags: int, mode: int = 0o777, **kw: Any) -> int:
        opened.append((os.fspath(path), flags, mode))
        return real_open(path, flags, mode, **kw)

    def spy_replace(src: Any, dst: Any) -> None:
        replaced.append((os.fspath(src), os.fspath(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "open", spy_open)
    monkeypatch.setattr(os, "replace", spy_replace)
    path = Identity.generate().save(tmp_path)

    tmp = replaced[0][0]
    assert replaced == [(tmp, str(path))]
    assert Path(tmp).parent == tmp_path and not Path(tmp).exists()
    flags, mode = next((f, m) for p, f, m in opened if p == tmp)
    assert flags & os.O_CREAT and flags & os.O_EXCL and mode == 0o600


@pytest.mark.parametrize("failing", ["replace", "fsync", "write"])
def test_failed_save_keeps_the_old_key_and_leaves_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    old = Identity.generate()
    path = old.save(tmp_path)
    before = path.read_bytes()

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, failing, boom)
    with pytest.raises(SignalingError, match="No space left"):
        Identity.generate().save(tmp_path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == [KEY_FILE_NAME]
    assert Identity.load(tmp_path).public_keys == old.public_keys


def test_save_replaces_an_existing_key(tmp_path: Path) -> None:
    Identity.generate().save(tmp_path)
    new = Identity.generate()
    new.save(tmp_path)
    assert Identity.load(tmp_path).public_keys == new.public_keys


def test_load_or_create_never_overwrites_a_key_written_concurrently(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    winner = Identity.generate()
    real_link = os.link

    def racing_link(src: Any, dst: Any, **kwargs: Any) -> None:
        winner.save(tmp_path)  # another process was faster
        real_link(src, dst, **kwargs)

    monkeypatch.setattr(os, "link", racing_link)
    loaded = Identity.load_or_create(tmp_path)
    assert loaded.public_keys == winner.public_keys
    assert os.listdir(tmp_path) == [KEY_FILE_NAME]


# --------------------------------------------------------------------------- errors


def test_key_changed_error_names_address_and_fingerprints() -> None:
    old, new = Identity.generate().public_keys, Identity.generate().public_keys
    error = KeyChangedError("door", old.fingerprint(), new.fingerprint())
    assert (error.address, error.old_fingerprint, error.new_fingerprint) == (
        "door",
        old.fingerprint(),
        new.fingerprint(),
    )
    assert "door" in str(error) and old.fingerprint() in str(error)
    assert new.fingerprint() in str(error)
    assert isinstance(error, SignalingError)
