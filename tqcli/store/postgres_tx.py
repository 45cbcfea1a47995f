"""The queries of one PostgreSQL transaction: the shared `*_sql` queries, and what PostgreSQL says differently.

`PgConnection` lets the shared queries, written with `?` placeholders for
sqlite3, run on psycopg; `PostgresTx` overrides what needs PostgreSQL's own
words or locks (see the module docstring of `tqcli.store.postgres`).
"""

from __future__ import annotations

import re
import uuid
from typing import Any, Callable, Iterator, Sequence

import psycopg

from tqcli.store.audit_sql import AUDIT_COLUMNS, AuditSQL
from tqcli.store.base import AuditLink, PickRow
from tqcli.store.breaker_sql import BreakerSQL
from tqcli.store.dispatch_sql import CLAIM_ORDER, PICK_COLUMNS, DispatchSQL, claim_filters, pick_statement
from tqcli.store.keys_sql import KeysSQL
from tqcli.store.maintenance_sql import MaintenanceSQL
from tqcli.store.output_sql import OutputSQL
from tqcli.store.metrics_sql import MetricsSQL
from tqcli.store.schedule_sql import ScheduleSQL
from tqcli.store.tasks_sql import INSERT_COLUMNS, TaskSQL, marks
from tqcli.store.tenancy_sql import TenancySQL
from tqcli.store.tokens_sql import TokenSQL

# Advisory lock keys (one 64-bit number each): the audit head, and breakers and idempotency keys by hash.
AUDIT_LOCK = 0x7471636C_00000001
ROLES_LOCK = 0x7471636C_00000002
BREAKER_LOCK_SPACE = "tqcli.breaker:"
KEY_LOCK_SPACE = "tqcli.idempotency:"
# From this many rows an insert is one COPY (a bulk submit), below it pipelined INSERTs.
COPY_FROM = 50

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_PLACEHOLDER = re.compile(r"'(?:[^']|'')*'|\?|%")


def _to_format(sql: str) -> str:
    """The shared queries' `?` placeholders as psycopg's `%s` (a literal `%` doubled)."""
    return _PLACEHOLDER.sub(lambda m: "%s" if m.group() == "?" else ("%%" if m.group() == "%" else m.group()), sql)


class PgConnection:
    """A psycopg connection behind the calls the shared queries make (sqlite3's `execute`/`executemany`)."""

    __slots__ = ("raw", "_translated")

    def __init__(self, raw: psycopg.Connection) -> None:
        self.raw = raw
        self._translated: dict[str, str] = {}

    def _sql(self, sql: str) -> str:
        text = self._translated.get(sql)
        if text is None:
            text = self._translated[sql] = _to_format(sql)
        return text

    def execute(self, sql: str, params: Sequence[Any] = ()) -> psycopg.Cursor:
        """Run one statement written with `?` placeholders; its cursor.

        An integer beyond 64 bits is an OverflowError, as sqlite3 raises it,
        rather than a NUMERIC that matches no row.
        """
        for value in params:
            if type(value) is int and not _INT64_MIN <= value <= _INT64_MAX:
                raise OverflowError("Python int too large to convert to a 64-bit integer")
        return self.raw.execute(self._sql(sql), tuple(params))

    def executemany(self, sql: str, rows: Any) -> psycopg.Cursor:
        """Run one statement for every row (pipelined by psycopg); its cursor, rowcount summed."""
        cursor = self.raw.cursor()
        cursor.executemany(self._sql(sql), list(rows))
        return cursor


