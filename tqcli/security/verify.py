"""Verifying the audit chain, and checkpoints of its head.

Verification streams the table row by row (flat memory) and stops at the
first bad entry, saying whether it was changed, removed, inserted or
reordered; against a checkpoint it also catches truncation and a restored
older copy.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Sequence

from tqcli.security.audit import GENESIS_HASH, entry_hash, link_text

_SEARCH_WINDOW = 8  # how far a moved entry is looked for when telling reorders from edits


@dataclass
class AuditEntry:
    """One stored audit entry."""

    seq: int
    ts: str
    actor: str
    action: str
    task_id: int | None
    tenant: str | None
    details: str
    key_id: str | None
    prev_hash: str
    hash: str

    def to_json(self) -> dict[str, Any]:
        """The entry as in `audit log --json`."""
        try:
            details: Any = json.loads(self.details)
        except ValueError:
            details = self.details
        return {
            "seq": self.seq,
            "ts": self.ts,
            "actor": self.actor,
            "action": self.action,
            "task_id": self.task_id,
            "tenant": self.tenant,
            "details": details,
            "key_id": self.key_id,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }


@dataclass
class Checkpoint:
    """The head of the chain at one moment, kept outside the database."""

    db_id: str
    seq: int
    hash: str
    time: str
    signature: str | None = None

    FORMAT = "tqcli-audit-checkpoint/1"

    def to_json(self) -> dict[str, Any]:
        """The checkpoint file's JSON object."""
        return {"format": self.FORMAT, "db_id": self.db_id, "seq": self.seq, "hash": self.hash, "time": self.time, "signature": self.signature}

    @classmethod
    def from_json(cls, data: Any) -> "Checkpoint":
        """Parse a checkpoint file's object; raises ValueError when it is not one."""
        if not isinstance(data, dict) or data.get("format") != cls.FORMAT:
            raise ValueError("not a tqcli audit checkpoint")
        seq, digest = data.get("seq"), data.get("hash")
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0 or not isinstance(digest, str) or len(digest) != 64:
            raise ValueError("checkpoint has no valid seq and hash")
        if not isinstance(data.get("db_id"), str) or not isinstance(data.get("time"), str):
            raise ValueError("checkpoint has no db_id or time")
        return cls(data["db_id"], seq, digest, data["time"], data.get("signature"))


@dataclass
class VerifyReport:
    """What `audit verify` found: intact, or the first bad entry and what happened to it."""

    count: int = 0
    head_seq: int = 0
    head_hash: str = GENESIS_HASH
    problem: str | None = None
    kind: str | None = None  # changed, removed, inserted, reordered, truncated, rewritten
    bad_seq: int | None = None
    checkpoint_seq: int | None = None

    @property
    def intact(self) -> bool:
        """True when no problem was found."""
        return self.problem is None

    def to_json(self) -> dict[str, Any]:
        """The report as in `audit verify --json`."""
        return {
            "intact": self.intact,
            "entries": self.count,
            "head_seq": self.head_seq,
            "head_hash": self.head_hash,
            "problem": self.problem,
            "kind": self.kind,
            "bad_seq": self.bad_seq,
            "checkpoint_seq": self.checkpoint_seq,
        }


def _text(value: Any) -> Any:
    # A field changed with the sqlite3 shell may hold another type; hash its text.
    return value if value is None or isinstance(value, str) else str(value)


def _row_hash(row: Sequence[Any], seq: int) -> str:
    fields = [_text(value) for value in row[1:9]]
    return entry_hash(seq, *fields)


def _stored_hash(row: Sequence[Any]) -> str:
    """The entry's hash at its stored seq, from the encoding SQLite built when the row carries it."""
    if len(row) > 10 and isinstance(row[10], bytes):
        return hashlib.sha256(row[10]).hexdigest()
    return _row_hash(row, row[0])


def _found_at_offset(row: Sequence[Any]) -> int | None:
    """The offset d such that the entry hashes correctly as seq+d, if it is nearby."""
    seq = row[0]
    if not isinstance(seq, int):
        return None
    for distance in range(1, _SEARCH_WINDOW + 1):
        for offset in (distance, -distance):
            if seq + offset > 0 and _row_hash(row, seq + offset) == row[9]:
                return offset
    return None


def _fail(report: VerifyReport, kind: str, seq: int, problem: str) -> VerifyReport:
    report.kind, report.bad_seq, report.problem = kind, seq, problem
    return report


