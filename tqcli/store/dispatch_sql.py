"""Claiming, leasing and finishing attempts (mixed into the store's transaction object).

Every write to a claimed task names its fencing token: it only applies while
that token still holds the task (`lease_token = ? AND state = 'running'`).
"""

from __future__ import annotations

import sqlite3
from typing import Any, Sequence

from tqcli.store.tasks_sql import chunks, marks

# What a worker needs to run a claimed task, in this order (see core.dispatcher.Claim).
CLAIM_COLUMNS = (
    "id, name, queue, tenant, backend, target, payload, attempts, max_retries, backoff, timeout, "
    "service, encrypted, dag_id, lease_token"
)

_PICK = (
    "SELECT id FROM tasks WHERE state = 'pending' AND waiting_deps = 0 AND run_at <= ?{filters} "
    "ORDER BY priority DESC, run_at, id LIMIT 1"
)


def _in_clause(column: str, values: Sequence[str], negate: bool = False) -> str:
    return f" AND {column} {'NOT ' if negate else ''}IN ({marks(len(values))})"


class DispatchSQL:
    """Queries for workers: claim, finish, renew, reclaim."""

    conn: sqlite3.Connection

    def next_attempt_id(self) -> int:
        """The id the next attempt row gets; used as the claim's fencing token."""
        return self.conn.execute("SELECT coalesce(max(id), 0) + 1 FROM attempts").fetchone()[0]

    def claim_next(
        self,
        *,
        now: int,
        token: int,
        lease_until: int,
        worker: str,
        queues: Sequence[str] = (),
        tenants: Sequence[str] = (),
        backends: Sequence[str] | None = None,
        excluded_services: Sequence[str] = (),
        task_id: int | None = None,
        due_by: int | None = None,
        dag_id: int | None = None,
    ) -> tuple[Any, ...] | None:
        """Claim the best ready task matching the filters (or `task_id` if ready); its row or None.

        Ready means pending, every dependency completed, and `run_at` not after
        `due_by` (default: `now`).
        """
        params: list[Any] = [now if due_by is None else due_by]
        filters = ""
        if task_id is not None:
            filters += " AND id = ?"
            params.append(task_id)
        if dag_id is not None:
            filters += " AND dag_id = ?"
            params.append(dag_id)
        for column, values in (("queue", queues), ("tenant", tenants)):
            if values:
                filters += _in_clause(column, values)
                params.extend(values)
        if backends is not None:  # only the backends this worker could load (maybe none)
            filters += _in_clause("backend", backends)
            params.extend(backends)
        if excluded_services:
            filters += _in_clause("service", excluded_services, negate=True)
            params.extend(excluded_services)
        sql = (
            "UPDATE tasks SET state = 'running', attempts = attempts + 1, started_at = ?, lease_token = ?, "
            "lease_until = ?, worker = ?, cancel_requested = 0 "
            f"WHERE id = ({_PICK.format(filters=filters)}) RETURNING {CLAIM_COLUMNS}"
        )
        return self.conn.execute(sql, (now, token, lease_until, worker, *params)).fetchone()

    def insert_attempts(self, rows: Sequence[tuple[int, int, int, int, str, int]]) -> None:
        """Open attempt rows: `(id/token, task_id, attempt, token, worker, started_at)`."""
        self.conn.executemany(
            "INSERT INTO attempts (id, task_id, attempt, token, worker, started_at) VALUES (?, ?, ?, ?, ?, ?)", rows
        )

    def close_attempt(self, token: int, *, now: int, outcome: str, error: str | None) -> None:
        """Record how the attempt with this token ended (only the first ending counts)."""
        self.conn.execute(
            "UPDATE attempts SET finished_at = ?, outcome = ?, error = ? WHERE id = ? AND outcome IS NULL",
            (now, outcome, error, token),
        )

    def complete_task(self, task_id: int, token: int, *, now: int, result: str) -> bool:
        """running -> completed, if `token` still holds the task."""
        cursor = self.conn.execute(
            "UPDATE tasks SET state = 'completed', result = ?, error = NULL, finished_at = ?, lease_token = NULL, "
            "lease_until = NULL WHERE id = ? AND lease_token = ? AND state = 'running'",
            (result, now, task_id, token),
        )
        return cursor.rowcount == 1

    def retry_task(self, task_id: int, token: int, *, error: str, run_at: int) -> bool:
        """running -> pending with `run_at` pushed back, if `token` still holds the task."""
        cursor = self.conn.execute(
            "UPDATE tasks SET state = 'pending', error = ?, run_at = ?, lease_token = NULL, lease_until = NULL, "
            "worker = NULL WHERE id = ? AND lease_token = ? AND state = 'running'",
            (error, run_at, task_id, token),
        )
        return cursor.rowcount == 1

    def end_task(self, task_id: int, token: int, *, state: str, now: int, error: str) -> bool:
        """running -> failed or cancelled, if `token` still holds the task."""
        cursor = self.conn.execute(
            "UPDATE tasks SET state = ?, error = ?, finished_at = ?, lease_token = NULL, lease_until = NULL "
            "WHERE id = ? AND lease_token = ? AND state = 'running'",
            (state, error, now, task_id, token),
        )
        return cursor.rowcount == 1

    def release_task(self, task_id: int, token: int) -> bool:
        """running -> pending without counting the attempt, if `token` still holds the task."""
        cursor = self.conn.execute(
            "UPDATE tasks SET state = 'pending', attempts = attempts - 1, lease_token = NULL, lease_until = NULL, "
            "worker = NULL, started_at = NULL WHERE id = ? AND lease_token = ? AND state = 'running'",
            (task_id, token),
        )
        return cursor.rowcount == 1

    def release_dependents(self, task_id: int) -> None:
        """One fewer unfinished dependency for every task that depends on `task_id`."""
        self.conn.execute(
            "UPDATE tasks SET waiting_deps = waiting_deps - 1 "
            "WHERE id IN (SELECT task_id FROM task_deps WHERE depends_on = ?)",
            (task_id,),
        )

    def renew_leases(self, tokens: Sequence[int], lease_until: int) -> int:
        """Extend the leases these tokens still hold; returns how many were extended."""
        renewed = 0
        for part in chunks(tokens):
            cursor = self.conn.execute(
                f"UPDATE tasks SET lease_until = ? WHERE state = 'running' AND lease_token IN ({marks(len(part))})",
                (lease_until, *part),
            )
            renewed += cursor.rowcount
        return renewed

    def held_tokens(self, tokens: Sequence[int]) -> list[tuple[int, int, int]]:
        """`(task_id, token, cancel_requested)` for the tokens that still hold their task."""
        rows: list[tuple[int, int, int]] = []
        for part in chunks(tokens):
            rows += self.conn.execute(
                f"SELECT id, lease_token, cancel_requested FROM tasks WHERE state = 'running' AND lease_token IN ({marks(len(part))})",
                part,
            ).fetchall()
        return rows

    def expired_leases(self, now: int) -> list[tuple[Any, ...]]:
        """Claim rows (`CLAIM_COLUMNS`) of running tasks whose lease ended before `now`."""
        return self.conn.execute(
            f"SELECT {CLAIM_COLUMNS}, cancel_requested FROM tasks WHERE state = 'running' AND lease_until < ?",
            (now,),
        ).fetchall()

    def task_state(self, task_id: int) -> str | None:
        """The state of one task, or None if it does not exist."""
        row = self.conn.execute("SELECT state FROM tasks WHERE id = ?", (task_id,)).fetchone()
        return row[0] if row else None
