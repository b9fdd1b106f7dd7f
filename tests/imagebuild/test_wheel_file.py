"""The wheels the image build packs itself are ones pip installs, byte for byte the same twice."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from wheel_file import WHEEL_TAG, write_wheel


def pack(path: Path) -> None:
    write_wheel(
        path,
        "demo-pkg",
        "1.2.3",
        {"demo_pkg/__init__.py": b"VALUE = 42\n", "demo_pkg/_native.so": b"\x7fELF not really"},
        metadata="Summary: a test\n",
        licenses={"LICENSE": b"BSD\n"},
    )


def test_pip_installs_it_for_the_image_s_platform(tmp_path: Path) -> None:
    wheel = tmp_path / f"demo_pkg-1.2.3-{WHEEL_TAG}.whl"
    pack(wheel)
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps",
         "--only-binary=:all:", "--platform", "linux_aarch64", "--python-version", "3.11",
         "--implementation", "cp", "--abi", "cp311", "--target", str(target), str(wheel)],
        check=True,
    )  # fmt: skip
    assert (target / "demo_pkg/__init__.py").read_bytes() == b"VALUE = 42\n"
    info = target / "demo_pkg-1.2.3.dist-info"
    assert "Name: demo-pkg\nVersion: 1.2.3\nSummary: a test\n" in (info / "METADATA").read_text()
    assert (info / "licenses/LICENSE").read_text() == "BSD\n"


def test_the_same_files_make_the_same_wheel(tmp_path: Path) -> None:
    first, second = tmp_path / "a.whl", tmp_path / "b.whl"
    pack(first)
    pack(second)
    assert first.read_bytes() == second.read_bytes()
    assert not list(tmp_path.glob("*.partial"))
