"""Claiming, leasing and finishing attempts (mixed into the store's transaction object).

Every write to a claimed task names its fencing token, the pair (task id,
claim number): it only applies while that token still holds the task
(`id = ? AND claim = ? AND state = 'running'`).
"""

from __future__ import annotations

import sqlite3
from typing import Any, Sequence

from tqcli.store.base import ClaimRow, PickRow, columns
from tqcli.store.lean_insert import LeanInsert
from tqcli.store.tasks_sql import chunks, marks

# What a worker needs to run a claimed task, in this order (see core.dispatcher.Claim).
CLAIM_COLUMNS = columns(ClaimRow)

# The order of `tasks_claim`. A claim takes one tenant's queue at one priority
# level at a time (see tqcli.core.picking), where this is oldest first.
CLAIM_ORDER = "priority DESC, tenant, queue, run_at, id"

# What a claim judges a picked task by, before it claims it (see `pick_tasks`).
PICK_COLUMNS = columns(PickRow)

# A completed attempt has neither error nor traceback: NULL in the statement, not bound (see tqcli.store.lean_insert).
_RECORD_ATTEMPTS = LeanInsert(
    "attempts", ("task_id", "claim", "run", "attempt", "worker", "started_at", "finished_at", "outcome", "error", "traceback"),
    ("error", "traceback"), suffix=" ON CONFLICT DO NOTHING",
)

# Ready: pending, every dependency completed, due, not expired (an expired
# task is never claimed; the next poll cancels it, see `expired_tasks`).
_READY = "state = 'pending' AND waiting_deps = 0 AND run_at <= ? AND (expires_at IS NULL OR expires_at > ?)"


def _in_clause(column: str, values: Sequence[str], negate: bool = False) -> str:
    if not values:  # PostgreSQL has no empty IN list
        return "" if negate else " AND 1 = 0"
    return f" AND {column} {'NOT ' if negate else ''}IN ({marks(len(values))})"


def claim_filters(
    *,
    due_by: int,
    queues: Sequence[str] = (),
    tenants: Sequence[str] = (),
    backends: Sequence[str] | None = None,
    excluded_services: Sequence[str] = (),
    excluded_queues: Sequence[str] = (),
    excluded_tenants: Sequence[str] = (),
    priority: int | None = None,
    task_id: int | None = None,
    dag_id: int | None = None,
    exclude_error: str | None = None,
    plain_only: bool = False,
    excluded_prefixes: Sequence[str] = (),
) -> tuple[str, list[Any]]:
    """The WHERE clause (with `?` placeholders) of the tasks a claim may take, and its parameters.

    `backends` limits claims to the backends a worker could load (maybe
    none); `priority` to one priority level; `exclude_error` skips tasks
    whose last attempt failed with exactly that error; `plain_only` skips
    encrypted tasks, `excluded_prefixes` those whose payload starts with one
    of them (sealed under a key the worker lacks). Both stores build their
    claim around it.
    """
    params: list[Any] = [due_by, due_by]
    where = _READY
    if priority is not None:
        where += " AND priority = ?"
        params.append(priority)
    if task_id is not None:
        where += " AND id = ?"
        params.append(task_id)
    if dag_id is not None:
        where += " AND dag_id = ?"
        params.append(dag_id)
    for column, values in (("queue", queues), ("tenant", tenants)):
        if values:
            where += _in_clause(column, values)
            params.extend(values)
    if backends is not None:
        where += _in_clause("backend", backends)
        params.extend(backends)
    for column, values in (("service", excluded_services), ("queue", excluded_queues), ("tenant", excluded_tenants)):
        if values:
            where += _in_clause(column, values, negate=True)
            params.extend(values)
    if exclude_error is not None:
        where += " AND (error IS NULL OR error <> ?)"
        params.append(exclude_error)
    if plain_only:
        where += " AND encrypted = 0"
    for prefix in excluded_prefixes:
        where += " AND (encrypted = 0 OR substr(payload, 1, ?) <> ?)"
        params.extend((len(prefix), prefix))
    return where, params


def pick_statement(*, due_by: int, **filters: Any) -> tuple[str, list[Any]]:
    """The SELECT of the best ready tasks matching `filters` (see `claim_filters`), and its parameters; the LIMIT comes last."""
    where, params = claim_filters(due_by=due_by, **filters)
    return f"SELECT {PICK_COLUMNS} FROM tasks WHERE {where} ORDER BY {CLAIM_ORDER} LIMIT ?", params


CLAIM_PICKED = (
    "UPDATE tasks SET state = 'running', attempts = attempts + 1, started_at = ?, "
    "claim = ?, lease_until = ?, worker = ?, holder = ?, cancel_requested = 0 "
    "WHERE id IN ({ids}) AND {still_pending} RETURNING " + CLAIM_COLUMNS
)


