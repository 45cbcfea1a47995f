"""Claiming, fencing, retries, the DLQ and circuit breakers, with time moved by the clock."""

import pytest

from tqcli.core import dispatcher
from tqcli.core.dispatcher import Outcome, backoff_delay

WORKER = "w1"


def claim(queue, count=1, holder=None, **filters):
    """Claim as a worker whose process cannot be looked up (by default), so its lease alone decides."""
    with queue._ctx.change() as (tx, journal):
        return dispatcher.claim(tx, journal, count=count, now=queue.clock.now(), worker=WORKER, lease_seconds=60, holder=holder, **filters)


def finish(queue, claimed, outcome, worker=WORKER):
    with queue._ctx.change() as (tx, journal):
        return dispatcher.finish(tx, journal, claimed, outcome, now=queue.clock.now(), worker=worker)


def reclaim(queue):
    with queue._ctx.change() as (tx, journal):
        return dispatcher.reclaim_expired(tx, journal, now=queue.clock.now(), worker="w2")


def ok(value="null"):
    return Outcome("completed", result=value)


def failed(error="boom"):
    return Outcome("failed", error=error)


def state(queue, task_id):
    return queue.get(task_id).state.value


def test_best_first_priority_then_run_at_then_id(queue, clock):
    low = queue.submit("a:b", priority=-5)
    first = queue.submit("a:b")
    clock.advance(1)
    second = queue.submit("a:b")
    high = queue.submit("a:b", priority=50)
    assert [c.id for c in claim(queue, 10)] == [high, first, second, low]


def test_delayed_tasks_and_unfinished_dependencies_are_left_alone(queue, clock):
    delayed = queue.submit("a:b", delay=60)
    parent = queue.submit("a:b")
    child = queue.submit("a:b", depends_on=[parent])
    (claimed,) = claim(queue, 10)
    assert claimed.id == parent
    assert finish(queue, claimed, ok()) == "completed"
    assert [c.id for c in claim(queue, 10)] == [child]
    clock.advance(61)
    assert [c.id for c in claim(queue, 10)] == [delayed]


def test_claim_counts_the_attempt_and_fences_it(queue):
    task_id = queue.submit("a:b")
    (claimed,) = claim(queue)
    task = queue.get(task_id)
    assert task.state.value == "running" and task.attempts == 1 and claimed.attempt == 1
    assert task.history[0].outcome is None and task.history[0].worker == WORKER
    assert [e.action for e in queue.audit.entries()][-1] == "task.claim"


def test_filters_by_queue_tenant_and_backend(queue):
    queue.submit("a:b", queue="q1")
    wanted = queue.submit("a:b", queue="q2", tenant="acme")
    shell = queue.submit("true", backend="shell", queue="q2", tenant="acme")
    assert [c.id for c in claim(queue, 10, queues=("q2",), tenants=("acme",), backends=("simple",))] == [wanted]
    assert claim(queue, 10, backends=()) == []
    assert state(queue, shell) == "pending"


def test_completion_stores_the_result_and_releases_dependents(queue):
    parent = queue.submit("a:b")
    child = queue.submit("a:b", depends_on=[parent])
    (claimed,) = claim(queue)
    finish(queue, claimed, ok('{"rows": 3}'))
    task = queue.get(parent)
    assert task.state.value == "completed" and task.result_value == {"rows": 3} and task.finished_at is not None
    assert task.history[0].outcome == "completed"
    assert queue.get(child).waiting == "ready: waiting for a worker"


def test_failure_retries_with_exponential_backoff_then_dead_letters(queue, clock):
    task_id = queue.submit("a:b", max_retries=2, backoff=10)
    delays = []
    for expected in ("retry", "retry", "failed"):
        (claimed,) = claim(queue)
        assert finish(queue, claimed, failed(f"attempt {claimed.attempt}")) == expected
        task = queue.get(task_id)
        delays.append((task.run_at - clock.now()) / 1e6)
        clock.advance(3600)
    assert delays[:2] == [10, 20]
    task = queue.get(task_id)
    assert task.state.value == "failed" and task.attempts == 3 and task.error == "attempt 3"
    assert [a.outcome for a in task.history] == ["failed"] * 3
    assert [t.id for t in queue.dlq.list()] == [task_id]


def test_a_retry_is_not_claimed_before_its_backoff(queue, clock):
    queue.submit("a:b", backoff=30)
    (claimed,) = claim(queue)
    finish(queue, claimed, failed())
    assert claim(queue) == []
    assert queue.get(claimed.id).waiting.startswith("retry until ")
    clock.advance(30)
    assert len(claim(queue)) == 1


