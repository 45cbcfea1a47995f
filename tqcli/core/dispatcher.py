"""The database side of running tasks: claim with a lease and a fencing token, finish, reclaim.

Every function here works inside the caller's write transaction and
journals its audit entries, so a worker can finish one attempt and claim
the next in a single short transaction.

Fencing: each claim gets a fresh token (the id of its attempt row). Every
later write of that attempt names the token and applies only while the
token still holds the task; a result that arrives after the task was
reclaimed is dropped and audited as `task.stale`.
"""

from __future__ import annotations

from typing import Any, Sequence

from tqcli.core import chaining
from tqcli.resilience import circuit_breaker
from tqcli.security.audit import Journal
from tqcli.units import US_PER_SECOND, format_time

MAX_BACKOFF_SECONDS = 3600
MAX_ERROR_CHARS = 8192
WORKER_LOST = "worker lost"


class Claim:
    """A task claimed by a worker: what it needs to run it, and the token that fences it."""

    __slots__ = (
        "id", "name", "queue", "tenant", "backend", "target", "payload", "attempt", "max_retries",
        "backoff", "timeout", "service", "encrypted", "dag_id", "token",
    )

    def __init__(self, row: Sequence[Any]) -> None:
        (self.id, self.name, self.queue, self.tenant, self.backend, self.target, self.payload, self.attempt,
         self.max_retries, self.backoff, self.timeout, self.service, self.encrypted, self.dag_id, self.token) = row[:15]

    def __repr__(self) -> str:
        return f"Claim(task={self.id}, attempt={self.attempt}, token={self.token})"


class Outcome:
    """How an attempt ended, as the worker saw it.

    kind: `completed` (result holds JSON text), `failed` (error), `cancelled`
    (stopped because the task was cancelled) or `released` (the worker shut
    down first; the attempt does not count). A failure that is not
    `retryable` goes to the DLQ at once; one that does not `count_for_breaker`
    says nothing about the service.
    """

    __slots__ = ("kind", "result", "error", "retryable", "counts_for_breaker")

    def __init__(
        self,
        kind: str,
        *,
        result: str | None = None,
        error: str | None = None,
        retryable: bool = True,
        counts_for_breaker: bool = True,
    ) -> None:
        self.kind = kind
        self.result = result
        self.error = error[:MAX_ERROR_CHARS] if error is not None else None
        self.retryable = retryable
        self.counts_for_breaker = counts_for_breaker

    def __repr__(self) -> str:
        return f"Outcome({self.kind!r}, error={self.error!r})"



def backoff_delay(backoff: float, attempt: int) -> float:
    """Seconds before the next attempt: backoff * 2^(attempt-1), capped at one hour."""
    if backoff <= 0:
        return 0.0
    return min(backoff * 2 ** min(attempt - 1, 32), MAX_BACKOFF_SECONDS)


def claim(
    tx: Any,
    journal: Journal,
    *,
    count: int,
    now: int,
    worker: str,
    lease_seconds: float,
    queues: Sequence[str] = (),
    tenants: Sequence[str] = (),
    backends: Sequence[str] | None = None,
    task_id: int | None = None,
    due_by: int | None = None,
    dag_id: int | None = None,
) -> list[Claim]:
    """Claim up to `count` ready tasks, best first (or just `task_id`), each with its own token.

    `due_by` widens "ready" to tasks whose run_at is up to that time (`run` starts delayed tasks now).
    """
    blocked, trial_ready = circuit_breaker.claim_gate(tx, now)
    lease_until = now + int(lease_seconds * US_PER_SECOND)
    token = tx.next_attempt_id()
    claims: list[Claim] = []
    for _ in range(count):
        row = tx.claim_next(
            now=now, token=token, lease_until=lease_until, worker=worker, queues=queues, tenants=tenants,
            backends=backends, excluded_services=blocked, task_id=task_id, due_by=due_by, dag_id=dag_id,
        )
        if row is None:
            break
        claimed = Claim(row)
        claims.append(claimed)
        token += 1
        if claimed.service in trial_ready:
            circuit_breaker.admit_trial(tx, journal, claimed.service, claimed.id, claimed.tenant, now)
            trial_ready.discard(claimed.service)
            blocked.append(claimed.service)
    if claims:
        tx.insert_attempts([(c.token, c.id, c.attempt, c.token, worker, now) for c in claims])
        for c in claims:
            journal.add("task.claim", c.id, c.tenant, attempt=c.attempt, worker=worker)
    return claims


