"""Task operations through the library: submit, status, cancel, bump, dependencies."""

import pytest

from tqcli import TaskSpec
from tqcli.errors import Conflict, InvalidInput, NotFound
from tqcli.units import format_time


def test_submit_stores_every_field(queue, clock):
    task_id = queue.submit("app.jobs:resize", payload={"path": "a.png"}, name="resize", queue="img", tenant="acme",
                           priority=7, max_retries=1, backoff=2, timeout=30, idempotency_key="k1", service="images")
    task = queue.get(task_id)
    assert task.to_json() | {"history": None} == {
        "id": task_id, "name": "resize", "queue": "img", "tenant": "acme", "backend": "simple",
        "target": "app.jobs:resize", "payload": {"path": "a.png"}, "priority": 7, "state": "pending",
        "attempts": 0, "max_retries": 1, "backoff": 2.0, "timeout": 30, "run_at": format_time(clock.now()),
        "depends_on": [], "dag_id": None, "service": "images", "idempotency_key": "k1", "encrypted": False,
        "result": None, "error": None, "created_at": format_time(clock.now()), "started_at": None,
        "finished_at": None, "submitted_by": queue.actor, "history": None, "waiting": "ready: waiting for a worker",
        "run": 1, "restarted_from": None, "expires_at": None, "cwd": None, "env": {}, "replays": [],
        "waiting_detail": None,
    }


def test_ids_are_never_reused(queue):
    first = queue.submit("a:b")
    with queue._ctx.store.write() as tx:
        tx.conn.execute("DELETE FROM tasks WHERE id = ?", (first,))
    assert queue.submit("a:b") == first + 1


def test_delay_and_at_set_run_at(queue, clock):
    delayed = queue.submit("a:b", delay=90)
    at = queue.submit("a:b", at=clock.now() + 3_600_000_000)
    assert queue.get(delayed).run_at == clock.now() + 90_000_000
    assert queue.get(delayed).waiting == f"delayed until {format_time(clock.now() + 90_000_000)}"
    assert queue.get(at).run_at == clock.now() + 3_600_000_000
    clock.advance(91)
    assert queue.get(delayed).waiting == "ready: waiting for a worker"


def test_idempotency_key_returns_the_existing_task(queue):
    first = queue.submit_specs([TaskSpec("a:b", idempotency_key="nightly-2026-11-28")])[0]
    again = queue.submit_specs([TaskSpec("a:b", idempotency_key="nightly-2026-11-28")])[0]
    assert first.created and not again.created and again.id == first.id
    other_tenant = queue.submit_specs([TaskSpec("a:b", idempotency_key="nightly-2026-11-28", tenant="acme")])[0]
    assert other_tenant.created and other_tenant.id != first.id
    assert queue.status().counts["pending"] == 2


@pytest.mark.parametrize("other", [
    {"target": "c:d"}, {"backend": "shell", "target": "a:b"}, {"target": "a:b", "payload": {"n": 2}},
])
def test_an_idempotency_key_held_by_other_work_is_a_conflict(queue, other):
    other = dict(other)  # the parameter is shared by both stores' runs
    first = queue.submit("a:b", payload={"n": 1}, idempotency_key="k")
    assert queue.submit_specs([TaskSpec("a:b", payload={"n": 1}, idempotency_key="k")])[0].id == first
    with pytest.raises(Conflict, match=f"idempotency key k is held by task {first}"):
        queue.submit_specs([TaskSpec(other.pop("target"), idempotency_key="k", **other)])
    with pytest.raises(Conflict, match="line 2: idempotency key k is held"):
        queue.submit_specs([TaskSpec("x:y"), TaskSpec("c:d", idempotency_key="k")], where=["line 1", "line 2"])
    assert queue.status().counts["pending"] == 1


def test_idempotency_keys_repeated_inside_one_bulk_submit(queue):
    results = queue.submit_specs([TaskSpec("a:b", idempotency_key="k"), TaskSpec("a:b", idempotency_key="k")])
    assert results[0].id == results[1].id and [r.created for r in results] == [True, False]


def test_bulk_submit_is_all_or_nothing(queue):
    queue.submit("a:b")
    with pytest.raises(NotFound, match="task 42"):
        queue.submit_many([TaskSpec("a:b"), TaskSpec("a:b", depends_on=[42])])
    assert queue.status().counts["pending"] == 1
    assert queue.audit.verify().count == 1


def test_unknown_backend_lists_the_available_ones(queue):
    with pytest.raises(InvalidInput, match=r"unknown backend 'k8s'; available: .*shell.*simple"):
        queue.submit("run it", backend="k8s")


def test_dependencies_make_a_task_wait(queue):
    a = queue.submit("a:b")
    b = queue.submit("a:b")
    c = queue.submit("a:b", depends_on=[a, b, a])
    task = queue.get(c)
    assert task.depends_on == [a, b]
    assert task.waiting == f"waiting for tasks {a}, {b}"


