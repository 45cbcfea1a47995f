"""The worker loop through the library, with real executor processes."""

import threading
import time
from pathlib import Path

from tqcli.core.execution import BackendSet
from tqcli.backends.simple import SimpleBackend
from tqcli.backends.shell import ShellBackend

REPO = Path(__file__).resolve().parent.parent


def test_drain_runs_ready_tasks_and_stores_results(queue):
    ids = [queue.submit("tests.jobs:add", payload={"a": n, "b": 1}) for n in range(5)]
    report = queue.drain()
    assert report.claimed == 5 and report.outcomes == {"completed": 5}
    assert [queue.get(i).result_value for i in ids] == [1, 2, 3, 4, 5]
    assert queue.audit.verify().intact


def test_once_runs_dependents_released_by_its_own_work_and_retries_due_now(queue):
    parent = queue.submit("tests.jobs:noop")
    child = queue.submit("tests.jobs:noop", depends_on=[parent])
    flaky = queue.submit("tests.jobs:boom", max_retries=2, backoff=0)
    report = queue.drain()
    assert queue.get(child).state.value == "completed"
    assert queue.get(flaky).attempts == 3 and queue.get(flaky).state.value == "failed"
    assert report.outcomes == {"completed": 2, "retry": 2, "failed": 1}


def test_once_does_not_wait_for_delayed_tasks(queue):
    queue.submit("tests.jobs:noop", delay=3600)
    started = time.monotonic()
    assert queue.drain().claimed == 0
    assert time.monotonic() - started < 5


def test_concurrency_runs_tasks_side_by_side(queue):
    for _ in range(3):
        queue.submit("tests.jobs:sleepy", payload={"seconds": 1})
    started = time.monotonic()
    assert queue.drain(concurrency=3).outcomes == {"completed": 3}
    assert time.monotonic() - started < 2.8


def test_max_tasks_stops_claiming(queue):
    for _ in range(5):
        queue.submit("tests.jobs:noop")
    assert queue.drain(max_tasks=2).claimed == 2
    assert queue.status().counts["pending"] == 3


def test_a_python_task_past_its_timeout_is_stopped(queue):
    slow = queue.submit("tests.jobs:sleepy", payload={"seconds": 30}, timeout=1, max_retries=0)
    after = queue.submit("tests.jobs:add", payload={"a": 1, "b": 1})
    started = time.monotonic()
    queue.drain()
    assert time.monotonic() - started < 10
    assert queue.get(slow).error == "timed out after 1 s"
    assert queue.get(after).result_value == 2  # a fresh executor took over


def test_failures_name_what_went_wrong(queue):
    unjson = queue.submit("tests.jobs:not_json", max_retries=0)
    missing = queue.submit("tests.nowhere:x", max_retries=0)
    shell = queue.submit("echo bad >&2; exit 4", backend="shell", max_retries=0)
    queue.drain()
    assert "not JSON-serialisable" in queue.get(unjson).error
    assert "No module named 'tests.nowhere'" in queue.get(missing).error
    assert queue.get(shell).error == "exit status 4\nbad"


def test_a_task_that_kills_its_executor_fails_cleanly(queue):
    crash = queue.submit("os:_exit", payload={"status": 9}, max_retries=0)
    after = queue.submit("tests.jobs:noop")
    queue.drain()
    assert queue.get(crash).error == "the executor process died while running the task (exit status 9)"
    assert queue.get(after).state.value == "completed"


def test_a_backend_that_fails_to_load_leaves_its_tasks_pending(queue):
    queue.submit("true", backend="shell")
    simple = queue.submit("tests.jobs:noop")
    backends = BackendSet({"simple": SimpleBackend()}, {"shell": "ImportError: broken"})
    warnings = []
    report = queue.drain(backends=backends, log=warnings.append)
    assert report.claimed == 1 and queue.get(simple).state.value == "completed"
    assert queue.status().counts["pending"] == 1
    assert any("backend 'shell' failed to load" in w for w in warnings)


def test_stop_releases_running_tasks_without_counting_an_attempt(queue):
    task_id = queue.submit("sleep 30", backend="shell")
    worker = queue.worker(grace=0.5, poll=0.1)
    thread = threading.Thread(target=worker.run)
    thread.start()
    deadline = time.monotonic() + 10
    while queue.get(task_id).state.value != "running" and time.monotonic() < deadline:
        time.sleep(0.05)
    worker.stop()
    thread.join(timeout=15)
    task = queue.get(task_id)
    assert (task.state.value, task.attempts) == ("pending", 0)
    assert task.history[-1].outcome == "released"


def test_worker_options_are_checked():
    import pytest

    from tqcli.core.worker_run import WorkerOptions
    from tqcli.errors import InvalidInput

    for bad in ({"concurrency": 0}, {"lease": 0.1}, {"poll": 0}, {"max_tasks": 0}, {"queues": ("bad name",)}):
        with pytest.raises(InvalidInput):
            WorkerOptions(**bad)


