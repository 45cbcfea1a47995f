"""Queue and tenant limits, rate buckets and fair claims, through the library, with time moved by the clock.

Real processes racing each other are in tests/reliability/test_limits_race.py.
"""

import json

import pytest

from tqcli.core import dispatcher
from tqcli.core.dags import parse_dag
from tqcli.core.dispatcher import Outcome
from tqcli.core.spec import TaskSpec
from tqcli.errors import InvalidInput, LimitReached
from tqcli.tenancy import fairness
from tqcli.tenancy.limits import parse_rate


def claim(queue, count=1, worker="w1", holding=(), **filters):
    with queue._ctx.change() as (tx, journal):
        return dispatcher.claim(tx, journal, count=count, now=queue.clock.now(), worker=worker, lease_seconds=60, holder=None,
                                holding=holding, **filters)


def finish(queue, claimed, outcome=None):
    with queue._ctx.change() as (tx, journal):
        return dispatcher.finish(tx, journal, claimed, outcome or Outcome("completed", result="null"), now=queue.clock.now(), worker="w1")


def actions(queue, action):
    """The audit entries of one action, their details decoded."""
    return [(entry.tenant, json.loads(entry.details)) for entry in queue.audit.entries(limit=0) if entry.action == action]


def pending_count(queue):
    return queue.status().counts["pending"]


# -- admission ---------------------------------------------------------------------


def test_a_queue_takes_tasks_up_to_its_max_length_and_refuses_the_next_with_nothing_enqueued(queue):
    queue.tenancy.set_queue("small", max_length=3)
    queue.submit("a:b", queue="small")
    queue.submit("a:b", queue="small")
    with pytest.raises(LimitReached, match=r"^queue small: max-length 3 reached \(2 unfinished, 2 submitted\)"):
        queue.submit_many([TaskSpec("a:b", queue="small"), TaskSpec("a:b", queue="small")])
    assert pending_count(queue) == 2
    queue.submit("a:b", queue="small")  # exactly at the boundary
    with pytest.raises(LimitReached, match=r"\(3 unfinished, 1 submitted\)"):
        queue.submit("a:b", queue="small")
    assert pending_count(queue) == 3
    assert queue.submit("a:b", queue="other")  # other queues are not limited by it


def test_running_and_blocked_tasks_count_toward_max_length_and_finished_ones_do_not(queue):
    queue.tenancy.set_queue("q", max_length=2)
    first = queue.submit("a:b", queue="q")
    (claimed,) = claim(queue)
    queue.submit("a:b", queue="q", depends_on=[first])  # waits for the running one
    with pytest.raises(LimitReached, match=r"\(2 unfinished, 1 submitted\)"):
        queue.submit("a:b", queue="q")
    finish(queue, claimed)
    assert queue.submit("a:b", queue="q")


def test_a_tenant_takes_pending_tasks_up_to_its_max_pending_across_queues(queue):
    queue.tenancy.set_tenant("acme", max_pending=2)
    queue.submit("a:b", tenant="acme", queue="one")
    queue.submit("a:b", tenant="acme", queue="two")
    with pytest.raises(LimitReached, match=r"^tenant acme: max-pending 2 reached \(2 pending or blocked, 1 submitted\)"):
        queue.submit("a:b", tenant="acme", queue="three")
    assert queue.submit("a:b", tenant="other")
    claim(queue, 10)  # running tasks no longer count as pending
    assert queue.submit("a:b", tenant="acme")


def test_a_dag_is_refused_as_a_whole(queue):
    queue.tenancy.set_queue("q", max_length=2)
    plan = parse_dag({"tasks": {name: {"target": "a:b", "queue": "q"} for name in ("x", "y", "z")}}, "three.toml")
    with pytest.raises(LimitReached, match=r"\(0 unfinished, 3 submitted\)"):
        queue.dags.submit(plan)
    assert pending_count(queue) == 0 and queue.dags.list() == []


