"""restart, edit, expiry, prune, wait and the worker registry, through the library (time moved by the clock)."""

import json

import pytest

from tests.stores import raw_sql
from tqcli import TaskSpec
from tqcli.errors import Conflict, InvalidInput, NotFound, WaitTimeout
from tqcli.units import format_time


def _drain(queue):
    return queue.drain(worker_id="w1")


# -- expiry --------------------------------------------------------------


def test_an_expired_task_is_never_claimed_and_the_next_poll_cancels_it(queue, clock):
    task_id = queue.submit("tests.jobs:noop", expires=60)
    later = queue.submit("tests.jobs:noop", delay=120, expires=60)
    assert queue.get(task_id).expires_at == clock.now() + 60_000_000
    assert queue.get(later).expires_at == clock.now() + 180_000_000, "expiry counts from the run time"
    clock.advance(61)
    assert queue.get(task_id).waiting == "expired", "until a worker polls, status says expired"
    report = _drain(queue)
    assert report.expired == 1 and report.claimed == 0 and "1 expired" in report.summary()
    task = queue.get(task_id)
    assert task.state.value == "cancelled" and task.error == "expired" and task.attempts == 0
    entry = queue.audit.entries(task_id=task_id, action="task.cancel")[-1]
    assert json.loads(entry.details)["reason"] == "expired"
    assert queue.get(later).state.value == "pending"


def test_the_claim_skips_an_expired_task_even_before_a_poll_cancels_it(queue, clock):
    task_id = queue.submit("tests.jobs:noop", expires=1)
    clock.advance(2)
    with queue._ctx.store.write() as tx:
        claimed = tx.claim_tasks(claim_number=tx.next_claim_number(), count=10, now=clock.now(), lease_until=clock.now() + 1, worker="w", holder=None)
    assert claimed == [] and queue.get(task_id).state.value == "pending"


def test_dependents_of_an_expired_task_are_blocked(queue, clock):
    first = queue.submit("tests.jobs:noop", expires=5)
    second = queue.submit("tests.jobs:noop", depends_on=[first])
    clock.advance(6)
    _drain(queue)
    assert queue.get(second).state.value == "blocked"


def test_expires_must_be_a_positive_duration(queue):
    with pytest.raises(InvalidInput, match="expires"):
        queue.submit("a:b", expires=0)


# -- restart -------------------------------------------------------------


def test_restart_copies_a_finished_task_without_its_key_dag_or_dependencies(queue):
    dep = queue.submit("tests.jobs:noop")
    old = queue.submit("tests.jobs:add", payload={"a": 1, "b": 2}, priority=4, idempotency_key="k", depends_on=[dep], queue="q")
    _drain(queue)
    new = queue.restart(old)
    task = queue.get(new)
    assert task.state.value == "pending" and task.restarted_from == old
    assert (task.target, task.payload_value, task.priority, task.queue) == ("tests.jobs:add", {"a": 1, "b": 2}, 4, "q")
    assert task.idempotency_key is None and task.depends_on == [] and task.dag_id is None
    assert json.loads(queue.audit.entries(task_id=new, action="task.submit")[-1].details)["restarted_from"] == old


def test_restart_overrides_and_default_name_and_service_follow_a_new_target(queue):
    old = queue.submit("tests.jobs:noop")
    named = queue.submit("tests.jobs:noop", name="nightly", service="svc")
    queue.cancel(old, named)
    task = queue.get(queue.restart(old, target="tests.jobs:add", payload={"a": 1, "b": 1}, priority=9))
    assert (task.name, task.service, task.priority) == ("tests.jobs:add", "simple:tests.jobs:add", 9)
    kept = queue.get(queue.restart(named, target="tests.jobs:add"))
    assert (kept.name, kept.service) == ("nightly", "svc")


def test_restart_of_an_unfinished_task_is_a_conflict(queue):
    task_id = queue.submit("tests.jobs:noop")
    with pytest.raises(Conflict, match="pending"):
        queue.restart(task_id)
    with pytest.raises(NotFound):
        queue.restart(99)


# -- edit ----------------------------------------------------------------


def test_edit_changes_a_pending_task_in_one_audited_step(queue, clock):
    task_id = queue.submit("tests.jobs:noop", delay=3600, expires=60)
    changes = queue.edit(task_id, target="tests.jobs:add", payload={"a": 1, "b": 2}, priority=3, delay=0)
    task = queue.get(task_id)
    assert (task.target, task.name, task.service, task.priority) == ("tests.jobs:add", "tests.jobs:add", "simple:tests.jobs:add", 3)
    assert task.run_at == clock.now() and task.expires_at == clock.now() + 60_000_000
    assert changes["priority"] == {"from": 0, "to": 3} and changes["target"]["from"] == "tests.jobs:noop"
    assert changes["run_at"]["to"] == format_time(clock.now())
    entries = queue.audit.entries(task_id=task_id, action="task.edit")
    assert len(entries) == 1 and json.loads(entries[0].details) == changes


def test_an_edit_that_changes_nothing_writes_nothing(queue):
    task_id = queue.submit("tests.jobs:noop", priority=2)
    assert queue.edit(task_id, priority=2) == {}
    assert queue.audit.entries(task_id=task_id, action="task.edit") == []


def test_edit_checks_values_as_submit_does_and_refuses_finished_tasks(queue):
    task_id = queue.submit("tests.jobs:noop")
    with pytest.raises(InvalidInput, match="priority"):
        queue.edit(task_id, priority=101)
    with pytest.raises(InvalidInput, match="package.module:function"):
        queue.edit(task_id, target="not a function")
    with pytest.raises(InvalidInput, match="nothing to change"):
        queue.edit(task_id)
    queue.cancel(task_id)
    with pytest.raises(Conflict, match="cancelled"):
        queue.edit(task_id, priority=1)


