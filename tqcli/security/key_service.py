"""The keys commands as library operations: init, rotate, re-encrypt, status, public, export, retire.

Every operation is admin-only, checked in a transaction of the database
(`Context.authorize`), and every change of the key file appends its audit
entry (`keys.init`, `keys.rotate`, `keys.reencrypt`, `keys.retire`) in the
transaction that made it, after the file was written, so the entry is
linked with the keys now in force. A key file is always replaced
atomically; a new one is never written over an existing file.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from tqcli.core.context import Context
from tqcli.core.output import output_field
from tqcli.errors import Conflict, InvalidInput, KeyProblem, NotFound
from tqcli.security.crypto import KEY_ID_CHARS, PREFIX, DoesNotDecrypt, FieldCipher, UnknownDataKey, missing_key_file
from tqcli.security.keys import KeyRing, new_key_ring, write_key_file
from tqcli.store.base import Tx

REENCRYPT_BATCH = 500  # tasks, and output chunks (16 KiB at most each), per transaction of `keys rotate --reencrypt`
_DATA_KEY_ID = re.compile(r"data-[0-9a-f]{8}")
Progress = Callable[[int, int, str], None]


@dataclass
class KeyInfo:
    """One key of `keys status`: its id, kind (data, audit, signing), whether it is primary, and how many stored values it protects.

    `values` is None for the signing key, which signs checkpoint files
    rather than protecting stored values. A key the database names but the
    key file lacks is listed with `in_key_file` False.
    """

    id: str
    kind: str
    primary: bool
    values: int | None
    in_key_file: bool = True

    def to_json(self) -> dict[str, Any]:
        """As in `keys status --json`."""
        return {"id": self.id, "kind": self.kind, "primary": self.primary, "values": self.values, "in_key_file": self.in_key_file}


@dataclass
class ReencryptReport:
    """What `keys rotate --reencrypt` rewrote: tasks and values (output chunks among them), in how many batches, and what it could not read."""

    key: str
    tasks: int = 0
    values: int = 0
    output_chunks: int = 0  # of `values`: chunks of what attempts printed
    batches: int = 0
    unreadable: list[int] = field(default_factory=list)  # tasks with a value that does not decrypt
    missing_keys: dict[str, list[int]] = field(default_factory=dict)  # key id -> tasks with values under it


class KeyService:
    """`tqcli keys ...`: the key file of `ctx.key_file` and the values of `ctx`'s database."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    @property
    def key_file(self) -> Path:
        """Where the key file is (SPEC's precedence, see `tqcli.security.keys.key_file_path`)."""
        if self._ctx.key_file is None:
            raise InvalidInput("no key file is configured: give --key-file PATH or set TQCLI_KEY_FILE")
        return self._ctx.key_file

    def _ring(self) -> KeyRing:
        """The key file's keys, read again (another process may have rotated them); exit 8 when there is no key file."""
        ring = self._ctx.reload_keys()
        if ring is None:
            raise missing_key_file(self.key_file)
        return ring

    def _check_admin(self, action: str) -> None:
        with self._ctx.read() as tx:
            self._ctx.authorize(tx, "admin", action)

    # -- the key file --------------------------------------------------------

    def init(self) -> KeyRing:
        """Create the key file with a data key, an audit key and a signing key (Conflict when one exists); the new ring."""
        path = self.key_file
        written = False
        try:
            with self._ctx.change() as (tx, journal):
                self._ctx.authorize(tx, "admin", "create the key file")
                if os.path.lexists(path):
                    raise Conflict(
                        f"key file {path} exists already: 'keys init' never overwrites one ('tqcli keys rotate' adds a data key)"
                    )
                ring = new_key_ring(path)
                _write(ring, replace_existing=False)
                written = True
                self._ctx.reload_keys()  # the entry below is linked with the new audit key
                journal.add(
                    "keys.init", None, None, key_file=str(path), data=ring.primary_data.id,  # type: ignore[union-attr]
                    audit=ring.primary_audit.id, signing=ring.signing_id,  # type: ignore[union-attr]
                )
        except BaseException:
            if written:  # not audited: as if it never was (nothing can have used its keys yet)
                path.unlink(missing_ok=True)
                self._ctx.reload_keys()
            raise
        return ring

    def rotate(self) -> tuple[str | None, str]:
        """Add a new primary data key, keeping the old ones for reading; `(previous primary, new primary)`."""
        with self._ctx.change() as (tx, journal):
            self._ctx.authorize(tx, "admin", "rotate the data key")
            ring = self._ring()
            previous = ring.primary_data.id if ring.primary_data is not None else None
            rotated = ring.with_new_data_key()
            _write(rotated, replace_existing=True)
            self._ctx.reload_keys()
            new = rotated.primary_data.id  # type: ignore[union-attr]
            journal.add("keys.rotate", None, None, key_file=str(ring.path), primary=new, previous=previous,
                        kept=[key.id for key in rotated.data if not key.primary])
        return previous, new

    def retire(self, key_id: str) -> None:
        """Remove data key `key_id` from the key file once no stored value needs it.

        InvalidInput for what is not a data key id, NotFound when the key
        file lacks it, Conflict for the primary key and while values use it.
        """
        if not _DATA_KEY_ID.fullmatch(key_id):
            raise InvalidInput(f"invalid key id {key_id!r}: data key ids look like data-3f2a9c1b ('tqcli keys status' lists them)")
        with self._ctx.change() as (tx, journal):
            self._ctx.authorize(tx, "admin", "retire a data key")
            ring = self._ring()
            key = next((key for key in ring.data if key.id == key_id), None)
            if key is None:
                known = ", ".join(key.id for key in ring.data) or "none"
                raise NotFound(f"data key {key_id} is not in key file {ring.path} (its data keys: {known})")
            if key.primary:
                raise Conflict(f"data key {key_id} is the primary one: 'tqcli keys rotate' makes a new primary first (nothing was changed)")
            chunks = tx.sealed_output_counts(PREFIX, KEY_ID_CHARS).get(key_id, 0)
            used = tx.sealed_value_counts(PREFIX, KEY_ID_CHARS).get(key_id, 0) + chunks
            if used:
                of_output = f" ({chunks} of them output chunk{'' if chunks == 1 else 's'})" if chunks else ""
                raise Conflict(
                    f"data key {key_id} still protects {used} stored value{'' if used == 1 else 's'}{of_output}: "
                    "run 'tqcli keys rotate --reencrypt' first (nothing was changed)"
                )
            _write(ring.without_data_key(key_id), replace_existing=True)
            self._ctx.reload_keys()
            journal.add("keys.retire", None, None, key_file=str(ring.path), key=key_id)

    def export_for_worker(self, path: str | Path) -> Path:
        """Write a copy of the key file without the private signing key to `path` (mode 0600; Conflict when it exists)."""
        target = Path(path).expanduser()
        if not str(path).strip() or target.is_dir():
            raise InvalidInput(f"cannot write key file {str(path)!r}: give a file name, e.g. --for-worker worker-keys.toml")
        self._check_admin("export the keys")
        ring = self._ring()
        if os.path.lexists(target):
            raise Conflict(f"{target} exists already: 'keys export' never overwrites a file; give a new path")
        _write(ring.for_worker(target), replace_existing=False)
        return target

    def public_key(self) -> bytes:
        """The raw Ed25519 public key that verifies checkpoints; exit 8 when the key file holds none."""
        self._check_admin("read the signing key")
        ring = self._ring()
        if ring.signing_public is None:
            raise KeyProblem(f"key file {ring.path} holds no signing key: it was made by 'keys export' without one; use the admin's key file")
        return ring.signing_public

    # -- the stored values ---------------------------------------------------

    def status(self) -> list[KeyInfo]:
        """Every key of the key file, and every key the database names that the file lacks, with the values each protects.

        A data key's values count its tasks' and attempts' sealed values and
        the output chunks sealed under it.
        """
        ring = self._ring()
        with self._ctx.read() as tx:
            self._ctx.authorize(tx, "admin", "list the keys")
            sealed = _sealed_counts(tx)
            linked = tx.audit_key_counts()
        keys = [KeyInfo(key.id, "data", key.primary, sealed.get(key.id, 0)) for key in ring.data]
        keys += [KeyInfo(key_id, "data", False, count, False) for key_id, count in sorted(sealed.items()) if ring.data_key(key_id) is None]
        keys += [KeyInfo(key.id, "audit", key.primary, linked.get(key.id, 0)) for key in ring.audit]
        keys += [KeyInfo(key_id, "audit", False, count, False) for key_id, count in sorted(linked.items()) if ring.audit_key(key_id) is None]
        if ring.signing_id is not None:
            keys.append(KeyInfo(ring.signing_id, "signing", True, None))
        return keys

    def reencrypt(self, *, batch: int = REENCRYPT_BATCH, progress: Progress | None = None) -> ReencryptReport:
        """Rewrite every stored value not under the primary data key under it, `batch` tasks per transaction.

        A batch's output chunks are resealed in its transaction too, `batch`
        chunks at most, and the rest in further transactions of `batch`
        chunks, so no transaction holds more than `batch` tasks' values and
        `batch` chunks. Each transaction commits on its own with one
        `keys.reencrypt` entry naming its tasks, so an interrupted run loses
        nothing and a second run finishes it (values already under the
        primary key are left as they are). Values that do not decrypt, or
        are under a key the file lacks, stay as they are and are reported.
        `progress(done, total, what)` follows the values rewritten.
        """
        if batch < 1:
            raise InvalidInput("invalid batch size: use 1 or more tasks per transaction")
        ring = self._ring()
        primary = ring.primary_data
        if primary is None:
            raise KeyProblem(f"key file {ring.path} holds no data key: run 'tqcli keys rotate' to add one")
        with self._ctx.read() as tx:
            self._ctx.authorize(tx, "admin", "re-encrypt stored values")
            db_id = tx.meta_value("db_id") or ""
            total = sum(count for key_id, count in _sealed_counts(tx).items() if key_id != primary.id)
        cipher = FieldCipher(db_id, ring)
        report = ReencryptReport(primary.id)
        after = 0
        while True:
            with self._ctx.change() as (tx, journal):
                self._ctx.authorize(tx, "admin", "re-encrypt stored values")
                ids = tx.encrypted_task_ids(after, batch)
                if ids:
                    tasks = _Reencryption(cipher, report, ids, batch)
                    tasks.run(tx, journal, with_values=True)
            if not ids:
                return report
            while not tasks.output_done:  # what the batch's attempts printed, `batch` chunks per transaction
                with self._ctx.change() as (tx, journal):
                    self._ctx.authorize(tx, "admin", "re-encrypt stored values")
                    tasks.run(tx, journal, with_values=False)
                if progress is not None:
                    progress(report.values, max(total, report.values), f"output of task {tasks.at}")
            report.tasks += len(tasks.rewritten)
            after = ids[-1]
            if progress is not None:
                progress(report.values, max(total, report.values), f"task {after}")


