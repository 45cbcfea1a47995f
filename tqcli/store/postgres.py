"""The PostgreSQL store: connections, transactions, locks, wake-ups and error mapping.

Many hosts share one database, so the locks SQLite gets from its single
writer are taken explicitly here, each stated where it is taken:

- writes run in READ COMMITTED transactions; the rows a read-then-write
  depends on are locked first (`lock_tasks`, `lock_breakers`), always in
  ascending order, so two changes cannot deadlock on them;
- a claim picks its rows with `FOR UPDATE SKIP LOCKED` in a materialized
  CTE, so two claimers never take the same task and never wait on each other;
- the audit chain has one head: `append_audit` takes a transaction-level
  advisory lock, reads the head and appends; it is the last statement
  before COMMIT (`Context.change`), so the lock is held for the append and
  the commit alone, and however many hosts append there is one chain;
- idempotency keys and circuits are locked by key (advisory locks), so a
  second submit with a key waits and then finds the first's task;
- ids come from sequences (`tasks_id_seq`, `claim_seq`): no row lock;
- reads run in `REPEATABLE READ READ ONLY`: one snapshot for the whole read;
- every host reads the server's clock (`server_time`, `tqcli.clock.ServerClock`);
- a session left idle inside a transaction (its process stopped) is ended
  by the server, so its locks do not hold every host up (`postgres_idle`).

A change that loses a deadlock raises `StorageConflict`; the library runs
the whole operation again (`tqcli.core.context.retrying`). A lost
connection is `StorageLost`; the next transaction reconnects. The queries
are in `postgres_tx`, the wording of errors in `postgres_errors`.
"""

from __future__ import annotations

import threading
import time
import uuid
from contextlib import contextmanager
from typing import Callable, Iterator

import psycopg
from psycopg import pq

from tqcli.errors import InvalidInput, NotFound, StorageError
from tqcli.store import schema_pg
from tqcli.store.postgres_idle import KEEPER, idle_limit, session_options
from tqcli.store.postgres_errors import connect_error, describe, display_url, first_line
from tqcli.store.postgres_tx import AUDIT_LOCK, PgConnection, PostgresTx

# The channel idle workers LISTEN on; a change that makes tasks ready NOTIFYs it.
READY_CHANNEL = "tqcli_ready"
# NOTIFY serialises commits: one process sends at most one per this many seconds.
NOTIFY_EVERY = 0.1


