"""Copying a whole tqcli database into an empty PostgreSQL database (`tqcli migrate --to`).

The source (a SQLite file, or another PostgreSQL database) is read in one
read transaction: the copy is one consistent snapshot. The target is written
in one transaction: a failure or Ctrl-C leaves it as it was found. Rows move
table by table in primary-key order, fetched in batches of BATCH_ROWS and
written by one binary `COPY ... FROM STDIN` per table. Then the target's
sequences are set past every id and claim number the source ever handed out.

SQLite is dynamically typed: a hand edit can leave text where an integer
belongs, a blob where text does, or a number too large for a 32-bit column.
Binary COPY would refuse the first two without naming the row, and store the
third wrapped around, so every SQLite table is searched for such values
first (one query per table, in SQLite's C code) and the first one is named
by table, row and column. Values that pass keep their type: INTEGER is
BIGINT (or INTEGER for flags and priorities), REAL is DOUBLE PRECISION, text
is text, so the audit chain's links, computed from values alone, come out
the same on the target.

Empty means: no table at all, or tqcli's schema holding only what a new
database holds (its `db_id` in meta, the claim counter at 0). Anything else
(any other row, or tables of another program) is refused (Conflict) before
anything is written. A target with no tables is given tqcli's schema by
`tqcli.store.open`, the one place that creates it, in a transaction of its
own; if the copy then fails, those tables are dropped again.
"""

from __future__ import annotations

import secrets
import sqlite3
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import psycopg
from psycopg import pq

from tqcli.errors import Conflict, InvalidInput, StorageError
from tqcli.store import open as open_store
from tqcli.store import schema_pg
from tqcli.store.base import Store, Tx
from tqcli.store.postgres_errors import LOCK_TIMEOUT_MS, connect_error, describe, display_url

BATCH_ROWS = 5000

# `progress(rows copied, rows in all, table being copied)`, called after every batch.
Progress = Callable[[int, int, str], None]

# What a new database holds besides its tables: anything else makes a target "not empty".
FRESH_ROWS = {"meta": "key = 'db_id'", "counters": "name = 'claim' AND value = 0"}
KNOWN_TABLES = frozenset({*schema_pg.DATA_TABLES, "schema_version"})
SEQUENCES = ("tasks_id_seq", "claim_seq")  # dags' identity sequence goes with its table

# PostgreSQL column types, as binary COPY names them, and what a SQLite value of each may be.
COPY_TYPES = {"bigint": "int8", "integer": "int4", "double precision": "float8", "text": "text"}
INT4_MIN, INT4_MAX = -(2**31), 2**31 - 1
_SQLITE_TYPES = {"bigint": "'integer'", "integer": "'integer'", "double precision": "'real', 'integer'", "text": "'text'"}
_NEEDS = {
    "bigint": "an integer",
    "integer": f"an integer from {INT4_MIN} to {INT4_MAX}",
    "double precision": "a number",
    "text": "text without NUL characters",
}


@dataclass(frozen=True)
class Column:
    """One column of a target table."""

    name: str
    type: str  # PostgreSQL's data_type: bigint, integer, double precision or text
    nullable: bool


@dataclass(frozen=True)
class Table:
    """One table to copy: its columns in the target's order, its primary key, its row count in the snapshot."""

    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    rows: int

    @property
    def select_list(self) -> str:
        return ", ".join(f'"{column.name}"' for column in self.columns)


def copy_to_postgres(
    source: Store,
    url: str,
    *,
    check: Callable[[Tx], None],
    verify: Callable[[Tx, Tx], None],
    progress: Progress | None = None,
    batch_rows: int = BATCH_ROWS,
) -> dict[str, int]:
    """Copy every table of `source` into the empty PostgreSQL database at `url`; the rows copied per table.

    `check(source_tx)` runs first in the source's snapshot (it raises to
    refuse); `verify(source_tx, target_tx)` runs after the copy, before the
    target commits (it raises to roll everything back).
    """
    where = display_url(url)
    try:
        return _copy_snapshot(source, url, where, check, verify, progress, batch_rows)
    except StorageError as exc:
        if _during_interrupt(exc):  # the rollback after Ctrl-C failed: the server rolls back without it
            raise KeyboardInterrupt from None
        raise


