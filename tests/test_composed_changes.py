"""Changes composed in one transaction: all of them land with their audit entries in order, or none does.

Every change of the library has a twin taking `(ctx, tx, journal, ...)`
(docs/design.md, "Changes that compose"); `apply` will run several in one
`Context.change()`. Here they are composed through the library's context.
"""

import pytest

from tests.stores import table_dump
from tests.test_dispatcher import claim, failed, finish, ok
from tqcli.core.dags import cancel_dag, parse_dag, submit_dag
from tqcli.core.lifecycle import edit_task, prune_batch, restart_task
from tqcli.core.queue import bump_task, cancel_tasks
from tqcli.core.submission import insert_specs
from tqcli.core.spec import TaskSpec
from tqcli.errors import Conflict, InvalidInput, NotFound
from tqcli.resilience.breakers import configure_breaker, reset_breaker
from tqcli.resilience.dead_letter import purge_tasks, replay_tasks
from tqcli.scheduler.schedules import (
    add_schedule,
    edit_schedule,
    pause_schedule,
    remove_schedule,
    resume_schedule,
    run_schedule,
)

ETL = {"name": "etl", "tasks": {"extract": {"target": "a:extract"}, "load": {"target": "a:load", "depends_on": ["extract"]}}}


def dead(queue, count=1):
    """`count` new tasks that failed their only attempt (claimed before anything else is pending)."""
    ids = [queue.submit("a:b", max_retries=0) for _ in range(count)]
    for claimed in claim(queue, count):
        finish(queue, claimed, failed("it broke"))
    return ids


def completed(queue):
    """A new task that completed (claimed before anything else is pending)."""
    task_id = queue.submit("a:done")
    (claimed,) = claim(queue)
    finish(queue, claimed, ok())
    return task_id


def head(queue):
    """The sequence number of the newest audit entry (0: none)."""
    entries = queue.audit.entries(limit=1)
    return entries[0].seq if entries else 0


def entries_after(queue, seq):
    return [entry for entry in queue.audit.entries(limit=0) if entry.seq > seq]


def test_composed_changes_commit_together_with_their_audit_entries_in_order(queue, clock):
    ctx = queue._ctx
    (replayed, purged) = dead(queue, 2)
    finished = completed(queue)
    pending = queue.submit("a:b", priority=1)
    doomed = queue.submit("a:b")
    before = head(queue)
    clock.advance(3600)

    with ctx.change() as (tx, journal):
        schedule = add_schedule(ctx, tx, journal, "nightly", cron="0 3 * * *", options={"target": "a:nightly", "queue": "batch"})
        edited, schedule_changes = edit_schedule(ctx, tx, journal, "nightly", options={"priority": 5})
        assert pause_schedule(ctx, tx, journal, "nightly") is True
        assert pause_schedule(ctx, tx, journal, "nightly") is False  # sees the pause above: nothing more written
        fired = run_schedule(ctx, tx, journal, "nightly")
        assert configure_breaker(ctx, tx, journal, "simple:a:nightly", failure_threshold=3, recovery_timeout="2m") is True
        assert reset_breaker(ctx, tx, journal, "simple:a:nightly") is False  # closed with no failures
        assert bump_task(ctx, tx, journal, pending, by=4) == (1, 5)
        edit = edit_task(ctx, tx, journal, pending, {"target": "a:c"})
        restarted = restart_task(ctx, tx, journal, finished, {"priority": 9})
        assert [t.id for t in replay_tasks(ctx, tx, journal, [replayed])] == [replayed]
        assert [t.id for t in purge_tasks(ctx, tx, journal, [purged])] == [purged]
        dag_id = submit_dag(ctx, tx, journal, parse_dag(ETL, "etl.toml"))
        dag_tasks = cancel_dag(ctx, tx, journal, dag_id)
        assert cancel_tasks(ctx, tx, journal, [doomed], cascade=False, reason=None) == [doomed]
        (spec_result,) = insert_specs(ctx, tx, journal, [TaskSpec("a:b")])
        assert [row[1] for row in prune_batch(ctx, tx, journal, states=["completed"], finished_by=clock.now())] == [finished]

    assert schedule.name == "nightly" and edited.spec["priority"] == 5 and schedule_changes == {"priority": {"from": 0, "to": 5}}
    assert edit == {"target": {"from": "a:b", "to": "a:c"}, "name": {"from": "a:b", "to": "a:c"}, "service": {"from": "simple:a:b", "to": "simple:a:c"}}
    actions = [(entry.action, entry.task_id) for entry in entries_after(queue, before)]
    extract, load = dag_tasks  # cancelled in id order, on both stores
    assert actions == [
        ("schedule.add", None),
        ("schedule.edit", None),
        ("schedule.pause", None),
        ("task.submit", fired),
        ("schedule.fire", fired),
        ("breaker.set", None),
        ("task.bump", pending),
        ("task.edit", pending),
        ("task.submit", restarted),
        ("dlq.replay", replayed),
        ("dlq.purge", purged),
        ("dag.submit", None),
        ("task.submit", extract),
        ("task.submit", load),
        ("dag.cancel", None),
        ("task.cancel", extract),
        ("task.cancel", load),
        ("task.cancel", doomed),
        ("task.submit", spec_result.id),
        ("task.prune", None),
    ]
    assert queue.audit.verify().intact

    assert queue.schedules.get("nightly").paused is True
    (breaker,) = [b for b in queue.breakers.list() if b.key == "simple:a:nightly"]
    assert (breaker.failure_threshold, breaker.recovery_timeout) == (3, 120.0)
    assert (queue.get(pending).priority, queue.get(pending).target) == (5, "a:c")
    assert (queue.get(fired).queue, queue.get(fired).priority, queue.get(fired).name) == ("batch", 5, "nightly")
    assert queue.get(restarted).restarted_from == finished and queue.get(restarted).priority == 9
    assert queue.get(replayed).state.value == "pending"
    assert queue.get(doomed).state.value == "cancelled"
    assert queue.dags.get(dag_id).state == "cancelled"
    for gone in (purged, finished):
        with pytest.raises(NotFound):
            queue.get(gone)


