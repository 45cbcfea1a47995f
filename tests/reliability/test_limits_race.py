"""Limits hold across real processes racing each other: workers claiming at once, submitters at the boundary.

On PostgreSQL these transactions really run at the same time, so a limit
judged by a plain count could be passed; the limits' rows are locked
first (see tqcli.tenancy.limits). On SQLite the single writer orders them.
"""

from __future__ import annotations

import json
import threading
import time

from tests.reliability.helpers import consistency_problems, counts
from tests.stores import raw_sql


def _sample_running(db, column: str, value: str, stop: threading.Event, seen: list[int]) -> None:
    """Record how many tasks with `column = value` run, every few milliseconds, until `stop`."""
    while not stop.is_set():
        seen.append(raw_sql(db, f"SELECT count(*) FROM tasks WHERE state = 'running' AND {column} = ?", (value,))[0][0])
        time.sleep(0.005)


def _bulk(tmp_path, name: str, count: int, **keys: object) -> str:
    path = tmp_path / f"{name}.jsonl"
    path.write_text("".join(json.dumps({"target": "tests.jobs:noop", **keys}) + "\n" for _ in range(count)))
    return str(path)


def _run_workers_while_sampling(cli, column: str, value: str, workers: int, concurrency: int) -> list[int]:
    stop, seen = threading.Event(), []
    sampler = threading.Thread(target=_sample_running, args=(cli.db, column, value, stop, seen))
    sampler.start()
    try:
        procs = [cli.spawn("worker", "--once", "--concurrency", str(concurrency), "--id", f"w{n}") for n in range(workers)]
        for proc in procs:
            _, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
    finally:
        stop.set()
        sampler.join()
    return seen


def test_max_running_of_a_queue_holds_across_several_workers_with_several_slots(cli, tmp_path):
    cli.ok("queue", "set", "etl", "--max-running", "3")
    payload = {"seconds": 0.15}
    cli.ok("submit", "--from-file", _bulk(tmp_path, "etl", 24, queue="etl"))
    cli.ok("submit", "--from-file", _bulk(tmp_path, "etl-sleepy", 24, queue="etl", target="tests.jobs:sleepy", payload=payload))
    cli.ok("submit", "--from-file", _bulk(tmp_path, "free", 40))
    seen = _run_workers_while_sampling(cli, "queue", "etl", workers=3, concurrency=3)
    assert max(seen) == 3, f"the running count of etl reached {max(seen)} (limit 3)"
    assert counts(cli.db) == {"completed": 88}
    assert consistency_problems(cli.db) == []


def test_max_running_of_a_tenant_holds_across_several_workers(cli, tmp_path):
    cli.ok("tenant", "set", "acme", "--max-running", "2")
    cli.ok("submit", "--from-file", _bulk(tmp_path, "acme", 20, tenant="acme", target="tests.jobs:sleepy", payload={"seconds": 0.1}))
    seen = _run_workers_while_sampling(cli, "tenant", "acme", workers=3, concurrency=2)
    assert max(seen) == 2, f"the running count of acme reached {max(seen)} (limit 2)"
    assert counts(cli.db) == {"completed": 20}


def test_submitters_racing_at_the_boundary_fill_a_queue_exactly(cli, tmp_path):
    cli.ok("queue", "set", "small", "--max-length", "20")
    lines = _bulk(tmp_path, "five", 5, queue="small")
    procs = [cli.spawn("submit", "--from-file", lines) for _ in range(8)]
    results = [(proc.wait(timeout=60), proc.stderr.read()) for proc in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 0, 0, 0, 5, 5, 5, 5], results
    assert all("max-length 20 reached" in err for code, err in results if code == 5)
    assert counts(cli.db) == {"pending": 20}


def test_a_rate_lets_through_the_bucket_and_then_the_refill(cli, tmp_path):
    # 5 a minute: a slow machine's worker run cannot earn a sixth token while it drains.
    cli.ok("tenant", "set", "acme", "--rate", "5/m")
    cli.ok("submit", "--from-file", _bulk(tmp_path, "acme", 30, tenant="acme"))
    cli.ok("worker", "--once", "--concurrency", "2")
    assert counts(cli.db) == {"completed": 5, "pending": 25}
    # A minute passes for the bucket (its refill time moved back, as the clock would move on); it holds no more than 5.
    raw_sql(cli.db, "UPDATE tenants SET refilled_at = refilled_at - 61000000 WHERE name = 'acme'")
    cli.ok("worker", "--once")
    assert counts(cli.db) == {"completed": 10, "pending": 20}


def test_a_paused_queue_is_skipped_by_workers_and_runs_once_resumed(cli):
    held = cli.submit("tests.jobs:noop", "--queue", "etl")
    free = cli.submit("tests.jobs:noop")
    cli.ok("queue", "set", "etl", "--pause")
    cli.ok("worker", "--once")
    assert cli.task(held)["state"] == "pending" and cli.task(held)["waiting"] == "queue paused"
    assert cli.task(free)["state"] == "completed"
    cli.ok("queue", "set", "etl", "--resume")
    cli.ok("worker", "--once")
    assert cli.task(held)["state"] == "completed"


def test_a_late_tenant_starts_within_the_first_claims_despite_a_large_backlog(cli, tmp_path):
    cli.ok("submit", "--from-file", _bulk(tmp_path, "big", 3000, tenant="a"))
    late = [cli.submit("tests.jobs:noop", "--tenant", "b") for _ in range(3)]
    cli.ok("worker", "--once", "--max-tasks", "40")
    claims = [entry["task_id"] for entry in cli.ok("audit", "log", "--action", "task.claim", "--limit", "0", "--json").json]
    positions = [claims.index(task_id) for task_id in late]
    assert max(positions) < 2 * len(late) + 2, positions
