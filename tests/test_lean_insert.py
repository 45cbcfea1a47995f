"""Rows inserted with NULL written in the statement land as a plain INSERT would put them, on both stores."""

from __future__ import annotations

import sqlite3

import pytest

from tests.stores import raw_sql
from tqcli.core.spec import TaskSpec
from tqcli.store.lean_insert import LeanInsert

COLUMNS = ("id", "name", "note", "size")


@pytest.fixture
def conn():
    connection = sqlite3.connect(":memory:")
    connection.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT NOT NULL, note TEXT DEFAULT 'unset', size REAL)")
    yield connection
    connection.close()


def stored(conn):
    return conn.execute("SELECT * FROM t ORDER BY id").fetchall()


@pytest.mark.parametrize("optional", [("note",), ("note", "size")])
@pytest.mark.parametrize(
    "rows",
    [
        [(1, "a", None, None), (2, "b", None, None)],  # every optional column empty: the lean statement
        [(1, "a", None, None), (2, "b", "x", 2.5), (3, "c", None, 1.0)],  # some given: every value bound
    ],
    ids=["all-empty", "mixed"],
)
def test_rows_land_as_a_plain_insert_puts_them(conn, optional, rows):
    LeanInsert("t", COLUMNS, optional).run(conn, iter(rows))  # an iterator is read once into a list
    # NULL, not the column's default: a written NULL is what a bound None stores.
    assert stored(conn) == rows


def test_the_lean_statement_writes_null_only_for_the_optional_columns():
    insert = LeanInsert("t", COLUMNS, ("note", "size"), suffix=" ON CONFLICT DO NOTHING")
    assert insert.lean == "INSERT INTO t (id, name, note, size) VALUES (?, ?, NULL, NULL) ON CONFLICT DO NOTHING"
    assert insert.full == "INSERT INTO t (id, name, note, size) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING"


def test_an_optional_column_the_table_lacks_is_refused():
    with pytest.raises(ValueError, match="optional columns"):
        LeanInsert("t", COLUMNS, ("colour",))


def test_no_rows_run_no_statement():
    class Refusing:
        def executemany(self, sql, rows):
            raise AssertionError("no statement for no rows")

    LeanInsert("t", COLUMNS, ("note",)).run(Refusing(), [])


def test_a_bulk_submit_mixing_plain_and_optioned_tasks_keeps_every_value(queue, db_location):
    # Through the store: the plain tasks go lean, the batch with options binds them all; both kinds land whole.
    plain = TaskSpec("tests.jobs:noop")
    optioned = TaskSpec("echo hi", backend="shell", timeout=30, idempotency_key="k-1", expires=60, cwd="/tmp", env={"A": "1"})
    ids = queue.submit_many([plain, optioned, plain])
    rows = raw_sql(
        db_location,
        "SELECT id, timeout, idempotency_key, expires_at IS NOT NULL, cwd, env, dag_id, restarted_from FROM tasks ORDER BY id",
    )
    assert rows == [
        (ids[0], None, None, False, None, None, None, None),
        (ids[1], 30.0, "k-1", True, "/tmp", '{"A": "1"}', None, None),
        (ids[2], None, None, False, None, None, None, None),
    ]
    [lone] = queue.submit_many([plain])
    assert raw_sql(db_location, "SELECT timeout, cwd, env FROM tasks WHERE id = ?", (lone,)) == [(None, None, None)]


def test_one_kept_column_and_one_optional_column_are_still_rows(conn):
    conn.execute("CREATE TABLE pair (id INTEGER PRIMARY KEY, note TEXT)")
    insert = LeanInsert("pair", ("id", "note"), ("note",))
    insert.run(conn, [(1, None), (2, None)])
    insert.run(conn, [(3, "x"), (4, None)])
    assert conn.execute("SELECT * FROM pair ORDER BY id").fetchall() == [(1, None), (2, None), (3, "x"), (4, None)]