def test_backoff_is_capped_at_an_hour():
    assert backoff_delay(5, 1) == 5 and backoff_delay(5, 3) == 20 and backoff_delay(5, 40) == 3600 and backoff_delay(0, 4) == 0


def test_max_retries_zero_means_one_attempt(queue):
    task_id = queue.submit("a:b", max_retries=0)
    (claimed,) = claim(queue)
    assert finish(queue, claimed, failed()) == "failed"
    assert queue.get(task_id).attempts == 1


def test_failure_blocks_dependents_and_replay_unblocks_them(queue):
    parent = queue.submit("a:b", max_retries=0)
    child = queue.submit("a:b", depends_on=[parent])
    grandchild = queue.submit("a:b", depends_on=[child])
    (claimed,) = claim(queue)
    finish(queue, claimed, failed())
    assert (state(queue, child), state(queue, grandchild)) == ("blocked", "blocked")
    assert queue.get(child).waiting == f"blocked: task {parent} failed"
    queue.dlq.replay([parent])
    assert (state(queue, parent), state(queue, child), state(queue, grandchild)) == ("pending", "pending", "pending")
    assert queue.get(parent).attempts == 0
    (claimed,) = claim(queue)
    finish(queue, claimed, ok())
    assert [c.id for c in claim(queue)] == [child]


def test_a_late_result_after_reclaim_is_dropped_and_audited(queue, clock):
    task_id = queue.submit("a:b", backoff=0)
    (stale,) = claim(queue)
    clock.advance(61)
    assert reclaim(queue) == [(task_id, "retry")]
    (fresh,) = claim(queue)
    assert fresh.token != stale.token
    assert finish(queue, stale, ok('"late"')) == "stale"
    assert queue.get(task_id).state.value == "running"
    assert finish(queue, fresh, ok('"fresh"')) == "completed"
    task = queue.get(task_id)
    assert task.result_value == "fresh" and task.attempts == 2
    assert [a.outcome for a in task.history] == ["lost", "completed"]
    stale_entry = queue.audit.entries(action="task.stale")[0].to_json()["details"]
    assert stale_entry["outcome"] == "completed" and stale_entry["claim"] == stale.claim


def test_lost_workers_count_attempts_so_poison_pills_reach_the_dlq(queue, clock):
    task_id = queue.submit("a:b", max_retries=2, backoff=0)
    for _ in range(3):
        assert len(claim(queue)) == 1
        clock.advance(61)
        reclaim(queue)
    task = queue.get(task_id)
    assert task.state.value == "failed" and task.error == "worker lost" and task.attempts == 3
    assert claim(queue) == []


def test_a_live_lease_is_not_reclaimed(queue, clock):
    queue.submit("a:b")
    claim(queue)
    clock.advance(59)
    assert reclaim(queue) == []


def test_release_returns_the_task_without_counting_the_attempt(queue):
    task_id = queue.submit("a:b")
    (claimed,) = claim(queue)
    assert finish(queue, claimed, Outcome("released")) == "released"
    task = queue.get(task_id)
    assert task.state.value == "pending" and task.attempts == 0
    assert task.history[0].outcome == "released"


def test_cancel_of_a_running_task_ends_cancelled_and_blocks_dependents(queue):
    task_id = queue.submit("a:b")
    child = queue.submit("a:b", depends_on=[task_id])
    (claimed,) = claim(queue)
    queue.cancel(task_id, reason="wrong input")
    assert queue.get(task_id).error.endswith("wrong input"), "a waiting cancel shows while the task runs"
    assert finish(queue, claimed, Outcome("cancelled")) == "cancelled"
    assert (state(queue, task_id), state(queue, child)) == ("cancelled", "blocked")
    assert queue.get(task_id).error.endswith(": wrong input (stopped while running)")


def test_a_worker_stopping_after_a_cancel_request_does_not_put_the_task_back(queue):
    task_id = queue.submit("a:b")
    (claimed,) = claim(queue)
    queue.cancel(task_id, reason="not needed")
    assert finish(queue, claimed, Outcome("released")) == "cancelled"
    assert queue.get(task_id).error.endswith(": not needed (stopped while running)")
    assert claim(queue) == []


def test_cancel_requested_then_worker_lost_ends_cancelled(queue, clock):
    task_id = queue.submit("a:b")
    claim(queue)
    queue.cancel(task_id)
    clock.advance(61)
    assert reclaim(queue) == [(task_id, "cancelled")]
    assert queue.get(task_id).error.endswith(" (its worker was lost)")


def breaker_of(queue, key):
    return {b.key: b for b in queue.breakers.list()}.get(key)