class PostgresStore:
    """One tqcli database on a PostgreSQL server: connected, checked and migrated on construction."""

    path = None  # no local file: outcome journals for a full disk are a SQLite matter

    def __init__(
        self,
        url: str,
        *,
        busy_timeout: float = 10.0,
        read_only: bool = False,
        create: bool = True,
        connect_timeout: float = 10.0,
    ) -> None:
        """Connect; a database without tqcli's schema is created (unless `create` is False or `read_only`)."""
        self.location = url
        self.where = display_url(url)
        self.busy_timeout = busy_timeout
        self._idle_limit = idle_limit(busy_timeout)
        self.read_only = read_only
        self.connect_timeout = connect_timeout
        self._create = create and not read_only
        self._last_notify = 0.0
        self._conn: PgConnection | None = None
        self._conn = self._connect()
        try:
            self._check_and_migrate()
        except BaseException:
            self.close()
            raise

    # -- connecting --------------------------------------------------------

    def _connect(self) -> PgConnection:
        try:
            raw = psycopg.connect(
                self.location, autocommit=True, connect_timeout=max(1, int(self.connect_timeout)),
                application_name="tqcli", options=session_options(self.busy_timeout),
            )
        except psycopg.ProgrammingError as exc:  # the URL itself is wrong
            raise InvalidInput(f"invalid database URL {self.where}: {first_line(exc)}") from None
        except psycopg.Error as exc:
            raise connect_error(exc, self.where) from None
        return PgConnection(raw)

    def _connection(self) -> PgConnection:
        """The open connection, reconnecting first when the last one was lost."""
        conn = self._conn
        if conn is None or conn.raw.closed or conn.raw.broken:
            if conn is not None:
                conn.raw.close()
            self._conn = conn = self._connect()
        return conn

    def _check_and_migrate(self) -> None:
        conn = self._connection()
        version = self._version(conn)
        if version == schema_pg.SCHEMA_VERSION:
            return
        if version is not None and version > schema_pg.SCHEMA_VERSION:
            raise StorageError(
                f"database {self.where} was made by a newer tqcli (schema {version}; this tqcli knows "
                f"up to {schema_pg.SCHEMA_VERSION}); it was left untouched: upgrade tqcli"
            )
        if version is None:
            self._refuse_other_programs(conn)
        if version is None and not self._create:
            raise NotFound(
                f"no database at {self.where} yet: submitting a task creates it (or check --db, TQCLI_DB and the config file)"
            )
        if self.read_only:
            raise StorageError(
                f"database {self.where} uses schema {version} and this tqcli reads schema {schema_pg.SCHEMA_VERSION}; "
                "reading commands never write, so upgrade it with a command that writes (for example 'tqcli worker --once')"
            )
        with self._transaction(conn, "BEGIN"):
            # One migrator at a time; the others wait here and then find the work done.
            conn.raw.execute("SELECT pg_advisory_xact_lock(%s)", (AUDIT_LOCK - 1,))
            version = self._version(conn)
            if version is None:
                self._refuse_other_programs(conn)
                for statement in schema_pg.BASE:
                    conn.raw.execute(statement)
                conn.raw.execute("INSERT INTO schema_version (version) VALUES (%s)", (schema_pg.BASE_VERSION,))
                conn.raw.execute("INSERT INTO meta (key, value) VALUES ('db_id', %s)", (str(uuid.uuid4()),))
                version = schema_pg.BASE_VERSION
            for step in schema_pg.MIGRATIONS[version - schema_pg.BASE_VERSION :]:
                for statement in step:
                    conn.raw.execute(statement)
            conn.raw.execute("UPDATE schema_version SET version = %s", (schema_pg.SCHEMA_VERSION,))

    def _refuse_other_programs(self, conn: PgConnection) -> None:
        """StorageError when the schema has tables although tqcli's are not there."""
        with self.errors():
            row = conn.raw.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema()").fetchone()
        if row[0]:  # type: ignore[index]
            raise StorageError(
                f"{self.where} holds tables of another program, not a tqcli database; it was left untouched: "
                "name another database in --db"
            )

    def _version(self, conn: PgConnection) -> int | None:
        try:
            exists = conn.raw.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()[0]  # type: ignore[index]
            if not exists:
                return None
            row = conn.raw.execute("SELECT version FROM schema_version").fetchone()
        except psycopg.Error as exc:
            raise describe(exc, self.where, self.busy_timeout) from None
        return int(row[0]) if row else None

    # -- transactions ------------------------------------------------------

    @contextmanager
    def _transaction(self, conn: PgConnection, begin: str) -> Iterator[None]:
        try:
            conn.raw.execute(begin)
            try:
                yield
            except BaseException:
                if conn.raw.info.transaction_status == pq.TransactionStatus.ACTIVE:
                    conn.raw.close()  # a statement still runs (Ctrl-C inside it): the server rolls back as the connection ends
                elif not conn.raw.broken:
                    conn.raw.execute("ROLLBACK")
                raise
            conn.raw.execute("COMMIT")
        except psycopg.Error as exc:
            raise describe(exc, self.where, self.busy_timeout) from None

    @contextmanager
    def errors(self) -> Iterator[None]:
        """Turn any driver error raised inside into a tqcli error with advice."""
        try:
            yield
        except psycopg.Error as exc:
            raise describe(exc, self.where, self.busy_timeout) from None

    @contextmanager
    def write(self) -> Iterator[PostgresTx]:
        """One short READ COMMITTED write transaction: all of it lands or none."""
        if self.read_only:
            raise StorageError(f"database {self.where} was opened for reading: nothing was changed")
        conn = self._connection()
        tx = PostgresTx(conn)
        with self._transaction(conn, "BEGIN"):
            KEEPER.opened(conn.raw, self._idle_limit)
            try:
                yield tx
            finally:
                KEEPER.closed(conn.raw)
            if tx.made_ready and time.monotonic() - self._last_notify >= NOTIFY_EVERY:
                conn.raw.execute(f"NOTIFY {READY_CHANNEL}")
                self._last_notify = time.monotonic()

    @contextmanager
    def read(self) -> Iterator[PostgresTx]:
        """A read transaction with one snapshot (REPEATABLE READ READ ONLY), kept alive as a write is (`postgres_idle`)."""
        conn = self._connection()
        with self._transaction(conn, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"):
            KEEPER.opened(conn.raw, self._idle_limit)
            try:
                yield PostgresTx(conn)
            finally:
                KEEPER.closed(conn.raw)

    def server_time(self) -> int:
        """The server's wall clock now, in microseconds since the epoch (outside any transaction)."""
        with self.errors():
            row = self._connection().raw.execute("SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint").fetchone()
        return int(row[0])  # type: ignore[index]

    def listen(self, wake: Callable[[], None]) -> Callable[[], None]:
        """Call `wake()` whenever a change makes tasks ready (LISTEN on its own connection); returns the stopper."""
        stop = threading.Event()

        def loop() -> None:
            while not stop.is_set():
                try:
                    with psycopg.connect(self.location, autocommit=True, connect_timeout=5) as conn:
                        conn.execute(f"LISTEN {READY_CHANNEL}")
                        while not stop.is_set():
                            for _ in conn.notifies(timeout=0.5, stop_after=1):
                                wake()
                except psycopg.Error:
                    stop.wait(1.0)  # the polling fallback covers the gap; try again

        thread = threading.Thread(target=loop, name="tqcli-listen", daemon=True)
        thread.start()

        def stopper() -> None:
            stop.set()
            thread.join(timeout=2)

        return stopper

    def reopen(self) -> "PostgresStore":
        """A second, independent connection to the same database (for another thread)."""
        return PostgresStore(self.location, busy_timeout=self.busy_timeout, read_only=self.read_only, create=False)

    def close(self) -> None:
        """Close the connection; the store is unusable afterwards."""
        if self._conn is not None:
            self._conn.raw.close()
