"""The dead-letter queue: list, replay and purge."""

import pytest

from tests.test_dispatcher import claim, failed, finish
from tqcli.errors import Conflict, InvalidInput, LimitReached, NotFound


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


def test_purge_dry_run_and_filters_in_the_library(queue):
    etl = dead(queue, 2, queue="etl")
    web = dead(queue, 1, queue="web", tenant="acme")
    assert [t.id for t in queue.dlq.purge(every=True, queue="etl", dry_run=True)] == etl[::-1]
    assert len(queue.dlq.list()) == 3, "a dry run changes nothing"
    assert [t.id for t in queue.dlq.purge(every=True, tenant="acme", confirmed=True)] == web
    assert sorted(t.id for t in queue.dlq.list()) == etl
    with pytest.raises(InvalidInput, match="--queue and --tenant narrow --all"):
        queue.dlq.purge(etl[:1], queue="etl", confirmed=True)


def failed_by_cli(cli, *options):
    """A task submitted with `options` that failed its only attempt, run by a worker; its id."""
    task_id = cli.submit("tests.jobs:boom", "--max-retries", "0", *options)
    cli.ok("worker", "--once", "--quiet")
    assert cli.task(task_id)["state"] == "failed"
    return task_id


def test_dlq_purge_dry_run_prints_the_ids_and_changes_nothing(cli):
    from tests.conftest import table_dump

    first, second = failed_by_cli(cli), failed_by_cli(cli)
    child = cli.submit("tests.jobs:noop", "--depends-on", str(first))
    before = table_dump(cli.db)
    for extra in ([], ["--yes"]):
        result = cli("dlq", "purge", "--all", "--dry-run", *extra)
        assert result.code == 0, result.stderr
        assert result.stdout.splitlines() == [str(second), str(first)] and "would purge 2 task(s)" in result.stderr
    assert cli.ok("dlq", "purge", str(first), "--dry-run", "--json").json[0]["id"] == first
    assert table_dump(cli.db) == before
    assert cli.task(child)["state"] == "blocked"


def test_dlq_purge_filters_by_queue_tenant_and_age(cli):
    etl = failed_by_cli(cli, "--queue", "etl")
    acme = failed_by_cli(cli, "--tenant", "acme")
    other = failed_by_cli(cli)
    assert cli.ok("dlq", "purge", "--all", "--queue", "etl", "--yes").stdout == f"{etl}\n"
    assert cli.ok("dlq", "purge", "--all", "--tenant", "acme", "--dry-run").stdout == f"{acme}\n"
    assert cli.ok("dlq", "purge", "--all", "--older-than", "1h", "--yes").stdout == "", "nothing failed an hour ago"
    assert cli.ok("dlq", "purge", "--all", "--older-than", "0s", "--tenant", "acme", "--yes").stdout == f"{acme}\n"
    assert [task["id"] for task in cli.ok("dlq", "list", "--json").json] == [other]
    for args in (["--queue", "etl", str(other)], ["--tenant", "acme"], ["--older-than", "soon", "--all"], ["--all"]):
        result = cli("dlq", "purge", *args)
        assert result.code == 2 and len(result.error_lines) == 1, (args, result.stderr)


# -- replay with edits ("fix and retry") and its limits ------------------------


def replay_details(q):
    """The details of every dlq.replay entry, by task id."""
    return {entry.task_id: entry.to_json()["details"] for entry in q.audit.entries(action="dlq.replay")}


def test_replay_edits_change_the_task_and_its_entry_says_from_and_to(queue):
    (task_id,) = dead(queue, queue="etl", payload={"path": "a.png"}, priority=1)
    queue.dlq.replay([task_id], payload={"path": "b.png"}, priority=7, max_retries=2, to_queue="etl-slow")
    task = queue.get(task_id)
    assert (task.state.value, task.attempts, task.queue) == ("pending", 0, "etl-slow")
    assert (task.payload_value, task.priority, task.max_retries) == ({"path": "b.png"}, 7, 2)
    assert replay_details(queue)[task_id] == {
        "attempts": 1, "previous_error": "it broke",
        "payload": {"from": {"path": "a.png"}, "to": {"path": "b.png"}}, "priority": {"from": 1, "to": 7},
        "max_retries": {"from": 0, "to": 2}, "queue": {"from": "etl", "to": "etl-slow"},
    }
    assert queue.audit.verify().intact


def test_replay_records_only_what_changed_in_each_task(queue):
    low = dead(queue, priority=3)[0]
    high = dead(queue, priority=5)[0]
    queue.dlq.replay(every=True, priority=5)
    details = replay_details(queue)
    assert details[low]["priority"] == {"from": 3, "to": 5}
    assert "priority" not in details[high]
    assert queue.get(high).priority == queue.get(low).priority == 5


def test_replay_all_to_queue_moves_every_task_and_queue_only_filters(queue):
    etl = dead(queue, 2, queue="etl")
    web = dead(queue, 1, queue="web")
    moved = queue.dlq.replay(every=True, queue="etl", to_queue="fixed")
    assert sorted(task.id for task in moved) == etl and {task.queue for task in moved} == {"fixed"}
    assert [task.id for task in queue.dlq.list()] == web and queue.get(web[0]).queue == "web"


