"""Checks shared by the reliability tests: the promises of SPEC §1, read from the database."""

import sqlite3
from collections import Counter
from datetime import datetime
from pathlib import Path


def consistency_problems(db: Path) -> list[str]:
    """Everything wrong with the database's bookkeeping (an empty list when all is well)."""
    problems = []
    conn = sqlite3.connect(db)
    try:
        if conn.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
            problems.append("integrity_check failed")
        completions = Counter(row[0] for row in conn.execute("SELECT task_id FROM audit WHERE action = 'task.complete'"))
        twice = [task for task, count in completions.items() if count > 1]
        if twice:
            problems.append(f"tasks completed twice: {twice[:10]}")
        replayed = {}  # a replay resets attempts: only the attempts since the last one count
        for task_id, ts in conn.execute("SELECT task_id, max(ts) FROM audit WHERE action = 'dlq.replay' GROUP BY task_id"):
            replayed[task_id] = int(datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp() * 1_000_000)
        for task_id, state, attempts in conn.execute("SELECT id, state, attempts FROM tasks"):
            recorded = conn.execute(
                "SELECT count(*) FROM attempts WHERE task_id = ? AND outcome != 'released' AND started_at >= ?",
                (task_id, replayed.get(task_id, 0)),
            ).fetchone()[0]
            expected = attempts - 1 if state == "running" else attempts
            if recorded != expected:
                problems.append(f"task {task_id}: attempts {attempts} but {recorded} attempt rows ({state})")
            if state == "completed" and completions[task_id] != 1:
                problems.append(f"task {task_id} is completed with {completions[task_id]} completion entries")
    finally:
        conn.close()
    return problems


def counts(db: Path) -> dict[str, int]:
    conn = sqlite3.connect(db)
    try:
        return dict(conn.execute("SELECT state, count(*) FROM tasks GROUP BY state").fetchall())
    finally:
        conn.close()
