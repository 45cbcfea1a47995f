"""Which ready tasks a claim picks: the best priority first, and within a level, tenants by turns.

A level is one priority. Tenants are read in the order of their turns,
lowest pass first (`Tx.turns_in_order`), a page at a time, and for each
page one statement finds the queues where they have work at the level
(`Tx.queues_at_level`); reading stops once no tenant not yet read could
take one of the turns being handed out. So a claim looks at about as many
tenants as it serves, however many there are. A tenant whose turn came
with no work at the level goes to the back (`Tx.bump_passes`), so idle
tenants are looked at about once a round, and a new tenant starts at the
lowest pass (`Tx.add_tenants`, at submit). `tqcli.tenancy.fairness`
decides how many tasks each tenant takes and in which order; their shares
are picked in one call (`Tx.pick_shares`: on PostgreSQL one statement),
each an index search of its own. A queue that is paused, full or not the
worker's is never searched. A tenant that runs out of ready tasks leaves
its unused turns to the others.

Picking claims nothing: `tqcli.core.dispatcher.claim` judges the picks
(limits, circuits, suspects) and claims those it keeps, then `charge`
advances the passes of the tenants it served.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Callable, Collection, Mapping, NamedTuple, Sequence

from tqcli.store.base import PickRow, Tx
from tqcli.tenancy import fairness


class Picked(NamedTuple):
    """A picked task: its row, its level, its start tag (its place in the level's turns) and its tenant's stride.

    `shared` says its level had several tenants, so taking it spends its
    tenant's turn (see `charge`). A tuple: a claim makes one per task.
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

    def tenant_ok(tenant: str) -> bool:
        return tenant not in excluded_tenants and (not only_tenants or tenant in only_tenants) and rooms.get(tenant, 1) > 0

    def queue_ok(queue: str) -> bool:
        return queue not in excluded_queues and (not queues or queue in queues)

    picked: list[Picked] = []
    below: int | None = None
    while len(picked) < count:
        start = tx.level_start(below)
        if not start:
            break
        level, tenant, queue = start[0]
        below = level
        if len(start) == 1:  # one tenant with one queue here: its oldest, no turns to take
            if tenant_ok(tenant) and queue_ok(queue):
                room = rooms.get(tenant)
                want = count - len(picked) if room is None else min(count - len(picked), room)
                rows = tx.pick_tasks(count=want, now=now, priority=level, tenants=(tenant,), queues=(queue,), **filters)
                picked += [Picked(row, level, n, fairness.SCALE, False) for n, row in enumerate(rows)]
            continue
        picked += _Level(tx, level, now, filters, tenant_ok, queue_ok, only_tenants).take(count - len(picked), rooms)
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


PAGE = 16  # tenants read at a time, in the order of their turns


class _Level:
    """The picks of one level: the tenants read in the order of their turns, each one's share oldest first across its queues."""

    def __init__(
        self, tx: Tx, level: int, now: int, filters: dict[str, Any],
        tenant_ok: Callable[[str], bool], queue_ok: Callable[[str], bool], only_tenants: Sequence[str],
    ) -> None:
        self._tx, self._level, self._now, self._filters = tx, level, now, filters
        self._tenant_ok, self._queue_ok, self._only = tenant_ok, queue_ok, only_tenants
        self._turns: dict[str, fairness.Turn] = {}  # tenants with work here this claim may take, by their turns
        self._queues_of: dict[str, list[str]] = {}
        self._after: tuple[int, str] | None = None  # the last (pass, tenant) read
        self._read_all = False
        self._seen: set[int] = set()
        self._asked: dict[str, int] = defaultdict(int)
        self._shared = False  # more than one tenant took part: their turns are spent
        self._wanted = 0

    def take(self, want: int, rooms: Mapping[str, int]) -> list[Picked]:
        """Up to `want` tasks in the order of the tenants' turns, each tenant's oldest first."""
        picked: list[Picked] = []
        idle: list[str] = []
        self._wanted = want
        while len(picked) < want:
            order = self._settle(want - len(picked), rooms, idle)
            if not order:
                break
            tags: dict[str, list[int]] = defaultdict(list)
            for tenant, tag in order:
                tags[tenant].append(tag)
            self._shared = self._shared or len(self._turns) > 1 or len(tags) > 1
            rows = self._shares({tenant: len(tenant_tags) for tenant, tenant_tags in tags.items()})
            for tenant, tenant_tags in tags.items():
                turn, got = self._turns[tenant], rows[tenant]
                picked += [Picked(row, self._level, tag, turn.stride, self._shared) for row, tag in zip(got, tenant_tags)]
                if len(got) < len(tenant_tags):
                    del self._turns[tenant]  # no more ready work here: its turns go to the others
                    if not got and self._asked[tenant] == len(tenant_tags):  # nothing ready here from its first turn on
                        idle.append(tenant)
                    continue
                turn.start = tenant_tags[-1] + turn.stride
                if turn.room is not None:
                    turn.room -= len(got)
        if idle:  # behind every tenant there is, so the next claims read the busy ones first
            self._tx.bump_passes(idle, self._tx.max_pass() + 1)
        return sorted(picked, key=lambda item: (item.tag, item.row.tenant))

    def _settle(self, want: int, rooms: Mapping[str, int], idle: list[str]) -> list[tuple[str, int]]:
        """The next `want` turns, reading more tenants until none not yet read could take one of them."""
        while True:
            order = fairness.allocate(list(self._turns.values()), want)
            if self._read_all:
                return order
            horizon = order[-1][1] if len(order) == want else None
            if horizon is not None and self._after is not None and horizon <= self._after[0]:
                return order  # every tenant not yet read has a pass of at least the last one read
            self._read_page(rooms, idle)

    def _read_page(self, rooms: Mapping[str, int], idle: list[str]) -> None:
        """Read the next tenants in the order of their turns; those with work here join, those without go to `idle`."""
        tx = self._tx
        if self._only:
            rows = tx.turns_of(self._only)
            rows += [(tenant, 0, None) for tenant in set(self._only) - {row[0] for row in rows}]
            self._read_all = True
        else:
            # The first page only as long as the turns wanted (a claim of one task reads two tenants), then whole pages.
            size = PAGE if self._after is not None else max(2, min(PAGE, self._wanted + 1))
            rows = tx.turns_in_order(self._after, size)
            self._read_all = len(rows) < size
            if rows:
                self._after = (rows[-1][1], rows[-1][0])
        candidates = [row for row in rows if self._tenant_ok(row[0])]
        found: dict[str, list[str]] = defaultdict(list)
        for tenant, queue in tx.queues_at_level(self._level, [tenant for tenant, _, _ in candidates]):
            found[tenant].append(queue)
        for tenant, stored_pass, weight in candidates:
            usable = [queue for queue in found[tenant] if self._queue_ok(queue)]
            if usable:
                self._queues_of[tenant] = usable
                self._turns[tenant] = fairness.Turn(tenant, stored_pass, fairness.stride(weight or 1.0), rooms.get(tenant))
            elif not found[tenant]:
                idle.append(tenant)  # no work at this level at all: to the back of the line
        if self._read_all and not self._turns and not self._only:
            self._adopt_orphans(rooms)

    def _adopt_orphans(self, rooms: Mapping[str, int]) -> None:
        """Tenants with work here but no turn (tasks written by another program): give them one, so nothing waits forever."""
        work = self._tx.work_at_level(self._level)
        orphans: dict[str, list[str]] = defaultdict(list)
        for tenant, queue, stored_pass, _ in work:
            if stored_pass is None and self._tenant_ok(tenant) and self._queue_ok(queue):
                orphans[tenant].append(queue)
        if orphans:
            self._tx.add_tenants(list(orphans))
            for tenant, stored_pass, weight in self._tx.turns_of(list(orphans)):
                self._queues_of[tenant] = orphans[tenant]
                self._turns[tenant] = fairness.Turn(tenant, stored_pass, fairness.stride(weight or 1.0), rooms.get(tenant))

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
