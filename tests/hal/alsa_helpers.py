"""ALSA PCMs backed by files, through real alsa-lib: a test asoundrc in a temp directory.

``ALSA_CONFIG_PATH`` replaces alsa-lib's top configuration file (normally
/usr/share/alsa/alsa.conf, which pulls in the cards, /etc/asound.conf and ~/.asoundrc).
Pointing it at the file written here makes the tests hermetic: only the PCMs defined
below exist, so ``default`` or a name of the host's does not leak in. Since ``null`` is
then undefined too, each PCM defines its slave inline (``slave.pcm { type null }``).
alsa-lib reads the variable whenever a PCM opens and reloads its configuration when the
path changes, so every test gets its own files; it must be set before the PCM opens.

- ``playback``: the ``file`` plugin writing every frame the application writes to
  ``output`` (raw s16le), on a ``null`` slave that discards them;
- ``capture``: the ``file`` plugin on a ``null`` slave, whose frames are replaced by
  those read from ``input`` (raw s16le). Past the end of ``input`` the plugin copies
  nothing and the application gets whatever its buffer held: pad the input.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from support import need

from hal.alsa_pcm import file_pcms_config

PLAYBACK_PCM = "callbox_test_play"
CAPTURE_PCM = "callbox_test_capture"


@dataclass(frozen=True)
class FilePcms:
    """The PCM names of the test asoundrc and the files behind them."""

    config: Path
    playback: str
    capture: str
    output: Path
    input: Path

    def played(self, channels: int = 1) -> npt.NDArray[np.int16]:
        """What the playback PCM was given, shape (n,) for mono, (n, channels) otherwise."""
        samples = np.fromfile(self.output, dtype="<i2").astype(np.int16)
        return samples if channels == 1 else samples.reshape(-1, channels)


def file_pcms(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capture: npt.NDArray[np.int16] | None = None,
    output: Path | None = None,
) -> FilePcms:
    """Write the asoundrc (and ``capture`` as the raw input file) and point alsa-lib at it.

    ``output`` replaces the playback file (``/dev/full`` makes every flush fail). Skips
    (fails under ``make test``) without pyalsaaudio.
    """
    need(importlib.util.find_spec("alsaaudio") is not None, "pyalsaaudio")
    output = output or tmp_path / "played.raw"
    infile = tmp_path / "captured.raw"
    samples = capture if capture is not None else np.zeros(0, dtype=np.int16)
    samples.astype("<i2").tofile(infile)
    config = tmp_path / "asoundrc"
    config.write_text(file_pcms_config(PLAYBACK_PCM, CAPTURE_PCM, output, infile))
    monkeypatch.setenv("ALSA_CONFIG_PATH", str(config))
    return FilePcms(config, PLAYBACK_PCM, CAPTURE_PCM, output, infile)
