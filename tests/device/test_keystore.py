"""The endpoint's identity on disk, as the daemon and an installer meet it."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from device.config._keystore import (
    KeystoreError,
    identity_path,
    keys_dir,
    load_or_create_identity,
    public_keys_of,
    wipe_keys,
)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def loose_umask() -> Iterator[None]:
    """A umask that would leave new files world-readable."""
    previous = os.umask(0)
    yield
    os.umask(previous)


def test_first_start_creates_private_keys(state_dir: Path, loose_umask: None) -> None:
    identity = load_or_create_identity(state_dir)
    path = identity_path(state_dir)
    assert path == state_dir / "keys" / "identity.key"
    assert mode_of(keys_dir(state_dir)) == 0o700
    assert mode_of(path) == 0o600
    assert stat.S_ISREG(os.lstat(path).st_mode)
    assert [p.name for p in keys_dir(state_dir).iterdir()] == ["identity.key"]  # no temp files
    assert identity.public_keys == public_keys_of(state_dir)


def test_restart_loads_the_same_identity(state_dir: Path) -> None:
    first = load_or_create_identity(state_dir)
    content = identity_path(state_dir).read_bytes()
    second = load_or_create_identity(state_dir)
    assert second.public_keys == first.public_keys
    assert identity_path(state_dir).read_bytes() == content
    assert second.sign(b"door") == first.sign(b"door")  # Ed25519 is deterministic


def test_public_keys_of_never_creates_an_identity(state_dir: Path) -> None:
    with pytest.raises(KeystoreError, match="no identity yet") as caught:
        public_keys_of(state_dir)
    assert str(identity_path(state_dir)) in str(caught.value)
    assert not keys_dir(state_dir).exists()


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"", "not valid JSON"),
        (b"\x00\x13garbage", "not valid JSON"),
        (b'{"sign": "AAAA"}\n', "must be a JSON object with 'sign' and 'dh'"),
        (b'{"sign": "AAAA", "dh": "AAAA"}\n', "must decode to 32 bytes"),
    ],
)
def test_corrupt_key_file_is_refused_and_kept(
    state_dir: Path, content: bytes, problem: str
) -> None:
    load_or_create_identity(state_dir)
    path = identity_path(state_dir)
    path.write_bytes(content)
    for load in (load_or_create_identity, public_keys_of):
        with pytest.raises(KeystoreError, match=problem) as caught:
            load(state_dir)
        assert str(path) in str(caught.value)
    assert path.read_bytes() == content  # never replaced by a new identity


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644])
def test_key_file_readable_by_others_is_refused(state_dir: Path, mode: int) -> None:
    load_or_create_identity(state_dir)
    path = identity_path(state_dir)
    path.chmod(mode)
    with pytest.raises(KeystoreError) as caught:
        load_or_create_identity(state_dir)
    message = str(caught.value)
    assert str(path) in message
    assert f"mode {mode:04o}" in message
    assert f"chmod 600 {path}" in message
    with pytest.raises(KeystoreError, match="accessible by group or others"):
        public_keys_of(state_dir)


def test_key_file_that_is_not_a_file_is_refused(state_dir: Path) -> None:
    identity_path(state_dir).mkdir(parents=True)
    with pytest.raises(KeystoreError, match="not a regular file") as caught:
        load_or_create_identity(state_dir)
    assert str(identity_path(state_dir)) in str(caught.value)


def test_key_file_symlink_is_refused(state_dir: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    load_or_create_identity(elsewhere)
    keys_dir(state_dir).mkdir(parents=True)
    identity_path(state_dir).symlink_to(identity_path(elsewhere))
    with pytest.raises(KeystoreError, match="cannot open key file") as caught:
        load_or_create_identity(state_dir)
    assert str(identity_path(state_dir)) in str(caught.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a mode 0000 file anyway")
def test_unreadable_key_file_is_refused(state_dir: Path) -> None:
    load_or_create_identity(state_dir)
    identity_path(state_dir).chmod(0)
    with pytest.raises(KeystoreError, match="Permission denied"):
        load_or_create_identity(state_dir)


def test_key_directory_that_is_a_symlink_is_refused(state_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "other").mkdir()
    state_dir.mkdir()
    keys_dir(state_dir).symlink_to(tmp_path / "other")
    with pytest.raises(KeystoreError, match="not a directory"):
        load_or_create_identity(state_dir)


def test_loosened_key_directory_is_tightened(
    state_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = load_or_create_identity(state_dir)
    keys_dir(state_dir).chmod(0o755)
    with caplog.at_level(logging.WARNING, logger="device.config._keystore"):
        again = load_or_create_identity(state_dir)
    assert again.public_keys == first.public_keys
    assert mode_of(keys_dir(state_dir)) == 0o700
    assert "had mode 0755" in caplog.text


def test_wipe_keys_gives_a_new_identity_on_next_start(state_dir: Path) -> None:
    old = load_or_create_identity(state_dir).public_keys
    assert wipe_keys(state_dir) is True
    assert not keys_dir(state_dir).exists()
    assert state_dir.is_dir()
    with pytest.raises(KeystoreError, match="no identity yet"):
        public_keys_of(state_dir)
    assert load_or_create_identity(state_dir).public_keys != old
    assert wipe_keys(state_dir) is True
    assert wipe_keys(state_dir) is False


def test_wipe_keys_refuses_a_symlinked_key_directory(state_dir: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep").write_text("x")
    state_dir.mkdir()
    keys_dir(state_dir).symlink_to(other)
    with pytest.raises(KeystoreError, match="not a directory"):
        wipe_keys(state_dir)
    assert (other / "keep").read_text() == "x"
