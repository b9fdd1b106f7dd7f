"""Cross-compile WebRTC AEC3 for the image: aec-audio-processing and our tuned binding.

PyPI's aec-audio-processing has no aarch64 wheel, so build.py gets one from here, built
on the x86_64 host with Debian's aarch64 cross compilers (qemu-user would take hours):

1. the package's sdist (`pip download`), unpacked;
2. its WebRTC audio processing library, as upstream's setup.py builds it (meson, release,
   shared; NEON, which upstream's meson.build turns on for aarch64) but with a meson cross
   file, abseil from the sdist's own subproject (never the host's) and only the library's
   target (no example program);
3. its SWIG module ``_webrtc_audio_processing`` from the pregenerated
   ``audio_processing_wrap.cpp`` and ``audio_processing_module.cpp``, with setup.py's
   flags, linked to that library with setup.py's ``$ORIGIN/files`` rpath;
4. a wheel in the x86 wheel's layout: the package's Python files, the SWIG module and
   ``aec_audio_processing/files/libwebrtc-audio-processing-2.so`` (the library, stored
   under that name as upstream does; its SONAME stays ``...-2.so.1``), plus the licenses;
5. callbox's binding ``services/media/_callbox_aec3.cpp`` with the Makefile's flags (plus
   the aarch64 defines the library was built with), against the image's CPython headers.

Everything lives in ``work``; the artifacts in ``work/out`` are reused while the version,
the binding's source and :data:`REVISION` are unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import click
from wheel_file import WHEEL_TAG, write_wheel

# Bump when this build changes in a way the version and the binding's sha256 do not show.
REVISION = "1"
REPO = Path(__file__).resolve().parent.parent
BINDING_SOURCE = REPO / "services" / "media" / "_callbox_aec3.cpp"
TRIPLET = "aarch64-linux-gnu"
EXT_SUFFIX = ".cpython-311-aarch64-linux-gnu.so"
LIBRARY_TARGET = "webrtc-audio-processing-2"  # upstream meson.build's library
LIBRARY = "libwebrtc-audio-processing-2.so"  # its name in the wheel
# upstream meson.build's dependencies: all from the sdist's abseil subproject
ABSEIL = (
    "absl_base",
    "absl_flags",
    "absl_strings",
    "absl_numeric",
    "absl_synchronization",
    "absl_bad_optional_access",
)
# the defines the library gets on aarch64 Linux (meson.build, modules/audio_processing)
WEBRTC_DEFINES = (
    "-DWEBRTC_POSIX",
    "-DWEBRTC_LINUX",
    "-DWEBRTC_ARCH_ARM64",
    "-DWEBRTC_HAS_NEON",
    "-DWEBRTC_APM_DEBUG_DUMP=0",
    "-DNDEBUG",
)
LOG = "aec3-aarch64.log"
TOOLS = {
    f"{TRIPLET}-gcc": "gcc-aarch64-linux-gnu",
    f"{TRIPLET}-g++": "g++-aarch64-linux-gnu",
    f"{TRIPLET}-ar": "binutils-aarch64-linux-gnu",
    f"{TRIPLET}-strip": "binutils-aarch64-linux-gnu",
    "meson": "meson",
    "ninja": "ninja-build",
}

Run = Callable[[Sequence[str | Path], str], None]


@dataclass(frozen=True)
class Aec3Artifacts:
    """What :func:`build_aec3_aarch64` made (or found in its cache)."""

    wheel: Path
    """``aec_audio_processing-<version>-cp311-cp311-linux_aarch64.whl``"""
    binding: Path
    """``_callbox_aec3.cpython-311-aarch64-linux-gnu.so``, for site-packages/services/media/"""
    reused: bool
    """True when both came from the cache, without compiling"""


def build_aec3_aarch64(
    run: Run,
    pip: list[str],
    work: Path,
    python_include: Callable[[], Path],
    version: str,
) -> Aec3Artifacts:
    """Cross-compile aec-audio-processing ``version`` and our binding for aarch64.

    ``run(argv, logname)`` runs each command (raising click.ClickException when one
    fails), ``pip`` is the pip command that downloads the sdist, ``work`` is this
    function's own directory (cache and scratch), ``python_include()`` gives the directory of
    the image's aarch64 ``Python.h`` (its parent has ``aarch64-linux-gnu/python3.11/
    pyconfig.h``); it is called only once the library is built (the long part), so it may
    wait for the image's base, which those headers are taken to match.
    Raises click.ClickException naming what is missing or what failed.
    """
    work = work.resolve()
    out = work / "out"
    wheel = out / f"aec_audio_processing-{version}-{WHEEL_TAG}.whl"
    binding = out / f"_callbox_aec3{EXT_SUFFIX}"
    stamp = out / "stamp.json"
    if not BINDING_SOURCE.is_file():
        raise click.ClickException(f"aec3 aarch64: {BINDING_SOURCE} not found")
    key = {
        "version": version,
        "binding_sha256": hashlib.sha256(BINDING_SOURCE.read_bytes()).hexdigest(),
        "revision": REVISION,
    }
    if wheel.is_file() and binding.is_file() and _read_stamp(stamp) == key:
        return Aec3Artifacts(wheel=wheel, binding=binding, reused=True)

    _check_tools()
    for scratch in (out, work / "src", work / "build"):
        shutil.rmtree(scratch, ignore_errors=True)
    out.mkdir(parents=True)
    src = _unpack(run, _download(run, pip, work / "sdist", version), work / "src")
    webrtc = src / "webrtc-audio-processing"
    library = _build_library(run, webrtc, work / "build", work / "cross.ini")
    abseil = _one(webrtc / "subprojects", "abseil-cpp-*/", "abseil's sources")
    include = _check_headers(python_include().resolve())
    py_includes: list[str | Path] = ["-I", include, "-I", include.parent]

    swig = out / f"_webrtc_audio_processing{EXT_SUFFIX}"
    run(
        [
            f"{TRIPLET}-g++",
            # setup.py's flags for Linux (its -DWEBRTC_HAS_NEON/ARCH_ARM64, wrong on x86,
            # are right here)
            "-std=c++17",
            "-O2",
            "-fPIC",
            "-shared",
            "-DWEBRTC_AUDIO_PROCESSING_ONLY",
            "-DWEBRTC_NS_FLOAT",
            "-DWEBRTC_CLOCK_TYPE_REALTIME",
            *WEBRTC_DEFINES,
            *("-I", src / "src", "-I", webrtc, "-I", webrtc / "webrtc", "-I", abseil),
            *py_includes,
            src / "src/audio_processing_wrap.cpp",
            src / "src/audio_processing_module.cpp",
            library,
            "-Wl,-rpath,$ORIGIN/files",
            "-o",
            swig,
        ],
        LOG,
    )
    run(
        [
            f"{TRIPLET}-g++",
            # the Makefile's aec3-build flags
            "-std=c++20",
            "-O2",
            "-fPIC",
            "-shared",
            "-fvisibility=hidden",
            *WEBRTC_DEFINES,
            *("-I", webrtc / "webrtc", "-I", abseil),
            *py_includes,
            BINDING_SOURCE,
            library,
            "-o",
            binding,
        ],
        LOG,
    )
    shipped = out / LIBRARY
    shutil.copyfile(library, shipped)
    run([f"{TRIPLET}-strip", "--strip-unneeded", shipped, swig, binding], LOG)

    package = "aec_audio_processing"
    files = {f"{package}/{py.name}": py.read_bytes() for py in sorted((src / "src").glob("*.py"))}
    files[f"{package}/files/__init__.py"] = b""
    files[f"{package}/files/{LIBRARY}"] = shipped.read_bytes()
    files[f"{package}/{swig.name}"] = swig.read_bytes()
    licenses = {
        "LICENSE": src / "LICENSE",
        "webrtc-audio-processing.COPYING": webrtc / "COPYING",
        "abseil-cpp.LICENSE": abseil / "LICENSE",
    }
    write_wheel(
        wheel,
        "aec-audio-processing",
        version,
        files,
        metadata="Summary: AEC(Acoustic Echo Cancellation) Audio Processing Module\n"
        "License: BSD-3-Clause\nRequires-Python: >=3.11\n",
        licenses={name: src.read_bytes() for name, src in licenses.items()},
    )
    shipped.unlink()
    swig.unlink()
    stamp.write_text(json.dumps(key, indent=2) + "\n")
    for scratch in (work / "src", work / "build"):
        shutil.rmtree(scratch)
    return Aec3Artifacts(wheel=wheel, binding=binding, reused=False)


def _read_stamp(stamp: Path) -> object:
    try:
        return json.loads(stamp.read_text())
    except (OSError, ValueError):
        return None


def _check_tools() -> None:
    missing = [f"{tool} (apt {pkg})" for tool, pkg in TOOLS.items() if not shutil.which(tool)]
    if missing:
        raise click.ClickException(f"aec3 aarch64: host tools missing: {', '.join(missing)}")


def _check_headers(python_include: Path) -> Path:
    pyconfig = python_include.parent / TRIPLET / "python3.11" / "pyconfig.h"
    for header in (python_include / "Python.h", pyconfig):
        if not header.is_file():
            raise click.ClickException(
                f"aec3 aarch64: {header} not found (the arm64 libpython3.11-dev headers)"
            )
    return python_include


def _one(directory: Path, pattern: str, what: str) -> Path:
    found = sorted(p for p in directory.glob(pattern) if p.is_dir() or not pattern.endswith("/"))
    if len(found) != 1:
        raise click.ClickException(
            f"aec3 aarch64: expected one {what} ({directory}/{pattern}), found {len(found)}"
        )
    return found[0]


def _download(run: Run, pip: list[str], sdists: Path, version: str) -> Path:
    """The sdist, downloaded once per version (kept across rebuilds)."""
    pattern = f"aec[-_]audio[-_]processing-{version}.tar.gz"
    if not list(sdists.glob(pattern)):
        sdists.mkdir(parents=True, exist_ok=True)
        # --no-binary for this package only: its build requirements (swig...) may be wheels
        run(
            [
                *pip,
                "download",
                "-q",
                "--no-deps",
                "--no-binary",
                "aec-audio-processing",
                "-d",
                sdists,
                f"aec-audio-processing=={version}",
            ],
            LOG,
        )
    return _one(sdists, pattern, f"aec-audio-processing {version} sdist")


def _unpack(run: Run, sdist: Path, dest: Path) -> Path:
    dest.mkdir(parents=True)
    # the sdist's files are mode 666: take root's umask, not its modes
    run(["tar", "-xzf", sdist, "-C", dest, "--no-same-owner", "--no-same-permissions"], LOG)
    src = _one(dest, "*/", f"top directory in {sdist.name}")
    if not (src / "webrtc-audio-processing" / "meson.build").is_file():
        raise click.ClickException(f"aec3 aarch64: {sdist.name} has no webrtc-audio-processing/")
    return src


def _build_library(run: Run, webrtc: Path, build: Path, cross: Path) -> Path:
    """Upstream's libwebrtc-audio-processing-2 for aarch64; returns the built file."""
    cross.write_text(
        "[binaries]\n"
        f"c = '{TRIPLET}-gcc'\n"
        f"cpp = '{TRIPLET}-g++'\n"
        f"ar = '{TRIPLET}-ar'\n"
        f"strip = '{TRIPLET}-strip'\n"
        "\n[host_machine]\n"
        "system = 'linux'\n"
        "cpu_family = 'aarch64'\n"
        "cpu = 'aarch64'\n"
        "endian = 'little'\n"
    )
    run(
        [
            "meson",
            "setup",
            "--cross-file",
            cross,
            "--buildtype=release",
            "--default-library=shared",
            "-Dneon=enabled",
            "--wrap-mode=nodownload",  # the sdist holds abseil: no network here
            f"--force-fallback-for={','.join(ABSEIL)}",
            build,
            webrtc,
        ],
        LOG,
    )
    # meson's own list of targets names the library's file: build only that one
    targets = json.loads((build / "meson-info" / "intro-targets.json").read_text())
    outputs = [
        Path(t["filename"][0])
        for t in targets
        if t["name"] == LIBRARY_TARGET and t["type"] == "shared library"
    ]
    if len(outputs) != 1:
        raise click.ClickException(
            f"aec3 aarch64: meson defines {len(outputs)} shared libraries named"
            f" {LIBRARY_TARGET!r}, expected 1 (has upstream's meson.build changed?)"
        )
    library = outputs[0]
    run(["ninja", "-C", build, f"-j{os.cpu_count() or 1}", library.relative_to(build)], LOG)
    if not library.is_file():
        raise click.ClickException(f"aec3 aarch64: ninja succeeded but {library} is missing")
    return library
