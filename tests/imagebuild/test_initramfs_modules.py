"""The initramfs's module choice made on the build machine follows initramfs-tools' rules.

What matters most, the same ~900 modules as Debian's own ``MODULES=most`` run, is measured
by bench/initramfs.py (docs/performance.md: 926 modules, the same files) and checked on every
image by tests/image/test_boot_files.py; these tests pin the rules that choice rests on.
"""

from __future__ import annotations

from pathlib import Path

import initramfs_modules
from initramfs_modules import _find_modules


def touch(root: Path, *names: str) -> None:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"")


def test_excluded_directories_and_modules_are_pruned_as_find_prunes_them(tmp_path: Path) -> None:
    touch(
        tmp_path,
        "e1000.ko",
        "tun.ko",
        "wireless/ath/ath9k.ko",
        "usb/cdc_mbim.ko.xz",
        "usb/r8152.ko.zst",
        "README",
    )
    found = _find_modules(tmp_path, ("wireless", "tun.ko", "cdc_mbim.ko"))
    assert sorted(found) == ["e1000", "r8152"]


def test_a_missing_directory_adds_nothing(tmp_path: Path) -> None:
    assert _find_modules(tmp_path / "drivers/ide", ()) == []


def test_stage_and_unstage_leave_the_root_as_they_found_it(tmp_path: Path) -> None:
    (tmp_path / "usr/lib/modules").mkdir(parents=True)  # no kernel: nothing to choose
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    staged = initramfs_modules.stage(tmp_path)
    assert staged.modules == () and staged.firmware == ()
    assert (tmp_path / initramfs_modules.HOOK_PATH).stat().st_mode & 0o111
    assert "MODULES=list" in (tmp_path / initramfs_modules.BUILD_CONF_PATH).read_text()
    initramfs_modules.unstage(tmp_path)
    after = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert [p for p in after if p not in before and not (tmp_path / p).is_dir()] == []