def _write(ring: KeyRing, *, replace_existing: bool) -> None:
    """`write_key_file`, its failures as tqcli errors."""
    try:
        write_key_file(ring, replace_existing=replace_existing)
    except FileExistsError:
        raise Conflict(f"key file {ring.path} exists already; nothing was overwritten") from None
    except OSError as exc:
        raise InvalidInput(f"cannot write key file {ring.path}: {exc.strerror}") from None


def _sealed_counts(tx: Tx) -> dict[str, int]:
    """How many stored values name each data key: tasks' and attempts' values and output chunks together."""
    counts = tx.sealed_value_counts(PREFIX, KEY_ID_CHARS)
    for key_id, count in tx.sealed_output_counts(PREFIX, KEY_ID_CHARS).items():
        counts[key_id] = counts.get(key_id, 0) + count
    return counts


class _Reencryption:
    """Re-encrypting one batch of encrypted tasks (`ids`): their values, then their output chunks, `batch` chunks a transaction.

    Each `run` is one transaction of the caller's: it locks the batch's
    tasks first, in id order (so a worker finishing or printing for one of
    them waits, and no two transactions wait on each other), rewrites what
    it reads and adds one `keys.reencrypt` entry when it rewrote anything.
    Output chunks are read past a cursor, so chunks that cannot be resealed
    are passed over rather than read again.
    """

    def __init__(self, cipher: FieldCipher, report: ReencryptReport, ids: list[int], batch: int) -> None:
        self.cipher, self.report, self.ids, self.batch = cipher, report, ids, batch
        self.rewritten: set[int] = set()  # tasks of the batch with something rewritten, over all its transactions
        self.output_done = False
        self.cursor = (ids[0], -1, -1)  # (task id, claim, byte offset) of the last chunk read
        self._current = f"{PREFIX}{report.key}:"
        self._missing: set[tuple[str, int]] = set()
        self._skipped: set[int] = set()  # tasks with a value left as it is, in this transaction

    @property
    def at(self) -> int:
        """The task whose output was read last."""
        return self.cursor[0]

    def run(self, tx: Tx, journal: Any, *, with_values: bool) -> None:
        """One transaction: lock the tasks, reseal their values (`with_values`) and the next output chunks, audit it."""
        tx.lock_tasks(self.ids)
        self._skipped = set()
        tasks, count = self._values(tx) if with_values else (set(), 0)
        output_tasks, chunks = self._output(tx)
        if not tasks and not output_tasks:
            return
        touched = tasks | output_tasks
        self.rewritten |= touched
        report = self.report
        report.values += count + chunks
        report.output_chunks += chunks
        report.batches += 1
        journal.add("keys.reencrypt", None, None, key=report.key, tasks=sorted(touched), count=len(touched), values=count + chunks,
                    output_chunks=chunks, skipped=sorted(self._skipped) or None)

    def _reseal(self, task_id: int, name: str, stored: str | None) -> str | None:
        try:
            return self.cipher.reseal(task_id, name, stored)
        except UnknownDataKey as exc:
            if (exc.key_id, task_id) not in self._missing:
                self._missing.add((exc.key_id, task_id))
                self.report.missing_keys.setdefault(exc.key_id, []).append(task_id)
        except DoesNotDecrypt:
            if task_id not in self.report.unreadable:
                self.report.unreadable.append(task_id)
        self._skipped.add(task_id)
        return stored

    def _values(self, tx: Tx) -> tuple[set[int], int]:
        """Reseal the tasks' and their attempts' values: the tasks rewritten and how many values."""
        reseal = self._reseal
        fields = ("payload", "result", "error", "env")
        tasks, attempts, count, rewritten = [], [], 0, set()
        for row in tx.sealed_values(self.ids):
            new = (row[0], *(reseal(row[0], name, value) for name, value in zip(fields, row[1:])))
            if new != row:
                tasks.append(new)
                count += sum(1 for old, value in zip(row[1:], new[1:]) if old != value)
                rewritten.add(row[0])
        for row in tx.sealed_attempt_values(self.ids):
            task_id, claim, error, traceback = row
            new_error, new_traceback = reseal(task_id, "error", error), reseal(task_id, "traceback", traceback)
            if (new_error, new_traceback) != (error, traceback):
                attempts.append((task_id, claim, new_error, new_traceback))
                count += (new_error != error) + (new_traceback != traceback)
                rewritten.add(task_id)
        tx.rewrite_sealed_values(tasks)
        tx.rewrite_sealed_attempts(attempts)
        return rewritten, count

    def _output(self, tx: Tx) -> tuple[set[int], int]:
        """Reseal the next `batch` output chunks not under the primary key: the tasks rewritten and how many chunks."""
        found = tx.sealed_output_chunks(self.ids[-1], self.cursor, PREFIX, self._current, self.batch)
        if len(found) < self.batch:
            self.output_done = True
        if not found:
            return set(), 0
        last_task, last_claim, last_offset, _ = found[-1]
        self.cursor = (last_task, last_claim, last_offset)
        rows = []
        for task_id, claim, offset, text in found:
            new = self._reseal(task_id, output_field(claim, offset), text)
            if new is not None and new != text:
                rows.append((task_id, claim, offset, new))
        tx.rewrite_sealed_output(rows)
        return {row[0] for row in rows}, len(rows)
