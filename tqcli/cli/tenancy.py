"""Queue and tenant commands: list, set."""

from typing import Annotated, Any, Optional

import typer

from tqcli.cli import command_group, render, state

queue_app = command_group("Queue limits: max length, max running, pause, encryption; shared by every worker and submitter.")
tenant_app = command_group("Tenant limits and weights: max pending, max running, rate, fair share; shared by every worker.")

_JSON = Annotated[bool, typer.Option("--json", help="Print a JSON array.")]


def _limit(value: int) -> str:
    return f"{value:,}" if value else "0 (no limit)"


def count_of(count: int, limit: int) -> str:
    """A count beside its limit, as `status` shows it: `9,998/10,000`, or `9,998` with no limit."""
    return f"{count:,}/{limit:,}" if limit else f"{count:,}"


@queue_app.command("list")
def list_queues(ctx: typer.Context, json_output: _JSON = False) -> None:
    """Show every queue with settings or tasks: its counts beside its limits."""
    queues = state(ctx).queue(read_only=True).tenancy.queues()
    if json_output:
        render.emit_json([info.to_dict() for info in queues])
        return
    if not queues:
        render.message("no queue has settings or tasks yet; 'tqcli queue set Q --max-length N' sets one")
        return
    rows = [
        (q.name, count_of(q.unfinished, q.max_length), count_of(q.running, q.max_running), "paused" if q.paused else "",
         "encrypt" if q.encrypt else "")
        for q in queues
    ]
    render.table(["QUEUE", "UNFINISHED/MAX-LENGTH", "RUNNING/MAX-RUNNING", "PAUSED", "ENCRYPT"], rows)


@queue_app.command("set")
def set_queue(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="Q", help="Queue name.", show_default=False)],
    max_length: Annotated[Optional[int], typer.Option(metavar="N", help="Refuse a submit (exit 5) that would leave more than N pending, blocked or running tasks in it; 0: no limit.")] = None,
    max_running: Annotated[Optional[int], typer.Option(metavar="N", help="Run at most N of its tasks at once, across all workers; 0: no limit.")] = None,
    pause: Annotated[bool, typer.Option("--pause", help="Stop claiming from it (running tasks finish; submits are still taken).")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="Claim from it again.")] = False,
    encrypt: Annotated[Optional[bool], typer.Option("--encrypt/--no-encrypt", help="Store every task submitted to it from now on encrypted (a task keeps how it was stored).", show_default=False)] = None,
) -> None:
    """Set a queue's limits, pause and resume it, or make it encrypt its tasks; options left out keep their value.

    Creates the database if it does not exist yet, as breaker set does.
    """
    from tqcli.errors import InvalidInput

    if pause and resume:
        raise InvalidInput("give --pause or --resume, not both")
    changes: dict[str, Any] = {}
    if max_length is not None:
        changes["max_length"] = max_length
    if max_running is not None:
        changes["max_running"] = max_running
    if pause or resume:
        changes["paused"] = pause
    if encrypt is not None:
        changes["encrypt"] = encrypt
    info, changed = state(ctx).queue(create=True).tenancy.set_queue(name, **changes)
    summary = (
        f"queue {info.name}: max-length {_limit(info.max_length)}, max-running {_limit(info.max_running)}"
        f"{', paused' if info.paused else ''}{', encrypts its tasks' if info.encrypt else ''}"
    )
    render.message(summary if changed else f"nothing changed: {summary}")


@tenant_app.command("list")
def list_tenants(ctx: typer.Context, json_output: _JSON = False) -> None:
    """Show every tenant with settings or tasks: its counts beside its limits, its rate bucket and weight."""
    tenants = state(ctx).queue(read_only=True).tenancy.tenants()
    if json_output:
        render.emit_json([info.to_dict() for info in tenants])
        return
    if not tenants:
        render.message("no tenant has settings or tasks yet; 'tqcli tenant set T --max-pending N' sets one")
        return
    rows = [
        (t.name, count_of(t.pending, t.max_pending), count_of(t.running, t.max_running), t.rate or "",
         "" if t.tokens is None else f"{int(t.tokens):,}", f"{t.weight:g}")
        for t in tenants
    ]
    render.table(["TENANT", "PENDING/MAX-PENDING", "RUNNING/MAX-RUNNING", "RATE", "MAY START NOW", "WEIGHT"], rows)


@tenant_app.command("set")
def set_tenant(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="T", help="Tenant name.", show_default=False)],
    max_pending: Annotated[Optional[int], typer.Option(metavar="N", help="Refuse a submit (exit 5) that would leave more than N of its tasks pending or blocked; 0: no limit.")] = None,
    max_running: Annotated[Optional[int], typer.Option(metavar="N", help="Run at most N of its tasks at once, across all workers; 0: no limit.")] = None,
    rate: Annotated[Optional[str], typer.Option(metavar="N/PERIOD", help="Start at most N of its tasks per PERIOD (s, m or h), as a token bucket of N that refills at N per PERIOD; none: no rate.")] = None,
    weight: Annotated[Optional[float], typer.Option(metavar="W", help="Its share of the claims among tenants with ready work of the same priority: a positive number (a tenant never set has 1; 2 takes twice the turns of 1).")] = None,
) -> None:
    """Set a tenant's limits, rate and weight; options left out keep their value.

    Creates the database if it does not exist yet, as breaker set does.
    """
    changes: dict[str, Any] = {}
    if max_pending is not None:
        changes["max_pending"] = max_pending
    if max_running is not None:
        changes["max_running"] = max_running
    if rate is not None:
        changes["rate"] = None if rate.strip().lower() == "none" else rate
    if weight is not None:
        changes["weight"] = weight
    info, changed = state(ctx).queue(create=True).tenancy.set_tenant(name, **changes)
    summary = (
        f"tenant {info.name}: max-pending {_limit(info.max_pending)}, max-running {_limit(info.max_running)}, "
        f"rate {info.rate or 'none'}, weight {info.weight:g}"
    )
    render.message(summary if changed else f"nothing changed: {summary}")
