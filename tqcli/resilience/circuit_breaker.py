"""Circuit breakers per service key, shared by every worker through the database.

closed --(N consecutive failed attempts)--> open --(recovery timeout)-->
half-open (one trial task) --success--> closed, --failure--> open.

While a circuit is open its tasks stay pending and use no attempt: the claim
query leaves them out. A half-open circuit admits exactly one trial task;
if that trial ends any other way than success or failure (its worker died,
it was cancelled), the next worker admits a new trial.

Only failures of the work count (exceptions, non-zero exits, timeouts); a
lost worker or a cancel says nothing about the service.

These are the rules, run inside the caller's transaction (the claim, a
finishing attempt); `tqcli.resilience.breakers` is the service that lists,
resets and configures circuits.
"""

from __future__ import annotations

from typing import Any

from tqcli.security.audit import Journal
from tqcli.store.base import BreakerRow, Tx
from tqcli.units import US_PER_SECOND, format_time

DEFAULT_FAILURE_THRESHOLD = 5
DEFAULT_RECOVERY_TIMEOUT = 30.0
THRESHOLD_SETTING = "breaker.failure_threshold"
RECOVERY_SETTING = "breaker.recovery_timeout"


def defaults(tx: Tx) -> tuple[int, float]:
    """The database-wide defaults: (failure threshold, recovery timeout in seconds)."""
    threshold = tx.setting(THRESHOLD_SETTING)
    recovery = tx.setting(RECOVERY_SETTING)
    return (
        int(threshold) if threshold is not None else DEFAULT_FAILURE_THRESHOLD,
        float(recovery) if recovery is not None else DEFAULT_RECOVERY_TIMEOUT,
    )


def effective(tx: Tx, row: BreakerRow | None) -> tuple[int, float]:
    """The (failure threshold, recovery timeout) that apply to a circuit: its own, else the defaults."""
    threshold, recovery = defaults(tx)
    if row is not None:
        threshold = row.failure_threshold if row.failure_threshold is not None else threshold
        recovery = row.recovery_timeout if row.recovery_timeout is not None else recovery
    return threshold, recovery


def claim_gate(tx: Tx, now: int) -> tuple[list[str], set[str], set[str]]:
    """Services whose tasks may not be claimed now, those ready for a trial task, and those that counted a failure.

    The last include the first two: every circuit that is not closed, and
    closed ones with failures since their last success.
    """
    blocked: list[str] = []
    trial_ready: set[str] = set()
    noted = tx.noted_breakers()
    if any(state != "closed" for _, state, _, _ in noted):  # read again under their locks: two claims must not both admit a circuit's one trial
        tx.lock_breakers([key for key, state, _, _ in noted if state != "closed"])
        noted = tx.noted_breakers()
    for key, state, retry_at, trial_task in noted:
        if state == "closed":
            continue
        if state == "open" and retry_at is not None and retry_at > now:
            blocked.append(key)
        elif state == "half-open" and trial_task is not None and tx.task_state(trial_task) == "running":
            blocked.append(key)
        else:
            trial_ready.add(key)
    return blocked, trial_ready, {key for key, _, _, _ in noted}


def admit_trial(tx: Tx, journal: Journal, key: str, task_id: int, tenant: str, now: int) -> None:
    """Mark the circuit half-open with `task_id` as its one trial."""
    row = tx.breaker_row(key)
    tx.save_breaker(key, state="half-open", failures=row.failures if row else 0, opened_at=row.opened_at if row else None,
                    retry_at=None, trial_task=task_id, now=now)
    journal.add("breaker.half_open", task_id, tenant, key=key)


def record_success(tx: Tx, journal: Journal, key: str, task_id: int, tenant: str, now: int) -> None:
    """A successful attempt clears a closed circuit's failure count; the trial's success closes a half-open one.

    A success of an attempt claimed before the circuit opened (it ran in
    another slot meanwhile) changes nothing: the trial decides.
    """
    tx.lock_breakers([key])
    row = tx.breaker_row(key)
    if row is None or (row.state == "closed" and row.failures == 0):
        return
    if row.state == "open" or (row.state == "half-open" and row.trial_task != task_id):
        return
    tx.save_breaker(key, state="closed", failures=0, opened_at=None, retry_at=None, trial_task=None, now=now)
    if row.state != "closed":
        journal.add("breaker.close", task_id, tenant, key=key)


def record_failure(tx: Tx, journal: Journal, key: str, task_id: int, tenant: str, now: int) -> bool:
    """A failed attempt counts toward opening the circuit; a failed trial reopens it. True if it opened."""
    tx.lock_breakers([key])
    row = tx.breaker_row(key)
    threshold, recovery = effective(tx, row)
    state = row.state if row else "closed"
    failures = (row.failures if row else 0) + 1
    retry_at = now + int(recovery * US_PER_SECOND)
    if state == "half-open" or (state == "closed" and failures >= threshold):
        tx.save_breaker(key, state="open", failures=failures, opened_at=now, retry_at=retry_at, trial_task=None, now=now)
        reason = "trial failed" if state == "half-open" else f"{failures} consecutive failures"
        journal.add("breaker.open", task_id, tenant, key=key, reason=reason, retry_at=format_time(retry_at))
        return True
    tx.save_breaker(key, state=state, failures=failures, opened_at=row.opened_at if row else None,
                    retry_at=row.retry_at if row else None, trial_task=row.trial_task if row else None, now=now)
    return False


class BreakerCache:
    """Which circuits a transaction may have to update, read once per transaction.

    Most completions belong to services whose circuit is closed with no
    failures: for them a success changes nothing and costs no query.
    """

    def __init__(self, tx: Tx) -> None:
        self._tx = tx
        self._unclean: set[str] | None = None
        self.opened: set[str] = set()  # services whose circuit opened in this transaction

    def _keys(self) -> set[str]:
        if self._unclean is None:
            self._unclean = set(self._tx.unclean_breakers())
        return self._unclean

    def success(self, journal: Journal, key: str, task_id: int, tenant: str, now: int) -> None:
        """A successful attempt of `key`'s service (see `record_success`)."""
        if key in self._keys():
            record_success(self._tx, journal, key, task_id, tenant, now)
            self._keys().discard(key)

    def failure(self, journal: Journal, key: str, task_id: int, tenant: str, now: int) -> None:
        """A failed attempt of `key`'s service (see `record_failure`)."""
        if record_failure(self._tx, journal, key, task_id, tenant, now):
            self.opened.add(key)
        self._keys().add(key)


def is_blocking(tx: Tx, key: str, task_id: int, now: int) -> bool:
    """Whether the circuit of `key` keeps task `task_id` from being claimed now."""
    return blocking_detail(tx, key, task_id, now) is not None


def blocking_detail(tx: Tx, key: str, task_id: int, now: int) -> dict[str, Any] | None:
    """Why the circuit of `key` keeps task `task_id` from being claimed now, or None if it does not.

    `{"service", "state", "trial_at", "trial_task", "reset"}`: an open
    circuit's trial is due at `trial_at`; a half-open one waits for its
    running trial task; `reset` is the command that closes it by hand.
    """
    row = tx.breaker_row(key)
    if row is None or row.state == "closed":
        return None
    detail = {"service": key, "state": row.state, "trial_at": None, "trial_task": None, "reset": f"tqcli breaker reset {key}"}
    if row.state == "open":
        if row.retry_at is None or row.retry_at <= now:
            return None
        detail["trial_at"] = format_time(row.retry_at)
        return detail
    if row.trial_task is None or row.trial_task == task_id or tx.task_state(row.trial_task) != "running":
        return None
    detail["trial_task"] = row.trial_task
    return detail
