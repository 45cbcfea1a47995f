"""`tqcli migrate --to URL`: copy the database into an empty PostgreSQL database."""


import sys
from typing import Annotated

import typer

from tqcli.cli import render
from tqcli.errors import Interrupted


def migrate(
    ctx: typer.Context,
    to: Annotated[str, typer.Option("--to", metavar="URL", help="The empty PostgreSQL database to copy into: postgresql://user:password@host:port/database.", show_default=False)],
    json_output: Annotated[bool, typer.Option("--json", help='Print {"to": URL, "tables": {TABLE: ROWS}, "audit": {"entries": N, "head": HASH}}.')] = False,
) -> None:
    """Copy the whole database (--db) into an empty PostgreSQL database; print the rows copied per table.

    Copies every table: tasks with their attempts and dependencies, DAGs
    (purged tasks included), schedules and their fires, settings, roles,
    breakers, queues, tenants, the worker registry, the database id and the
    whole audit chain. The source is read in one snapshot and is not
    changed; the target is written in one transaction, with its tables
    created when it has none, so a failure or Ctrl-C leaves it as it was.
    Its id and claim sequences continue past the source's, and its audit
    chain is verified there before it commits: the same entries, the same
    head. Neither database gets an audit entry.

    Exit 6 when the target is not empty (it holds rows, or tables of
    another program; it is left unchanged) or while workers are alive on
    the source (stop them first). Afterwards point --db (or TQCLI_DB, or db
    in the config file) at URL.

      tqcli --db /srv/jobs.db migrate --to postgresql://tqcli@db.example/tqcli
    """
    from tqcli.cli import state

    queue_obj = state(ctx).queue(read_only=True)
    try:
        with render.progress("copying", shown=render.progress_shown(json_output)) as update:
            report = queue_obj.migrate_to(to, progress=update)
    except KeyboardInterrupt:
        raise Interrupted("interrupted: nothing was copied, and the target was left as it was") from None
    if json_output:
        render.emit_json(report.to_json())
        return
    render.table(["TABLE", "ROWS"], sorted(report.tables.items()))
    head = "" if not report.audit_entries else f", head {report.audit_entries} {report.audit_head[:12]}…"
    render.message(
        f"copied {report.source} to {report.to}: "
        f"{report.rows} rows in {len(report.tables)} tables; audit chain verified there: {report.audit_entries} entries{head}"
    )
    render.message("the source was not changed: point --db (or TQCLI_DB) at the URL to use the copy")
    sys.stdout.flush()
