"""What every `kwik-console` command shares: tables and JSON for output, times, terminal-safe text, bad input.

Tables for people; `--json` for machines. Text for people never carries raw control characters from stored
data: they are shown escaped (`\\x1b`, `\\n`).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

from kwik_console.core.text import escape_controls
from kwik_console.store.engines import first_line


class UsageError(Exception):
    """Bad command-line input."""


# How each database says its disk is full: SQLite's SQLITE_FULL, PostgreSQL's SQLSTATE 53100.
_DISK_FULL = ("SQLITE_FULL", "53100")


def database_refusal(exc: Exception) -> str:
    """One line for a statement the database refused: the disk is full, or the database's own first line."""
    driver_error = getattr(exc, "orig", None) or exc
    if {getattr(driver_error, "sqlite_errorname", None), getattr(driver_error, "sqlstate", None)} & set(_DISK_FULL):
        return f"the disk is full: the database cannot write ({first_line(driver_error)})."
    return f"the database refused the command: {first_line(driver_error)}"


def shown(value: Any) -> str:
    """Text safe for a terminal: control characters (ANSI escapes, newlines, ...) escaped, not obeyed.

    Data stored before names were checked, or sent back by an endpoint, may hold them.
    """
    text = "" if value is None else str(value)
    escape = lambda m: ascii(m.group())[1:-1]  # noqa: E731
    return escape_controls(text, escape)


def when(value: dt.datetime | None) -> str:
    """A time in a table or a line for people, in UTC; "" for none."""
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if value else ""


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [[shown(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def emit(args, data: Any, text: str) -> None:
    """`data` as JSON with --json, else `text`."""
    print(json.dumps(data, indent=2) if args.json else text)
