"""The outcome journal: where a worker keeps finished attempts a full disk would not let it record.

A worker that ran tasks but cannot commit their outcomes (the disk is
full) first keeps them and tries again while its leases hold. If it must
give up, it writes them into a small file it preallocated beside the
database when it first claimed work, so writing needs no new space, and
exits saying so. Whoever next runs a worker on that database applies the
file before reclaiming leases: each outcome is recorded only if its claim
still holds the task (fenced like any late result), in one transaction
with a `worker.outcomes` audit entry, and the file is removed. So work
that succeeded is not charged an attempt as `worker lost`.

A journal with no outcomes belongs to a running worker, or to one that
died without needing it; the latter are removed once their holder is
known to be gone.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

from tqcli.core import dispatcher, liveness
from tqcli.core.context import Context

JOURNAL_BYTES = 256 * 1024
_HEADER = 8


def _paths(db: Path) -> list[Path]:
    return sorted(db.parent.glob(f"{db.name}-outcomes-*"))


class OutcomeJournal:
    """One worker run's preallocated journal file."""

    def __init__(self, path: Path, holder: str | None) -> None:
        self.path = path
        self.holder = holder

    @classmethod
    def create(cls, db: Path, run_id: str, holder: str | None) -> "OutcomeJournal | None":
        """Preallocate the journal beside `db`; None when there is no room even for it."""
        path = db.with_name(f"{db.name}-outcomes-{run_id}")
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError:
            return None
        try:
            os.posix_fallocate(fd, 0, JOURNAL_BYTES)
            os.pwrite(fd, _frame({"holder": holder, "outcomes": []}), 0)
        except OSError:
            os.close(fd)
            path.unlink(missing_ok=True)
            return None
        os.close(fd)
        return cls(path, holder)

    def write(self, ended: Sequence[tuple[dispatcher.Claim, dispatcher.Outcome]], *, worker: str, now: int) -> int:
        """Save as many outcomes as fit (the oldest first), durably; how many were saved."""
        outcomes = [_entry(claim, outcome) for claim, outcome in ended]
        while outcomes:
            body = _frame({"holder": self.holder, "worker": worker, "finished_at": now, "outcomes": outcomes})
            if len(body) <= JOURNAL_BYTES:
                break
            outcomes.pop()
        else:
            return 0
        fd = os.open(self.path, os.O_RDWR)
        try:
            os.pwrite(fd, body, 0)  # inside the preallocated space: no new blocks needed
            os.fsync(fd)
        finally:
            os.close(fd)
        return len(outcomes)

    def remove(self) -> None:
        """Remove the file (its outcomes, if any, are recorded)."""
        self.path.unlink(missing_ok=True)


def _entry(claim: dispatcher.Claim, outcome: dispatcher.Outcome) -> dict[str, Any]:
    return {
        "task": claim.id, "claim": claim.claim, "kind": outcome.kind, "result": outcome.result,
        "error": outcome.error, "final": outcome.final,
    }


def _frame(document: dict[str, Any]) -> bytes:
    body = json.dumps(document, separators=(",", ":")).encode()
    return len(body).to_bytes(_HEADER, "big") + body


def _read(path: Path) -> dict[str, Any] | None:
    try:
        with open(path, "rb") as handle:
            size = int.from_bytes(handle.read(_HEADER), "big")
            if not 0 < size <= JOURNAL_BYTES:
                return None
            return json.loads(handle.read(size))  # type: ignore[no-any-return]
    except (OSError, ValueError):
        return None


def apply_journals(ctx: Context, db: Path | None, *, worker: str, own: Path | None = None) -> list[tuple[int, str]]:
    """Record the outcomes other workers left in journals beside `db`; `(task id, what became of it)` each.

    A database with no local file (PostgreSQL: a full disk is the server's) has no journals.
    """
    applied: list[tuple[int, str]] = []
    if db is None:
        return applied
    for path in _paths(db):
        if path == own:
            continue
        document = _read(path)
        if document is None:
            continue
        outcomes = document.get("outcomes") or []
        if not outcomes:
            if liveness.holder_alive(document.get("holder")) is False:
                path.unlink(missing_ok=True)  # its worker died without needing it
            continue
        applied += _apply(ctx, path, document, worker)
        path.unlink(missing_ok=True)
    return applied


def _apply(ctx: Context, path: Path, document: dict[str, Any], worker: str) -> list[tuple[int, str]]:
    """Record one journal's outcomes, each only while its claim still holds the task, in one transaction."""
    results = []
    recorded_by = document.get("worker") or worker
    finished_at = int(document.get("finished_at") or ctx.clock.now())
    with ctx.change() as (tx, journal):
        for entry in document["outcomes"]:
            row = tx.claimed_row(int(entry["task"]), int(entry["claim"]))
            if row is None:
                results.append((int(entry["task"]), "stale"))
                continue
            outcome = dispatcher.Outcome(entry["kind"], result=entry.get("result"), error=entry.get("error"), final=bool(entry.get("final")))
            became = dispatcher.finish(tx, journal, dispatcher.Claim(row), outcome, now=finished_at, worker=recorded_by)
            results.append((int(entry["task"]), became))
        journal.add(
            "worker.outcomes", None, None, journal=path.name, worker=recorded_by, applied_by=worker,
            recorded=[task for task, became in results if became != "stale"], stale=[task for task, became in results if became == "stale"],
        )
    return results
