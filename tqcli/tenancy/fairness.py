"""Weighted fair claims: within one priority level, tenants take turns in proportion to their weights.

Start-time fair queuing, kept in the database: each tenant has a virtual
time, its *pass*. A claim serves the tenant with the lowest pass among
those with ready work, and each task it takes advances that tenant's pass
by its *stride*, `SCALE / weight`: a tenant of weight 2 advances half as
fast, so it is served twice as often. Ties go to the tenant first by name.

Passes stay close together, so no tenant builds up credit: a new tenant
starts at the lowest pass there is, and a tenant whose turn comes with no
work is moved behind the highest (see `tqcli.core.picking`). In steady
state no two busy tenants' passes differ by more than one stride. A level
with one tenant needs no bookkeeping at all.

`allocate` is a pure function; `tqcli.core.picking` reads the passes and
weights, picks the tasks, and writes the passes back.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Sequence

SCALE = 1_000_000  # how far one task advances the pass of a tenant of weight 1
MAX_WEIGHT = 1_000_000.0  # a stride of at least 1


def stride(weight: float) -> int:
    """How far one task advances the pass of a tenant of this weight."""
    return max(1, round(SCALE / weight))


@dataclass
class Turn:
    """One tenant's place at a level: the pass its next task starts at, its stride, and how many it may take (None: any)."""

    tenant: str
    start: int
    stride: int
    room: int | None = None


def allocate(level_turns: Sequence[Turn], count: int) -> list[tuple[str, int]]:
    """Who takes the next `count` tasks, in order: `(tenant, start tag)` each, lowest start first.

    A tenant takes no more than its room. The start tag of a tenant's k-th
    task (from 0) is its start plus k strides.
    """
    heap = [(turn.start, turn.tenant, 0, turn) for turn in level_turns if turn.room is None or turn.room > 0]
    heapq.heapify(heap)
    order: list[tuple[str, int]] = []
    while heap and len(order) < count:
        tag, tenant, taken, turn = heapq.heappop(heap)
        order.append((tenant, tag))
        taken += 1
        if turn.room is None or taken < turn.room:
            heapq.heappush(heap, (tag + turn.stride, tenant, taken, turn))
    return order
