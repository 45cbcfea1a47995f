"""Turning results into output: rich tables on a terminal, plain text in a pipe, JSON.

The only module that imports rich, and only when stdout is a terminal: a
rich table sent to a pipe is cut at 80 columns, so piped output is plain
aligned text, never truncated. `NO_COLOR` turns colour and styles off.
"""

from __future__ import annotations

import json
import os
import sys
from contextlib import contextmanager
from typing import Any, Callable, Collection, Iterator, Sequence


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


def progress_shown(json_output: bool = False) -> bool:
    """Whether a progress bar may be drawn: stderr is a terminal, no --json, no `CI`, no `TERM=dumb` (SPEC §2)."""
    try:
        terminal = sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False
    return terminal and not json_output and not os.environ.get("CI") and os.environ.get("TERM") != "dumb"


@contextmanager
def progress(description: str, *, shown: bool) -> Iterator[Callable[[int, int, str], None]]:
    """A progress bar on stderr while the block runs; yields `update(done, total, what)`. Nothing at all unless `shown`."""
    if not shown:
        yield lambda done, total, what: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=console(stderr=True), transient=True,
    ) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int, what: str) -> None:
            bar.update(task, completed=done, total=total, description=f"{description} {what}")

        yield update


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
    """A value as one line of text: `-` for none, line breaks and tabs as spaces."""
    if value is None:
        return "-"
    return " ".join(str(value).replace("\t", " ").splitlines())


# Columns of free text: on a narrow terminal they are shortened (one line,
# ellipsised) so that the others, ids, counts, states and times, are never cut.
FREE_TEXT = frozenset({"NAME", "TARGET", "ERROR", "DETAILS"})
FREE_TEXT_FLOOR = 8  # narrower than this a free-text column says too little: the plain layout instead


def fit_widths(natural: Sequence[int], free: Sequence[bool], headers: Sequence[int], room: int, gap: int) -> list[int] | None:
    """Column widths that fit `room` cells with `gap` cells between columns, or None.

    Other columns keep their natural width; free-text columns start at their
    floor (their header, at least FREE_TEXT_FLOOR) and share what is left,
    the one that needs least served first.
    """
    widths = list(natural)
    flexible = [index for index, shrinks in enumerate(free) if shrinks]
    for index in flexible:
        widths[index] = min(natural[index], max(headers[index], FREE_TEXT_FLOOR))
    left = room - gap * (len(widths) - 1) - sum(widths)
    if left < 0:
        return None
    flexible.sort(key=lambda index: natural[index] - widths[index])
    for position, index in enumerate(flexible):
        grant = min(natural[index] - widths[index], left // (len(flexible) - position))
        widths[index] += grant
        left -= grant
    return widths


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, title: str | None = None, free_text: Collection[str] | None = None) -> None:
    """Print a table: rich on a terminal, plain aligned text otherwise.

    On a terminal each cell is one line. When the table is wider than the
    terminal, the free-text columns (`free_text`, by default those headed
    NAME, TARGET, ERROR or DETAILS) are ellipsised; when it cannot fit even
    so, it is printed in the plain layout, which cuts nothing.
    """
    cells = [[_cell(value) for value in row] for row in rows]
    if stdout_is_terminal():
        from rich.cells import cell_len

        out = console()
        shrinkable = FREE_TEXT if free_text is None else frozenset(free_text)
        natural = [max([cell_len(header), *(cell_len(row[index]) for row in cells)]) for index, header in enumerate(headers)]
        free = [header in shrinkable for header in headers]
        header_widths = [cell_len(header) for header in headers]
        for gap in (2, 1):
            widths = fit_widths(natural, free, header_widths, out.width, gap)
            if widths is not None:
                _rich_table(out, headers, cells, widths, gap, title)
                return
    if title:
        sys.stdout.write(title + "\n")
    sys.stdout.write(plain_table(headers, cells) + "\n")


def _rich_table(out: Any, headers: Sequence[str], cells: Sequence[Sequence[str]], widths: Sequence[int], gap: int, title: str | None) -> None:
    from rich.table import Table
    from rich.text import Text

    styled = not no_color()
    padding = (0, 1) if gap == 2 else (0, 1, 0, 0)
    view = Table(title=title, title_justify="left", header_style="bold" if styled else None, show_edge=False, box=None, pad_edge=False, padding=padding)
    for header, width in zip(headers, widths):
        view.add_column(header, width=width, no_wrap=True, overflow="ellipsis")
    for row in cells:
        view.add_row(*(Text(value, no_wrap=True, overflow="ellipsis") for value in row))  # Text: a cell is never read as markup
    out.print(view)


def fields(pairs: Sequence[tuple[str, Any]]) -> None:
    """Print `name  value` lines, names aligned."""
    width = max((len(name) for name, _ in pairs), default=0)
    for name, value in pairs:
        sys.stdout.write(f"{name.ljust(width)}  {_cell(value)}\n")

