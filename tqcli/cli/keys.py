"""Key commands: init, rotate, status, public, export, retire (all admin-only)."""

import sys
from typing import Annotated, Optional

import typer

from tqcli.cli import command_group, render, state

app = command_group(
    "The key file: data keys that encrypt tasks (AES-256-GCM), the audit key of the HMAC chain, "
    "the signing key of checkpoints. It never lives in the database; keep a backup."
)


@app.command("init")
def init(ctx: typer.Context) -> None:
    """Create the key file (mode 0600) with a data key, an audit key and a signing key; never overwrites one (exit 6).

    From then on new audit entries are HMAC-linked under the audit key, and
    'tqcli submit --encrypt' stores tasks encrypted. Creates the database
    if it does not exist yet.
    """
    ring = state(ctx).queue(create=True).keys.init()
    render.message(
        f"created key file {ring.path}: data key {ring.primary_data.id}, audit key {ring.primary_audit.id}, "  # type: ignore[union-attr]
        f"signing key {ring.signing_id}; keep a backup of it (losing it loses every encrypted value), "
        "and give worker hosts 'tqcli keys export --for-worker FILE'"
    )


@app.command("rotate")
def rotate(
    ctx: typer.Context,
    reencrypt: Annotated[bool, typer.Option("--reencrypt", help="Then rewrite every encrypted value and output chunk under the new key, 500 tasks (or chunks) per transaction; a rerun finishes an interrupted one.")] = False,
) -> None:
    """Add a new primary data key; the old ones stay in the key file for reading.

    Copy the new key file to worker hosts ('tqcli keys export --for-worker
    FILE'); once no value needs an old key ('keys status' counts them),
    'tqcli keys retire ID' removes it.
    """
    keys = state(ctx).queue().keys
    previous, new = keys.rotate()
    kept = f"; {previous} is kept for reading" if previous else ""
    render.message(f"rotated: new primary data key {new}{kept}")
    if not reencrypt:
        if previous:
            render.message(f"'tqcli keys rotate --reencrypt' rewrites the old values, then 'tqcli keys retire {previous}' removes the old key")
        return
    with render.progress("re-encrypting", shown=render.progress_shown()) as update:
        report = keys.reencrypt(progress=update)
    render.message(
        f"re-encrypted {report.values:,} value{'' if report.values == 1 else 's'} of {report.tasks:,} "
        f"task{'' if report.tasks == 1 else 's'} under {report.key} ({report.batches} transaction{'' if report.batches == 1 else 's'})"
    )
    for key_id, ids in sorted(report.missing_keys.items()):
        render.message(f"warning: {len(ids)} task(s) have values under data key {key_id}, which this key file lacks; they were left as they are (first: task {ids[0]})")
    if report.unreadable:
        shown = ", ".join(map(str, report.unreadable[:10]))
        render.message(f"warning: values of task(s) {shown} do not decrypt (tampered with?); they were left as they are")


@app.command("status")
def status(
    ctx: typer.Context,
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """List the keys: id, kind, which is primary, and how many stored values each protects."""
    keys = state(ctx).queue(read_only=True).keys
    listed = keys.status()
    if json_output:
        render.emit_json({"key_file": str(keys.key_file), "keys": [key.to_json() for key in listed]})
        return
    render.message(f"key file: {keys.key_file}")
    rows = [
        (key.id, key.kind, "yes" if key.primary else "", "-" if key.values is None else f"{key.values:,}",
         "" if key.in_key_file else "missing from the key file")
        for key in listed
    ]
    render.table(["ID", "KIND", "PRIMARY", "VALUES", "NOTE"], rows)


@app.command("public")
def public(
    ctx: typer.Context,
    output: Annotated[Optional[str], typer.Option(metavar="FILE", help="Write it to FILE (atomically) instead of stdout.")] = None,
) -> None:
    """Print (or write) the Ed25519 public key that checks signed checkpoints ('tqcli audit verify --public-key FILE')."""
    raw = state(ctx).queue(read_only=True).keys.public_key()
    if output is None:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        sys.stdout.write(Ed25519PublicKey.from_public_bytes(raw).public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode())
        return
    from tqcli.security.checkpoint import write_public_key

    write_public_key(output, raw)
    render.message(f"wrote the public signing key to {output}")


@app.command("export")
def export(
    ctx: typer.Context,
    for_worker: Annotated[str, typer.Option("--for-worker", metavar="FILE", help="Write the copy here (mode 0600); an existing file is never overwritten (exit 6).", show_default=False)],
) -> None:
    """Write a key file for worker hosts and other writers: every key but the private signing key."""
    path = state(ctx).queue(read_only=True).keys.export_for_worker(for_worker)
    render.message(
        f"wrote {path} without the private signing key: copy it to worker hosts (mode 0600) and point "
        "--key-file or TQCLI_KEY_FILE at it; keep the signing key with whoever runs 'tqcli audit checkpoint'"
    )


@app.command("retire")
def retire(
    ctx: typer.Context,
    key_id: Annotated[str, typer.Argument(metavar="ID", help="An old data key ('tqcli keys status' lists them).", show_default=False)],
) -> None:
    """Remove an old data key from the key file once no stored value needs it (exit 6 while one does)."""
    state(ctx).queue().keys.retire(key_id)
    render.message(f"retired data key {key_id}: it is no longer in the key file")
