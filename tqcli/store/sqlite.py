"""The SQLite store: opening the file safely, pragmas, transactions, error mapping.

Everything SQLite-specific lives here (`BEGIN IMMEDIATE`, pragmas, the WAL
check); the queries themselves are in the `*_sql` modules and mixed into
`SqliteTx`, so a PostgreSQL store can stand beside this one.

Rules kept here: Python's implicit transactions are off
(`isolation_level=None`); every write is one short `BEGIN IMMEDIATE`
transaction; a file that is corrupt, foreign or from a newer tqcli is
refused before anything is written to it.
"""

from __future__ import annotations

import os
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from tqcli.errors import StorageBusy, StorageError, StorageFull
from tqcli.store import schema
from tqcli.store.audit_sql import AuditSQL
from tqcli.store.breaker_sql import BreakerSQL
from tqcli.store.dispatch_sql import CLAIM_PICKED, DispatchSQL, pick_statement
from tqcli.store.keys_sql import KeysSQL
from tqcli.store.maintenance_sql import MaintenanceSQL
from tqcli.store.output_sql import OutputSQL
from tqcli.store.metrics_sql import MetricsSQL
from tqcli.store.schedule_sql import ScheduleSQL
from tqcli.store.tasks_sql import TaskSQL
from tqcli.store.tenancy_sql import TenancySQL
from tqcli.store.tokens_sql import TokenSQL

# Filesystems where SQLite's WAL cannot work: it needs every process on one
# host sharing memory through the -shm file.
NETWORK_FILESYSTEMS = frozenset(
    {"nfs", "nfs4", "cifs", "smb3", "smbfs", "ncpfs", "afs", "9p", "fuse.sshfs", "lustre", "gpfs", "ceph", "glusterfs", "fuse.glusterfs", "davfs", "fuse.s3fs"}
)