def test_circuit_opens_after_consecutive_failures_and_tasks_wait_without_attempts(queue, clock):
    ids = [queue.submit("svc:call", backoff=0, max_retries=10) for _ in range(7)]
    for _ in range(5):
        (claimed,) = claim(queue)
        finish(queue, claimed, failed())
    assert breaker_of(queue, "simple:svc:call").state == "open"
    assert claim(queue) == []
    untouched = queue.get(ids[6])
    assert untouched.attempts == 0 and untouched.waiting == "circuit open"
    assert "breaker.open" in [e.action for e in queue.audit.entries()]


def test_half_open_admits_one_trial_and_success_closes(queue, clock):
    queue.breakers.configure("simple:svc:call", failure_threshold=2, recovery_timeout="10s")
    for _ in range(4):
        queue.submit("svc:call", backoff=0)
    for _ in range(2):
        (claimed,) = claim(queue)
        finish(queue, claimed, failed())
    assert claim(queue) == []
    clock.advance(10)
    trial = claim(queue, 5)
    assert len(trial) == 1 and breaker_of(queue, "simple:svc:call").state == "half-open"
    assert claim(queue) == []
    finish(queue, trial[0], ok())
    assert breaker_of(queue, "simple:svc:call").state == "closed"
    assert len(claim(queue, 5)) == 3  # the other three, the trial having completed


def test_a_late_success_of_an_attempt_claimed_before_the_circuit_opened_changes_nothing(queue, clock):
    queue.breakers.configure("simple:svc:call", failure_threshold=2, recovery_timeout="10s")
    for _ in range(5):
        queue.submit("svc:call", backoff=0)
    late = claim(queue, 3)  # claimed while the circuit was closed (they run in other slots)
    for claimed in late[:2]:
        finish(queue, claimed, failed())
    assert breaker_of(queue, "simple:svc:call").state == "open"
    finish(queue, late[2], ok())  # it ran meanwhile and succeeded: the trial decides, not this
    assert breaker_of(queue, "simple:svc:call").state == "open"
    clock.advance(10)
    (trial,) = claim(queue, 5)
    finish(queue, trial, ok())
    assert breaker_of(queue, "simple:svc:call").state == "closed"


def open_circuit(queue, recovery_timeout):
    """Open the circuit of `svc:call` with one failure; its task waits to be retried."""
    queue.breakers.configure(None, failure_threshold=1, recovery_timeout=recovery_timeout)
    queue.submit("svc:call", backoff=0, max_retries=5)
    (claimed,) = claim(queue)
    finish(queue, claimed, failed())


def test_a_failed_trial_reopens_the_circuit(queue, clock):
    open_circuit(queue, recovery_timeout=30)
    clock.advance(30)
    (trial,) = claim(queue)
    finish(queue, trial, failed())
    breaker = breaker_of(queue, "simple:svc:call")
    assert breaker.state == "open" and breaker.retry_at == clock.now() + 30_000_000


def test_a_shorter_recovery_timeout_applies_to_a_circuit_already_open(queue, clock):
    open_circuit(queue, recovery_timeout="1h")
    opened = clock.now()
    clock.advance(20)
    queue.breakers.configure(None, recovery_timeout="30s")
    assert breaker_of(queue, "simple:svc:call").retry_at == opened + 30_000_000
    assert claim(queue) == []
    queue.breakers.configure("simple:svc:call", recovery_timeout="10s")
    assert len(claim(queue)) == 1, "opened 20 s ago, the 10 s wait is over"


def test_a_lost_trial_lets_the_next_worker_try_again(queue, clock):
    open_circuit(queue, recovery_timeout=5)
    clock.advance(5)
    claim(queue)
    clock.advance(61)
    reclaim(queue)
    assert len(claim(queue)) == 1


def test_breakers_are_per_service_key(queue):
    queue.breakers.configure(None, failure_threshold=1)
    queue.submit("a:b", service="billing", max_retries=0)
    other = queue.submit("a:b", service="search")
    (claimed,) = claim(queue)
    finish(queue, claimed, failed())
    assert [c.id for c in claim(queue)] == [other]


def test_breaker_reset_and_errors(queue):
    from tqcli.errors import InvalidInput, NotFound

    with pytest.raises(NotFound):
        queue.breakers.reset("nope")
    with pytest.raises(InvalidInput):
        queue.breakers.configure("x", failure_threshold=0)
    with pytest.raises(InvalidInput):
        queue.breakers.configure("x", recovery_timeout="soon")
    with pytest.raises(InvalidInput, match="nothing to set"):
        queue.breakers.configure("x")
    queue.breakers.configure("x", failure_threshold=2)
    queue.breakers.reset("x")
    assert breaker_of(queue, "x").failure_threshold == 2


