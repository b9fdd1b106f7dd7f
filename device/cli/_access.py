"""Access codes and cards on the command line: ``callbox access add | remove | list``.

They work on ``<state_dir>/access.json`` of the configuration (``--config``), under the
same file lock as the running daemon, which reads the list at every attempt: a change
applies at once, without a restart. A PIN is read from a hidden prompt or from stdin, never
from the command line (which shows in ``ps`` and the shell history).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

import click

from device.cli._admin import config_option, fail, load
from services.access import AccessEntry, AccessStore, EntryKind
from services.access.enroll import Enrollment, add_entry, generate_code, remove_entries
from services.access.entries import parse_when, when_text
from services.intercom.dnd import DndSchedule, TimeRange


def register(main: click.Group) -> None:
    """Add ``callbox access`` to the ``callbox`` group."""
    main.add_command(access)


def _store(config_path: Path) -> AccessStore:
    return AccessStore(Path(load(config_path).state_dir))


@click.group()
def access() -> None:
    """Keypad access codes and cards that open the door (a door station with [access])."""


@access.command("add")
@click.option("--name", required=True, help="Who it lets in (shown in the log and the list).")
@click.option("--flat", default="", help="Their flat, e.g. 12.")
@click.option("--pin", "as_pin", is_flag=True, help="A resident's code (read from a prompt/stdin).")
@click.option(
    "--card", "card", metavar="FORMAT:NUMBER", help="A card: wiegand26:12:34567, nfc:04a1b2c3."
)
@click.option("--visitor", is_flag=True, help="A visitor's code (usually with --once or --until).")
@click.option("--generate", is_flag=True, help="With --visitor: make a random code, printed once.")
@click.option("--once", is_flag=True, help="The code or card works one time only.")
@click.option(
    "--from", "valid_from", metavar="ISO", help="Valid from (local time): 2026-12-24T18:00."
)
@click.option("--until", "valid_until", metavar="ISO", help="Valid until (local time).")
@click.option("--schedule", multiple=True, metavar="HH:MM-HH:MM", help="Hours it works (repeat).")
@click.option("--days", default="", metavar="mon,tue", help="Days it works [default: every day].")
@config_option
def access_add(
    name: str,
    flat: str,
    as_pin: bool,
    card: str | None,
    visitor: bool,
    generate: bool,
    once: bool,
    valid_from: str | None,
    valid_until: str | None,
    schedule: tuple[str, ...],
    days: str,
    config_path: Path,
) -> None:
    """Add a resident's PIN, a visitor's code or a card."""
    if sum((as_pin, card is not None, visitor)) != 1:
        fail("give exactly one of --pin, --card FORMAT:NUMBER or --visitor")
    if generate and not visitor:
        fail("--generate makes a visitor's code: use it with --visitor")
    kind = EntryKind.CARD if card else EntryKind.VISITOR if visitor else EntryKind.PIN
    store = _store(config_path)
    secret = card or (generate_code() if generate else _read_code())
    try:
        window = (
            parse_when(valid_from) if valid_from else None,
            parse_when(valid_until) if valid_until else None,
        )
        ranges = tuple(TimeRange.parse(text) for text in schedule)
        day_names = [d for d in days.split(",") if d.strip()] if days else []
        weekdays = DndSchedule.from_config(True, [], day_names).days if day_names else None
    except ValueError as err:
        fail(str(err))
    new = Enrollment(
        kind=kind,
        name=name,
        secret=secret,
        flat=flat,
        once=once,
        valid_from=window[0],
        valid_until=window[1],
        ranges=ranges,
        days=weekdays if weekdays is not None else frozenset(range(7)),
    )
    entry = add_entry(store, new)
    click.echo(f"added {entry.kind.value} {entry.id} for {entry.label}")
    if generate:
        click.echo(f"visitor code: *{secret}#  (shown this once: pass it on now)")


def _read_code() -> str:
    """The code from a hidden prompt (asked twice) or, when stdin is no terminal, its first line."""
    if sys.stdin.isatty():
        code: str = click.prompt("code", hide_input=True, confirmation_prompt=True)
        return code.strip()
    line = sys.stdin.readline().strip()
    if not line:
        fail("no code on stdin (type it at the prompt, or: echo CODE | callbox access add ...)")
    return line


@access.command("remove")
@click.argument("which")
@config_option
def access_remove(which: str, config_path: Path) -> None:
    """Remove the entry with id WHICH, or every entry named WHICH."""
    for entry in remove_entries(_store(config_path), which):
        click.echo(f"removed {entry.kind.value} {entry.id} of {entry.label}")


@access.command("list")
@click.option("--json", "as_json", is_flag=True, help="JSON instead of a table.")
@config_option
def access_list(as_json: bool, config_path: Path) -> None:
    """The codes and cards: id, kind, name, flat, validity, schedule, use (never a hash).

    ``pair``: the resident's card of a PIN, or PIN of a card (same name and flat), which
    open together in ``[access] mode = "card_and_code"``.
    """
    store = _store(config_path)
    with store.locked():
        entries = store.read().entries
    rows = [_row(entry, entries) for entry in entries]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no codes or cards (add one: callbox access add --name NAME --pin)")
        return
    heads = list(rows[0])
    widths = [max(len(h), *(len(str(r[h])) for r in rows)) for h in heads]
    click.echo("  ".join(h.ljust(w) for h, w in zip(heads, widths, strict=True)).rstrip())
    for row in rows:
        cells = (str(row[h]).ljust(w) for h, w in zip(heads, widths, strict=True))
        click.echo("  ".join(cells).rstrip())


def _row(entry: AccessEntry, entries: Sequence[AccessEntry]) -> dict[str, str]:
    kind = entry.kind.value + (f" {entry.card_format}" if entry.card_format else "")
    validity = " ".join(
        part
        for part in (
            "once" if entry.once else "",
            f"from {when_text(entry.valid_from)}" if entry.valid_from is not None else "",
            f"until {when_text(entry.valid_until)}" if entry.valid_until is not None else "",
        )
        if part
    )
    used = "used" if entry.used else f"{entry.uses}x" if entry.uses else "never"
    if entry.last_used is not None:
        used += f", last {when_text(entry.last_used)}"
    return {
        "id": entry.id,
        "kind": kind,
        "name": entry.name,
        "flat": entry.flat or "-",
        "validity": validity or "always",
        "schedule": entry.schedule_text() or "any time",
        "used": used,
        "pair": _pair(entry, entries),
    }


def _pair(entry: AccessEntry, entries: Sequence[AccessEntry]) -> str:
    """The entries that pair with ``entry`` for card and code: ``card 3f2a1b``, else "-"."""
    pairs = [f"{other.kind.value} {other.id}" for other in entries if entry.pairs_with(other)]
    return ", ".join(pairs) or "-"
