"""The circuit breaker is exact however workers batch their claims (SPEC "Circuit breakers"), with real workers.

A failing service's tasks note in a ledger that they started, so the tests
count the attempts that really ran (a claim given back unstarted is not
one). Quick tasks of another service submitted first teach each slot that
attempts are short, so it holds a window of many claims when the failing
tasks come up: the case where counting failures only as a batch is
recorded used to let a dozen or more attempts run past the threshold.
"""

import json
import signal
from collections import Counter

import pytest

from tests.reliability.helpers import wait_until

THRESHOLD = 5  # the default
DOWN = "down"  # the failing service


def submit_lines(cli, specs):
    """Submit task specs (dicts) in one bulk submit; their ids."""
    lines = "".join(json.dumps(spec) + "\n" for spec in specs)
    return [int(word) for word in cli.ok("submit", "--from-file", "-", input=lines).stdout.split()]


def failing(ledger, count):
    """`count` tasks of the failing service that fail at once, without retries."""
    return [{"target": "tests.jobs:tally_and_fail", "payload": {"ledger": str(ledger)}, "service": DOWN, "max_retries": 0}] * count


def quick(count, *, service="up", priority=10):
    """`count` no-op tasks, claimed before the failing ones (higher priority) unless told otherwise."""
    return [{"target": "tests.jobs:noop", "service": service, "priority": priority}] * count


def submit_after_warm_up(cli, warm_up, failing_specs):
    """Submit the warm-up tasks and the failing ones in one go (so polling workers see them together); the failing ones' ids."""
    return submit_lines(cli, warm_up + failing_specs)[len(warm_up):]


def started(ledger):
    """How many attempts of the failing service started."""
    return len(ledger.read_text().split()) if ledger.exists() else 0


def circuit(cli, key=DOWN):
    """The breaker of `key` as `breaker list --json` shows it (None until it has one)."""
    return next((row for row in cli.ok("breaker", "list", "--json").json if row["key"] == key), None)


def is_open(cli):
    """Whether the failing service's circuit is open."""
    breaker = circuit(cli)
    return breaker is not None and breaker["state"] == "open"


def tasks(cli):
    """Every task, as `status --json` lists them."""
    return cli.ok("status", "--json", "--limit", "0").json["tasks"]




def start_workers(cli, workers, concurrency):
    """Polling workers, started and registered before any task is submitted, so they race for the same tasks."""
    cli.create_db()
    spawned = [cli.spawn("worker", "--concurrency", str(concurrency), "--poll", "0.05s") for _ in range(workers)]
    assert wait_until(lambda: sum(w["alive"] for w in cli.ok("workers", "--json").json) == workers), "the workers did not start"
    return spawned


def stop_workers(spawned):
    for worker in spawned:
        worker.send_signal(signal.SIGTERM)
    for worker in spawned:
        assert worker.wait(timeout=60) == 0, worker.stderr.read()


def assert_held_back_unrun(cli, ids, ran):
    """Of the failing tasks, `ran` failed and every other one is pending with no attempt used."""
    by_id = {task["id"]: task for task in tasks(cli)}
    states = Counter(by_id[i]["state"] for i in ids)
    assert states == Counter({"failed": ran, "pending": len(ids) - ran}), states
    assert all(by_id[i]["attempts"] == 0 for i in ids if by_id[i]["state"] == "pending")


@pytest.mark.parametrize("count", [7, 50])
@pytest.mark.parametrize("warm_up", [None, "up", DOWN], ids=["cold", "other-service-first", "same-service-first"])
def test_one_slot_starts_exactly_the_threshold_of_attempts(cli, tmp_path, count, warm_up):
    # same-service-first: the slot's window holds quick successes and then the
    # failing tasks of the same service in one batch.
    ledger = tmp_path / "ledger"
    ids = submit_after_warm_up(cli, quick(30, service=warm_up) if warm_up else [], failing(ledger, count))
    cli.ok("worker", "--once", "--concurrency", "1")
    assert started(ledger) == THRESHOLD
    assert_held_back_unrun(cli, ids, THRESHOLD)
    breaker = circuit(cli)
    assert (breaker["state"], breaker["failures"]) == ("open", THRESHOLD)


@pytest.mark.parametrize("workers, concurrency", [(1, 4), (2, 2)])
def test_several_slots_start_at_most_one_more_attempt_each(cli, tmp_path, workers, concurrency):
    ledger = tmp_path / "ledger"
    slots = workers * concurrency
    spawned = start_workers(cli, workers, concurrency)
    try:
        ids = submit_after_warm_up(cli, quick(30 * slots), failing(ledger, 50))
        assert wait_until(lambda: is_open(cli) and cli.ok("status", "--json").json["counts"]["running"] == 0)
    finally:
        stop_workers(spawned)
    ran = started(ledger)
    assert THRESHOLD <= ran <= THRESHOLD + slots - 1, f"{ran} attempts started with {slots} slots"
    assert_held_back_unrun(cli, ids, ran)


def test_a_half_open_circuit_admits_one_trial_across_workers(cli):
    cli.ok("breaker", "set", DOWN, "--failure-threshold", "1", "--recovery-timeout", "2s")
    spawned = start_workers(cli, 3, 2)
    try:
        (opener,) = submit_lines(cli, [{"target": "tests.jobs:boom", "service": DOWN, "max_retries": 0}])
        assert wait_until(lambda: is_open(cli))
        # The trial is the slow one (best first); the quick ones of the same service wait behind it.
        trial = submit_lines(cli, [{"target": "tests.jobs:sleepy", "payload": {"seconds": 1.5}, "service": DOWN, "priority": 10}])[0]
        others = submit_lines(cli, [{"target": "tests.jobs:noop", "service": DOWN}] * 6)
        assert wait_until(lambda: all(task["state"] == "completed" for task in tasks(cli) if task["id"] != opener))
    finally:
        stop_workers(spawned)
    service_tasks = {trial, *others}
    circuit_actions = ("breaker.open", "breaker.half_open", "breaker.close")
    log = cli.ok("audit", "log", "--limit", "0", "--json").json
    seen = [(entry["action"], entry["task_id"]) for entry in log if entry["action"] in circuit_actions or
            (entry["action"] == "task.claim" and entry["task_id"] in service_tasks)]
    assert [action for action, _ in seen if action in circuit_actions] == list(circuit_actions)
    opened, closed = seen.index(("breaker.open", opener)), seen.index(("breaker.close", trial))
    assert seen[opened + 1:closed] == [("task.claim", trial), ("breaker.half_open", trial)], "one trial, and nothing else while it ran"


def test_a_healthy_service_still_batches_its_claims_beside_a_failing_one(cli, tmp_path):
    ledger = tmp_path / "ledger"
    down = submit_lines(cli, failing(ledger, 50))
    healthy = submit_lines(cli, quick(200, priority=0))
    cli.ok("worker", "--once", "--concurrency", "1")
    assert started(ledger) == THRESHOLD
    assert_held_back_unrun(cli, down, THRESHOLD)
    by_id = {task["id"]: task for task in tasks(cli)}
    assert all(by_id[i]["state"] == "completed" for i in healthy)
    # Tasks claimed in one transaction share its time: one slot took many at once.
    per_claim = Counter(by_id[i]["started_at"] for i in healthy)
    assert max(per_claim.values()) > 10 and len(per_claim) < 50, sorted(per_claim.values())
