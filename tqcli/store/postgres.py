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
- ids come from sequences (`tasks_id_seq`, `claim_seq`): no row lock;
- reads run in `REPEATABLE READ READ ONLY`: one snapshot for the whole read.

A change that loses a deadlock, or collides on an idempotency key with a
change that committed first, raises `StorageConflict`; the library runs the
whole operation again (`tqcli.core.context.retrying`). A lost connection is
`StorageLost`; the next transaction reconnects.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence
from urllib.parse import urlsplit

import psycopg
from psycopg import errors as pg_errors
from psycopg import pq

from tqcli.errors import InvalidInput, NotFound, StorageBusy, StorageConflict, StorageError, StorageFull, StorageLost
from tqcli.store import schema_pg
from tqcli.store.audit_sql import AUDIT_COLUMNS, AuditSQL
from tqcli.store.base import ClaimRow
from tqcli.store.breaker_sql import BreakerSQL
from tqcli.store.dispatch_sql import CLAIM_COLUMNS, DispatchSQL, claim_filters
from tqcli.store.maintenance_sql import MaintenanceSQL
from tqcli.store.schedule_sql import ScheduleSQL
from tqcli.store.tasks_sql import INSERT_COLUMNS, TaskSQL, marks

# The channel idle workers LISTEN on; a change that makes tasks ready NOTIFYs it.
READY_CHANNEL = "tqcli_ready"
# NOTIFY serialises commits: one process sends at most one per this many seconds.
NOTIFY_EVERY = 0.1
# Advisory lock keys (one 64-bit number each): the audit head, and breakers by key hash.
AUDIT_LOCK = 0x7471636C_00000001
BREAKER_LOCK_SPACE = "tqcli.breaker:"
KEY_LOCK_SPACE = "tqcli.idempotency:"
# From this many rows an insert is one COPY (a bulk submit), below it pipelined INSERTs.
COPY_FROM = 50
# How long a statement waits for a lock before it is a busy database (ms).
LOCK_TIMEOUT_MS = 10_000

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_PLACEHOLDER = re.compile(r"'(?:[^']|'')*'|\?|%")


def _to_format(sql: str) -> str:
    """The shared queries' `?` placeholders as psycopg's `%s` (a literal `%` doubled)."""
    return _PLACEHOLDER.sub(lambda m: "%s" if m.group() == "?" else ("%%" if m.group() == "%" else m.group()), sql)


class PgConnection:
    """A psycopg connection behind the calls the shared queries make (sqlite3's `execute`/`executemany`)."""

    __slots__ = ("raw", "_translated")

    def __init__(self, raw: psycopg.Connection) -> None:
        self.raw = raw
        self._translated: dict[str, str] = {}

    def _sql(self, sql: str) -> str:
        text = self._translated.get(sql)
        if text is None:
            text = self._translated[sql] = _to_format(sql)
        return text

    def execute(self, sql: str, params: Sequence[Any] = ()) -> psycopg.Cursor:
        """Run one statement written with `?` placeholders; its cursor.

        An integer beyond 64 bits is an OverflowError, as sqlite3 raises it,
        rather than a NUMERIC that matches no row.
        """
        for value in params:
            if type(value) is int and not _INT64_MIN <= value <= _INT64_MAX:
                raise OverflowError("Python int too large to convert to a 64-bit integer")
        return self.raw.execute(self._sql(sql), tuple(params))

    def executemany(self, sql: str, rows: Any) -> psycopg.Cursor:
        """Run one statement for every row (pipelined by psycopg); its cursor, rowcount summed."""
        cursor = self.raw.cursor()
        cursor.executemany(self._sql(sql), list(rows))
        return cursor


