"""`cancel --all`: every unfinished task that matches, in bounded batches, each one audited; library and CLI, both stores."""

import signal

import pytest

import tqcli
from tests.reliability.helpers import wait_until
from tests.stores import table_dump
from tests.test_dispatcher import claim
from tests.test_rbac import ME, grant
from tqcli.core import queue as queue_module
from tqcli.errors import InvalidInput, PermissionDenied


def states(q, ids):
    return [q.get(task_id).state.value for task_id in ids]


def cancel_entries(q):
    """The details of every task.cancel entry, by task id."""
    return {entry.task_id: entry.to_json()["details"] for entry in q.audit.entries(action="task.cancel", limit=0)}


# -- the library ---------------------------------------------------------------


def test_cancel_all_cancels_every_unfinished_match_and_stops_running_ones(queue):
    running = queue.submit("a:b")
    claim(queue)
    pending = queue.submit("a:b")
    gone = queue.submit("a:b", queue="other")
    blocked = queue.submit("a:b", depends_on=[gone])
    queue.cancel(gone)
    done = queue.submit("a:b", queue="other")
    assert queue.tasks.cancel_all(confirmed=True, queue="default") == [running, pending, blocked]
    assert states(queue, [pending, blocked, done]) == ["cancelled", "cancelled", "pending"]
    task = queue.get(running)
    assert task.state.value == "running" and task.cancel_requested, "its worker stops it"
    details = cancel_entries(queue)
    assert sorted(details) == [running, pending, gone, blocked], "one task.cancel entry per task"
    assert details[running] == {"reason": None, "previous": "running", "requested": True}
    assert details[blocked]["previous"] == "blocked"
    assert queue.audit.verify().intact


def test_cancel_all_filters_by_state_queue_and_tenant(queue):
    a = queue.submit("a:b", queue="etl", tenant="acme")
    b = queue.submit("a:b", queue="etl", tenant="beta")
    c = queue.submit("a:b", queue="web", tenant="acme")
    d = queue.submit("a:b", queue="etl", tenant="acme", depends_on=[c])
    queue.tasks.cancel([c])  # d becomes blocked
    assert queue.tasks.cancel_all(confirmed=True, queue="etl", tenant="acme", states=["pending"]) == [a]
    assert states(queue, [a, b, d]) == ["cancelled", "pending", "blocked"]
    assert queue.tasks.cancel_all(confirmed=True, states=["blocked"], reason="cleanup") == [d]
    assert queue.get(d).error == f"cancelled by {queue._ctx.actor}: cleanup"


def test_cancel_all_dry_run_lists_the_matches_and_changes_nothing(queue):
    ids = [queue.submit("a:b") for _ in range(3)]
    assert queue.tasks.cancel_all(dry_run=True) == ids
    assert states(queue, ids) == ["pending"] * 3 and cancel_entries(queue) == {}


def test_cancel_all_without_confirmation_or_with_a_finished_state_is_invalid(queue):
    task_id = queue.submit("a:b")
    with pytest.raises(InvalidInput, match="add --yes to confirm"):
        queue.tasks.cancel_all()
    with pytest.raises(InvalidInput, match="invalid state 'completed' for cancel --all: use pending, blocked or running"):
        queue.tasks.cancel_all(confirmed=True, states=["completed"])
    assert states(queue, [task_id]) == ["pending"]


def test_cancel_all_works_in_batches_each_committed_with_its_entries(queue, monkeypatch):
    monkeypatch.setattr(queue_module, "CANCEL_BATCH", 2)
    ids = queue.submit_many([tqcli.TaskSpec("a:b") for _ in range(5)])
    seen = []
    assert queue.tasks.cancel_all(confirmed=True, on_batch=lambda batch, matched: seen.append((batch, matched))) == ids
    assert seen == [(ids[0:2], 5), (ids[2:4], 5), (ids[4:], 5)]
    assert sorted(cancel_entries(queue)) == ids


def test_cancel_all_skips_a_task_that_changed_state_since_it_was_matched(queue, monkeypatch):
    monkeypatch.setattr(queue_module, "CANCEL_BATCH", 1)
    first, second = queue.submit("a:b"), queue.submit("a:b")

    def claim_the_second(batch, matched):
        if batch == [first]:
            claim(queue)  # a worker takes it before its batch

    assert queue.tasks.cancel_all(confirmed=True, states=["pending"], on_batch=claim_the_second) == [first]
    assert states(queue, [second]) == ["running"] and not queue.get(second).cancel_requested


def test_cancel_all_also_cancels_a_matched_task_an_earlier_batch_blocked(queue, monkeypatch):
    monkeypatch.setattr(queue_module, "CANCEL_BATCH", 1)
    parent = queue.submit("a:b")
    child = queue.submit("a:b", depends_on=[parent])
    assert queue.tasks.cancel_all(confirmed=True, states=["pending"]) == [parent, child]
    assert states(queue, [parent, child]) == ["cancelled", "cancelled"]


