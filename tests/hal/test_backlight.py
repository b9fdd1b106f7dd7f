"""The sysfs backlight on a temp tree laid out like /sys/class/backlight, and the null one."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from hal.backlight import NullBacklight, SysfsBacklight, make_sim_backlight_tree
from hal.errors import DeviceUnavailableError, HalError
from hal.gpio_specs import BacklightSpec


def read(device: Path, name: str) -> str:
    return (device / name).read_text().strip()


async def test_power_off_writes_1_and_on_writes_0(tmp_path: Path) -> None:
    device = make_sim_backlight_tree(tmp_path, "10-0045")
    backlight = SysfsBacklight(BacklightSpec(sysfs_root=str(tmp_path), device="10-0045"))
    await backlight.start()
    assert backlight.is_on and backlight.path == device
    await backlight.set_power(False)
    assert read(device, "bl_power") == "1" and not backlight.is_on
    await backlight.set_power(True)
    assert read(device, "bl_power") == "0" and backlight.is_on
    await backlight.close()


async def test_brightness_is_set_from_the_spec_and_capped_at_max(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    device = make_sim_backlight_tree(tmp_path, max_brightness=200)
    assert read(device, "brightness") == "200"
    dimmed = SysfsBacklight(BacklightSpec(sysfs_root=str(tmp_path), brightness=120))
    await dimmed.start()
    assert read(device, "brightness") == "120"
    await dimmed.close()
    too_bright = SysfsBacklight(BacklightSpec(sysfs_root=str(tmp_path), brightness=999))
    with caplog.at_level(logging.WARNING):
        await too_bright.start()
    assert read(device, "brightness") == "200" and "above max_brightness 200" in caplog.text
    await too_bright.close()


async def test_brightness_none_leaves_it_alone(tmp_path: Path) -> None:
    device = make_sim_backlight_tree(tmp_path)
    (device / "brightness").write_text("17\n")
    backlight = SysfsBacklight(BacklightSpec(sysfs_root=str(tmp_path)))
    await backlight.start()
    assert read(device, "brightness") == "17"
    await backlight.close()


async def test_a_missing_tree_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-class"
    backlight = SysfsBacklight(BacklightSpec(sysfs_root=str(missing)))
    with pytest.raises(DeviceUnavailableError, match=rf"no backlights under {missing}"):
        await backlight.start()
    with pytest.raises(DeviceUnavailableError, match="not started"):
        await backlight.set_power(False)
    await backlight.close()


async def test_a_missing_device_lists_the_ones_that_exist(tmp_path: Path) -> None:
    make_sim_backlight_tree(tmp_path, "rpi_backlight")
    backlight = SysfsBacklight(BacklightSpec(sysfs_root=str(tmp_path), device="10-0045"))
    with pytest.raises(
        DeviceUnavailableError,
        match=rf"no backlight {tmp_path / '10-0045'} \(available: 'rpi_backlight'\)",
    ):
        await backlight.start()


async def test_the_only_device_is_found_and_several_must_be_named(tmp_path: Path) -> None:
    first = make_sim_backlight_tree(tmp_path, "a")
    only = SysfsBacklight(BacklightSpec(sysfs_root=str(tmp_path)))
    await only.start()
    assert only.path == first
    await only.close()
    make_sim_backlight_tree(tmp_path, "b")
    ambiguous = SysfsBacklight(BacklightSpec(sysfs_root=str(tmp_path)))
    with pytest.raises(DeviceUnavailableError, match=r"several backlights.*'a', 'b'"):
        await ambiguous.start()


async def test_start_reads_the_power_state(tmp_path: Path) -> None:
    device = make_sim_backlight_tree(tmp_path)
    (device / "bl_power").write_text("4\n")  # FB_BLANK_POWERDOWN, left by someone else
    backlight = SysfsBacklight(BacklightSpec(sysfs_root=str(tmp_path)))
    await backlight.start()
    assert not backlight.is_on
    await backlight.close()
    assert read(device, "bl_power") == "0"


async def test_close_leaves_the_screen_on_and_is_idempotent(tmp_path: Path) -> None:
    device = make_sim_backlight_tree(tmp_path)
    backlight = SysfsBacklight(BacklightSpec(sysfs_root=str(tmp_path)))
    await backlight.start()
    await backlight.set_power(False)
    await backlight.close()
    assert read(device, "bl_power") == "0" and backlight.is_on
    (device / "bl_power").write_text("1\n")
    await backlight.close()
    assert read(device, "bl_power") == "1"  # a second close touches nothing
    with pytest.raises(DeviceUnavailableError, match="closed"):
        await backlight.set_power(True)
    with pytest.raises(DeviceUnavailableError, match="closed"):
        await backlight.start()


async def test_an_unwritable_file_is_a_hal_error(tmp_path: Path) -> None:
    device = make_sim_backlight_tree(tmp_path)
    backlight = SysfsBacklight(BacklightSpec(sysfs_root=str(tmp_path)))
    await backlight.start()
    (device / "bl_power").unlink()
    (device / "bl_power").mkdir()  # writing a directory fails for root too
    with pytest.raises(HalError, match=r"cannot write .*bl_power"):
        await backlight.set_power(False)
    (device / "bl_power").rmdir()
    await backlight.close()


def test_backlight_spec_refuses_paths_and_negative_brightness() -> None:
    with pytest.raises(HalError, match="plain name"):
        BacklightSpec(device="../x")
    with pytest.raises(HalError, match="brightness must be >= 0"):
        BacklightSpec(brightness=-1)


async def test_null_backlight_remembers_and_closes_on() -> None:
    backlight = NullBacklight()
    await backlight.start()
    await backlight.set_power(False)
    assert not backlight.is_on
    await backlight.close()
    assert backlight.is_on
