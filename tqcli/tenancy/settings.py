"""`queue list|set` and `tenant list|set`: the limits teams share a database by, stored in it and audited.

A queue or tenant has settings once one was set; until then it has none
of its limits and weight 1. Lists show those with settings and those with
tasks, each with the counts its limits are judged by. `change_queue` and
`change_tenant` change one inside the caller's transaction and return the
difference, which `apply` composes (see `tqcli.tenancy.declarative`);
`set_queue` and `set_tenant` audit it as `queue.set` and `tenant.set`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

from tqcli.core.context import Context, retrying
from tqcli.errors import InvalidInput
from tqcli.store.base import QueueRow, TenantRow, Tx
from tqcli.tenancy.fairness import MAX_WEIGHT
from tqcli.tenancy.limits import format_rate, parse_rate, tokens_now
from tqcli.units import check_name

UNSET: Any = object()  # an option not given: keep what is stored
_MAX_LIMIT = 2**62


@dataclass
class QueueInfo:
    """A queue's settings (0 is no limit) and its counts: unfinished (pending, blocked, running) and running."""

    name: str
    max_length: int
    max_running: int
    paused: bool
    encrypt: bool
    unfinished: int
    running: int

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of `queue list --json`."""
        return asdict(self)


@dataclass
class TenantInfo:
    """A tenant's settings (0 is no limit; rate `N/PERIOD` or None) and its counts; `tokens` is its rate bucket now."""

    name: str
    max_pending: int
    max_running: int
    rate: str | None
    weight: float
    pending: int
    running: int
    tokens: float | None

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of `tenant list --json`."""
        return asdict(self)


def default_queue(name: str) -> QueueRow:
    """The settings of a queue that has none."""
    return QueueRow(name, 0, 0, 0, 0)


def default_tenant(name: str) -> TenantRow:
    """The settings of a tenant that has none."""
    return TenantRow(name, 0, 0, None, None, 1.0, None, None)


def check_limit(value: int, *, what: str) -> int:
    """A limit as given: a whole number, 0 (none) or more."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_LIMIT:
        raise InvalidInput(f"invalid {what} {_shown(value)}: use a whole number, 0 for no limit")
    return value


def _shown(value: object) -> str:
    """A value as the user wrote it: `0`, not `0.0`; `true`, not `True`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return repr(value) if isinstance(value, str) else str(value)


def check_weight(value: float) -> float:
    """A tenant's weight: a positive number up to MAX_WEIGHT."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= MAX_WEIGHT or value != value:
        raise InvalidInput(f"invalid weight {_shown(value)}: use a positive number (default 1; 2 takes twice the turns of 1) up to {MAX_WEIGHT:g}")
    return float(value)


def queue_settings(row: QueueRow) -> dict[str, Any]:
    """The settings of a queue as `apply` and `export` name them."""
    return {"max_length": row.max_length, "max_running": row.max_running, "paused": bool(row.paused), "encrypt": bool(row.encrypt)}


def tenant_settings(row: TenantRow) -> dict[str, Any]:
    """The settings of a tenant as `apply` and `export` name them."""
    return {"max_pending": row.max_pending, "max_running": row.max_running, "rate": format_rate(row.rate_count, row.rate_period),
            "weight": row.weight}


def change_queue(tx: Tx, name: str, *, max_length: int = UNSET, max_running: int = UNSET, paused: bool = UNSET,
                 encrypt: bool = UNSET) -> dict[str, dict[str, Any]]:
    """Change a queue's settings inside the caller's transaction; `{FIELD: {"from", "to"}}` of what changed (empty: nothing)."""
    check_name(name, what="queue")
    (row,) = tx.queue_rows([name]) or (default_queue(name),)
    new = row._replace(**{
        field: int(value) if field in ("paused", "encrypt") else check_limit(value, what=field.replace("_", "-"))
        for field, value in (("max_length", max_length), ("max_running", max_running), ("paused", paused), ("encrypt", encrypt))
        if value is not UNSET
    })
    diff = _diff(queue_settings(row), queue_settings(new))
    if diff:
        tx.save_queue(new)
    return diff


def change_tenant(tx: Tx, name: str, *, max_pending: int = UNSET, max_running: int = UNSET, rate: str | None = UNSET,
                  weight: float = UNSET) -> dict[str, dict[str, Any]]:
    """Change a tenant's settings inside the caller's transaction; `{FIELD: {"from", "to"}}` of what changed (empty: nothing).

    `rate` is `N/PERIOD` or None (`none`: no rate). A new or changed rate
    starts with a full bucket.
    """
    check_name(name, what="tenant")
    (row,) = tx.tenant_rows([name]) or (default_tenant(name),)
    changes: dict[str, Any] = {}
    if max_pending is not UNSET:
        changes["max_pending"] = check_limit(max_pending, what="max-pending")
    if max_running is not UNSET:
        changes["max_running"] = check_limit(max_running, what="max-running")
    if weight is not UNSET:
        changes["weight"] = check_weight(weight)
    if rate is not UNSET:
        parsed = None if rate is None else parse_rate(rate)
        count, period = parsed if parsed is not None else (None, None)
        if (count, period) != (row.rate_count, row.rate_period):
            changes.update(rate_count=count, rate_period=period, tokens=None, refilled_at=None)
    new = row._replace(**changes)
    diff = _diff(tenant_settings(row), tenant_settings(new))
    if diff:
        tx.save_tenant(new)
    return diff


