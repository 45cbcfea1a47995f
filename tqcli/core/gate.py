"""The claim gate: what may be claimed now, and why a pending task is not.

One door for both questions, so a worker's claim and `status`'s "why it
waits" never disagree. It knows dependencies, delays, expiry, circuit
breakers, paused queues, queue and tenant limits and rate buckets (the
rules of the last three are in `tqcli.tenancy.limits`); the order in which
tenants take turns is `tqcli.core.picking`'s. A missing key belongs here too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Collection, Sequence

from tqcli.core import chaining
from tqcli.core.task import State, Task
from tqcli.resilience import circuit_breaker
from tqcli.security.crypto import sealed_key_id
from tqcli.store.base import Tx
from tqcli.tenancy.limits import ClaimLimits, claim_limits, holding_back
from tqcli.units import format_time


@dataclass
class ClaimGate:
    """What a claim must leave out now: services behind a closed gate, and those whose one trial task is due.

    `failing_services` have counted a failure since their last success:
    they are claimed one attempt at a time (see `dispatcher.claim`).
    """

    excluded_services: list[str]
    trial_services: set[str]
    failing_services: set[str]
    limits: ClaimLimits


def claim_gate(tx: Tx, now: int, *, queues: Sequence[str] = (), tenants: Sequence[str] = ()) -> ClaimGate:
    """The gate for a claim made at `now` by a worker limited to `queues` and `tenants` (empty: all).

    Expired tasks are left out by the claim's pick itself. The limits'
    settings stay locked until commit (see `tqcli.tenancy.limits`).
    """
    blocked, trial_ready, failing = circuit_breaker.claim_gate(tx, now)
    return ClaimGate(blocked, trial_ready, failing, claim_limits(tx, now, queues=queues, tenants=tenants))


def why_waiting(
    tx: Tx, task: Task, now: int, *, ignore_delay: bool = False, data_keys: Collection[str] | None = None,
) -> tuple[str | None, dict[str, Any] | None]:
    """Why a pending or blocked task is not claimed now (SPEC's `waiting`), and its `waiting_detail`.

    None for a task in any other state. `ignore_delay` leaves `run_at`
    out of it, as `run --id` does. `data_keys` are the ids of the data keys
    this process holds: an encrypted task under none of them waits for its
    key (a worker like this one would leave it pending); None does not ask.
    """
    if task.state not in (State.PENDING, State.BLOCKED):
        return None, None
    dep_states = tx.dependency_states(task.id) if task.depends_on else []
    if task.state is State.BLOCKED:
        return chaining.blocking_reason(dep_states) or "blocked", None
    reason = chaining.waiting_reason(dep_states)
    if reason:
        return reason, None
    if task.expires_at is not None and task.expires_at <= now:
        return "expired", {"expired_at": format_time(task.expires_at)}
    if task.run_at > now and not ignore_delay:
        kind = "retry" if task.attempts else "delayed"
        return f"{kind} until {format_time(task.run_at)}", None
    held = holding_back(tx, task.queue, task.tenant, now)
    if held is not None and held[0] == "queue paused":
        return held
    circuit = circuit_breaker.blocking_detail(tx, task.service, task.id, now)
    if circuit is not None:
        return "circuit open", circuit
    if held is not None:
        return held
    if task.encrypted and data_keys is not None:
        key = sealed_key_id(task.payload)
        if key not in data_keys:
            return "encryption key missing", {"key": key}
    return "ready: waiting for a worker", None