class SqliteTx(TaskSQL, DispatchSQL, BreakerSQL, ScheduleSQL, AuditSQL, MaintenanceSQL, TenancySQL, KeysSQL, MetricsSQL, OutputSQL, TokenSQL):
    """The queries of one transaction; created only by `SqliteStore.read/write`.

    The mixins hold portable SQL; what only SQLite understands is here.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def allocate_task_ids(self, count: int) -> list[int]:
        """`count` new task ids, ascending; ids are never reused.

        The write lock keeps them this transaction's: inserting them moves
        `sqlite_sequence` past them, so the next transaction starts after.
        """
        row = self.conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'tasks'").fetchone()
        first = (row[0] if row else 0) + 1
        return list(range(first, first + count))

    def lock_tasks(self, ids: Sequence[int], *, shared: bool = False) -> None:
        """Nothing to do: a write transaction holds the whole database (BEGIN IMMEDIATE)."""

    def lock_breakers(self, keys: Sequence[str]) -> None:
        """Nothing to do: a write transaction holds the whole database (BEGIN IMMEDIATE)."""

    def lock_idempotency_keys(self, tenant: str, keys: Sequence[str]) -> None:
        """Nothing to do: a write transaction holds the whole database (BEGIN IMMEDIATE)."""

    def known_names(self, kind: str, prefix: str, limit: int) -> list[tuple[str, str | None]]:
        """Names of `kind` starting with `prefix` (shell completion), through indexes."""
        from tqcli.store.names_sql import LOOKUPS

        return LOOKUPS[kind](self.conn, prefix, limit)

    def explain_claim(self, **filters: Any) -> list[str]:
        """SQLite's query plans for one tenant's pick at one level, then for claiming the picked ids; one line per step.

        The benchmark shows them.
        """
        filters = {"priority": 0, "tenants": ("default",), "queues": ("default",), **filters}
        sql, params = pick_statement(due_by=0, **filters)
        steps = [row[-1] for row in self.conn.execute(f"EXPLAIN QUERY PLAN {sql}", (*params, 1))]
        update = CLAIM_PICKED.format(ids="?, ?", still_pending=self._still_pending)
        return steps + [row[-1] for row in self.conn.execute(f"EXPLAIN QUERY PLAN {update}", (0, 0, 0, "", None, 1, 2))]


def filesystem_type(path: Path, mounts_file: str = "/proc/mounts") -> str | None:
    """The type of the filesystem holding `path`, from the mount table, if known."""
    try:
        with open(mounts_file, encoding="utf-8") as handle:
            mounts = [line.split() for line in handle]
    except OSError:
        return None
    target = os.path.realpath(path)
    best, best_type = "", None
    for fields in mounts:
        if len(fields) < 3:
            continue
        mount_point = fields[1].replace("\\040", " ")
        inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) >= len(best):
            best, best_type = mount_point, fields[2]
    return best_type


def _on_read_only_filesystem(path: Path) -> bool:
    """Whether the file (or, before it exists, its folder) is on a filesystem mounted read-only."""
    for candidate in (path, path.parent):
        try:
            return bool(os.statvfs(candidate).f_flag & os.ST_RDONLY)
        except OSError:
            continue
    return False


def _describe(exc: sqlite3.Error, path: Path, busy_timeout: float) -> StorageError:
    name = getattr(exc, "sqlite_errorname", "") or ""
    text = str(exc)
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in text:
        return StorageBusy(
            f"database {path} is busy: another process held its lock for more than the busy "
            f"timeout of {busy_timeout:g} s; nothing was changed. Try again, or raise busy_timeout in the config file"
        )
    if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")) or "not a database" in text or "malformed" in text:
        return StorageError(
            f"database {path} is corrupt or not a SQLite database ({text}); it was left untouched: restore it from a backup"
        )
    if name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN")) or "readonly" in text:
        if _on_read_only_filesystem(path):
            return StorageError(
                f"database {path} is on a read-only filesystem: nothing was changed; writing needs it mounted "
                "read-write (or use a --db on a writable disk)"
            )
    if name.startswith("SQLITE_READONLY") or "readonly" in text:
        for suffix in ("-shm", "-wal"):
            companion = Path(f"{path}{suffix}")
            if os.path.exists(companion) and os.access(path, os.W_OK) and not os.access(companion, os.W_OK):
                return StorageError(
                    f"database {path} cannot be written: {companion.name} beside it is read-only (left by a reader "
                    f"without write access); nothing was changed: remove {companion} and its -wal/-shm sibling while no tqcli runs"
                )
        return StorageError(f"database {path} is read-only ({text}): nothing was changed; writing needs write access to the file and its folder")
    if name.startswith("SQLITE_FULL") or "full" in text:
        return StorageFull(f"disk full while writing database {path}: nothing was changed; free some space and try again")
    if name.startswith("SQLITE_CANTOPEN"):
        return StorageError(f"cannot open database {path}: check that the file and its folder exist and are accessible")
    if name.startswith("SQLITE_IOERR") or "I/O" in text:
        return StorageError(f"I/O error on database {path} ({text}); nothing was changed: check the disk and file limits")
    return StorageError(f"database error on {path}: {text}")


class SqliteStore:
    """One tqcli database file: opened, checked and migrated on construction."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        busy_timeout: float = 10.0,
        synchronous: str = "normal",
        mounts_file: str = "/proc/mounts",
        read_only: bool = False,
    ) -> None:
        """Open (and migrate) the file; with `read_only`, open it for reading alone: no migration, no WAL switch, no write."""
        self.path = Path(path)
        self.location = str(self.path)
        self.busy_timeout = busy_timeout
        self.synchronous = synchronous
        self.read_only = read_only
        self._asked_read_only = read_only
        self._conn = self._open(synchronous, mounts_file)
        self._tx = SqliteTx(self._conn)

    # -- opening -----------------------------------------------------------

    def _open(self, synchronous: str, mounts_file: str) -> sqlite3.Connection:
        path = self.path
        fs_type = filesystem_type(path.parent if not path.exists() else path, mounts_file)
        if fs_type in NETWORK_FILESYSTEMS:
            raise StorageError(
                f"database {path} is on a {fs_type} filesystem, where SQLite's WAL cannot work "
                "(it needs every process on one host sharing memory): put the database on a local disk"
            )
        if path.exists() and not path.is_file():
            raise StorageError(f"database path {path} is not a file")
        creating = not path.exists()
        if self._asked_read_only:
            if creating:
                raise StorageError(f"cannot open database {path}: it does not exist")
            mode = "ro"
        elif creating:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StorageError(f"cannot create the folder of database {path}: {exc.strerror}") from None
            mode = "rwc"
        elif not os.access(path, os.R_OK):
            raise StorageError(f"cannot read database {path}: permission denied")
        elif not os.access(path, os.W_OK) or not os.access(path.parent, os.W_OK):
            mode = "ro"
            self.read_only = True
        else:
            mode = "rw"
        try:
            conn = self._connect(mode)
            if self.read_only:
                conn = self._readable(conn)
        except sqlite3.Error as exc:
            raise _describe(exc, path, self.busy_timeout) from None
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            self._check_and_migrate(conn)
            if not self.read_only:
                self._enable_wal(conn)
                conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as exc:
            conn.close()
            raise _describe(exc, path, self.busy_timeout) from None
        except StorageError:
            conn.close()
            raise
        return conn

    def _connect(self, mode: str) -> sqlite3.Connection:
        return sqlite3.connect(
            f"file:{_uri_path(self.path)}?mode={mode}",
            uri=True,
            isolation_level=None,
            timeout=self.busy_timeout,
            check_same_thread=False,
        )

    def _readable(self, conn: sqlite3.Connection) -> sqlite3.Connection:
        """A read-only connection that works even when the WAL index cannot be created.

        A WAL database needs its -shm file. While a writer has the database
        open it exists and a reader without write access can use it; after
        the last writer closed cleanly there is no -wal and no -shm, and a
        reader that may not create them opens the file as immutable instead:
        with no -wal file, the main file holds every committed change.
        """
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return conn
        except sqlite3.OperationalError:
            if os.path.exists(f"{self.path}-wal"):
                raise
        conn.close()
        return self._connect("ro&immutable=1")

    def _check_and_migrate(self, conn: sqlite3.Connection) -> None:
        version, app_id, tables = self._identity(conn)
        self._refuse_foreign(version, app_id, tables)
        if version == schema.SCHEMA_VERSION:
            return
        if self._asked_read_only:
            raise StorageError(
                f"database {self.path} uses schema {version} and this tqcli reads schema {schema.SCHEMA_VERSION}; "
                "reading commands never write, so upgrade it with a command that writes (for example 'tqcli worker --once')"
            )
        if self.read_only:
            raise StorageError(
                f"database {self.path} needs an upgrade from schema {version} to {schema.SCHEMA_VERSION}, "
                "but it is read-only: run any tqcli command once with write access"
            )
        if version == 0:
            # A new database starts in WAL; switching needs no open transaction.
            self._enable_wal(conn)
        conn.execute("BEGIN IMMEDIATE")
        try:
            version, app_id, tables = self._identity(conn)  # another process may have won the race
            self._refuse_foreign(version, app_id, tables)
            for step in schema.MIGRATIONS[version:]:
                for statement in step:
                    conn.execute(statement)
            if version == 0:
                import uuid

                conn.execute(f"PRAGMA application_id = {schema.APPLICATION_ID}")
                conn.execute("INSERT INTO meta (key, value) VALUES ('db_id', ?)", (str(uuid.uuid4()),))
            conn.execute(f"PRAGMA user_version = {schema.SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    @staticmethod
    def _identity(conn: sqlite3.Connection) -> tuple[int, int, int]:
        # One statement, so one snapshot: read apart, a database another process
        # is creating could show its tables before its application id.
        row = conn.execute(
            "SELECT (SELECT user_version FROM pragma_user_version), "
            "(SELECT application_id FROM pragma_application_id), (SELECT count(*) FROM sqlite_master)"
        ).fetchone()
        return int(row[0]), int(row[1]), int(row[2])

    def _refuse_foreign(self, version: int, app_id: int, tables: int) -> None:
        if app_id != schema.APPLICATION_ID and (app_id != 0 or version != 0 or tables != 0):
            raise StorageError(
                f"{self.path} is a SQLite database of another program, not a tqcli database; "
                "it was left untouched: name another file with --db"
            )
        if version > schema.SCHEMA_VERSION:
            raise StorageError(
                f"database {self.path} was made by a newer tqcli (schema {version}; this tqcli knows "
                f"up to {schema.SCHEMA_VERSION}); it was left untouched: upgrade tqcli"
            )

    def _enable_wal(self, conn: sqlite3.Connection) -> None:
        # Switching to WAL needs an exclusive lock, and SQLite does not wait for
        # one: it answers "locked", or keeps the old mode and says so, when another
        # process holds a lock (as when several processes create the database
        # together). Wait here instead.
        deadline = time.monotonic() + self.busy_timeout
        while True:
            try:
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
            else:
                if str(mode).lower() == "wal" or time.monotonic() >= deadline:
                    break
            time.sleep(0.01)
        if str(mode).lower() != "wal":
            raise StorageError(
                f"database {self.path} cannot use WAL mode (SQLite reports {mode!r}); "
                "put it on a local disk that supports shared memory"
            )

    # -- transactions ------------------------------------------------------

    @contextmanager
    def errors(self) -> Iterator[None]:
        """Turn any sqlite3 error raised inside into a `StorageError` with advice."""
        try:
            yield
        except sqlite3.Error as exc:
            raise _describe(exc, self.path, self.busy_timeout) from None

    @contextmanager
    def write(self) -> Iterator[SqliteTx]:
        """One short write transaction (`BEGIN IMMEDIATE`): all of it lands or none."""
        conn = self._conn
        with self.errors():
            if self.read_only:
                raise sqlite3.OperationalError("attempt to write a readonly database")
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._tx
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    @contextmanager
    def read(self) -> Iterator[SqliteTx]:
        """A read transaction: every query inside sees one consistent snapshot."""
        conn = self._conn
        with self.errors():
            conn.execute("BEGIN")
            try:
                yield self._tx
            finally:
                if conn.in_transaction:
                    conn.execute("COMMIT")

    def server_time(self) -> int:
        """The wall clock of the one host a SQLite file serves: this machine's."""
        return time.time_ns() // 1000

    def listen(self, wake: Callable[[], None]) -> Callable[[], None]:
        """No wake-ups on SQLite (one host: workers poll, which costs an index search); a stopper that does nothing."""
        return lambda: None

    def reopen(self) -> "SqliteStore":
        """A second, independent connection to the same file (for another thread)."""
        return SqliteStore(self.path, busy_timeout=self.busy_timeout, synchronous=self.synchronous, read_only=self._asked_read_only)

    def close(self) -> None:
        """Close the connection; the store is unusable afterwards."""
        self._conn.close()


def _uri_path(path: Path) -> str:
    # The characters that end or escape a URI path; cheaper than importing urllib.
    text = str(path.absolute())
    return text.replace("%", "%25").replace("?", "%3f").replace("#", "%23")
