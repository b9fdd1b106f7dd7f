"""The ``callbox`` command line: ``python -m device.cli`` and the ``callbox`` console script.

One click group (`main`) with the administration, pairing, system and web commands; the
modules behind it are private to this package.
"""

from device.cli._main import main

__all__ = [
    "main",
]
