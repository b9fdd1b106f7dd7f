"""The command line of the count-driven benchmarks (bench/call_setup.py and its siblings).

Each takes one option, how many calls (rings, runs) to measure, runs its asyncio ``run(count)``
with only errors logged, and prints the figures it returns as one indented JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
from collections.abc import Callable, Coroutine
from typing import Any


def run_and_print(
    description: str | None,
    run: Callable[[int], Coroutine[Any, Any, dict[str, Any]]],
    option: str,
    default: int,
) -> None:
    """Parse ``--<option> N`` (``default`` if not given), run ``run(N)``, print its JSON."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(f"--{option}", type=int, default=default)
    count = getattr(parser.parse_args(), option)
    logging.basicConfig(level=logging.ERROR)
    print(json.dumps(asyncio.run(run(count)), indent=2))
