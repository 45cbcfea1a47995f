"""The counters that never go down: what a worker's commit adds to them, and how they are keyed.

Attempts are deleted with their task (`dlq purge`, `prune`), so what
`tqcli metrics` reports about attempts is counted as they happen, into the
`metric_counters` table, in the transaction that records them (see
`tqcli.store.metrics_sql`). Histograms are stored bucket by bucket, not
cumulative (an observation adds to one bucket row, its sum and its count),
and made cumulative when rendered. This module imports nothing of the core,
so the dispatcher and the submit path may call it.
"""

from __future__ import annotations

import bisect
import functools
import json
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from tqcli.units import US_PER_SECOND

if TYPE_CHECKING:
    from tqcli.store.base import Store, Tx

ATTEMPTS = "tqcli_task_attempts_total"
DURATION = "tqcli_task_duration_seconds"
WAIT = "tqcli_task_wait_seconds"
LOST = "tqcli_attempts_lost_total"
REFUSED = "tqcli_submits_refused_total"
CHECKPOINT = "tqcli_audit_last_checkpoint_timestamp_seconds"

# Tasks run from milliseconds to hours, and wait from nothing to a day.
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600)
WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 21600, 86400)
BUCKETS = {DURATION: DURATION_BUCKETS, WAIT: WAIT_BUCKETS}

# Why a submit was refused (the `reason` label of tqcli_submits_refused_total).
QUEUE_LIMIT, TENANT_QUOTA, PERMISSION = "queue_limit", "tenant_quota", "permission"

_UNCOUNTED = ("released",)  # given back unstarted or unfinished: not an attempt (SPEC: not counted)
_TIMED = ("completed", "failed", "cancelled")  # ran to an end of their own: their duration means something


def labels_key(labels: dict[str, str]) -> str:
    """Labels as the canonical JSON text that keys `metric_counters`."""
    return json.dumps(labels, sort_keys=True, separators=(",", ":"))


def bound_text(bound: float) -> str:
    """A bucket bound as its `le` label (`0.5`, `60`)."""
    return f"{bound:g}"


@functools.lru_cache(maxsize=4096)
def _histogram_keys(metric: str, queue: str) -> tuple[tuple[tuple[str, str], ...], tuple[str, str], tuple[str, str]]:
    """The counter keys of one histogram series: each bucket's, its sum's and its count's (made once per process)."""
    key = labels_key({"queue": queue})
    buckets = tuple((f"{metric}_bucket", labels_key({"le": bound_text(bound), "queue": queue})) for bound in BUCKETS[metric])
    return buckets, (f"{metric}_sum", key), (f"{metric}_count", key)


def _observe(deltas: dict[tuple[str, str], float], metric: str, queue: str, seconds: float) -> None:
    """One histogram observation: its bucket (none past the last bound: +Inf is the count), its sum and its count."""
    buckets, total, count = _histogram_keys(metric, queue)
    index = bisect.bisect_left(BUCKETS[metric], seconds)  # the first bound >= seconds
    if index < len(buckets):
        bucket = buckets[index]
        deltas[bucket] = deltas.get(bucket, 0.0) + 1
    deltas[total] = deltas.get(total, 0.0) + seconds
    deltas[count] = deltas.get(count, 0.0) + 1


@functools.lru_cache(maxsize=4096)
def _attempts_key(queue: str, backend: str, outcome: str) -> tuple[str, str]:
    return (ATTEMPTS, labels_key({"backend": backend, "outcome": outcome, "queue": queue}))


def count_attempt_end(tx: "Tx", *, queue: str, backend: str, outcome: str, started_at: int, now: int, host: str | None = None) -> None:
    """An attempt ended as `outcome` (completed, failed, cancelled, lost): its counter, its duration, and for a lost one its host."""
    if outcome in _UNCOUNTED:
        return
    deltas = tx.counter_deltas()  # added in place: this runs once per attempt, in the worker's commit
    key = _attempts_key(queue, backend, outcome)
    deltas[key] = deltas.get(key, 0.0) + 1
    if outcome in _TIMED:
        _observe(deltas, DURATION, queue, max(0, now - started_at) / US_PER_SECOND)
    if outcome == "lost":
        lost = (LOST, labels_key({"host": host or "unknown"}))
        deltas[lost] = deltas.get(lost, 0.0) + 1


def count_attempt_starts(tx: "Tx", started: Iterable[Any]) -> None:
    """Attempts just claimed (objects with `queue`, `run_at`, `started_at`): how long each waited after it was due."""
    deltas = tx.counter_deltas()
    for claim in started:
        _observe(deltas, WAIT, claim.queue, max(0, claim.started_at - claim.run_at) / US_PER_SECOND)


def mark_refused(error: BaseException, reason: str, queue: str, tenant: str) -> None:
    """Note on a refusal that a submit was refused, for `record_refusal` to count once the submit has rolled back."""
    if getattr(error, "refused_submit", None) is None:
        error.refused_submit = (reason, queue, tenant)  # type: ignore[attr-defined]


def record_refusal(store: "Store", error: BaseException) -> None:
    """Count a refused submit noted by `mark_refused`, in a transaction of its own (the submit's was rolled back).

    A database that cannot take the write (read-only, busy) loses the count
    rather than hiding the refusal the user must see.
    """
    noted = getattr(error, "refused_submit", None)
    if noted is None or getattr(error, "refusal_counted", False):
        return
    error.refusal_counted = True  # type: ignore[attr-defined]
    reason, queue, tenant = noted
    from tqcli.errors import TqcliError

    try:
        with store.write() as tx:
            tx.add_counters({(REFUSED, labels_key({"queue": queue, "reason": reason, "tenant": tenant})): 1.0})
            tx.flush_counters()
    except TqcliError:
        pass


def first_of(specs: Sequence[Any], *, queue: str | None = None, tenant: str | None = None) -> tuple[str, str]:
    """`(queue, tenant)` of the first spec in that queue or tenant (the labels of a refusal that names one)."""
    for spec in specs:
        if (queue is None or spec.queue == queue) and (tenant is None or spec.tenant == tenant):
            return spec.queue, spec.tenant
    return (queue or "default", tenant or "default")
