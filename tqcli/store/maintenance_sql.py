"""The worker registry, task edits and retention queries (mixed into the store's transaction object)."""

from __future__ import annotations

import sqlite3
from typing import Any, Mapping, Sequence

from tqcli.store.base import WorkerRow, columns
from tqcli.store.tasks_sql import marks

WORKER_COLUMNS = columns(WorkerRow)

# The task columns `edit` may change.
EDITABLE_COLUMNS = frozenset({"payload", "target", "name", "service", "priority", "max_retries", "timeout", "run_at", "expires_at"})


class MaintenanceSQL:
    """Queries on the workers table, and for `edit` and `prune`."""

    conn: sqlite3.Connection

    # -- workers -----------------------------------------------------------

    def register_worker(self, row: Sequence[Any]) -> None:
        """Add one worker run (`WORKER_COLUMNS` order, stopped_at last and null)."""
        self.conn.execute(f"INSERT INTO workers ({WORKER_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)", row)

    def worker_heartbeat(self, run_id: str, now: int, *, stopped: bool = False) -> None:
        """Record that a worker run is alive at `now` (with `stopped`: that it ended then)."""
        self.conn.execute(
            "UPDATE workers SET heartbeat_at = ?, stopped_at = CASE WHEN ? THEN ? ELSE stopped_at END WHERE run_id = ?",
            (now, stopped, now, run_id),
        )

    def worker_rows(self, since: int) -> list[WorkerRow]:
        """Worker runs with a heartbeat at or after `since`, newest first."""
        sql = f"SELECT {WORKER_COLUMNS} FROM workers WHERE heartbeat_at >= ? ORDER BY heartbeat_at DESC, run_id"
        return list(map(WorkerRow._make, self.conn.execute(sql, (since,)).fetchall()))

    def latest_heartbeat(self) -> int | None:
        """The newest heartbeat of a worker that has not stopped, or None (an index search)."""
        row = self.conn.execute("SELECT max(heartbeat_at) FROM workers WHERE stopped_at IS NULL").fetchone()
        return row[0] if row else None

    def running_by_worker(self) -> list[tuple[str | None, str | None, int]]:
        """`(worker, holder, task id)` of every running task."""
        return self.conn.execute("SELECT worker, holder, id FROM tasks WHERE state = 'running' ORDER BY id").fetchall()

    def forget_workers(self, before: int) -> None:
        """Drop worker runs whose last heartbeat is older than `before`."""
        self.conn.execute("DELETE FROM workers WHERE heartbeat_at < ?", (before,))

    # -- edit --------------------------------------------------------------

    def edit_task(self, task_id: int, changes: Mapping[str, Any]) -> bool:
        """Set columns of a pending or blocked task; False when it is in neither state (nothing changed)."""
        unknown = set(changes) - EDITABLE_COLUMNS
        if unknown:
            raise ValueError(f"not an editable column: {sorted(unknown)}")
        assignments = ", ".join(f"{column} = ?" for column in changes)
        cursor = self.conn.execute(
            f"UPDATE tasks SET {assignments} WHERE id = ? AND state IN ('pending', 'blocked')", (*changes.values(), task_id)
        )
        return cursor.rowcount == 1

    # -- prune -------------------------------------------------------------

    def prunable_tasks(
        self, states: Sequence[str], finished_by: int, after: tuple[int, int], limit: int
    ) -> list[tuple[int, int, str]]:
        """`(finished_at, id, tenant)` of up to `limit` tasks in `states` finished at or before `finished_by`.

        Only those past `after` (a `(finished_at, id)` cursor), in that
        order; tasks an unfinished task depends on are left out. Walks the
        `tasks_finished` index (`+state` keeps the planner off the claim
        index), so the cost follows the tasks it looks at.
        """
        sql = (
            "SELECT finished_at, id, tenant FROM tasks AS t WHERE finished_at <= ? AND (finished_at, id) > (?, ?) "
            f"AND +state IN ({marks(len(states))}) AND NOT EXISTS (SELECT 1 FROM task_deps AS d JOIN tasks AS u "
            "ON u.id = d.task_id WHERE d.depends_on = t.id AND u.state IN ('pending', 'blocked', 'running')) "
            "ORDER BY finished_at, id LIMIT ?"
        )
        return self.conn.execute(sql, (finished_by, *after, *states, limit)).fetchall()

    # -- what finished lately (status --watch) -------------------------------

    def finished_after(self, after: tuple[int, int], limit: int) -> list[tuple[int, int, str, str, str]]:
        """`(finished_at, id, queue, tenant, state)` of up to `limit` finished tasks past the `(finished_at, id)` cursor `after`, in that order.

        Walks the `tasks_finished` index from the cursor on, so the cost
        follows the tasks that finished since, never the table.
        """
        sql = (
            "SELECT finished_at, id, queue, tenant, state FROM tasks WHERE finished_at >= ? AND (finished_at, id) > (?, ?) "
            "ORDER BY finished_at, id LIMIT ?"
        )
        return self.conn.execute(sql, (after[0], *after, limit)).fetchall()
