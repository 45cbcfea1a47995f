"""The dead-letter queue: the tasks that failed every allowed attempt.

Failed tasks *are* the DLQ; nothing is copied. Replay puts a task back to
pending under the same id with its attempts reset and unblocks what waited
on it; purge deletes it (the audit chain keeps the record) and cancels the
tasks that were blocked on it, since they can never run. Both run inside a
caller's transaction as `replay_tasks` and `purge_tasks` (see "Changes that
compose" in docs/design.md).

A replay may also fix what made the tasks fail ("fix and retry"): a new
payload (sealed under each encrypted task's own id), priority or
max-retries, or another queue, checked as a submit checks them. It adds pending tasks, so the target queue's max-length and
each tenant's max-pending are judged first (`tenancy.limits.admit`).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from tqcli.core import chaining, encryption
from tqcli.core.context import Context, retrying
from tqcli.core.spec import TaskSpec, encode_payload
from tqcli.core.task import Task
from tqcli.errors import Conflict, InvalidInput, NotFound
from tqcli.security.audit import Journal
from tqcli.security.crypto import ENCRYPTED, redacted
from tqcli.store.base import Tx
from tqcli.tenancy.limits import admit
from tqcli.units import US_PER_SECOND, check_filters, parse_duration

# A target that every check of `TaskSpec` passes: a spec of it and the edit
# options alone checks those options by submit's rules, with submit's messages.
_PROBE_TARGET = "tqcli.replay:options"


class DeadLetterQueue:
    """`dlq list`, `dlq replay`, `dlq purge`."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def list(self, *, queue: str | None = None, tenant: str | None = None, limit: int = 1_000_000) -> list[Task]:
        """Failed tasks, the newest submitted first (by id)."""
        check_filters(queue=queue, tenant=tenant)
        with self._ctx.read() as tx:
            tenant, tenants = self._ctx.read_scope(tx, tenant, "list the dead-letter queue")
            rows = tx.list_task_rows(queue=queue, tenant=tenant, state="failed", limit=limit, tenants=tenants)
            tasks = [Task.from_row(row) for row in rows]
            deps = tx.dependencies_of([task.id for task in tasks])
            encryption.reveal(self._ctx, tx, tasks)
        for task in tasks:
            task.depends_on = deps[task.id]
        return tasks

    @retrying
    def replay(
        self,
        ids: Sequence[int] = (),
        *,
        every: bool = False,
        queue: str | None = None,
        tenant: str | None = None,
        dry_run: bool = False,
        payload: Mapping[str, Any] | None = None,
        priority: int | None = None,
        max_retries: int | None = None,
        to_queue: str | None = None,
    ) -> list[Task]:
        """Back to pending with attempts reset, same ids; dependents unblocked. Returns the tasks as they now are.

        `payload`, `priority`, `max_retries` and `to_queue` (given: not None)
        change every task replayed; `queue` and `tenant` only narrow `every`.
        Passing the target queue's max-length or a tenant's max-pending is
        LimitReached and replays nothing. `dry_run` returns what would be
        replayed (its limits are not judged) and changes nothing.
        """
        edits = _replay_edits(payload, priority, max_retries, to_queue)
        if dry_run:
            with self._ctx.read() as tx:
                tasks = _select(self._ctx, tx, ids, every, queue, tenant, "replay")
                encryption.reveal(self._ctx, tx, tasks)
                return tasks
        with self._ctx.change() as (tx, journal):
            return replay_tasks(
                self._ctx, tx, journal, ids, every=every, queue=queue, tenant=tenant,
                payload=payload, priority=priority, max_retries=max_retries, to_queue=to_queue,
            )

    @retrying
    def purge(
        self,
        ids: Sequence[int] = (),
        *,
        every: bool = False,
        queue: str | None = None,
        tenant: str | None = None,
        older_than: str | float | None = None,
        dry_run: bool = False,
        confirmed: bool = False,
    ) -> list[Task]:
        """Delete failed tasks (with `older_than`, only those that failed longer ago); the tasks deleted.

        `dry_run` returns what would be deleted and changes nothing; otherwise
        `confirmed` must be set. A DAG's task leaves a tombstone (see
        `delete_tasks`), so its DAG keeps its state.
        """
        cutoff = _cutoff(self._ctx.clock.now(), older_than)  # a bad --older-than is refused before anything is read
        if dry_run or not confirmed:
            with self._ctx.read() as tx:
                tasks = _purgeable(self._ctx, tx, ids, every, queue, tenant, cutoff)
            if dry_run:
                return tasks
            raise InvalidInput("purge deletes tasks for good: add --yes to confirm (or --dry-run to see what it would delete)")
        with self._ctx.change() as (tx, journal):
            return purge_tasks(self._ctx, tx, journal, ids, every=every, queue=queue, tenant=tenant, older_than=older_than)


