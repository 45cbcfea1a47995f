"""`tqcli metrics` through the library: gauges from the database, counters that never go down, who sees what."""

import json
import re
import sqlite3
import threading
from pathlib import Path

import pytest

import tqcli
from tests.reliability.helpers import wait_until
from tqcli.core import dispatcher
from tqcli.errors import LimitReached, PermissionDenied
from tqcli.observability.exposition import to_json, to_text
from tqcli.observability.metrics import FAMILIES
from tqcli.store.metrics_sql import COUNTS_SQL, OLDEST_READY_SQL

REPO = Path(__file__).resolve().parent.parent


def value(metrics, name, **labels):
    """The value of the one sample named `name` whose labels include `labels` (None when there is none)."""
    found = [s.value for s in metrics.samples() if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(found) <= 1, f"{name} {labels} matches {len(found)} samples"
    return found[0] if found else None


def names(metrics):
    return {s.name for s in metrics.samples()}


def claim(queue, worker="w1", **filters):
    with queue._ctx.change() as (tx, journal):
        return dispatcher.claim(tx, journal, count=1, now=queue.clock.now(), worker=worker, lease_seconds=60, holder=None, **filters)


def finish(queue, claimed, outcome):
    with queue._ctx.change() as (tx, journal):
        return dispatcher.finish(tx, journal, claimed, outcome, now=queue.clock.now(), worker="w1")


def test_task_gauges_count_every_state_per_queue_and_tenant(queue, clock):
    queue.submit("tests.jobs:add", payload={"a": 1, "b": 2})
    queue.submit("tests.jobs:boom", queue="etl", tenant="acme", max_retries=0)
    blocker = queue.submit("tests.jobs:noop", queue="etl", tenant="acme", delay=3600)
    queue.submit("tests.jobs:noop", queue="etl", tenant="acme", depends_on=[blocker])
    queue.drain()
    metrics = queue.metrics()
    assert value(metrics, "tqcli_tasks", queue="default", tenant="default", state="completed") == 1
    assert value(metrics, "tqcli_tasks", queue="default", tenant="default", state="pending") == 0
    assert value(metrics, "tqcli_tasks", queue="etl", tenant="acme", state="failed") == 1
    assert value(metrics, "tqcli_tasks", queue="etl", tenant="acme", state="pending") == 2
    assert value(metrics, "tqcli_dlq_tasks", queue="etl") == 1 and value(metrics, "tqcli_dlq_tasks", queue="default") == 0
    assert len([s for s in metrics.samples() if s.name == "tqcli_tasks"]) == 12  # six states for each of two pairs
    assert value(metrics, "tqcli_task_attempts_total", queue="etl", backend="simple", outcome="failed") == 1
    assert value(metrics, "tqcli_task_attempts_total", queue="default", backend="simple", outcome="completed") == 1
    assert value(metrics, "tqcli_build_info", version=tqcli.__version__) == 1
    assert value(metrics, "tqcli_audit_entries") == queue.audit.verify().count


def test_oldest_pending_is_the_longest_wait_of_a_ready_task(queue, clock):
    queue.submit("a:b", queue="etl")
    queue.submit("a:b", queue="etl", priority=5, tenant="acme")
    queue.submit("a:b", queue="later", delay=3600)  # not due: it waits for nobody
    clock.advance(30)
    queue.submit("a:b", queue="etl", priority=9)
    clock.advance(10)
    metrics = queue.metrics()
    assert value(metrics, "tqcli_queue_oldest_pending_seconds", queue="etl") == pytest.approx(40, abs=0.01)
    assert value(metrics, "tqcli_queue_oldest_pending_seconds", queue="later") == 0


def test_wait_and_duration_histograms_are_cumulative_with_sum_and_count(queue, clock):
    first = queue.submit("a:b")
    queue.submit("a:b")
    clock.advance(3)
    claimed = claim(queue)
    clock.advance(0.2)
    finish(queue, claimed[0], dispatcher.Outcome("completed", result="null"))
    clock.advance(100)
    claimed = claim(queue)
    clock.advance(7)
    finish(queue, claimed[0], dispatcher.Outcome("failed", error="boom", final=True))
    metrics = queue.metrics()
    assert claimed[0].id != first
    assert value(metrics, "tqcli_task_wait_seconds_bucket", queue="default", le="2") == 0
    assert value(metrics, "tqcli_task_wait_seconds_bucket", queue="default", le="5") == 1
    assert value(metrics, "tqcli_task_wait_seconds_bucket", queue="default", le="120") == 2
    assert value(metrics, "tqcli_task_wait_seconds_bucket", queue="default", le="+Inf") == 2
    assert value(metrics, "tqcli_task_wait_seconds_sum", queue="default") == pytest.approx(106.2)
    assert value(metrics, "tqcli_task_duration_seconds_bucket", queue="default", le="0.25") == 1
    assert value(metrics, "tqcli_task_duration_seconds_bucket", queue="default", le="10") == 2
    assert value(metrics, "tqcli_task_duration_seconds_count", queue="default") == 2
    assert value(metrics, "tqcli_task_duration_seconds_sum", queue="default") == pytest.approx(7.2)


def test_counters_never_go_down_when_dlq_purge_and_prune_delete_attempts(queue, clock):
    for _ in range(2):
        queue.submit("tests.jobs:boom", max_retries=1, backoff=0)
    queue.submit("tests.jobs:noop")
    queue.drain()
    before = queue.metrics()
    assert value(before, "tqcli_task_attempts_total", outcome="failed") == 4
    assert value(before, "tqcli_task_attempts_total", outcome="completed") == 1
    queue.dlq.purge(every=True, confirmed=True)
    clock.advance(7200)
    assert queue.prune(older_than=3600) == [3]
    after = queue.metrics()
    assert value(after, "tqcli_tasks", state="failed") is None  # no task is left to count
    for name in ("tqcli_task_attempts_total", "tqcli_task_duration_seconds_count", "tqcli_task_wait_seconds_count"):
        assert sorted((s.labels.get("outcome", ""), s.value) for s in after.samples() if s.name == name) == sorted(
            (s.labels.get("outcome", ""), s.value) for s in before.samples() if s.name == name
        )


def test_a_lost_attempt_counts_against_its_workers_host(queue, clock):
    queue.submit("a:b", max_retries=0)
    with queue._ctx.change() as (tx, _):
        tx.register_worker(("run-1", "w1", "box-7", 123, None, 60.0, queue.clock.now(), queue.clock.now(), None))
    claim(queue)
    clock.advance(61)
    with queue._ctx.change() as (tx, journal):
        dispatcher.reclaim_expired(tx, journal, now=queue.clock.now(), worker="w2")
    metrics = queue.metrics()
    assert value(metrics, "tqcli_attempts_lost_total", host="box-7") == 1
    assert value(metrics, "tqcli_task_attempts_total", outcome="lost") == 1
    assert value(metrics, "tqcli_task_duration_seconds_count") is None  # a lost attempt's time says nothing of the task


def test_released_attempts_are_not_counted(queue):
    queue.submit("a:b")
    finish(queue, claim(queue)[0], dispatcher.Outcome("released"))
    metrics = queue.metrics()
    assert value(metrics, "tqcli_task_attempts_total") is None
    assert value(metrics, "tqcli_task_wait_seconds_count") == 1  # it did start


def test_refused_submits_are_counted_after_the_rollback(queue, db_location):
    queue.tenancy.set_queue("small", max_length=1)
    queue.tenancy.set_tenant("acme", max_pending=1)
    queue.submit("a:b", queue="small")
    queue.submit("a:b", tenant="acme")
    with pytest.raises(LimitReached):
        queue.submit("a:b", queue="small")
    with pytest.raises(LimitReached):
        queue.submit_many([tqcli.TaskSpec("a:b", queue="other"), tqcli.TaskSpec("a:b", tenant="acme", queue="other")])
    queue.roles.grant(queue.actor, "admin")
    with tqcli.open(db_location, actor="mallory") as stranger, pytest.raises(PermissionDenied):
        stranger.submit("a:b", tenant="beta", queue="web")
    metrics = queue.metrics()
    assert value(metrics, "tqcli_submits_refused_total", reason="queue_limit", queue="small", tenant="default") == 1
    assert value(metrics, "tqcli_submits_refused_total", reason="tenant_quota", queue="other", tenant="acme") == 1
    assert value(metrics, "tqcli_submits_refused_total", reason="permission", queue="web", tenant="beta") == 1
    assert value(metrics, "tqcli_tasks", queue="other", state="pending") is None  # nothing was enqueued


def test_a_tenant_scoped_reader_sees_only_its_tenants_series(queue, db_location):
    queue.submit("a:b", tenant="acme")
    queue.submit("a:b", tenant="beta")
    queue.roles.grant(queue.actor, "admin")
    queue.roles.grant("vera", "viewer", tenant="acme")
    with tqcli.open(db_location, actor="vera") as scoped:
        metrics = scoped.metrics()
    assert {s.labels.get("tenant") for s in metrics.samples() if s.name == "tqcli_tasks"} == {"acme"}
    assert names(metrics) == {"tqcli_build_info", "tqcli_tasks"}
    with tqcli.open(db_location, actor="nobody") as stranger, pytest.raises(PermissionDenied):
        stranger.metrics()


def test_circuits_schedules_checkpoints_and_workers(queue, clock):
    queue.breakers.configure("svc", failure_threshold=1)
    queue.submit("a:b", service="svc", max_retries=0)
    finish(queue, claim(queue)[0], dispatcher.Outcome("failed", error="down"))
    queue.schedules.add("nightly", cron="* * * * *", options={"target": "a:b"})
    clock.advance(120)
    queue.drain()
    queue.audit.checkpoint()
    metrics = queue.metrics()
    assert value(metrics, "tqcli_circuit_state", key="svc") == 2
    fired = value(metrics, "tqcli_schedule_last_fire_timestamp_seconds", schedule="nightly")
    assert fired is not None and fired <= clock.now() / 1e6
    assert value(metrics, "tqcli_audit_last_checkpoint_timestamp_seconds") == pytest.approx(clock.now() / 1e6, abs=0.001)
    assert value(metrics, "tqcli_worker_last_heartbeat_timestamp_seconds") == pytest.approx(clock.now() / 1e6, abs=0.001)
    assert value(metrics, "tqcli_workers_alive") == 0  # the drain has stopped


def test_json_samples_are_the_text_expositions(queue):
    queue.submit("tests.jobs:add", payload={"a": 1, "b": 2}, queue="etl")
    queue.breakers.configure('billing "eu" \\ api', failure_threshold=2)  # a key with what a label must escape
    queue.drain()
    metrics = queue.metrics()
    text_samples = []
    for line in to_text(metrics).splitlines():
        if line.startswith("#"):
            continue
        match = re.fullmatch(r'([a-z_]+)(?:\{(.*)\})? (\S+)', line)
        labels = dict(re.findall(r'([a-z_]+)="((?:[^"\\]|\\.)*)"', match.group(2) or ""))
        labels = {k: v.replace('\\"', '"').replace("\\\\", "\\") for k, v in labels.items()}
        text_samples.append((match.group(1), labels, float(match.group(3))))
    json_samples = [(s["name"], s["labels"], float(s["value"])) for s in json.loads(to_json(metrics))]
    assert json_samples == text_samples


@pytest.mark.sqlite_only
def test_the_task_counts_read_only_the_index(queue, db_location):
    queue.submit("a:b")
    conn = sqlite3.connect(db_location)
    counts = " ".join(row[-1] for row in conn.execute(f"EXPLAIN QUERY PLAN {COUNTS_SQL}"))
    oldest = " ".join(row[-1] for row in conn.execute(f"EXPLAIN QUERY PLAN {OLDEST_READY_SQL}", (0,)))
    conn.close()
    assert "SEARCH c USING COVERING INDEX tasks_counts (queue=? AND state=? AND tenant=?)" in counts and "TEMP B-TREE" not in counts
    assert "SCAN tasks" not in oldest.replace("SCAN tasks USING COVERING INDEX", "")
    assert oldest.count("USING COVERING INDEX tasks_claim") >= 3


def test_docs_list_every_metric_with_its_type_and_labels():
    text = (REPO / "docs" / "metrics.md").read_text()
    for family in FAMILIES:
        row = next((line for line in text.splitlines() if line.startswith(f"| `{family.name}`")), None)
        assert row is not None, f"docs/metrics.md does not list {family.name}"
        assert f"| {family.type} |" in row
        for label in family.labels:
            assert f"`{label}`" in row, f"{family.name}: label {label} missing in docs/metrics.md"


def test_a_long_running_worker_rewrites_its_metrics_file_every_minute_of_its_clock(queue, clock, tmp_path):
    target = tmp_path / "tqcli.prom"
    worker = queue.worker(poll=0.02, metrics_file=str(target))
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        assert wait_until(target.exists)
        queue.submit("a:b", delay=3600)  # pending and not due: the worker leaves it
        pending = 'tqcli_tasks{queue="default",tenant="default",state="pending"} 1'
        assert not wait_until(lambda: pending in target.read_text(), timeout=0.5)  # many polls, no minute passed
        clock.advance(61)
        assert wait_until(lambda: pending in target.read_text())
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    finally:
        worker.stop(immediately=True)
        thread.join(30)
    assert 'tqcli_workers_alive{host=' in target.read_text()  # written once more as it stopped
