"""Verifying the audit chain.

Verification streams the table row by row (flat memory) and stops at the
first bad entry, saying whether it was changed, removed, inserted or
reordered; against a checkpoint (`tqcli.security.checkpoint`) it also
catches truncation and a restored older copy.

Keyed entries are checked by recomputing their HMAC with the key their
`key_id` names, so the key file is needed for them: a keyed entry whose key
this process lacks cannot be verified (KeyProblem, exit 8), which is not
the same as tampered (exit 1). A plain entry after a keyed one is
tampering. A chain whose keyed entries were all removed of their key ids
and recomputed as plain SHA-256 links from the first entry on verifies as
a plain chain: only a checkpoint of it catches that rewrite.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping, NamedTuple, Sequence

from tqcli.security.audit import GENESIS_HASH, audit_key_map, is_audit_key_id, link_bytes, link_hasher, missing_key
from tqcli.security.checkpoint import Checkpoint

if TYPE_CHECKING:
    from tqcli.security.keys import KeyRing

_SEARCH_WINDOW = 8  # how far a moved entry is looked for when telling reorders from edits
PROGRESS_EVERY = 16_384  # entries between two calls of a scan's progress callback

__all__ = ["AuditEntry", "Checkpoint", "Stretch", "VerifyReport", "scan", "scan_range", "scan_stretch", "verify_rows"]


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
class VerifyReport:
    """What `audit verify` found: intact, or the first bad entry and what happened to it."""

    count: int = 0
    head_seq: int = 0
    head_hash: str = GENESIS_HASH
    problem: str | None = None
    kind: str | None = None  # changed, removed, inserted, reordered, truncated, rewritten, forged checkpoint
    bad_seq: int | None = None
    checkpoint_seq: int | None = None
    checkpoint_key_id: str | None = None  # the key that signed the checkpoint, once its signature verified

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
            "checkpoint_signed_by": self.checkpoint_key_id,
        }


class Stretch(NamedTuple):
    """What the fast pass found over a stretch of the chain (see `scan_stretch`)."""

    entries: int
    first_prev: str
    last_hash: str
    intact: bool
    first_keyed: bool
    last_keyed: bool


def scan_stretch(
    rows: Iterable[Sequence[Any]],
    expected_seq: int,
    prev_hash: str | None,
    keys: Mapping[str, bytes] | None = None,
    progress: Callable[[int], None] | None = None,
) -> Stretch:
    """The fast pass over a stretch of the chain: checks sequence, links and hashes, stopping at the first doubt.

    Every link is recomputed through `link_bytes`, the one encoder (this
    loop runs once per entry); `keys` are the audit keys by id. A keyed
    entry whose key is missing, or a plain one after a keyed one, is a
    doubt, which `verify_rows` then classifies. `prev_hash` None accepts
    whatever the first entry links to (a stretch that starts mid-chain);
    `first_keyed`/`last_keyed` let stretches checked apart be joined.
    `progress(entries checked)` is called every PROGRESS_EVERY entries.
    """
    keys = keys or {}
    report_at = PROGRESS_EVERY if progress is not None else -1
    count, first_prev, last = 0, "", prev_hash or ""
    first_keyed = keyed = False
    key_id_now: Any = None
    hasher = link_hasher(None)
    for seq, ts, actor, action, task_id, tenant, details, key_id, link, digest in rows:
        if count == 0:
            first_prev = link
            first_keyed = key_id is not None
            if prev_hash is None:
                last = link
        if seq != expected_seq or link != last:
            break
        if type(ts) is not str or type(actor) is not str or type(action) is not str or type(details) is not str:
            break
        if key_id != key_id_now:  # the chain turns keyed, or to another key: a plain entry after keyed ones never passes
            found = keys.get(key_id) if type(key_id) is str else None
            if found is None:
                break
            key_id_now, hasher, keyed = key_id, link_hasher(found), True
        if hasher(link_bytes(seq, ts, actor, action, task_id, tenant, details, key_id, link)) != digest:
            break
        last = digest
        expected_seq = seq + 1
        count += 1
        if count == report_at:
            progress(count)  # type: ignore[misc]
            report_at += PROGRESS_EVERY
    else:
        return Stretch(count, first_prev, last, True, first_keyed, keyed)
    return Stretch(count, first_prev, last, False, first_keyed, keyed)


def scan(
    rows: Iterable[Sequence[Any]],
    expected_seq: int,
    prev_hash: str | None,
    keys: Mapping[str, bytes] | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[int, str, str, bool]:
    """`scan_stretch`'s `(entries, first prev_hash, last hash, intact)`."""
    return scan_stretch(rows, expected_seq, prev_hash, keys, progress)[:4]


def scan_range(location: str, busy_timeout: float, first: int, last: int, keys: Mapping[str, bytes] | None = None) -> Stretch:
    """`scan_stretch` of the entries from `first` to `last`, on a connection of its own (another process)."""
    from tqcli.store import open as open_store

    store = open_store(location, busy_timeout=busy_timeout, read_only=True)
    try:
        with store.read() as tx:
            return scan_stretch(tx.iter_audit(first, last), first, None, keys)
    finally:
        store.close()


def _text(value: Any) -> Any:
    # A field changed with the sqlite3 shell may hold another type; hash its text.
    return value if value is None or isinstance(value, str) else str(value)


_Hasher = Callable[[Sequence[Any], int], "str | None"]


