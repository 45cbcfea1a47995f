"""Queue and tenant limits: what a submit may add, and what a claim may take.

Rules run inside the caller's transaction, so they hold across every
worker and every shell. A limit is judged by counting tasks (never a
counter kept beside them, which every state change would have to keep
right); on PostgreSQL the settings rows of the limits being judged are
locked first (`Tx.lock_limits`), so two transactions cannot both count
below a limit and both pass it. Only queues and tenants that have a limit
are locked or counted. A `0` limit is no limit.

- Submit side: a queue's `max_length` bounds its unfinished tasks, a
  tenant's `max_pending` its pending and blocked ones (`admit`).
- Claim side: a paused queue is not claimed from; `max_running` bounds a
  queue's or tenant's running tasks (a claimed task waiting in a worker's
  window counts as running); a tenant's rate is a token bucket of capacity
  N refilled at N per period, full when set (`claim_limits`, `spend`).
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any, Iterable, Sequence

from tqcli.errors import InvalidInput, LimitReached
from tqcli.store.base import TenantRow, Tx
from tqcli.units import US_PER_SECOND, format_time

RATE_PERIODS = {"s": 1.0, "m": 60.0, "h": 3600.0}
_RATE = re.compile(r"^([0-9]+)/([smh])$")


def parse_rate(text: str) -> tuple[int, float] | None:
    """`N/PERIOD` (PERIOD `s`, `m` or `h`) as `(N, seconds)`; `none` as None."""
    value = text.strip()
    if value.lower() == "none":
        return None
    match = _RATE.match(value)
    if match is None or int(match.group(1)) <= 0:
        raise InvalidInput(f"invalid rate {text!r}: give N/PERIOD with N a positive whole number and PERIOD s, m or h (e.g. 100/m), or none")
    return int(match.group(1)), RATE_PERIODS[match.group(2)]


def format_rate(count: int | None, period: float | None) -> str | None:
    """A stored rate as `N/PERIOD` (the form `--rate` takes), or None."""
    if count is None or period is None:
        return None
    unit = next((name for name, seconds in RATE_PERIODS.items() if seconds == period), None)
    return f"{count}/{unit}" if unit else f"{count}/{period:g}s"


def tokens_now(row: TenantRow, now: int) -> float | None:
    """How many tasks of a rated tenant may start now: its bucket, refilled since it was last written."""
    if row.rate_count is None or row.rate_period is None:
        return None
    if row.tokens is None or row.refilled_at is None:
        return float(row.rate_count)  # full when the rate is set
    elapsed = max(0, now - row.refilled_at) / US_PER_SECOND
    return min(float(row.rate_count), row.tokens + elapsed * row.rate_count / row.rate_period)


def next_token_at(row: TenantRow, tokens: float, now: int) -> int:
    """When a rated tenant's bucket next holds a whole token."""
    assert row.rate_count and row.rate_period
    missing = 1.0 - tokens
    return now + int(missing * row.rate_period / row.rate_count * US_PER_SECOND) + 1


# -- submit side -----------------------------------------------------------------


def admit(tx: Tx, added: Iterable[tuple[str, str]], *, what: str = "submitted") -> None:
    """Refuse (LimitReached, exit 5) new pending or blocked tasks that would pass a limit; `added` is `(queue, tenant)` each.

    Call it before writing anything: the caller's transaction then enqueues
    nothing. Exact at the boundary: the settings rows are locked and the
    counts taken under the lock.
    """
    added = list(added)
    per_queue = Counter(queue for queue, _ in added)
    per_tenant = Counter(tenant for _, tenant in added)
    queues = [row.name for row in tx.queue_rows(list(per_queue)) if row.max_length > 0]
    tenants = [row.name for row in tx.tenant_rows(list(per_tenant)) if row.max_pending > 0]
    if not queues and not tenants:
        return
    tx.lock_limits(queues, tenants)
    for row in tx.queue_rows(queues):  # read again under the lock
        _refuse_past("queue", row.name, "max-length", row.max_length, tx.unfinished_in_queue(row.name), "unfinished",
                     per_queue[row.name], what)
    for row in tx.tenant_rows(tenants):
        _refuse_past("tenant", row.name, "max-pending", row.max_pending, tx.waiting_in_tenant(row.name), "pending or blocked",
                     per_tenant[row.name], what)


def _refuse_past(kind: str, name: str, limit_name: str, limit: int, count: int, counted: str, more: int, what: str) -> None:
    """LimitReached in SPEC's words when `more` new tasks would take `count` past `limit` (0: no limit)."""
    if limit > 0 and count + more > limit:
        raise LimitReached(
            f"{kind} {name}: {limit_name} {limit} reached ({count} {counted}, {more} {what}); "
            f"nothing was enqueued: wait for workers to drain it, or raise the limit with "
            f"'tqcli {kind} set {name} --{limit_name} N'",
            kind=kind, name=name,
        )


# -- claim side ------------------------------------------------------------------


class ClaimLimits:
    """What the queue and tenant limits leave a claim made now.

    `closed_queues` may not be claimed from (paused, or at max-running);
    `queue_room` is how many more tasks each other queue with a max-running
    may start, `tenant_room` the same for tenants with a max-running or a
    rate (0: none now). `single_queues` and `single_tenants` have a
    max-running: a slot takes at most one of their tasks at a time.
    `buckets` holds each rated tenant's row and its tokens now.

    A plain class, not a dataclass: `tqcli submit` imports this module, and
    generating dataclass code would cost its start-up more than it saves.
    """

    __slots__ = ("closed_queues", "queue_room", "tenant_room", "single_queues", "single_tenants", "buckets")

    def __init__(self) -> None:
        self.closed_queues: set[str] = set()
        self.queue_room: dict[str, int] = {}
        self.tenant_room: dict[str, int] = {}
        self.single_queues: set[str] = set()
        self.single_tenants: set[str] = set()
        self.buckets: dict[str, tuple[TenantRow, float]] = {}


