"""The queries behind `tqcli metrics` and the counters that never go down (mixed into the store's transaction object).

Every gauge is a bounded read: task counts come from the covering index
`tasks_counts (queue, state, tenant)` (no table row is read but one per
group), the oldest ready task of each queue from jumping along
`tasks_claim` from one (priority, tenant, queue) group to the next (an
index search each, however many tasks a group holds), the audit head from
its primary key. Counters
live in `metric_counters`: a transaction adds to them in memory
(`add_counters`) and writes them once, in key order, just before its
commit (`flush_counters`), so workers committing at once on PostgreSQL take
the counter rows' locks in the same order.
"""

from __future__ import annotations

import sqlite3
from typing import Mapping

# Jump along `tasks_counts` from one (queue, state, tenant) group to the next
# (an index search each), then count each group's range of the index: half
# the time of a GROUP BY over the same index, which compares three text
# columns for every entry.
COUNTS_SQL = """
WITH RECURSIVE g(queue, state, tenant) AS (
    SELECT queue, state, tenant FROM (SELECT queue, state, tenant FROM tasks ORDER BY queue, state, tenant LIMIT 1) AS first
    UNION ALL
    SELECT t.queue, t.state, t.tenant FROM g JOIN tasks AS t ON t.id = coalesce(
        (SELECT id FROM tasks WHERE queue = g.queue AND state = g.state AND tenant > g.tenant ORDER BY queue, state, tenant LIMIT 1),
        (SELECT id FROM tasks WHERE queue = g.queue AND state > g.state ORDER BY queue, state, tenant LIMIT 1),
        (SELECT id FROM tasks WHERE queue > g.queue ORDER BY queue, state, tenant LIMIT 1))
)
SELECT queue, state, tenant, (SELECT count(*) FROM tasks AS c WHERE c.queue = g.queue AND c.state = g.state AND c.tenant = g.tenant) FROM g
"""

_READY = "state = 'pending' AND waiting_deps = 0"
_GROUP_ORDER = "ORDER BY priority DESC, tenant, queue, run_at LIMIT 1"
# Each step finds the first row (the smallest run_at) of the next group after
# `g`: the same priority and tenant with a later queue, the same priority with
# a later tenant, or the next lower priority.
OLDEST_READY_SQL = f"""
WITH RECURSIVE g(priority, tenant, queue, run_at) AS (
    SELECT priority, tenant, queue, run_at FROM (
        SELECT priority, tenant, queue, run_at FROM tasks WHERE {_READY} {_GROUP_ORDER}) AS first
    UNION ALL
    SELECT t.priority, t.tenant, t.queue, t.run_at FROM g JOIN tasks AS t ON t.id = coalesce(
        (SELECT id FROM tasks WHERE {_READY} AND priority = g.priority AND tenant = g.tenant AND queue > g.queue {_GROUP_ORDER}),
        (SELECT id FROM tasks WHERE {_READY} AND priority = g.priority AND tenant > g.tenant {_GROUP_ORDER}),
        (SELECT id FROM tasks WHERE {_READY} AND priority < g.priority {_GROUP_ORDER}))
)
SELECT queue, min(run_at) FROM g WHERE run_at <= ? GROUP BY queue
"""

ADD_COUNTER_SQL = (
    "INSERT INTO metric_counters (metric, labels, value) VALUES (?, ?, ?) "
    "ON CONFLICT (metric, labels) DO UPDATE SET value = metric_counters.value + excluded.value"
)
RAISE_COUNTER_SQL = (
    "INSERT INTO metric_counters (metric, labels, value) VALUES (?, ?, ?) "
    "ON CONFLICT (metric, labels) DO UPDATE SET value = {greatest}(metric_counters.value, excluded.value)"
)


class MetricsSQL:
    """Counters kept in `metric_counters`, and the bounded reads the gauges come from."""

    conn: sqlite3.Connection
    _greatest: str

    def counter_deltas(self) -> dict[tuple[str, str], float]:
        """What this transaction adds to counters so far (written at `flush_counters`): the hot path adds to it in place."""
        return self.__dict__.setdefault("_counter_deltas", {})

    def add_counters(self, deltas: Mapping[tuple[str, str], float]) -> None:
        """Add to counters keyed by `(metric, canonical labels JSON)`, written at `flush_counters` (before commit)."""
        pending = self.counter_deltas()
        for key, value in deltas.items():
            pending[key] = pending.get(key, 0.0) + value

    def flush_counters(self) -> None:
        """Write the counters added in this transaction, one upsert each in key order (consistent lock order)."""
        pending = self.__dict__.pop("_counter_deltas", None)
        if pending:
            self.conn.executemany(ADD_COUNTER_SQL, [(metric, labels, value) for (metric, labels), value in sorted(pending.items())])

    def raise_counter(self, metric: str, labels: str, value: float) -> None:
        """Set a counter to `value` unless it is higher already (a time that only moves forward)."""
        self.conn.execute(RAISE_COUNTER_SQL.format(greatest=self._greatest), (metric, labels, value))

    def counter_rows(self) -> list[tuple[str, str, float]]:
        """Every stored counter: `(metric, labels JSON, value)`, by metric and labels."""
        return self.conn.execute("SELECT metric, labels, value FROM metric_counters ORDER BY metric, labels").fetchall()

    def task_counts(self) -> list[tuple[str, str, str, int]]:
        """`(queue, state, tenant, count)` of every combination that has tasks, counted in the covering index alone."""
        return self.conn.execute(COUNTS_SQL).fetchall()

    def oldest_ready(self, now: int) -> list[tuple[str, int]]:
        """`(queue, run_at)` of each queue's longest-waiting ready task (pending, no unfinished dependency, due by `now`)."""
        return self.conn.execute(OLDEST_READY_SQL, (now,)).fetchall()

    def audit_max_seq(self) -> int:
        """The highest audit seq (the number of entries: seq runs 1, 2, 3... with no gaps); 0 when empty."""
        return self.conn.execute("SELECT coalesce(max(seq), 0) FROM audit").fetchone()[0]

    def worker_host(self, worker: str) -> str | None:
        """The host of the newest worker run named `worker`, if the registry still has it."""
        row = self.conn.execute("SELECT host FROM workers WHERE id = ? ORDER BY heartbeat_at DESC LIMIT 1", (worker,)).fetchone()
        return None if row is None else row[0]