def test_resume_and_remove_compose_with_an_add(queue):
    ctx = queue._ctx
    queue.schedules.add("hourly", cron="@hourly", options={"target": "a:b"})
    queue.schedules.pause("hourly")
    before = head(queue)
    with ctx.change() as (tx, journal):
        assert resume_schedule(ctx, tx, journal, "hourly") is True
        remove_schedule(ctx, tx, journal, "hourly")
        add_schedule(ctx, tx, journal, "hourly", cron="@daily", options={"target": "a:c"})
    assert [entry.action for entry in entries_after(queue, before)] == ["schedule.resume", "schedule.remove", "schedule.add"]
    (schedule,) = queue.schedules.list()
    assert (schedule.cron, schedule.spec["target"], schedule.paused) == ("@daily", "a:c", False)
    assert queue.audit.verify().intact


# Each fails as the last of a composed change; nothing of the earlier ones may remain.
FAILURES = {
    "bump of an unknown task": (NotFound, lambda ctx, tx, journal, ids: bump_task(ctx, tx, journal, 999_999, by=1)),
    "bump with both priority and by": (InvalidInput, lambda ctx, tx, journal, ids: bump_task(ctx, tx, journal, ids["pending"], priority=1, by=1)),
    "edit of a finished task": (Conflict, lambda ctx, tx, journal, ids: edit_task(ctx, tx, journal, ids["completed"], {"priority": 3})),
    "a schedule added twice": (Conflict, lambda ctx, tx, journal, ids: add_schedule(ctx, tx, journal, "nightly", cron="@daily", options={"target": "a:b"})),
    "replay of a pending task": (Conflict, lambda ctx, tx, journal, ids: replay_tasks(ctx, tx, journal, [ids["pending"]])),
    "reset of an unknown breaker": (NotFound, lambda ctx, tx, journal, ids: reset_breaker(ctx, tx, journal, "simple:no:such")),
    "a DAG with an unknown backend": (
        InvalidInput,
        lambda ctx, tx, journal, ids: submit_dag(ctx, tx, journal, parse_dag({"tasks": {"x": {"target": "a:b", "backend": "nope"}}}, "x.toml")),
    ),
    "run of an unknown schedule": (NotFound, lambda ctx, tx, journal, ids: run_schedule(ctx, tx, journal, "no-such")),
}


@pytest.mark.parametrize("failure", list(FAILURES))
def test_a_later_failure_leaves_nothing_of_the_earlier_changes(queue, clock, failure):
    ctx = queue._ctx
    (dead_id,) = dead(queue)
    done = completed(queue)
    pending = queue.submit("a:b")
    queue.breakers.configure("simple:a:b", failure_threshold=2)
    clock.advance(60)
    ids = {"completed": done, "pending": pending}
    defaults = queue.breakers.defaults()
    before = table_dump(queue.location)
    error, last = FAILURES[failure]

    with pytest.raises(error):
        with ctx.change() as (tx, journal):
            add_schedule(ctx, tx, journal, "nightly", cron="0 3 * * *", options={"target": "a:nightly"})
            run_schedule(ctx, tx, journal, "nightly")
            configure_breaker(ctx, tx, journal, "simple:a:b", failure_threshold=7)
            configure_breaker(ctx, tx, journal, None, recovery_timeout="5m")
            bump_task(ctx, tx, journal, pending, priority=50)
            submit_dag(ctx, tx, journal, parse_dag(ETL, "etl.toml"))
            replay_tasks(ctx, tx, journal, [dead_id])
            restart_task(ctx, tx, journal, done, {})
            last(ctx, tx, journal, ids)

    assert table_dump(queue.location) == before
    assert queue.audit.verify().intact
    assert queue.schedules.list() == [] and queue.get(pending).priority == 0 and queue.get(dead_id).state.value == "failed"
    assert queue.breakers.defaults() == defaults
    # The database takes the next change as if nothing had been tried.
    queue.bump(pending, by=2)
    assert queue.get(pending).priority == 2 and queue.audit.verify().intact
