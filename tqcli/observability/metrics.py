"""`tqcli metrics`: every metric family, and the samples read from the database in a bounded number of queries.

One read transaction of eight queries, whatever the database holds: the
grants, task counts (from an index alone), each queue's oldest ready task
(an index search per group of priority, tenant and queue), the stored
counters, breakers, schedules, the audit head and the worker registry.
The catalogue below is what docs/metrics.md lists (a test keeps them
equal).

Who sees what: a reader with a global grant (or an open database) sees
everything. A tenant-scoped reader sees only the series labelled with one
of its tenants (`tqcli_tasks`, `tqcli_submits_refused_total`) and
`tqcli_build_info`: every other series adds up all tenants' work.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from tqcli.core.context import Context
from tqcli.observability import counters
from tqcli.units import US_PER_SECOND

STATES = ("pending", "running", "completed", "failed", "cancelled", "blocked")
CIRCUIT_VALUES = {"closed": 0, "half-open": 1, "open": 2}
WORKERS_SEEN_FOR = 24 * 3600  # as `tqcli workers`: runs with a heartbeat this recent


@dataclass(frozen=True)
class Family:
    """One metric family: its name, Prometheus type, the labels its samples carry, and what it means."""

    name: str
    type: str
    labels: tuple[str, ...]
    help: str


FAMILIES = (
    Family("tqcli_build_info", "gauge", ("version", "store"), "Always 1: the tqcli version that wrote these metrics and its store (sqlite or postgresql)."),
    Family("tqcli_tasks", "gauge", ("queue", "tenant", "state"), "Tasks in each state, per queue and tenant (all six states for every pair that has tasks)."),
    Family("tqcli_dlq_tasks", "gauge", ("queue",), "Tasks in the dead-letter queue (state failed), per queue."),
    Family("tqcli_queue_oldest_pending_seconds", "gauge", ("queue",), "How long the queue's longest-waiting ready task has been due (0 when none is ready)."),
    Family(counters.ATTEMPTS, "counter", ("queue", "backend", "outcome"), "Attempts ended, by outcome (completed, failed, cancelled, lost); kept across dlq purge and prune."),
    Family(counters.DURATION, "histogram", ("queue",), "How long attempts ran (those that completed, failed or were cancelled)."),
    Family(counters.WAIT, "histogram", ("queue",), "How long tasks waited from being due (run_at) until a worker started them."),
    Family(counters.LOST, "counter", ("host",), "Attempts lost with their worker (its lease expired), by the host that ran them."),
    Family(counters.REFUSED, "counter", ("queue", "tenant", "reason"), "Submits refused: reason queue_limit, tenant_quota or permission; nothing was enqueued."),
    Family("tqcli_circuit_state", "gauge", ("key",), "Circuit breaker state per service key: 0 closed, 1 half-open, 2 open."),
    Family("tqcli_schedule_last_fire_timestamp_seconds", "gauge", ("schedule",), "When each schedule last fired (Unix time)."),
    Family("tqcli_audit_entries", "gauge", (), "Entries in the audit chain."),
    Family(counters.CHECKPOINT, "gauge", (), "When the newest audit checkpoint was written (Unix time)."),
    Family("tqcli_workers_alive", "gauge", ("host",), "Worker runs alive now, per host."),
    Family("tqcli_worker_last_heartbeat_timestamp_seconds", "gauge", ("host",), "The newest heartbeat of any worker run on the host (Unix time; runs seen in the last 24 hours)."),
)
BY_NAME = {family.name: family for family in FAMILIES}
# Series a tenant-scoped reader may see: those about its own tenants, and what describes tqcli itself.
TENANT_FAMILIES = frozenset({"tqcli_build_info", "tqcli_tasks", counters.REFUSED})


@dataclass(frozen=True)
class Sample:
    """One sample of the exposition: `name` is the series name (a histogram's `_bucket`, `_sum` or `_count`)."""

    name: str
    labels: dict[str, str]
    value: float

    def to_json(self) -> dict[str, Any]:
        """The object of `metrics --format json`: `{"name", "labels", "value"}`."""
        value: float | int = int(self.value) if float(self.value).is_integer() and abs(self.value) < 2**53 else self.value
        return {"name": self.name, "labels": self.labels, "value": value}


@dataclass
class Metrics:
    """The families in catalogue order, each with its samples (a family without samples is left out when rendered)."""

    families: list[tuple[Family, list[Sample]]] = field(default_factory=list)

    def samples(self) -> list[Sample]:
        """Every sample, in the order of the text exposition."""
        return [sample for _, samples in self.families for sample in samples]


def collect(ctx: Context) -> Metrics:
    """Read every metric the actor may see (see the module docstring), in one read transaction of bounded queries."""
    from tqcli import __version__
    from tqcli.core.workers import run_alive

    now = ctx.clock.now()
    found: dict[str, list[Sample]] = {family.name: [] for family in FAMILIES}
    store_kind = "sqlite" if ctx.store.path is not None else "postgresql"
    found["tqcli_build_info"].append(Sample("tqcli_build_info", {"version": __version__, "store": store_kind}, 1))
    with ctx.read() as tx:
        access = ctx.authorize_any(tx, "read", "read metrics")
        visible = access.tenants("read")
        counts = tx.task_counts()
        stored = tx.counter_rows()
        if visible is None:
            oldest = dict(tx.oldest_ready(now))
            breakers = tx.breaker_rows()
            schedules = tx.schedule_rows()
            audit_entries = tx.audit_max_seq()
            runs = tx.worker_rows(now - WORKERS_SEEN_FOR * US_PER_SECOND)
    _task_samples(found, counts, visible)
    _counter_samples(found, stored, visible)
    if visible is None:
        queues = sorted({queue for queue, _, _, _ in counts})
        found["tqcli_queue_oldest_pending_seconds"] = [
            Sample("tqcli_queue_oldest_pending_seconds", {"queue": queue}, _seconds(max(0, now - oldest[queue])) if queue in oldest else 0)
            for queue in queues
        ]
        found["tqcli_circuit_state"] = [Sample("tqcli_circuit_state", {"key": row.key}, CIRCUIT_VALUES.get(row.state, 2)) for row in breakers]
        found["tqcli_schedule_last_fire_timestamp_seconds"] = [
            Sample("tqcli_schedule_last_fire_timestamp_seconds", {"schedule": row.name}, _seconds(row.last_fire_at))
            for row in schedules if row.last_fire_at is not None
        ]
        found["tqcli_audit_entries"] = [Sample("tqcli_audit_entries", {}, audit_entries)]
        alive: dict[str, int] = {}
        heartbeat: dict[str, int] = {}
        for run in runs:
            alive[run.host] = alive.get(run.host, 0) + int(run_alive(run, now))
            heartbeat[run.host] = max(heartbeat.get(run.host, 0), run.heartbeat_at)
        found["tqcli_workers_alive"] = [Sample("tqcli_workers_alive", {"host": host}, alive[host]) for host in sorted(alive)]
        found["tqcli_worker_last_heartbeat_timestamp_seconds"] = [
            Sample("tqcli_worker_last_heartbeat_timestamp_seconds", {"host": host}, _seconds(heartbeat[host])) for host in sorted(heartbeat)
        ]
    shown = FAMILIES if visible is None else [family for family in FAMILIES if family.name in TENANT_FAMILIES]
    return Metrics([(family, found[family.name]) for family in shown])


def _seconds(microseconds: int) -> float:
    """Microseconds as seconds, to the millisecond (what a timestamp or an age in the exposition needs)."""
    return round(microseconds / US_PER_SECOND, 3)


def _task_samples(found: dict[str, list[Sample]], counts: list[tuple[str, str, str, int]], visible: frozenset[str] | None) -> None:
    by_pair: dict[tuple[str, str], dict[str, int]] = {}
    dlq: dict[str, int] = {}
    for queue, state, tenant, count in counts:
        if visible is not None and tenant not in visible:
            continue
        by_pair.setdefault((queue, tenant), {})[state] = count
        if state == "failed":
            dlq[queue] = dlq.get(queue, 0) + count
    found["tqcli_tasks"] = [
        Sample("tqcli_tasks", {"queue": queue, "tenant": tenant, "state": state}, states.get(state, 0))
        for (queue, tenant), states in sorted(by_pair.items()) for state in STATES
    ]
    queues = sorted({queue for queue, _ in by_pair})
    found["tqcli_dlq_tasks"] = [Sample("tqcli_dlq_tasks", {"queue": queue}, dlq.get(queue, 0)) for queue in queues]


def _counter_samples(found: dict[str, list[Sample]], stored: list[tuple[str, str, float]], visible: frozenset[str] | None) -> None:
    """Counters as stored, histograms made cumulative over the current bucket bounds (`+Inf` is the count)."""
    buckets: dict[str, dict[str, list[tuple[float, float]]]] = {}
    totals: dict[tuple[str, str], dict[str, float]] = {}
    for metric, labels_text, value in stored:
        family, _, part = metric.rpartition("_")
        if family in counters.BUCKETS and part in ("bucket", "sum", "count"):
            labels = json.loads(labels_text)
            if part == "bucket":
                bound = float(labels.pop("le"))
                buckets.setdefault(family, {}).setdefault(counters.labels_key(labels), []).append((bound, value))
            else:
                totals.setdefault((family, labels_text), {})[part] = value
        elif metric in BY_NAME:
            labels = json.loads(labels_text)
            if visible is not None and labels.get("tenant") not in visible:
                continue
            found[metric].append(Sample(metric, labels, value))
    for (family, labels_text), parts in sorted(totals.items()):
        labels = json.loads(labels_text)
        observed = buckets.get(family, {}).get(labels_text, [])
        for bound in counters.BUCKETS[family]:
            below = sum(value for le, value in observed if le <= bound)
            found[family].append(Sample(f"{family}_bucket", {**labels, "le": counters.bound_text(bound)}, below))
        count = parts.get("count", 0.0)
        found[family].append(Sample(f"{family}_bucket", {**labels, "le": "+Inf"}, count))
        found[family].append(Sample(f"{family}_sum", labels, parts.get("sum", 0.0)))
        found[family].append(Sample(f"{family}_count", labels, count))
