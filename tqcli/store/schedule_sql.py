"""Schedule and DAG queries (mixed into the store's transaction object)."""

from __future__ import annotations

import sqlite3
from typing import Any, Sequence

from tqcli.store.base import DagRow, ScheduleRow, columns

SCHEDULE_COLUMNS = columns(ScheduleRow)
DAG_COLUMNS = columns(DagRow)


class ScheduleSQL:
    """Queries on schedules, schedule_fires and dags."""

    conn: sqlite3.Connection

    # -- schedules ---------------------------------------------------------

    def schedule_row(self, name: str) -> ScheduleRow | None:
        """One schedule, if it exists."""
        row = self.conn.execute(f"SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE name = ?", (name,)).fetchone()
        return None if row is None else ScheduleRow._make(row)

    def schedule_rows(self) -> list[ScheduleRow]:
        """Every schedule, by name."""
        return list(map(ScheduleRow._make, self.conn.execute(f"SELECT {SCHEDULE_COLUMNS} FROM schedules ORDER BY name").fetchall()))

    def due_schedules(self, now: int) -> list[ScheduleRow]:
        """Active schedules whose next fire time has come."""
        sql = f"SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE paused = 0 AND next_fire_at <= ? ORDER BY name"
        return list(map(ScheduleRow._make, self.conn.execute(sql, (now,)).fetchall()))

    def insert_schedule(self, row: Sequence[Any]) -> None:
        """Add a schedule given in `SCHEDULE_COLUMNS` order."""
        self.conn.execute(f"INSERT INTO schedules ({SCHEDULE_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)", row)

    def update_schedule(self, name: str, **columns: Any) -> None:
        """Set some columns of one schedule."""
        assignments = ", ".join(f"{column} = ?" for column in columns)
        self.conn.execute(f"UPDATE schedules SET {assignments} WHERE name = ?", (*columns.values(), name))

    def delete_schedule(self, name: str) -> None:
        """Remove a schedule and its fire records."""
        self.conn.execute("DELETE FROM schedules WHERE name = ?", (name,))

    def record_fire(self, name: str, fire_at: int, now: int) -> bool:
        """Claim one fire time; False when another worker already enqueued it."""
        cursor = self.conn.execute(
            "INSERT INTO schedule_fires (schedule, fire_at, fired_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
            (name, fire_at, now),
        )
        return cursor.rowcount == 1

    def forget_fires(self, name: str, before: int) -> None:
        """Drop the fire records of `name` older than `before` (they only guard recent fire times)."""
        self.conn.execute("DELETE FROM schedule_fires WHERE schedule = ? AND fire_at < ?", (name, before))

    def set_fire_task(self, name: str, fire_at: int, task_id: int) -> None:
        """Remember which task a fire enqueued."""
        self.conn.execute("UPDATE schedule_fires SET task_id = ? WHERE schedule = ? AND fire_at = ?", (task_id, name, fire_at))

    # -- dags --------------------------------------------------------------

    def insert_dag(self, name: str, now: int, submitted_by: str) -> int:
        """Create a DAG row; its id."""
        row = self.conn.execute(
            "INSERT INTO dags (name, created_at, submitted_by) VALUES (?, ?, ?) RETURNING id", (name, now, submitted_by)
        ).fetchone()
        return int(row[0])

    def dag_row(self, dag_id: int) -> DagRow | None:
        """One DAG, if it exists."""
        row = self.conn.execute(f"SELECT {DAG_COLUMNS} FROM dags WHERE id = ?", (dag_id,)).fetchone()
        return None if row is None else DagRow._make(row)

    def dag_rows(self, limit: int | None) -> list[DagRow]:
        """The newest `limit` DAGs (None: all), newest first."""
        sql = f"SELECT {DAG_COLUMNS} FROM dags ORDER BY id DESC LIMIT ?"
        return list(map(DagRow._make, self.conn.execute(sql, (self.limit_value(limit),)).fetchall()))  # type: ignore[attr-defined]

    def dag_task_states(self, dag_ids: Sequence[int]) -> list[tuple[int, str, int]]:
        """`(dag_id, state, count)` for the tasks of these DAGs; a purged task counts as the state it was purged in."""
        marks = ",".join("?" * len(dag_ids))
        return self.conn.execute(
            "SELECT dag_id, state, count(*) FROM ("
            f"SELECT dag_id, state FROM tasks WHERE dag_id IN ({marks}) "
            f"UNION ALL SELECT dag_id, state FROM purged_tasks WHERE dag_id IN ({marks})"
            ") AS member GROUP BY dag_id, state",
            (*dag_ids, *dag_ids),
        ).fetchall()

    def purged_dag_tasks(self, dag_id: int) -> list[tuple[int, str, str, int]]:
        """`(id, name, state, purged_at)` of the DAG's tasks that `delete_tasks` removed, in id order."""
        return self.conn.execute(
            "SELECT id, name, state, purged_at FROM purged_tasks WHERE dag_id = ? ORDER BY id", (dag_id,)
        ).fetchall()

    def mark_dag_cancelled(self, dag_id: int) -> None:
        """Flag a DAG as cancelled."""
        self.conn.execute("UPDATE dags SET cancelled = 1 WHERE id = ?", (dag_id,))
