"""Task commands beyond submit and status: wait, restart, edit, prune."""


import sys
from typing import Annotated, Any, List, Optional

import typer

from tqcli.cli import render
from tqcli.cli.tasks import (
    BackendOpt, BackoffOpt, CwdOpt, DelayOpt, AtOpt, DependsOnOpt, EnvOpt, ExpiresOpt, IdempotencyOpt, MaxRetriesOpt,
    NameOpt, PayloadFileOpt, PayloadOpt, PriorityOpt, QueueOpt, ServiceOpt, TenantOpt, TimeoutOpt, exit_for, show_failure,
    spec_options, unchanged,
)

KEPT = "[default: the old task's]"
KEPT_ENV = "[default: the old task's; given, it replaces them all]"
from tqcli.errors import Interrupted, InvalidInput


def wait_notice(queue_obj: Any) -> Any:
    """A poll callback that says once on stderr when no worker has sent a heartbeat for 10 s."""
    import time

    from tqcli.core.workers import QUIET_WORKERS

    said = False
    next_look = time.monotonic() + 1.0  # a task claimed at once needs no note

    def look() -> None:
        nonlocal said, next_look
        if said or time.monotonic() < next_look:
            return
        next_look = time.monotonic() + 2.0
        if queue_obj.no_live_worker():
            said = True
            render.message(
                f"note: no worker has sent a heartbeat in the last {QUIET_WORKERS} s: nothing runs these tasks until "
                "one does (start one with 'tqcli worker'; 'tqcli workers' lists them)"
            )

    return look