def _during_interrupt(exc: BaseException) -> bool:
    """Whether `exc` was raised while a KeyboardInterrupt was being handled."""
    seen = exc.__context__
    while seen is not None:
        if isinstance(seen, KeyboardInterrupt):
            return True
        seen = seen.__context__
    return False


def _copy_snapshot(
    source: Store, url: str, where: str, check: Callable[[Tx], None], verify: Callable[[Tx, Tx], None],
    progress: Progress | None, batch_rows: int,
) -> dict[str, int]:
    with source.read() as stx:
        source_raw = getattr(stx.conn, "raw", None)  # a PostgreSQL source's connection
        try:
            check(stx)
            control = _connect(url, where, source.busy_timeout)
            try:
                if source_raw is not None:
                    _refuse_same_database(source_raw, control, url)
                created = _inspect(control, where)
                return _copy(source, stx, url, where, control, created, verify, progress, batch_rows)
            finally:
                control.close()
        except BaseException:
            if source_raw is not None:
                _abandon_if_busy(source_raw)
            raise


def _abandon_if_busy(raw: psycopg.Connection) -> None:
    """Drop a connection that Ctrl-C left in the middle of a command, so the server rolls its transaction back.

    psycopg can be interrupted between sending a statement and reading its
    result; a ROLLBACK sent then fails ("another command is already in
    progress") and would hide the interrupt behind a storage error. A
    finished connection counts as broken, and the store's transaction then
    lets the original exception through without a ROLLBACK.
    """
    if not raw.closed and raw.pgconn.transaction_status == pq.TransactionStatus.ACTIVE:
        raw.pgconn.finish()


def _connect(url: str, where: str, busy_timeout: float) -> psycopg.Connection:
    """A connection of its own to the target, to look at it (and clean up) outside the copy's transaction."""
    try:
        return psycopg.connect(
            url, autocommit=True, connect_timeout=10, application_name="tqcli migrate",
            options=f"-c lock_timeout={int(busy_timeout * 1000) or LOCK_TIMEOUT_MS}",
        )
    except psycopg.ProgrammingError as exc:
        raise InvalidInput(f"invalid database URL {where}: {str(exc).strip().splitlines()[0]}") from None
    except psycopg.Error as exc:
        raise connect_error(exc, where) from None


def _refuse_same_database(source: psycopg.Connection, control: psycopg.Connection, url: str) -> None:
    """InvalidInput when the target is the source itself: advisory locks are per database, so the target cannot take the source's."""
    key = secrets.randbits(62)
    try:
        source.execute("SELECT pg_try_advisory_xact_lock(%s)", (key,))
        free = control.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0]  # type: ignore[index]
        if free:
            control.execute("SELECT pg_advisory_unlock(%s)", (key,))
    except psycopg.Error as exc:
        raise describe(exc, display_url(url)) from None
    if not free:
        raise InvalidInput(f"--to names the database being copied ({display_url(url)}): name another, empty PostgreSQL database")


def _inspect(control: psycopg.Connection, where: str) -> bool:
    """Whether the target has no tables at all (True) or tqcli's schema with no rows (False); refuses anything else."""
    try:
        relations = dict(control.execute(
            "SELECT relname, relkind FROM pg_class WHERE relnamespace = to_regnamespace(current_schema()) "
            "AND relkind IN ('r', 'p', 'v', 'm', 'f', 'S')"
        ).fetchall())
        if not relations:
            return True
        tables = {name for name, kind in relations.items() if kind != "S"}
        foreign = sorted(tables - KNOWN_TABLES) if "schema_version" in tables else sorted(relations)
        if foreign:
            shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
            raise Conflict(
                f"{where} is not empty: it holds tables of another program ({shown}); it was left unchanged: "
                "migrate copies into an empty database only (create one with createdb)"
            )
        versions = control.execute("SELECT version FROM schema_version").fetchall()
        if len(versions) != 1:
            raise Conflict(f"{where} is not empty: its schema_version table is not tqcli's; it was left unchanged: name an empty database")
        if versions[0][0] > schema_pg.SCHEMA_VERSION:
            raise StorageError(
                f"database {where} was made by a newer tqcli (schema {versions[0][0]}; this tqcli knows up to "
                f"{schema_pg.SCHEMA_VERSION}); it was left untouched: upgrade tqcli, or name an empty database"
            )
        holding = _tables_with_rows(control, sorted(tables & set(schema_pg.DATA_TABLES)))
    except psycopg.Error as exc:
        raise describe(exc, where) from None
    if holding:
        raise _not_empty(where, holding)
    return False


