"""A model check of the task state machine: random operations against a simple in-memory model.

Hypothesis drives submit, claim, complete, fail, cancel, bump, replay,
purge, lease expiry and late (stale) results through the library, and after
every step the database must agree with the model on every task's state
and attempts, the attempts table must match, and the audit chain must verify.
"""

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import tqcli
from tests.reliability.helpers import consistency_problems
from tqcli.clock import ManualClock
from tqcli.core import dispatcher
from tqcli.core.dispatcher import Outcome
from tqcli.errors import Conflict

STOPPING = ("failed", "cancelled", "blocked")


class Model:
    """What the database should say, computed the simple way."""

    def __init__(self) -> None:
        self.tasks: dict[int, dict] = {}
        self.next_id = 1

    def dependents(self, task_id: int) -> list[int]:
        return [other for other, task in self.tasks.items() if task_id in task["deps"]]

    def block_from(self, task_id: int) -> None:
        for other in self.dependents(task_id):
            if self.tasks[other]["state"] == "pending":
                self.tasks[other]["state"] = "blocked"
                self.block_from(other)

    def unblock_from(self, task_id: int) -> None:
        for other in self.dependents(task_id):
            task = self.tasks[other]
            if task["state"] == "blocked" and not any(self.tasks[dep]["state"] in STOPPING for dep in task["deps"] if dep in self.tasks):
                task["state"] = "pending"
                self.unblock_from(other)

    def claimable(self) -> list[int]:
        return [
            task_id for task_id, task in self.tasks.items()
            if task["state"] == "pending" and all(self.tasks[dep]["state"] == "completed" for dep in task["deps"] if dep in self.tasks)
        ]


class TaskStateMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.folder = tempfile.mkdtemp(prefix="tqcli-model-")
        self.clock = ManualClock()
        self.queue = tqcli.open(Path(self.folder) / "model.db", clock=self.clock)
        self.queue.breakers.configure(None, failure_threshold=1_000_000)  # circuits are tested elsewhere
        self.model = Model()
        self.claims: dict[int, dispatcher.Claim] = {}
        self.stale: list[dispatcher.Claim] = []

    def teardown(self) -> None:
        self.queue.close()

    def write(self):
        return self.queue._ctx.change()

    # -- operations -----------------------------------------------------------------

    @rule(max_retries=st.integers(0, 2), data=st.data())
    def submit(self, max_retries, data):
        existing = sorted(self.model.tasks)
        deps = data.draw(st.lists(st.sampled_from(existing), max_size=2, unique=True)) if existing else []
        task_id = self.queue.submit("app.jobs:step", max_retries=max_retries, backoff=0, depends_on=deps)
        assert task_id == self.model.next_id
        self.model.next_id += 1
        blocked = any(self.model.tasks[dep]["state"] in STOPPING for dep in deps)
        self.model.tasks[task_id] = {"state": "blocked" if blocked else "pending", "attempts": 0, "max_retries": max_retries, "deps": set(deps)}

    @rule()
    def claim(self):
        with self.write() as (tx, journal):
            claims = dispatcher.claim(tx, journal, count=1, now=self.clock.now(), worker="model", lease_seconds=60, holder=None)
        candidates = self.model.claimable()
        if not candidates:
            assert claims == []
            return
        (claimed,) = claims
        assert claimed.id in candidates
        task = self.model.tasks[claimed.id]
        task["state"] = "running"
        task["attempts"] += 1
        self.claims[claimed.id] = claimed

    def _finish(self, task_id: int, outcome: Outcome) -> str:
        claimed = self.claims.pop(task_id)
        with self.write() as (tx, journal):
            return dispatcher.finish(tx, journal, claimed, outcome, now=self.clock.now(), worker="model")

    def _failed_attempt(self, task_id: int) -> None:
        task = self.model.tasks[task_id]
        if task.pop("cancel_requested", False):  # a failure does not turn a cancel into a retry
            task["state"] = "cancelled"
            self.model.block_from(task_id)
        elif task["attempts"] <= task["max_retries"]:
            task["state"] = "pending"
        else:
            task["state"] = "failed"
            self.model.block_from(task_id)

    @precondition(lambda self: self.claims)
    @rule(data=st.data())
    def complete(self, data):
        task_id = data.draw(st.sampled_from(sorted(self.claims)))
        assert self._finish(task_id, Outcome("completed", result="null")) == "completed"
        self.model.tasks[task_id]["state"] = "completed"

    @precondition(lambda self: self.claims)
    @rule(data=st.data())
    def fail(self, data):
        task_id = data.draw(st.sampled_from(sorted(self.claims)))
        assert self._finish(task_id, Outcome("failed", error="boom")) in ("retry", "failed", "cancelled")
        self._failed_attempt(task_id)

    @precondition(lambda self: self.model.tasks)
    @rule(data=st.data())
    def cancel(self, data):
        task_id = data.draw(st.sampled_from(sorted(self.model.tasks)))
        task = self.model.tasks[task_id]
        if task["state"] in ("completed", "failed", "cancelled"):
            with pytest.raises(Conflict):
                self.queue.cancel(task_id)
            return
        self.queue.cancel(task_id)
        if task["state"] == "running":
            task["cancel_requested"] = True
            return
        task["state"] = "cancelled"
        self.model.block_from(task_id)

    @precondition(lambda self: self.model.tasks)
    @rule(data=st.data(), priority=st.integers(-100, 100))
    def bump(self, data, priority):
        task_id = data.draw(st.sampled_from(sorted(self.model.tasks)))
        if self.model.tasks[task_id]["state"] in ("pending", "blocked"):
            self.queue.bump(task_id, priority=priority)
        else:
            with pytest.raises(Conflict):
                self.queue.bump(task_id, priority=priority)

    @precondition(lambda self: any(t["state"] == "failed" for t in self.model.tasks.values()))
    @rule(data=st.data())
    def replay(self, data):
        task_id = data.draw(st.sampled_from(sorted(i for i, t in self.model.tasks.items() if t["state"] == "failed")))
        self.clock.advance(1)  # time passes between a failure and its replay
        self.queue.dlq.replay([task_id])
        task = self.model.tasks[task_id]
        task["state"], task["attempts"] = "pending", 0
        self.model.unblock_from(task_id)

    @precondition(lambda self: any(t["state"] == "failed" for t in self.model.tasks.values()))
    @rule(data=st.data())
    def purge(self, data):
        task_id = data.draw(st.sampled_from(sorted(i for i, t in self.model.tasks.items() if t["state"] == "failed")))
        self.queue.dlq.purge([task_id], confirmed=True)
        pending = [task_id]
        while pending:  # everything that waited on it, directly or not, can never run
            for other in self.model.dependents(pending.pop()):
                if self.model.tasks[other]["state"] in ("pending", "blocked"):
                    self.model.tasks[other]["state"] = "cancelled"
                    pending.append(other)
        del self.model.tasks[task_id]

    @precondition(lambda self: self.claims)
    @rule()
    def leases_expire(self):
        self.clock.advance(61)
        with self.write() as (tx, journal):
            reclaimed = dict(dispatcher.reclaim_expired(tx, journal, now=self.clock.now(), worker="reaper"))
        assert set(reclaimed) == set(self.claims)
        for task_id, claimed in list(self.claims.items()):
            task = self.model.tasks[task_id]
            if task.pop("cancel_requested", False):
                task["state"] = "cancelled"
                self.model.block_from(task_id)
            else:
                self._failed_attempt(task_id)
            self.stale.append(self.claims.pop(task_id))

    @precondition(lambda self: self.stale)
    @rule(data=st.data(), kind=st.sampled_from(["completed", "failed", "released"]))
    def late_result(self, data, kind):
        claimed = self.stale.pop(data.draw(st.integers(0, len(self.stale) - 1)))
        if claimed.id not in self.model.tasks:
            return  # purged since
        with self.write() as (tx, journal):
            outcome = Outcome(kind, result="null", error="late")
            assert dispatcher.finish(tx, journal, claimed, outcome, now=self.clock.now(), worker="zombie") == "stale"

    @precondition(lambda self: self.claims)
    @rule(data=st.data())
    def stopped_by_cancel(self, data):
        task_id = data.draw(st.sampled_from(sorted(self.claims)))
        task = self.model.tasks[task_id]
        if not task.get("cancel_requested"):
            return
        assert self._finish(task_id, Outcome("cancelled")) == "cancelled"
        task.pop("cancel_requested")
        task["state"] = "cancelled"
        self.model.block_from(task_id)

    # -- what must always hold ---------------------------------------------------

    @invariant()
    def database_agrees_with_the_model(self):
        summary = {task.id: task for task in self.queue.status(limit=10_000).tasks}
        assert set(summary) == set(self.model.tasks)
        for task_id, expected in self.model.tasks.items():
            actual = summary[task_id]
            assert (actual.state.value, actual.attempts) == (expected["state"], expected["attempts"]), task_id

    @invariant()
    def bookkeeping_and_audit_hold(self):
        assert consistency_problems(self.queue.location) == []
        assert self.queue.audit.verify().intact


TaskStateMachine.TestCase.settings = settings(
    max_examples=120, stateful_step_count=35, deadline=None, suppress_health_check=list(HealthCheck)
)
test_the_state_machine_matches_its_model = TaskStateMachine.TestCase
