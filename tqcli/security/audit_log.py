"""Reading the audit chain: `audit log`, `audit verify`, `audit checkpoint`."""

from __future__ import annotations

import json
from pathlib import Path

from tqcli.core.context import Context
from tqcli.errors import InvalidInput
from tqcli.security.audit import GENESIS_HASH, audit_time
from tqcli.security.verify import AuditEntry, Checkpoint, VerifyReport, verify_rows
from tqcli.units import parse_time


class AuditLog:
    """The audit chain of one database, as its readers see it."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def entries(
        self,
        *,
        task_id: int | None = None,
        actor: str | None = None,
        action: str | None = None,
        since: str | None = None,
        limit: int = 100,
    ) -> list[AuditEntry]:
        """Matching entries in chain order: the newest `limit` of them."""
        if limit < 1:
            raise InvalidInput("invalid limit: use 1 or more")
        since_ts = audit_time(parse_time(since)) if since is not None else None
        with self._ctx.read() as tx:
            rows = tx.audit_entries(task_id=task_id, actor=actor, action=action, since=since_ts, limit=limit)
        return [AuditEntry(*row) for row in rows]

    def verify(self, checkpoint: Checkpoint | None = None) -> VerifyReport:
        """Recompute every link, streaming; compare with `checkpoint` when given."""
        with self._ctx.read() as tx:
            if checkpoint is not None:
                db_id = tx.meta_value("db_id")
                if checkpoint.db_id != db_id:
                    report = VerifyReport()
                    report.kind = "rewritten"
                    report.problem = (
                        f"the checkpoint belongs to database {checkpoint.db_id}, not to this one ({db_id}): "
                        "this is a different database or its history was recreated"
                    )
                    return report
            return verify_rows(tx.iter_audit(), checkpoint)

    def checkpoint(self) -> Checkpoint:
        """The current head of the chain, to keep outside the database."""
        with self._ctx.read() as tx:
            head = tx.audit_head()
            db_id = tx.meta_value("db_id") or ""
        seq, digest = head if head else (0, GENESIS_HASH)
        return Checkpoint(db_id=db_id, seq=seq, hash=digest, time=audit_time(self._ctx.clock.now()))


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Load a checkpoint file; a missing or malformed one is invalid input (exit 2)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(f"cannot read checkpoint file {path}: {exc.strerror}") from None
    try:
        return Checkpoint.from_json(json.loads(text))
    except ValueError as exc:
        raise InvalidInput(f"checkpoint file {path} is not valid: {exc}") from None


def write_checkpoint(checkpoint: Checkpoint, path: str | Path) -> None:
    """Write a checkpoint file atomically (write a temporary file, then rename)."""
    target = Path(path)
    temporary = target.with_name(f".{target.name}.tmp")
    try:
        temporary.write_text(json.dumps(checkpoint.to_json(), indent=2) + "\n", encoding="utf-8")
        temporary.replace(target)
    except OSError as exc:
        raise InvalidInput(f"cannot write checkpoint file {path}: {exc.strerror}") from None