def test_restart_and_schedule_run_are_admitted_like_a_submit(queue):
    done = queue.submit("a:b", queue="q")
    finish(queue, claim(queue)[0])
    queue.tenancy.set_queue("q", max_length=1)
    queue.submit("a:b", queue="q")
    with pytest.raises(LimitReached):
        queue.restart(done)
    queue.schedules.add("nightly", cron="@daily", options={"target": "a:b", "queue": "q"})
    with pytest.raises(LimitReached):
        queue.schedules.run("nightly")
    assert pending_count(queue) == 1


def test_lowering_a_limit_below_the_count_refuses_only_new_work(queue):
    for _ in range(3):
        queue.submit("a:b", queue="q")
    info, changed = queue.tenancy.set_queue("q", max_length=1)
    assert changed and info.unfinished == 3
    with pytest.raises(LimitReached, match=r"max-length 1 reached \(3 unfinished, 1 submitted\)"):
        queue.submit("a:b", queue="q")
    assert len(claim(queue, 10)) == 3  # what is queued still runs


def test_a_schedule_fire_past_a_limit_is_skipped_once_and_audited(queue, clock):
    queue.tenancy.set_queue("q", max_length=1)
    queue.submit("a:b", queue="q")
    queue.schedules.add("hourly", cron="@hourly", options={"target": "a:b", "queue": "q"})
    clock.advance(3600)
    assert queue.fire_schedules() == 0
    ((_, skip),) = actions(queue, "schedule.skip")
    assert skip["schedule"] == "hourly" and "max-length 1 reached" in skip["reason"]
    assert queue.fire_schedules() == 0 and len(actions(queue, "schedule.skip")) == 1  # that fire counted: not tried again
    queue.tenancy.set_queue("q", max_length=0)
    clock.advance(3600)
    assert queue.fire_schedules() == 1  # the next fire goes through


# -- claims ------------------------------------------------------------------------


def test_a_paused_queue_is_not_claimed_from_until_resumed(queue):
    paused = queue.submit("a:b", queue="etl", priority=10)
    other = queue.submit("a:b")
    queue.tenancy.set_queue("etl", paused=True)
    assert queue.get(paused).waiting == "queue paused"
    assert [c.id for c in claim(queue, 10)] == [other]
    _, changed = queue.tenancy.set_queue("etl", paused=True)
    assert not changed  # rule 1: already paused
    queue.tenancy.set_queue("etl", paused=False)
    assert [c.id for c in claim(queue, 10)] == [paused]


def test_max_running_counts_every_worker_and_a_slot_holds_one_at_a_time(queue):
    queue.tenancy.set_queue("etl", max_running=2)
    for _ in range(5):
        queue.submit("a:b", queue="etl")
    free = queue.submit("a:b")
    first = claim(queue, 10, worker="w1")
    assert sorted(c.queue for c in first) == ["default", "etl"]  # one of the limited queue per slot
    second = claim(queue, 10, worker="w2")
    assert [c.queue for c in second] == ["etl"]
    assert claim(queue, 10, worker="w3") == []  # two run: the limit
    waiting = next(t for t in queue.status(state="pending").tasks)
    assert queue.get(waiting.id).waiting == "queue limit"
    assert queue.get(waiting.id).waiting_detail == {"queue": "etl", "max_running": 2, "running": 2}
    finish(queue, next(c for c in first if c.queue == "etl"))
    assert len(claim(queue, 10, worker="w3")) == 1
    assert free in {c.id for c in first}


def test_a_slot_already_holding_a_limited_tenants_task_gets_no_second_one(queue):
    queue.tenancy.set_tenant("acme", max_running=3)
    for _ in range(3):
        queue.submit("a:b", tenant="acme")
    (held,) = claim(queue, 10)
    assert claim(queue, 10, holding=[held]) == []
    assert len(claim(queue, 10)) == 1  # another slot may
    assert queue.get(queue.status(state="pending").tasks[0].id).waiting == "ready: waiting for a worker"


