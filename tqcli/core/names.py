"""Names a person can type that exist in a database: queues, tenants, schedules, services, DAG ids.

For shell completion, which must answer at once and must not disturb
anything: the file is opened for reading alone (never created, migrated
or written), and a database that is busy answers nothing rather than wait.
"""

from __future__ import annotations

from pathlib import Path

KINDS = ("queue", "tenant", "schedule", "service", "dag")


def known_names(db: Path | str, kind: str, prefix: str = "", *, limit: int = 100) -> list[tuple[str, str | None]]:
    """Up to `limit` (value, description) pairs of `kind` that start with `prefix`.

    Raises TqcliError when the database is missing, is no tqcli database or
    cannot be read; the caller decides what that means.
    """
    from tqcli.store import open as open_store

    store = open_store(db, read_only=True, busy_timeout=0.05)
    try:
        with store.read() as tx:
            return tx.known_names(kind, prefix, limit)
    finally:
        store.close()
