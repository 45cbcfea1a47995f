"""When a task's values are sealed and opened: at submit, in the worker, and for readers who may see them.

The format and the cipher are `tqcli.security.crypto`'s; this module holds
the policy around them, in one place:

- a task is encrypted when it was submitted with `--encrypt` or to a queue
  that encrypts, and stays so whatever later happens to its queue;
- its values are sealed before they reach the database (at submit, and in
  the worker's slot as soon as an attempt ends), so no clear text reaches
  the database file, its WAL, the audit chain or the outcome journal;
- a worker opens a claimed task before it hands it to the executor; what
  does not decrypt fails without retry and never runs, what is sealed under
  a key this process lacks is given back unused;
- a reader sees `<encrypted>` unless it may decrypt (`decrypt` permission:
  admin, operator, or the submitter for its own tasks) and holds the key.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Callable, Sequence

from tqcli.core.context import Context
from tqcli.errors import KeyProblem
from tqcli.security.crypto import (
    DOES_NOT_DECRYPT, ENCRYPTED, PREFIX, DoesNotDecrypt, FieldCipher, UnknownDataKey, is_sealed, missing_key_file,
)
from tqcli.store.base import Tx

if TYPE_CHECKING:
    from tqcli.core.dispatcher import Claim, Outcome
    from tqcli.core.task import Task
    from tqcli.security.rbac import Access

UNREADABLE = f"<{DOES_NOT_DECRYPT}>"  # shown instead of a value that was tampered with or moved


def cipher_for(ctx: Context, tx: Tx) -> FieldCipher:
    """The cipher of `tx`'s database with this process's keys (None keys without a key file); KeyProblem for an unsafe key file."""
    return FieldCipher(tx.meta_value("db_id") or "", ctx.keys, reload=ctx.reload_keys)


def sealing_cipher(ctx: Context, tx: Tx, what: str) -> FieldCipher:
    """`cipher_for`, insisting on a data key to seal with: KeyProblem (exit 8) saying what needed it and what to do."""
    cipher = cipher_for(ctx, tx)
    if cipher.can_seal:
        return cipher
    if cipher.ring is None:
        raise _without_key_file(ctx, what)
    raise KeyProblem(f"{what} needs a data key, but key file {cipher.ring.path} holds none: run 'tqcli keys rotate' to add one")


def _without_key_file(ctx: Context, what: str) -> KeyProblem:
    problem = missing_key_file(ctx.key_file).message
    return KeyProblem(f"{what} needs the data key, but {problem[0].lower()}{problem[1:]}")


def held_data_keys(ctx: Context) -> frozenset[str]:
    """The ids of the data keys this process holds (none without a key file)."""
    ring = ctx.keys
    return frozenset(key.id for key in ring.data) if ring is not None else frozenset()


def may_decrypt(access: "Access", task: "Task") -> bool:
    """Whether `access` may see task's encrypted values in clear (SPEC: admin, operator, the submitter's own tasks)."""
    return access.allows("decrypt", tenant=task.tenant, owner=task.submitted_by)


def reveal(ctx: Context, tx: Tx, tasks: Sequence["Task"], *, access: "Access | None" = None) -> None:
    """Open, in place, the encrypted values of those `tasks` the actor may decrypt, when this process holds their keys.

    What stays sealed reads `<encrypted>` (see `mask`); a value that does
    not decrypt reads UNREADABLE. The key file is read only when there is
    something the actor may open.
    """
    encrypted = [task for task in tasks if task.encrypted]
    if not encrypted:
        return
    access = access or ctx.access(tx)
    allowed = [task for task in encrypted if may_decrypt(access, task)]
    if allowed and ctx.keys is not None:
        cipher = cipher_for(ctx, tx)
        for task in allowed:
            open_task(cipher, task)
    for task in encrypted:
        mask(task)


def mask(task: "Task") -> None:
    """Replace what is still sealed of `task` by `<encrypted>`, so no printer shows a ciphertext (its env stays sealed, shown so)."""
    task.payload = ENCRYPTED if is_sealed(task.payload) else task.payload
    task.result = ENCRYPTED if is_sealed(task.result) else task.result
    task.error = ENCRYPTED if is_sealed(task.error) else task.error
    for attempt in task.history or ():
        attempt.error = ENCRYPTED if is_sealed(attempt.error) else attempt.error
        attempt.traceback = ENCRYPTED if is_sealed(attempt.traceback) else attempt.traceback


def open_task(cipher: FieldCipher, task: "Task") -> None:
    """Open every sealed value of `task` (and of its loaded attempts) that `cipher` has the key for."""

    def opened(field: str, stored: str | None) -> str | None:
        if not is_sealed(stored):
            return stored
        try:
            return cipher.open(task.id, field, stored)  # type: ignore[arg-type]
        except UnknownDataKey:
            return stored
        except DoesNotDecrypt:
            return UNREADABLE

    task.payload = opened("payload", task.payload)  # type: ignore[assignment]
    task.result = opened("result", task.result)
    task.error = opened("error", task.error)
    task.env = opened("env", task.env)
    for attempt in task.history or ():
        attempt.error = opened("error", attempt.error)
        attempt.traceback = opened("traceback", attempt.traceback)


def open_for_copy(ctx: Context, tx: Tx, task: "Task", what: str) -> None:
    """Open an encrypted task's payload and env in place for a change that copies them (restart); KeyProblem when they cannot be."""
    cipher = cipher_for(ctx, tx)
    if cipher.ring is None:
        raise _without_key_file(ctx, what)
    task.payload = cipher.open(task.id, "payload", task.payload)
    task.env = cipher.open_optional(task.id, "env", task.env)


