"""Pack an aarch64 CPython 3.11 wheel of files built here (pyalsaaudio, aec-audio-processing)."""

from __future__ import annotations

import base64
import hashlib
import zipfile
from collections.abc import Mapping
from pathlib import Path

WHEEL_TAG = "cp311-cp311-linux_aarch64"


def write_wheel(
    path: Path,
    dist: str,
    version: str,
    files: Mapping[str, bytes],
    *,
    metadata: str = "",
    licenses: Mapping[str, bytes] | None = None,
) -> None:
    """A wheel of `files` (archive name -> bytes) with its dist-info.

    The dist-info: METADATA (plus the `metadata` lines), WHEEL, the `licenses` and RECORD. Fixed
    timestamps, so two builds of the same files give the same wheel; written under a temporary name,
    then renamed.
    """
    info = f"{dist.replace('-', '_')}-{version}.dist-info"
    entries = {
        **files,
        **{f"{info}/licenses/{name}": data for name, data in (licenses or {}).items()},
        f"{info}/METADATA": (
            f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n{metadata}"
        ).encode(),
        f"{info}/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: callbox image-build\n"
            f"Root-Is-Purelib: false\nTag: {WHEEL_TAG}\n"
        ).encode(),
    }
    record = []
    for name, data in entries.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append(f"{info}/RECORD,,")
    entries[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    partial = path.with_name(path.name + ".partial")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            entry = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            entry.compress_type = zipfile.ZIP_DEFLATED
            entry.external_attr = (0o755 if name.endswith(".so") else 0o644) << 16
            zf.writestr(entry, data)
    partial.rename(path)
