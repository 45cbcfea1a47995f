"""Queries over encrypted values, for the keys commands (mixed into the store's transaction object).

A sealed value names its data key in clear right after a fixed prefix
(see `tqcli.security.crypto`), so the values each key protects are counted
by the few characters that name it, and re-encryption finds what to rewrite
without decrypting anything first. An encrypted task's output chunks
(`task_output`) are sealed values too, counted and rewritten by chunk. The
same SQL serves both stores.
"""

from __future__ import annotations

import sqlite3
from typing import Sequence

from tqcli.store.tasks_sql import chunks, marks

# The columns of an encrypted task that may hold sealed text, and those of its attempts.
SEALED_TASK_COLUMNS = ("payload", "result", "error", "env")
SEALED_ATTEMPT_COLUMNS = ("error", "traceback")


class KeysSQL:
    """Counting, reading and rewriting the sealed values of encrypted tasks."""

    conn: sqlite3.Connection

    def sealed_value_counts(self, prefix: str, id_chars: int) -> dict[str, int]:
        """How many stored values name each data key: values starting with `prefix`, the key id the `id_chars` characters after it."""
        start = len(prefix) + 1
        pattern = prefix + "%"
        parts = [
            f"SELECT substr({column}, ?, ?) AS key_id FROM tasks WHERE encrypted = 1 AND {column} LIKE ?"
            for column in SEALED_TASK_COLUMNS
        ] + [
            f"SELECT substr(a.{column}, ?, ?) AS key_id FROM attempts AS a JOIN tasks AS t ON t.id = a.task_id "
            f"WHERE t.encrypted = 1 AND a.{column} LIKE ?"
            for column in SEALED_ATTEMPT_COLUMNS
        ]
        params = (start, id_chars, pattern) * len(parts)
        sql = f"SELECT key_id, count(*) FROM ({' UNION ALL '.join(parts)}) AS sealed GROUP BY key_id"
        return {key_id: count for key_id, count in self.conn.execute(sql, params).fetchall()}

    def sealed_output_counts(self, prefix: str, id_chars: int) -> dict[str, int]:
        """How many output chunks of encrypted tasks name each data key (as `sealed_value_counts` counts values)."""
        rows = self.conn.execute(
            "SELECT key_id, count(*) FROM (SELECT substr(o.text, ?, ?) AS key_id FROM task_output AS o "
            "JOIN tasks AS t ON t.id = o.task_id WHERE t.encrypted = 1 AND o.text LIKE ?) AS sealed GROUP BY key_id",
            (len(prefix) + 1, id_chars, prefix + "%"),
        ).fetchall()
        return {key_id: count for key_id, count in rows}

    def audit_key_counts(self) -> dict[str, int]:
        """How many audit entries each audit key links."""
        rows = self.conn.execute("SELECT key_id, count(*) FROM audit WHERE key_id IS NOT NULL GROUP BY key_id").fetchall()
        return {key_id: count for key_id, count in rows}

    def has_encrypted_pending(self) -> bool:
        """Whether any pending task is encrypted (a worker without keys says so once)."""
        return self.conn.execute("SELECT 1 FROM tasks WHERE state = 'pending' AND encrypted = 1 LIMIT 1").fetchone() is not None

    def encrypted_task_ids(self, after: int, limit: int) -> list[int]:
        """The ids of up to `limit` encrypted tasks with an id above `after`, ascending."""
        rows = self.conn.execute("SELECT id FROM tasks WHERE encrypted = 1 AND id > ? ORDER BY id LIMIT ?", (after, limit)).fetchall()
        return [row[0] for row in rows]

    def sealed_values(self, ids: Sequence[int]) -> list[tuple[int, str, str | None, str | None, str | None]]:
        """`(id, payload, result, error, env)` of these tasks, by id."""
        rows: list[tuple[int, str, str | None, str | None, str | None]] = []
        for part in chunks(sorted(set(ids))):
            rows += self.conn.execute(
                f"SELECT id, {', '.join(SEALED_TASK_COLUMNS)} FROM tasks WHERE id IN ({marks(len(part))}) ORDER BY id", part
            ).fetchall()
        return rows

    def sealed_attempt_values(self, ids: Sequence[int]) -> list[tuple[int, int, str | None, str | None]]:
        """`(task_id, claim, error, traceback)` of every attempt of these tasks."""
        rows: list[tuple[int, int, str | None, str | None]] = []
        for part in chunks(sorted(set(ids))):
            rows += self.conn.execute(
                f"SELECT task_id, claim, {', '.join(SEALED_ATTEMPT_COLUMNS)} FROM attempts "
                f"WHERE task_id IN ({marks(len(part))}) ORDER BY task_id, claim",
                part,
            ).fetchall()
        return rows

    def rewrite_sealed_values(self, rows: Sequence[tuple[int, str, str | None, str | None, str | None]]) -> None:
        """Store `(id, payload, result, error, env)` for each task (its values sealed anew)."""
        self.conn.executemany(
            "UPDATE tasks SET payload = ?, result = ?, error = ?, env = ? WHERE id = ?",
            [(payload, result, error, env, task_id) for task_id, payload, result, error, env in rows],
        )

    def rewrite_sealed_attempts(self, rows: Sequence[tuple[int, int, str | None, str | None]]) -> None:
        """Store `(task_id, claim, error, traceback)` for each attempt (its values sealed anew)."""
        self.conn.executemany(
            "UPDATE attempts SET error = ?, traceback = ? WHERE task_id = ? AND claim = ?",
            [(error, traceback, task_id, claim) for task_id, claim, error, traceback in rows],
        )

    def sealed_output_chunks(
        self, last: int, after: tuple[int, int, int], prefix: str, current: str, limit: int
    ) -> list[tuple[int, int, int, str]]:
        """Up to `limit` `(task_id, claim, byte_offset, text)` of encrypted tasks' chunks past `after` up to task `last`, in that order.

        Only chunks whose text starts with `prefix` (sealed) but not with
        `current` (sealed under the key already in use) are returned.
        """
        return self.conn.execute(
            "SELECT o.task_id, o.claim, o.byte_offset, o.text FROM task_output AS o JOIN tasks AS t ON t.id = o.task_id "
            "WHERE o.task_id <= ? AND (o.task_id, o.claim, o.byte_offset) > (?, ?, ?) AND t.encrypted = 1 "
            "AND o.text LIKE ? AND o.text NOT LIKE ? ORDER BY o.task_id, o.claim, o.byte_offset LIMIT ?",
            (last, *after, prefix + "%", current + "%", limit),
        ).fetchall()

    def rewrite_sealed_output(self, rows: Sequence[tuple[int, int, int, str]]) -> None:
        """Store `(task_id, claim, byte_offset, text)` for each output chunk (its text sealed anew)."""
        self.conn.executemany(
            "UPDATE task_output SET text = ? WHERE task_id = ? AND claim = ? AND byte_offset = ?",
            [(text, task_id, claim, offset) for task_id, claim, offset, text in rows],
        )
