"""`breaker reset` and `breaker set` through the CLI: what changes nothing says so, and a key no task uses is named."""

import sqlite3

import pytest

from tests.conftest import table_dump

UNUSED = "note: no task uses service {} yet; tasks use BACKEND:TARGET unless --service is given"


def breaker_entries(cli):
    return [e for e in cli.ok("audit", "log", "--json").json if e["action"].startswith("breaker.")]


def test_reset_of_a_closed_circuit_with_no_failures_changes_nothing(cli):
    cli.submit("tests.jobs:noop", "--service", "billing")
    cli.ok("breaker", "set", "billing", "--failure-threshold", "3")
    before = table_dump(cli.db)
    result = cli("breaker", "reset", "billing")
    assert result.code == 0 and "nothing changed" in result.stderr and result.error_lines == []
    assert table_dump(cli.db) == before


def test_reset_clears_counted_failures_and_is_audited(cli):
    cli.submit("tests.jobs:boom", "--service", "billing", "--max-retries", "0")
    cli.ok("worker", "--once")
    (breaker,) = cli.ok("breaker", "list", "--json").json
    assert (breaker["state"], breaker["failures"]) == ("closed", 1)
    result = cli.ok("breaker", "reset", "billing")
    assert "circuit billing closed" in result.stderr and "nothing changed" not in result.stderr
    assert cli.ok("breaker", "list", "--json").json[0]["failures"] == 0
    assert [e["action"] for e in breaker_entries(cli)] == ["breaker.reset"]
    assert cli("breaker", "reset", "billing").stderr.startswith("nothing changed")


def test_set_with_the_values_a_circuit_already_has_changes_nothing(cli):
    cli.submit("tests.jobs:noop", "--service", "billing")
    cli.ok("breaker", "set", "billing", "--failure-threshold", "3", "--recovery-timeout", "1m")
    before = table_dump(cli.db)
    for args in (["--failure-threshold", "3"], ["--recovery-timeout", "60"], ["--failure-threshold", "3", "--recovery-timeout", "1m"]):
        result = cli("breaker", "set", "billing", *args)
        assert result.code == 0 and "nothing changed" in result.stderr, (args, result.stderr)
        assert table_dump(cli.db) == before, args
    changed = cli.ok("breaker", "set", "billing", "--recovery-timeout", "2m")
    assert "updated" in changed.stderr and len(breaker_entries(cli)) == 2


def test_set_of_the_defaults_they_already_have_changes_nothing(cli):
    cli.create_db()
    before = table_dump(cli.db)
    result = cli("breaker", "set", "--default", "--failure-threshold", "5", "--recovery-timeout", "30s")
    assert result.code == 0 and "nothing changed" in result.stderr and table_dump(cli.db) == before
    cli.ok("breaker", "set", "--default", "--failure-threshold", "4")
    before = table_dump(cli.db)
    assert "nothing changed" in cli.ok("breaker", "set", "--default", "--failure-threshold", "4").stderr
    assert table_dump(cli.db) == before


def test_giving_a_service_the_value_it_inherits_pins_it(cli):
    # Its own value no longer follows the defaults: that is a change, and audited.
    cli.submit("tests.jobs:noop", "--service", "billing")
    result = cli.ok("breaker", "set", "billing", "--failure-threshold", "5")
    assert "updated" in result.stderr
    cli.ok("breaker", "set", "--default", "--failure-threshold", "2")
    assert cli.ok("breaker", "list", "--json").json[0]["failure_threshold"] == 5


def test_set_on_a_key_no_task_uses_says_so_and_still_sets_it(cli):
    cli.submit("tests.jobs:noop")  # its service is simple:tests.jobs:noop
    result = cli("breaker", "set", "tests.jobs:noop", "--failure-threshold", "2")
    assert result.code == 0 and UNUSED.format("tests.jobs:noop") in result.stderr and result.error_lines == []
    assert [(b["key"], b["failure_threshold"]) for b in cli.ok("breaker", "list", "--json").json] == [("tests.jobs:noop", 2)]
    (entry,) = breaker_entries(cli)
    assert entry["action"] == "breaker.set" and entry["details"]["key"] == "tests.jobs:noop"


def test_set_on_a_key_a_task_or_a_schedule_uses_gives_no_note(cli):
    first = cli.submit("tests.jobs:noop")
    cli.ok("worker", "--once")  # finished tasks count too
    assert cli.task(first)["state"] == "completed"
    cli.ok("schedule", "add", "nightly", "--cron", "@daily", "tests.jobs:add", "--service", "reports")
    for key in ("simple:tests.jobs:noop", "reports"):
        result = cli.ok("breaker", "set", key, "--failure-threshold", "2")
        assert "note:" not in result.stderr, (key, result.stderr)
    assert "note:" not in cli.ok("breaker", "set", "--default", "--failure-threshold", "3").stderr


@pytest.mark.sqlite_only  # reads SQLite's query plans
def test_the_service_lookup_never_scans_the_tasks_table(cli):
    from tqcli.store.breaker_sql import SERVICE_RECENT_SQL, SERVICE_UNFINISHED_SQL

    cli.create_db()
    conn = sqlite3.connect(cli.db)
    try:
        for sql, params in ((SERVICE_UNFINISHED_SQL, ("k",)), (SERVICE_RECENT_SQL, (100_000, "k"))):
            plan = " | ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params))
            assert "SCAN" not in plan and "SEARCH tasks USING" in plan, plan
            assert sql != SERVICE_UNFINISHED_SQL or "INDEX tasks_claim (state=?)" in plan, plan
    finally:
        conn.close()


def test_reset_of_a_key_with_no_circuit_is_still_not_found(cli):
    cli.create_db()
    result = cli("breaker", "reset", "nope")
    assert result.code == 3 and len(result.error_lines) == 1
