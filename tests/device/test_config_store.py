"""``callbox config`` on a real file: refused changes lose nothing, accepted ones keep the rest.

An accepted change keeps the administrator's comments, the previous file and the file's mode and
owner.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import stat
import threading
from pathlib import Path

import pytest

from device.config import ConfigError
from device.config._store import ConfigStore, parse_value
from services.signaling.contacts import Right
from services.signaling.identity import Identity, b64u_decode, b64u_encode

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "callbox.example.toml"
MINIMAL = 'role = "indoor"  # an indoor unit\naddress = "flat1"\nsite = "home"\n'


@pytest.fixture
def store(tmp_path: Path) -> ConfigStore:
    """The documented example installed as /etc/callbox/callbox.toml in a temp dir."""
    directory = tmp_path / "etc"
    directory.mkdir()
    shutil.copyfile(EXAMPLE, directory / "callbox.toml")
    return ConfigStore(directory / "callbox.toml")


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in directory.iterdir()}


# One bad value per section: key, value as typed after `callbox config set KEY`, the key the
# error names (an item of a list names its index) and the reason.
BAD_VALUES = [
    ("role", "kitchen", "role", "must be 'door' or 'indoor'"),
    ("address", '"Front Door"', "address", "not a valid name"),
    ("site", "my site", "site", "not a valid name"),
    ("targets", "[]", "targets", "needs at least one address"),
    ("targets", '["flat1", "Flat 2"]', "targets.1", "not a valid name"),
    ("broker.port", "70000", "broker.port", "must be <= 65535 (got 70000)"),
    ("contacts.1.sign_key", "abc", "contacts.1.sign_key", "must decode to 32 bytes, not 2"),
    ("inputs.doorbell.min_press_ms", "-1", "inputs.doorbell.min_press_ms", "must be >= 0"),
    ("relay.pulse_ms", "20000", "relay.pulse_ms", "longer than relay.max_on_ms"),
    ("leds.status.pin", "GPIO17", "leds.status.pin", "already used by inputs.doorbell.pin"),
    ("proximity.kind", "spi", "proximity.kind", "must be 'gpio' or 'i2c'"),
    ("backlight.device", "../x", "backlight.device", "not a path"),
    ("gpio.pin_factory", "mock", "gpio.pin_factory", "only allowed with board = 'sim'"),
    ("audio.speaker", "my speaker", "audio.speaker", "without spaces"),
    ("camera.device", '"front"', "camera.device", "is not a Pi camera"),
    ("call.ring_timeout_s", "0", "call.ring_timeout_s", "must be > 0 (got 0)"),
    ("network.addresses", '["192.168.1.300"]', "network.addresses.0", "not an IP address"),
    ("network.interfaces", '["eth 0"]', "network.interfaces.0", "not a network interface"),
    ("dnd.schedule", '["22:00-22:00"]', "dnd.schedule.0", "starts and ends at the same time"),
    ("snapshots.keep_count", "many", "snapshots.keep_count", "must be an integer, not a string"),
    ("logging.level", "verbose", "logging.level", "must be 'DEBUG', 'INFO', 'WARNING' or 'ERROR'"),
    ("call.ringtimeout", "30", "call.ringtimeout", "unknown key; did you mean 'ring_timeout_s'?"),
    ("colour", "blue", "colour", "unknown key"),
]


@pytest.mark.parametrize(
    ("key", "value", "named", "reason"), BAD_VALUES, ids=[f"{k}={v}" for k, v, _, _ in BAD_VALUES]
)
def test_a_bad_value_is_refused_and_the_file_stays_byte_for_byte(
    store: ConfigStore, key: str, value: str, named: str, reason: str
) -> None:
    before = snapshot(store.path.parent)
    with pytest.raises(ConfigError) as info:
        store.set(key, value)
    assert str(info.value).startswith(f"{store.path}: {named}: ")
    assert reason in info.value.reason
    assert snapshot(store.path.parent) == before  # unchanged, no temp file, no .bak


def test_a_valid_value_is_written_keeping_comments_and_the_previous_file(
    store: ConfigStore,
) -> None:
    old = store.path.read_text()
    config = store.set("call.ring_timeout_s", "45")
    assert config.call.ring_timeout_s == 45
    new = store.path.read_text()
    changed = [(a, b) for a, b in zip(old.splitlines(), new.splitlines(), strict=True) if a != b]
    assert changed == [
        (
            "ring_timeout_s = 30        # unanswered calls end after this long",
            "ring_timeout_s = 45        # unanswered calls end after this long",
        )
    ]
    assert store.backup_path.read_text() == old
    assert store.load().call.ring_timeout_s == 45
    assert sorted(p.name for p in store.path.parent.iterdir()) == [
        "callbox.toml",
        "callbox.toml.bak",
    ]


def test_set_values_of_list_items_and_strings(store: ConfigStore) -> None:
    assert store.set("contacts.1.name", "Flat 1 mobile").contact_entries[1].name == "Flat 1 mobile"
    assert store.set("name", '"Gate"').name == "Gate"
    assert store.set("targets", '["flat1"]').targets == ("flat1",)
    assert store.set("relay.pin", "23").io_spec().relay.pin == "GPIO23"  # type: ignore[union-attr]
    assert "pin = 23             # a pin with a default pull-down" in store.show()


def test_set_creates_missing_tables(tmp_path: Path) -> None:
    store = ConfigStore(tmp_path / "callbox.toml")
    store.path.write_text(MINIMAL)
    config = store.set("inputs.doorbell.pin", "GPIO17")
    assert config.inputs.doorbell is not None and config.inputs.doorbell.pin == "GPIO17"
    assert store.path.read_text() == MINIMAL + '\n[inputs.doorbell]\npin = "GPIO17"\n'


def test_a_list_item_that_does_not_exist_is_named(store: ConfigStore) -> None:
    before = snapshot(store.path.parent)
    with pytest.raises(ConfigError) as info:
        store.set("contacts.2.name", "Flat 3")
    assert info.value.key == "contacts.2" and "there are 2 items" in info.value.reason
    with pytest.raises(ConfigError) as info:
        store.set("call.fps.max", "3")
    assert info.value.key == "call.fps" and "is a value, not a table" in info.value.reason
    with pytest.raises(ConfigError, match="not a key path"):
        store.set("call..fps", "3")
    assert snapshot(store.path.parent) == before


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("30", 30),
        ("true", True),
        ('"x"', "x"),
        ('["a", "b"]', ["a", "b"]),
        ("0x13", 0x13),
        ("Front door", "Front door"),
        ("", ""),
        ("1\nrole = 'indoor'", "1\nrole = 'indoor'"),
        ('__import__("os").system("touch pwned")', '__import__("os").system("touch pwned")'),
    ],
)
def test_a_value_is_a_toml_value_or_else_a_string(text: str, value: object) -> None:
    assert parse_value(text) == value


def test_values_are_data_never_code(
    store: ConfigStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = store.set("name", "__import__('os').system('touch pwned')")
    assert config.name == "__import__('os').system('touch pwned')"
    assert not (tmp_path / "pwned").exists()
    before = snapshot(store.path.parent)
    with pytest.raises(ConfigError, match=r"call\.fps: must be an integer, not a string"):
        store.set("call.fps", '25\nrole = "indoor"')  # no smuggled second key
    assert snapshot(store.path.parent) == before


def test_get_reads_values_in_force_including_defaults(store: ConfigStore) -> None:
    assert store.get("call.fps") == 30
    assert store.get("contacts.0.name") == "Flat 1"
    assert store.get("inputs.doorbell") == {
        "pin": "GPIO17",
        "pull_up": True,
        "debounce_ms": 20,
        "min_press_ms": 50,
    }
    minimal = ConfigStore(store.path.with_name("minimal.toml"))
    minimal.path.write_text(MINIMAL)
    assert minimal.get("call.ring_timeout_s") == 30
    with pytest.raises(ConfigError) as info:
        minimal.get("relay.pin")
    assert (info.value.key, info.value.reason) == ("relay", "is not set")


@pytest.mark.parametrize("key", ["call.nope", "nope", "contacts.7.name", "call.fps.x"])
def test_get_of_a_missing_key_names_it(store: ConfigStore, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        store.get(key)
    assert str(info.value) == f"{store.path}: {key}: no such key"


def test_a_file_with_a_syntax_error_is_named_and_left_alone(store: ConfigStore) -> None:
    store.path.write_text(MINIMAL + "[call\nfps = 30\n")
    before = snapshot(store.path.parent)
    with pytest.raises(ConfigError, match="line 4"):
        store.set("call.fps", "25")
    with pytest.raises(ConfigError, match="line 4"):
        store.validate()
    assert snapshot(store.path.parent) == before


def test_validate_checks_another_file_without_touching_anything(
    store: ConfigStore, tmp_path: Path
) -> None:
    assert store.validate().address == "door"
    candidate = tmp_path / "candidate.toml"
    candidate.write_text(MINIMAL + "[call]\nfps = 0\n")
    with pytest.raises(ConfigError, match=f"{candidate}: call.fps: must be >= 1"):
        store.validate(candidate)


def test_the_file_keeps_its_mode_and_owner(store: ConfigStore) -> None:
    store.path.chmod(0o600)
    if os.geteuid() == 0:
        os.chown(store.path, 1234, 4321)
    store.set("call.fps", "25")
    info = store.path.stat()
    assert stat.S_IMODE(info.st_mode) == 0o600
    assert stat.S_IMODE(store.backup_path.stat().st_mode) == 0o600
    if os.geteuid() == 0:
        assert (info.st_uid, info.st_gid) == (1234, 4321)


def test_a_new_file_is_0640_whatever_the_umask(tmp_path: Path) -> None:
    store = ConfigStore(tmp_path / "etc" / "callbox.toml")
    old_umask = os.umask(0)
    try:
        store.install(MINIMAL)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o640
    assert not store.backup_path.exists()


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(
    store: ConfigStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_replace = os.replace

    def disk_full(src: str | Path, dst: str | Path) -> None:
        if Path(dst) == store.path:
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    old = store.path.read_bytes()
    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises(ConfigError, match="cannot write the file: No space left on device"):
        store.set("call.fps", "25")
    assert store.path.read_bytes() == old
    assert sorted(p.name for p in store.path.parent.iterdir()) == [
        "callbox.toml",
        "callbox.toml.bak",
    ]


def test_concurrent_sets_lose_no_update(tmp_path: Path) -> None:
    store = ConfigStore(tmp_path / "callbox.toml")
    store.path.write_text(MINIMAL)
    errors: list[BaseException] = []

    def set_led(number: int) -> None:
        try:
            ConfigStore(store.path).set(f"leds.led{number}.pin", f"GPIO{number}")
        except BaseException as err:  # noqa: BLE001 - reported by the assertion below
            errors.append(err)

    threads = [threading.Thread(target=set_led, args=(n,)) for n in range(4, 20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors
    assert sorted(store.load().leds) == sorted(f"led{n}" for n in range(4, 20))


def new_keys() -> tuple[str, str]:
    public = Identity.generate().public_keys
    return b64u_encode(public.sign), b64u_encode(public.dh)


def test_set_many_changes_a_contacts_keys_in_one_write(store: ConfigStore) -> None:
    sign, dh = new_keys()
    config = store.set_many({"contacts.0.sign_key": sign, "contacts.0.dh_key": dh})
    assert b64u_encode(config.contacts()[0].keys.dh) == dh
    before = snapshot(store.path.parent)
    with pytest.raises(ConfigError) as info:
        store.set_many({"contacts.0.sign_key": new_keys()[0], "contacts.0.dh_key": "short"})
    assert info.value.key == "contacts.0.dh_key"
    assert snapshot(store.path.parent) == before


def test_add_contact_appends_a_contacts_table(store: ConfigStore, tmp_path: Path) -> None:
    sign, dh = new_keys()
    old = store.show()
    config = store.add_contact("flat2", sign, dh, name="Flat 2", rights=["unlock"])
    assert [c.address for c in config.contacts()] == ["flat1", "flat1-phone", "flat2"]
    assert config.contacts()[2].rights == frozenset({Right.UNLOCK})
    block = (
        f'[[contacts]]\naddress = "flat2"\nsign_key = "{sign}"\ndh_key = "{dh}"\n'
        'name = "Flat 2"\nrights = ["unlock"]\n\n'
    )
    # after the last contact, before the comment that introduces the next section
    assert f'rights = ["unlock"]\n\n{block}# Buttons and switches' in store.show()
    assert store.show().replace(block, "", 1) == old
    before = snapshot(store.path.parent)
    with pytest.raises(ConfigError, match=r"'flat2' is already contacts\.2"):
        store.add_contact("flat2", *new_keys())
    assert snapshot(store.path.parent) == before
    minimal = ConfigStore(tmp_path / "minimal.toml")
    minimal.path.write_text(MINIMAL)
    assert minimal.add_contact("door", sign, dh).contacts()[0].address == "door"
    inline = ConfigStore(tmp_path / "inline.toml")
    inline.path.write_text(MINIMAL.replace("site", "contacts = []\nsite"))
    assert inline.add_contact("door", sign, dh).contacts()[0].keys.sign == b64u_decode(sign)


# --------------------------------------------------------------------- first boot


def test_first_boot_installs_the_boot_partition_file_once(
    store: ConfigStore, tmp_path: Path
) -> None:
    boot = tmp_path / "boot"
    boot.mkdir()
    src = boot / "callbox.toml"
    src.write_text(MINIMAL)
    previous = store.path.read_bytes()
    assert store.import_first_boot(src) is True
    assert store.path.read_text() == MINIMAL
    assert store.backup_path.read_bytes() == previous
    assert not src.exists() and (boot / "callbox.toml.imported").read_text() == MINIMAL
    assert store.first_boot_marker == store.path.with_name("callbox.toml.first-boot-sha256")
    assert store.first_boot_marker.read_text() == sha256(MINIMAL) + "\n"
    assert store.import_first_boot(src) is False


def test_first_boot_into_an_empty_system(tmp_path: Path) -> None:
    src = tmp_path / "callbox.toml"
    src.write_text(MINIMAL)
    store = ConfigStore(tmp_path / "etc" / "callbox" / "callbox.toml")
    assert store.import_first_boot(src)
    assert store.load().address == "flat1"
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o640


def test_an_invalid_first_boot_file_is_left_in_place_and_logged(
    store: ConfigStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    src = tmp_path / "callbox.toml"
    src.write_text(MINIMAL + "[relay]\npin = 'GPIO99'\n")
    before = snapshot(store.path.parent)
    with caplog.at_level(logging.ERROR), pytest.raises(ConfigError) as info:
        store.import_first_boot(src)
    assert str(info.value).startswith(f"{src}: relay.pin: 'GPIO99' is not on the header")
    assert src.exists() and not src.with_name("callbox.toml.imported").exists()
    assert snapshot(store.path.parent) == before
    assert "relay.pin" in caplog.text


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture
def read_only_boot(tmp_path: Path) -> Path:
    """A first-boot file that cannot be renamed, even by root.

    ``callbox.toml.imported`` is a directory that is not empty (as /boot is read-only to the daemon
    under ProtectSystem).
    """
    boot = tmp_path / "boot"
    (boot / "callbox.toml.imported").mkdir(parents=True)
    (boot / "callbox.toml.imported" / "keep").write_text("")
    src = boot / "callbox.toml"
    src.write_text(MINIMAL)
    return src


def test_a_first_boot_file_that_cannot_be_renamed_is_imported_once(
    store: ConfigStore, read_only_boot: Path, caplog: pytest.LogCaptureFixture
) -> None:
    src = read_only_boot
    with caplog.at_level(logging.INFO, logger="device.config._store"):
        assert store.import_first_boot(src) is True
    assert store.path.read_text() == MINIMAL and src.read_text() == MINIMAL
    assert store.first_boot_marker.read_text().strip() == sha256(MINIMAL)
    assert stat.S_IMODE(store.first_boot_marker.stat().st_mode) == 0o640
    rename = [r for r in caplog.records if "cannot rename" in r.getMessage()]
    assert [r.levelno for r in rename] == [logging.INFO]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    store.set("call.fps", "25")  # the administrator's change after the first boot
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="device.config._store"):
        assert store.import_first_boot(src) is False  # the next start
    assert "already imported" in caplog.text
    assert store.load().call.fps == 25
    assert store.import_first_boot(src) is False


def test_an_edited_first_boot_file_is_imported_again(
    store: ConfigStore, read_only_boot: Path
) -> None:
    src = read_only_boot
    assert store.import_first_boot(src) is True
    store.set("call.fps", "25")
    edited = MINIMAL.replace("flat1", "flat2")
    src.write_text(edited)
    assert store.import_first_boot(src) is True
    assert store.load().address == "flat2" and store.load().call.fps == 30
    assert store.first_boot_marker.read_text().strip() == sha256(edited)
    assert store.import_first_boot(src) is False


def test_an_edited_first_boot_file_that_is_invalid_is_refused(
    store: ConfigStore, read_only_boot: Path
) -> None:
    src = read_only_boot
    assert store.import_first_boot(src) is True
    src.write_text(MINIMAL + "[network]\naddresses = ['flat1']\n")
    before = snapshot(store.path.parent)
    with pytest.raises(ConfigError) as info:
        store.import_first_boot(src)
    assert info.value.path == src and info.value.key == "network.addresses.0"
    assert snapshot(store.path.parent) == before  # the marker still names the first import


def test_the_first_boot_file_is_imported_again_when_the_configuration_is_gone(
    store: ConfigStore, read_only_boot: Path
) -> None:
    assert store.import_first_boot(read_only_boot) is True
    store.path.unlink()
    assert store.import_first_boot(read_only_boot) is True
    assert store.load().address == "flat1"


def test_a_marker_that_cannot_be_written_is_logged_not_fatal(
    store: ConfigStore, read_only_boot: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (store.first_boot_marker / "in-the-way").mkdir(parents=True)
    with caplog.at_level(logging.INFO, logger="device.config._store"):
        assert store.import_first_boot(read_only_boot) is True
    assert store.path.read_text() == MINIMAL
    assert "cannot record the first-boot import" in caplog.text
    assert not [p for p in store.path.parent.iterdir() if p.name.endswith(".tmp")]
