"""A task's life after submit, beyond cancel and bump: restart, edit, wait for many, prune.

Each change is one short transaction with its audit entries, made by a
function that runs inside a caller's transaction (`restart_task`,
`edit_task`, `prune_batch`: see "Changes that compose" in docs/design.md).
`prune` works in bounded batches, so a worker is never kept waiting behind it.
"""

from __future__ import annotations

import json
import time
from typing import Any, Callable, Mapping, Sequence

from tqcli.core import encryption
from tqcli.core.context import Context, retrying
from tqcli.core.spec import TaskSpec, encode_payload, spec_from_mapping
from tqcli.core.submission import check_backends, insert_specs
from tqcli.core.task import State, Task
from tqcli.errors import Conflict, InvalidInput, NotFound, WaitTimeout
from tqcli.security.audit import Journal
from tqcli.security.crypto import ENCRYPTED, DoesNotDecrypt, UnknownDataKey
from tqcli.store.base import Tx
from tqcli.units import US_PER_SECOND, check_instant, format_time

PRUNE_BATCH = 500
PRUNABLE_STATES = ("completed", "cancelled", "failed")
# The fields `restart` carries over unless an option overrides them.
_CARRIED = ("backend", "target", "payload", "queue", "tenant", "priority", "max_retries", "backoff", "timeout", "cwd", "env")


def _task(tx: Tx, task_id: int) -> Task:
    """One task, locked until the change commits."""
    tx.lock_tasks([task_id])
    rows = tx.task_rows([task_id])
    if not rows:
        raise NotFound(f"task {task_id} does not exist: 'tqcli status' lists tasks")
    return Task.from_row(rows[0])


def _own_name(task: Task) -> str | None:
    """The task's name when it was given (not the default, which follows the target)."""
    return None if task.name == task.target else task.name


def _own_service(task: Task) -> str | None:
    """The task's service when it was given (not the default `BACKEND:TARGET`)."""
    return None if task.service == f"{task.backend}:{task.target}" else task.service


def restart_spec(task: Task, overrides: Mapping[str, Any]) -> TaskSpec:
    """The spec of a new task like `task`, with `overrides` (submit options) applied.

    The idempotency key, DAG and dependencies are not carried over; a name
    or service that were defaults follow a new target or backend.
    """
    values: dict[str, Any] = {key: getattr(task, key) for key in _CARRIED}
    values["payload"] = task.payload_value
    values["env"] = task.env_value or None
    for key, value in (("name", _own_name(task)), ("service", _own_service(task))):
        if value is not None:
            values[key] = value
    if task.expires_at is not None:
        values["expires"] = max(1e-6, (task.expires_at - task.run_at) / US_PER_SECOND)
    if overrides.get("backend", task.backend) != task.backend:  # where and with what it ran belonged to the old backend
        values.pop("cwd", None)
        values.pop("env", None)
    values.update(overrides)
    return spec_from_mapping({key: value for key, value in values.items() if value is not None})


@retrying
def restart(ctx: Context, task_id: int, overrides: Mapping[str, Any]) -> int:
    """Submit a new task with the spec of finished task `task_id`; the new id (`restarted_from` records the old)."""
    with ctx.change() as (tx, journal):
        return restart_task(ctx, tx, journal, task_id, overrides)


def restart_task(ctx: Context, tx: Tx, journal: Journal, task_id: int, overrides: Mapping[str, Any]) -> int:
    """`restart` inside the caller's transaction; the new task's id.

    An encrypted task's copy is encrypted again, under the new id; copying
    it needs the `decrypt` permission on the old one and the data key.
    `overrides` may ask `encrypt` for the copy of a plain task.
    """
    task = _task(tx, task_id)
    ctx.authorize(tx, "read", f"restart task {task_id}", tenant=task.tenant)
    if not task.state.terminal:
        raise Conflict(
            f"task {task_id} is {task.state.value}; only a finished (completed, failed or cancelled) task can be "
            f"restarted: cancel it first, or use 'tqcli edit {task_id}'"
        )
    overrides = dict(overrides)
    encrypt = bool(overrides.pop("encrypt", False)) or task.encrypted
    if task.encrypted:
        ctx.authorize(tx, "decrypt", f"restart encrypted task {task_id}", tenant=task.tenant, owner=task.submitted_by)
        encryption.open_for_copy(ctx, tx, task, f"restarting encrypted task {task_id}")
    spec = restart_spec(task, overrides)
    check_backends([spec])
    return insert_specs(ctx, tx, journal, [spec], restarted_from=task_id, encrypt=encrypt)[0].id


