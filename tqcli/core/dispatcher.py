"""The database side of running tasks: claim with a lease and a fencing token, finish, reclaim.

Every function here works inside the caller's write transaction and
journals its audit entries, so a worker finishes the attempts that ended
and claims the next ones in a single short transaction.

Fencing: each claim gets a fresh token: the task id and a never-repeated claim number.
Every later write of that attempt names the token and applies only while
the token still holds the task; a result that arrives after the task was
reclaimed is dropped and audited as `task.stale`. The running attempt lives
on its task row; its attempt row (keyed by the token) is written when it ends.
"""

from __future__ import annotations

import functools
import json
import os
from collections import Counter
from typing import TYPE_CHECKING, Any, Sequence

from tqcli.backends import cgroups
from tqcli.backends.fence import ATTEMPT, HOLDER, attempt_marker, end_marked
from tqcli.core import chaining, gate, liveness, picking
from tqcli.observability.counters import count_attempt_end, count_attempt_starts
from tqcli.resilience import circuit_breaker
from tqcli.security.audit import Journal
from tqcli.security.crypto import DOES_NOT_DECRYPT, is_sealed, redacted
from tqcli.tenancy.limits import spend
from tqcli.store.base import Tx
from tqcli.units import US_PER_SECOND, format_time

if TYPE_CHECKING:
    from tqcli.core.encryption import WorkerKeys

MAX_BACKOFF_SECONDS = 3600
MAX_ERROR_CHARS = 8192
MAX_TRACEBACK_CHARS = 65_536
WORKER_LOST = "worker lost"
_THIS_PROCESS = object()


class Claim:
    """A task claimed by a worker: what it needs to run it, and the token that fences it."""

    __slots__ = (
        "id", "name", "queue", "tenant", "backend", "target", "payload", "attempt", "max_retries",
        "backoff", "timeout", "service", "encrypted", "dag_id", "claim", "token", "suspect",
        "started_at", "worker", "priority", "run_at", "run", "cwd", "env", "sealer",
    )

    def __init__(self, row: Sequence[Any]) -> None:
        (self.id, self.name, self.queue, self.tenant, self.backend, self.target, self.payload, self.attempt,
         self.max_retries, self.backoff, self.timeout, self.service, self.encrypted, self.dag_id, self.claim,
         last_error, self.started_at, self.worker, self.priority, self.run_at, self.run, self.cwd, self.env) = row[:23]
        self.token = (self.id, self.claim)  # what fences this attempt: unique across all claims ever made
        # Its last attempt died with its worker: it may be what killed it, so it runs alone.
        self.suspect = last_error == WORKER_LOST
        self.sealer: "WorkerKeys | None" = None  # seals an encrypted task's outcome (its payload is opened by then)

    def __repr__(self) -> str:
        return f"Claim(task={self.id}, attempt={self.attempt}, token={self.token})"


class Outcome:
    """How an attempt ended, as the worker saw it.

    kind: `completed` (result holds JSON text), `failed` (error), `cancelled`
    (stopped because the task was cancelled) or `released` (the worker shut
    down first; the attempt does not count). A `final` failure can never
    succeed as stored (a payload that does not decode, a result that is not
    JSON): it is not retried.
    """

    __slots__ = ("kind", "result", "error", "final", "traceback")

    def __init__(
        self, kind: str, *, result: str | None = None, error: str | None = None, final: bool = False,
        traceback: str | None = None,
    ) -> None:
        self.kind = kind
        self.result = result
        self.error = error[:MAX_ERROR_CHARS] if error is not None else None
        self.final = final
        self.traceback = traceback[-MAX_TRACEBACK_CHARS:] if traceback else None

    def __repr__(self) -> str:
        return f"Outcome({self.kind!r}, error={self.error!r})"


def backoff_delay(backoff: float, attempt: int) -> float:
    """Seconds before the next attempt: backoff * 2^(attempt-1), capped at one hour."""
    if backoff <= 0:
        return 0.0
    return min(backoff * 2 ** min(attempt - 1, 32), MAX_BACKOFF_SECONDS)


def _attempt_details(attempt: int, worker: str) -> str:
    # The hottest audit entries (claim, complete), written without a json.dumps each;
    # the same text json.dumps(sort_keys=True, separators=(",", ":")) would give.
    return f'{{"attempt":{attempt},"worker":{_json_text(worker)}}}'