class PostgresTx(TaskSQL, DispatchSQL, BreakerSQL, ScheduleSQL, AuditSQL, MaintenanceSQL, TenancySQL, KeysSQL, MetricsSQL, OutputSQL, TokenSQL):
    """The queries of one PostgreSQL transaction; created only by `PostgresStore.read/write`."""

    no_limit = None  # LIMIT NULL is no limit on PostgreSQL
    _greatest = "GREATEST"
    _still_pending = "state = 'pending'"

    def __init__(self, conn: PgConnection) -> None:
        self.conn = conn  # type: ignore[assignment]
        self.made_ready = False

    # -- ids and numbers ---------------------------------------------------

    def allocate_task_ids(self, count: int) -> list[int]:
        """`count` new task ids, ascending, from the tasks' sequence (no other transaction gets them)."""
        if count <= 0:
            return []
        rows = self.conn.raw.execute("SELECT nextval('tasks_id_seq') FROM generate_series(1, %s)", (count,)).fetchall()
        return sorted(row[0] for row in rows)

    def next_claim_number(self) -> int:
        """A claim number no other claim gets (a sequence: numbers may be skipped, never repeated)."""
        return self.conn.raw.execute("SELECT nextval('claim_seq')").fetchone()[0]  # type: ignore[index]

    def use_claim_number(self, number: int) -> None:
        """Nothing to record: the sequence already handed `number` out once."""

    # -- locks -------------------------------------------------------------

    def lock_tasks(self, ids: Sequence[int], *, shared: bool = False) -> None:
        """Lock these task rows until commit (FOR SHARE with `shared`), in id order."""
        if ids:
            mode = "SHARE" if shared else "UPDATE"
            self.conn.raw.execute(f"SELECT id FROM tasks WHERE id = ANY(%s) ORDER BY id FOR {mode}", (sorted(set(ids)),)).fetchall()

    def lock_breakers(self, keys: Sequence[str]) -> None:
        """Lock these circuits until commit (existing or not), in key order."""
        self._advisory_locks([BREAKER_LOCK_SPACE + key for key in keys])

    def lock_idempotency_keys(self, tenant: str, keys: Sequence[str]) -> None:
        """Lock these keys of one tenant until commit: a second submit with one of them waits, then sees the first's task."""
        self._advisory_locks([f"{KEY_LOCK_SPACE}{len(tenant)}:{tenant}:{key}" for key in keys])

    def lock_limits(self, queues: Sequence[str], tenants: Sequence[str]) -> None:
        """Lock these queues' and tenants' settings rows until commit: queues, then tenants, each in name order."""
        for table, names in (("queues", queues), ("tenants", tenants)):
            if names:
                self.conn.raw.execute(f"SELECT name FROM {table} WHERE name = ANY(%s) ORDER BY name FOR UPDATE", (sorted(set(names)),)).fetchall()

    def _advisory_locks(self, names: Sequence[str]) -> None:
        # In name order, so two transactions locking overlapping sets cannot deadlock on them.
        for name in sorted(set(names)):
            self.conn.raw.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (name,))

    def lock_roles(self) -> None:
        """Hold the grants still until commit: revokes and applies of roles run one at a time."""
        self.conn.raw.execute("SELECT pg_advisory_xact_lock(%s)", (ROLES_LOCK,))

    def append_audit(self, link: AuditLink) -> None:
        """Append `link(head)`'s rows (head `(seq, hash, key_id)`) under the chain's lock, so no two transactions extend the same head."""
        self.conn.raw.execute("SELECT pg_advisory_xact_lock(%s)", (AUDIT_LOCK,))
        self.insert_audit(link(self.audit_head()))

    def holding(self, tokens: Sequence[tuple[int, int]]) -> dict[tuple[int, int], bool]:
        """See DispatchSQL.holding; the rows stay locked until commit.

        Completing reads `has_dependents` here and releases dependents only
        when it is set; a dependent submitted meanwhile sets it. Locking the
        row makes that submit wait for this commit (and then see the task
        completed), or this read wait for the submit (and then see the flag).
        """
        wanted = set(tokens)
        ids = sorted({task_id for task_id, _ in tokens})
        rows = self.conn.raw.execute(
            "SELECT id, claim, has_dependents FROM tasks WHERE id = ANY(%s) AND state = 'running' ORDER BY id FOR UPDATE", (ids,)
        ).fetchall()
        return {(task_id, claim): bool(flag) for task_id, claim, flag in rows if (task_id, claim) in wanted}

    # -- claims ------------------------------------------------------------

    def pick_tasks(self, *, count: int, now: int, **filters: Any) -> list[PickRow]:
        """See DispatchSQL.pick_tasks: locked until commit, skipping rows another claim has locked."""
        sql, params = pick_statement(due_by=filters.pop("due_by", None) or now, **filters)
        return list(map(PickRow._make, self.conn.execute(sql + " FOR UPDATE SKIP LOCKED", (*params, count)).fetchall()))

    def pick_shares(self, shares: Sequence[tuple[str, str, int]], *, priority: int, now: int, **filters: Any) -> list[PickRow]:
        """See TenancySQL.pick_shares: every share in one statement (a LATERAL search per share), locked as `pick_tasks`'s."""
        if not shares:
            return []
        where, params = claim_filters(due_by=filters.pop("due_by", None) or now, priority=priority, **filters)
        sql = (
            "SELECT picked.* FROM unnest(?::text[], ?::text[], ?::bigint[]) AS share(tenant, queue, n) "
            f"CROSS JOIN LATERAL (SELECT {PICK_COLUMNS} FROM tasks WHERE {where} AND tenant = share.tenant AND queue = share.queue "
            f"ORDER BY {CLAIM_ORDER} LIMIT share.n FOR UPDATE SKIP LOCKED) AS picked"
        )
        tenants, queues, counts = (list(column) for column in zip(*shares))
        return list(map(PickRow._make, self.conn.execute(sql, (tenants, queues, counts, *params)).fetchall()))

    def explain_claim(self, **filters: Any) -> list[str]:
        """PostgreSQL's plan for one tenant's pick at one level, one line per step."""
        sql, params = pick_statement(due_by=0, **{"priority": 0, "tenants": ("default",), "queues": ("default",), **filters})
        return [row[0] for row in self.conn.execute(f"EXPLAIN {sql} FOR UPDATE SKIP LOCKED", (*params, 1)).fetchall()]

    # -- what wakes workers ------------------------------------------------

    def insert_tasks(self, rows: Any) -> None:
        """Insert task rows (see TaskSQL.insert_tasks), by COPY when there are many; idle workers are woken at commit."""
        self.made_ready = True
        self._insert("tasks", INSERT_COLUMNS, rows)

    def insert_audit(self, rows: Any) -> None:
        """Append entries given in `AUDIT_COLUMNS` order, by COPY when there are many."""
        self._insert("audit", AUDIT_COLUMNS, rows)

    def _insert(self, table: str, names: str, rows: Any) -> None:
        rows = list(rows)
        if len(rows) < COPY_FROM:
            self.conn.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks(names.count(',') + 1)})", rows)
            return
        with self.conn.raw.cursor().copy(f"COPY {table} ({names}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)

    def release_dependents(self, task_id: int) -> None:
        """See DispatchSQL.release_dependents; idle workers are woken at commit."""
        self.made_ready = True
        super().release_dependents(task_id)

    def release_task(self, task_id: int, claim: int) -> bool:
        """See DispatchSQL.release_task; idle workers are woken at commit."""
        self.made_ready = True
        return super().release_task(task_id, claim)

    def replay_tasks(self, ids: Sequence[int], *, now: int) -> None:
        """See TaskSQL.replay_tasks; idle workers are woken at commit."""
        self.made_ready = True
        super().replay_tasks(ids, now=now)

    # -- queries PostgreSQL words differently ------------------------------

    def iter_audit(self, first: int | None = None, last: int | None = None) -> Iterator[tuple[Any, ...]]:
        """Entries in stored order, streamed through a server-side cursor (never all in memory)."""
        cursor = self.conn.raw.cursor(name=f"audit_{uuid.uuid4().hex}")
        cursor.itersize = 5000
        if first is None:
            cursor.execute(f"SELECT {AUDIT_COLUMNS} FROM audit ORDER BY seq")
        else:
            cursor.execute(f"SELECT {AUDIT_COLUMNS} FROM audit WHERE seq BETWEEN %s AND %s ORDER BY seq", (first, last))
        return iter(cursor)

    def prunable_tasks(self, states: Sequence[str], finished_by: int, after: tuple[int, int], limit: int) -> list[tuple[int, int, str]]:
        """See MaintenanceSQL.prunable_tasks (the planner needs no hint here)."""
        sql = (
            "SELECT finished_at, id, tenant FROM tasks AS t WHERE finished_at <= %s AND (finished_at, id) > (%s, %s) "
            "AND state = ANY(%s) AND NOT EXISTS (SELECT 1 FROM task_deps AS d JOIN tasks AS u "
            "ON u.id = d.task_id WHERE d.depends_on = t.id AND u.state IN ('pending', 'blocked', 'running')) "
            "ORDER BY finished_at, id LIMIT %s"
        )
        return self.conn.raw.execute(sql, (finished_by, *after, list(states), limit)).fetchall()

    def known_names(self, kind: str, prefix: str, limit: int) -> list[tuple[str, str | None]]:
        """Names of `kind` starting with `prefix` (shell completion), by index range scans."""
        from tqcli.store.names_pg import lookup

        return lookup(self.conn, kind, prefix, limit)
