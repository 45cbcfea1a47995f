"""Schedules: adding, firing exactly once, catch-up, pause and resume, via the library and the CLI."""

import time
from datetime import datetime, timezone

import pytest

from tests.stores import raw_sql

import tqcli
from tqcli.clock import ManualClock
from tqcli.errors import Conflict, InvalidInput, NotFound

T0 = int(datetime(2026, 1, 5, 9, 59, 30, tzinfo=timezone.utc).timestamp() * 1_000_000)


@pytest.fixture
def sq(db_location):
    clock = ManualClock(T0)
    with tqcli.open(db_location, clock=clock) as queue:
        yield queue, clock


def schedule_tasks(queue, name):
    return [t for t in queue.status(limit=10_000).tasks if t.name == name]


def test_add_lists_and_shows_the_next_fires(sq):
    queue, clock = sq
    schedule = queue.schedules.add("hourly-sync", cron="@hourly", options={"target": "tests.jobs:noop", "queue": "sync"})
    assert schedule.next_fire_at == T0 + 30_000_000
    (listed,) = [s.to_json() for s in queue.schedules.list()]
    assert listed["name"] == "hourly-sync" and listed["cron"] == "@hourly" and listed["tz"] == "UTC"
    assert listed["paused"] is False and listed["next"] == "2026-01-05T10:00:00Z" and listed["queue"] == "sync"
    assert queue.schedules.next("hourly-sync", 2) == [T0 + 30_000_000, T0 + 3_630_000_000]
    assert queue.audit.entries(action="schedule.add")[0].to_json()["details"]["schedule"] == "hourly-sync"


def test_a_due_fire_enqueues_one_task_named_after_the_schedule(sq):
    queue, clock = sq
    queue.schedules.add("report", cron="0 * * * *", options={"target": "tests.jobs:add", "payload": {"a": 1, "b": 2}, "priority": 7})
    assert queue.fire_schedules() == 0
    clock.advance(31)
    assert queue.fire_schedules() == 1
    assert queue.fire_schedules() == 0
    (task,) = schedule_tasks(queue, "report")
    assert (task.target, task.priority, task.payload_value) == ("tests.jobs:add", 7, {"a": 1, "b": 2})
    fire = queue.audit.entries(action="schedule.fire")[0].to_json()
    assert fire["task_id"] == task.id and fire["details"] == {"schedule": "report", "fire_at": "2026-01-05T10:00:00Z"}
    assert queue.schedules.get("report").last_fire_at == T0 + 30_000_000


def test_fire_records_are_kept_a_week_then_dropped(sq):
    queue, clock = sq
    queue.schedules.add("daily", cron="@daily", options={"target": "tests.jobs:noop"})
    for _ in range(10):
        clock.advance(86400)
        assert queue.fire_schedules() == 1
    [(kept,)] = raw_sql(queue.location, "SELECT count(*) FROM schedule_fires")
    assert kept == 7


def test_a_schedule_that_can_no_longer_fire_is_paused_with_a_reason(sq):
    queue, clock = sq
    queue.schedules.add("broken", cron="@hourly", options={"target": "tests.jobs:noop"})
    raw_sql(queue.location, "UPDATE schedules SET tz = 'Mars/Base'")  # as if tzdata lost the zone
    warnings = []
    clock.advance(3600)
    from tqcli.scheduler.schedules import fire_due

    assert fire_due(queue._ctx, warnings.append) == 0
    assert fire_due(queue._ctx, warnings.append) == 0
    assert len(warnings) == 1 and "paused it" in warnings[0]
    assert queue.schedules.get("broken").paused
    (entry,) = queue.audit.entries(action="schedule.pause")
    assert "cannot fire" in entry.to_json()["details"]["reason"]


def test_missed_fires_enqueue_only_the_latest_without_catchup(sq):
    queue, clock = sq
    queue.schedules.add("latest", cron="*/10 * * * *", options={"target": "tests.jobs:noop"})
    clock.advance(3 * 3600)
    assert queue.fire_schedules() == 1
    (task,) = schedule_tasks(queue, "latest")
    fire = queue.audit.entries(action="schedule.fire")[0].to_json()["details"]["fire_at"]
    assert fire == "2026-01-05T12:50:00Z"


