"""Task operations after submit: get, list, cancel, cancel every match, bump.

Each change is one short write transaction that also appends its audit
entries, made by a function that runs inside a caller's transaction
(`cancel_tasks`, `bump_task`: see "Changes that compose" in docs/design.md).
`cancel_all` works in bounded batches, as `prune` does, so a worker is never
kept waiting behind it. Submitting lives in `tqcli.core.submission`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from tqcli.core import chaining, encryption, gate
from tqcli.core.context import Context, retrying
from tqcli.core.task import ALL_STATES, Attempt, Replay, State, Task
from tqcli.errors import Conflict, InvalidInput, NotFound
from tqcli.security.audit import Journal
from tqcli.store.base import Tx
from tqcli.tenancy.settings import QueueInfo, TenantInfo, configured_limits
from tqcli.units import check_filters, check_reason

CANCEL_BATCH = 500
FINISHED_PAGE = 5000  # finished tasks looked at per `finished_after` call
CANCELLABLE_STATES = ("pending", "blocked", "running")


@dataclass
class Summary:
    """Counts per state and per queue, and the newest matching tasks."""

    counts: dict[str, int]
    queues: dict[str, dict[str, int]]
    tasks: list[Task]
    queue_limits: list[QueueInfo] = field(default_factory=list)  # queues with a limit or paused, with their counts
    tenant_limits: list[TenantInfo] = field(default_factory=list)  # tenants with a limit or a rate
    access_open: bool = False  # no role granted: everyone may do everything

    def to_json(self) -> dict[str, Any]:
        """The JSON of `status` without an id."""
        return {
            "counts": self.counts, "queues": self.queues, "tasks": [task.to_json() for task in self.tasks],
            "queue_limits": [info.to_dict() for info in self.queue_limits],
            "tenant_limits": [info.to_dict() for info in self.tenant_limits],
            "access": "open" if self.access_open else "checked",
        }


class TaskService:
    """Inspect, cancel and re-prioritise tasks."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    # -- read --------------------------------------------------------------

    def get(self, task_id: int, *, detail: bool = True) -> Task:
        """The task with its dependencies; with `detail`, its attempts and why it waits."""
        with self._ctx.read() as tx:
            rows = tx.task_rows([task_id])
            if not rows:
                raise NotFound(f"task {task_id} does not exist: 'tqcli status' lists tasks")
            task = Task.from_row(rows[0])
            self._ctx.authorize(tx, "read", f"read task {task_id}", tenant=task.tenant)
            task.depends_on = tx.dependencies_of([task_id])[task_id]
            if detail:
                task.history = [Attempt(*row) for row in tx.attempt_rows(task_id)]
                running = tx.running_attempt(task_id)
                if running is not None:
                    run, attempt, started_at, worker = running
                    task.history.append(Attempt(run, attempt, started_at, None, None, None, worker))
                if task.run > 1:
                    replays = tx.audit_entries(task_id=task_id, actor=None, action="dlq.replay", since=None, limit=None)
                    task.replays = [Replay(run, row[1], row[2]) for run, row in enumerate(replays[-(task.run - 1):], start=2)]
                keys = encryption.held_data_keys(self._ctx) if task.encrypted else None
                task.waiting, task.waiting_detail = gate.why_waiting(tx, task, self._ctx.clock.now(), data_keys=keys)
            encryption.reveal(self._ctx, tx, [task])
        return task

    def summary(
        self, *, queue: str | None = None, tenant: str | None = None, state: str | None = None, limit: int = 20
    ) -> Summary:
        """Counts per state and queue (filtered by queue/tenant), and the newest `limit` tasks (0: all)."""
        if state is not None and state not in {s.value for s in ALL_STATES}:
            raise InvalidInput(f"invalid state {state!r}; use one of: {', '.join(s.value for s in ALL_STATES)}")
        if limit < 0:
            raise InvalidInput("invalid limit: use 0 (every task) or more")
        check_filters(queue=queue, tenant=tenant)
        with self._ctx.read() as tx:
            access = self._ctx.access(tx)
            tenant, tenants = self._ctx.read_scope(tx, tenant, "read the status of tasks", access=access)
            counts = {s.value: 0 for s in ALL_STATES}
            queues: dict[str, dict[str, int]] = {}
            for queue_name, state_name, count in tx.count_by_queue_and_state(queue=queue, tenant=tenant, tenants=tenants):
                counts[state_name] += count
                queues.setdefault(queue_name, {s.value: 0 for s in ALL_STATES})[state_name] = count
            rows = tx.list_task_rows(queue=queue, tenant=tenant, state=state, limit=limit or None, tenants=tenants)
            tasks = [Task.from_row(row) for row in rows]
            deps = tx.dependencies_of([task.id for task in tasks])
            queue_limits, tenant_limits = configured_limits(tx, self._ctx.clock.now())
            access_open = access.open
            encryption.reveal(self._ctx, tx, tasks)
        for task in tasks:
            task.depends_on = deps[task.id]
        queue_limits = [info for info in queue_limits if queue is None or info.name == queue]
        tenant_limits = [
            info for info in tenant_limits
            if (tenant is None or info.name == tenant) and (tenants is None or info.name in tenants)
        ]
        return Summary(counts, dict(sorted(queues.items())), tasks, queue_limits, tenant_limits, access_open)

    def finished_after(
        self, after: tuple[int, int], *, queue: str | None = None, tenant: str | None = None, limit: int = FINISHED_PAGE
    ) -> tuple[list[tuple[int, int, str, str, str]], tuple[int, int]]:
        """Tasks that finished past the `(finished_at, id)` cursor `after`, oldest first, and the cursor to ask from next.

        Each is `(finished_at, id, queue, tenant, state)`, of `queue` and
        `tenant` and of the tenants the actor may read. At most `limit` are
        looked at per call (through the index on finished time), so asking
        again until the list comes back empty catches up in bounded steps.
        """
        check_filters(queue=queue, tenant=tenant)
        with self._ctx.read() as tx:
            tenant, tenants = self._ctx.read_scope(tx, tenant, "read the status of tasks")
            rows = tx.finished_after(after, limit)
        if not rows:
            return [], after
        visible = None if tenants is None else set(tenants)
        kept = [
            row for row in rows
            if (queue is None or row[2] == queue) and (tenant is None or row[3] == tenant) and (visible is None or row[3] in visible)
        ]
        return kept, (rows[-1][0], rows[-1][1])

    # -- change ------------------------------------------------------------

    @retrying
    def cancel(self, ids: Sequence[int], *, cascade: bool = False, reason: str | None = None) -> list[int]:
        """Cancel tasks (running ones are stopped by their worker); all or nothing.

        Pending and blocked tasks become `cancelled` now. A running task is
        flagged and its worker stops it. Without `cascade`, dependents become
        `blocked`; with it, they are cancelled too. Returns every task cancelled
        or flagged, in order.
        """
        with self._ctx.change() as (tx, journal):
            return cancel_tasks(self._ctx, tx, journal, ids, cascade=cascade, reason=reason)

    def cancel_all(
        self,
        *,
        queue: str | None = None,
        tenant: str | None = None,
        states: Sequence[str] = CANCELLABLE_STATES,
        reason: str | None = None,
        dry_run: bool = False,
        confirmed: bool = False,
        on_batch: Callable[[list[int], int], None] | None = None,
    ) -> list[int]:
        """Cancel every unfinished task of `queue`/`tenant` in `states` (running ones are stopped by their worker); their ids.

        The tasks that match when it starts are cancelled in batches of
        CANCEL_BATCH, each its own transaction with one `task.cancel` entry
        per task; one that finished or changed state meanwhile is left alone.
        `on_batch(ids cancelled, tasks matched)` is called after each batch
        commits. `dry_run` returns the ids it would cancel and changes
        nothing; otherwise `confirmed` must be set. Needs `operate`; a
        tenant-scoped operator reaches only its tenants' tasks.
        """
        states = _cancellable_states(states)
        check_filters(queue=queue, tenant=tenant)
        check_reason(reason)
        if not dry_run and not confirmed:
            raise InvalidInput("cancel --all cancels every matching task: add --yes to confirm (or --dry-run to list them)")
        with self._ctx.read() as tx:
            ids = _matching_unfinished(self._ctx, tx, queue, tenant, states)
        if dry_run:
            return ids
        cancelled: list[int] = []
        for start in range(0, len(ids), CANCEL_BATCH):
            batch = self._cancel_batch(ids[start:start + CANCEL_BATCH], states, reason)
            cancelled += batch
            if on_batch is not None:
                on_batch(batch, len(ids))
        return cancelled

    @retrying
    def _cancel_batch(self, ids: Sequence[int], states: Sequence[str], reason: str | None) -> list[int]:
        """Cancel those of `ids` still in `states`, in one transaction; the ids cancelled."""
        with self._ctx.change() as (tx, journal):
            tx.lock_tasks(ids)
            access = self._ctx.access(tx)
            # A pending task that an earlier batch's cancel blocked was matched as pending: it goes too.
            wanted = set(states) | ({State.BLOCKED.value} if State.PENDING.value in states else set())
            live = [Task.from_row(row) for row in tx.task_rows(ids)]
            live = [task for task in live if task.state.value in wanted]
            for task in live:
                self._ctx.authorize(tx, "operate", f"cancel task {task.id}", tenant=task.tenant, access=access)
            if not live:
                return []
            return cancel_tasks(self._ctx, tx, journal, [task.id for task in live], cascade=False, reason=reason)

    @retrying
    def bump(self, task_id: int, *, priority: int | None = None, by: int | None = None) -> tuple[int, int]:
        """Set (`priority`) or shift (`by`) a pending or blocked task's priority; returns (old, new)."""
        _check_bump(priority, by)
        with self._ctx.change() as (tx, journal):
            return bump_task(self._ctx, tx, journal, task_id, priority=priority, by=by)


