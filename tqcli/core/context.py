"""What every library operation needs: the store, the clock and who is acting."""

from __future__ import annotations

import functools
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator, TypeVar

from pathlib import Path

from tqcli.clock import Clock
from tqcli.errors import LimitReached, PermissionDenied, StorageConflict
from tqcli.observability.counters import record_refusal
from tqcli.security.audit import Journal, append_entries
from tqcli.security.keys import KeyRing, load_key_file
from tqcli.security.rbac import Access, denial_message, roles_for
from tqcli.store.base import Store, Tx


class Context:
    """The store, the clock, the acting identity and the key file, shared by the library's services.

    Every operation is checked here, in `authorize`, whichever client asks
    (the Python API, the CLI, the HTTP API); a denial is audited in its own
    transaction once the refused operation has rolled back.
    """

    __slots__ = ("store", "clock", "actor", "key_file", "_keys", "_keys_read")

    def __init__(self, store: Store, clock: Clock, actor: str, key_file: Path | None = None) -> None:
        self.store = store
        self.clock = clock
        self.actor = actor
        self.key_file = key_file
        self._keys: KeyRing | None = None
        self._keys_read = False

    def sibling(self, store: Store) -> "Context":
        """The same identity, clock and keys on another connection (a worker's own)."""
        other = Context(store, self.clock, self.actor, self.key_file)
        other._keys, other._keys_read = self._keys, self._keys_read
        return other

    @property
    def keys(self) -> KeyRing | None:
        """The key file's keys (read once, on first use), or None when there is no key file.

        KeyProblem when the file is unsafe (not ours, readable by others) or damaged.
        """
        if not self._keys_read:
            self._keys = load_key_file(self.key_file) if self.key_file is not None else None
            self._keys_read = True
        return self._keys

    def reload_keys(self) -> KeyRing | None:
        """Read the key file again (after a rotation, or when a value names a key this process lacks)."""
        self._keys_read = False
        return self.keys

    @contextmanager
    def change(self) -> Iterator[tuple[Tx, Journal]]:
        """A write transaction whose journal is appended to the audit chain before commit.

        A PermissionDenied raised inside rolls the change back, and then the
        denial is appended as `access.denied` in a transaction of its own.
        """
        try:
            with self.store.write() as tx:
                journal = Journal()
                yield tx, journal
                append_entries(tx, self.actor, self.clock.now(), journal.entries, self.audit_keys)
                tx.flush_counters()  # metric counters added by this change, in key order, last before commit
        except PermissionDenied as denial:
            self._record_denial(denial)
            record_refusal(self.store, denial)
            raise
        except LimitReached as refused:
            record_refusal(self.store, refused)  # a refused submit is counted once it has rolled back
            raise

    @contextmanager
    def read(self) -> Iterator[Tx]:
        """A read transaction with one consistent snapshot (a denial inside is audited as in `change`)."""
        try:
            with self.store.read() as tx:
                yield tx
        except PermissionDenied as denial:
            self._record_denial(denial)
            raise

    def audit_keys(self) -> KeyRing | None:
        """The keys an audit append links with (called only when the chain needs them)."""
        return self.keys

    def access(self, tx: Tx) -> Access:
        """The acting user's grants, read in `tx`."""
        grants, any_grant = tx.grants_of(self.actor)
        return Access(self.actor, grants, open=not any_grant)

    def authorize(
        self,
        tx: Tx,
        permission: str,
        action: str,
        *,
        tenant: str | None = None,
        owner: str | None = None,
        access: Access | None = None,
    ) -> Access:
        """Check that the actor may use `permission` (a row of SPEC's table) on an object of `tenant` submitted by `owner`.

        `action` names what was asked in the denial (`cancel task 7`). The
        one door every library operation goes through. Returns the access
        read, so a caller can limit a listing to its tenants.
        """
        access = access or self.access(tx)
        if not access.allows(permission, tenant=tenant, owner=owner):
            raise PermissionDenied(
                denial_message(access, action, permission, tenant),
                audit={"action": action, "needs": roles_for(permission), "tenant": tenant},
            )
        return access

    def read_scope(
        self, tx: Tx, tenant: str | None, action: str, permission: str = "read", *, access: Access | None = None
    ) -> tuple[str | None, list[str] | None]:
        """Narrow a listing to what the actor may see: `(tenant, tenants)` for the store's filters.

        A global grant (or an open database) leaves the filter as asked;
        tenant-scoped grants limit it to their tenants (`tenants`), and asking
        for a tenant outside them is a denial. `access`: the grants, if already read.
        """
        access = access or self.access(tx)
        if tenant:
            self.authorize(tx, permission, action, tenant=tenant, access=access)
        elif access.tenants(permission) == frozenset():
            self.authorize(tx, permission, action, access=access)
        visible = access.tenants(permission)
        if visible is None or tenant is not None:
            return tenant, None
        return None, sorted(visible)

    def authorize_any(self, tx: Tx, permission: str, action: str) -> Access:
        """Check that the actor holds `permission` on at least one tenant (for a listing it will narrow)."""
        access = self.access(tx)
        if access.tenants(permission) == frozenset():
            return self.authorize(tx, permission, action, access=access)
        return access

    def _record_denial(self, denial: PermissionDenied) -> None:
        """Append `access.denied` for `denial` in its own transaction; when that cannot be, say why in its message."""
        details = denial.audit
        if details is None or denial.recorded:
            return
        denial.recorded = True
        from tqcli.errors import KeyProblem, StorageError

        try:
            store = self.store
            if store.read_only:
                from tqcli.store import open as open_store

                store = open_store(self.store.location, create=False)
            try:
                with store.write() as tx:
                    append_entries(tx, self.actor, self.clock.now(), [_denied_entry(details)], self.audit_keys)
            finally:
                if store is not self.store:
                    store.close()
        except KeyProblem:
            denial.add_note_to_message("not audited: no audit key")
        except StorageError:
            denial.add_note_to_message("not audited: cannot write the database")


def _denied_entry(details: dict[str, Any]) -> tuple[str, int | None, str | None, str]:
    from tqcli.security.audit import encode_details

    task_id = details.get("task_id")
    return ("access.denied", task_id, details.get("tenant"), encode_details({k: v for k, v in details.items() if k != "task_id"}))


# How many times a change that lost a race (StorageConflict) is run again.
CONFLICT_RETRIES = 5

_T = TypeVar("_T")


def retrying(operation: Callable[..., _T]) -> Callable[..., _T]:
    """Run `operation` again when its transaction lost a race (a deadlock on PostgreSQL), up to CONFLICT_RETRIES times.

    Only for operations whose whole effect is their transaction: nothing
    they do before the commit may be seen outside it. SQLite's single writer
    never raises StorageConflict, so there it is one call.
    """

    @functools.wraps(operation)
    def run(*args: Any, **kwargs: Any) -> _T:
        for attempt in range(CONFLICT_RETRIES):
            try:
                return operation(*args, **kwargs)
            except StorageConflict:
                if attempt == CONFLICT_RETRIES - 1:
                    raise
                import random  # only after a lost race: it costs start-up time

                time.sleep(random.uniform(0.005, 0.05) * (attempt + 1))
        raise AssertionError("unreachable")

    return run
