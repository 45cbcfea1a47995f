"""`queue list|set` and `tenant list|set` as a user meets them: output, JSON, exit codes, one-line errors."""

import pytest


def test_queue_set_then_list_shows_counts_beside_limits(cli):
    cli.ok("queue", "set", "etl", "--max-length", "10000", "--max-running", "4")
    for _ in range(3):
        cli.submit("tests.jobs:noop", "--queue", "etl")
    listed = cli.ok("queue", "list")
    assert "etl" in listed.stdout and "3/10,000" in listed.stdout and "0/4" in listed.stdout
    (etl,) = cli.ok("queue", "list", "--json").json
    assert etl == {"name": "etl", "max_length": 10000, "max_running": 4, "paused": False, "encrypt": False, "unfinished": 3, "running": 0}


def test_a_full_queue_is_exit_5_with_one_line_saying_what_to_do(cli):
    cli.ok("queue", "set", "small", "--max-length", "1")
    cli.submit("tests.jobs:noop", "--queue", "small")
    result = cli("submit", "tests.jobs:noop", "--queue", "small")
    assert result.code == 5 and result.stdout == ""
    assert result.error_lines == [result.stderr.strip()]
    assert result.stderr.startswith("error: queue small: max-length 1 reached (1 unfinished, 1 submitted)")
    assert "tqcli queue set small --max-length N" in result.stderr


def test_setting_what_is_already_set_says_nothing_changed_and_appends_no_entry(cli):
    cli.ok("queue", "set", "etl", "--pause")
    again = cli.ok("queue", "set", "etl", "--pause")
    assert again.stderr.startswith("nothing changed")
    cli.ok("tenant", "set", "acme", "--weight", "2")
    assert cli.ok("tenant", "set", "acme", "--weight", "2").stderr.startswith("nothing changed")
    entries = cli.ok("audit", "log", "--json").json
    assert [entry["action"] for entry in entries] == ["queue.set", "tenant.set"]
    assert entries[0]["details"] == {"queue": "etl", "paused": {"from": False, "to": True}}


def test_a_paused_queue_shows_in_status_and_in_why_a_task_waits(cli):
    task_id = cli.submit("tests.jobs:noop", "--queue", "etl")
    cli.ok("queue", "set", "etl", "--pause")
    assert "queue etl: paused" in cli.ok("status").stdout
    task = cli.task(task_id)
    assert task["waiting"] == "queue paused"
    assert task["waiting_detail"] == {"queue": "etl", "resume": "tqcli queue set etl --resume"}
    assert "queue paused" in cli.ok("status", str(task_id)).stdout
    run = cli("run", "--id", str(task_id))
    assert run.code == 6 and "queue etl is paused" in run.stderr


def test_tenant_set_and_list(cli):
    cli.ok("tenant", "set", "acme", "--max-pending", "5000", "--rate", "100/m", "--weight", "2")
    cli.submit("tests.jobs:noop", "--tenant", "acme")
    (acme,) = [t for t in cli.ok("tenant", "list", "--json").json if t["name"] == "acme"]
    assert {key: acme[key] for key in ("max_pending", "max_running", "rate", "weight", "pending")} == {
        "max_pending": 5000, "max_running": 0, "rate": "100/m", "weight": 2.0, "pending": 1
    }
    assert "1/5,000" in cli.ok("tenant", "list").stdout
    cli.ok("tenant", "set", "acme", "--rate", "none")
    (acme,) = [t for t in cli.ok("tenant", "list", "--json").json if t["name"] == "acme"]
    assert acme["rate"] is None and acme["tokens"] is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["tenant", "set", "acme", "--weight", "0"], "invalid weight 0"),
        (["tenant", "set", "acme", "--weight", "nan"], "invalid weight"),
        (["tenant", "set", "acme", "--rate", "100/d"], "invalid rate '100/d'"),
        (["tenant", "set", "acme", "--rate", "fast"], "invalid rate"),
        (["tenant", "set", "acme", "--max-pending", "-1"], "invalid max-pending -1"),
        (["tenant", "set", "acme"], "nothing to set"),
        (["tenant", "set", "bad name", "--weight", "2"], "invalid tenant name"),
        (["queue", "set", "etl", "--max-length", "-5"], "invalid max-length -5"),
        (["queue", "set", "etl", "--max-running", "many"], "'many' is not a valid int"),
        (["queue", "set", "etl", "--pause", "--resume"], "give --pause or --resume, not both"),
        (["queue", "set", "etl"], "nothing to set"),
        (["queue", "set", "ét", "--pause"], "invalid queue name"),
        (["queue", "set", "etl", "--max-lenght", "3"], "--max-length"),
        (["queue", "lst"], "list"),
    ],
)
def test_bad_input_is_exit_2_in_one_line_and_changes_nothing(cli, args, message):
    cli.create_db()
    result = cli(*args)
    assert result.code == 2, result.stderr
    assert len(result.error_lines) == 1 and message in result.error_lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert cli.ok("audit", "log", "--json").json == []


def test_listing_reads_only_and_needs_a_database(cli, tmp_path):
    missing = {"TQCLI_DB": str(tmp_path / "nothing.db")}
    for args in (["queue", "list"], ["tenant", "list"]):
        result = cli(*args, env=missing)
        assert result.code == 3 and "no database" in result.stderr
    assert not (tmp_path / "nothing.db").exists()


def test_an_empty_database_lists_nothing_and_says_how_to_start(cli):
    cli.create_db()
    assert cli.ok("queue", "list", "--json").json == []
    assert "queue set" in cli.ok("queue", "list").stderr
    assert cli.ok("tenant", "list", "--json").json == []


def test_status_json_carries_the_limits(cli):
    cli.ok("queue", "set", "etl", "--max-length", "10")
    cli.submit("tests.jobs:noop", "--queue", "etl")
    summary = cli.ok("status", "--json").json
    assert summary["queue_limits"] == [
        {"name": "etl", "max_length": 10, "max_running": 0, "paused": False, "encrypt": False, "unfinished": 1, "running": 0}
    ]
    assert summary["tenant_limits"] == []