def test_tenant_quota_names_the_tenant_holding_a_task_back(queue):
    queue.tenancy.set_tenant("acme", max_running=1)
    queue.submit("a:b", tenant="acme")
    waiting = queue.submit("a:b", tenant="acme")
    claim(queue)
    task = queue.get(waiting)
    assert task.waiting == "tenant quota" and task.waiting_detail == {"tenant": "acme", "max_running": 1, "running": 1}


def test_a_rate_lets_through_the_bucket_then_the_refill_and_no_more(queue, clock):
    queue.tenancy.set_tenant("acme", rate="3/m")
    for _ in range(10):
        queue.submit("a:b", tenant="acme")
    assert len(claim(queue, 10)) == 3  # the full bucket
    assert claim(queue, 10) == []
    task = queue.get(queue.status(state="pending").tasks[0].id)
    assert task.waiting == "tenant rate" and task.waiting_detail["rate"] == "3/m"
    clock.advance(19)  # not yet a whole token (one per 20 s)
    assert claim(queue, 10) == []
    clock.advance(1)
    assert len(claim(queue, 10)) == 1
    clock.advance(3600)  # the bucket fills to its capacity, no further
    assert len(claim(queue, 10)) == 3
    assert claim(queue, 10) == []


def test_removing_a_rate_lets_everything_through(queue):
    queue.tenancy.set_tenant("acme", rate="1/h")
    for _ in range(4):
        queue.submit("a:b", tenant="acme")
    assert len(claim(queue, 10)) == 1
    queue.tenancy.set_tenant("acme", rate=None)
    assert len(claim(queue, 10)) == 3


def test_a_backlog_of_one_tenant_does_not_hold_back_another(queue):
    for _ in range(200):
        queue.submit("a:b", tenant="a")
    late = [queue.submit("a:b", tenant="b") for _ in range(3)]
    claimed = [c for _ in range(10) for c in claim(queue, 1)]
    positions = [n for n, c in enumerate(claimed) if c.id in late]
    assert positions == [1, 3, 5]  # B's k-th task among the first 2k: they take turns


def test_tenants_take_turns_within_one_batch_too(queue):
    for _ in range(100):
        queue.submit("a:b", tenant="a")
    late = queue.submit("a:b", tenant="b")
    batch = claim(queue, 64)
    assert [c.id for c in batch].index(late) <= 1


def test_weights_set_the_share_of_claims(queue):
    queue.tenancy.set_tenant("heavy", weight=3)
    for _ in range(100):
        queue.submit("a:b", tenant="heavy")
        queue.submit("a:b", tenant="light")
    claimed = [c.tenant for _ in range(8) for c in claim(queue, 5)]
    assert claimed.count("heavy") == 30 and claimed.count("light") == 10


def test_priority_comes_before_turns(queue):
    for _ in range(5):
        queue.submit("a:b", tenant="a", priority=5)
    queue.submit("a:b", tenant="b")
    assert [c.tenant for c in claim(queue, 6)] == ["a"] * 5 + ["b"]


def test_a_tenant_that_was_alone_for_long_gets_no_debt_and_no_credit(queue):
    for _ in range(50):
        queue.submit("a:b", tenant="a")
        queue.submit("a:b", tenant="b")
    claim(queue, 40)  # both served in turns
    for _ in range(30):
        queue.submit("a:b", tenant="c")  # a newcomer with no pass
    order = [c.tenant for c in claim(queue, 30)]
    assert order.count("c") == 10 and order.count("a") == 10 and order.count("b") == 10


def test_fair_allocation_is_start_time_order_within_rooms():
    turns = [fairness.Turn("a", 5, fairness.stride(1.0)), fairness.Turn("b", 0, fairness.stride(2.0), room=1)]
    order = fairness.allocate(turns, 4)
    assert order == [("b", 0), ("a", 5), ("a", 5 + fairness.SCALE), ("a", 5 + 2 * fairness.SCALE)]  # b's room is one