def finish(tx: Any, journal: Journal, claimed: Claim, outcome: Outcome, *, now: int, worker: str) -> str:
    """Record how an attempt ended; returns what became of the task.

    One of `completed`, `retry`, `failed`, `cancelled`, `released` or
    `stale` (the token no longer held the task: nothing changed).
    """
    task_id, token, kind = claimed.id, claimed.token, outcome.kind
    if kind == "completed":
        if not tx.complete_task(task_id, token, now=now, result=outcome.result):
            return _stale(tx, journal, claimed, outcome, worker)
        tx.close_attempt(token, now=now, outcome="completed", error=None)
        tx.release_dependents(task_id)
        circuit_breaker.record_success(tx, journal, claimed.service, task_id, claimed.tenant, now)
        journal.add("task.complete", task_id, claimed.tenant, attempt=claimed.attempt, worker=worker)
        return "completed"
    if kind == "released":
        if not tx.release_task(task_id, token):
            return _stale(tx, journal, claimed, outcome, worker)
        tx.close_attempt(token, now=now, outcome="released", error="worker stopped before it finished")
        journal.add("task.release", task_id, claimed.tenant, attempt=claimed.attempt, worker=worker)
        return "released"
    if kind == "cancelled":
        if not tx.end_task(task_id, token, state="cancelled", now=now, error="cancelled while running"):
            return _stale(tx, journal, claimed, outcome, worker)
        tx.close_attempt(token, now=now, outcome="cancelled", error=None)
        journal.add("task.cancel", task_id, claimed.tenant, attempt=claimed.attempt, worker=worker, stopped=True)
        chaining.block_dependents(tx, journal, [task_id], cause=f"task {task_id} cancelled")
        return "cancelled"
    error = outcome.error or "failed"
    result = _fail(tx, journal, claimed, error, now=now, action="task.fail", worker=worker, final=not outcome.retryable)
    if result == "stale":
        return _stale(tx, journal, claimed, outcome, worker)
    tx.close_attempt(token, now=now, outcome="failed", error=error)
    if outcome.counts_for_breaker:
        circuit_breaker.record_failure(tx, journal, claimed.service, task_id, claimed.tenant, now)
    return result


def _fail(tx: Any, journal: Journal, claimed: Claim, error: str, *, now: int, action: str, worker: str, final: bool = False) -> str:
    """Retry with backoff while retries remain, else move the task to the DLQ (`failed`)."""
    if claimed.attempt <= claimed.max_retries and not final:
        run_at = now + int(backoff_delay(claimed.backoff, claimed.attempt) * US_PER_SECOND)
        if not tx.retry_task(claimed.id, claimed.token, error=error, run_at=run_at):
            return "stale"
        journal.add(action, claimed.id, claimed.tenant, attempt=claimed.attempt, worker=worker, error=error[:500], retry_at=format_time(run_at))
        return "retry"
    if not tx.end_task(claimed.id, claimed.token, state="failed", now=now, error=error):
        return "stale"
    journal.add(action, claimed.id, claimed.tenant, attempt=claimed.attempt, worker=worker, error=error[:500], final=True)
    chaining.block_dependents(tx, journal, [claimed.id], cause=f"task {claimed.id} failed")
    return "failed"


def _stale(tx: Any, journal: Journal, claimed: Claim, outcome: Outcome, worker: str) -> str:
    journal.add("task.stale", claimed.id, claimed.tenant, attempt=claimed.attempt, worker=worker, token=claimed.token, outcome=outcome.kind)
    return "stale"


def reclaim_expired(tx: Any, journal: Journal, *, now: int, worker: str) -> list[tuple[int, str]]:
    """Running tasks whose lease ended: each counts a failed attempt (`worker lost`).

    Returns `(task_id, what became of it)` for each. A task whose cancel
    was requested before its worker died ends cancelled.
    """
    reclaimed = []
    for row in tx.expired_leases(now):
        lost = Claim(row)
        cancel_requested = row[15]
        tx.close_attempt(lost.token, now=now, outcome="lost", error=WORKER_LOST)
        if cancel_requested:
            tx.end_task(lost.id, lost.token, state="cancelled", now=now, error="cancelled; its worker was lost")
            journal.add("task.lost", lost.id, lost.tenant, attempt=lost.attempt, reclaimed_by=worker, cancelled=True)
            chaining.block_dependents(tx, journal, [lost.id], cause=f"task {lost.id} cancelled")
            reclaimed.append((lost.id, "cancelled"))
            continue
        reclaimed.append((lost.id, _fail(tx, journal, lost, WORKER_LOST, now=now, action="task.lost", worker=worker)))
    return reclaimed