def test_catchup_enqueues_every_missed_fire_up_to_100(sq):
    queue, clock = sq
    queue.schedules.add("all", cron="*/10 * * * *", catchup=True, options={"target": "tests.jobs:noop"})
    clock.advance(3 * 3600)
    assert queue.fire_schedules() == 18
    queue.schedules.add("many", cron="* * * * *", catchup=True, options={"target": "tests.jobs:noop"})
    clock.advance(5 * 3600)
    assert queue.fire_schedules() == 30 + 100
    fires = [e.to_json()["details"]["fire_at"] for e in queue.audit.entries(action="schedule.fire", limit=1000) if e.to_json()["details"]["schedule"] == "many"]
    assert len(fires) == 100 and fires[-1] == "2026-01-05T17:59:00Z"


def test_pause_stops_fires_and_resume_does_not_make_them_up(sq):
    queue, clock = sq
    queue.schedules.add("p", cron="*/10 * * * *", catchup=True, options={"target": "tests.jobs:noop"})
    queue.schedules.pause("p")
    assert queue.schedules.get("p").to_json()["next"] is None
    clock.advance(3600)
    assert queue.fire_schedules() == 0
    queue.schedules.resume("p")
    assert queue.fire_schedules() == 0
    clock.advance(600)
    assert queue.fire_schedules() == 1
    assert [e.action for e in queue.audit.entries()][-4:-1] == ["schedule.pause", "schedule.resume", "task.submit"]


def test_remove_and_errors(sq):
    queue, clock = sq
    queue.schedules.add("x", cron="@daily", options={"target": "tests.jobs:noop"})
    with pytest.raises(Conflict, match="already exists"):
        queue.schedules.add("x", cron="@daily", options={"target": "tests.jobs:noop"})
    queue.schedules.remove("x")
    for action in ("remove", "pause", "resume", "get"):
        with pytest.raises(NotFound):
            getattr(queue.schedules, action)("x")
    with pytest.raises(InvalidInput, match="never fires"):
        queue.schedules.add("y", cron="0 0 30 2 *", options={"target": "tests.jobs:noop"})
    with pytest.raises(InvalidInput, match="unknown time zone"):
        queue.schedules.add("y", cron="@daily", tz="Moon/Crater", options={"target": "tests.jobs:noop"})
    with pytest.raises(InvalidInput, match="cannot set depends_on"):
        queue.schedules.add("y", cron="@daily", options={"target": "tests.jobs:noop", "depends_on": [1]})
    with pytest.raises(InvalidInput, match="invalid schedule name"):
        queue.schedules.add("bad name", cron="@daily", options={"target": "tests.jobs:noop"})
    with pytest.raises(InvalidInput, match="unknown backend"):
        queue.schedules.add("y", cron="@daily", options={"target": "x", "backend": "nope"})
    assert queue.schedules.list() == []


def test_workers_started_together_enqueue_a_due_fire_once(cli):
    # Schedules added just after the minute mark two minutes ago, firing at the last two minute
    # marks only: both fires are due, and the next is an hour away, so none becomes due while the
    # workers run (whatever the second of the minute they start at).
    minute = int(time.time()) // 60 * 60
    cron = f"{(minute - 60) // 60 % 60},{minute // 60 % 60} * * * *"
    clock = ManualClock((minute - 119) * 1_000_000)
    with tqcli.open(cli.db, clock=clock) as queue:
        queue.schedules.add("once", cron=cron, options={"target": "tests.jobs:noop"})
        queue.schedules.add("every", cron=cron, catchup=True, options={"target": "tests.jobs:noop"})
    workers = [cli.spawn("worker", "--once") for _ in range(4)]
    for worker in workers:
        assert worker.wait(timeout=60) == 0
    tasks = cli.ok("status", "--json", "--limit", "100").json["tasks"]
    assert len([t for t in tasks if t["name"] == "once"]) == 1
    assert len([t for t in tasks if t["name"] == "every"]) == 2
    assert all(t["state"] == "completed" for t in tasks)
    assert len(cli.ok("audit", "log", "--action", "schedule.fire", "--json").json) == 3


