"""Circuit breakers per service key, shared by every worker through the database.

closed --(N consecutive failed attempts)--> open --(recovery timeout)-->
half-open (one trial task) --success--> closed, --failure--> open.

While a circuit is open its tasks stay pending and use no attempt: the claim
query leaves them out. A half-open circuit admits exactly one trial task;
if that trial ends any other way than success or failure (its worker died,
it was cancelled), the next worker admits a new trial.

Only failures of the work count (exceptions, non-zero exits, timeouts); a
lost worker or a cancel says nothing about the service.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tqcli.core.context import Context
from tqcli.errors import InvalidInput, NotFound
from tqcli.security.audit import Journal
from tqcli.units import US_PER_SECOND, format_time, parse_duration

DEFAULT_FAILURE_THRESHOLD = 5
DEFAULT_RECOVERY_TIMEOUT = 30.0
_THRESHOLD_SETTING = "breaker.failure_threshold"
_RECOVERY_SETTING = "breaker.recovery_timeout"
# How many of the newest tasks `in_use` reads besides the unfinished ones (a bounded scan: no index covers service).
RECENT_TASKS = 100_000


def defaults(tx: Any) -> tuple[int, float]:
    """The database-wide defaults: (failure threshold, recovery timeout in seconds)."""
    threshold = tx.setting(_THRESHOLD_SETTING)
    recovery = tx.setting(_RECOVERY_SETTING)
    return (
        int(threshold) if threshold is not None else DEFAULT_FAILURE_THRESHOLD,
        float(recovery) if recovery is not None else DEFAULT_RECOVERY_TIMEOUT,
    )


def _effective(tx: Any, row: tuple[Any, ...] | None) -> tuple[int, float]:
    threshold, recovery = defaults(tx)
    if row is not None:
        threshold = row[3] if row[3] is not None else threshold
        recovery = row[4] if row[4] is not None else recovery
    return threshold, recovery


def claim_gate(tx: Any, now: int) -> tuple[list[str], set[str]]:
    """Services whose tasks may not be claimed now, and those ready for a trial task."""
    blocked: list[str] = []
    trial_ready: set[str] = set()
    tripped = tx.tripped_breakers()
    if tripped:  # read again under their locks: two claims must not both admit a circuit's one trial
        tx.lock_breakers([row[0] for row in tripped])
        tripped = tx.tripped_breakers()
    for key, state, retry_at, trial_task in tripped:
        if state == "open" and retry_at is not None and retry_at > now:
            blocked.append(key)
        elif state == "half-open" and trial_task is not None and tx.task_state(trial_task) == "running":
            blocked.append(key)
        else:
            trial_ready.add(key)
    return blocked, trial_ready


def admit_trial(tx: Any, journal: Journal, key: str, task_id: int, tenant: str, now: int) -> None:
    """Mark the circuit half-open with `task_id` as its one trial."""
    row = tx.breaker_row(key)
    tx.save_breaker(key, state="half-open", failures=row[2] if row else 0, opened_at=row[5] if row else None,
                    retry_at=None, trial_task=task_id, now=now)
    journal.add("breaker.half_open", task_id, tenant, key=key)


def record_success(tx: Any, journal: Journal, key: str, task_id: int, tenant: str, now: int) -> None:
    """A successful attempt closes the circuit and clears its failure count."""
    tx.lock_breakers([key])
    row = tx.breaker_row(key)
    if row is None or (row[1] == "closed" and row[2] == 0):
        return
    tx.save_breaker(key, state="closed", failures=0, opened_at=None, retry_at=None, trial_task=None, now=now)
    if row[1] != "closed":
        journal.add("breaker.close", task_id, tenant, key=key)


def record_failure(tx: Any, journal: Journal, key: str, task_id: int, tenant: str, now: int) -> bool:
    """A failed attempt counts toward opening the circuit; a failed trial reopens it. True if it opened."""
    tx.lock_breakers([key])
    row = tx.breaker_row(key)
    threshold, recovery = _effective(tx, row)
    state = row[1] if row else "closed"
    failures = (row[2] if row else 0) + 1
    retry_at = now + int(recovery * US_PER_SECOND)
    if state == "half-open" or (state == "closed" and failures >= threshold):
        tx.save_breaker(key, state="open", failures=failures, opened_at=now, retry_at=retry_at, trial_task=None, now=now)
        reason = "trial failed" if state == "half-open" else f"{failures} consecutive failures"
        journal.add("breaker.open", task_id, tenant, key=key, reason=reason, retry_at=format_time(retry_at))
        return True
    tx.save_breaker(key, state=state, failures=failures, opened_at=row[5] if row else None,
                    retry_at=row[6] if row else None, trial_task=row[7] if row else None, now=now)
    return False


class BreakerCache:
    """Which circuits a transaction may have to update, read once per transaction.

    Most completions belong to services whose circuit is closed with no
    failures: for them a success changes nothing and costs no query.
    """

    def __init__(self, tx: Any) -> None:
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


def is_blocking(tx: Any, key: str, task_id: int, now: int) -> bool:
    """Whether the circuit of `key` keeps task `task_id` from being claimed now."""
    return blocking_detail(tx, key, task_id, now) is not None


def blocking_detail(tx: Any, key: str, task_id: int, now: int) -> dict[str, Any] | None:
    """Why the circuit of `key` keeps task `task_id` from being claimed now, or None if it does not.

    `{"service", "state", "trial_at", "trial_task", "reset"}`: an open
    circuit's trial is due at `trial_at`; a half-open one waits for its
    running trial task; `reset` is the command that closes it by hand.
    """
    row = tx.breaker_row(key)
    if row is None or row[1] == "closed":
        return None
    detail = {"service": key, "state": row[1], "trial_at": None, "trial_task": None, "reset": f"tqcli breaker reset {key}"}
    if row[1] == "open":
        if row[6] is None or row[6] <= now:
            return None
        detail["trial_at"] = format_time(row[6])
        return detail
    if row[7] is None or row[7] == task_id or tx.task_state(row[7]) != "running":
        return None
    detail["trial_task"] = row[7]
    return detail


@dataclass
class Breaker:
    """One circuit as `breaker list` shows it, with its effective thresholds."""

    key: str
    state: str
    failures: int
    failure_threshold: int
    recovery_timeout: float
    opened_at: int | None
    retry_at: int | None

    def to_json(self) -> dict[str, Any]:
        """The breaker object of `breaker list --json`."""
        return {
            "key": self.key,
            "state": self.state,
            "failures": self.failures,
            "failure_threshold": self.failure_threshold,
            "recovery_timeout": self.recovery_timeout,
            "opened_at": format_time(self.opened_at),
            "retry_at": format_time(self.retry_at),
        }


def _check_settings(failure_threshold: int | None, recovery_timeout: str | float | None) -> float | None:
    if failure_threshold is not None and (isinstance(failure_threshold, bool) or not 1 <= failure_threshold <= 1_000_000):
        raise InvalidInput(f"invalid failure threshold {failure_threshold!r}: use a whole number from 1 up")
    if recovery_timeout is None:
        return None
    seconds = parse_duration(str(recovery_timeout), what="recovery timeout")
    if seconds <= 0:
        raise InvalidInput("invalid recovery timeout: it must be longer than 0 seconds")
    return seconds


class BreakerService:
    """`breaker list`, `breaker reset`, `breaker set`."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def list(self) -> list[Breaker]:
        """Every circuit that has been configured or has seen a failure."""
        with self._ctx.read() as tx:
            rows = tx.breaker_rows()
            return [Breaker(row[0], row[1], row[2], *_effective(tx, row), row[5], row[6]) for row in rows]

    def defaults(self) -> tuple[int, float]:
        """The database-wide defaults: (failure threshold, recovery timeout)."""
        with self._ctx.read() as tx:
            return defaults(tx)

    def reset(self, key: str) -> bool:
        """Close a circuit and clear its failures (its thresholds stay); False when it was closed with none counted."""
        now = self._ctx.clock.now()
        with self._ctx.change() as (tx, journal):
            tx.lock_breakers([key])
            row = tx.breaker_row(key)
            if row is None:
                raise NotFound(f"no circuit breaker for service {key!r}: 'tqcli breaker list' shows them")
            if row[1] == "closed" and row[2] == 0:
                return False
            tx.save_breaker(key, state="closed", failures=0, opened_at=None, retry_at=None, trial_task=None, now=now)
            journal.add("breaker.reset", None, None, key=key, previous=row[1])
        return True

    def configure(self, key: str | None, *, failure_threshold: int | None = None, recovery_timeout: str | float | None = None) -> bool:
        """Set one service's thresholds, or (key None) the defaults of every service; False when they already had these values.

        A service's own values are compared: giving a service the value it
        inherits from the defaults pins it, which is a change. The defaults
        are compared with what applies (the built-in ones when none is set).
        """
        seconds = _check_settings(failure_threshold, recovery_timeout)
        if failure_threshold is None and seconds is None:
            raise InvalidInput("nothing to set: give --failure-threshold and/or --recovery-timeout")
        if key is not None and (not key.strip() or len(key) > 256):
            raise InvalidInput("invalid service key: use 1-256 characters")
        now = self._ctx.clock.now()
        with self._ctx.change() as (tx, journal):
            if key is None:
                current = defaults(tx)
            else:
                tx.lock_breakers([key])
                row = tx.breaker_row(key)
                current = (row[3], row[4]) if row is not None else (None, None)
            wanted = (current[0] if failure_threshold is None else failure_threshold, current[1] if seconds is None else seconds)
            if wanted == current:
                return False
            if key is None:
                if failure_threshold is not None:
                    tx.set_setting(_THRESHOLD_SETTING, str(failure_threshold))
                if seconds is not None:
                    tx.set_setting(_RECOVERY_SETTING, repr(seconds))
            else:
                tx.configure_breaker(key, failure_threshold=failure_threshold, recovery_timeout=seconds, now=now)
            if seconds is not None:
                tx.reschedule_open_breakers(key, seconds)
            details = {"failure_threshold": failure_threshold, "recovery_timeout": seconds}
            journal.add("breaker.set", None, None, key=key or "default", **details)
        return True

    def in_use(self, key: str) -> bool:
        """Whether a task, or a schedule's tasks, use service `key` as far as a bounded look can tell.

        No index covers `tasks.service`: the unfinished tasks are looked up
        through the claim index and the others among the newest
        `RECENT_TASKS` only, so an old finished task may go unseen.
        """
        with self._ctx.read() as tx:
            if tx.service_has_tasks(key, recent=RECENT_TASKS):
                return True
            for row in tx.schedule_rows():
                spec = json.loads(row[5])
                if spec.get("service", f"{spec.get('backend', 'simple')}:{spec.get('target')}") == key:
                    return True
        return False