def _diff(old: dict[str, Any], new: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {key: {"from": old[key], "to": new[key]} for key in old if old[key] != new[key]}


class TenancyService:
    """`queue list|set` and `tenant list|set`."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def queues(self) -> list[QueueInfo]:
        """Every queue with settings or tasks, by name."""
        with self._ctx.read() as tx:
            self._ctx.authorize_any(tx, "read", "list queues")
            return _queue_infos(tx)

    def tenants(self) -> list[TenantInfo]:
        """Every tenant with settings or tasks, by name."""
        with self._ctx.read() as tx:
            visible = self._ctx.authorize_any(tx, "read", "list tenants").tenants("read")
            infos = _tenant_infos(tx, self._ctx.clock.now())
        return infos if visible is None else [info for info in infos if info.name in visible]

    @retrying
    def set_queue(self, name: str, **changes: Any) -> tuple[QueueInfo, bool]:
        """Change a queue's settings (see `change_queue`); the queue as it now is, and whether anything changed."""
        if not changes:
            raise InvalidInput("nothing to set: give --max-length, --max-running, --pause, --resume, --encrypt or --no-encrypt")
        with self._ctx.change() as (tx, journal):
            self._ctx.authorize(tx, "operate", f"set queue {name}")
            diff = change_queue(tx, name, **changes)
            if diff:
                journal.add("queue.set", None, None, queue=name, **diff)
            info = next(info for info in _queue_infos(tx, [name]))
        return info, bool(diff)

    @retrying
    def set_tenant(self, name: str, **changes: Any) -> tuple[TenantInfo, bool]:
        """Change a tenant's settings (see `change_tenant`); the tenant as it now is, and whether anything changed."""
        if not changes:
            raise InvalidInput("nothing to set: give --max-pending, --max-running, --rate or --weight")
        with self._ctx.change() as (tx, journal):
            self._ctx.authorize(tx, "operate", f"set tenant {name}")
            diff = change_tenant(tx, name, **changes)
            if diff:
                journal.add("tenant.set", None, name, **diff)
            info = next(info for info in _tenant_infos(tx, self._ctx.clock.now(), [name]))
        return info, bool(diff)


def configured_limits(tx: Tx, now: int) -> tuple[list[QueueInfo], list[TenantInfo]]:
    """The queues and tenants that have a limit (or are paused), with their counts: what `status` shows beside its counts.

    Counted per queue and tenant by index searches, so `status` pays for
    the limits that are set, not for the size of the queue.
    """
    queues = [row for row in tx.queue_rows() if row.max_length or row.max_running or row.paused]
    tenants = [row for row in tx.tenant_rows() if row.max_pending or row.max_running or row.rate_count is not None]
    if not queues and not tenants:
        return [], []
    running_queue: Counter[str] = Counter()
    running_tenant: Counter[str] = Counter()
    for queue, tenant, count in tx.running_counts():
        running_queue[queue] += count
        running_tenant[tenant] += count
    queue_infos = [
        QueueInfo(row.name, row.max_length, row.max_running, bool(row.paused), bool(row.encrypt), tx.unfinished_in_queue(row.name),
                  running_queue[row.name])
        for row in queues
    ]
    tenant_infos = []
    for row in tenants:
        tokens = tokens_now(row, now)
        tenant_infos.append(TenantInfo(
            row.name, row.max_pending, row.max_running, format_rate(row.rate_count, row.rate_period), row.weight,
            tx.waiting_in_tenant(row.name), running_tenant[row.name], None if tokens is None else round(tokens, 3),
        ))
    return queue_infos, tenant_infos


def _queue_infos(tx: Tx, names: list[str] | None = None) -> list[QueueInfo]:
    rows = {row.name: row for row in tx.queue_rows(names)}
    unfinished: Counter[str] = Counter()
    running: Counter[str] = Counter()
    with_tasks = set()
    for queue, state, count in tx.count_by_queue_and_state(queue=None, tenant=None):
        with_tasks.add(queue)
        if state in ("pending", "blocked", "running"):
            unfinished[queue] += count
        if state == "running":
            running[queue] += count
    known = sorted(set(rows) | with_tasks)
    return [
        QueueInfo(name, row.max_length, row.max_running, bool(row.paused), bool(row.encrypt), unfinished[name], running[name])
        for name in (names if names is not None else known)
        for row in [rows.get(name) or default_queue(name)]
    ]


def _tenant_infos(tx: Tx, now: int, names: list[str] | None = None) -> list[TenantInfo]:
    rows = {row.name: row for row in tx.tenant_rows(names)}
    running: Counter[str] = Counter()
    for _, tenant, count in tx.running_counts():
        running[tenant] += count
    pending: Counter[str] = Counter()
    with_tasks = set()
    for tenant, state, count in tx.count_by_tenant_and_state():
        with_tasks.add(tenant)
        if state in ("pending", "blocked"):
            pending[tenant] += count
    known = sorted(set(rows) | with_tasks)
    infos = []
    for name in names if names is not None else known:
        row = rows.get(name) or default_tenant(name)
        tokens = tokens_now(row, now)
        infos.append(TenantInfo(
            name, row.max_pending, row.max_running, format_rate(row.rate_count, row.rate_period), row.weight,
            pending[name], running[name], None if tokens is None else round(tokens, 3),
        ))
    return infos