class DispatchSQL:
    """Queries for workers: claim, finish, renew, reclaim."""

    conn: sqlite3.Connection

    def next_claim_number(self) -> int:
        """The next claim number (a token is `(task id, number)`); `use_claim_number` takes it."""
        return self.conn.execute("SELECT value + 1 FROM counters WHERE name = 'claim'").fetchone()[0]

    def use_claim_number(self, number: int) -> None:
        """Record that `number` was handed out, so it is never handed out again."""
        self.conn.execute("UPDATE counters SET value = ? WHERE name = 'claim' AND value < ?", (number, number))

    # The claim rechecks that a picked task is still pending; the `+` keeps SQLite
    # from answering that with an index, which would visit every pending task
    # instead of the picked ids (PostgreSQL has no unary + on text).
    _still_pending = "+state = 'pending'"

    def claim_tasks(
        self, *, count: int, now: int, claim_number: int, lease_until: int, worker: str, holder: str | None = None, **filters: Any
    ) -> list[ClaimRow]:
        """Claim the best `count` ready tasks matching `filters`; their rows, in no particular order (they carry priority and run_at).

        Ready means pending, every dependency completed, and `run_at` not after
        `due_by` (default: `now`); see `claim_filters` for the filters. No task
        is claimed by two transactions (`pick_tasks`, then `claim_picked`).
        """
        picked = self.pick_tasks(count=count, now=now, **filters)
        return self.claim_picked(
            [row.id for row in picked], now=now, claim_number=claim_number, lease_until=lease_until, worker=worker, holder=holder
        )

    def pick_tasks(self, *, count: int, now: int, **filters: Any) -> list[PickRow]:
        """The best `count` ready tasks matching `filters`, best first, for `claim_picked` (see `claim_tasks` for "ready")."""
        sql, params = pick_statement(due_by=filters.pop("due_by", None) or now, **filters)
        return list(map(PickRow._make, self.conn.execute(sql, (*params, count)).fetchall()))

    def claim_picked(
        self, ids: Sequence[int], *, now: int, claim_number: int, lease_until: int, worker: str, holder: str | None = None
    ) -> list[ClaimRow]:
        """Claim these picked tasks, those still pending; their rows, in no particular order."""
        rows: list[ClaimRow] = []
        for part in chunks(ids):
            sql = CLAIM_PICKED.format(ids=marks(len(part)), still_pending=self._still_pending)
            rows += map(ClaimRow._make, self.conn.execute(sql, (now, claim_number, lease_until, worker, holder, *part)).fetchall())
        return rows

    def record_attempts(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """Ended attempts: `(task_id, claim, run, attempt, worker, started_at, finished_at, outcome, error, traceback)`.

        `(task_id, claim)` is the row's key, so an attempt is recorded once.
        """
        _RECORD_ATTEMPTS.run(self.conn, rows)

    def complete_task(self, task_id: int, claim: int, *, now: int, result: str) -> bool | None:
        """running -> completed if claim `claim` still holds the task: whether it has dependents; None if not held."""
        row = self.conn.execute(
            "UPDATE tasks SET state = 'completed', result = ?, error = NULL, finished_at = ?, claim = NULL, "
            "lease_until = NULL WHERE id = ? AND claim = ? AND state = 'running' RETURNING has_dependents",
            (result, now, task_id, claim),
        ).fetchone()
        return None if row is None else bool(row[0])

    def _held_flags(self, tokens: Sequence[tuple[int, int]], flag: str) -> dict[tuple[int, int], bool]:
        """For the `(task id, claim)` tokens that still hold their running task: the boolean column `flag`."""
        wanted = set(tokens)
        held: dict[tuple[int, int], bool] = {}
        for part in chunks([task_id for task_id, _ in tokens]):
            sql = f"SELECT id, claim, {flag} FROM tasks WHERE state = 'running' AND id IN ({marks(len(part))})"
            for task_id, claim, value in self.conn.execute(sql, part):
                if (task_id, claim) in wanted:
                    held[(task_id, claim)] = bool(value)
        return held

    def holding(self, tokens: Sequence[tuple[int, int]]) -> dict[tuple[int, int], bool]:
        """For the `(task id, claim)` tokens that still hold their (running) task: whether it has dependents now."""
        return self._held_flags(tokens, "has_dependents")

    def complete_tasks(self, rows: Sequence[tuple[str, int, int, int]]) -> None:
        """Complete many held tasks: `(result, now, task_id, claim)` each (check `holding` first)."""
        self.conn.executemany(
            "UPDATE tasks SET state = 'completed', result = ?, error = NULL, finished_at = ?, claim = NULL, "
            "lease_until = NULL WHERE id = ? AND claim = ? AND state = 'running'",
            rows,
        )

    def retry_task(self, task_id: int, claim: int, *, error: str, run_at: int) -> bool:
        """running -> pending with `run_at` pushed back, if `claim` still holds the task and no cancel waits."""
        cursor = self.conn.execute(
            "UPDATE tasks SET state = 'pending', error = ?, run_at = ?, claim = NULL, lease_until = NULL, "
            "worker = NULL WHERE id = ? AND claim = ? AND state = 'running' AND cancel_requested = 0",
            (error, run_at, task_id, claim),
        )
        return cursor.rowcount == 1

    def pending_cancel_note(self, task_id: int, claim: int) -> str | None:
        """The note of a cancel requested while `claim` holds the task (who, why); None if none was."""
        row = self.conn.execute(
            "SELECT cancel_requested, error FROM tasks WHERE id = ? AND claim = ? AND state = 'running'", (task_id, claim)
        ).fetchone()
        return (row[1] or "cancelled") if row and row[0] else None

    def end_task(self, task_id: int, claim: int, *, state: str, now: int, error: str) -> bool:
        """running -> failed or cancelled, if `claim` still holds the task."""
        cursor = self.conn.execute(
            "UPDATE tasks SET state = ?, error = ?, finished_at = ?, claim = NULL, lease_until = NULL "
            "WHERE id = ? AND claim = ? AND state = 'running'",
            (state, error, now, task_id, claim),
        )
        return cursor.rowcount == 1

    def release_task(self, task_id: int, claim: int) -> bool:
        """running -> pending without counting the attempt, if `claim` still holds the task."""
        cursor = self.conn.execute(
            "UPDATE tasks SET state = 'pending', attempts = attempts - 1, claim = NULL, lease_until = NULL, "
            "worker = NULL, started_at = NULL WHERE id = ? AND claim = ? AND state = 'running'",
            (task_id, claim),
        )
        return cursor.rowcount == 1

    def release_dependents(self, task_id: int) -> None:
        """One fewer unfinished dependency for every task that depends on `task_id`."""
        self.conn.execute(
            "UPDATE tasks SET waiting_deps = waiting_deps - 1 "
            "WHERE id IN (SELECT task_id FROM task_deps WHERE depends_on = ?)",
            (task_id,),
        )

    def renew_leases(self, tokens: Sequence[tuple[int, int]], lease_until: int) -> int:
        """Extend the leases these `(task id, claim)` tokens still hold; returns how many were extended."""
        cursor = self.conn.executemany(
            "UPDATE tasks SET lease_until = ? WHERE id = ? AND claim = ? AND state = 'running'",
            [(lease_until, task_id, claim) for task_id, claim in tokens],
        )
        return cursor.rowcount

    def held_tokens(self, tokens: Sequence[tuple[int, int]]) -> dict[tuple[int, int], bool]:
        """For the `(task id, claim)` tokens that still hold their task: whether a cancel was requested."""
        return self._held_flags(tokens, "cancel_requested")

    def expired_tasks(self, now: int, limit: int) -> list[tuple[int, str]]:
        """`(id, tenant)` of up to `limit` pending tasks whose `expires_at` has passed (an index search)."""
        return self.conn.execute(
            "SELECT id, tenant FROM tasks WHERE expires_at IS NOT NULL AND state = 'pending' AND expires_at <= ? "
            "ORDER BY expires_at LIMIT ?",
            (now, limit),
        ).fetchall()

    def running_leases(self) -> list[tuple[Any, ...]]:
        """Claim rows (`CLAIM_COLUMNS`) of every running task, then cancel_requested, lease_until, holder."""
        return self.conn.execute(
            f"SELECT {CLAIM_COLUMNS}, cancel_requested, lease_until, holder FROM tasks WHERE state = 'running'"
        ).fetchall()

    def claimed_row(self, task_id: int, claim: int) -> ClaimRow | None:
        """The claim row of a task while claim `claim` still holds it, else None."""
        row = self.conn.execute(
            f"SELECT {CLAIM_COLUMNS} FROM tasks WHERE id = ? AND claim = ? AND state = 'running'", (task_id, claim)
        ).fetchone()
        return None if row is None else ClaimRow._make(row)

    def running_tokens(self, worker: str) -> list[tuple[int, int]]:
        """The `(task id, claim)` tokens of every task `worker` runs now, as the database has them."""
        return [
            (task_id, claim)
            for task_id, claim in self.conn.execute("SELECT id, claim FROM tasks WHERE state = 'running' AND worker = ?", (worker,))
        ]

    def running_attempt(self, task_id: int) -> tuple[int, int, int, str] | None:
        """`(run, attempt, started_at, worker)` of the attempt running now, if the task runs."""
        return self.conn.execute(
            "SELECT run, attempts, started_at, worker FROM tasks WHERE id = ? AND state = 'running'", (task_id,)
        ).fetchone()

    def task_state(self, task_id: int) -> str | None:
        """The state of one task, or None if it does not exist."""
        row = self.conn.execute("SELECT state FROM tasks WHERE id = ?", (task_id,)).fetchone()
        return row[0] if row else None
