"""Puts ``tests/`` on ``sys.path`` so that a bench script imports the test harnesses.

The sites the benchmarks measure (``harness.simsite``, ``harness.phonesite``,
``harness.peer_process``) are test harnesses, not part of the shipped package. A script run
as ``.venv/bin/python bench/x.py`` has only ``bench/`` on its path: it imports this module
before them.
"""

from __future__ import annotations

import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests"
"""The directory that holds ``harness/`` (and the fakes a benchmark may use)."""

if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))
