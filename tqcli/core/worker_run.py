"""What a worker run is asked to do (`WorkerOptions`) and what it reports when it ends (`WorkerReport`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tqcli.errors import InvalidInput
from tqcli.units import check_name

if TYPE_CHECKING:
    from tqcli.core.context import Context
    from tqcli.store.base import Tx


@dataclass
class WorkerOptions:
    """How a worker runs; the defaults are those of `tqcli worker`."""

    once: bool = False
    queues: tuple[str, ...] = ()
    tenants: tuple[str, ...] = ()
    concurrency: int = 1
    max_tasks: int | None = None
    lease: float = 60.0
    poll: float = 1.0
    grace: float = 30.0
    worker_id: str | None = None
    dag_id: int | None = None  # run only this DAG's tasks, until none of them can run
    metrics_file: str | None = None  # rewritten with `tqcli metrics` output when the run stops, and every minute while it runs

    def __post_init__(self) -> None:
        for name in self.queues:
            check_name(name, what="queue")
        for name in self.tenants:
            check_name(name, what="tenant")
        if not 1 <= self.concurrency <= 256:
            raise InvalidInput(f"invalid concurrency {self.concurrency}: use 1 to 256")
        if self.max_tasks is not None and self.max_tasks < 1:
            raise InvalidInput(f"invalid max-tasks {self.max_tasks}: use 1 or more")
        if self.lease < 1:
            raise InvalidInput("invalid lease: use at least 1 second (it is renewed while the task runs)")
        if self.poll <= 0:
            raise InvalidInput("invalid poll interval: it must be longer than 0 seconds")
        if self.grace < 0:
            raise InvalidInput("invalid grace period: use 0 or more seconds")
        if self.worker_id is not None and not self.worker_id.strip():
            raise InvalidInput("invalid worker id: it must not be empty")


def claim_tenants(ctx: "Context", tx: "Tx", wanted: tuple[str, ...]) -> tuple[str, ...]:
    """The tenants a worker of the actor may claim from, given its `--tenant` options (`()`: every tenant).

    A global operator (or an open database) claims what it was asked to; a
    tenant-scoped one only its tenants. PermissionDenied when that leaves none.
    """
    access = ctx.access(tx)
    scope = access.tenants("operate")
    if scope is None:
        return wanted
    if not scope:
        ctx.authorize(tx, "operate", "run a worker", access=access)
    if not wanted:
        return tuple(sorted(scope))
    allowed = tuple(tenant for tenant in wanted if tenant in scope)
    if not allowed:
        ctx.authorize(tx, "operate", f"run a worker for tenant {wanted[0]}", tenant=wanted[0], access=access)
    return allowed


# How the summary line names each outcome ("3 completed, 1 to retry").
_SUMMARY_WORDS = {"retry": "to retry", "released": "given back (not counted as attempts)", "stale": "late results dropped"}


@dataclass
class WorkerReport:
    """What one worker run did, counted by outcome."""

    worker_id: str
    claimed: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    reclaimed: int = 0
    expired: int = 0
    fired: int = 0
    seconds: float = 0.0
    skipped_backends: dict[str, str] = field(default_factory=dict)

    def count(self, outcome: str) -> None:
        """Add one attempt that ended as `outcome`."""
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1

    @property
    def did_something(self) -> bool:
        """Whether the run claimed, reclaimed or enqueued anything (`--once` is silent otherwise)."""
        return bool(self.claimed or self.reclaimed or self.fired or self.expired)

    def summary(self) -> str:
        """The one-line summary printed at the end of a run; it counts only attempts that started."""
        ran = self.claimed - self.outcomes.get("released", 0)
        rate = f" ({ran / self.seconds:,.0f}/s)" if self.seconds > 0 and ran > 0 else ""
        parts = [f"{self.outcomes[key]} {_SUMMARY_WORDS.get(key, key)}" for key in ("completed", "retry", "failed", "cancelled", "released", "stale") if self.outcomes.get(key)]
        if self.reclaimed:
            parts.append(f"{self.reclaimed} reclaimed from lost workers")
        if self.expired:
            parts.append(f"{self.expired} expired (cancelled unrun)")
        if self.fired:
            parts.append(f"{self.fired} scheduled")
        detail = ": " + ", ".join(parts) if parts else ""
        released = self.outcomes.get("released", 0)
        if released:  # given back unstarted or stopped at shutdown: claimed, but no attempt counted
            started = f"claimed {self.claimed} task{'' if self.claimed == 1 else 's'}"
        else:
            started = f"ran {ran} attempt{'' if ran == 1 else 's'}"
        return f"worker {self.worker_id}: {started} in {self.seconds:.2f} s{rate}{detail}"