def test_replay_dry_run_with_edits_changes_nothing(queue):
    ids = dead(queue, 2)
    assert sorted(task.id for task in queue.dlq.replay(every=True, priority=9, to_queue="x", dry_run=True)) == ids
    assert {(task.state.value, task.priority, task.queue) for task in queue.dlq.list()} == {("failed", 0, "default")}
    assert replay_details(queue) == {}


def test_replay_edits_unblock_dependents_like_a_plain_replay(queue):
    (parent,) = dead(queue)
    child = queue.submit("a:b", depends_on=[parent])
    assert queue.get(child).state.value == "blocked"
    queue.dlq.replay([parent], to_queue="elsewhere")
    assert queue.get(child).state.value == "pending" and queue.get(child).queue == "default"


@pytest.mark.parametrize("edit, submitted", [
    ({"priority": 101}, {"priority": 101}),
    ({"max_retries": -1}, {"max_retries": -1}),
    ({"to_queue": "no spaces"}, {"queue": "no spaces"}),
    ({"payload": ["not", "an", "object"]}, {"payload": ["not", "an", "object"]}),
])
def test_replay_refuses_bad_edits_with_the_message_submit_gives(queue, edit, submitted):
    (task_id,) = dead(queue)
    with pytest.raises(InvalidInput) as replayed:
        queue.dlq.replay([task_id], **edit)
    with pytest.raises(InvalidInput) as direct:
        queue.submit("a:b", **submitted)
    assert replayed.value.message == direct.value.message
    assert queue.get(task_id).state.value == "failed" and replay_details(queue) == {}


def test_replay_edits_of_a_task_not_in_the_dlq_change_nothing(queue):
    (dead_id,) = dead(queue)
    pending = queue.submit("a:b")
    with pytest.raises(Conflict, match=f"task {pending} is pending"):
        queue.dlq.replay([dead_id, pending], priority=9, to_queue="x")
    assert [(t.id, t.priority, t.queue) for t in queue.dlq.list()] == [(dead_id, 0, "default")]
    assert (queue.get(pending).priority, queue.get(pending).queue) == (0, "default")


def test_a_new_payload_for_an_encrypted_task_needs_the_data_key(queue, db_location):
    from tests.stores import raw_sql
    from tqcli.errors import KeyProblem

    plain, secret = dead(queue, 2)
    raw_sql(db_location, "UPDATE tasks SET encrypted = 1 WHERE id = ?", (secret,))
    with pytest.raises(KeyProblem, match=f"a new payload for encrypted task {secret} needs the data key.*keys init"):
        queue.dlq.replay(every=True, payload={"x": 1})
    assert {task.state.value for task in (queue.get(plain), queue.get(secret))} == {"failed"}
    assert [task.id for task in queue.dlq.replay([secret], payload={"x": 1}, dry_run=True)] == [secret]
    queue.dlq.replay([secret], priority=4)  # other edits need no key
    assert (queue.get(secret).state.value, queue.get(secret).priority) == ("pending", 4)


def test_replay_fills_a_queue_exactly_to_its_max_length_and_no_further(queue):
    ids = dead(queue, 3, queue="small")
    queue.submit("a:b", queue="small")  # 1 unfinished
    queue.tenancy.set_queue("small", max_length=3)
    with pytest.raises(LimitReached, match=r"queue small: max-length 3 reached \(1 unfinished, 3 replayed\)"):
        queue.dlq.replay(every=True)
    assert [task.state.value for task in map(queue.get, ids)] == ["failed"] * 3 and replay_details(queue) == {}
    queue.dlq.replay(ids[:2])
    assert [task.state.value for task in map(queue.get, ids)] == ["pending", "pending", "failed"]


def test_replay_to_a_full_queue_is_refused(queue):
    (task_id,) = dead(queue)
    queue.submit("a:b", queue="full")
    queue.tenancy.set_queue("full", max_length=1)
    with pytest.raises(LimitReached, match=r"queue full: max-length 1 reached \(1 unfinished, 1 replayed\)"):
        queue.dlq.replay([task_id], to_queue="full", priority=5)
    task = queue.get(task_id)
    assert (task.state.value, task.queue, task.priority) == ("failed", "default", 0)
    queue.dlq.replay([task_id])  # its own queue has room


def test_replay_counts_against_the_tenants_max_pending(queue):
    ids = dead(queue, 2, tenant="acme")
    queue.tenancy.set_tenant("acme", max_pending=1)
    with pytest.raises(LimitReached, match=r"tenant acme: max-pending 1 reached \(0 pending or blocked, 2 replayed\)"):
        queue.dlq.replay(every=True, to_queue="other")
    assert len(queue.dlq.list()) == 2 and replay_details(queue) == {}
    queue.dlq.replay(ids[:1], to_queue="other")
    assert queue.get(ids[0]).state.value == "pending"