def _tables_with_rows(conn: Any, tables: Sequence[str]) -> list[str]:
    """The tables among `tables` that hold rows a new database does not."""
    if not tables:
        return []
    parts = [
        f"SELECT '{name}' WHERE EXISTS (SELECT 1 FROM {name}" + (f" WHERE NOT ({FRESH_ROWS[name]})" if name in FRESH_ROWS else "") + ")"
        for name in tables
    ]
    return [row[0] for row in conn.execute(" UNION ALL ".join(parts)).fetchall()]


def _not_empty(where: str, holding: Sequence[str]) -> Conflict:
    return Conflict(
        f"{where} is not empty: {', '.join(holding)} hold{'s' if len(holding) == 1 else ''} rows; it was left unchanged: "
        "migrate copies into an empty database only (create one with createdb, or drop this one's tables)"
    )


def _copy(
    source: Store, stx: Tx, url: str, where: str, control: psycopg.Connection, created: bool,
    verify: Callable[[Tx, Tx], None], progress: Progress | None, batch_rows: int,
) -> dict[str, int]:
    drop = created  # only what this copy created is removed on failure
    target: Store | None = None
    try:
        target = open_store(url, busy_timeout=source.busy_timeout)
        with target.write() as ttx:
            raw = ttx.conn.raw  # type: ignore[attr-defined]
            try:
                raw.execute(f"LOCK TABLE {', '.join(schema_pg.DATA_TABLES)} IN EXCLUSIVE MODE")  # no other writer until commit
                holding = _tables_with_rows(raw, schema_pg.DATA_TABLES)
                if holding:  # another process wrote to it since it was looked at: it is theirs now
                    drop = False
                    raise _not_empty(where, holding)
                copied = _fill(stx, ttx, raw, where, verify, progress, batch_rows)
            except BaseException:
                _abandon_if_busy(raw)
                raise
    except BaseException:
        if target is not None:
            target.close()
        if drop:
            _drop_schema(control)
        raise
    target.close()
    return copied


def _fill(
    stx: Tx, ttx: Tx, raw: psycopg.Connection, where: str, verify: Callable[[Tx, Tx], None], progress: Progress | None, batch_rows: int,
) -> dict[str, int]:
    """Copy every table inside the target's (locked, empty) transaction, set its sequences, verify; the rows per table."""
    tables = _plan(stx, raw, where)
    on_sqlite = isinstance(stx.conn, sqlite3.Connection)
    if on_sqlite:
        for table in tables:
            _check_types(stx.conn, table)  # type: ignore[arg-type]
    for name in FRESH_ROWS:
        raw.execute(f"DELETE FROM {name}")
    copied: dict[str, int] = {}
    total, done = sum(table.rows for table in tables), 0
    for table in tables:
        copied[table.name] = _copy_table(stx, raw, table, where, batch_rows, done, total, progress)
        done += copied[table.name]
    _set_sequences(raw, _source_counters(stx, on_sqlite))
    verify(stx, ttx)
    return copied


def _plan(stx: Tx, raw: psycopg.Connection, where: str) -> list[Table]:
    """Every data table with the target's columns and key, checked against the source's columns, and its row count."""
    plan = []
    for name in schema_pg.DATA_TABLES:
        columns = tuple(Column(*row) for row in raw.execute(
            "SELECT column_name, data_type, is_nullable = 'YES' FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = %s ORDER BY ordinal_position", (name,),
        ).fetchall())
        key = tuple(row[0] for row in raw.execute(
            "SELECT a.attname FROM pg_index AS i CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n) "
            "JOIN pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = k.attnum "
            "WHERE i.indrelid = to_regclass(%s) AND i.indisprimary ORDER BY k.n", (name,),
        ).fetchall())
        unknown = [column.type for column in columns if column.type not in COPY_TYPES]
        if unknown:
            raise StorageError(f"cannot copy table {name}: its column type {unknown[0]} on {where} is not one tqcli's schema uses")
        theirs = _source_columns(stx, name)
        if set(theirs) != {column.name for column in columns}:
            raise StorageError(
                f"cannot copy table {name}: the source has columns {', '.join(sorted(theirs))} and {where} "
                f"{', '.join(sorted(column.name for column in columns))}; nothing was written (are both at schema {schema_pg.SCHEMA_VERSION}?)"
            )
        rows = stx.conn.execute(f"SELECT count(*) FROM {name}").fetchone()[0]  # type: ignore[index]
        plan.append(Table(name, columns, key or tuple(column.name for column in columns), rows))
    return plan