def test_the_claim_is_an_index_search_with_no_temp_b_tree(queue):
    with queue._ctx.read() as tx:
        if queue.path is None:  # PostgreSQL: with the table this small the planner may scan it; make it show the index path
            tx.conn.execute("SET LOCAL enable_seqscan = off")
        for filters in ({}, {"queues": ("etl",), "backends": ("simple", "shell"), "exclude_error": "worker lost"}):
            plan = " | ".join(tx.explain_claim(**filters))
            if queue.path is None:
                assert "Index Scan using tasks_claim" in plan and "Sort" not in plan, plan
            else:
                pick, update = plan.split(" | ")
                assert pick == (
                    "SEARCH tasks USING INDEX tasks_claim (state=? AND waiting_deps=? AND priority=? AND tenant=? AND queue=? AND run_at<?)"
                ), plan
                assert update == "SEARCH tasks USING INTEGER PRIMARY KEY (rowid=?)", plan  # the update visits the picked rows only


@pytest.mark.sqlite_only
def test_finding_the_levels_and_the_tenants_and_queues_with_work_is_an_index_search(queue):
    from tqcli.store.tenancy_sql import LEVEL_START, WORK_AT_LEVEL

    with queue._ctx.read() as tx:
        steps = [row[-1] for row in tx.conn.execute(f"EXPLAIN QUERY PLAN {LEVEL_START.format(below='AND priority < ?')}", (5,))]
        assert "SEARCH tasks USING COVERING INDEX tasks_claim (state=? AND waiting_deps=? AND priority<?)" in steps, steps
        assert not [step for step in steps if step.startswith("SCAN tasks") or "TEMP B-TREE" in step], steps
        steps = [row[-1] for row in tx.conn.execute(f"EXPLAIN QUERY PLAN {WORK_AT_LEVEL}", (0, 0, 0))]
        searches = [step for step in steps if "tasks" in step and ("SEARCH" in step or "SCAN" in step)]
        assert "SEARCH tasks USING COVERING INDEX tasks_claim (state=? AND waiting_deps=? AND priority=?)" in searches, steps
        assert "SEARCH tasks USING COVERING INDEX tasks_claim (state=? AND waiting_deps=? AND priority=? AND tenant=? AND queue>?)" in searches, steps
        assert "SEARCH tasks USING COVERING INDEX tasks_claim (state=? AND waiting_deps=? AND priority=? AND tenant>?)" in searches, steps
        assert not [step for step in steps if step.startswith("SCAN tasks") or "TEMP B-TREE" in step], steps


def test_a_lease_held_by_a_running_process_survives_a_clock_jump(queue, clock):
    from tqcli.core.liveness import holder_name

    task_id = queue.submit("a:b")
    claim(queue, holder=holder_name())  # this very process: alive and running
    clock.advance(2 * 3600)  # the wall clock jumps two hours forward
    assert reclaim(queue) == []
    assert queue.get(task_id).state.value == "running"


def test_a_lease_whose_holder_is_gone_is_taken_over_at_once(queue, clock):
    import subprocess

    from tqcli.core.liveness import holder_alive, holder_name

    gone = subprocess.Popen(["sleep", "0.2"])
    name = holder_name(gone.pid)
    gone.wait()
    assert holder_alive(name) is False
    task_id = queue.submit("a:b", backoff=0)
    claim(queue, holder=name)
    assert reclaim(queue) == [(task_id, "retry")]  # no need to wait for the lease


def test_a_stopped_holder_keeps_its_lease_until_it_expires(queue, clock):
    import signal
    import subprocess

    from tqcli.core.liveness import holder_alive, holder_name

    stopped = subprocess.Popen(["sleep", "30"])
    try:
        name = holder_name(stopped.pid)
        stopped.send_signal(signal.SIGSTOP)
        import time

        deadline = time.monotonic() + 5
        while holder_alive(name) is not None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert holder_alive(name) is None
        task_id = queue.submit("a:b", backoff=0)
        claim(queue, holder=name)
        assert reclaim(queue) == []
        clock.advance(61)
        assert reclaim(queue) == [(task_id, "retry")]
    finally:
        stopped.kill()
        stopped.wait()


def test_a_dependent_submitted_while_its_dependency_runs_is_released(queue):
    parent = queue.submit("a:b")
    (claimed,) = claim(queue)
    child = queue.submit("a:b", depends_on=[parent])
    finish(queue, claimed, ok())
    assert [c.id for c in claim(queue)] == [child]


def test_a_failure_after_a_cancel_request_ends_cancelled_not_retried(queue):
    task_id = queue.submit("a:b", max_retries=5)
    (claimed,) = claim(queue)
    queue.cancel(task_id)
    assert finish(queue, claimed, failed()) == "cancelled"
    task = queue.get(task_id)
    assert task.state.value == "cancelled" and task.attempts == 1 and "the running attempt failed" in task.error