def test_schedule_cli(cli):
    result = cli("schedule", "add", "nightly", "--cron", "30 2 * * *", "--tz", "Europe/Berlin", "tests.jobs:noop", "--queue", "etl")
    assert result.code == 0 and "next fire" in result.stderr
    listed = cli.ok("schedule", "list", "--json").json
    assert listed[0]["name"] == "nightly" and listed[0]["tz"] == "Europe/Berlin" and listed[0]["next"].endswith(":30:00Z")
    nexts = cli.ok("schedule", "next", "nightly", "--count", "3", "--json").json
    assert len(nexts) == 3 and all(t.endswith("Z") for t in nexts)
    assert "Europe/Berlin" in cli.ok("schedule", "next", "nightly").stdout
    cli.ok("schedule", "pause", "nightly")
    assert cli.ok("schedule", "list", "--json").json[0]["paused"] is True
    cli.ok("schedule", "resume", "nightly")
    for args, code, words in [
        (["schedule", "add", "bad", "--cron", "61 * * * *", "tests.jobs:noop"], 2, "out of range"),
        (["schedule", "add", "bad", "--cron", "0 0 30 2 *", "tests.jobs:noop"], 2, "never fires"),
        (["schedule", "add", "bad", "--cron", "@daily", "--tz", "Nowhere/Land", "tests.jobs:noop"], 2, "unknown time zone"),
        (["schedule", "add", "nightly", "--cron", "@daily", "tests.jobs:noop"], 6, "already exists"),
        (["schedule", "add", "bad", "tests.jobs:noop"], 2, "Missing option '--cron'"),
        (["schedule", "next", "nope"], 3, "does not exist"),
        (["schedule", "remove", "nope"], 3, "does not exist"),
        (["schedule", "next", "nightly", "--count", "0"], 2, "invalid count"),
    ]:
        result = cli(*args)
        assert result.code == code and words in result.stderr and len(result.error_lines) == 1, (args, result.stderr)
    cli.ok("schedule", "remove", "nightly")
    assert cli.ok("schedule", "list", "--json").json == []


def test_a_schedule_that_fails_to_fire_does_not_stop_the_worker_or_the_others(cli):
    from tests.conftest import sql_shell

    cli.ok("schedule", "add", "good", "--cron", "* * * * *", "tests.jobs:noop")
    cli.ok("schedule", "add", "bad", "--cron", "* * * * *", "tests.jobs:noop")
    sql_shell(cli.db, "UPDATE schedules SET next_fire_at = 1000000; UPDATE schedules SET spec = '{not json' WHERE name = 'bad';")
    run = cli("worker", "--once")
    assert run.code == 0, run.stderr
    assert run.stderr.count("schedule 'bad' failed to fire") == 1
    (task,) = cli.ok("status", "--json").json["tasks"]
    assert task["name"] == "good" and task["state"] == "completed"
    (entry,) = cli.ok("audit", "log", "--action", "schedule.error", "--json").json
    assert entry["details"]["schedule"] == "bad" and "JSON" in entry["details"]["error"]


def test_a_fire_that_read_the_schedule_before_an_edit_enqueues_nothing(sq):
    from tqcli.scheduler.schedules import Schedule, _fire

    queue, clock = sq
    queue.schedules.add("e", cron="@hourly", options={"target": "tests.jobs:noop"})
    clock.advance(31)
    stale = queue.schedules.get("e")
    queue.schedules.edit("e", options={"priority": 9})
    assert _fire(queue._ctx, stale, clock.now(), lambda text: None) == 0
    assert isinstance(stale, Schedule) and queue.fire_schedules() == 1
    (task,) = schedule_tasks(queue, "e")
    assert task.priority == 9