def _source_columns(stx: Tx, table: str) -> list[str]:
    if isinstance(stx.conn, sqlite3.Connection):
        return [row[1] for row in stx.conn.execute(f'PRAGMA table_info("{table}")').fetchall()]
    sql = "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = ?"
    return [row[0] for row in stx.conn.execute(sql, (table,)).fetchall()]


def _check_types(conn: sqlite3.Connection, table: Table) -> None:
    """StorageError naming the first value of `table` (on SQLite) that its PostgreSQL column cannot take as it is."""
    doubts = []
    for column in table.columns:
        name = f'"{column.name}"'
        allowed = _SQLITE_TYPES[column.type] + (", 'null'" if column.nullable else "")
        doubt = f"typeof({name}) NOT IN ({allowed})"
        if column.type == "integer":
            doubt += f" OR (typeof({name}) = 'integer' AND {name} NOT BETWEEN {INT4_MIN} AND {INT4_MAX})"
        elif column.type == "text":
            doubt += f" OR (typeof({name}) = 'text' AND instr(CAST({name} AS BLOB), x'00') > 0)"
        doubts.append((column, doubt))
    where = " OR ".join(f"({doubt})" for _, doubt in doubts)
    cases = " ".join(f"WHEN {doubt} THEN {index}" for index, (_, doubt) in enumerate(doubts))
    keys = ", ".join(f'"{key}"' for key in table.key)
    sql = f"SELECT CASE {cases} END, {keys} FROM {table.name} WHERE {where} ORDER BY {keys} LIMIT 1"
    found = conn.execute(sql).fetchone()
    if found is None:
        return
    column = table.columns[found[0]]
    key_text = ", ".join(f"{key}={value!r}" for key, value in zip(table.key, found[1:]))
    kind, value = conn.execute(
        f'SELECT typeof("{column.name}"), "{column.name}" FROM {table.name} WHERE '
        + " AND ".join(f'"{key}" = ?' for key in table.key), found[1:],
    ).fetchone()
    shown = value.hex() if isinstance(value, bytes) else value
    raise StorageError(
        f"cannot copy table {table.name}, row {key_text}: column {column.name} holds {_describe_value(kind, shown)}, "
        f"where PostgreSQL needs {_NEEDS[column.type]}{'' if column.nullable else ' (not null)'}; "
        "nothing was copied: correct that value in the source (a hand edit?) and run migrate again"
    )


def _describe_value(kind: str, value: Any) -> str:
    text = repr(value)
    if len(text) > 40:
        text = text[:39] + "…"
    names = {"integer": "the integer", "real": "the real number", "text": "the text", "blob": "a blob, hex", "null": "NULL"}
    return "NULL" if kind == "null" else f"{names.get(kind, kind)} {text}"


def _batches(stx: Tx, table: Table, size: int) -> Iterator[list[tuple[Any, ...]]]:
    """The table's rows in key order, `size` at a time, from the source's snapshot."""
    order = ", ".join(f'"{key}"' for key in table.key)
    sql = f"SELECT {table.select_list} FROM {table.name} ORDER BY {order}"
    if isinstance(stx.conn, sqlite3.Connection):
        cursor: Any = stx.conn.execute(sql)
    else:  # a server-side cursor: never the whole table in memory
        cursor = stx.conn.raw.cursor(name=f"copy_{table.name}_{secrets.token_hex(4)}")  # type: ignore[attr-defined]
        cursor.execute(sql)
    try:
        while True:
            rows = cursor.fetchmany(size)
            if not rows:
                return
            yield rows
    finally:
        cursor.close()