def test_unknown_dependency_is_not_found(queue):
    with pytest.raises(NotFound, match="task 7 .* does not exist"):
        queue.submit("a:b", depends_on=[7])


def test_depending_on_a_cancelled_task_starts_blocked(queue):
    a = queue.submit("a:b")
    queue.cancel(a)
    b = queue.submit("a:b", depends_on=[a])
    assert queue.get(b).state.value == "blocked"
    assert queue.get(b).waiting == f"blocked: task {a} cancelled"


def test_cancel_blocks_dependents_transitively(queue):
    a = queue.submit("a:b")
    b = queue.submit("a:b", depends_on=[a])
    c = queue.submit("a:b", depends_on=[b])
    queue.cancel(a, reason="wrong input")
    assert [queue.get(i).state.value for i in (a, b, c)] == ["cancelled", "blocked", "blocked"]
    assert queue.get(a).error == f"cancelled by {queue.actor}: wrong input"
    assert queue.get(c).waiting == f"blocked: task {b} is blocked"
    actions = [e.action for e in queue.audit.entries()]
    assert actions[-3:] == ["task.cancel", "task.block", "task.block"]


def test_cancel_cascade_cancels_dependents(queue):
    a = queue.submit("a:b")
    b = queue.submit("a:b", depends_on=[a])
    c = queue.submit("a:b", depends_on=[b])
    other = queue.submit("a:b")
    assert queue.cancel(a, cascade=True) == [a, b, c]
    assert [queue.get(i).state.value for i in (a, b, c, other)] == ["cancelled", "cancelled", "cancelled", "pending"]


def test_cancel_of_a_terminal_task_is_a_conflict_and_changes_nothing(queue):
    a = queue.submit("a:b")
    b = queue.submit("a:b")
    queue.cancel(a)
    with pytest.raises(Conflict, match=f"task {a} is already cancelled"):
        queue.cancel(b, a)
    assert queue.get(b).state.value == "pending"


def test_cancel_of_a_running_task_is_a_request(queue):
    a = queue.submit("a:b")
    with queue._ctx.store.write() as tx:
        tx.conn.execute("UPDATE tasks SET state = 'running' WHERE id = ?", (a,))
    queue.cancel(a)
    task = queue.get(a)
    assert task.state.value == "running" and task.cancel_requested


def test_bump_sets_or_shifts_priority(queue):
    a = queue.submit("a:b", priority=5)
    assert queue.bump(a, by=10) == (5, 15)
    assert queue.bump(a, priority=-3) == (15, -3)
    assert queue.audit.entries(action="task.bump")[-1].to_json()["details"] == {"old": 15, "new": -3}


def test_bump_outside_the_range_is_invalid(queue):
    a = queue.submit("a:b", priority=95)
    with pytest.raises(InvalidInput, match="between -100 and 100"):
        queue.bump(a, by=10)


def test_bump_of_a_finished_task_is_a_conflict(queue):
    a = queue.submit("a:b")
    queue.cancel(a)
    with pytest.raises(Conflict, match="only pending or blocked"):
        queue.bump(a, by=1)


def test_status_counts_all_six_states_per_queue(queue):
    queue.submit("a:b", queue="q1")
    queue.submit("a:b", queue="q2")
    queue.cancel(queue.submit("a:b", queue="q2"))
    summary = queue.status()
    assert summary.counts == {"pending": 2, "running": 0, "completed": 0, "failed": 0, "cancelled": 1, "blocked": 0}
    assert summary.queues["q2"] == {"pending": 1, "running": 0, "completed": 0, "failed": 0, "cancelled": 1, "blocked": 0}
    assert [t.id for t in summary.tasks] == [3, 2, 1]
    assert [t.id for t in queue.status(queue="q2", state="cancelled").tasks] == [3]
    assert len(queue.status(limit=1).tasks) == 1
    assert len(queue.status(limit=0).tasks) == len(queue.status(limit=1000).tasks) > 1


def test_status_rejects_an_unknown_state(queue):
    with pytest.raises(InvalidInput, match="use one of: pending, running"):
        queue.status(state="done")


def test_get_of_a_missing_task(queue):
    with pytest.raises(NotFound, match="task 5 does not exist"):
        queue.get(5)


def test_a_repeated_idempotent_submit_uses_up_no_id(queue):
    """Ids follow on from each other on both stores: a submit that finds its key's task takes no new id."""
    first = queue.submit("a:b", idempotency_key="k")
    assert [queue.submit("a:b", idempotency_key="k") for _ in range(3)] == [first] * 3
    assert queue.submit_specs([TaskSpec("a:b", idempotency_key="k"), TaskSpec("a:b", idempotency_key="j"), TaskSpec("a:b", idempotency_key="j")])[1].id == first + 1
    assert queue.submit("a:b") == first + 2
