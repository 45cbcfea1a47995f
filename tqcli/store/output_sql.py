"""What attempts printed: the `task_output` chunks (mixed into the store's transaction object).

A chunk is keyed by its attempt (task id, claim) and the byte offset it
began at in everything that attempt printed; see `tqcli.store.schema`,
version 8. Rows go with their task (`ON DELETE CASCADE`) in `dlq purge`
and `prune`.
"""

from __future__ import annotations

import sqlite3
from typing import Sequence

from tqcli.store.base import OutputChunkRow, columns


class OutputSQL:
    """Writes and reads of `task_output`."""

    conn: sqlite3.Connection

    def insert_output(self, rows: Sequence[tuple[int, int, int, int, str, str]]) -> None:
        """Store chunks `(task_id, claim, byte_offset, size, stream, text)`; a chunk already stored is left as it is."""
        self.conn.executemany(
            "INSERT INTO task_output (task_id, claim, byte_offset, size, stream, text) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (task_id, claim, byte_offset) DO NOTHING",
            rows,
        )

    def trim_output(self, cuts: Sequence[tuple[int, int, int]]) -> None:
        """For each `(task_id, claim, offset)`, delete that attempt's chunks that begin before `offset`."""
        self.conn.executemany("DELETE FROM task_output WHERE task_id = ? AND claim = ? AND byte_offset < ?", cuts)

    def output_claims(self, task_id: int) -> list[int]:
        """The claims of a task's attempts in order: the ended ones, then the running one."""
        ended = [claim for (claim,) in self.conn.execute("SELECT claim FROM attempts WHERE task_id = ? ORDER BY claim", (task_id,))]
        running = self.conn.execute("SELECT claim FROM tasks WHERE id = ? AND state = 'running'", (task_id,)).fetchone()
        if running is not None and running[0] is not None and running[0] not in ended:
            ended.append(running[0])
        return ended

    def output_chunks(self, task_id: int, claim: int, from_offset: int = 0) -> list[OutputChunkRow]:
        """One attempt's chunks that begin at or after `from_offset`, in order."""
        sql = f"SELECT {columns(OutputChunkRow)} FROM task_output WHERE task_id = ? AND claim = ? AND byte_offset >= ? ORDER BY byte_offset"
        return list(map(OutputChunkRow._make, self.conn.execute(sql, (task_id, claim, from_offset)).fetchall()))

    def output_extent(self, task_id: int, claim: int) -> tuple[int, int]:
        """`(end, kept)` of one attempt's output: the offset after its last chunk, and the bytes its chunks stand for."""
        row = self.conn.execute(
            "SELECT max(byte_offset + size), sum(size) FROM task_output WHERE task_id = ? AND claim = ?", (task_id, claim)
        ).fetchone()
        return (int(row[0] or 0), int(row[1] or 0)) if row else (0, 0)
