"""What every library operation needs: the store, the clock and who is acting."""

from __future__ import annotations

import functools
import random
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator, TypeVar

from tqcli.clock import Clock
from tqcli.errors import StorageConflict
from tqcli.security.audit import Journal, append_entries
from tqcli.store.base import Store, Tx


class Context:
    """The store, the clock and the acting identity, shared by the library's services."""

    __slots__ = ("store", "clock", "actor")

    def __init__(self, store: Store, clock: Clock, actor: str) -> None:
        self.store = store
        self.clock = clock
        self.actor = actor

    @contextmanager
    def change(self) -> Iterator[tuple[Tx, Journal]]:
        """A write transaction whose journal is appended to the audit chain before commit."""
        with self.store.write() as tx:
            journal = Journal()
            yield tx, journal
            append_entries(tx, self.actor, self.clock.now(), journal.entries)

    def read(self):  # type: ignore[no-untyped-def]
        """A read transaction with one consistent snapshot."""
        return self.store.read()


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
                time.sleep(random.uniform(0.005, 0.05) * (attempt + 1))
        raise AssertionError("unreachable")

    return run