def scan(rows: Iterable[Sequence[Any]], expected_seq: int, prev_hash: str | None) -> tuple[int, str, str, bool]:
    """The fast pass over a stretch of the chain: `(entries, first prev_hash, last hash, intact)`.

    Checks sequence, links and hashes with `link_text`, the one encoder
    (this loop runs once per entry); it stops at the first
    doubt, which `verify_rows` then classifies. `prev_hash` None accepts
    whatever the first entry links to (a stretch that starts mid-chain).
    """
    sha256 = hashlib.sha256
    count, first_prev, last = 0, "", prev_hash or ""
    for seq, ts, actor, action, task_id, tenant, details, key_id, link, digest in rows:
        if count == 0:
            first_prev = link
            if prev_hash is None:
                last = link
        if seq != expected_seq or link != last or key_id is not None:
            return count, first_prev, last, False
        if type(ts) is not str or type(actor) is not str or type(action) is not str or type(details) is not str:
            return count, first_prev, last, False
        text = link_text(seq, ts, actor, action, task_id, tenant, details, None, link)
        if not text.isascii() or sha256(text.encode("ascii")).hexdigest() != digest:
            if entry_hash(seq, ts, actor, action, task_id, tenant, details, None, link) != digest:
                return count, first_prev, last, False
        last = digest
        expected_seq = seq + 1
        count += 1
    return count, first_prev, last, True


def scan_range(location: str, busy_timeout: float, first: int, last: int) -> tuple[int, str, str, bool]:
    """`scan` of the entries from `first` to `last`, on a connection of its own (another process)."""
    from tqcli.store import open as open_store

    store = open_store(location, busy_timeout=busy_timeout, read_only=True)
    try:
        with store.read() as tx:
            return scan(tx.iter_audit(first, last), first, None)
    finally:
        store.close()


def verify_rows(rows: Iterable[Sequence[Any]], checkpoint: Checkpoint | None = None) -> VerifyReport:
    """Check every link of the chain, streaming; stop at the first bad entry and say what happened."""
    report = VerifyReport()
    expected_seq, prev_hash, before_prev = 1, GENESIS_HASH, None
    iterator: Iterator[Sequence[Any]] = iter(rows)
    row = next(iterator, None)
    while row is not None:
        following = next(iterator, None)
        seq = row[0]
        if row[7] is not None:  # this version makes no keyed links: someone wrote the key id
            return _fail(report, "changed", seq, f"entry {seq} was changed: it names key {row[7]!r}, but this tqcli writes no keyed entries")
        if seq != expected_seq:
            last = seq - 1
            span = f"entry {expected_seq} was" if last == expected_seq else f"entries {expected_seq} to {last} were"
            return _fail(report, "removed", expected_seq, f"{span} removed: the chain jumps from entry {expected_seq - 1} to {seq}")
        if _stored_hash(row) != row[9]:
            offset = _found_at_offset(row)
            if offset is not None and following is not None and _stored_hash(following) != following[9] and _found_at_offset(following) == -offset:
                return _fail(report, "reordered", seq, f"entries {seq} and {seq + offset} were reordered: each holds the other's contents")
            if offset is not None and offset > 0:
                return _fail(report, "removed", seq, f"{offset} entr{'y was' if offset == 1 else 'ies were'} removed before entry {seq} and later entries renumbered")
            if offset is not None and offset < 0:
                return _fail(report, "inserted", seq + offset, f"entry {seq + offset} was inserted: entry {seq} was originally entry {seq + offset}")
            return _fail(report, "changed", seq, f"entry {seq} was changed: its hash does not match its contents")
        if row[8] != prev_hash:
            if before_prev is not None and row[8] == before_prev:
                return _fail(report, "inserted", seq - 1, f"entry {seq - 1} was inserted: entry {seq} links to the entry before it")
            return _fail(report, "changed", seq - 1, f"entry {seq - 1} was changed: entry {seq} recorded a different hash for it")
        if checkpoint is not None and seq == checkpoint.seq and row[9] != checkpoint.hash:
            return _fail(report, "rewritten", seq, f"entry {seq} differs from the checkpoint: the history up to it was rewritten")
        before_prev, prev_hash = prev_hash, row[9]
        expected_seq = seq + 1
        report.count += 1
        report.head_seq, report.head_hash = seq, row[9]
        row = following
    if checkpoint is not None:
        report.checkpoint_seq = checkpoint.seq
        if checkpoint.seq > report.head_seq:
            return _fail(
                report,
                "truncated",
                report.head_seq + 1,
                f"the log ends at entry {report.head_seq} but the checkpoint names entry {checkpoint.seq}: "
                "entries were removed from the end, or an older copy of the database was restored",
            )
        if checkpoint.seq == 0 and checkpoint.hash != GENESIS_HASH:
            return _fail(report, "rewritten", 0, "the checkpoint's head does not match an empty chain")
    return report


if __name__ == "__main__":  # a helper process of AuditLog.verify: scan one stretch, print the outcome
    import sys

    path, busy, first, last = sys.argv[1:5]
    print(json.dumps(scan_range(path, float(busy), int(first), int(last))))