def claim_limits(tx: Tx, now: int, *, queues: Sequence[str] = (), tenants: Sequence[str] = (), lock: bool = True) -> ClaimLimits:
    """The limits a claim made at `now` must keep, for a worker limited to `queues` and `tenants` (empty: all).

    With `lock`, the settings of every limit that counts running tasks or
    spends tokens stay locked until commit (queues, then tenants, in name
    order), and are read again under the lock.
    """
    limited_queues, limited_tenants = tx.claim_limits()
    queue_rows = [row for row in limited_queues if not queues or row.name in queues]
    tenant_rows = [row for row in limited_tenants if not tenants or row.name in tenants]
    limits = ClaimLimits()
    if not queue_rows and not tenant_rows:
        return limits
    counted_queues = [row.name for row in queue_rows if row.max_running > 0 and not row.paused]
    if lock and (counted_queues or tenant_rows):
        tx.lock_limits(counted_queues, [row.name for row in tenant_rows])
        queue_rows = [row for row in tx.queue_rows([row.name for row in queue_rows]) if row.paused or row.max_running > 0]
        tenant_rows = [row for row in tx.tenant_rows([row.name for row in tenant_rows]) if row.max_running > 0 or row.rate_count is not None]
    running_queue: Counter[str] = Counter()
    running_tenant: Counter[str] = Counter()
    if any(row.max_running for row in queue_rows) or any(row.max_running for row in tenant_rows):
        for queue, tenant, count in tx.running_counts():
            running_queue[queue] += count
            running_tenant[tenant] += count
    for queue_row in queue_rows:
        if queue_row.paused:
            limits.closed_queues.add(queue_row.name)
        elif queue_row.max_running > 0:
            room = queue_row.max_running - running_queue[queue_row.name]
            if room <= 0:
                limits.closed_queues.add(queue_row.name)
            else:
                limits.queue_room[queue_row.name] = room
                limits.single_queues.add(queue_row.name)
    for tenant_row in tenant_rows:
        rooms = []
        if tenant_row.max_running > 0:
            rooms.append(tenant_row.max_running - running_tenant[tenant_row.name])
            limits.single_tenants.add(tenant_row.name)
        tokens = tokens_now(tenant_row, now)
        if tokens is not None:
            limits.buckets[tenant_row.name] = (tenant_row, tokens)
            rooms.append(int(tokens))
        limits.tenant_room[tenant_row.name] = max(0, min(rooms))
    return limits


def spend(tx: Tx, limits: ClaimLimits, started: Counter[str], now: int) -> None:
    """Take one token per task started from each rated tenant's bucket (`started`: tasks per tenant)."""
    for tenant, count in sorted(started.items()):
        bucket = limits.buckets.get(tenant)
        if bucket is not None and count:
            row, tokens = bucket
            tx.save_tokens(tenant, tokens - count, now)
            limits.buckets[tenant] = (row, tokens - count)


def holding_back(tx: Tx, queue: str, tenant: str, now: int) -> tuple[str, dict[str, Any]] | None:
    """What keeps a ready task of `queue` and `tenant` from being claimed now (SPEC's `waiting`), and its detail; None if nothing.

    One of `queue paused`, `queue limit` (max-running), `tenant quota`
    (max-running) or `tenant rate` (its bucket is empty until
    `next_token_at`).
    """
    (queue_row,) = tx.queue_rows([queue]) or (None,)
    (tenant_row,) = tx.tenant_rows([tenant]) or (None,)
    if queue_row is not None and queue_row.paused:
        return "queue paused", {"queue": queue, "resume": f"tqcli queue set {queue} --resume"}
    running = Counter()
    if (queue_row is not None and queue_row.max_running) or (tenant_row is not None and tenant_row.max_running):
        for row_queue, row_tenant, count in tx.running_counts():
            running[("queue", row_queue)] += count
            running[("tenant", row_tenant)] += count
    if queue_row is not None and queue_row.max_running and running[("queue", queue)] >= queue_row.max_running:
        return "queue limit", {"queue": queue, "max_running": queue_row.max_running, "running": running[("queue", queue)]}
    if tenant_row is not None:
        if tenant_row.max_running and running[("tenant", tenant)] >= tenant_row.max_running:
            return "tenant quota", {"tenant": tenant, "max_running": tenant_row.max_running, "running": running[("tenant", tenant)]}
        tokens = tokens_now(tenant_row, now)
        if tokens is not None and tokens < 1:
            return "tenant rate", {
                "tenant": tenant, "rate": format_rate(tenant_row.rate_count, tenant_row.rate_period),
                "next_token_at": format_time(next_token_at(tenant_row, tokens, now)),
            }
    return None



HELD_BACK = ("queue paused", "queue limit", "tenant quota", "tenant rate")


def describe_hold(waiting: str, detail: dict[str, Any]) -> str:
    """What a queue's or tenant's limit that holds a task back says, in words (`waiting` and its detail, see `holding_back`)."""
    if waiting == "queue paused":
        return f"queue {detail['queue']} is paused ('{detail['resume']}' resumes it)"
    if waiting == "tenant rate":
        return f"tenant {detail['tenant']} used up its rate of {detail['rate']} (the next may start at {detail['next_token_at']})"
    owner = f"queue {detail['queue']}" if waiting == "queue limit" else f"tenant {detail['tenant']}"
    return f"{owner} runs {detail['running']} task(s), its max-running"
