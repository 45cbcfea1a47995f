"""Checks shared by the reliability tests: the promises of SPEC §1, read from the database (either store)."""

import time
from collections import Counter
from datetime import datetime
from pathlib import Path

from tests.stores import raw_sql


def consistency_problems(db: Path | str) -> list[str]:
    """Everything wrong with the database's bookkeeping (an empty list when all is well)."""
    problems = []
    if isinstance(db, Path) and raw_sql(db, "PRAGMA integrity_check")[0][0] != "ok":
        problems.append("integrity_check failed")
    completions = Counter(row[0] for row in raw_sql(db, "SELECT task_id FROM audit WHERE action = 'task.complete'"))
    twice = [task for task, count in completions.items() if count > 1]
    if twice:
        problems.append(f"tasks completed twice: {twice[:10]}")
    replayed = {}  # a replay resets attempts: only the attempts since the last one count
    for task_id, ts in raw_sql(db, "SELECT task_id, max(ts) FROM audit WHERE action = 'dlq.replay' GROUP BY task_id"):
        replayed[task_id] = int(datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp() * 1_000_000)
    recorded_rows: dict[int, list[int]] = {}
    for task_id, started_at in raw_sql(db, "SELECT task_id, started_at FROM attempts WHERE outcome != 'released'"):
        recorded_rows.setdefault(task_id, []).append(started_at)
    for task_id, state, attempts in raw_sql(db, "SELECT id, state, attempts FROM tasks"):
        recorded = sum(1 for started in recorded_rows.get(task_id, []) if started >= replayed.get(task_id, 0))
        expected = attempts - 1 if state == "running" else attempts
        if recorded != expected:
            problems.append(f"task {task_id}: attempts {attempts} but {recorded} attempt rows ({state})")
        if state == "completed" and completions[task_id] != 1:
            problems.append(f"task {task_id} is completed with {completions[task_id]} completion entries")
    return problems


def counts(db: Path | str) -> dict[str, int]:
    """How many tasks are in each state."""
    return dict(raw_sql(db, "SELECT state, count(*) FROM tasks GROUP BY state"))


def wait_until(check, timeout: float = 30.0, interval: float = 0.05) -> bool:
    """Poll `check()` until it is true (True) or `timeout` seconds passed (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval)
    return False