class WorkerKeys:
    """The keys a worker (or `tqcli run`) opens claimed tasks and seals their outcomes with, and what it warned about.

    The key file is read at the first claim. Without any data key a worker
    claims plain tasks only; a task sealed under a key this process lacks
    (after reading the key file once more) is given back and that key's
    tasks are left out of later claims. Each warning is given once.
    """

    def __init__(self, ctx: Context, db_id: str, warn: Callable[[str], None] = lambda text: None) -> None:
        self._ctx = ctx
        self._db_id = db_id
        self._warn = warn
        self._cipher: FieldCipher | None = None
        self._warned: set[str] = set()
        self._looked = False  # for pending encrypted tasks, without a data key
        self._lock = threading.Lock()
        self.missing: set[str] = set()  # data key ids this process lacks

    @property
    def cipher(self) -> FieldCipher:
        """The cipher, made on first use from the key file (KeyProblem for an unsafe one)."""
        if self._cipher is None:
            self._cipher = FieldCipher(self._db_id, self._ctx.keys, reload=self._ctx.reload_keys)
        return self._cipher

    @property
    def has_data_keys(self) -> bool:
        """Whether this process holds any data key (else it claims plain tasks only)."""
        return self.cipher.has_data_keys

    @property
    def excluded_prefixes(self) -> list[str]:
        """The stored-text prefixes of the keys this process lacks, for the claim to leave out."""
        return sorted(f"{PREFIX}{key_id}:" for key_id in self.missing)

    def warn_once(self, topic: str, text: str) -> None:
        """Warn with `text`, once per `topic` in this run."""
        with self._lock:
            if topic in self._warned:
                return
            self._warned.add(topic)
        self._warn(text)

    def warn_without_keys(self, tx: Tx) -> None:
        """Say once per run that encrypted tasks wait for a data key this worker lacks, when some are pending.

        Looked for once, and only by a worker with a key file that holds no
        data key: without any key file a worker cannot extend a keyed audit
        chain, and every database with encrypted tasks has one, so it never
        gets this far.
        """
        if self._looked or self.cipher.ring is None:
            return
        self._looked = True
        if tx.has_encrypted_pending():
            self.warn_once(
                "no-key",
                f"warning: encrypted tasks stay pending: key file {self.cipher.ring.path} holds no data key; "
                "give this worker a key file from 'tqcli keys export --for-worker FILE'",
            )

    def open_claim(self, claim: "Claim") -> str | None:
        """Open an encrypted claim's payload and env in place; None when it may run, else `released` or DOES_NOT_DECRYPT."""
        cipher = self.cipher
        try:
            claim.payload = cipher.open(claim.id, "payload", claim.payload)
            claim.env = cipher.open_optional(claim.id, "env", claim.env)
        except UnknownDataKey as exc:
            self.missing.add(exc.key_id)
            self.warn_once(f"key:{exc.key_id}", f"warning: encrypted tasks stay pending: {exc.message}")
            return "released"
        except DoesNotDecrypt:
            self._warn(f"task {claim.id}: {DOES_NOT_DECRYPT} (tampered with, or copied from another task): it fails without retry and does not run")
            return DOES_NOT_DECRYPT
        claim.sealer = self
        return None

    def seal_outcome(self, claim: "Claim", outcome: "Outcome") -> "Outcome":
        """`outcome` with its result, error and traceback sealed for `claim`'s task (in place; the slot calls it)."""
        cipher = self.cipher
        outcome.result = cipher.seal_optional(claim.id, "result", outcome.result)
        outcome.error = cipher.seal_optional(claim.id, "error", outcome.error)
        outcome.traceback = cipher.seal_optional(claim.id, "traceback", outcome.traceback)
        return outcome

