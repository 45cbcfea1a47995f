"""`tqcli metrics`: the Prometheus text exposition (or JSON samples), on stdout or into a file replaced atomically."""

import sys
from typing import Annotated, Optional

import typer

from tqcli.cli import state
from tqcli.errors import InvalidInput


def metrics(
    ctx: typer.Context,
    fmt: Annotated[str, typer.Option("--format", metavar="FORMAT", help="prometheus (the text exposition) or json (a list of samples {name, labels, value}).")] = "prometheus",
    output: Annotated[Optional[str], typer.Option("--output", metavar="FILE", help="Replace FILE atomically instead of printing (for node_exporter's textfile collector: name it *.prom).")] = None,
) -> None:
    """Print queue metrics: task counts, attempts, durations, waits, circuits, schedules, the audit chain, workers.

    Computed from the database in a bounded number of queries however many
    tasks it holds; counters never go down (dlq purge and prune keep them).
    docs/metrics.md lists every metric. For node_exporter's textfile
    collector, from cron:

      * * * * * tqcli --db /srv/jobs.db metrics --output /var/lib/node_exporter/textfile/tqcli.prom
    """
    from tqcli.files import write_atomically
    from tqcli.observability.exposition import FORMATS, render

    if fmt not in FORMATS:
        raise InvalidInput(f"invalid --format {fmt!r}: use prometheus or json")
    if output is not None and not output.strip():
        raise InvalidInput("--output needs a file name, e.g. --output /var/lib/node_exporter/textfile/tqcli.prom")
    text = render(state(ctx).queue(read_only=True).metrics(), fmt)
    if output is None:
        sys.stdout.write(text)
        return
    write_atomically(output, text, what="metrics file", example="--output /var/lib/node_exporter/textfile/tqcli.prom")