def replay_tasks(
    ctx: Context,
    tx: Tx,
    journal: Journal,
    ids: Sequence[int] = (),
    *,
    every: bool = False,
    queue: str | None = None,
    tenant: str | None = None,
    payload: Mapping[str, Any] | None = None,
    priority: int | None = None,
    max_retries: int | None = None,
    to_queue: str | None = None,
) -> list[Task]:
    """`DeadLetterQueue.replay` inside the caller's transaction; the tasks as they now are."""
    edits = _replay_edits(payload, priority, max_retries, to_queue)
    now = ctx.clock.now()
    tasks = _still_failed(tx, _select(ctx, tx, ids, every, queue, tenant, "replay"))
    sealed = [task.id for task in tasks if task.encrypted] if "payload" in edits else []
    cipher = encryption.sealing_cipher(ctx, tx, f"a new payload for encrypted task {sealed[0]}") if sealed else None
    admit(tx, [(edits.get("queue", task.queue), task.tenant) for task in tasks], what="replayed")  # before any write
    replay_ids = [task.id for task in tasks]
    if edits:
        stored = {column: encode_payload(value) if column == "payload" else value for column, value in edits.items()}
        tx.edit_failed_tasks([task_id for task_id in replay_ids if task_id not in sealed], stored)
        for task_id in sealed:  # each under its own task's key
            tx.edit_failed_tasks([task_id], {**stored, "payload": cipher.seal(task_id, "payload", stored["payload"])})  # type: ignore[union-attr]
    tx.replay_tasks(replay_ids, now=now)
    for task in tasks:
        journal.add(
            "dlq.replay", task.id, task.tenant, previous_error=redacted(task.error) or "", attempts=task.attempts,
            **_changes(task, edits),
        )
    chaining.unblock_dependents(tx, journal, replay_ids, cause="dependency replayed")
    now_rows = {row[0]: row for row in tx.task_rows(replay_ids)}
    replayed = [Task.from_row(now_rows[task_id]) for task_id in replay_ids]
    deps = tx.dependencies_of(replay_ids)
    for task in replayed:
        task.depends_on = deps[task.id]
    encryption.reveal(ctx, tx, replayed)
    return replayed


def purge_tasks(
    ctx: Context,
    tx: Tx,
    journal: Journal,
    ids: Sequence[int] = (),
    *,
    every: bool = False,
    queue: str | None = None,
    tenant: str | None = None,
    older_than: str | float | None = None,
) -> list[Task]:
    """`DeadLetterQueue.purge` (confirmed) inside the caller's transaction; the tasks deleted."""
    now = ctx.clock.now()
    tasks = _still_failed(tx, _purgeable(ctx, tx, ids, every, queue, tenant, _cutoff(now, older_than)))
    purge_ids = [task.id for task in tasks]
    orphans = chaining.waiting_dependents(tx, purge_ids)
    if orphans:
        tx.set_states([row[0] for row in orphans], "cancelled", finished_at=now, error="cancelled: a task it depends on was purged")
        for task_id, state, tenant_name in orphans:
            journal.add("task.cancel", task_id, tenant_name, previous=state, reason="dependency purged")
    for task in tasks:
        journal.add("dlq.purge", task.id, task.tenant, name=task.name, target=task.target, error=redacted(task.error) or "")
    tx.delete_tasks(purge_ids, now=now)
    return tasks


