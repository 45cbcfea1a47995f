"""The storage layer: the only place that speaks SQL.

`open` picks the store from the location: a `postgresql://` (or
`postgres://`) URL is the PostgreSQL store, anything else a SQLite file.
The core sees only the Protocols of `tqcli.store.base`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from tqcli.errors import NotFound, StorageError

if TYPE_CHECKING:
    from tqcli.store.base import Store

URL_SCHEMES = ("postgresql://", "postgres://")


def is_url(location: str | os.PathLike[str]) -> bool:
    """Whether `location` names a PostgreSQL database rather than a file."""
    return isinstance(location, str) and location.startswith(URL_SCHEMES)


def open(  # noqa: A001 - the store's open, as tqcli.open is the library's
    location: str | os.PathLike[str],
    *,
    read_only: bool = False,
    create: bool = True,
    busy_timeout: float = 10.0,
    synchronous: str = "normal",
) -> "Store":
    """Open the database at `location` (a file path or a PostgreSQL URL), creating it when missing.

    `create=False` raises NotFound for a database that does not exist yet
    (a missing or empty file; a PostgreSQL database without tqcli's
    tables); `read_only` implies it and opens for reading alone: nothing is
    migrated or written. `synchronous` is SQLite's setting (PostgreSQL's
    durability is the server's).
    """
    if is_url(location):
        try:
            from tqcli.store.postgres import PostgresStore
        except ImportError:
            raise StorageError(
                "the database is a PostgreSQL URL, and the PostgreSQL driver (psycopg) is not installed: "
                "pip install 'tqcli[postgres]'"
            ) from None
        return PostgresStore(str(location), busy_timeout=busy_timeout, read_only=read_only, create=create and not read_only)
    from tqcli.store.sqlite import SqliteStore

    path = Path(location)
    if (read_only or not create) and (not path.exists() or _empty_file(path)):
        raise NotFound(
            f"no database at {path} yet: submitting a task creates it (or check --db, TQCLI_DB and the config file)"
        )
    return SqliteStore(path, busy_timeout=busy_timeout, synchronous=synchronous, read_only=read_only)


def _empty_file(path: Path) -> bool:
    """Whether `path` is a regular file of 0 bytes (no database yet, whatever made it)."""
    try:
        return path.is_file() and path.stat().st_size == 0
    except OSError:
        return False