def _copy_table(
    stx: Tx, raw: psycopg.Connection, table: Table, where: str, size: int, done: int, total: int, progress: Progress | None
) -> int:
    """COPY one table's rows into the target; how many."""
    count = 0
    if progress is not None:
        progress(done, total, table.name)
    row: tuple[Any, ...] = ()
    try:
        with raw.cursor().copy(f"COPY {table.name} ({table.select_list}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types([COPY_TYPES[column.type] for column in table.columns])
            for rows in _batches(stx, table, size):
                for row in rows:
                    copy.write_row(row)
                count += len(rows)
                if progress is not None:
                    progress(done + count, total, table.name)
    except (psycopg.DataError, psycopg.IntegrityError) as exc:
        detail = exc.diag.message_detail
        raise StorageError(
            f"cannot copy table {table.name} into {where}: {exc.diag.message_primary or exc}"
            + (f" ({detail.rstrip('.')})" if detail else "")
            + "; nothing was copied: correct that row in the source (a hand edit?) and run migrate again"
        ) from None
    except psycopg.Error as exc:
        raise describe(exc, where) from None
    except (TypeError, ValueError, OverflowError) as exc:  # a value the checks above let through
        key_text = ", ".join(f"{column.name}={value!r}" for column, value in zip(table.columns, row) if column.name in table.key)
        raise StorageError(f"cannot copy table {table.name}, row {key_text}: {exc}; nothing was copied") from None
    return count


@dataclass(frozen=True)
class Counters:
    """The highest numbers the source ever handed out (deleted rows included), 0 for none."""

    task_id: int
    dag_id: int
    claim: int


def _source_counters(stx: Tx, on_sqlite: bool) -> Counters:
    conn: Any = stx.conn
    if on_sqlite:
        used = dict(conn.execute("SELECT name, seq FROM sqlite_sequence").fetchall())
        claim = conn.execute("SELECT value FROM counters WHERE name = 'claim'").fetchone()
        return Counters(int(used.get("tasks") or 0), int(used.get("dags") or 0), int(claim[0]) if claim else 0)

    def last(sequence: str) -> int:
        value, called = conn.raw.execute(f"SELECT last_value, is_called FROM {sequence}").fetchone()
        return int(value) if called else int(value) - 1

    dags = conn.raw.execute("SELECT pg_get_serial_sequence('dags', 'id')").fetchone()[0]
    return Counters(last("tasks_id_seq"), last(dags), last("claim_seq"))


def _set_sequences(raw: psycopg.Connection, used: Counters) -> None:
    """Every sequence of the target past the highest number the source handed out or any row names."""
    task_id = raw.execute(
        "SELECT greatest(%s, (SELECT max(id) FROM tasks), (SELECT max(restarted_from) FROM tasks), "
        "(SELECT max(id) FROM purged_tasks), (SELECT max(depends_on) FROM task_deps), (SELECT max(task_id) FROM audit), "
        "(SELECT max(task_id) FROM schedule_fires), (SELECT max(trial_task) FROM breakers))", (used.task_id,),
    ).fetchone()[0]  # type: ignore[index]
    dag_id = raw.execute(
        "SELECT greatest(%s, (SELECT max(id) FROM dags), (SELECT max(dag_id) FROM tasks), (SELECT max(dag_id) FROM purged_tasks))",
        (used.dag_id,),
    ).fetchone()[0]  # type: ignore[index]
    claim = raw.execute(
        "SELECT greatest(%s, (SELECT max(value) FROM counters WHERE name = 'claim'), (SELECT max(claim) FROM tasks), "
        "(SELECT max(claim) FROM attempts))", (used.claim,),
    ).fetchone()[0]  # type: ignore[index]
    for sequence, value in (("'tasks_id_seq'", task_id), ("pg_get_serial_sequence('dags', 'id')", dag_id), ("'claim_seq'", claim)):
        if value and value > 0:
            raw.execute(f"SELECT setval({sequence}, %s)", (value,))


def _drop_schema(control: psycopg.Connection) -> None:
    """Drop the tables and sequences a failed copy created, leaving the target as it was; best effort."""
    try:
        with control.transaction():
            control.execute(f"DROP TABLE IF EXISTS {', '.join(sorted(KNOWN_TABLES))} CASCADE")
            control.execute(f"DROP SEQUENCE IF EXISTS {', '.join(SEQUENCES)}")
    except psycopg.Error:
        pass  # an empty tqcli schema is left: still an empty target
