"""Which ready tasks a claim picks: the best priority first, and within a level, tenants by turns.

A level is one priority. The tenants with work at it are found by index
searches (`Tx.next_level`, `Tx.next_tenant`); a level with one tenant is
picked oldest first in one query, as before tenants took turns. With
several, `tqcli.tenancy.fairness` decides how many tasks each takes and in
which order, and each tenant's share is one index search of its own, so
the claim costs the same at any backlog. A tenant that runs out of ready
tasks leaves its unused turns to the others.

Picking claims nothing: `tqcli.core.dispatcher.claim` judges the picks
(limits, circuits, suspects) and claims those it keeps, then `charge`
advances the passes of the tenants it served.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

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


def pick(tx: Tx, count: int, *, now: int, rooms: Mapping[str, int], only_tenants: Sequence[str] = (), **filters: Any) -> list[Picked]:
    """Up to `count` ready tasks matching `filters` (see `tqcli.store.dispatch_sql.claim_filters`), in the order to claim them.

    `rooms` caps how many a tenant may take (a tenant missing from it has
    no cap); `only_tenants` limits the picks to those tenants (empty: all).
    """
    excluded = set(filters.pop("excluded_tenants", ()))
    if filters.get("task_id") is not None:  # one named task (`run --id`): no turns to take
        return [Picked(row, 0, 0, fairness.SCALE, False) for row in tx.pick_tasks(count=count, now=now, **filters)]
    picked: list[Picked] = []
    below: int | None = None
    while len(picked) < count:
        level = tx.next_level(below)
        if level is None:
            break
        below = level
        tenants = [
            tenant for tenant in _tenants_at(tx, level)
            if tenant not in excluded and (not only_tenants or tenant in only_tenants) and rooms.get(tenant, 1) > 0
        ]
        if tenants:
            picked += _pick_level(tx, level, tenants, count - len(picked), rooms, now, filters)
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


def _tenants_at(tx: Tx, level: int) -> list[str]:
    """Every tenant with a pending task free of unfinished dependencies at this level, by name."""
    tenants: list[str] = []
    tenant = tx.next_tenant(level, None)
    while tenant is not None:
        tenants.append(tenant)
        tenant = tx.next_tenant(level, tenant)
    return tenants


def _pick_level(
    tx: Tx, level: int, tenants: list[str], want: int, rooms: Mapping[str, int], now: int, filters: dict[str, Any]
) -> list[Picked]:
    """Up to `want` tasks of one level: the tenants' shares in their turns' order."""
    if len(tenants) == 1:
        (tenant,) = tenants
        room = rooms.get(tenant)
        rows = tx.pick_tasks(count=want if room is None else min(want, room), now=now, priority=level, tenants=[tenant], **filters)
        return [Picked(row, level, n, fairness.SCALE, False) for n, row in enumerate(rows)]
    weights = {row.name: row.weight for row in tx.tenant_rows(tenants)}
    live = {turn.tenant: turn for turn in fairness.turns(tenants, tx.tenant_passes(tenants), weights, rooms)}
    taken: dict[str, int] = defaultdict(int)
    picked: list[Picked] = []
    while len(picked) < want and live:
        shares: dict[str, list[int]] = defaultdict(list)
        for tenant, tag in fairness.allocate(list(live.values()), want - len(picked)):
            shares[tenant].append(tag)
        if not shares:
            break
        for tenant, tags in shares.items():
            turn = live[tenant]
            # Asked again from its first task, this tenant's earlier picks come back first: skip them.
            rows = tx.pick_tasks(count=taken[tenant] + len(tags), now=now, priority=level, tenants=[tenant], **filters)[taken[tenant]:]
            picked += [Picked(row, level, tag, turn.stride, True) for row, tag in zip(rows, tags)]
            taken[tenant] += len(rows)
            if len(rows) < len(tags):
                del live[tenant]  # no more ready work here: its turns go to the others
                continue
            turn.start = tags[-1] + turn.stride
            if turn.room is not None:
                turn.room -= len(rows)
    return sorted(picked, key=lambda item: (item.tag, item.row.tenant))
