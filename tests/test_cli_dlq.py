"""`tqcli dlq replay` with its edit options: fix and retry, within the queue and tenant limits."""

import pytest

import tqcli
from tests.stores import table_dump
from tests.test_dlq import dead
from tqcli.clock import ManualClock


def failed_tasks(cli, count=1, **options):
    """`count` tasks that failed their only attempt (made through the library, which is faster than a worker); their ids."""
    with tqcli.open(cli.db, clock=ManualClock()) as q:
        return dead(q, count, **options)


def replay_entries(cli):
    """The details of the dlq.replay audit entries, by task id."""
    return {entry["task_id"]: entry["details"] for entry in cli.ok("audit", "log", "--action", "dlq.replay", "--json").json}


def test_replay_options_change_the_task_and_the_entry_says_from_and_to(cli):
    (task_id,) = failed_tasks(cli, queue="etl", payload={"n": 1})
    result = cli.ok(
        "dlq", "replay", str(task_id), "--payload", '{"n": 2}', "--priority", "-100", "--max-retries", "4", "--to-queue", "etl-slow",
    )
    assert result.stdout == f"{task_id}\n" and "replayed 1 task(s)" in result.stderr
    task = cli.task(task_id)
    assert (task["state"], task["attempts"], task["queue"]) == ("pending", 0, "etl-slow")
    assert (task["payload"], task["priority"], task["max_retries"]) == ({"n": 2}, -100, 4)
    assert replay_entries(cli)[task_id] == {
        "attempts": 1, "previous_error": "it broke",
        "payload": {"from": {"n": 1}, "to": {"n": 2}}, "priority": {"from": 0, "to": -100},
        "max_retries": {"from": 0, "to": 4}, "queue": {"from": "etl", "to": "etl-slow"},
    }


def test_replay_all_to_queue_moves_every_task_replayed_and_queue_filters(cli):
    etl = failed_tasks(cli, 2, queue="etl")
    (web,) = failed_tasks(cli, queue="web")
    assert cli.ok("dlq", "replay", "--all", "--queue", "etl", "--to-queue", "x", "--dry-run").stdout.split() == [str(i) for i in etl[::-1]]
    result = cli.ok("dlq", "replay", "--all", "--queue", "etl", "--to-queue", "x", "--json")
    assert sorted((task["id"], task["queue"], task["state"]) for task in result.json) == [(i, "x", "pending") for i in etl]
    assert set(replay_entries(cli)) == set(etl)
    assert cli.task(web)["state"] == "failed"
    assert cli.ok("dlq", "replay", "--all", "--to-queue", "x").stdout == f"{web}\n"
    assert cli.task(web)["queue"] == "x"


def test_replay_exactly_up_to_a_max_length_works_and_one_more_is_exit_5(cli):
    ids = failed_tasks(cli, 3, queue="small")
    cli.submit("tests.jobs:noop", "--queue", "small")
    cli.ok("queue", "set", "small", "--max-length", "3")
    before = table_dump(cli.db)
    result = cli("dlq", "replay", *map(str, ids))
    assert result.code == 5 and result.stdout == ""
    assert result.error_lines == ["error: queue small: max-length 3 reached (1 unfinished, 3 replayed); nothing was enqueued: "
                                  "wait for workers to drain it, or raise the limit with 'tqcli queue set small --max-length N'"]
    assert table_dump(cli.db) == before, "nothing replayed, no dlq.replay entry"
    assert cli.ok("dlq", "replay", str(ids[0]), str(ids[1])).stdout.split() == [str(ids[0]), str(ids[1])]
    assert [cli.task(i)["state"] for i in ids] == ["pending", "pending", "failed"]


def test_replay_to_a_full_queue_or_past_a_tenants_max_pending_is_exit_5(cli):
    (task_id,) = failed_tasks(cli, tenant="acme")
    cli.submit("tests.jobs:noop", "--queue", "full")
    cli.ok("queue", "set", "full", "--max-length", "1")
    before = table_dump(cli.db)
    result = cli("dlq", "replay", str(task_id), "--to-queue", "full")
    assert result.code == 5 and len(result.error_lines) == 1 and "queue full: max-length 1 reached" in result.stderr
    assert table_dump(cli.db) == before
    cli.submit("tests.jobs:noop", "--tenant", "acme")
    cli.ok("tenant", "set", "acme", "--max-pending", "1")
    before = table_dump(cli.db)
    result = cli("dlq", "replay", "--all", "--to-queue", "roomy")
    assert result.code == 5 and result.error_lines[0].startswith("error: tenant acme: max-pending 1 reached (1 pending or blocked, 1 replayed)")
    assert table_dump(cli.db) == before


@pytest.mark.parametrize("options, message", [
    (["--priority", "101"], "invalid priority 101: use a whole number from -100 to 100"),
    (["--priority", "high"], "'high' is not a valid int"),
    (["--max-retries", "-1"], "invalid max retries -1"),
    (["--to-queue", "a/b"], "invalid queue name 'a/b'"),
    (["--payload", "[1]"], "invalid --payload: it must be a JSON object, not an array"),
    (["--payload", "{bad"], "invalid JSON in --payload"),
])
def test_replay_refuses_invalid_values_with_exit_2(cli, options, message):
    (task_id,) = failed_tasks(cli)
    before = table_dump(cli.db)
    for dry_run in ([], ["--dry-run"]):
        result = cli("dlq", "replay", str(task_id), *options, *dry_run)
        assert result.code == 2 and len(result.error_lines) == 1 and message in result.error_lines[0], result.stderr
    assert table_dump(cli.db) == before


def test_replay_of_a_task_not_failed_is_exit_6(cli):
    (dead_id,) = failed_tasks(cli)
    pending = cli.submit("tests.jobs:noop")
    result = cli("dlq", "replay", str(dead_id), str(pending), "--priority", "5")
    assert result.code == 6 and result.error_lines == [
        f"error: task {pending} is pending, not in the dead-letter queue (failed); nothing was changed"
    ]
    assert (cli.task(dead_id)["state"], cli.task(dead_id)["priority"]) == ("failed", 0)