def _cancellable_states(states: Sequence[str]) -> list[str]:
    """`states` checked for `cancel --all` (pending, blocked, running), each once, in that order."""
    unknown = [state for state in states if state not in CANCELLABLE_STATES]
    if unknown:
        raise InvalidInput(f"invalid state {unknown[0]!r} for cancel --all: use pending, blocked or running")
    if not states:
        raise InvalidInput("no state to cancel: use pending, blocked or running")
    return [state for state in CANCELLABLE_STATES if state in states]


def _matching_unfinished(ctx: Context, tx: Tx, queue: str | None, tenant: str | None, states: Sequence[str]) -> list[int]:
    """The ids, ascending, of the tasks in `states` of `queue`/`tenant` that the actor may operate on."""
    tenant, tenants = ctx.read_scope(tx, tenant, "cancel every matching task", "operate")
    ids: set[int] = set()
    for state in states:
        ids.update(tx.task_ids_in_state(state, queue=queue, tenant=tenant, tenants=tenants))
    return sorted(ids)


def _check_bump(priority: int | None, by: int | None) -> None:
    if (priority is None) == (by is None):
        raise InvalidInput("give either --priority P or --by N")


def bump_task(
    ctx: Context, tx: Tx, journal: Journal, task_id: int, *, priority: int | None = None, by: int | None = None
) -> tuple[int, int]:
    """Set or shift a task's priority inside the caller's transaction (see `TaskService.bump`); (old, new)."""
    _check_bump(priority, by)
    tx.lock_tasks([task_id])
    rows = tx.task_rows([task_id])
    if not rows:
        raise NotFound(f"task {task_id} does not exist: 'tqcli status' lists tasks")
    task = Task.from_row(rows[0])
    ctx.authorize(tx, "change_task", f"bump task {task_id}", tenant=task.tenant, owner=task.submitted_by)
    if task.state not in (State.PENDING, State.BLOCKED):
        raise Conflict(f"task {task_id} is {task.state.value}; only pending or blocked tasks can be bumped")
    new = priority if priority is not None else task.priority + by  # type: ignore[operator]
    if not -100 <= new <= 100:
        raise InvalidInput(f"invalid priority {new}: it must stay between -100 and 100 (task {task_id} has {task.priority})")
    tx.set_priority(task_id, new)
    journal.add("task.bump", task_id, task.tenant, old=task.priority, new=new)
    return task.priority, new


