"""Circuit-breaker commands: list, reset, set."""

from typing import Annotated, Optional

import typer

from tqcli.cli import command_group, render, state
from tqcli.errors import InvalidInput

app = command_group("Circuit breakers per service key, shared by all workers.")


@app.command("list")
def list_breakers(
    ctx: typer.Context,
    json_output: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False,
) -> None:
    """Show each circuit's state (closed, open, half-open) and failure count."""
    from tqcli.units import format_duration

    service = state(ctx).queue(read_only=True).breakers
    breakers = service.list()
    if json_output:
        render.emit_json([breaker.to_json() for breaker in breakers])
        return
    threshold, recovery = service.defaults()
    render.message(f"defaults: open after {threshold} consecutive failures, trial after {format_duration(recovery)}")
    if not breakers:
        render.message("no circuit has seen a failure yet")
        return
    rows = [(b.key, b.state, b.failures, b.failure_threshold, format_duration(b.recovery_timeout), render.when(b.retry_at)) for b in breakers]
    render.table(["SERVICE", "STATE", "FAILURES", "THRESHOLD", "RECOVERY", "TRIAL AFTER"], rows)


@app.command("reset")
def reset(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(metavar="KEY", help="Service key, e.g. simple:app.jobs:sync.", show_default=False)],
) -> None:
    """Close a circuit now and clear its failure count."""
    if state(ctx).queue().breakers.reset(key):
        render.message(f"circuit {key} closed")
    else:
        render.message(f"nothing changed: circuit {key} is already closed with no failures counted")


@app.command("set")
def configure(
    ctx: typer.Context,
    key: Annotated[Optional[str], typer.Argument(metavar="[KEY]", help="Service key to configure.", show_default=False)] = None,
    default: Annotated[bool, typer.Option("--default", help="Set the defaults, used by every service without its own setting.")] = False,
    failure_threshold: Annotated[Optional[int], typer.Option(metavar="N", help="Open after N consecutive failed attempts [default: 5].")] = None,
    recovery_timeout: Annotated[Optional[str], typer.Option(metavar="DUR", help="After DUR open, admit one trial task; an open circuit's wait is recounted from when it opened [default: 30s].")] = None,
) -> None:
    """Set a circuit's thresholds (or, with --default, everyone's)."""
    if default and key is not None:
        raise InvalidInput("give a KEY or --default, not both")
    if not default and key is None:
        raise InvalidInput("missing KEY: the service key to configure ('tqcli breaker list' shows them), or --default for every service")
    breakers = state(ctx).queue(create=True).breakers
    changed = breakers.configure(None if default else key, failure_threshold=failure_threshold, recovery_timeout=recovery_timeout)
    if key is not None and not breakers.in_use(key):
        render.message(f"note: no task uses service {key} yet; tasks use BACKEND:TARGET unless --service is given")
    if changed:
        render.message(f"circuit settings of {'every service' if default else key} updated")
    else:
        render.message(f"nothing changed: circuit settings of {'every service' if default else key} already have these values")