def test_idle_tenants_go_behind_once_their_turn_comes(queue):
    """So a claim reads about as many tenants as it serves: idle ones are read once a round, not every claim."""
    for _ in range(5):
        queue.submit("a:b", tenant="busy")
        queue.submit("a:b", tenant="busy-too")
    with queue._ctx.change() as (tx, _):
        tx.add_tenants([f"idle-{n:03d}" for n in range(100)])  # tenants whose tasks are all done
        tx.advance_passes([("busy", 10**9, 0), ("busy-too", 10**9, 0)])  # and they are far behind the busy ones
        assert tx.turns_in_order(None, 1)[0][0] == "idle-000"
    assert [c.tenant for c in claim(queue, 1)] == ["busy"]
    with queue._ctx.read() as tx:
        (busy_too, _), (idle, idle_pass) = [(tenant, at) for tenant, at, _ in tx.turns_in_order(None, 2)]
    assert busy_too == "busy-too" and idle == "idle-000" and idle_pass > 10**9  # moved behind the busy ones


def test_tenants_with_work_but_no_turn_are_given_one_rather_than_left_waiting(queue, db_location):
    """Tasks written by another program (no turn row): found once nothing else is ready."""
    from tests.stores import raw_sql

    ids = [queue.submit("a:b", tenant=tenant) for tenant in ("x", "y")]
    raw_sql(db_location, "DELETE FROM tenant_turns")
    assert sorted(c.id for c in claim(queue, 5)) == ids
    with queue._ctx.read() as tx:
        assert sorted(tenant for tenant, _, _ in tx.turns_in_order(None, 5)) == ["x", "y"]


# -- settings ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"weight": 0}, "invalid weight 0"),
        ({"weight": -1}, "invalid weight"),
        ({"rate": "10/d"}, "invalid rate '10/d'"),
        ({"rate": "0/m"}, "invalid rate"),
        ({"max_pending": -1}, "invalid max-pending -1"),
        ({"max_running": 1.5}, "invalid max-running"),
    ],
)
def test_bad_tenant_settings_are_refused_and_change_nothing(queue, changes, message):
    with pytest.raises(InvalidInput, match=message):
        queue.tenancy.set_tenant("acme", **changes)
    assert queue.tenancy.tenants() == [] and actions(queue, "tenant.set") == []


def test_setting_is_audited_with_what_changed_and_a_repeat_changes_nothing(queue):
    queue.tenancy.set_tenant("acme", rate="100/m", weight=2)
    _, changed = queue.tenancy.set_tenant("acme", rate="100/m", weight=2)
    assert not changed
    ((tenant, details),) = actions(queue, "tenant.set")
    assert tenant == "acme" and details == {"rate": {"from": None, "to": "100/m"}, "weight": {"from": 1.0, "to": 2.0}}
    info = queue.tenancy.tenants()[0]
    assert info.to_dict() == {"name": "acme", "max_pending": 0, "max_running": 0, "rate": "100/m", "weight": 2.0, "pending": 0,
                              "running": 0, "tokens": 100.0}


def test_rates_parse_and_refuse():
    assert parse_rate("100/m") == (100, 60.0) and parse_rate("none") is None and parse_rate("5/s") == (5, 1.0)
    for bad in ("100", "/m", "1.5/m", "-1/s", "10/2m", "ten/m"):
        with pytest.raises(InvalidInput):
            parse_rate(bad)


def test_status_shows_each_limit_beside_its_count(queue):
    queue.tenancy.set_queue("etl", max_length=10, max_running=4)
    queue.tenancy.set_tenant("acme", max_pending=5)
    for _ in range(3):
        queue.submit("a:b", queue="etl", tenant="acme")
    summary = queue.status().to_json()
    assert summary["queue_limits"][0] == {"name": "etl", "max_length": 10, "max_running": 4, "paused": False, "encrypt": False,
                                             "unfinished": 3, "running": 0}
    assert summary["tenant_limits"][0]["pending"] == 3