def wait(
    ctx: typer.Context,
    task_ids: Annotated[List[int], typer.Argument(metavar="ID...", help="Tasks to wait for.", show_default=False)],
    timeout: Annotated[Optional[str], typer.Option(metavar="DUR", help="Give up after DUR (exit 124; the tasks go on).")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print {ID: TASK, ...} once they finished.")] = False,
) -> None:
    """Wait until tasks already submitted finish: exit 0 if all completed, 1 if any failed, was cancelled or is blocked."""
    from tqcli.cli import state
    from tqcli.units import parse_duration

    seconds = None if timeout is None else parse_duration(timeout, what="--timeout")
    queue_obj = state(ctx).queue(read_only=True)
    try:
        tasks = queue_obj.wait_all(task_ids, timeout=seconds, on_poll=wait_notice(queue_obj))
    except KeyboardInterrupt:
        raise Interrupted("interrupted: the tasks go on; 'tqcli status ID' follows one") from None
    if json_output:
        render.emit_json({str(task_id): queue_obj.get(task_id).to_json() for task_id in tasks})
    unfinished = [task for task in tasks.values() if task.state.value != "completed"]
    for task in unfinished[:-1]:
        show_failure(queue_obj.get(task.id))
    if unfinished:
        exit_for(queue_obj.get(unfinished[-1].id), others=len(unfinished) - 1)


def restart(
    ctx: typer.Context,
    task_id: Annotated[int, typer.Argument(metavar="ID", help="A finished task (completed, failed or cancelled).", show_default=False)],
    target: Annotated[Optional[str], typer.Option(metavar="T", help="Run this instead of the old target.")] = None,
    backend: unchanged(BackendOpt, KEPT) = None,
    payload: unchanged(PayloadOpt, KEPT) = None,
    payload_file: unchanged(PayloadFileOpt, KEPT) = None,
    name: unchanged(NameOpt, KEPT) = None,
    queue: unchanged(QueueOpt, KEPT) = None,
    tenant: unchanged(TenantOpt, KEPT) = None,
    priority: unchanged(PriorityOpt, KEPT) = None,
    max_retries: unchanged(MaxRetriesOpt, KEPT) = None,
    backoff: unchanged(BackoffOpt, KEPT) = None,
    timeout: unchanged(TimeoutOpt, KEPT) = None,
    delay: DelayOpt = None,
    at: AtOpt = None,
    depends_on: DependsOnOpt = None,
    service: unchanged(ServiceOpt, KEPT) = None,
    idempotency_key: IdempotencyOpt = None,
    expires: unchanged(ExpiresOpt, KEPT) = None,
    cwd: unchanged(CwdOpt, KEPT) = None,
    env: unchanged(EnvOpt, KEPT_ENV) = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the new task object instead of its id.")] = False,
) -> None:
    """Submit a new task with the spec of a finished one; print the new id.

    Options override the old spec. The idempotency key, DAG and dependencies
    are not carried over unless given again; a name or service that were
    defaults follow a new target. The new task records `restarted_from`.
    """
    from tqcli.cli import state

    options = spec_options(
        backend=backend, payload=payload, payload_file=payload_file, name=name, queue=queue, tenant=tenant,
        priority=priority, max_retries=max_retries, backoff=backoff, timeout=timeout, delay=delay, at=at,
        depends_on=depends_on, service=service, idempotency_key=idempotency_key, expires=expires, cwd=cwd, env=env,
    )
    if target is not None:
        options["target"] = target
    queue_obj = state(ctx).queue()
    new_id = queue_obj.restart(task_id, **options)
    render.message(f"task {new_id} restarts task {task_id}")
    if json_output:
        render.emit_json(queue_obj.get(new_id).to_json())
    else:
        sys.stdout.write(f"{new_id}\n")


def edit(
    ctx: typer.Context,
    task_id: Annotated[int, typer.Argument(metavar="ID", help="A pending or blocked task.", show_default=False)],
    payload: unchanged(PayloadOpt) = None,
    target: Annotated[Optional[str], typer.Option(metavar="T", help="What to run instead (same backend).")] = None,
    priority: unchanged(PriorityOpt) = None,
    max_retries: unchanged(MaxRetriesOpt) = None,
    timeout: Annotated[Optional[str], typer.Option(metavar="DUR|none", help="How long one attempt may run, e.g. 30s, 5m; none removes the limit [default: unchanged].")] = None,
    delay: unchanged(DelayOpt) = None,
    at: unchanged(AtOpt) = None,
) -> None:
    """Change a pending or blocked task; each change is audited as one task.edit entry (from, to)."""
    from tqcli.cli import state
    from tqcli.core.spec import parse_payload
    from tqcli.units import parse_duration, parse_time

    changes: dict[str, Any] = {}
    if payload is not None:
        changes["payload"] = parse_payload(payload, what="--payload")
    for key, value in (("target", target), ("priority", priority), ("max_retries", max_retries)):
        if value is not None:
            changes[key] = value
    if timeout is not None:
        changes["timeout"] = None if timeout == "none" else parse_duration(timeout, what="--timeout")
    if delay is not None:
        changes["delay"] = parse_duration(delay, what="--delay")
    if at is not None:
        changes["at"] = parse_time(at)
    details = state(ctx).queue().edit(task_id, **changes)
    if not details:
        render.message("nothing changed")
        return
    for field, change in details.items():
        render.message(f"task {task_id}: {field} {_short(change['from'])} -> {_short(change['to'])}")


def _short(value: Any) -> str:
    import json

    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= 60 else text[:59] + "…"


def prune(
    ctx: typer.Context,
    older_than: Annotated[Optional[str], typer.Option(metavar="DUR", help="Delete tasks that finished at least DUR ago (e.g. 30d).")] = None,
    states: Annotated[Optional[List[str]], typer.Option("--state", metavar="S", help="completed, cancelled or failed; repeat for several [default: completed and cancelled].")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the ids it would delete and change nothing.")] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Really delete them.")] = False,
) -> None:
    """Delete old finished tasks with their attempts; print their ids. The audit chain keeps every record.

    Tasks an unfinished task depends on are kept. Deletes in batches, one
    task.prune audit entry per batch naming its ids.

      tqcli prune --older-than 30d --yes
    """
    from tqcli.cli import state
    from tqcli.units import parse_duration

    if older_than is None:
        raise InvalidInput("missing --older-than DUR: how long ago a task must have finished (e.g. 30d)")
    if dry_run == yes:
        raise InvalidInput("give --dry-run to see what would be deleted, or --yes to delete it" if not yes else "give either --dry-run or --yes, not both")
    seconds = parse_duration(older_than, what="--older-than")
    queue_obj = state(ctx).queue(read_only=dry_run)
    ids = queue_obj.prune(older_than=seconds, states=states or ("completed", "cancelled"), dry_run=dry_run)
    sys.stdout.write("".join(f"{task_id}\n" for task_id in ids))
    render.message(f"{'would delete' if dry_run else 'deleted'} {len(ids)} task{'' if len(ids) == 1 else 's'}")