def test_builtin_backends_come_from_the_entry_point_group():
    backends = BackendSet.discover()
    assert isinstance(backends.loaded["simple"], SimpleBackend) and isinstance(backends.loaded["shell"], ShellBackend)


def test_light_discovery_agrees_with_importlib_metadata():
    from importlib.metadata import entry_points

    from tqcli.backends.plugins import GROUP, discover

    assert {name: info.value for name, info in discover().items()} == {e.name: e.value for e in entry_points(group=GROUP)}


def test_the_backends_taken_as_built_in_are_those_tqcli_declares():
    import tomllib
    from pathlib import Path

    from tqcli.backends.plugins import BUILT_IN, GROUP, missing_backends

    project = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())
    assert set(project["project"]["entry-points"][GROUP]) == BUILT_IN
    assert missing_backends({"shell", "simple"}) == [] and missing_backends({"shell", "nope", "k8s"}) == ["k8s", "nope"]


def test_a_slow_task_after_fast_failures_does_not_hold_others_in_line(queue):
    # Fast failures make the slot expect fast tasks; the slow ones that follow must not
    # sit claimed behind each other: what waits is given back within a fraction of a second.
    for _ in range(3):
        queue.submit("tests.jobs:boom", max_retries=0)
    slow = [queue.submit("tests.jobs:sleepy", payload={"seconds": 1.5}) for _ in range(3)]
    worker = queue.worker(concurrency=1, poll=0.1)
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while queue.get(slow[0]).state.value != "running" and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.5)
        running = queue.status().counts["running"]
        assert running == 1, f"{running} tasks claimed at once with concurrency 1"
    finally:
        worker.stop(immediately=True)
        thread.join(timeout=30)


def test_claims_waiting_in_line_go_back_unrun_when_their_circuit_opens(queue, tmp_path):
    log = tmp_path / "ran"
    queue.breakers.configure(None, failure_threshold=2, recovery_timeout="1h")
    # Quick tasks first teach the slot to hold many claims at once; the quick
    # failures then wait in its window. With one slot exactly the threshold
    # runs: the first failure sends the rest of its service back unrun.
    for _ in range(20):
        queue.submit("true", backend="shell", service="quick", priority=10)
    ids = [queue.submit(f"echo {n} >> {log}; exit 1", backend="shell", service="flaky", max_retries=0) for n in range(40)]
    queue.drain()
    ran = log.read_text().split()
    assert len(ran) == 2, f"the circuit opened after 2 failures, yet {len(ran)} ran"
    states = [queue.get(i).state.value for i in ids]
    assert states.count("failed") == len(ran) and states.count("pending") == 40 - len(ran)
    assert all(queue.get(i).attempts == 0 for i, state in zip(ids, states) if state == "pending")


def test_the_sample_systemd_unit_lets_the_grace_period_hold():
    """sample-configs/tqcli-worker.service: SIGTERM reaches the worker alone, and systemd waits past its grace."""
    import configparser
    import shlex

    from tqcli.config import WorkerDefaults

    unit = configparser.ConfigParser(interpolation=None, strict=False)
    unit.optionxform = str
    unit.read(REPO / "sample-configs" / "tqcli-worker.service")
    service = unit["Service"]
    assert service["KillMode"] == "mixed" and service["KillSignal"] == "SIGTERM"
    assert float(service["TimeoutStopSec"]) > WorkerDefaults().grace
    argv = shlex.split(service["ExecStart"])
    assert argv[1:3] == ["--db", "/srv/jobs.db"] and "worker" in argv and "--once" not in argv


def test_completions_wait_for_the_refill_unless_a_failure_an_idle_slot_a_stop_or_the_time_says_now():
    """The rule that batches a worker's commits (Worker._commit_due), on a worker with one busy slot."""
    from types import SimpleNamespace

    from tqcli.core.dispatcher import Outcome
    from tqcli.core.worker import COMMIT_WAIT, Worker

    worker = Worker.__new__(Worker)  # the rule reads the slots and when the oldest completion arrived, nothing else
    slot = SimpleNamespace(outstanding=5)
    worker._slots = [slot]
    worker._finished_since = time.monotonic()
    completed = (slot, None, Outcome("completed", result="null"))
    assert not worker._commit_due([], [(slot, 3)], False)  # nothing ended: nothing to record
    assert not worker._commit_due([completed], [], False)  # waits for the commit that refills the slot
    assert worker._commit_due([completed], [(slot, 3)], False)  # that commit is due now
    assert worker._commit_due([completed], [], True)  # stopping
    assert worker._commit_due([completed, (slot, None, Outcome("failed", error="boom"))], [], False)  # its breaker counts it now
    slot.outstanding = 0
    assert worker._commit_due([completed], [], False)  # the slot has nothing left to run
    slot.outstanding = 5
    worker._finished_since -= COMMIT_WAIT  # the oldest completion has waited long enough
    assert worker._commit_due([completed], [], False)
