"""What bench/run.py and bench/parallel.py share: a figure of the results table, and how a spread is written."""

from __future__ import annotations

import statistics
from dataclasses import dataclass


@dataclass
class Figure:
    """One line of the results table."""

    name: str
    how: str
    value: str
    target: str
    met: bool | None


def spread(values: list[float], unit: str = "", digits: int = 0) -> str:
    """`median (min-max) unit`."""
    fmt = f"{{:,.{digits}f}}"
    med, low, high = statistics.median(values), min(values), max(values)
    return f"{fmt.format(med)} ({fmt.format(low)}-{fmt.format(high)}){unit}"


def table(figures: list[Figure]) -> str:
    lines = ["| figure | how | result | target | met |", "| --- | --- | --- | --- | --- |"]
    for f in figures:
        met = "-" if f.met is None else ("yes" if f.met else "**no**")
        lines.append(f"| {f.name} | {f.how} | {f.value} | {f.target} | {met} |")
    return "\n".join(lines)
