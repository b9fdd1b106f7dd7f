"""Two builds from one commit differ only in timestamps, and a role image only in its role.

See issue 7, section 2.

`make image` has built build/image/ once; this test builds again into a second directory that
starts from the same mmdebstrap base (hard-linked: the base is only read) and the same
cross-compiled AEC3 cache, as a door station's role image (`--role door`), then compares what
each build made the image's partitions from, the root directory and the boot partition's
files, entry by entry: type, mode, owner, content (sha256) and link target, not the times.
Everything the build adds to the base (the app, its wheels, bytecode, units, users, the
removal of secrets) is the same in both but the role file, so nothing random or build-specific
(a key, a password hash, a path of the build machine) is baked in.
The mmdebstrap base itself is Debian's, made reproducible by mmdebstrap with
SOURCE_DATE_EPOCH; it is not built twice here (15 minutes).
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from image.built import OUT, REPO, generic_image

SECOND = OUT.parent / "image-second-build"
SHARED = ("base-debian", "base-debian.stamp", "keyrings", "aec3-aarch64")
ROLE_FILES = {"usr/lib/callbox", "usr/lib/callbox/image-role"}

pytestmark = pytest.mark.timeout(900)


def entry(path: Path) -> tuple[str, int, int, int]:
    """What the image holds of one path, times left out."""
    st = path.lstat()
    if stat.S_ISLNK(st.st_mode):
        what = "link:" + os.readlink(path)
    elif stat.S_ISREG(st.st_mode):
        digest = hashlib.sha256()
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        what = "file:" + digest.hexdigest()
    elif stat.S_ISDIR(st.st_mode):
        what = "dir"
    else:
        what = f"special:{st.st_rdev}"
    return what, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid


def tree(root: Path) -> dict[str, tuple[str, int, int, int]]:
    """Every entry under `root` by relative path."""
    entries = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            entries[str(path.relative_to(root))] = entry(path)
    return entries


def differences(first: Path, second: Path) -> list[str]:
    a, b = tree(first), tree(second)
    lines = [f"only in the first build: {p}" for p in sorted(a.keys() - b.keys())]
    lines += [f"only in the second build: {p}" for p in sorted(b.keys() - a.keys())]
    lines += [f"{p}: {a[p]} != {b[p]}" for p in sorted(a.keys() & b.keys()) if a[p] != b[p]]
    return lines


@pytest.fixture(scope="module")
def second_build() -> Iterator[Path]:
    generic_image()
    if SECOND.exists():
        subprocess.run(["rm", "-rf", str(SECOND)], check=True)
    SECOND.mkdir(parents=True)
    for name in SHARED:
        if (OUT / name).exists():
            subprocess.run(["cp", "-al", str(OUT / name), str(SECOND / name)], check=True)
    result = subprocess.run(
        [
            "/usr/bin/python3",
            str(REPO / "image-build/build.py"),
            "--out",
            str(SECOND),
            "--pip",
            str(REPO / ".venv/bin/python"),
            "--role",
            "door",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"second build failed:\n{result.stderr[-3000:]}"
    yield SECOND
    subprocess.run(["rm", "-rf", str(SECOND)], check=True)


def role_image(second_build: Path) -> Path:
    return second_build / generic_image().name.replace(".img", "-door.img")


def test_two_builds_of_one_commit_differ_only_in_timestamps_and_role(second_build: Path) -> None:
    for part in ("rootfs", "bootfs"):
        found = differences(OUT / part, second_build / part)
        if part == "rootfs":
            expected = [f"only in the second build: {p}" for p in sorted(ROLE_FILES)]
            assert found[: len(expected)] == expected, found[:5]
            found = found[len(expected) :]
        assert not found, f"{part} differs beyond timestamps:\n" + "\n".join(found[:40])
    assert (second_build / "rootfs/usr/lib/callbox/image-role").read_text() == "door\n"


def test_the_role_image_is_named_for_its_role_and_has_the_same_layout(
    second_build: Path,
) -> None:
    first, second = generic_image(), role_image(second_build)
    assert second.exists(), sorted(p.name for p in second_build.glob("callbox-*"))
    assert (second_build / (second.name + ".zst.sha256")).exists()
    assert first.stat().st_size == second.stat().st_size
    with first.open("rb") as f, second.open("rb") as g:
        assert f.read(512) == g.read(512), "the MBRs (disk signature, partitions) differ"