def _hasher(keys: Mapping[str, bytes]) -> _Hasher:
    """The link of a row as if it were entry `seq`, or None when its key is not in `keys`."""
    hashers = {key_id: link_hasher(key) for key_id, key in keys.items()}
    plain = link_hasher(None)

    def row_hash(row: Sequence[Any], seq: int) -> str | None:
        fields = [_text(value) for value in row[1:9]]
        key_id = fields[6]
        hasher = plain if key_id is None else hashers.get(key_id)
        return None if hasher is None else hasher(link_bytes(seq, *fields))

    return row_hash


def _found_at_offset(row: Sequence[Any], row_hash: _Hasher) -> int | None:
    """The offset d such that the entry hashes correctly as seq+d, if it is nearby."""
    seq = row[0]
    if not isinstance(seq, int):
        return None
    for distance in range(1, _SEARCH_WINDOW + 1):
        for offset in (distance, -distance):
            if seq + offset > 0 and row_hash(row, seq + offset) == row[9]:
                return offset
    return None


def _moved_up(row: Sequence[Any] | None, row_hash: _Hasher) -> bool:
    """Whether `row` is an intact entry renumbered one up (an entry was inserted before it)."""
    return row is not None and row_hash(row, row[0]) != row[9] and _found_at_offset(row, row_hash) == -1


def _fail(report: VerifyReport, kind: str, seq: int, problem: str) -> VerifyReport:
    report.kind, report.bad_seq, report.problem = kind, seq, problem
    return report


def _inserted(report: VerifyReport, seq: int, why: str) -> VerifyReport:
    return _fail(report, "inserted", seq, f"entry {seq} was inserted: {why}")


def verify_rows(rows: Iterable[Sequence[Any]], checkpoint: Checkpoint | None = None, ring: "KeyRing | None" = None) -> VerifyReport:
    """Check every link of the chain, streaming; stop at the first bad entry and say what happened.

    Keyed entries are recomputed with `ring`'s audit keys; KeyProblem
    (exit 8) at the first keyed entry whose key `ring` lacks, once its
    place in the chain (seq, link to the entry before) checks out.
    """
    keys = audit_key_map(ring)
    row_hash = _hasher(keys)
    report = VerifyReport()
    expected_seq, prev_hash, before_prev, keyed_from = 1, GENESIS_HASH, None, None
    iterator: Iterator[Sequence[Any]] = iter(rows)
    row = next(iterator, None)
    while row is not None:
        following = next(iterator, None)
        seq, key_id = row[0], _text(row[7])
        if key_id is not None and not is_audit_key_id(key_id):
            return _fail(report, "changed", seq, f"entry {seq} was changed: it names key {key_id!r}, which is no tqcli audit key id")
        if seq != expected_seq:
            last = seq - 1
            span = f"entry {expected_seq} was" if last == expected_seq else f"entries {expected_seq} to {last} were"
            return _fail(report, "removed", expected_seq, f"{span} removed: the chain jumps from entry {expected_seq - 1} to {seq}")
        if key_id is None and keyed_from is not None:
            if _moved_up(following, row_hash):
                return _inserted(report, seq, f"a plain entry after the keyed ones from entry {keyed_from}, and entry {seq + 1} was originally entry {seq}")
            return _fail(
                report, "changed", seq,
                f"entry {seq} was changed: it is a plain SHA-256 link after keyed entries (from entry {keyed_from}): "
                "the chain was rewritten without the audit key",
            )
        stored = row_hash(row, seq)
        if stored is None:  # a keyed entry whose key we lack: say so once its place in the chain checks out
            if row[8] != prev_hash:
                return _bad_link(report, seq, row, before_prev)
            raise missing_key(key_id, ring, f"cannot verify audit entry {seq}: it is linked with an audit key")
        if stored != row[9]:
            offset = _found_at_offset(row, row_hash)
            if offset is not None and following is not None and row_hash(following, following[0]) != following[9] and _found_at_offset(following, row_hash) == -offset:
                return _fail(report, "reordered", seq, f"entries {seq} and {seq + offset} were reordered: each holds the other's contents")
            if offset is not None and offset > 0:
                return _fail(report, "removed", seq, f"{offset} entr{'y was' if offset == 1 else 'ies were'} removed before entry {seq} and later entries renumbered")
            if offset is not None and offset < 0:
                return _inserted(report, seq + offset, f"entry {seq} was originally entry {seq + offset}")
            if offset is None and _moved_up(following, row_hash):
                return _inserted(report, seq, f"its link does not match its contents, and entry {seq + 1} was originally entry {seq}")
            return _fail(report, "changed", seq, f"entry {seq} was changed: its hash does not match its contents")
        if row[8] != prev_hash:
            return _bad_link(report, seq, row, before_prev)
        if checkpoint is not None and seq == checkpoint.seq and row[9] != checkpoint.hash:
            return _fail(report, "rewritten", seq, f"entry {seq} differs from the checkpoint: the history up to it was rewritten")
        if key_id is not None and keyed_from is None:
            keyed_from = seq
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


def _bad_link(report: VerifyReport, seq: int, row: Sequence[Any], before_prev: str | None) -> VerifyReport:
    """Entry `seq` hashes right but links to another entry than the one before it."""
    if before_prev is not None and row[8] == before_prev:
        return _inserted(report, seq - 1, f"entry {seq} links to the entry before it")
    return _fail(report, "changed", seq - 1, f"entry {seq - 1} was changed: entry {seq} recorded a different hash for it")


def _helper_main() -> None:
    """A helper process of AuditLog.verify: read the stretch and the keys from stdin (never argv), print the outcome."""
    import base64
    import sys

    job = json.load(sys.stdin)
    keys = {key_id: base64.b64decode(key) for key_id, key in job["keys"].items()}
    print(json.dumps(scan_range(job["location"], float(job["busy_timeout"]), int(job["first"]), int(job["last"]), keys)))


if __name__ == "__main__":
    _helper_main()