def cancel_tasks(ctx: Context, tx: Tx, journal: Journal, ids: Sequence[int], *, cascade: bool, reason: str | None) -> list[int]:
    """Cancel `ids` inside the caller's transaction (see `TaskService.cancel`)."""
    check_reason(reason)
    ids = list(dict.fromkeys(ids))
    now = ctx.clock.now()
    note = f"cancelled by {ctx.actor}" + (f": {reason}" if reason else "")
    tx.lock_tasks(ids)  # a worker claiming one meanwhile is skipped, or finished first and then seen running
    rows = {row[0]: Task.from_row(row) for row in tx.task_rows(ids)}
    access = ctx.access(tx)
    for task_id in ids:
        task = rows.get(task_id)
        if task is None:
            raise NotFound(f"task {task_id} does not exist; nothing was cancelled")
        ctx.authorize(tx, "change_task", f"cancel task {task_id}", tenant=task.tenant, owner=task.submitted_by, access=access)
        if task.state.terminal:
            raise Conflict(
                f"task {task_id} is already {task.state.value}; only pending, blocked or running tasks can be cancelled (nothing was cancelled)"
            )
    stopped = [task for task in rows.values() if task.state is not State.RUNNING]
    running = [task for task in rows.values() if task.state is State.RUNNING]
    if stopped:
        tx.set_states([task.id for task in stopped], "cancelled", finished_at=now, error=note)
    for task in stopped:
        journal.add("task.cancel", task.id, task.tenant, reason=reason, previous=task.state.value)
    for task in running:
        tx.request_cancel(task.id, note)
        journal.add("task.cancel", task.id, task.tenant, reason=reason, previous="running", requested=True)
    affected = [task.id for task in rows.values()]
    if cascade:
        dependents = chaining.all_dependents(tx, ids)
        tx.lock_tasks([row[0] for row in dependents])
        now_states = tx.task_states([row[0] for row in dependents])  # as they are under the lock
        dependents = [
            (task_id, now_states[task_id], tenant) for task_id, _, tenant in dependents
            if now_states.get(task_id) in ("pending", "blocked") and task_id not in rows
        ]
        if dependents:
            tx.set_states([row[0] for row in dependents], "cancelled", finished_at=now, error=f"{note} (cascade)")
        for task_id, state, tenant in dependents:
            journal.add("task.cancel", task_id, tenant, reason=reason, previous=state, cascade=True)
        affected += [row[0] for row in dependents]
    elif stopped:
        chaining.block_dependents(tx, journal, [task.id for task in stopped], cause="dependency cancelled")
    return affected
