"""The dead-letter queue: list, replay and purge."""

import pytest

from tests.test_dispatcher import claim, failed, finish
from tqcli.errors import Conflict, InvalidInput, NotFound


def dead(q, count=1, **options):
    """`count` new tasks that failed their only attempt (claim them before anything else is pending)."""
    ids = [q.submit("a:b", max_retries=0, **options) for _ in range(count)]
    for claimed in claim(q, count):
        finish(q, claimed, failed("it broke"))
    return ids


def test_list_shows_failed_tasks_newest_first(queue):
    ids = dead(queue, 2)
    queue.submit("a:b")
    assert [t.id for t in queue.dlq.list()] == ids[::-1]
    assert queue.dlq.list(queue="other") == []


def test_replay_resets_attempts_keeps_the_id_and_audits(queue):
    (task_id,) = dead(queue)
    replayed = queue.dlq.replay([task_id])
    assert [t.id for t in replayed] == [task_id]
    task = queue.get(task_id)
    assert (task.state.value, task.attempts, task.error) == ("pending", 0, None)
    details = queue.audit.entries(action="dlq.replay")[0].to_json()["details"]
    assert details == {"attempts": 1, "previous_error": "it broke"}


def test_replay_all_with_filters_and_dry_run(queue):
    etl = dead(queue, 2, queue="etl")
    web = dead(queue, 1, queue="web")
    assert [t.id for t in queue.dlq.replay(every=True, queue="etl", dry_run=True)] == etl[::-1]
    assert len(queue.dlq.list()) == 3
    queue.dlq.replay(every=True, queue="etl")
    assert [t.id for t in queue.dlq.list()] == web


def test_replay_refuses_what_is_not_in_the_dlq(queue):
    (dead_id,) = dead(queue)
    pending = queue.submit("a:b")
    with pytest.raises(Conflict, match=f"task {pending} is pending, not in the dead-letter queue"):
        queue.dlq.replay([dead_id, pending])
    assert queue.get(dead_id).state.value == "failed"
    with pytest.raises(NotFound):
        queue.dlq.replay([999])
    with pytest.raises(InvalidInput, match="nothing to replay: give the task IDs, or --all"):
        queue.dlq.replay()
    with pytest.raises(InvalidInput, match="not both"):
        queue.dlq.replay([dead_id], every=True)


def test_purge_needs_confirmation(queue):
    dead(queue)
    with pytest.raises(InvalidInput, match="--yes"):
        queue.dlq.purge(every=True)
    assert len(queue.dlq.list()) == 1
    with pytest.raises(InvalidInput, match="invalid --older-than"):
        queue.dlq.purge(every=True, older_than="a week")
    with pytest.raises(NotFound):
        queue.dlq.purge([999])
    with pytest.raises(InvalidInput, match="nothing to purge"):
        queue.dlq.purge(confirmed=True)


def test_purge_deletes_keeps_the_audit_record_and_cancels_what_waited(queue):
    (task_id,) = dead(queue)
    queue.submit("a:b")  # unrelated
    child = queue.submit("a:b", depends_on=[task_id])
    assert queue.get(child).state.value == "blocked"
    purged = queue.dlq.purge([task_id], confirmed=True)
    assert [t.id for t in purged] == [task_id]
    with pytest.raises(NotFound):
        queue.get(task_id)
    assert queue.get(child).state.value == "cancelled"
    assert queue.audit.entries(action="dlq.purge")[0].task_id == task_id
    assert queue.audit.verify().intact


def test_purge_older_than(queue, clock):
    old = dead(queue)
    clock.advance(3600)
    new = dead(queue)
    assert [t.id for t in queue.dlq.purge(every=True, older_than="30m", confirmed=True)] == old
    assert [t.id for t in queue.dlq.list()] == new
