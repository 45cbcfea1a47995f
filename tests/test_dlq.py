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
