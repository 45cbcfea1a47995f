"""`schedule run`, `schedule edit`, pause/resume that change nothing and `next` on a paused schedule, through the CLI.

The CLI reads the real clock: schedules are set up through the library on a
manual clock two hours back, so their fire times are due when the CLI runs.
"""

import json
import time
from datetime import datetime, timezone

import pytest

import tqcli
from tqcli.clock import ManualClock
from tests.conftest import table_dump


@pytest.fixture
def due(cli):
    """Add a schedule through the library as of two hours ago, so a fire time of it is due now."""

    def add(name, cron, **options):
        catchup = options.pop("catchup", False)
        clock = ManualClock(time.time_ns() // 1000 - 2 * 3600 * 1_000_000)
        with tqcli.open(cli.db, clock=clock) as queue:
            queue.schedules.add(name, cron=cron, catchup=catchup, options={"target": "tests.jobs:noop", **options})
        return cli.ok("schedule", "list", "--json").json[0]

    return add


def fires(cli, **match):
    entries = cli.ok("audit", "log", "--action", "schedule.fire", "--json").json
    return [e for e in entries if all(e["details"].get(k) == v for k, v in match.items())]


def test_schedule_run_enqueues_one_task_now_and_leaves_the_due_fire_times(cli, due):
    before = due("hourly", "@hourly", priority=4, target="tests.jobs:add", payload={"a": 1, "b": 2}, catchup=True)
    result = cli.ok("schedule", "run", "hourly")
    task_id = int(result.stdout)
    assert result.stdout == f"{task_id}\n"
    task = cli.task(task_id)
    assert (task["name"], task["state"], task["priority"], task["target"]) == ("hourly", "pending", 4, "tests.jobs:add")
    (entry,) = fires(cli)
    assert entry["task_id"] == task_id and entry["details"] == {"schedule": "hourly", "manual": True}
    after = cli.ok("schedule", "list", "--json").json[0]
    assert (after["next"], after["last_fire"]) == (before["next"], before["last_fire"])
    cli.ok("worker", "--once")  # the worker still fires every time that was due, the first one included
    cron_fires = [e["details"]["fire_at"] for e in fires(cli) if "manual" not in e["details"]]
    assert cron_fires[0] == before["next"] and len(cron_fires) in (2, 3)
    tasks = cli.ok("status", "--json").json["tasks"]
    assert len(tasks) == 1 + len(cron_fires) and all(t["name"] == "hourly" and t["state"] == "completed" for t in tasks)


def test_schedule_run_works_on_a_paused_schedule_and_prints_the_task_with_json(cli):
    cli.ok("schedule", "add", "nightly", "--cron", "30 2 * * *", "tests.jobs:noop", "--queue", "etl")
    cli.ok("schedule", "pause", "nightly")
    task = cli.ok("schedule", "run", "nightly", "--json").json
    assert task["name"] == "nightly" and task["queue"] == "etl" and task["state"] == "pending"
    assert task == cli.task(task["id"])  # the task object, as submit --json prints it
    assert fires(cli, manual=True)[0]["task_id"] == task["id"]
    assert cli.ok("schedule", "list", "--json").json[0]["paused"] is True


def test_schedule_run_of_an_unknown_schedule_is_exit_3(cli):
    cli.create_db()
    result = cli("schedule", "run", "nope")
    assert result.code == 3 and result.stdout == "" and len(result.error_lines) == 1 and "does not exist" in result.stderr


def test_schedule_edit_fires_from_the_edit_on_and_does_not_catch_up_the_old_times(cli, due):
    due("tens", "*/10 * * * *", catchup=True)
    result = cli("schedule", "edit", "tens", "--cron", "0 0 1 1 *", "--priority", "5")
    assert result.code == 0 and "schedule tens changed (cron, priority)" in result.stderr, result.stderr
    (entry,) = cli.ok("audit", "log", "--action", "schedule.edit", "--json").json
    assert entry["details"] == {"schedule": "tens", "cron": {"from": "*/10 * * * *", "to": "0 0 1 1 *"}, "priority": {"from": 0, "to": 5}}
    listed = cli.ok("schedule", "list", "--json").json[0]
    next_year = datetime.now(timezone.utc).year + 1
    assert listed["cron"] == "0 0 1 1 *" and listed["next"] == f"{next_year}-01-01T00:00:00Z" and listed["spec"]["priority"] == 5
    cli.ok("worker", "--once")
    assert cli.ok("status", "--json").json["tasks"] == [] and fires(cli) == []


def test_schedule_edit_of_submit_options_fires_the_due_time_with_them(cli, due):
    before = due("hourly", "@hourly")
    cli.ok("schedule", "edit", "hourly", "--target", "tests.jobs:add", "--payload", '{"a": 1, "b": 2}', "--priority", "9", "--timeout", "5m")
    assert cli.ok("schedule", "list", "--json").json[0]["next"] == before["next"]
    cli.ok("worker", "--once")
    (task,) = cli.ok("status", "--json").json["tasks"]
    assert (task["target"], task["priority"], task["timeout"], task["result"]) == ("tests.jobs:add", 9, 300.0, 3)
    (entry,) = cli.ok("audit", "log", "--action", "schedule.edit", "--json").json
    assert entry["details"]["payload"] == {"from": {}, "to": {"a": 1, "b": 2}} and entry["details"]["timeout"] == {"from": None, "to": 300.0}


def test_schedule_edit_that_changes_nothing_says_so_and_writes_nothing(cli):
    cli.ok("schedule", "add", "nightly", "--cron", "30 2 * * *", "--tz", "Europe/Berlin", "tests.jobs:noop", "--timeout", "5m")
    before = table_dump(cli.db)
    for args in (["--cron", "30 2 * * *"], ["--tz", "Europe/Berlin", "--timeout", "300"], ["--priority", "0", "--queue", "default"]):
        result = cli("schedule", "edit", "nightly", *args)
        assert result.code == 0 and "nothing changed" in result.stderr and result.stdout == "", (args, result.stderr)
        assert table_dump(cli.db) == before, args


@pytest.mark.parametrize(
    "args, code, words",
    [
        (["nightly", "--cron", "61 * * * *"], 2, "out of range"),
        (["nightly", "--cron", "0 0 30 2 *"], 2, "never fires"),
        (["nightly", "--tz", "Nowhere/Land"], 2, "unknown time zone"),
        (["nightly", "--target", "not a function"], 2, "invalid target"),
        (["nightly", "--backend", "nope"], 2, "unknown backend"),
        (["nightly", "--priority", "101"], 2, "invalid priority"),
        (["nightly"], 2, "nothing to change"),
        (["nope", "--priority", "1"], 3, "does not exist"),
    ],
)
def test_schedule_edit_refuses_bad_input_and_changes_nothing(cli, args, code, words):
    cli.ok("schedule", "add", "nightly", "--cron", "30 2 * * *", "tests.jobs:noop")
    before = table_dump(cli.db)
    result = cli("schedule", "edit", *args)
    assert result.code == code and words in result.stderr and len(result.error_lines) == 1, result.stderr
    assert table_dump(cli.db) == before


def test_pausing_a_paused_schedule_changes_nothing(cli):
    cli.ok("schedule", "add", "nightly", "--cron", "30 2 * * *", "tests.jobs:noop")
    cli.ok("schedule", "pause", "nightly")
    before = table_dump(cli.db)
    result = cli("schedule", "pause", "nightly")
    assert result.code == 0 and "nothing changed" in result.stderr and "already paused" in result.stderr
    assert table_dump(cli.db) == before


def test_resuming_a_running_schedule_changes_nothing_and_keeps_its_due_fire(cli, due):
    before_list = due("hourly", "@hourly", catchup=True)
    before = table_dump(cli.db)
    result = cli("schedule", "resume", "hourly")
    assert result.code == 0 and "nothing changed" in result.stderr and "already running" in result.stderr
    assert table_dump(cli.db) == before
    cli.ok("worker", "--once")
    assert fires(cli)[0]["details"]["fire_at"] == before_list["next"]  # not dropped by a resume


def test_next_on_a_paused_schedule_says_how_to_resume_it_and_still_lists_the_times(cli):
    cli.ok("schedule", "add", "nightly", "--cron", "30 2 * * *", "tests.jobs:noop")
    active = cli.ok("schedule", "next", "nightly", "--json")
    assert "paused" not in active.stderr
    cli.ok("schedule", "pause", "nightly")
    paused = cli.ok("schedule", "next", "nightly", "--json")
    assert paused.json == active.json and len(paused.json) == 5
    assert "schedule nightly is paused" in paused.stderr and "'tqcli schedule resume nightly'" in paused.stderr
    table = cli.ok("schedule", "next", "nightly", "--count", "2")
    assert "is paused" in table.stderr and table.stdout.count(":30:00") >= 2
    assert json.loads(cli.ok("schedule", "list", "--json").stdout)[0]["next"] is None


def test_a_schedule_carries_cwd_env_and_expiry_to_its_tasks(cli, tmp_path):
    cli.ok("schedule", "add", "nightly", "--cron", "0 2 * * *", "--backend", "shell", "pwd; echo $WHO",
           "--cwd", str(tmp_path), "--env", "WHO=cron", "--expires", "1h")
    task_id = int(cli.ok("schedule", "run", "nightly").stdout)
    task = cli.task(task_id)
    assert task["cwd"] == str(tmp_path) and task["env"] == {"WHO": "cron"} and task["expires_at"] is not None
    cli.ok("schedule", "edit", "nightly", "--env", "WHO=edited")
    assert cli.task(int(cli.ok("schedule", "run", "nightly").stdout))["env"] == {"WHO": "edited"}


def test_a_schedule_name_no_schedule_could_have_is_invalid_input(cli):
    cli.create_db()
    for command in ("run", "pause", "next", "remove"):
        result = cli("schedule", command, "bad name")
        assert result.code == 2 and "invalid schedule name" in result.error_lines[0], command
    assert cli("schedule", "run", "nosuch").code == 3
