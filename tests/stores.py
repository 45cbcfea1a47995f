"""Both stores for one test suite: the `store_kind` parameter and what it opens.

A test that asks for `db_location` (directly, or through `queue`) runs once
on SQLite and once on PostgreSQL. One that also asks for `db_path` pokes
at the SQLite file itself and runs on SQLite alone, as does one marked
`sqlite_only` (say why in its docstring). `raw_sql` changes a database
behind tqcli's back, as an operator with the sqlite3 shell or psql would.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tqcli.store import is_url

STORES = ("sqlite", "postgres")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "store_kind" not in metafunc.fixturenames:
        return
    if any("store_kind" in str(mark.args[0]) for mark in metafunc.definition.iter_markers("parametrize")):
        return  # the test names its stores itself
    stores = list(STORES)
    if metafunc.definition.get_closest_marker("sqlite_only") or "db_path" in metafunc.fixturenames:
        stores = ["sqlite"]
    elif metafunc.definition.get_closest_marker("postgres_only"):
        stores = ["postgres"]
    metafunc.parametrize("store_kind", stores, scope="function")


@pytest.fixture
def db_location(store_kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Path | str:
    """Where the test's database lives: a file path that does not exist yet, or the URL of an empty PostgreSQL database."""
    if store_kind == "sqlite":
        return tmp_path / "tq.db"
    return request.getfixturevalue("pg_url")


def raw_sql(location: Path | str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run statements on the database directly (no tqcli), committed at once; the last one's rows.

    Written with `?` placeholders for both stores; several statements are
    separated by `; ` (and then take no parameters).
    """
    statements = [part for part in sql.split("; ") if part.strip()]
    if not is_url(str(location)):
        conn = sqlite3.connect(location, isolation_level=None)
        try:
            rows: list[tuple[Any, ...]] = []
            for statement in statements:
                rows = conn.execute(statement, params).fetchall()
            return rows
        finally:
            conn.close()
    import psycopg

    with psycopg.connect(str(location), autocommit=True) as conn:
        rows = []
        for statement in statements:
            cursor = conn.execute(statement.replace("?", "%s"), params)
            rows = cursor.fetchall() if cursor.description else []
        return rows


def table_dump(location: Path | str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table: the database's logical contents, for 'nothing changed' checks."""
    if not is_url(str(location)):
        db = Path(location)
        if not db.exists():
            return {}
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            names = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
            return {name: conn.execute(f'SELECT * FROM "{name}" ORDER BY 1').fetchall() for name in names}
        finally:
            conn.close()
    names = [row[0] for row in raw_sql(location, "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY 1")]
    return {name: raw_sql(location, f'SELECT * FROM "{name}" ORDER BY 1') for name in names}


def psql(location: str, sql: str) -> str:
    """Run SQL with the psql shell, as an operator would by hand; its output."""
    binary = shutil.which("psql")
    assert binary, "psql is missing: scripts/ensure-tools installs PostgreSQL's client"
    done = subprocess.run([binary, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", location, "-c", sql], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def has_database(location: Path | str) -> bool:
    """Whether tqcli made its database there: the file exists, or the PostgreSQL database has tables."""
    if not is_url(str(location)):
        return Path(location).exists()
    return bool(raw_sql(location, "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()")[0][0])
