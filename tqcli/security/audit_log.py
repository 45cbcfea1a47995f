"""Reading the audit chain: `audit log`, `audit verify`, `audit checkpoint`, each checked by `Context.authorize`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

from tqcli.core.context import Context
from tqcli.errors import InvalidInput
from tqcli.observability.counters import CHECKPOINT
from tqcli.security.audit import GENESIS_HASH, audit_key_map, audit_time
from tqcli.security.checkpoint import Checkpoint, sign_checkpoint, signature_problem, write_checkpoint
from tqcli.security.verify import AuditEntry, Stretch, VerifyReport, scan, scan_stretch, verify_rows
from tqcli.units import US_PER_SECOND, parse_time

PARALLEL_FROM = 200_000  # below this, starting processes costs more than it saves
# About what this process checks while a helper starts (~90 ms of imports, at ~4 us an entry).
HELPER_START_ENTRIES = 20_000

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
    "keys.init", "keys.rotate", "keys.retire", "keys.reencrypt", "role.revoke",
})


class AuditLog:
    """The audit chain of one database, as its readers (and checkpoint writers) see it."""

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
        """Matching entries in chain order: the newest `limit` of them (0: all); a tenant-scoped auditor sees its tenants' alone."""
        if limit < 0:
            raise InvalidInput(f"invalid limit {limit}: use 0 (every entry) or a positive number")
        if task_id is not None and task_id < 1:
            raise InvalidInput(f"invalid task id {task_id}: task ids start at 1")
        if actor is not None and (not actor.strip() or actor != actor.strip() or "\x00" in actor):
            raise InvalidInput(f"invalid actor {actor!r}: give a user name, e.g. alice (the ACTOR column of 'tqcli audit log')")
        since_ts = audit_time(parse_time(since)) if since is not None else None
        with self._ctx.read() as tx:
            visible = self._ctx.authorize_any(tx, "audit", "read the audit log").tenants("audit")
            # A NUL is in no stored action (PostgreSQL's text cannot even hold one to look for).
            if action is not None and action not in KNOWN_ACTIONS and ("\x00" in action or not tx.audit_has_action(action)):
                raise InvalidInput(_unknown_action(action))
            rows = tx.audit_entries(
                task_id=task_id, actor=actor, action=action, since=since_ts, limit=limit or None,
                tenants=None if visible is None else sorted(visible),
            )
        return [AuditEntry(*row) for row in rows]

    def verify(
        self,
        checkpoint: Checkpoint | None = None,
        *,
        processes: int | None = None,
        public_key: bytes | None = None,
        progress: Callable[[int, int, str], None] | None = None,
    ) -> VerifyReport:
        """Recompute every link, streaming; compare with `checkpoint` when given, and check its signature.

        Keyed links need the key file (KeyProblem, exit 8, without it); a
        signed checkpoint needs `public_key` (raw Ed25519) or the key file's.
        A long chain is checked in stretches by several processes (one per
        core, or `processes`); when any doubt comes up, the whole chain is
        walked again in order to name the first bad entry and what happened.
        `progress(entries checked, entries in all, what)` is called as the
        fast pass goes (split between processes: estimated from this one's).
        """
        with self._ctx.read() as tx:
            self._ctx.authorize(tx, "audit", "verify the audit chain")
            db_id = tx.meta_value("db_id")
            count, low, high = tx.audit_bounds()
        ring = self._ctx.keys
        report = VerifyReport()
        if checkpoint is not None:
            report.checkpoint_seq = checkpoint.seq
            forged = signature_problem(checkpoint, public_key or (ring.signing_public if ring else None), required=public_key is not None)
            if forged is not None:
                report.kind, report.problem = "forged checkpoint", forged
                return report
            if checkpoint.db_id != db_id:
                report.kind = "rewritten"
                report.problem = (
                    f"the checkpoint belongs to database {checkpoint.db_id}, not to this one ({db_id}): "
                    "this is a different database or its history was recreated"
                )
                return report
        signed_by = checkpoint.key_id if checkpoint is not None and checkpoint.signature is not None else None
        if count and count == high and low == 1 and self._intact(high, processes, audit_key_map(ring), progress):
            with self._ctx.read() as tx:
                head = tx.audit_row(high)
                at_checkpoint = tx.audit_row(checkpoint.seq) if checkpoint is not None and 0 < checkpoint.seq <= high else None
            if head is not None and head.seq == high:
                report = VerifyReport(count=count, head_seq=high, head_hash=head.hash)
                if checkpoint is None:
                    return report
                if at_checkpoint is not None and at_checkpoint.hash == checkpoint.hash:
                    report.checkpoint_seq, report.checkpoint_key_id = checkpoint.seq, signed_by
                    return report
        with self._ctx.read() as tx:
            report = verify_rows(tx.iter_audit(), checkpoint, ring)
        if report.intact and checkpoint is not None:
            report.checkpoint_key_id = signed_by
        return report

    def _intact(
        self, high: int, processes: int | None, keys: dict[str, bytes], progress: Callable[[int, int, str], None] | None = None
    ) -> bool:
        """The fast pass over entries 1..high, split between processes when it is long.

        The helpers get their stretch, the database's location and the audit
        keys on stdin: a key on a command line is readable by every local
        user (/proc/PID/cmdline), and so is a password in a PostgreSQL URL.
        """
        store = self._ctx.store
        parts = processes or (os.cpu_count() or 1)
        if parts < 2 or high < PARALLEL_FROM:
            checked = None if progress is None else (lambda done: progress(done, high, "audit entries checked"))
            with self._ctx.read() as tx:
                seen, _, _, intact = scan(tx.iter_audit(), 1, GENESIS_HASH, keys, checked)
            return intact and seen == high
        import base64
        import subprocess
        import sys

        # This process starts checking at once; a helper first imports tqcli: it takes a longer first stretch.
        head_start = min(HELPER_START_ENTRIES, high // (2 * parts))
        size = -(-(high - head_start) // parts)
        bounds = [(1, size + head_start)]
        bounds += [(start, min(start + size - 1, high)) for start in range(size + head_start + 1, high + 1, size)]
        shared = {
            "location": str(store.location),
            "busy_timeout": store.busy_timeout,
            "keys": {key_id: base64.b64encode(key).decode() for key_id, key in keys.items()},
        }
        helpers: list[subprocess.Popen[bytes]] = []
        try:
            for first, last in bounds[1:]:
                helper = subprocess.Popen(
                    [sys.executable, "-m", "tqcli.security.verify"],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                )
                helpers.append(helper)
                assert helper.stdin is not None
                with helper.stdin:
                    helper.stdin.write(json.dumps({**shared, "first": first, "last": last}).encode())
            shown = f"audit entries checked ({len(bounds)} processes)"
            checked = None if progress is None else (lambda done: progress(min(high, done * len(bounds)), high, shown))
            with self._ctx.read() as tx:
                results = [scan_stretch(tx.iter_audit(*bounds[0]), 1, GENESIS_HASH, keys, checked)]
            for helper in helpers:
                assert helper.stdout is not None
                out = helper.stdout.read()
                if helper.wait() != 0:
                    return False  # the ordered walk will say what is wrong
                results.append(Stretch(*json.loads(out)))
        except BrokenPipeError:
            return False  # a helper that died at once: the ordered walk checks alone
        finally:  # every path, an error or Ctrl-C included: no helper outlives the verify
            for helper in helpers:
                if helper.poll() is None:
                    helper.kill()
                helper.wait()
                if helper.stdout is not None:
                    helper.stdout.close()
        link, keyed = GENESIS_HASH, False
        for (first, last), stretch in zip(bounds, results):
            if not stretch.intact or stretch.entries != last - first + 1 or stretch.first_prev != link:
                return False
            if keyed and not stretch.first_keyed:
                return False  # a plain entry right after a keyed one
            link, keyed = stretch.last_hash, stretch.last_keyed
        return True

    def checkpoint(self, output: str | Path | None = None) -> Checkpoint:
        """Record the chain's head, signed when the key file has the signing key, and append `audit.checkpoint` after it.

        One write transaction: the entry's own seq follows the head it
        checkpoints. With `output`, the file is written (atomically) before
        the commit, so a checkpoint that cannot be written leaves no entry.
        """
        with self._ctx.change() as (tx, journal):
            self._ctx.authorize(tx, "audit", "write an audit checkpoint")
            head = tx.audit_head()
            seq, digest = (head[0], head[1]) if head else (0, GENESIS_HASH)
            saved = Checkpoint(db_id=tx.meta_value("db_id") or "", seq=seq, hash=digest, time=audit_time(self._ctx.clock.now()))
            ring = self._ctx.keys
            if ring is not None and ring.signing_private is not None and ring.signing_id is not None:
                saved = sign_checkpoint(saved, ring.signing_private, ring.signing_id)
            journal.add("audit.checkpoint", seq=seq, hash=digest, signed=saved.signature is not None)
            tx.raise_counter(CHECKPOINT, "{}", self._ctx.clock.now() / US_PER_SECOND)  # tqcli metrics: no audit scan to find it
            if output is not None:
                write_checkpoint(saved, output)
        return saved


def _unknown_action(action: str) -> str:
    from difflib import get_close_matches

    close = get_close_matches(action, KNOWN_ACTIONS, n=1)
    hint = f"did you mean {close[0]}? " if close else ""
    return f"unknown action {action!r}: {hint}known actions: {', '.join(sorted(KNOWN_ACTIONS))}"
