"""Turning results into output: rich tables on a terminal, plain text in a pipe, JSON.

The only module that imports rich, and only when stdout is a terminal: a
rich table sent to a pipe is cut at 80 columns, so piped output is plain
aligned text, never truncated. `NO_COLOR` turns colour and styles off.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Sequence


def stdout_is_terminal() -> bool:
    """Whether stdout is an interactive terminal (tables drawn with rich)."""
    try:
        return sys.stdout.isatty() and os.environ.get("TERM") != "dumb"
    except (AttributeError, ValueError):
        return False


def no_color() -> bool:
    """Whether colour is off: `NO_COLOR` set to anything non-empty."""
    return bool(os.environ.get("NO_COLOR"))


def console(stderr: bool = False) -> Any:
    """A new rich Console for this call (never one made at import time)."""
    from rich.console import Console

    plain = no_color()
    return Console(stderr=stderr, no_color=plain, color_system=None if plain else "auto", highlight=False, emoji=False)


def when(us: int | None) -> str | None:
    """A time for a table cell: `2026-11-28 03:14:24Z` on a terminal, full ISO 8601 in a pipe."""
    from tqcli.units import format_time

    text = format_time(us)
    if text is None or not stdout_is_terminal():
        return text
    return text[:19].replace("T", " ") + "Z"


def emit_json(value: Any) -> None:
    """Print one JSON document on stdout."""
    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")


def message(text: str) -> None:
    """A message for the person at the terminal, on stderr."""
    sys.stderr.write(text + "\n")


def plain_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Columns aligned with two spaces, never truncated; the last column is not padded."""
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [len(header) for header in headers]
    for row in cells:
        for index, value in enumerate(row):
            widths[index] = max(widths[index], len(value))
    lines = []
    for row in [list(headers), *cells]:
        padded = [value.ljust(widths[index]) for index, value in enumerate(row[:-1])]
        lines.append("  ".join([*padded, row[-1]]).rstrip())
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return str(value).replace("\n", " ")


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, title: str | None = None) -> None:
    """Print a table: rich on a terminal, plain aligned text otherwise."""
    if not stdout_is_terminal():
        if title:
            sys.stdout.write(title + "\n")
        sys.stdout.write(plain_table(headers, rows) + "\n")
        return
    from rich.table import Table

    styled = not no_color()
    view = Table(title=title, title_justify="left", header_style="bold" if styled else None, show_edge=False, box=None, pad_edge=False)
    for position, header in enumerate(headers):
        if position < len(headers) - 1:  # ids, states and times stay on one line; the last column takes what is left
            view.add_column(header, no_wrap=True, overflow="ellipsis")
        else:
            view.add_column(header, overflow="fold", min_width=min(24, max(len(header), 8)))
    for row in rows:
        view.add_row(*[_cell(value) for value in row])
    console().print(view)


def fields(pairs: Sequence[tuple[str, Any]]) -> None:
    """Print `name  value` lines, names aligned."""
    width = max((len(name) for name, _ in pairs), default=0)
    for name, value in pairs:
        sys.stdout.write(f"{name.ljust(width)}  {_cell(value)}\n")

