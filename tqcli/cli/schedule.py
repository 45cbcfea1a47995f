"""Schedule commands: add, list, next, pause, resume, remove, run, edit."""

import sys
from typing import Annotated, Optional

import typer

from tqcli.cli import command_group, render, state
from tqcli.cli.tasks import (
    BackendOpt, BackoffOpt, CwdOpt, EnvOpt, ExpiresOpt, MaxRetriesOpt, PayloadFileOpt, PayloadOpt, PriorityOpt,
    QueueOpt, ServiceOpt, TenantOpt, TimeoutOpt, spec_options, unchanged,
)

app = command_group("Cron schedules: every worker run enqueues the fire times that fell due.")

KEPT = "[default: the schedule's]"
def _valid_name(value: str) -> str:
    """A schedule name that no schedule could have is invalid input (exit 2), not a missing schedule."""
    from tqcli.units import check_name

    return check_name(value, what="schedule")


NameArg = Annotated[str, typer.Argument(metavar="NAME", help="The schedule's name (1-64 of A-Za-z0-9._-).", show_default=False, callback=_valid_name)]


@app.command("add")
def add(
    ctx: typer.Context,
    name: NameArg,
    target: Annotated[str, typer.Argument(metavar="TARGET", help="What each fire runs: module:function, or a command with --backend shell.", show_default=False)],
    cron: Annotated[str, typer.Option(metavar="EXPR", help="Five-field cron expression or @hourly/@daily/@weekly/@monthly/@yearly.", show_default=False)],
    tz: Annotated[str, typer.Option(metavar="ZONE", help="IANA time zone the expression is read in.")] = "UTC",
    catchup: Annotated[bool, typer.Option("--catchup", help="Enqueue every missed fire time (the latest 100), not just the latest.")] = False,
    backend: BackendOpt = None,
    payload: PayloadOpt = None,
    payload_file: PayloadFileOpt = None,
    queue: QueueOpt = None,
    tenant: TenantOpt = None,
    priority: PriorityOpt = None,
    max_retries: MaxRetriesOpt = None,
    backoff: BackoffOpt = None,
    timeout: TimeoutOpt = None,
    delay: Annotated[Optional[str], typer.Option(metavar="DUR", help="Each fired task becomes ready this long after its fire time, e.g. 5m.")] = None,
    service: ServiceOpt = None,
    expires: ExpiresOpt = None,
    cwd: CwdOpt = None,
    env: EnvOpt = None,
) -> None:
    """Add a schedule; its tasks are named after it.

      tqcli schedule add nightly --cron '0 2 * * *' --tz Europe/Berlin etl.jobs:nightly
    """
    from tqcli.units import format_time

    options = spec_options(
        backend=backend, payload=payload, payload_file=payload_file, name=None, queue=queue, tenant=tenant,
        priority=priority, max_retries=max_retries, backoff=backoff, timeout=timeout, delay=delay, at=None,
        depends_on=None, service=service, idempotency_key=None, expires=expires, cwd=cwd, env=env,
    )
    schedule = state(ctx).queue(create=True).schedules.add(name, cron=cron, tz=tz, catchup=catchup, options={"target": target, **options})
    render.message(f"schedule {name} added; next fire {format_time(schedule.next_fire_at)}")


@app.command("list")
def list_schedules(
    ctx: typer.Context,
    json_output: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False,
) -> None:
    """List schedules with their next fire time."""
    schedules = state(ctx).queue(read_only=True).schedules.list()
    if json_output:
        render.emit_json([schedule.to_json() for schedule in schedules])
        return
    rows = []
    for schedule in schedules:
        data = schedule.to_json()
        rows.append((schedule.name, schedule.cron, schedule.tz, "paused" if schedule.paused else "active", data["next"], data["last_fire"], data["target"]))
    render.table(["NAME", "CRON", "TZ", "STATE", "NEXT", "LAST FIRE", "TARGET"], rows, free_text=["TARGET"])


@app.command("next")
def next_fires(
    ctx: typer.Context,
    name: NameArg,
    count: Annotated[int, typer.Option(metavar="N", help="How many fire times.")] = 5,
    json_output: Annotated[bool, typer.Option("--json", help="Print a JSON list of ISO 8601 UTC times.")] = False,
) -> None:
    """Show the next fire times after now (in UTC and in the schedule's zone)."""
    from datetime import datetime

    from tqcli.scheduler.cron import check_zone
    from tqcli.units import format_time

    schedules = state(ctx).queue(read_only=True).schedules
    schedule = schedules.get(name)
    times = schedules.next(name, count)
    if schedule.paused:
        render.message(f"schedule {name} is paused: 'tqcli schedule resume {name}' resumes it; these are the times it would fire")
    if json_output:
        render.emit_json([format_time(us) for us in times])
        return
    zone = check_zone(schedule.tz)
    rows = [(format_time(us), datetime.fromtimestamp(us / 1e6, tz=zone).isoformat()) for us in times]
    render.table(["UTC", schedule.tz], rows)