# -- prune ---------------------------------------------------------------


def test_prune_deletes_old_finished_tasks_in_audited_batches_and_keeps_what_others_need(queue, clock, monkeypatch):
    from tqcli.core import lifecycle

    monkeypatch.setattr(lifecycle, "PRUNE_BATCH", 2)
    done = [queue.submit("tests.jobs:noop") for _ in range(3)]
    needed = queue.submit("tests.jobs:noop")
    _drain(queue)
    waiting = queue.submit("tests.jobs:noop", depends_on=[needed], delay=30 * 86400)
    cancelled = queue.submit("tests.jobs:noop")
    queue.cancel(cancelled)
    failed = queue.submit("tests.jobs:boom", max_retries=0)
    _drain(queue)
    clock.advance(86400)
    fresh = queue.submit("tests.jobs:noop")
    _drain(queue)
    assert queue.prune(older_than=3600, dry_run=True) == done + [cancelled]
    assert queue.get(done[0]).state.value == "completed", "a dry run changes nothing"
    assert queue.prune(older_than=3600) == done + [cancelled]
    for task_id in done + [cancelled]:
        with pytest.raises(NotFound):
            queue.get(task_id)
    assert {queue.get(task_id).state.value for task_id in (needed, waiting, failed, fresh)} == {"completed", "pending", "failed"}
    batches = queue.audit.entries(action="task.prune")
    assert [json.loads(entry.details)["ids"] for entry in batches] == [done[:2], [done[2], cancelled]]
    assert queue.prune(older_than=3600, states=["failed"]) == [failed]
    assert queue.audit.verify().intact
    assert raw_sql(queue.location, "SELECT count(*) FROM attempts WHERE task_id IN (?, ?, ?)", tuple(done)) == [(0,)]


def test_prune_refuses_unknown_states(queue):
    with pytest.raises(InvalidInput, match="completed, cancelled or failed"):
        queue.prune(older_than=0, states=["pending"])


# -- wait ----------------------------------------------------------------


def test_wait_all_names_an_unknown_id_before_waiting_and_times_out(queue):
    task_id = queue.submit("tests.jobs:noop")
    with pytest.raises(NotFound, match="task 99"):
        queue.wait_all([task_id, 99])
    with pytest.raises(WaitTimeout, match=f"task {task_id} is still pending"):
        queue.wait_all([task_id], timeout=0)
    _drain(queue)
    assert queue.wait_all([task_id])[task_id].state.value == "completed"


# -- the worker registry -------------------------------------------------


def test_a_worker_registers_beats_and_stops(queue, clock):
    assert queue.workers() == [] and queue.no_live_worker()
    _drain(queue)
    (seen,) = queue.workers()
    assert seen.id == "w1" and not seen.alive and seen.stopped_at is not None and seen.running == []
    assert queue.no_live_worker(), "a stopped worker is not a live one"


def test_a_killed_worker_counts_as_alive_until_its_heartbeat_is_older_than_its_lease(queue, clock):
    with queue._ctx.store.write() as tx:
        from tqcli.core import workers

        workers.register(tx, "run-1", "w9", holder=None, alive_for=30, now=clock.now())
    assert queue.workers()[0].alive and not queue.no_live_worker()
    clock.advance(11)
    assert queue.workers()[0].alive and queue.no_live_worker(), "alive, but quiet for more than 10 s"
    clock.advance(20)
    assert not queue.workers()[0].alive
    clock.advance(86400)
    assert queue.workers() == [], "only the last 24 hours are listed"


def test_a_python_failure_keeps_its_type_and_traceback(queue):
    task_id = queue.submit("tests.jobs:boom", payload={"message": "nope"}, max_retries=0)
    _drain(queue)
    task = queue.get(task_id)
    assert task.error == "ValueError: nope"
    (attempt,) = task.history
    assert attempt.traceback.splitlines()[-1] == "ValueError: nope" and "tests/jobs.py" in attempt.traceback
    assert "tqcli/backends" not in attempt.traceback, "tqcli's own frames are left out"


def test_a_non_json_result_fails_once_without_retry(queue):
    task_id = queue.submit_specs([TaskSpec("tests.jobs:not_json", max_retries=3)])[0].id
    _drain(queue)
    task = queue.get(task_id)
    assert task.state.value == "failed" and task.attempts == 1 and "not JSON-serialisable" in task.error


def test_history_counts_attempts_per_run_across_replays(queue, clock):
    task_id = queue.submit("tests.jobs:boom", max_retries=1, backoff=0)
    _drain(queue)
    queue.dlq.replay([task_id])
    _drain(queue)
    task = queue.get(task_id)
    assert [(a.run, a.attempt) for a in task.history] == [(1, 1), (1, 2), (2, 1), (2, 2)]
    assert [(r.run, r.by) for r in task.replays] == [(2, queue.actor)]
    assert task.to_json()["history"][2]["run"] == 2


def test_a_circuit_wait_names_the_circuit_and_how_to_reset_it(queue, clock):
    queue.breakers.configure("svc", failure_threshold=1)
    first = queue.submit("tests.jobs:boom", service="svc", max_retries=0)
    _drain(queue)
    second = queue.submit("tests.jobs:noop", service="svc")
    task = queue.get(second)
    assert task.waiting == "circuit open"
    assert task.waiting_detail == {
        "service": "svc", "state": "open", "trial_at": format_time(clock.now() + 30_000_000), "trial_task": None,
        "reset": "tqcli breaker reset svc",
    }
    assert queue.get(first).waiting_detail is None
