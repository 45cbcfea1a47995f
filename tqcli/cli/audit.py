"""Audit commands: log, verify, checkpoint."""


import sys
from typing import Annotated, Optional

import typer

from tqcli.cli import command_group, render
from tqcli.errors import AuditTampered, InvalidInput

app = command_group("Read and verify the tamper-evident audit chain.")


@app.command("log")
def log(
    ctx: typer.Context,
    task: Annotated[Optional[int], typer.Option(metavar="ID", help="Only entries about this task.")] = None,
    actor: Annotated[Optional[str], typer.Option(metavar="A", help="Only entries by this identity.")] = None,
    action: Annotated[Optional[str], typer.Option(metavar="X", help="Only this action, e.g. task.cancel.")] = None,
    since: Annotated[Optional[str], typer.Option(metavar="TIME", help="Only entries at or after this ISO 8601 time.")] = None,
    limit: Annotated[int, typer.Option(metavar="N", help="How many of the newest matching entries; 0 for all of them.")] = 100,
    json_output: Annotated[bool, typer.Option("--json", help="Print a JSON array of entries.")] = False,
) -> None:
    """List audit entries in chain order (the newest 100 unless --limit says otherwise, 0 for all)."""
    from tqcli.cli import state

    entries = state(ctx).queue(read_only=True).audit.entries(task_id=task, actor=actor, action=action, since=since, limit=limit)
    if json_output:
        render.emit_json([entry.to_json() for entry in entries])
        return
    rows = [(e.seq, e.ts, e.actor, e.action, e.task_id, e.tenant, e.details) for e in entries]
    render.table(["SEQ", "TIME", "ACTOR", "ACTION", "TASK", "TENANT", "DETAILS"], rows)


@app.command("verify")
def verify(
    ctx: typer.Context,
    checkpoint: Annotated[Optional[str], typer.Option(metavar="FILE", help="Also check against a checkpoint: catches truncation, a restored older copy and a rewritten history.")] = None,
    public_key: Annotated[Optional[str], typer.Option("--public-key", metavar="FILE", help="Check the checkpoint's signature with this public key ('tqcli keys public' writes it) [default: the key file's].")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Recompute the whole chain; exit 1 naming the first entry that was changed, removed, inserted or reordered.

    Keyed (HMAC) entries need the key file that holds their audit key: without
    it the chain cannot be verified (exit 8). A signed checkpoint needs the
    public key (--public-key, or the key file's); one whose signature does
    not verify is exit 1.
    """
    from tqcli.cli import state
    from tqcli.security.checkpoint import read_checkpoint, read_public_key

    saved = read_checkpoint(checkpoint) if checkpoint is not None else None
    public = read_public_key(public_key) if public_key is not None else None
    if public is not None and saved is None:
        raise InvalidInput("--public-key checks a checkpoint's signature: give --checkpoint FILE too")
    from tqcli.cli import progress

    audit_log = state(ctx).queue(read_only=True).audit
    with progress.bar("verifying the audit chain", json_output=json_output) as shown:
        report = audit_log.verify(saved, public_key=public, progress=shown.update)
    if json_output:
        render.emit_json(report.to_json())
    elif report.intact:
        sys.stdout.write(f"audit chain intact: {report.count} entries, head {report.head_seq} {report.head_hash}\n")
        if saved is not None:
            signed = f", signed by {report.checkpoint_key_id}" if report.checkpoint_key_id else " (unsigned)"
            sys.stdout.write(f"matches checkpoint at entry {saved.seq}{signed}\n")
    if not report.intact:
        raise AuditTampered(f"audit chain broken: {report.problem}")


@app.command("checkpoint")
def checkpoint(
    ctx: typer.Context,
    output: Annotated[Optional[str], typer.Option(metavar="FILE", help="Write the checkpoint to FILE (atomically) instead of stdout.")] = None,
) -> None:
    """Record the chain's head (seq, hash, time), signed when the key file has the signing key, and audit it as audit.checkpoint.

    Keep the checkpoint outside the database, for 'verify --checkpoint'.
    """
    import json

    from tqcli.cli import state

    head = state(ctx).queue().audit.checkpoint(output)
    if output is None:
        sys.stdout.write(json.dumps(head.to_json(), indent=2) + "\n")
        return
    signed = f"signed by {head.key_id}" if head.signature else "unsigned: no key file with a signing key"
    render.message(f"checkpoint of entry {head.seq} written to {output} ({signed})")