def _toggle(ctx: typer.Context, name: str, action: str) -> None:
    service = state(ctx).queue().schedules
    if action == "remove":
        service.remove(name)
        render.message(f"schedule {name} removed")
    elif getattr(service, action)(name):
        render.message(f"schedule {name} {action}d")
    else:
        render.message(f"nothing changed: schedule {name} is already {'paused' if action == 'pause' else 'running'}")


@app.command("pause")
def pause(ctx: typer.Context, name: NameArg) -> None:
    """Stop firing until resumed."""
    _toggle(ctx, name, "pause")


@app.command("resume")
def resume(ctx: typer.Context, name: NameArg) -> None:
    """Fire again from the next fire time (fires missed while paused are not made up)."""
    _toggle(ctx, name, "resume")


@app.command("remove")
def remove(ctx: typer.Context, name: NameArg) -> None:
    """Delete a schedule; the tasks it enqueued stay."""
    _toggle(ctx, name, "remove")




@app.command("run")
def run(
    ctx: typer.Context,
    name: NameArg,
    json_output: Annotated[bool, typer.Option("--json", help="Print the task object instead of the id.")] = False,
) -> None:
    """Enqueue one task from the schedule now, paused or not; print its id. Its cron fire times stay as they are."""
    queue = state(ctx).queue()
    task_id = queue.schedules.run(name)
    if json_output:
        render.emit_json(queue.get(task_id).to_json())
    else:
        sys.stdout.write(f"{task_id}\n")


@app.command("edit")
def edit(
    ctx: typer.Context,
    name: NameArg,
    cron: Annotated[Optional[str], typer.Option(metavar="EXPR", help="New cron expression; fire times are computed from now on (times due under the old one are not caught up).", show_default=False)] = None,
    tz: Annotated[Optional[str], typer.Option(metavar="ZONE", help="New IANA time zone; like --cron, fires from now on.", show_default=False)] = None,
    target: Annotated[Optional[str], typer.Option(metavar="TARGET", help="What each fire runs from now on.", show_default=False)] = None,
    backend: unchanged(BackendOpt, KEPT) = None,
    payload: unchanged(PayloadOpt, KEPT) = None,
    payload_file: unchanged(PayloadFileOpt, KEPT) = None,
    queue: unchanged(QueueOpt, KEPT) = None,
    tenant: unchanged(TenantOpt, KEPT) = None,
    priority: unchanged(PriorityOpt, KEPT) = None,
    max_retries: unchanged(MaxRetriesOpt, KEPT) = None,
    backoff: unchanged(BackoffOpt, KEPT) = None,
    timeout: unchanged(TimeoutOpt, KEPT) = None,
    delay: Annotated[Optional[str], typer.Option(metavar="DUR", help="Each fired task becomes ready this long after its fire time, e.g. 5m.")] = None,
    service: unchanged(ServiceOpt, KEPT) = None,
    expires: unchanged(ExpiresOpt, KEPT) = None,
    cwd: unchanged(CwdOpt, KEPT) = None,
    env: unchanged(EnvOpt, KEPT) = None,
) -> None:
    """Change a schedule's expression, zone or submit options; audited as schedule.edit.

      tqcli schedule edit nightly --cron '0 3 * * *' --priority 5
    """
    from tqcli.units import format_time

    options = spec_options(
        backend=backend, payload=payload, payload_file=payload_file, name=None, queue=queue, tenant=tenant,
        priority=priority, max_retries=max_retries, backoff=backoff, timeout=timeout, delay=delay, at=None,
        depends_on=None, service=service, idempotency_key=None, expires=expires, cwd=cwd, env=env,
    )
    if target is not None:
        options["target"] = target
    schedule, changes = state(ctx).queue().schedules.edit(name, cron=cron, tz=tz, options=options)
    if not changes:
        render.message(f"nothing changed: schedule {name} already has these settings")
        return
    when = "paused" if schedule.paused else f"next fire {format_time(schedule.next_fire_at)}"
    render.message(f"schedule {name} changed ({', '.join(changes)}); {when}")
