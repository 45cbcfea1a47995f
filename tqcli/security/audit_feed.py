"""The audit chain as a live feed: new entries in order, and what each reader may receive of one.

`serve`'s event stream reads new entries once for all its clients and hands
each client only what its own grants allow (`visible`), so the shared read
(`read_after`) checks no role: it is the store-level read of a process that
filters for every reader itself, and it writes nothing (no `access.denied`
for a poller that merely looks). What a reader may receive:

- a role holding `audit` on the entry's tenant (admin, auditor; a
  tenant-scoped auditor for its tenants' entries) gets the whole entry, as
  `audit log --json` prints it;
- any other reader gets `{"seq", "action", "task_id", "tenant"}` of entries
  about what it may read on that tenant: tasks, DLQ, DAGs, schedules,
  breakers, queues and tenants (`READER_PREFIXES`). Entries about security
  (grants, tokens, keys, denials, checkpoints, settings files) and worker
  bookkeeping go to audit readers only, whatever task they name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tqcli.core.context import Context
from tqcli.security.rbac import Access
from tqcli.security.verify import AuditEntry
from tqcli.store.base import Store

# Actions (by prefix) whose brief form any reader of the entry's tenant may receive.
READER_PREFIXES = ("task.", "dlq.", "dag.", "schedule.", "breaker.", "queue.", "tenant.")
# ...except these, which are for audit readers only although their prefix is a reader's.
AUDIT_ONLY = frozenset({"schedule.error"})  # carries an error text from a schedule's target


@dataclass(frozen=True)
class Page:
    """Entries after a cursor, the cursor to read from next, and the chain's head when read."""

    entries: list[AuditEntry]
    cursor: int
    head: int

    @property
    def caught_up(self) -> bool:
        """Whether nothing newer than `cursor` existed when the page was read."""
        return self.cursor >= self.head


def head_seq(store: Store) -> int:
    """The seq of the newest entry (0 for an empty chain); one short read, no role needed."""
    with store.read() as tx:
        return tx.audit_max_seq()


def read_after(store: Store, seq: int, limit: int) -> Page:
    """Up to `limit` entries with seq above `seq`, in chain order; one short read transaction checking no role.

    For a caller that filters each reader's share with `visible`. When the
    chain has a hole (entries removed by hand), the cursor still moves past
    it, so a feed never stalls on a tampered chain (`audit verify` says what
    happened there).
    """
    if limit < 1:
        raise ValueError("limit must be at least 1")
    with store.read() as tx:
        head = tx.audit_max_seq()
        if head <= seq:
            return Page([], seq, head)
        last = min(head, seq + limit)
        rows = list(tx.iter_audit(seq + 1, last))
    return Page([AuditEntry(*row) for row in rows], last, head)


def reader_access(ctx: Context, action: str = "follow the audit event stream") -> Access:
    """The acting user's grants, once checked that they may read at least one tenant (a denial is audited)."""
    with ctx.read() as tx:
        return ctx.authorize_any(tx, "read", action)


def current_access(ctx: Context) -> Access:
    """The acting user's grants as they are now (no check, nothing audited): for re-reading a live reader's roles."""
    with ctx.read() as tx:
        return ctx.access(tx)


def may_read_any(access: Access) -> bool:
    """Whether `access` still lets its user read something (a stream whose user lost every role ends)."""
    return access.tenants("read") != frozenset()


def brief(entry: AuditEntry) -> dict[str, Any]:
    """The form an entry takes for readers without the `audit` permission."""
    return {"seq": entry.seq, "action": entry.action, "task_id": entry.task_id, "tenant": entry.tenant}


def visible(entry: AuditEntry, access: Access) -> str | None:
    """Which form of `entry` a reader with `access` receives: "whole", "brief", or None (none of it)."""
    if access.allows("audit", tenant=entry.tenant):
        return "whole"
    if entry.action in AUDIT_ONLY or not entry.action.startswith(READER_PREFIXES):
        return None
    return "brief" if access.allows("read", tenant=entry.tenant) else None
