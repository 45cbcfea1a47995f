"""Task, dependency and attempt queries (mixed into the store's transaction object)."""

from __future__ import annotations

import sqlite3
from typing import Any, Iterable, Iterator, Mapping, Sequence

from tqcli.store.base import AttemptRow, TaskRow, columns
from tqcli.store.lean_insert import LeanInsert

# The columns every task query selects, in the field order of `tqcli.core.task.Task`.
TASK_COLUMNS = columns(TaskRow)

# Now in microseconds since the epoch, by the database's clock (for callers that pass no time).

# SQLite allows 32766 host parameters; stay far below it.
CHUNK = 500



def chunks(values: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    """`values` in slices of at most `size`."""
    for start in range(0, len(values), size):
        yield values[start : start + size]


def marks(count: int) -> str:
    """`?,?,?` with `count` placeholders."""
    return ",".join("?" * count)


# The columns a new task row gives, in order (the rest take their defaults).
INSERT_COLUMNS = (
    "id, name, queue, tenant, backend, target, payload, priority, state, "
    "max_retries, backoff, timeout, run_at, waiting_deps, dag_id, service, idempotency_key, "
    "created_at, submitted_by, restarted_from, expires_at, cwd, env, encrypted"
)
# Most tasks leave these NULL: written so in the statement, not bound (see tqcli.store.lean_insert).
_INSERT_TASKS = LeanInsert(
    "tasks", INSERT_COLUMNS.split(", "),
    ("timeout", "dag_id", "idempotency_key", "restarted_from", "expires_at", "cwd", "env"),
)

# The task columns `dlq replay` may change as it replays (its edit options).
REPLAY_EDITABLE_COLUMNS = frozenset({"payload", "priority", "max_retries", "queue"})


class TaskSQL:
    """Queries on tasks, task_deps and attempts."""

    conn: sqlite3.Connection
    no_limit: int | None = -1  # what LIMIT takes for "no limit" (SQLite: -1; PostgreSQL: NULL)

    def limit_value(self, limit: int | None) -> int | None:
        """The LIMIT parameter for `limit` rows, None meaning all of them."""
        return self.no_limit if limit is None else limit

    # -- insert ------------------------------------------------------------

    def insert_tasks(self, rows: Iterable[tuple[Any, ...]]) -> None:
        """Insert task rows in the column order of `INSERT_COLUMNS`."""
        _INSERT_TASKS.run(self.conn, rows)

    def insert_dependencies(self, pairs: Sequence[tuple[int, int]]) -> None:
        """Record `(task_id, depends_on)` edges, marking the depended-on tasks."""
        self.conn.executemany("INSERT INTO task_deps (task_id, depends_on) VALUES (?, ?) ON CONFLICT DO NOTHING", pairs)
        depended_on = sorted({dep for _, dep in pairs})
        for part in chunks(depended_on):
            self.conn.execute(f"UPDATE tasks SET has_dependents = 1 WHERE id IN ({marks(len(part))})", part)

    def find_idempotency_keys(self, tenant: str, keys: Sequence[str]) -> dict[str, tuple[int, str, str, str, str]]:
        """`(id, backend, target, payload, state)` of the task holding each idempotency key within one tenant."""
        found: dict[str, tuple[int, str, str, str, str]] = {}
        for part in chunks(keys):
            sql = (
                "SELECT idempotency_key, id, backend, target, payload, state FROM tasks "
                f"WHERE tenant = ? AND idempotency_key IN ({marks(len(part))})"
            )
            found.update((row[0], row[1:]) for row in self.conn.execute(sql, (tenant, *part)))
        return found

    # -- read --------------------------------------------------------------

    def task_states(self, ids: Sequence[int]) -> dict[int, str]:
        """The state of each existing task among `ids`."""
        states: dict[int, str] = {}
        for part in chunks(ids):
            states.update(self.conn.execute(f"SELECT id, state FROM tasks WHERE id IN ({marks(len(part))})", part).fetchall())
        return states

    def task_rows(self, ids: Sequence[int]) -> list[TaskRow]:
        """The existing tasks among `ids`, in id order."""
        rows: list[TaskRow] = []
        for part in chunks(ids):
            sql = f"SELECT {TASK_COLUMNS} FROM tasks WHERE id IN ({marks(len(part))}) ORDER BY id"
            rows += map(TaskRow._make, self.conn.execute(sql, part).fetchall())
        return rows

    def list_task_rows(
        self,
        *,
        queue: str | None,
        tenant: str | None,
        state: str | None,
        limit: int | None,
        dag_id: int | None = None,
        tenants: Sequence[str] | None = None,
    ) -> list[TaskRow]:
        """The newest `limit` tasks matching the filters (None: all; `tenants`: only those), newest first."""
        where, params = _filters(tenants, queue=queue, tenant=tenant, state=state, dag_id=dag_id)
        sql = f"SELECT {TASK_COLUMNS} FROM tasks{where} ORDER BY id DESC LIMIT ?"
        return list(map(TaskRow._make, self.conn.execute(sql, (*params, self.limit_value(limit))).fetchall()))

    def task_ids_in_state(self, state: str, *, queue: str | None, tenant: str | None, tenants: Sequence[str] | None = None) -> list[int]:
        """The ids, ascending, of every task in `state` matching the filters (`tenants`: only those); ids alone, so a million cost little."""
        where, params = _filters(tenants, queue=queue, tenant=tenant, state=state)
        return [row[0] for row in self.conn.execute(f"SELECT id FROM tasks{where} ORDER BY id", params).fetchall()]

    def count_by_queue_and_state(
        self, *, queue: str | None, tenant: str | None, tenants: Sequence[str] | None = None
    ) -> list[tuple[str, str, int]]:
        """`(queue, state, count)` for every queue and state that has tasks (of `tenants` only, when given)."""
        where, params = _filters(tenants, queue=queue, tenant=tenant)
        sql = f"SELECT queue, state, count(*) FROM tasks{where} GROUP BY queue, state"
        return self.conn.execute(sql, params).fetchall()

    def dependencies_of(self, ids: Sequence[int]) -> dict[int, list[int]]:
        """The ids each task among `ids` depends on, in ascending order."""
        deps: dict[int, list[int]] = {task_id: [] for task_id in ids}
        for part in chunks(ids):
            sql = f"SELECT task_id, depends_on FROM task_deps WHERE task_id IN ({marks(len(part))}) ORDER BY task_id, depends_on"
            for task_id, dep in self.conn.execute(sql, part):
                deps[task_id].append(dep)
        return deps

    def dependency_states(self, task_id: int) -> list[tuple[int, str]]:
        """`(id, state)` of every task that `task_id` depends on."""
        sql = "SELECT t.id, t.state FROM task_deps d JOIN tasks t ON t.id = d.depends_on WHERE d.task_id = ? ORDER BY t.id"
        return self.conn.execute(sql, (task_id,)).fetchall()

    def dependents_of(self, ids: Sequence[int]) -> list[tuple[int, str, str]]:
        """`(id, state, tenant)` of every task depending directly on any of `ids`."""
        rows: list[tuple[int, str, str]] = []
        for part in chunks(ids):
            sql = (
                "SELECT DISTINCT t.id, t.state, t.tenant FROM task_deps d JOIN tasks t ON t.id = d.task_id "
                f"WHERE d.depends_on IN ({marks(len(part))}) ORDER BY t.id"
            )
            rows += self.conn.execute(sql, part).fetchall()
        return rows

    def attempt_rows(self, task_id: int) -> list[AttemptRow]:
        """A task's attempts in order."""
        sql = f"SELECT {columns(AttemptRow)} FROM attempts WHERE task_id = ? ORDER BY claim"
        return list(map(AttemptRow._make, self.conn.execute(sql, (task_id,)).fetchall()))

    # -- change ------------------------------------------------------------

    def set_states(self, ids: Sequence[int], state: str, *, finished_at: int | None = None, error: str | None = None) -> None:
        """Move tasks to `state`; `finished_at`/`error` are set when given."""
        for part in chunks(ids):
            sql = (
                "UPDATE tasks SET state = ?, finished_at = coalesce(?, finished_at), error = coalesce(?, error) "
                f"WHERE id IN ({marks(len(part))})"
            )
            self.conn.execute(sql, (state, finished_at, error, *part))

    def request_cancel(self, task_id: int, note: str) -> None:
        """Flag a running task so the worker running it stops it; `note` (who, why) is its error meanwhile."""
        self.conn.execute("UPDATE tasks SET cancel_requested = 1, error = ? WHERE id = ?", (note, task_id))

    def replay_tasks(self, ids: Sequence[int], *, now: int) -> None:
        """Failed tasks back to pending for a new run: attempts reset, ready now, previous outcome cleared."""
        for part in chunks(ids):
            self.conn.execute(
                "UPDATE tasks SET state = 'pending', attempts = 0, run = run + 1, run_at = ?, error = NULL, result = NULL, "
                "started_at = NULL, finished_at = NULL, worker = NULL, cancel_requested = 0 "
                f"WHERE state = 'failed' AND id IN ({marks(len(part))})",
                (now, *part),
            )

    def edit_failed_tasks(self, ids: Sequence[int], changes: Mapping[str, Any]) -> None:
        """Set the same `changes` (payload as stored text, priority, max_retries, queue) on the failed tasks among `ids`.

        Tasks no longer failed are left as they are, as `replay_tasks` leaves them.
        """
        unknown = set(changes) - REPLAY_EDITABLE_COLUMNS
        if unknown:
            raise ValueError(f"not a column replay may change: {sorted(unknown)}")
        if not changes:
            return
        assignments = ", ".join(f"{column} = ?" for column in changes)
        for part in chunks(ids):
            self.conn.execute(
                f"UPDATE tasks SET {assignments} WHERE state = 'failed' AND id IN ({marks(len(part))})",
                (*changes.values(), *part),
            )

    def delete_tasks(self, ids: Sequence[int], *, now: int) -> None:
        """Delete tasks with their attempts and dependency edges (the audit chain keeps the record).

        A DAG's task leaves a tombstone in `purged_tasks` (id, DAG, name, the
        state it was deleted in, and `now`), so its DAG
        keeps its state and shows the task as purged.
        """
        for part in chunks(ids):
            self.conn.execute(
                "INSERT INTO purged_tasks (id, dag_id, name, state, purged_at) "
                "SELECT id, dag_id, name, state, ? FROM tasks "
                f"WHERE dag_id IS NOT NULL AND id IN ({marks(len(part))})",
                (now, *part),
            )
            self.conn.execute(f"DELETE FROM tasks WHERE id IN ({marks(len(part))})", part)

    def set_priority(self, task_id: int, priority: int) -> None:
        """Change a task's priority."""
        self.conn.execute("UPDATE tasks SET priority = ? WHERE id = ?", (priority, task_id))


def _filters(tenants: Sequence[str] | None = None, **columns: Any) -> tuple[str, tuple[Any, ...]]:
    clauses: list[str] = []
    params: list[Any] = []
    if tenants is not None:
        clauses.append(f"tenant IN ({marks(len(tenants))})" if tenants else "0 = 1")
        params.extend(tenants)
    for column, value in columns.items():
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), tuple(params)
