"""`migrate --to URL`: copy this database into an empty PostgreSQL database, and prove the copy.

The rows are copied by `tqcli.store.copy` (one read snapshot of the source,
one write transaction on the target). This service adds the two rules around
it: nothing is copied while a worker is alive on the source (what it writes
later would be left behind), and the target commits only once its audit
chain passes the verifier `audit verify` uses, entry for entry the source's
(the same number of entries and the same head). Neither store gets an audit
entry: the migration goes around `Context.change`, so the target's chain is
exactly the source's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from tqcli.core import liveness, workers
from tqcli.core.context import Context
from tqcli.errors import AuditTampered, Conflict, InternalError, InvalidInput, StorageError
from tqcli.security.audit import GENESIS_HASH
from tqcli.store.base import ClaimRow, Tx
from tqcli.units import format_time

Progress = Callable[[int, int, str], None]


@dataclass
class MigrateReport:
    """What `migrate --to` copied: the target (without its password), rows per table, the audit chain verified there."""

    to: str
    source: str = ""  # the database copied (a URL without its password)
    tables: dict[str, int] = field(default_factory=dict)
    audit_entries: int = 0
    audit_head: str = GENESIS_HASH

    @property
    def rows(self) -> int:
        """Rows copied in all."""
        return sum(self.tables.values())

    def to_json(self) -> dict[str, Any]:
        """The object `migrate --json` prints."""
        return {"to": self.to, "tables": dict(self.tables), "audit": {"entries": self.audit_entries, "head": self.audit_head}}


def live_workers(tx: Tx, now: int) -> list[str]:
    """What is alive on the database: registered worker runs not stopped and recently heard from, and running tasks whose holder lives.

    A running task counts when its holder process is known to run, or cannot
    be looked up from here and its lease has not expired: the rule by which a
    worker decides whether to take a lease over (`reclaim_expired`).
    """
    found = []
    for run in tx.worker_rows(0):
        if workers.run_alive(run, now):
            found.append(f"worker {run.id} (pid {run.pid} on {run.host}, last heartbeat {format_time(run.heartbeat_at)})")
    held = []
    for row in tx.running_leases():
        claim = ClaimRow._make(row[:23])
        lease_until, holder = row[24], row[25]
        alive = liveness.holder_alive(holder)
        if alive or (alive is None and lease_until is not None and lease_until >= now):
            held.append(f"{claim.id} ({claim.worker})")
    if held:
        found.append(f"running task{'s' if len(held) > 1 else ''} {', '.join(held[:10])}{' and more' if len(held) > 10 else ''}")
    return found


def migrate_to(ctx: Context, url: str, *, progress: Progress | None = None, batch_rows: int | None = None) -> MigrateReport:
    """Copy the whole database into the empty PostgreSQL database at `url`, verify its audit chain there, and say what was copied.

    Conflict while workers are alive on the source or when the target is
    not empty (it is left unchanged); InvalidInput for a `url` that is not
    PostgreSQL's or names the source itself. Any failure, Ctrl-C included,
    leaves the target as it was.
    """
    from tqcli.store import is_url

    if not is_url(url):
        raise InvalidInput(
            f"--to {url!r} is not a PostgreSQL URL: migrate copies into PostgreSQL, "
            "e.g. --to postgresql://user:password@host:5432/tqcli"
        )
    try:
        from tqcli.store import copy as store_copy
    except ImportError:
        raise StorageError(
            "migrate --to copies into PostgreSQL, and the PostgreSQL driver (psycopg) is not installed: pip install 'tqcli[postgres]'"
        ) from None
    source = ctx.store.location if ctx.store.path is not None else store_copy.display_url(ctx.store.location)
    report = MigrateReport(to=store_copy.display_url(url), source=source)
    now = ctx.clock.now()

    def check(tx: Tx) -> None:
        ctx.authorize(tx, "admin", f"migrate this database to {report.to}")
        alive = live_workers(tx, now)
        if alive:
            raise Conflict(
                f"workers are alive on {source}: {'; '.join(alive)}; nothing was copied: stop them first "
                "('tqcli workers' lists them), then run migrate again"
            )

    def verify(source_tx: Tx, target_tx: Tx) -> None:
        report.audit_entries, report.audit_head = verify_copy(source_tx, target_tx, source=source, target=report.to)

    options = {} if batch_rows is None else {"batch_rows": batch_rows}
    report.tables = store_copy.copy_to_postgres(ctx.store, url, check=check, verify=verify, progress=progress, **options)
    return report


def verify_copy(source_tx: Tx, target_tx: Tx, *, source: str, target: str) -> tuple[int, str]:
    """`(entries, head hash)` of the target's chain when it verifies and ends where the source's does; raises otherwise.

    The target's chain is checked as `audit verify` checks it (the fast pass
    of `scan`, the link encoder's one reader); the source's only when that
    fails, to tell a chain broken before the copy from one the copy changed.
    """
    from tqcli.security.verify import scan, verify_rows

    count, _, high = source_tx.audit_bounds()
    head = source_tx.audit_head()
    expected = head[1] if head else GENESIS_HASH
    seen, _, last, intact = scan(target_tx.iter_audit(), 1, GENESIS_HASH)
    if intact and seen == count == high and last == expected:
        return seen, last
    before = verify_rows(source_tx.iter_audit())
    if not before.intact:
        raise AuditTampered(
            f"the audit chain of {source} does not verify ({before.problem}); nothing was copied, since the copy "
            "would carry the same break: 'tqcli audit verify' shows it"
        )
    after = verify_rows(target_tx.iter_audit())
    problem = after.problem or f"it ends at entry {after.head_seq} {after.head_hash[:12]}, the source's at {high} {expected[:12]}"
    raise InternalError(
        f"the audit chain copied to {target} does not verify as the source's does ({problem}); nothing was copied: "
        "this is a bug in tqcli, please report it with the output of the same command run with TQCLI_DEBUG=1"
    )
