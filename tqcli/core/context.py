"""What every library operation needs: the store, the clock and who is acting."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from tqcli.clock import Clock
from tqcli.security.audit import Journal, append_entries
from tqcli.store.sqlite import SqliteStore, SqliteTx


class Context:
    """The store, the clock and the acting identity, shared by the library's services."""

    __slots__ = ("store", "clock", "actor")

    def __init__(self, store: SqliteStore, clock: Clock, actor: str) -> None:
        self.store = store
        self.clock = clock
        self.actor = actor

    @contextmanager
    def change(self) -> Iterator[tuple[SqliteTx, Journal]]:
        """A write transaction whose journal is appended to the audit chain before commit."""
        with self.store.write() as tx:
            journal = Journal()
            yield tx, journal
            append_entries(tx, self.actor, self.clock.now(), journal.entries)

    def read(self):  # type: ignore[no-untyped-def]
        """A read transaction with one consistent snapshot."""
        return self.store.read()
