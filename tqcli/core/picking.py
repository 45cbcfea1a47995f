"""Which ready tasks a claim picks: the best priority first, and within a level, tenants by turns.

A level is one priority. One statement finds the tenants and queues with
work at it, with each tenant's pass and weight (`Tx.work_at_level`, an
index search per pair). `tqcli.tenancy.fairness` decides how many tasks
each tenant takes and in which order; their shares are then picked in one
call (`Tx.pick_shares`: on PostgreSQL one statement), each share an index
search of its own, so the claim costs the same at any backlog. A queue
that is paused, full or not the worker's is never searched at all. A
tenant that runs out of ready tasks leaves its unused turns to the others.

Picking claims nothing: `tqcli.core.dispatcher.claim` judges the picks
(limits, circuits, suspects) and claims those it keeps, then `charge`
advances the passes of the tenants it served.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Collection, Mapping, Sequence

from tqcli.store.base import PickRow, Tx
from tqcli.tenancy import fairness


@dataclass
class Picked:
    """A picked task: its row, its level, its start tag (its place in the level's turns) and its tenant's stride.

    `shared` says its level had several tenants, so taking it spends its
    tenant's turn (see `charge`).
    """

    row: PickRow
    priority: int
    tag: int
    stride: int
    shared: bool


def pick(
    tx: Tx,
    count: int,
    *,
    now: int,
    rooms: Mapping[str, int],
    only_tenants: Sequence[str] = (),
    queues: Sequence[str] = (),
    excluded_queues: Collection[str] = (),
    **filters: Any,
) -> list[Picked]:
    """Up to `count` ready tasks, in the order to claim them.

    `rooms` caps how many a tenant may take (a tenant missing from it has
    no cap); `only_tenants` and `queues` limit the picks to those tenants
    and queues (empty: all), `excluded_queues` leaves queues out; the other
    `filters` are `tqcli.store.dispatch_sql.claim_filters`'.
    """
    excluded_tenants = set(filters.pop("excluded_tenants", ()))
    if filters.get("task_id") is not None:  # one named task (`run --id`): no turns to take
        rows = tx.pick_tasks(count=count, now=now, queues=queues, excluded_queues=tuple(excluded_queues), **filters)
        return [Picked(row, 0, 0, fairness.SCALE, False) for row in rows]
    picked: list[Picked] = []
    below: int | None = None
    while len(picked) < count:
        level = tx.next_level(below)
        if level is None:
            break
        below = level
        queues_of: dict[str, list[str]] = defaultdict(list)
        passes: dict[str, int] = {}
        weights: dict[str, float] = {}
        for tenant, queue, stored_pass, weight in tx.work_at_level(level):
            if tenant in excluded_tenants or (only_tenants and tenant not in only_tenants) or rooms.get(tenant, 1) <= 0:
                continue
            if queue in excluded_queues or (queues and queue not in queues):
                continue
            queues_of[tenant].append(queue)
            if stored_pass is not None:
                passes[tenant] = stored_pass
            if weight is not None:
                weights[tenant] = weight
        if queues_of:
            level_picks = _Level(tx, level, queues_of, now, filters)
            picked += level_picks.take(count - len(picked), passes, weights, rooms)
    return picked


def charge(tx: Tx, taken: Sequence[Picked]) -> None:
    """Advance the passes of the tenants served at levels they shared: one stride per task taken."""
    spent: dict[str, list[int]] = {}
    for item in taken:
        if item.shared:
            start, total = spent.get(item.row.tenant, [item.tag, 0])
            spent[item.row.tenant] = [min(start, item.tag), total + item.stride]
    if spent:
        tx.advance_passes([(tenant, start, total) for tenant, (start, total) in spent.items()])


class _Level:
    """The picks of one level: each tenant's share, merged oldest first across its queues."""

    def __init__(self, tx: Tx, level: int, queues_of: dict[str, list[str]], now: int, filters: dict[str, Any]) -> None:
        self._tx = tx
        self._level = level
        self._queues_of = queues_of
        self._now = now
        self._filters = filters
        self._seen: set[int] = set()
        self._asked: dict[str, int] = defaultdict(int)

    def take(self, want: int, passes: Mapping[str, int], weights: Mapping[str, float], rooms: Mapping[str, int]) -> list[Picked]:
        """Up to `want` tasks in the tenants' turns' order (one tenant: oldest first, no turns spent)."""
        tenants = list(self._queues_of)
        if len(tenants) == 1:
            (tenant,) = tenants
            room = rooms.get(tenant)
            rows = self._shares({tenant: want if room is None else min(want, room)})[tenant]
            return [Picked(row, self._level, n, fairness.SCALE, False) for n, row in enumerate(rows)]
        live = {turn.tenant: turn for turn in fairness.turns(tenants, passes, weights, rooms)}
        picked: list[Picked] = []
        while len(picked) < want and live:
            tags: dict[str, list[int]] = defaultdict(list)
            for tenant, tag in fairness.allocate(list(live.values()), want - len(picked)):
                tags[tenant].append(tag)
            if not tags:
                break
            rows = self._shares({tenant: len(tenant_tags) for tenant, tenant_tags in tags.items()})
            for tenant, tenant_tags in tags.items():
                turn, got = live[tenant], rows[tenant]
                picked += [Picked(row, self._level, tag, turn.stride, True) for row, tag in zip(got, tenant_tags)]
                if len(got) < len(tenant_tags):
                    del live[tenant]  # no more ready work here: its turns go to the others
                    continue
                turn.start = tenant_tags[-1] + turn.stride
                if turn.room is not None:
                    turn.room -= len(got)
        return sorted(picked, key=lambda item: (item.tag, item.row.tenant))

    def _shares(self, wanted: Mapping[str, int]) -> dict[str, list[PickRow]]:
        """The next `wanted[tenant]` tasks of each tenant, oldest first across its queues, none picked twice.

        Each queue is asked for everything this level asked of the tenant so
        far plus the new share: what came back before comes back first (on
        PostgreSQL this transaction's own locks do not hide them) and is
        passed over.
        """
        shares = []
        for tenant, count in wanted.items():
            self._asked[tenant] += count
            shares += [(tenant, queue, self._asked[tenant]) for queue in self._queues_of[tenant]]
        by_tenant: dict[str, list[PickRow]] = defaultdict(list)
        for row in self._tx.pick_shares(shares, priority=self._level, now=self._now, **self._filters):
            if row.id not in self._seen:
                by_tenant[row.tenant].append(row)
        result = {}
        for tenant, count in wanted.items():
            fresh = sorted(by_tenant[tenant], key=lambda row: (row.run_at, row.id))[:count]
            self._seen.update(row.id for row in fresh)
            result[tenant] = fresh
        return result