def test_cancel_all_by_a_tenant_scoped_operator_reaches_its_tenant_only(db_location):
    with tqcli.open(db_location) as admin:
        grant(admin, ME, "admin")
        grant(admin, "acme-op", "operator", "acme")
        grant(admin, "vic", "viewer")
        ours = admin.submit("a:b", tenant="acme")
        theirs = admin.submit("a:b", tenant="beta")
    with tqcli.open(db_location, actor="acme-op") as operator:
        assert operator.tasks.cancel_all(dry_run=True) == [ours]
        assert operator.tasks.cancel_all(confirmed=True) == [ours]
        with pytest.raises(PermissionDenied):
            operator.tasks.cancel_all(confirmed=True, tenant="beta")
    with tqcli.open(db_location, actor="vic") as viewer:
        with pytest.raises(PermissionDenied, match="operator"):
            viewer.tasks.cancel_all(confirmed=True)
    with tqcli.open(db_location) as admin:
        assert states(admin, [ours, theirs]) == ["cancelled", "pending"]


# -- the command -----------------------------------------------------------------


def test_cli_cancel_all_prints_the_ids_and_dry_run_changes_nothing(cli):
    etl = [cli.submit("tests.jobs:noop", "--queue", "etl") for _ in range(3)]
    web = cli.submit("tests.jobs:noop", "--queue", "web")
    before = table_dump(cli.db)
    dry = cli.ok("cancel", "--all", "--queue", "etl", "--dry-run")
    assert dry.stdout == "".join(f"{i}\n" for i in etl) and "would cancel 3 task(s)" in dry.stderr
    assert table_dump(cli.db) == before
    done = cli.ok("cancel", "--all", "--queue", "etl", "--yes", "--reason", "bad deploy")
    assert done.stdout == dry.stdout
    assert [cli.task(i)["state"] for i in etl] == ["cancelled"] * 3 and cli.task(web)["state"] == "pending"
    entries = cli.ok("audit", "log", "--action", "task.cancel", "--json").json
    assert [(e["task_id"], e["details"]["reason"]) for e in entries] == [(i, "bad deploy") for i in etl]


def test_cli_cancel_all_with_nothing_matching_prints_nothing_and_exits_0(cli):
    cli.submit("tests.jobs:noop", "--queue", "web")
    for extra in (["--yes"], ["--dry-run"]):
        result = cli("cancel", "--all", "--queue", "etl", "--state", "running", *extra)
        assert (result.code, result.stdout, result.stderr) == (0, "", "")


@pytest.mark.parametrize("args, message", [
    (["--all"], "add --yes to confirm"),
    (["--all", "--state", "failed", "--yes"], "invalid state 'failed' for cancel --all"),
    (["1", "--all", "--yes"], "give the task IDs to cancel or --all, not both"),
    (["1", "--queue", "etl"], "go with --all"),
    (["--all", "--cascade", "--yes"], "--cascade works with task IDs"),
    ([], "nothing to cancel"),
])
def test_cli_cancel_all_usage_errors_are_exit_2_and_change_nothing(cli, args, message):
    task_id = cli.submit("tests.jobs:noop")
    result = cli("cancel", *args)
    assert result.code == 2 and len(result.error_lines) == 1 and message in result.error_lines[0], result.stderr
    assert cli.task(task_id)["state"] == "pending"


def test_cli_cancel_all_stops_a_running_task(cli, tmp_path):
    marker = tmp_path / "pid"
    running = cli.submit("tests.jobs:sleepy", "--payload", f'{{"seconds": 60, "marker": "{marker}"}}')
    worker = cli.spawn("worker", "--poll", "0.2")
    try:
        assert wait_until(marker.exists)
        waiting = cli.submit("tests.jobs:noop", "--delay", "1h")
        result = cli.ok("cancel", "--all", "--yes")
        assert result.stdout == f"{running}\n{waiting}\n"
        assert wait_until(lambda: cli.task(running)["state"] == "cancelled", timeout=10)
        assert cli.task(waiting)["state"] == "cancelled"
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=20)
    assert cli.task(running)["history"][0]["outcome"] == "cancelled"


def test_cli_cancel_all_denies_a_viewer_and_limits_a_tenant_operator(cli):
    cli.ok("role", "grant", ME, "admin")
    cli.ok("role", "grant", "olga", "operator", "--tenant", "acme")
    cli.ok("role", "grant", "vic", "viewer")
    ours = cli.submit("tests.jobs:noop", "--tenant", "acme")
    theirs = cli.submit("tests.jobs:noop", "--tenant", "beta")
    as_viewer = cli("cancel", "--all", "--yes", env={"TQCLI_USER": "vic"})
    assert as_viewer.code == 4 and "vic" in as_viewer.error_lines[0] and as_viewer.stdout == ""
    as_operator = cli.ok("cancel", "--all", "--yes", env={"TQCLI_USER": "olga"})
    assert as_operator.stdout == f"{ours}\n"
    assert (cli.task(ours)["state"], cli.task(theirs)["state"]) == ("cancelled", "pending")
    denied = cli.ok("audit", "log", "--action", "access.denied", "--json").json
    assert [entry["actor"] for entry in denied] == ["vic"]
