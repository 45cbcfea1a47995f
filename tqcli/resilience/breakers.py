"""The circuit-breaker service: list, reset and configure the circuits of `tqcli breaker`.

The rules a claim and a finishing attempt apply live in
`tqcli.resilience.circuit_breaker`; this module is what a person asks for.
Each change also runs inside a caller's transaction: `reset_breaker`,
`configure_breaker` (see "Changes that compose" in docs/design.md);
`change_breaker` is the latter's change without the audit entry, for
`apply`, which audits all it changes as one `settings.apply`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tqcli.core.context import Context, retrying
from tqcli.errors import InvalidInput, NotFound
from tqcli.resilience.circuit_breaker import RECOVERY_SETTING, THRESHOLD_SETTING, defaults, effective
from tqcli.security.audit import Journal
from tqcli.store.base import Tx
from tqcli.units import format_time, parse_duration

# How many of the newest tasks `in_use` reads besides the unfinished ones (a bounded scan: no index covers service).
RECENT_TASKS = 100_000


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


def check_breaker_settings(failure_threshold: int | None, recovery_timeout: str | float | None) -> float | None:
    """The recovery timeout in seconds (None: not given), once both values are checked."""
    if failure_threshold is not None and (
        isinstance(failure_threshold, bool) or not isinstance(failure_threshold, int) or not 1 <= failure_threshold <= 1_000_000
    ):
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
            self._ctx.authorize_any(tx, "read", "list circuit breakers")
            rows = tx.breaker_rows()
            return [Breaker(row.key, row.state, row.failures, *effective(tx, row), row.opened_at, row.retry_at) for row in rows]

    def defaults(self) -> tuple[int, float]:
        """The database-wide defaults: (failure threshold, recovery timeout)."""
        with self._ctx.read() as tx:
            return defaults(tx)

    @retrying
    def reset(self, key: str) -> bool:
        """Close a circuit and clear its failures (its thresholds stay); False when it was closed with none counted."""
        with self._ctx.change() as (tx, journal):
            return reset_breaker(self._ctx, tx, journal, key)

    @retrying
    def configure(self, key: str | None, *, failure_threshold: int | None = None, recovery_timeout: str | float | None = None) -> bool:
        """Set one service's thresholds, or (key None) the defaults of every service; False when they already had these values.

        A service's own values are compared: giving a service the value it
        inherits from the defaults pins it, which is a change. The defaults
        are compared with what applies (the built-in ones when none is set).
        """
        _check_configure(key, failure_threshold, recovery_timeout)
        with self._ctx.change() as (tx, journal):
            return configure_breaker(self._ctx, tx, journal, key, failure_threshold=failure_threshold, recovery_timeout=recovery_timeout)

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
                spec = json.loads(row.spec)
                if spec.get("service", f"{spec.get('backend', 'simple')}:{spec.get('target')}") == key:
                    return True
        return False


def _check_configure(key: str | None, failure_threshold: int | None, recovery_timeout: str | float | None) -> float | None:
    """The recovery timeout in seconds (None: unchanged), once the values and the key are checked."""
    seconds = check_breaker_settings(failure_threshold, recovery_timeout)
    if failure_threshold is None and seconds is None:
        raise InvalidInput("nothing to set: give --failure-threshold and/or --recovery-timeout")
    if key is not None and (not key.strip() or len(key) > 256):
        raise InvalidInput("invalid service key: use 1-256 characters")
    return seconds


def reset_breaker(ctx: Context, tx: Tx, journal: Journal, key: str) -> bool:
    """`BreakerService.reset` inside the caller's transaction; False when nothing needed resetting."""
    ctx.authorize(tx, "operate", f"reset circuit breaker {key}")
    now = ctx.clock.now()
    tx.lock_breakers([key])
    row = tx.breaker_row(key)
    if row is None:
        raise NotFound(f"no circuit breaker for service {key!r}: 'tqcli breaker list' shows them")
    if row.state == "closed" and row.failures == 0:
        return False
    tx.save_breaker(key, state="closed", failures=0, opened_at=None, retry_at=None, trial_task=None, now=now)
    journal.add("breaker.reset", None, None, key=key, previous=row.state)
    return True


def configure_breaker(
    ctx: Context,
    tx: Tx,
    journal: Journal,
    key: str | None,
    *,
    failure_threshold: int | None = None,
    recovery_timeout: str | float | None = None,
) -> bool:
    """`BreakerService.configure` inside the caller's transaction; False when the values were already these."""
    seconds = _check_configure(key, failure_threshold, recovery_timeout)
    if not change_breaker(ctx, tx, key, failure_threshold=failure_threshold, recovery_timeout=seconds):
        return False
    details = {"failure_threshold": failure_threshold, "recovery_timeout": seconds}
    journal.add("breaker.set", None, None, key=key or "default", **details)
    return True


def change_breaker(
    ctx: Context, tx: Tx, key: str | None, *, failure_threshold: int | None = None, recovery_timeout: str | float | None = None
) -> dict[str, dict[str, Any]]:
    """`configure_breaker` without its audit entry; `{FIELD: {"from", "to"}}` of what changed (empty: nothing).

    A service's own values are compared (None: it has none, and inherits
    the default); the defaults (key None) as they apply.
    """
    ctx.authorize(tx, "operate", f"set circuit breaker {key or 'defaults'}")
    seconds = _check_configure(key, failure_threshold, recovery_timeout)
    now = ctx.clock.now()
    if key is None:
        current: tuple[int | None, float | None] = defaults(tx)
    else:
        tx.lock_breakers([key])
        row = tx.breaker_row(key)
        current = (row.failure_threshold, row.recovery_timeout) if row is not None else (None, None)
    wanted = (current[0] if failure_threshold is None else failure_threshold, current[1] if seconds is None else seconds)
    if wanted == current:
        return {}
    if key is None:
        if failure_threshold is not None:
            tx.set_setting(THRESHOLD_SETTING, str(failure_threshold))
        if seconds is not None:
            tx.set_setting(RECOVERY_SETTING, repr(seconds))
    else:
        tx.configure_breaker(key, failure_threshold=failure_threshold, recovery_timeout=seconds, now=now)
    if seconds is not None:
        tx.reschedule_open_breakers(key, seconds)
    return {
        field: {"from": old, "to": new}
        for field, old, new in zip(("failure_threshold", "recovery_timeout"), current, wanted)
        if old != new
    }
