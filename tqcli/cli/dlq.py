"""Dead-letter queue commands: list, replay, purge."""

import sys
from typing import Annotated, List, Optional

import typer

from tqcli.cli import command_group, render, state
from tqcli.cli.tasks import MaxRetriesOpt, PayloadOpt, PriorityOpt, unchanged

app = command_group("The dead-letter queue: tasks that failed every allowed attempt.")

IdsArg = Annotated[Optional[List[int]], typer.Argument(metavar="[ID]...", help="Failed tasks to act on.", show_default=False)]


def _task_rows(tasks):  # type: ignore[no-untyped-def]
    return [(t.id, t.queue, t.tenant, t.attempts, render.when(t.finished_at), t.name, (t.error or "").splitlines()[0] if t.error else None) for t in tasks]


def _print_tasks(tasks, json_output):  # type: ignore[no-untyped-def]
    """The ids, one per line, or (--json) the task objects."""
    if json_output:
        render.emit_json([task.to_json() for task in tasks])
    else:
        sys.stdout.write("".join(f"{task.id}\n" for task in tasks))


HEADERS = ["ID", "QUEUE", "TENANT", "ATTEMPTS", "FAILED AT", "NAME", "ERROR"]


@app.command("list")
def list_failed(
    ctx: typer.Context,
    queue: Annotated[Optional[str], typer.Option(metavar="Q", help="Only this queue.")] = None,
    tenant: Annotated[Optional[str], typer.Option(metavar="T", help="Only this tenant.")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print a JSON array of task objects.")] = False,
) -> None:
    """List failed tasks, the newest submitted first (by id, not by the time they failed)."""
    tasks = state(ctx).queue(read_only=True).dlq.list(queue=queue, tenant=tenant)
    if json_output:
        render.emit_json([task.to_json() for task in tasks])
    elif tasks:
        render.table(HEADERS, _task_rows(tasks))
    else:
        render.message("the dead-letter queue is empty")


@app.command("replay")
def replay(
    ctx: typer.Context,
    task_ids: IdsArg = None,
    every: Annotated[bool, typer.Option("--all", help="Replay every failed task (narrow with --queue/--tenant).")] = False,
    queue: Annotated[Optional[str], typer.Option(metavar="Q", help="With --all: only this queue.")] = None,
    tenant: Annotated[Optional[str], typer.Option(metavar="T", help="With --all: only this tenant.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would be replayed; change nothing.")] = False,
    payload: unchanged(PayloadOpt) = None,
    priority: unchanged(PriorityOpt) = None,
    max_retries: unchanged(MaxRetriesOpt) = None,
    to_queue: Annotated[Optional[str], typer.Option(metavar="Q", help="Move the tasks to queue Q (--queue only picks which are replayed) [default: unchanged].")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print a JSON array of the task objects (as they are now) instead of their ids.")] = False,
) -> None:
    """Put failed tasks back to pending (same ids, attempts reset); tasks blocked on them are unblocked.

    Prints the ids, one per line. The edit options change every task
    replayed before it runs again ("fix and retry"); its dlq.replay audit
    entry records what changed (from, to). A replay that would pass the
    target queue's max-length or a tenant's max-pending is exit 5 and
    replays nothing.

      tqcli dlq replay 7 --payload '{"retry": true}'

      tqcli dlq replay --all --queue etl --to-queue etl-slow
    """
    from tqcli.core.spec import parse_payload

    payload_value = None if payload is None else parse_payload(payload, what="--payload")
    tasks = state(ctx).queue(read_only=dry_run).dlq.replay(
        task_ids or (), every=every, queue=queue, tenant=tenant, dry_run=dry_run,
        payload=payload_value, priority=priority, max_retries=max_retries, to_queue=to_queue,
    )
    _print_tasks(tasks, json_output)
    verb = "would replay" if dry_run else "replayed"
    render.message(f"{verb} {len(tasks)} task(s)")


@app.command("purge")
def purge(
    ctx: typer.Context,
    task_ids: IdsArg = None,
    every: Annotated[bool, typer.Option("--all", help="Purge every failed task (narrow with --queue/--tenant/--older-than).")] = False,
    queue: Annotated[Optional[str], typer.Option(metavar="Q", help="With --all: only this queue.")] = None,
    tenant: Annotated[Optional[str], typer.Option(metavar="T", help="With --all: only this tenant.")] = None,
    older_than: Annotated[Optional[str], typer.Option(metavar="DUR", help="Only tasks that failed longer ago than DUR, e.g. 7d.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the ids it would delete; change nothing (no --yes needed).")] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Confirm: purged tasks are deleted for good.")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print a JSON array of the deleted task objects instead of their ids.")] = False,
) -> None:
    """Delete failed tasks (the audit chain keeps their record); tasks blocked on them are cancelled.

    Prints the ids, one per line. A DAG keeps its state: its purged tasks
    show as purged in 'dag status'.
    """
    tasks = state(ctx).queue(read_only=dry_run).dlq.purge(
        task_ids or (), every=every, queue=queue, tenant=tenant, older_than=older_than, dry_run=dry_run, confirmed=yes,
    )
    _print_tasks(tasks, json_output)
    verb = "would purge" if dry_run else "purged"
    render.message(f"{verb} {len(tasks)} task(s)")
