"""Workers killed at random moments, stopped past their lease, and killed by their own task."""

import json
import random
import signal
import time

import pytest

from tests.reliability.helpers import consistency_problems, counts
from tests.test_cli_worker import wait_until

pytestmark = pytest.mark.slow


def mixed_load(cli, tmp_path, size):
    """Successes, failures, retries, then tasks depending on them: two bulk submits."""
    ledger = tmp_path / "ledger"
    kinds = {}
    first, second = [], []
    for n in range(size // 6 * 5):
        task_id = n + 1
        kind = ("record", "record", "record", "boom", "flaky")[n % 5]
        if kind == "record":
            line = {"target": "tests.jobs:record", "payload": {"path": str(ledger), "value": task_id, "seconds": 0.01}, "max_retries": 40}
        elif kind == "boom":
            line = {"target": "tests.jobs:boom", "max_retries": 2}
        else:
            line = {"target": "tests.jobs:flaky", "payload": {"marker": str(tmp_path / f"flaky-{task_id}")}, "max_retries": 40}
        first.append(json.dumps({**line, "backoff": 0}))
        kinds[task_id] = kind
    for n in range(size - len(first)):
        parent = n * 5 + 1  # a record task: it completes, so its child runs
        second.append(json.dumps({"target": "tests.jobs:noop", "depends_on": [parent], "max_retries": 40, "backoff": 0}))
        kinds[len(first) + n + 1] = "child"
    cli.ok("submit", "--from-file", "-", input="\n".join(first) + "\n")
    cli.ok("submit", "--from-file", "-", input="\n".join(second) + "\n")
    return kinds


def test_kill_storm_loses_nothing_and_completes_nothing_twice(cli, tmp_path):
    random.seed(20261128)
    cli.ok("breaker", "set", "--default", "--failure-threshold", "1000000")  # failures here are the point
    kinds = mixed_load(cli, tmp_path, 240)
    kills = 0
    for _ in range(30):
        worker = cli.spawn("worker", "--concurrency", "2", "--lease", "1", "--poll", "0.1")
        time.sleep(random.uniform(0.15, 0.7))
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        kills += 1
    for _ in range(30):  # restart until nothing is left to do
        cli.ok("worker", "--once", "--concurrency", "2")
        left = counts(cli.db)
        if not left.get("pending") and not left.get("running"):
            break
        time.sleep(0.3)
    final = counts(cli.db)
    assert kills == 30
    assert sum(final.values()) == 240, final
    assert set(final) <= {"completed", "failed"}, final
    assert consistency_problems(cli.db) == []
    assert cli("audit", "verify").code == 0
    failed = {task["id"]: task for task in cli.ok("dlq", "list", "--json").json}
    assert all(kinds[task_id] == "boom" or task["error"] == "worker lost" for task_id, task in failed.items())
    assert all(task["attempts"] <= 3 for task_id, task in failed.items() if kinds[task_id] == "boom")


def test_a_worker_that_comes_back_cannot_overwrite_the_rerun(cli, tmp_path):
    marker = tmp_path / "started"
    cli.submit("tests.jobs:sleepy", "--payload", f'{{"seconds": 2, "marker": "{marker}"}}', "--backoff", "0")
    stopped = cli.spawn("worker", "--lease", "1", "--poll", "0.2")
    assert wait_until(marker.exists)
    stopped.send_signal(signal.SIGSTOP)
    try:
        time.sleep(1.5)  # past its lease
        rerun = cli.ok("worker", "--once")
        assert "1 reclaimed from lost workers" in rerun.stderr
        assert cli.task(1)["state"] == "completed"
    finally:
        stopped.send_signal(signal.SIGCONT)
    assert wait_until(lambda: cli.ok("audit", "log", "--action", "task.stale", "--json").json, timeout=15)
    stopped.send_signal(signal.SIGTERM)
    assert stopped.wait(timeout=30) == 0
    task = cli.task(1)
    assert task["state"] == "completed" and task["attempts"] == 2
    assert [h["outcome"] for h in task["history"]] == ["lost", "completed"]
    (stale,) = cli.ok("audit", "log", "--action", "task.stale", "--json").json
    assert stale["task_id"] == 1 and stale["details"]["attempt"] == 1
    assert len(cli.ok("audit", "log", "--action", "task.complete", "--json").json) == 1
    assert consistency_problems(cli.db) == []


def test_a_poison_pill_reaches_the_dlq_after_its_attempts_and_runs_no_more(cli, tmp_path):
    ledger = tmp_path / "ledger"
    cli.submit("tests.jobs:poison", "--payload", json.dumps({"ledger": str(ledger)}), "--max-retries", "2", "--backoff", "0")
    healthy = cli.submit("tests.jobs:noop")
    for _ in range(10):
        result = cli("worker", "--once")
        if cli.task(1)["state"] == "failed":
            break
        assert result.code == -signal.SIGKILL  # the pill killed this worker
    task = cli.task(1)
    assert task["state"] == "failed" and task["attempts"] == 3 and task["error"] == "worker lost"
    assert ledger.read_text().count("ran") == 3
    cli.ok("worker", "--once")
    assert ledger.read_text().count("ran") == 3
    assert cli.task(healthy)["state"] == "completed"
    assert consistency_problems(cli.db) == []
