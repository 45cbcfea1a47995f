"""Names a person can type that exist in a database: queues, tenants, schedules, services, DAG ids.

For shell completion, which must answer at once and must not disturb
anything: the file is opened for reading alone (never created, migrated
or written), and a database that is busy answers nothing rather than wait.
"""

from __future__ import annotations

from pathlib import Path

KINDS = ("queue", "tenant", "schedule", "service", "dag")


def known_names(db: Path, kind: str, prefix: str = "", *, limit: int = 100) -> list[tuple[str, str | None]]:
    """Up to `limit` (value, description) pairs of `kind` that start with `prefix`.

    Raises StorageError (or sqlite3.Error) when the file is missing, is no
    tqcli database or cannot be read; the caller decides what that means.
    """
    from tqcli.store.names_sql import LOOKUPS
    from tqcli.store.sqlite import SqliteStore

    lookup = LOOKUPS[kind]
    store = SqliteStore(db, read_only=True, busy_timeout=0.05)
    try:
        with store.read() as tx:
            return lookup(tx.conn, prefix, limit)
    finally:
        store.close()
