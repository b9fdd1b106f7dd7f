"""How long an access check takes, and that it does not depend on what was typed.

Run: ``.venv/bin/python bench/access_check.py [--rounds 15]``. Prints one JSON object.

A real ``access.json`` in a temporary directory with 1, 50 and 300 entries: a 6-digit PIN
and a Wiegand card enrolled the way ``callbox access add`` does (the real scrypt), the
rest filler entries with random hashes (to the check, which compares a hash with every
entry, they are entries like any other). Each round checks, in its own seeded shuffled
order (so no case always follows another): the right code,
wrong codes sharing 0 .. 5 leading digits with it, a known card and an unknown card, each
through `AccessControl.check_code`/`check_card` (file lock, read, scrypt, compare with
every entry, file write), lockout off. Figures: the median per case in ms of wall time
(what someone at the keypad could time) and of process CPU time (the same work, less
moved by other processes on a shared machine), and each case's median over the right
code's (timing independence: ~1.0 is what the design wants; the lockout, not the timing,
is what stops guessing). ``derive_ms``: scrypt alone.
"""

from __future__ import annotations

import asyncio
import os
import platform
import random
import secrets
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import tests_path  # noqa: F401 - puts tests/ on sys.path for the harness imports
from harness.bench_cli import run_and_print

from hal.cards import CardRead
from services.access import AccessControl, AccessEntry, AccessStore, EntryKind, LockoutPolicy
from services.access.enroll import Enrollment, add_entry

CODE = "731904"
CARD = CardRead("entrance", "wiegand26", "12:34567")
UNKNOWN_CARD = CardRead("entrance", "wiegand26", "12:34568")
SIZES = (1, 50, 300)
NO_LOCKOUT = LockoutPolicy(max_attempts=1_000_000)


def wrong_code(shared: int) -> str:
    """A wrong 6-digit code whose first ``shared`` digits are the right code's."""
    differ = str((int(CODE[shared]) + 5) % 10)
    return CODE[:shared] + differ + "0" * (len(CODE) - shared - 1)


def make_list(directory: Path, size: int) -> AccessStore:
    """The code, the card and ``size - 2`` filler entries (at least the code)."""
    store = AccessStore(directory)
    add_entry(store, Enrollment(EntryKind.PIN, "Resident", CODE, flat="1"))
    if size > 1:
        add_entry(store, Enrollment(EntryKind.CARD, "Card", CARD.card_id, flat="1"))
    with store.locked():
        access = store.read()
        filler = tuple(
            AccessEntry(
                id=f"f{index:05x}",
                kind=EntryKind.PIN,
                name=f"Filler {index}",
                digest=secrets.token_bytes(32),
                kdf=access.current_kdf,
            )
            for index in range(max(size - len(access.entries), 0))
        )
        store.write(access.with_entries(access.entries + filler))
    return store


async def measure(store: AccessStore, rounds: int, cards: bool) -> dict[str, Any]:
    """Median ms per case over ``rounds`` interleaved rounds, and ratios to the right code."""
    control = AccessControl(store, policy=NO_LOCKOUT)
    cases: dict[str, Any] = {"right_code": lambda: control.check_code(CODE, via="bench")}
    for shared in range(len(CODE)):
        code = wrong_code(shared)
        cases[f"wrong_code_{shared}_shared"] = lambda c=code: control.check_code(c, via="bench")
    if cards:
        cases["known_card"] = lambda: control.check_card(CARD)
    cases["unknown_card"] = lambda: control.check_card(UNKNOWN_CARD)
    wall: dict[str, list[float]] = {name: [] for name in cases}
    cpu: dict[str, list[float]] = {name: [] for name in cases}
    order = list(cases)
    shuffler = random.Random(19)  # each round in its own order: no case always follows another
    for _ in range(rounds):
        shuffler.shuffle(order)
        for name in order:
            check = cases[name]
            start, start_cpu = time.perf_counter(), time.process_time()
            decision = await check()
            wall[name].append((time.perf_counter() - start) * 1000)
            cpu[name].append((time.process_time() - start_cpu) * 1000)
            assert decision.granted == (name in ("right_code", "known_card")), name
    return {"wall": _figures(wall), "cpu": _figures(cpu)}


def _figures(times: dict[str, list[float]]) -> dict[str, Any]:
    medians = {name: round(statistics.median(values), 2) for name, values in times.items()}
    base = medians["right_code"]
    ratios = {name: round(value / base, 3) for name, value in medians.items()}
    return {"median_ms": medians, "ratio_to_right_code": ratios}


async def run(rounds: int) -> dict[str, Any]:
    """Every list size, one after the other."""
    result: dict[str, Any] = {
        "rounds": rounds,
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        for size in SIZES:
            directory = Path(tmp) / str(size)
            store = await asyncio.to_thread(make_list, directory, size)
            params = (await asyncio.to_thread(store.read)).kdf
            result["kdf"] = {"name": "scrypt", "n": params.n, "r": params.r, "p": params.p}
            result[f"entries_{size}"] = await measure(store, rounds, cards=size > 1)
        derive = []
        for _ in range(rounds):
            start = time.perf_counter()
            await asyncio.to_thread(params.derive, "code", CODE)
            derive.append((time.perf_counter() - start) * 1000)
        result["derive_ms"] = round(statistics.median(derive), 2)
    return result


if __name__ == "__main__":
    run_and_print(__doc__, run, "rounds", 15)
