"""Queue and tenant settings, the counts their limits are judged by, and the tenants' turns (mixed into the store's transaction object).

The counts are index searches: a queue's unfinished tasks and a tenant's
waiting ones are read from `tasks_counts (queue, state, tenant)`, running
tasks from the partial `tasks_lease` index, and the tenants and queues with
work at a priority level by jumping along `tasks_claim` from one pair to
the next.
"""

from __future__ import annotations

import sqlite3
from typing import Any, Sequence

from tqcli.store.base import PickRow, QueueRow, TenantRow, columns
from tqcli.store.tasks_sql import chunks, marks

QUEUE_COLUMNS = columns(QueueRow)
_AT_LEVEL = "state = 'pending' AND waiting_deps = 0 AND priority = ?"
WORK_AT_LEVEL = f"""
WITH RECURSIVE pairs(tenant, queue) AS (
    SELECT tenant, queue FROM (SELECT tenant, queue FROM tasks WHERE {_AT_LEVEL} ORDER BY priority DESC, tenant, queue LIMIT 1) AS first
    UNION ALL
    SELECT t.tenant, t.queue FROM pairs JOIN tasks AS t ON t.id = coalesce(
        (SELECT id FROM tasks WHERE {_AT_LEVEL} AND tenant = pairs.tenant AND queue > pairs.queue
         ORDER BY priority DESC, tenant, queue LIMIT 1),
        (SELECT id FROM tasks WHERE {_AT_LEVEL} AND tenant > pairs.tenant ORDER BY priority DESC, tenant, queue LIMIT 1))
)
SELECT pairs.tenant, pairs.queue, turns.pass, settings.weight FROM pairs
LEFT JOIN tenant_turns AS turns ON turns.tenant = pairs.tenant
LEFT JOIN tenants AS settings ON settings.name = pairs.tenant
"""
# The queues and tenants a claim must judge, in one statement: the columns
# line up by type (a queue's paused and encrypt beside a tenant's rate count
# and refill time).
CLAIM_LIMITS = """
SELECT 'queue', name, max_length, max_running, paused, encrypt, NULL, NULL, NULL FROM queues
 WHERE paused <> 0 OR max_running > 0
UNION ALL
SELECT 'tenant', name, max_pending, max_running, rate_count, refilled_at, rate_period, weight, tokens FROM tenants
 WHERE max_running > 0 OR rate_count IS NOT NULL
"""
# The first two (tenant, queue) pairs with work at the highest level below a
# priority: a level with one pair needs no turns.
LEVEL_START = """
WITH RECURSIVE pairs(priority, tenant, queue, n) AS (
    SELECT priority, tenant, queue, 1 FROM (
        SELECT priority, tenant, queue FROM tasks WHERE state = 'pending' AND waiting_deps = 0 {below}
        ORDER BY priority DESC, tenant, queue LIMIT 1) AS first
    UNION ALL
    SELECT pairs.priority, t.tenant, t.queue, pairs.n + 1 FROM pairs JOIN tasks AS t ON pairs.n < 2 AND t.id = coalesce(
        (SELECT id FROM tasks WHERE state = 'pending' AND waiting_deps = 0 AND priority = pairs.priority
         AND tenant = pairs.tenant AND queue > pairs.queue ORDER BY priority DESC, tenant, queue LIMIT 1),
        (SELECT id FROM tasks WHERE state = 'pending' AND waiting_deps = 0 AND priority = pairs.priority
         AND tenant > pairs.tenant ORDER BY priority DESC, tenant, queue LIMIT 1))
)
SELECT priority, tenant, queue FROM pairs
"""
# The queues where given tenants have work at one level: from each tenant's
# first queue there, jumping to its next, an index search each.
QUEUES_AT_LEVEL = f"""
WITH RECURSIVE wanted(tenant) AS (VALUES {{values}}),
found(tenant, queue) AS (
    SELECT wanted.tenant, (SELECT queue FROM tasks WHERE {_AT_LEVEL} AND tenant = wanted.tenant
                           ORDER BY priority DESC, tenant, queue LIMIT 1) FROM wanted
    UNION ALL
    SELECT found.tenant, (SELECT queue FROM tasks WHERE {_AT_LEVEL} AND tenant = found.tenant AND queue > found.queue
                          ORDER BY priority DESC, tenant, queue LIMIT 1) FROM found WHERE found.queue IS NOT NULL
)
SELECT tenant, queue FROM found WHERE queue IS NOT NULL
"""
TENANT_COLUMNS = columns(TenantRow)
# A pending task whose dependencies all completed: the first two columns of `tasks_claim`.
_WAITING_FOR_A_WORKER = "state = 'pending' AND waiting_deps = 0"