class PostgresTx(TaskSQL, DispatchSQL, BreakerSQL, ScheduleSQL, AuditSQL, MaintenanceSQL):
    """The queries of one PostgreSQL transaction; created only by `PostgresStore.read/write`."""

    no_limit = None  # LIMIT NULL is no limit on PostgreSQL

    def __init__(self, conn: PgConnection) -> None:
        self.conn = conn  # type: ignore[assignment]
        self.made_ready = False

    # -- ids and numbers ---------------------------------------------------

    def allocate_task_ids(self, count: int) -> list[int]:
        """`count` new task ids, ascending, from the tasks' sequence (no other transaction gets them)."""
        if count <= 0:
            return []
        rows = self.conn.raw.execute("SELECT nextval('tasks_id_seq') FROM generate_series(1, %s)", (count,)).fetchall()
        return sorted(row[0] for row in rows)

    def next_claim_number(self) -> int:
        """A claim number no other claim gets (a sequence: numbers may be skipped, never repeated)."""
        return self.conn.raw.execute("SELECT nextval('claim_seq')").fetchone()[0]  # type: ignore[index]

    def use_claim_number(self, number: int) -> None:
        """Nothing to record: the sequence already handed `number` out once."""

    # -- locks -------------------------------------------------------------

    def lock_tasks(self, ids: Sequence[int], *, shared: bool = False) -> None:
        """Lock these task rows until commit (FOR SHARE with `shared`), in id order."""
        if ids:
            mode = "SHARE" if shared else "UPDATE"
            self.conn.raw.execute(f"SELECT id FROM tasks WHERE id = ANY(%s) ORDER BY id FOR {mode}", (sorted(set(ids)),)).fetchall()

    def lock_breakers(self, keys: Sequence[str]) -> None:
        """Lock these circuits until commit (existing or not), in key order."""
        self._advisory_locks([BREAKER_LOCK_SPACE + key for key in keys])

    def lock_idempotency_keys(self, tenant: str, keys: Sequence[str]) -> None:
        """Lock these keys of one tenant until commit: a second submit with one of them waits, then sees the first's task."""
        self._advisory_locks([f"{KEY_LOCK_SPACE}{len(tenant)}:{tenant}:{key}" for key in keys])

    def _advisory_locks(self, names: Sequence[str]) -> None:
        # In name order, so two transactions locking overlapping sets cannot deadlock on them.
        for name in sorted(set(names)):
            self.conn.raw.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (name,))

    def append_audit(self, link: Callable[[tuple[int, str] | None], list[tuple[Any, ...]]]) -> None:
        """Append `link(head)`'s rows under the chain's lock, so no two transactions extend the same head."""
        self.conn.raw.execute("SELECT pg_advisory_xact_lock(%s)", (AUDIT_LOCK,))
        self.insert_audit(link(self.audit_head()))

    def holding(self, tokens: Sequence[tuple[int, int]]) -> dict[tuple[int, int], bool]:
        """See DispatchSQL.holding; the rows stay locked until commit.

        Completing reads `has_dependents` here and releases dependents only
        when it is set; a dependent submitted meanwhile sets it. Locking the
        row makes that submit wait for this commit (and then see the task
        completed), or this read wait for the submit (and then see the flag).
        """
        wanted = set(tokens)
        ids = sorted({task_id for task_id, _ in tokens})
        rows = self.conn.raw.execute(
            "SELECT id, claim, has_dependents FROM tasks WHERE id = ANY(%s) AND state = 'running' ORDER BY id FOR UPDATE", (ids,)
        ).fetchall()
        return {(task_id, claim): bool(flag) for task_id, claim, flag in rows if (task_id, claim) in wanted}

    # -- claims ------------------------------------------------------------

    def claim_tasks(
        self, *, count: int, now: int, claim_number: int, lease_until: int, worker: str, holder: str | None = None, **filters: Any
    ) -> list[ClaimRow]:
        """Claim up to `count` ready tasks: picked with SKIP LOCKED, rechecked as pending by the update."""
        where, params = claim_filters(due_by=filters.pop("due_by", None) or now, **filters)
        sql = (
            f"WITH picked AS MATERIALIZED (SELECT id FROM tasks WHERE {where} "
            "ORDER BY priority DESC, run_at, id LIMIT ? FOR UPDATE SKIP LOCKED) "
            "UPDATE tasks SET state = 'running', attempts = attempts + 1, started_at = ?, "
            "claim = ?, lease_until = ?, worker = ?, holder = ?, cancel_requested = 0 "
            f"WHERE id IN (SELECT id FROM picked) AND state = 'pending' RETURNING {CLAIM_COLUMNS}"
        )
        return list(map(ClaimRow._make, self.conn.execute(sql, (*params, count, now, claim_number, lease_until, worker, holder)).fetchall()))

    def explain_claim(self, **filters: Any) -> list[str]:
        """PostgreSQL's plan for the claim's pick, one line per step."""
        where, params = claim_filters(due_by=0, **filters)
        sql = f"EXPLAIN SELECT id FROM tasks WHERE {where} ORDER BY priority DESC, run_at, id LIMIT 1 FOR UPDATE SKIP LOCKED"
        return [row[0] for row in self.conn.execute(sql, params).fetchall()]

    # -- what wakes workers ------------------------------------------------

    def insert_tasks(self, rows: Any) -> None:
        """Insert task rows (see TaskSQL.insert_tasks), by COPY when there are many; idle workers are woken at commit."""
        self.made_ready = True
        self._insert("tasks", INSERT_COLUMNS, rows)

    def insert_audit(self, rows: Any) -> None:
        """Append entries given in `AUDIT_COLUMNS` order, by COPY when there are many."""
        self._insert("audit", AUDIT_COLUMNS, rows)

    def _insert(self, table: str, names: str, rows: Any) -> None:
        rows = list(rows)
        if len(rows) < COPY_FROM:
            self.conn.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks(names.count(',') + 1)})", rows)
            return
        with self.conn.raw.cursor().copy(f"COPY {table} ({names}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)

    def release_dependents(self, task_id: int) -> None:
        """See DispatchSQL.release_dependents; idle workers are woken at commit."""
        self.made_ready = True
        super().release_dependents(task_id)

    def release_task(self, task_id: int, claim: int) -> bool:
        """See DispatchSQL.release_task; idle workers are woken at commit."""
        self.made_ready = True
        return super().release_task(task_id, claim)

    def replay_tasks(self, ids: Sequence[int], *, now: int) -> None:
        """See TaskSQL.replay_tasks; idle workers are woken at commit."""
        self.made_ready = True
        super().replay_tasks(ids, now=now)

    # -- queries PostgreSQL words differently ------------------------------

    def iter_audit(self, first: int | None = None, last: int | None = None) -> Iterator[tuple[Any, ...]]:
        """Entries in stored order, streamed through a server-side cursor (never all in memory)."""
        cursor = self.conn.raw.cursor(name=f"audit_{uuid.uuid4().hex}")
        cursor.itersize = 5000
        if first is None:
            cursor.execute(f"SELECT {AUDIT_COLUMNS} FROM audit ORDER BY seq")
        else:
            cursor.execute(f"SELECT {AUDIT_COLUMNS} FROM audit WHERE seq BETWEEN %s AND %s ORDER BY seq", (first, last))
        return iter(cursor)

    def prunable_tasks(self, states: Sequence[str], finished_by: int, after: tuple[int, int], limit: int) -> list[tuple[int, int, str]]:
        """See MaintenanceSQL.prunable_tasks (the planner needs no hint here)."""
        sql = (
            "SELECT finished_at, id, tenant FROM tasks AS t WHERE finished_at <= %s AND (finished_at, id) > (%s, %s) "
            "AND state = ANY(%s) AND NOT EXISTS (SELECT 1 FROM task_deps AS d JOIN tasks AS u "
            "ON u.id = d.task_id WHERE d.depends_on = t.id AND u.state IN ('pending', 'blocked', 'running')) "
            "ORDER BY finished_at, id LIMIT %s"
        )
        return self.conn.raw.execute(sql, (finished_by, *after, list(states), limit)).fetchall()

    def known_names(self, kind: str, prefix: str, limit: int) -> list[tuple[str, str | None]]:
        """Names of `kind` starting with `prefix` (shell completion), by index range scans."""
        from tqcli.store.names_pg import lookup

        return lookup(self.conn, kind, prefix, limit)


def describe(exc: psycopg.Error, where: str) -> StorageError | InvalidInput:
    """The tqcli error for a driver error: what happened, and what to do."""
    state = getattr(exc, "sqlstate", None) or ""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, (pg_errors.DeadlockDetected, pg_errors.SerializationFailure)):
        return StorageConflict(f"database {where}: {text}; nothing was changed")
    if isinstance(exc, pg_errors.UniqueViolation) and "tasks_idempotency" in str(exc):
        return StorageConflict(f"database {where}: another submit took the same idempotency key first; nothing was changed")
    if isinstance(exc, (pg_errors.LockNotAvailable, pg_errors.QueryCanceled)):
        return StorageBusy(
            f"database {where} is busy: a lock was held for more than {LOCK_TIMEOUT_MS // 1000} s; nothing was changed. Try again"
        )
    if state == "22003":  # numeric_value_out_of_range
        return InvalidInput("a number is too large: ids, counts and limits go up to 9223372036854775807")
    if state.startswith("53"):  # insufficient resources: disk full, out of memory, too many connections
        if state == "53100":
            return StorageFull(f"disk full on the PostgreSQL server of {where}: nothing was changed; free some space and try again")
        return StorageError(f"the PostgreSQL server of {where} is out of resources ({text}): nothing was changed; try again later")
    if state == "25006":  # read_only_sql_transaction
        return StorageError(f"database {where} is read-only here ({text}): nothing was changed")
    if state.startswith("28") or state == "42501":
        return StorageError(f"PostgreSQL refused access to {where} ({text}): check the user and password in the URL")
    if isinstance(exc, psycopg.OperationalError) or state.startswith("08") or state.startswith("57P"):
        return StorageLost(
            f"cannot reach the PostgreSQL server of {where} ({text}): nothing was changed; check that it is running and reachable"
        )
    return StorageError(f"database error on {where}: {text}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def connect_error(exc: psycopg.Error, where: str) -> StorageError | InvalidInput:
    """The tqcli error for a connection the server refused or could not take."""
    text = _first_line(exc)
    reason = text.rsplit("FATAL:", 1)[-1].strip() if "FATAL:" in text else text
    if "FATAL:" in text and "database" in reason and "does not exist" in reason:
        return StorageError(
            f"{where}: {reason} on the server; tqcli creates its tables but not the database: "
            "create it first (createdb, or CREATE DATABASE in psql)"
        )
    if "FATAL:" in text and ("password" in reason or "role" in reason or "authentication" in reason or "pg_hba" in reason):
        return StorageError(f"PostgreSQL refused the connection to {where} ({reason}): check the user and password in the URL")
    if "invalid" in text and any(word in text for word in ("option", "value", "URI", "port number")):
        return InvalidInput(f"invalid database URL {where}: {text}")
    return describe(exc, where)


def display_url(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError as exc:
        raise InvalidInput(f"invalid database URL: {exc}; the form is postgresql://user:password@host:port/database") from None
    if password is None:
        return url
    netloc = parts.netloc.replace(f":{password}@", ":***@")
    return parts._replace(netloc=netloc).geturl()


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
                application_name="tqcli", options=f"-c lock_timeout={int(self.busy_timeout * 1000)}",
            )
        except psycopg.ProgrammingError as exc:  # the URL itself is wrong
            raise InvalidInput(f"invalid database URL {self.where}: {_first_line(exc)}") from None
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
                tables = conn.raw.execute(
                    "SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema()"
                ).fetchone()[0]  # type: ignore[index]
                if tables:
                    raise StorageError(
                        f"{self.where} holds tables of another program, not a tqcli database; it was left untouched: "
                        "name another database in --db"
                    )
                for statement in schema_pg.BASE:
                    conn.raw.execute(statement)
                conn.raw.execute("INSERT INTO schema_version (version) VALUES (%s)", (schema_pg.BASE_VERSION,))
                conn.raw.execute("INSERT INTO meta (key, value) VALUES ('db_id', %s)", (str(uuid.uuid4()),))
                version = schema_pg.BASE_VERSION
            for step in schema_pg.MIGRATIONS[version - schema_pg.BASE_VERSION :]:
                for statement in step:
                    conn.raw.execute(statement)
            conn.raw.execute("UPDATE schema_version SET version = %s", (schema_pg.SCHEMA_VERSION,))

    def _version(self, conn: PgConnection) -> int | None:
        try:
            exists = conn.raw.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()[0]  # type: ignore[index]
            if not exists:
                return None
            row = conn.raw.execute("SELECT version FROM schema_version").fetchone()
        except psycopg.Error as exc:
            raise describe(exc, self.where) from None
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
            raise describe(exc, self.where) from None

    @contextmanager
    def errors(self) -> Iterator[None]:
        """Turn any driver error raised inside into a tqcli error with advice."""
        try:
            yield
        except psycopg.Error as exc:
            raise describe(exc, self.where) from None

    @contextmanager
    def write(self) -> Iterator[PostgresTx]:
        """One short READ COMMITTED write transaction: all of it lands or none."""
        if self.read_only:
            raise StorageError(f"database {self.where} was opened for reading: nothing was changed")
        conn = self._connection()
        tx = PostgresTx(conn)
        with self._transaction(conn, "BEGIN"):
            yield tx
            if tx.made_ready and time.monotonic() - self._last_notify >= NOTIFY_EVERY:
                conn.raw.execute(f"NOTIFY {READY_CHANNEL}")
                self._last_notify = time.monotonic()

    @contextmanager
    def read(self) -> Iterator[PostgresTx]:
        """A read transaction with one snapshot (REPEATABLE READ READ ONLY)."""
        conn = self._connection()
        with self._transaction(conn, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"):
            yield PostgresTx(conn)

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