def _select(
    ctx: Context, tx: Tx, ids: Sequence[int], every: bool, queue: str | None, tenant: str | None, verb: str
) -> list[Task]:
    """The failed tasks `ids` (or `every` one, of `queue`/`tenant`) that the actor may `verb`, checked."""
    check_filters(queue=queue, tenant=tenant)
    if ids and every:
        raise InvalidInput(f"give the task IDs to {verb} or --all, not both")
    if (queue or tenant) and not every:
        raise InvalidInput("--queue and --tenant narrow --all: add --all (they cannot be combined with IDs)")
    if not ids and not every:
        raise InvalidInput(f"nothing to {verb}: give the task IDs, or --all for every failed task ('tqcli dlq list' shows them)")
    if every:
        tenant, tenants = ctx.read_scope(tx, tenant, f"{verb} failed tasks", "operate")
        rows = tx.list_task_rows(queue=queue, tenant=tenant, state="failed", limit=None, tenants=tenants)
        return [Task.from_row(row) for row in rows]
    rows = {row[0]: Task.from_row(row) for row in tx.task_rows(list(dict.fromkeys(ids)))}
    access = ctx.access(tx)
    for task_id in dict.fromkeys(ids):
        task = rows.get(task_id)
        if task is None:
            raise NotFound(f"task {task_id} does not exist; nothing was changed")
        ctx.authorize(tx, "operate", f"{verb} task {task_id}", tenant=task.tenant, access=access)
        if task.state.value != "failed":
            raise Conflict(f"task {task_id} is {task.state.value}, not in the dead-letter queue (failed); nothing was changed")
    return [rows[task_id] for task_id in dict.fromkeys(ids)]


def _replay_edits(
    payload: Mapping[str, Any] | None, priority: int | None, max_retries: int | None, to_queue: str | None
) -> dict[str, Any]:
    """The edit options given, as `{column: value}`, each refused (InvalidInput) as a submit or edit would refuse it."""
    edits = {
        column: value
        for column, value in (("payload", payload), ("priority", priority), ("max_retries", max_retries), ("queue", to_queue))
        if value is not None
    }
    if edits:
        TaskSpec(_PROBE_TARGET, **edits)
    return edits


def _changes(task: Task, edits: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """`{column: {"from", "to"}}` for the columns the edits change in `task` (as `task.edit` records them).

    An encrypted task's payload is recorded as changed, `<encrypted>` both
    ways: the audit chain never holds it.
    """
    old = {"payload": task.payload_value, "priority": task.priority, "max_retries": task.max_retries, "queue": task.queue}
    changes = {column: {"from": old[column], "to": new} for column, new in edits.items() if old[column] != new}
    if task.encrypted and "payload" in edits:
        changes["payload"] = {"from": ENCRYPTED, "to": ENCRYPTED}
    return changes


def _cutoff(now: int, older_than: str | float | None) -> int | None:
    """The time before which a task must have failed to be purged (None: any time)."""
    if older_than is None:
        return None
    return now - int(parse_duration(str(older_than), what="--older-than") * US_PER_SECOND)


def _purgeable(
    ctx: Context, tx: Tx, ids: Sequence[int], every: bool, queue: str | None, tenant: str | None, cutoff: int | None
) -> list[Task]:
    tasks = _select(ctx, tx, ids, every, queue, tenant, "purge")
    if cutoff is not None:
        tasks = [task for task in tasks if task.finished_at is not None and task.finished_at < cutoff]
    return tasks


def _still_failed(tx: Tx, tasks: list[Task]) -> list[Task]:
    """`tasks` locked, less any that another change took out of the DLQ since they were read."""
    ids = [task.id for task in tasks]
    tx.lock_tasks(ids)
    states = tx.task_states(ids)
    return [task for task in tasks if states.get(task.id) == "failed"]
