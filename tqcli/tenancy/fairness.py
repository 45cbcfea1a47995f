"""Weighted fair claims: within one priority level, tenants take turns in proportion to their weights.

Start-time fair queuing, kept in the database: each tenant has a virtual
time, its *pass*. A claim serves the tenant with the lowest pass among
those with ready work, and each task it takes advances that tenant's pass
by its *stride*, `SCALE / weight`: a tenant of weight 2 advances half as
fast, so it is served twice as often. Ties go to the tenant first by name.

A tenant that was idle keeps an old, low pass; served by it alone it would
take every turn until it caught up. So a pass counts as no lower than the
highest pass at the level minus the largest stride there: a newcomer is
served next, once or (by its weight) a few times, and then takes turns. In
steady state no two passes differ by more than one stride, so this floor
changes nothing for tenants that stayed busy. Nothing needs resetting when
a tenant leaves, and a level with one tenant needs no bookkeeping at all.

These are pure functions; `tqcli.core.picking` reads the passes and
weights, picks the tasks, and writes the passes back.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Mapping, Sequence

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


def turns(tenants: Sequence[str], passes: Mapping[str, int], weights: Mapping[str, float], rooms: Mapping[str, int | None]) -> list[Turn]:
    """The turns of the tenants with work at one level, their passes raised to the level's floor (see the module docstring)."""
    strides = {tenant: stride(weights.get(tenant, 1.0)) for tenant in tenants}
    floor = max(passes.get(tenant, 0) for tenant in tenants) - max(strides.values())
    return [Turn(tenant, max(passes.get(tenant, 0), floor), strides[tenant], rooms.get(tenant)) for tenant in tenants]


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
