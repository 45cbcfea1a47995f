"""Reading the audit chain: `audit log`, `audit verify`, `audit checkpoint`."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tqcli.core.context import Context
from tqcli.errors import InvalidInput
from tqcli.security.audit import GENESIS_HASH, audit_time
from tqcli.security.verify import AuditEntry, Checkpoint, VerifyReport, scan, verify_rows
from tqcli.units import parse_time

PARALLEL_FROM = 200_000  # below this, starting processes costs more than it saves

# Every action name an entry can carry: SPEC's fixed names and those the code emits.
# tests/test_cli_audit.py fails when code emits an action missing here.
KNOWN_ACTIONS = frozenset({
    # fixed by SPEC "Audit" (and named elsewhere in SPEC)
    "task.submit", "task.claim", "task.complete", "task.fail", "task.cancel", "task.bump", "task.lost",
    "task.stale", "task.edit", "task.prune", "dlq.replay", "dlq.purge", "dag.submit", "schedule.fire",
    "role.grant", "access.denied", "audit.checkpoint", "token.create", "token.revoke",
    # emitted by the code
    "task.block", "task.unblock", "task.release", "dag.cancel", "worker.outcomes",
    "schedule.add", "schedule.edit", "schedule.pause", "schedule.resume", "schedule.remove", "schedule.error",
    "breaker.open", "breaker.half_open", "breaker.close", "breaker.reset", "breaker.set",
    "schedule.skip", "queue.set", "tenant.set", "settings.apply",
})


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
        """Matching entries in chain order: the newest `limit` of them (0: all)."""
        if limit < 0:
            raise InvalidInput(f"invalid limit {limit}: use 0 (every entry) or a positive number")
        if task_id is not None and task_id < 1:
            raise InvalidInput(f"invalid task id {task_id}: task ids start at 1")
        if actor is not None and (not actor.strip() or actor != actor.strip() or "\x00" in actor):
            raise InvalidInput(f"invalid actor {actor!r}: give a user name, e.g. alice (the ACTOR column of 'tqcli audit log')")
        since_ts = audit_time(parse_time(since)) if since is not None else None
        with self._ctx.read() as tx:
            if action is not None and action not in KNOWN_ACTIONS and not tx.audit_has_action(action):
                raise InvalidInput(_unknown_action(action))
            rows = tx.audit_entries(task_id=task_id, actor=actor, action=action, since=since_ts, limit=limit or None)
        return [AuditEntry(*row) for row in rows]

    def verify(self, checkpoint: Checkpoint | None = None, *, processes: int | None = None) -> VerifyReport:
        """Recompute every link, streaming; compare with `checkpoint` when given.

        A long chain is checked in stretches by several processes (one per
        core, or `processes`); when any doubt comes up, the whole chain is
        walked again in order to name the first bad entry and what happened.
        """
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
            count, low, high = tx.audit_bounds()
        if count and count == high and low == 1 and self._intact(high, processes):
            with self._ctx.read() as tx:
                head = tx.audit_row(high)
                at_checkpoint = tx.audit_row(checkpoint.seq) if checkpoint is not None and 0 < checkpoint.seq <= high else None
            report = VerifyReport(count=count, head_seq=high, head_hash=head[9])
            if checkpoint is None:
                return report
            if at_checkpoint is not None and at_checkpoint[9] == checkpoint.hash:
                report.checkpoint_seq = checkpoint.seq
                return report
        with self._ctx.read() as tx:
            return verify_rows(tx.iter_audit(), checkpoint)

    def _intact(self, high: int, processes: int | None) -> bool:
        """The fast pass over entries 1..high, split between processes when it is long."""
        store = self._ctx.store
        parts = processes or (os.cpu_count() or 1)
        if parts < 2 or high < PARALLEL_FROM:
            with self._ctx.read() as tx:
                seen, _, _, intact = scan(tx.iter_audit(), 1, GENESIS_HASH)
            return intact and seen == high
        import subprocess
        import sys

        size = -(-high // parts)
        bounds = [(start, min(start + size - 1, high)) for start in range(1, high + 1, size)]
        helpers: list[subprocess.Popen[bytes]] = []
        try:
            for first, last in bounds[1:]:
                helpers.append(subprocess.Popen(
                    [sys.executable, "-m", "tqcli.security.verify", store.location, str(store.busy_timeout), str(first), str(last)],
                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                ))
            with self._ctx.read() as tx:
                results = [scan(tx.iter_audit(*bounds[0]), 1, GENESIS_HASH)]
            for helper in helpers:
                out, _ = helper.communicate()
                if helper.returncode != 0:
                    return False  # the ordered walk will say what is wrong
                results.append(tuple(json.loads(out)))
        finally:  # every path, an error or Ctrl-C included: no helper outlives the verify
            for helper in helpers:
                if helper.poll() is None:
                    helper.kill()
                helper.wait()
                if helper.stdout is not None:
                    helper.stdout.close()
        link = GENESIS_HASH
        for (first, last), (seen, first_prev, last_hash, intact) in zip(bounds, results):
            if not intact or seen != last - first + 1 or first_prev != link:
                return False
            link = last_hash
        return True

    def checkpoint(self) -> Checkpoint:
        """The current head of the chain, to keep outside the database."""
        with self._ctx.read() as tx:
            head = tx.audit_head()
            db_id = tx.meta_value("db_id") or ""
        seq, digest = head if head else (0, GENESIS_HASH)
        return Checkpoint(db_id=db_id, seq=seq, hash=digest, time=audit_time(self._ctx.clock.now()))


def _unknown_action(action: str) -> str:
    from difflib import get_close_matches

    close = get_close_matches(action, KNOWN_ACTIONS, n=1)
    hint = f"did you mean {close[0]}? " if close else ""
    return f"unknown action {action!r}: {hint}known actions: {', '.join(sorted(KNOWN_ACTIONS))}"


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
    if not str(path).strip() or target.is_dir() or not target.name:
        raise InvalidInput(f"cannot write checkpoint file {str(path)!r}: give a file name, e.g. --output head.json")
    temporary = target.with_name(f".{target.name}.tmp")
    try:
        temporary.write_text(json.dumps(checkpoint.to_json(), indent=2) + "\n", encoding="utf-8")
        temporary.replace(target)
    except OSError as exc:
        raise InvalidInput(f"cannot write checkpoint file {path}: {exc.strerror}") from None