@retrying
def edit(ctx: Context, task_id: int, changes: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Change a pending or blocked task; returns `{FIELD: {"from", "to"}}` of what changed (empty: nothing).

    `changes` holds any of payload (a dict), target, priority, max_retries,
    timeout, delay (seconds from now) and at (microseconds); a name or
    service that were defaults follow a new target.
    """
    _check_edit(changes)
    with ctx.change() as (tx, journal):
        return edit_task(ctx, tx, journal, task_id, changes)


def _check_edit(changes: Mapping[str, Any]) -> None:
    if not changes:
        raise InvalidInput("nothing to change: give --payload, --target, --priority, --max-retries, --timeout, --delay or --at")
    if "delay" in changes and "at" in changes:
        raise InvalidInput("use either --delay or --at, not both")


def edit_task(ctx: Context, tx: Tx, journal: Journal, task_id: int, changes: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """`edit` inside the caller's transaction; what changed (empty: nothing was written)."""
    _check_edit(changes)
    now = ctx.clock.now()
    task = _task(tx, task_id)
    ctx.authorize(tx, "change_task", f"edit task {task_id}", tenant=task.tenant, owner=task.submitted_by)
    if task.state not in (State.PENDING, State.BLOCKED):
        raise Conflict(f"task {task_id} is {task.state.value}; only pending or blocked tasks can be edited")
    wanted = {key: value for key, value in changes.items() if key not in ("delay", "at")}
    if "delay" in changes:
        wanted["at"] = now + int(changes["delay"] * US_PER_SECOND)
    elif "at" in changes:
        wanted["at"] = changes["at"]
    current, cipher = task.payload_value, None
    if task.encrypted:  # its payload is opened only to be replaced
        current = {}
        if "payload" in wanted:
            cipher = encryption.sealing_cipher(ctx, tx, f"editing the payload of encrypted task {task_id}")
            current = _opened_payload(cipher, task)
    spec = _edited_spec(task, wanted, current)  # checks every value as a submit would
    if "at" in wanted:
        check_instant(wanted["at"], what="at")
    columns = _changed_columns(task, spec, wanted, current)
    if not columns:
        return {}
    stored = {column: encode_payload(new) if column == "payload" else new for column, (_, new) in columns.items()}
    if cipher is not None and "payload" in stored:
        stored["payload"] = cipher.seal(task_id, "payload", stored["payload"])
        columns["payload"] = (ENCRYPTED, ENCRYPTED)  # the audit chain never holds an encrypted task's payload
    details = {column: {"from": old, "to": new} for column, (old, new) in columns.items()}
    if not tx.edit_task(task_id, stored):
        raise Conflict(f"task {task_id} is no longer pending or blocked; nothing was edited")
    details = _readable(details)
    journal.add("task.edit", task_id, task.tenant, **details)
    return details


def _opened_payload(cipher: Any, task: Task) -> Any:
    """An encrypted task's payload as a value, or None when it cannot be read (then any new payload is a change)."""
    try:
        return json.loads(cipher.open(task.id, "payload", task.payload))
    except (DoesNotDecrypt, UnknownDataKey, ValueError, RecursionError):
        return None


def _edited_spec(task: Task, wanted: Mapping[str, Any], current: Any) -> TaskSpec:
    target = wanted.get("target", task.target)
    values: dict[str, Any] = {
        "backend": task.backend, "payload": wanted.get("payload", current if isinstance(current, dict) else {}),
        "priority": wanted.get("priority", task.priority), "max_retries": wanted.get("max_retries", task.max_retries),
        "timeout": wanted.get("timeout", task.timeout), "queue": task.queue, "tenant": task.tenant,
    }
    for key, value in (("name", _own_name(task)), ("service", _own_service(task))):
        if value is not None:
            values[key] = value
    return TaskSpec(target, **{key: value for key, value in values.items() if value is not None})


def _changed_columns(task: Task, spec: TaskSpec, wanted: Mapping[str, Any], current: Any) -> dict[str, tuple[Any, Any]]:
    """`{column: (old, new)}` for the columns the edit changes (`current`: the payload as it is)."""
    changed: dict[str, tuple[Any, Any]] = {}
    pairs = {
        "payload": (current, spec.payload if "payload" in wanted else current), "target": (task.target, spec.target),
        "priority": (task.priority, spec.priority), "max_retries": (task.max_retries, spec.max_retries),
        "timeout": (task.timeout, spec.timeout), "run_at": (task.run_at, wanted.get("at", task.run_at)),
    }
    for column, (old, new) in pairs.items():
        if old != new:
            changed[column] = (old, new)
    if "target" in changed:
        if _own_name(task) is None:
            changed["name"] = (task.name, spec.display_name)
        if _own_service(task) is None:
            changed["service"] = (task.service, spec.service_key)
    if "run_at" in changed and task.expires_at is not None:
        changed["expires_at"] = (task.expires_at, task.expires_at + changed["run_at"][1] - task.run_at)
    return changed


def _readable(details: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Times in the audit details as ISO 8601, like every other time tqcli shows."""
    shown = {}
    for column, change in details.items():
        if column in ("run_at", "expires_at"):
            change = {"from": format_time(change["from"]), "to": format_time(change["to"])}
        shown[column] = change
    return shown


def wait_all(
    ctx: Context,
    ids: Sequence[int],
    *,
    timeout: float | None = None,
    interval: float = 0.2,
    on_poll: Callable[[], None] = lambda: None,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[int, Task]:
    """Block until every task in `ids` is finished or blocked; NotFound first for an unknown id; WaitTimeout after `timeout` s."""
    ids = list(dict.fromkeys(ids))
    deadline = None if timeout is None else time.monotonic() + timeout
    checked = None  # the grants are read once, at the first look
    while True:
        with ctx.read() as tx:
            tasks = {row[0]: Task.from_row(row) for row in tx.task_rows(ids)}
            missing = [task_id for task_id in ids if task_id not in tasks]
            if missing:
                raise NotFound(f"task {missing[0]} does not exist: 'tqcli status' lists tasks (nothing was waited for)")
            if checked is None:
                access = ctx.access(tx)
                for task_id in ids:
                    ctx.authorize(tx, "read", f"wait for task {task_id}", tenant=tasks[task_id].tenant, access=access)
                checked = True
            open_ids = [task_id for task_id in ids if not (tasks[task_id].state.terminal or tasks[task_id].state is State.BLOCKED)]
            if not open_ids:
                encryption.reveal(ctx, tx, list(tasks.values()))
                return {task_id: tasks[task_id] for task_id in ids}
        if deadline is not None and time.monotonic() >= deadline:
            if len(ids) == 1:
                raise WaitTimeout(f"task {ids[0]} is still {tasks[ids[0]].state.value} after {timeout:g} s; it goes on (check with 'tqcli status {ids[0]}')")
            shown = ", ".join(f"{task_id} ({tasks[task_id].state.value})" for task_id in open_ids[:10])
            raise WaitTimeout(f"still not finished after {timeout:g} s: task {shown}; they go on ('tqcli status ID' follows one)")
        on_poll()
        sleep(interval if deadline is None else max(0.0, min(interval, deadline - time.monotonic())))


def prune(
    ctx: Context, *, older_than: float, states: Sequence[str] = ("completed", "cancelled"), dry_run: bool = False
) -> list[int]:
    """Delete tasks in `states` that finished at or before now - `older_than` seconds; their ids.

    In batches of PRUNE_BATCH, each its own transaction with one
    `task.prune` entry naming its ids. Tasks that an unfinished task depends
    on are kept. With `dry_run`, only says which it would delete.
    """
    _check_prune_states(states)
    if older_than < 0:
        raise InvalidInput("invalid --older-than: use a duration of 0 or more, like 30d")
    states = sorted(set(states))
    finished_by = ctx.clock.now() - int(older_than * US_PER_SECOND)
    pruned: list[int] = []
    after = (-1, 0)
    while True:
        if dry_run:
            with ctx.read() as tx:
                ctx.authorize(tx, "operate", "prune tasks")
                rows = tx.prunable_tasks(states, finished_by, after, PRUNE_BATCH)
        else:
            with ctx.change() as (tx, journal):
                rows = prune_batch(ctx, tx, journal, states=states, finished_by=finished_by, after=after)
        if not rows:
            return pruned
        pruned += [row[1] for row in rows]
        after = (rows[-1][0], rows[-1][1])


def _check_prune_states(states: Sequence[str]) -> None:
    unknown = [state for state in states if state not in PRUNABLE_STATES]
    if unknown:
        raise InvalidInput(f"invalid state {unknown[0]!r} for prune: use completed, cancelled or failed")


def prune_batch(
    ctx: Context, tx: Tx, journal: Journal, *, states: Sequence[str], finished_by: int, after: tuple[int, int] = (-1, 0)
) -> list[tuple[int, int, str]]:
    """One batch of `prune` inside the caller's transaction; the `(finished_at, id, tenant)` of the tasks it deleted.

    At most PRUNE_BATCH tasks in `states` that finished at or before
    `finished_by`, past the `(finished_at, id)` cursor `after`, in that
    order; audited as one `task.prune` entry naming their ids. When none
    is left, nothing is written.
    """
    _check_prune_states(states)
    ctx.authorize(tx, "operate", "prune tasks")
    states = sorted(set(states))
    rows = tx.prunable_tasks(states, finished_by, after, PRUNE_BATCH)
    if rows:
        ids = [row[1] for row in rows]
        tx.delete_tasks(ids, now=ctx.clock.now())
        journal.add("task.prune", None, None, ids=ids, count=len(ids), states=states, finished_by=format_time(finished_by))
    return rows