@functools.lru_cache(maxsize=64)  # a worker names itself the same way in every entry it writes
def _json_text(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def claim(
    tx: Tx,
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
    suspects: str = "alone",
    holder: str | None | object = _THIS_PROCESS,
    holding: Sequence[Claim] = (),
    turns: list[picking.Picked] | None = None,
    keys: "WorkerKeys | None" = None,
) -> list[Claim]:
    """Claim up to `count` ready tasks, best first (or just `task_id`), each with its own token.

    Best first: higher priority, then tenants by turns (`tqcli.core.picking`),
    then oldest. Paused queues, queues and tenants at their max-running, and
    tenants whose rate bucket is empty are left out (`tqcli.tenancy.limits`),
    and so are services behind an open circuit. `due_by` widens "ready" to
    tasks whose run_at is up to that time (`run` starts delayed tasks now).
    A suspect (its last attempt was lost with its worker) is claimed only
    alone: `suspects="alone"` takes one as the first claim and then stops,
    `"exclude"` leaves them for an empty slot. `holder` names the process
    that will run them (default: this one).

    `holding` is what the slot these claims are for holds already (running
    or waiting in line). A slot holds at most one task at a time of a
    queue or tenant with a max-running (tasks waiting in its line count as
    running, so the limit is filled by parallel attempts), and of a
    service whose circuit has counted a failure (so no more of its
    attempts are lined up than the breaker can still stop).

    The tenants served spend their turns (`picking.charge`) at once, or,
    given `turns`, are added to it for the caller to charge once before
    commit: a transaction that claims for several slots then locks the
    tenants' turns in one go, in name order, so two such transactions on
    PostgreSQL cannot deadlock on them.

    Encrypted tasks are claimed only with `keys` that hold a data key, and
    opened here (see `tqcli.core.encryption.WorkerKeys`): one whose
    ciphertext does not decrypt fails at once without retry and never
    runs, one under a key this process lacks is given back unused, and
    that key's tasks are left out of the claims that follow.
    """
    plain_only = keys is None or not keys.has_data_keys
    if keys is not None and plain_only:
        keys.warn_without_keys(tx)
    open_now = gate.claim_gate(tx, now, queues=queues, tenants=tenants)
    limits = open_now.limits
    held_services = {claimed.service for claimed in holding}
    held_queues = {claimed.queue for claimed in holding}
    held_tenants = {claimed.tenant for claimed in holding}
    excluded_services = set(open_now.excluded_services)
    trial_ready = set(open_now.trial_services)
    single_services = (open_now.failing_services | trial_ready) - excluded_services
    excluded_services |= single_services & held_services
    single_services -= held_services
    excluded_queues = limits.closed_queues | (limits.single_queues & held_queues)
    queue_room = {queue: room for queue, room in limits.queue_room.items() if queue not in excluded_queues}
    rooms = dict(limits.tenant_room)
    for tenant in limits.single_tenants:
        rooms[tenant] = 0 if tenant in held_tenants else min(rooms[tenant], 1)
    number = tx.next_claim_number()
    lease_until = now + int(lease_seconds * US_PER_SECOND)
    holder_name = liveness.own_name(os.getpid()) if holder is _THIS_PROCESS else holder
    claims: list[Claim] = []
    taken: list[picking.Picked] = []
    number_used = False  # also by claims that ended at once (an encrypted task that does not decrypt)
    for _ in range(count + 8):  # each turn claims something or closes a group; bounded all the same
        want = count - len(claims)
        picks = picking.pick(
            tx, want, now=now, rooms=rooms, only_tenants=tenants, queues=queues, backends=backends, task_id=task_id,
            due_by=due_by, dag_id=dag_id, excluded_services=sorted(excluded_services), excluded_queues=sorted(excluded_queues),
            exclude_error=WORKER_LOST if suspects == "exclude" or claims else None,
            plain_only=plain_only, excluded_prefixes=keys.excluded_prefixes if keys is not None else (),
        )
        if not picks:
            break
        chosen, alone = _judge(picks, first=not claims and suspects == "alone", excluded_services=excluded_services,
                               single_services=single_services, excluded_queues=excluded_queues, queue_room=queue_room, rooms=rooms)
        order = {item.row.id: n for n, item in enumerate(chosen)}
        rows = tx.claim_picked(list(order), now=now, claim_number=number, lease_until=lease_until, worker=worker, holder=holder_name)
        batch = sorted((Claim(row) for row in rows), key=lambda claimed: order[claimed.id])
        number_used = number_used or bool(batch)
        if any(claimed.encrypted for claimed in batch):
            batch = _open_claims(tx, journal, batch, keys, now=now, worker=worker)
        claims += batch
        landed = {claimed.id for claimed in batch}
        taken += [item for item in chosen if item.row.id in landed]
        for claimed in batch:
            journal.add_text("task.claim", claimed.id, claimed.tenant, _attempt_details(claimed.attempt, worker))
            if claimed.service in trial_ready:
                circuit_breaker.admit_trial(tx, journal, claimed.service, claimed.id, claimed.tenant, now)
                trial_ready.discard(claimed.service)
        if alone or len(claims) >= count or (len(chosen) == len(picks) and len(picks) < want):
            break
    if number_used:  # a claim that found nothing writes nothing
        tx.use_claim_number(number)
    if claims:
        spend(tx, limits, Counter(claimed.tenant for claimed in claims), now)
        count_attempt_starts(tx, claims)
        if turns is None:
            picking.charge(tx, taken)
        else:
            turns += taken
    return claims


def _open_claims(
    tx: Tx, journal: Journal, batch: list[Claim], keys: "WorkerKeys | None", *, now: int, worker: str,
) -> list[Claim]:
    """The claims of `batch` that may run, encrypted ones opened; the others already ended in `tx`.

    A task that does not decrypt fails for good (`ciphertext does not
    decrypt`, no retry, its circuit untouched: the service did nothing); one
    this process has no key for goes back to pending, its attempt not counted.
    """
    runnable = []
    for claimed in batch:
        problem = None
        if claimed.encrypted:
            problem = keys.open_claim(claimed) if keys is not None else "released"
        if problem is None:
            runnable.append(claimed)
        elif problem == DOES_NOT_DECRYPT:
            journal.add_text("task.claim", claimed.id, claimed.tenant, _attempt_details(claimed.attempt, worker))
            _fail(tx, journal, claimed, DOES_NOT_DECRYPT, now=now, action="task.fail", worker=worker, retry=False)
            tx.record_attempts([(claimed.id, claimed.claim, claimed.run, claimed.attempt, worker, claimed.started_at, now,
                                 "failed", DOES_NOT_DECRYPT, None)])
            _count_end(tx, claimed, "failed", now)
        else:
            tx.release_task(claimed.id, claimed.claim)
    return runnable


def _judge(
    picks: list[picking.Picked],
    *,
    first: bool,
    excluded_services: set[str],
    single_services: set[str],
    excluded_queues: set[str],
    queue_room: dict[str, int],
    rooms: dict[str, int],
) -> tuple[list[picking.Picked], bool]:
    """The picks a claim keeps, in order, and whether the first is a suspect that runs alone.

    Keeping a task uses up its group's room: a single service or queue
    closes after one, a queue or tenant with a max-running or a rate after
    its room. The sets and rooms are updated for the claim's next turn.
    """
    chosen: list[picking.Picked] = []
    for item in picks:
        row = item.row
        if row.service in excluded_services or row.queue in excluded_queues or rooms.get(row.tenant, 1) <= 0:
            continue  # its group filled up earlier in this batch
        if row.error == WORKER_LOST:
            if first and not chosen:
                return [item], True
            continue  # a suspect runs only alone, as the first claim of an empty slot
        chosen.append(item)
        if row.service in single_services:
            excluded_services.add(row.service)
        if row.queue in queue_room:
            queue_room[row.queue] -= 1
            excluded_queues.add(row.queue)  # one per slot; the room is kept for the other slots by the count
        if row.tenant in rooms:
            rooms[row.tenant] -= 1
    return chosen, False


def finish(
    tx: Tx,
    journal: Journal,
    claimed: Claim,
    outcome: Outcome,
    *,
    now: int,
    worker: str,
    attempt_rows: list[tuple[Any, ...]] | None = None,
    breakers: "circuit_breaker.BreakerCache | None" = None,
) -> str:
    """Record how an attempt ended; returns what became of the task.

    One of `completed`, `retry`, `failed`, `cancelled`, `released` or
    `stale` (the token no longer held the task: nothing changed). Attempt
    rows are appended to `attempt_rows` for the caller to record in one go
    (recorded at once without it); `breakers` caches circuit state per
    transaction.
    """
    task_id, token, kind = claimed.id, claimed.claim, outcome.kind
    breakers = breakers or circuit_breaker.BreakerCache(tx)
    note = tx.pending_cancel_note(task_id, token) if kind in ("released", "cancelled") else None
    if kind == "completed":
        has_dependents = tx.complete_task(task_id, token, now=now, result=outcome.result)
        if has_dependents is None:
            return _stale(journal, claimed, outcome, worker)
        _completed(tx, journal, claimed, has_dependents, now=now, worker=worker, breakers=breakers)
        became, error = "completed", None
    elif kind == "released" and note is None:
        if not tx.release_task(task_id, token):
            return _stale(journal, claimed, outcome, worker)
        journal.add("task.release", task_id, claimed.tenant, attempt=claimed.attempt, worker=worker)
        became, error = "released", "worker stopped before it started or finished"
    elif kind in ("cancelled", "released"):  # a released task whose cancel waits ends cancelled too
        if not tx.end_task(task_id, token, state="cancelled", now=now, error=f"{note or 'cancelled'} (stopped while running)"):
            return _stale(journal, claimed, outcome, worker)
        journal.add("task.cancel", task_id, claimed.tenant, attempt=claimed.attempt, worker=worker, stopped=True)
        chaining.block_dependents(tx, journal, [task_id], cause=f"task {task_id} cancelled")
        became, error = "cancelled", None
    else:
        error = outcome.error or "failed"
        became = _fail(tx, journal, claimed, error, now=now, action="task.fail", worker=worker, retry=not outcome.final)
        if became == "stale":
            return _stale(journal, claimed, outcome, worker)
        breakers.failure(journal, claimed.service, task_id, claimed.tenant, now)
        kind = "failed"
    row = (task_id, token, claimed.run, claimed.attempt, worker, claimed.started_at, now, kind, error, outcome.traceback)
    _count_end(tx, claimed, kind, now)
    if attempt_rows is None:
        tx.record_attempts([row])
    else:
        attempt_rows.append(row)
    return became


def _completed(tx: Tx, journal: Journal, claimed: Claim, has_dependents: bool, *, now: int, worker: str, breakers: Any) -> None:
    """What follows a completion: dependents (which may have been submitted since the claim), the circuit, the audit entry."""
    if has_dependents:
        tx.release_dependents(claimed.id)
    breakers.success(journal, claimed.service, claimed.id, claimed.tenant, now)
    journal.add_text("task.complete", claimed.id, claimed.tenant, _attempt_details(claimed.attempt, worker))


def finish_all(
    tx: Tx,
    journal: Journal,
    ended: Sequence[tuple[Claim, Outcome]],
    *,
    now: int,
    worker: str,
    breakers: "circuit_breaker.BreakerCache | None" = None,
) -> list[str]:
    """`finish` for many attempts in one transaction, completions in one statement; what became of each.

    Pass `breakers` to learn which circuits opened (`breakers.opened`).
    """
    attempt_rows: list[tuple[Any, ...]] = []
    breakers = breakers or circuit_breaker.BreakerCache(tx)
    done = [(claim, outcome) for claim, outcome in ended if outcome.kind == "completed"]
    held = tx.holding([claim.token for claim, _ in done]) if done else {}
    tx.complete_tasks([(outcome.result, now, claim.id, claim.claim) for claim, outcome in done if claim.token in held])
    endings = []
    for claim, outcome in ended:
        if outcome.kind != "completed":
            endings.append(finish(tx, journal, claim, outcome, now=now, worker=worker, attempt_rows=attempt_rows, breakers=breakers))
        elif claim.token not in held:
            endings.append(_stale(journal, claim, outcome, worker))
        else:
            _completed(tx, journal, claim, held[claim.token], now=now, worker=worker, breakers=breakers)
            attempt_rows.append((claim.id, claim.claim, claim.run, claim.attempt, worker, claim.started_at, now, "completed", None, None))
            _count_end(tx, claim, "completed", now)
            endings.append("completed")
    if attempt_rows:
        tx.record_attempts(attempt_rows)
    return endings


def _fail(tx: Tx, journal: Journal, claimed: Claim, error: str, *, now: int, action: str, worker: str, retry: bool = True) -> str:
    """Retry with backoff while retries remain (and `retry`), else move the task to the DLQ (`failed`).

    A task whose cancel was requested while this attempt ran ends cancelled
    instead: a failure must not turn a cancel into a retry.
    """
    note = tx.pending_cancel_note(claimed.id, claimed.claim)
    if note is not None:
        failed = "the running attempt failed" if is_sealed(error) else f"the running attempt failed: {error[:200]}"
        tx.end_task(claimed.id, claimed.claim, state="cancelled", now=now, error=f"{note} ({failed})")
        journal.add(action, claimed.id, claimed.tenant, attempt=claimed.attempt, worker=worker, error=redacted(error), cancelled=True)
        chaining.block_dependents(tx, journal, [claimed.id], cause=f"task {claimed.id} cancelled")
        return "cancelled"
    if retry and claimed.attempt <= claimed.max_retries:
        run_at = now + int(backoff_delay(claimed.backoff, claimed.attempt) * US_PER_SECOND)
        if not tx.retry_task(claimed.id, claimed.claim, error=error, run_at=run_at):
            return "stale"
        journal.add(action, claimed.id, claimed.tenant, attempt=claimed.attempt, worker=worker, error=redacted(error), retry_at=format_time(run_at))
        return "retry"
    if not tx.end_task(claimed.id, claimed.claim, state="failed", now=now, error=error):
        return "stale"
    journal.add(action, claimed.id, claimed.tenant, attempt=claimed.attempt, worker=worker, error=redacted(error), final=True)
    chaining.block_dependents(tx, journal, [claimed.id], cause=f"task {claimed.id} failed")
    return "failed"


def _count_end(tx: Tx, claimed: Claim, outcome: str, now: int) -> None:
    """The metric counters of an attempt that ended (kept although `dlq purge` and `prune` delete attempts)."""
    count_attempt_end(tx, queue=claimed.queue, backend=claimed.backend, outcome=outcome, started_at=claimed.started_at, now=now)


def _stale(journal: Journal, claimed: Claim, outcome: Outcome, worker: str) -> str:
    journal.add("task.stale", claimed.id, claimed.tenant, attempt=claimed.attempt, worker=worker, claim=claimed.claim, outcome=outcome.kind)
    return "stale"


EXPIRE_BATCH = 500


def cancel_expired(tx: Tx, journal: Journal, *, now: int) -> list[int]:
    """Cancel (reason `expired`) up to EXPIRE_BATCH pending tasks whose `--expires` has passed; their ids.

    Their dependents become blocked, as after any cancel.
    """
    rows = tx.expired_tasks(now, EXPIRE_BATCH)
    if not rows:
        return []
    tx.lock_tasks([task_id for task_id, _ in rows])
    still = tx.task_states([task_id for task_id, _ in rows])  # another worker's poll may have cancelled them first
    rows = [(task_id, tenant) for task_id, tenant in rows if still.get(task_id) == "pending"]
    ids = [task_id for task_id, _ in rows]
    tx.set_states(ids, "cancelled", finished_at=now, error="expired")
    for task_id, tenant in rows:
        journal.add("task.cancel", task_id, tenant, reason="expired", previous="pending")
    chaining.block_dependents(tx, journal, ids, cause="dependency expired")
    return ids


def reclaim_expired(tx: Tx, journal: Journal, *, now: int, worker: str) -> list[tuple[int, str]]:
    """Running tasks whose worker is gone: each counts a failed attempt (`worker lost`).

    A lease is taken over when its holder process is known to be gone (at
    once), or when it expired and its holder is not known to be running
    (see `tqcli.core.liveness`). Returns `(task_id, what became of it)` for
    each. A task whose cancel was requested before its worker died ends
    cancelled.
    """
    reclaimed = []
    db_id: str | None = None
    for row in tx.running_leases():
        cancel_requested, lease_until, holder = row[23:26]
        alive = liveness.holder_alive(holder)
        if alive or (alive is None and lease_until >= now):
            continue
        lost = Claim(row)
        tx.lock_tasks([lost.id])
        if tx.claimed_row(lost.id, lost.claim) is None:
            continue  # its worker finished it, or another worker reclaimed it, meanwhile
        if liveness.is_local(holder):  # its attempt's processes must be gone before it runs again
            cgroups.kill_holder(holder)
            db_id = (tx.meta_value("db_id") or "") if db_id is None else db_id
            end_marked([(HOLDER, holder), (ATTEMPT, attempt_marker(db_id, lost.id, lost.claim))])
        tx.record_attempts([(lost.id, lost.claim, lost.run, lost.attempt, lost.worker or "?", lost.started_at, now, "lost", WORKER_LOST, None)])
        count_attempt_end(tx, queue=lost.queue, backend=lost.backend, outcome="lost", started_at=lost.started_at, now=now,
                          host=tx.worker_host(lost.worker) if lost.worker else None)
        if cancel_requested:
            note = tx.pending_cancel_note(lost.id, lost.claim) or "cancelled"
            tx.end_task(lost.id, lost.claim, state="cancelled", now=now, error=f"{note} (its worker was lost)")
            journal.add("task.lost", lost.id, lost.tenant, attempt=lost.attempt, reclaimed_by=worker, cancelled=True)
            chaining.block_dependents(tx, journal, [lost.id], cause=f"task {lost.id} cancelled")
            reclaimed.append((lost.id, "cancelled"))
            continue
        reclaimed.append((lost.id, _fail(tx, journal, lost, WORKER_LOST, now=now, action="task.lost", worker=worker)))
    return reclaimed