class TenancySQL:
    """Queries for queue and tenant limits, and for the fair claim."""

    conn: sqlite3.Connection

    def _rows(self, table: str, names: Sequence[str] | None, select: str) -> list[tuple]:
        if names is None:
            return self.conn.execute(f"SELECT {select} FROM {table} ORDER BY name").fetchall()
        rows: list[tuple] = []
        for part in chunks(sorted(set(names))):
            rows += self.conn.execute(f"SELECT {select} FROM {table} WHERE name IN ({marks(len(part))}) ORDER BY name", part).fetchall()
        return rows

    def queue_rows(self, names: Sequence[str] | None = None) -> list[QueueRow]:
        """The queues that have settings (those among `names`, if given), by name."""
        return [QueueRow._make(row) for row in self._rows("queues", names, QUEUE_COLUMNS)]

    def tenant_rows(self, names: Sequence[str] | None = None) -> list[TenantRow]:
        """The tenants that have settings (those among `names`, if given), by name."""
        return [TenantRow._make(row) for row in self._rows("tenants", names, TENANT_COLUMNS)]

    def claim_limits(self) -> tuple[list[QueueRow], list[TenantRow]]:
        """The queues (paused, or with a max-running) and the tenants (with a max-running or a rate) a claim must judge.

        One statement, since every claim reads them.
        """
        queues: list[QueueRow] = []
        tenants: list[TenantRow] = []
        for kind, name, a, b, c, d, e, f, g in self.conn.execute(CLAIM_LIMITS):
            if kind == "queue":
                queues.append(QueueRow(name, a, b, c, d))
            else:
                tenants.append(TenantRow(name, a, b, c, e, f, g, d))
        return queues, tenants

    def save_queue(self, row: QueueRow) -> None:
        """Insert or replace a queue's settings."""
        self.conn.execute(
            f"INSERT INTO queues ({QUEUE_COLUMNS}) VALUES ({marks(len(row))}) ON CONFLICT (name) DO UPDATE SET "
            "max_length = excluded.max_length, max_running = excluded.max_running, paused = excluded.paused, "
            "encrypt = excluded.encrypt",
            tuple(row),
        )

    def save_tenant(self, row: TenantRow) -> None:
        """Insert or replace a tenant's settings (its bucket included)."""
        self.conn.execute(
            f"INSERT INTO tenants ({TENANT_COLUMNS}) VALUES ({marks(len(row))}) ON CONFLICT (name) DO UPDATE SET "
            "max_pending = excluded.max_pending, max_running = excluded.max_running, rate_count = excluded.rate_count, "
            "rate_period = excluded.rate_period, weight = excluded.weight, tokens = excluded.tokens, "
            "refilled_at = excluded.refilled_at",
            tuple(row),
        )

    def delete_queue(self, name: str) -> None:
        """Forget a queue's settings (its tasks stay)."""
        self.conn.execute("DELETE FROM queues WHERE name = ?", (name,))

    def delete_tenant(self, name: str) -> None:
        """Forget a tenant's settings (its tasks and its turn stay)."""
        self.conn.execute("DELETE FROM tenants WHERE name = ?", (name,))

    def save_tokens(self, tenant: str, tokens: float, refilled_at: int) -> None:
        """Write a tenant's rate bucket after a claim took from it."""
        self.conn.execute("UPDATE tenants SET tokens = ?, refilled_at = ? WHERE name = ?", (tokens, refilled_at, tenant))

    def lock_limits(self, queues: Sequence[str], tenants: Sequence[str]) -> None:
        """Nothing to lock: SQLite's write transaction holds the whole database."""

    def running_counts(self) -> list[tuple[str, str, int]]:
        """`(queue, tenant, count)` of running tasks."""
        return self.conn.execute("SELECT queue, tenant, count(*) FROM tasks WHERE state = 'running' GROUP BY queue, tenant").fetchall()

    def count_by_tenant_and_state(self) -> list[tuple[str, str, int]]:
        """`(tenant, state, count)` for every tenant and state that has tasks."""
        return self.conn.execute("SELECT tenant, state, count(*) FROM tasks GROUP BY tenant, state").fetchall()

    def unfinished_in_queue(self, queue: str) -> int:
        """How many of a queue's tasks are pending, blocked or running."""
        sql = "SELECT count(*) FROM tasks WHERE queue = ? AND state IN ('pending', 'blocked', 'running')"
        return self.conn.execute(sql, (queue,)).fetchone()[0]

    def waiting_in_tenant(self, tenant: str) -> int:
        """How many of a tenant's tasks are pending or blocked (an index search per queue that has tasks)."""
        total = 0
        for part in chunks(self._queues_with_tasks()):
            sql = f"SELECT count(*) FROM tasks WHERE queue IN ({marks(len(part))}) AND state IN ('pending', 'blocked') AND tenant = ?"
            total += self.conn.execute(sql, (*part, tenant)).fetchone()[0]
        return total

    def _queues_with_tasks(self) -> list[str]:
        """Every queue that has a task, by jumping along `tasks_counts` from one to the next."""
        found: list[str] = []
        row = self.conn.execute("SELECT queue FROM tasks ORDER BY queue LIMIT 1").fetchone()
        while row is not None:
            found.append(row[0])
            row = self.conn.execute("SELECT queue FROM tasks WHERE queue > ? ORDER BY queue LIMIT 1", (row[0],)).fetchone()
        return found

    def level_start(self, below: int | None) -> list[tuple[int, str, str]]:
        """`(priority, tenant, queue)` of the first two pairs with such a task at the highest level below `below` (None: any)."""
        if below is None:
            return self.conn.execute(LEVEL_START.format(below="")).fetchall()
        return self.conn.execute(LEVEL_START.format(below="AND priority < ?"), (below,)).fetchall()

    def work_at_level(self, priority: int) -> list[tuple[str, str, int | None, float | None]]:
        """`(tenant, queue, pass, weight)` of every tenant and queue with such a task at `priority`, by tenant and queue.

        One statement that jumps along `tasks_claim` from one pair to the
        next (an index search each), with each tenant's stored pass and
        weight (None where it has none).
        """
        return self.conn.execute(WORK_AT_LEVEL, (priority, priority, priority)).fetchall()

    def pick_shares(self, shares: Sequence[tuple[str, str, int]], *, priority: int, now: int, **filters: Any) -> list[PickRow]:
        """For each `(tenant, queue, count)`: its oldest `count` ready tasks at `priority` matching `filters`; all of them, in no order."""
        rows: list[PickRow] = []
        for tenant, queue, count in shares:
            rows += self.pick_tasks(count=count, now=now, priority=priority, tenants=(tenant,), queues=(queue,), **filters)
        return rows

    def add_tenants(self, tenants: Sequence[str]) -> None:
        """Give each new tenant among `tenants` its turn: the lowest pass there is, so it is served soon."""
        self.conn.executemany(
            "INSERT INTO tenant_turns (tenant, pass) SELECT ?, coalesce((SELECT min(pass) FROM tenant_turns), 0) WHERE 1 = 1 "
            "ON CONFLICT (tenant) DO NOTHING",
            [(tenant,) for tenant in sorted(set(tenants))],
        )

    def turns_in_order(self, after: tuple[int, str] | None, limit: int) -> list[tuple[str, int, float | None]]:
        """`(tenant, pass, weight)` of the next `limit` tenants after `(pass, tenant)` `after`, lowest pass first."""
        where, params = ("", ()) if after is None else ("WHERE (turns.pass, turns.tenant) > (?, ?) ", tuple(after))
        return self.conn.execute(
            "SELECT turns.tenant, turns.pass, settings.weight FROM tenant_turns AS turns "
            f"LEFT JOIN tenants AS settings ON settings.name = turns.tenant {where}ORDER BY turns.pass, turns.tenant LIMIT ?",
            (*params, limit),
        ).fetchall()

    def turns_of(self, tenants: Sequence[str]) -> list[tuple[str, int, float | None]]:
        """`(tenant, pass, weight)` of each of `tenants` that has a turn."""
        rows: list[tuple[str, int, float | None]] = []
        for part in chunks(sorted(set(tenants))):
            rows += self.conn.execute(
                "SELECT turns.tenant, turns.pass, settings.weight FROM tenant_turns AS turns "
                f"LEFT JOIN tenants AS settings ON settings.name = turns.tenant WHERE turns.tenant IN ({marks(len(part))})",
                part,
            ).fetchall()
        return rows

    def queues_at_level(self, priority: int, tenants: Sequence[str]) -> list[tuple[str, str]]:
        """`(tenant, queue)` of every queue where one of `tenants` has a pending task free of unfinished dependencies at `priority`."""
        if not tenants:
            return []
        values = ", ".join("(?)" for _ in tenants)
        return self.conn.execute(QUEUES_AT_LEVEL.format(values=values), (*tenants, priority, priority)).fetchall()

    def max_pass(self) -> int:
        """The highest pass of any tenant (0 when none has one)."""
        row = self.conn.execute("SELECT max(pass) FROM tenant_turns").fetchone()
        return 0 if row is None or row[0] is None else row[0]

    def bump_passes(self, tenants: Sequence[str], to: int) -> None:
        """Move these tenants' turns back to at least `to` (they had no ready work when their turn came)."""
        for part in chunks(sorted(set(tenants))):
            self.conn.execute(
                f"UPDATE tenant_turns SET pass = {self._greatest}(pass, ?) WHERE tenant IN ({marks(len(part))}) AND pass < ?",
                (to, *part, to),
            )

    def advance_passes(self, passes: Sequence[tuple[str, int, int]]) -> None:
        """For each `(tenant, start, spent)`: its pass becomes max(its pass, start) + spent, in tenant order.

        Relative to what is stored, so two claims that served one tenant at
        once (on PostgreSQL) both count.
        """
        self.conn.executemany(
            "INSERT INTO tenant_turns (tenant, pass) VALUES (?, ? + ?) ON CONFLICT (tenant) DO UPDATE SET "
            f"pass = {self._greatest}(tenant_turns.pass, ?) + ?",
            [(tenant, start, spent, start, spent) for tenant, start, spent in sorted(passes)],
        )

    _greatest = "max"  # SQLite's two-argument max(); PostgreSQL says GREATEST
