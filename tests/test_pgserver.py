"""The PostgreSQL the tests run against: tests/pgserver.py and the conftest fixtures on it.

Nothing here skips: without PostgreSQL the run stops in conftest's
pytest_configure, saying why.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from tests import pgserver
from tests.conftest import REPO


def _scalar(url: str, query: str, *params: object) -> object:
    with psycopg.connect(url) as conn:
        return conn.execute(query, params).fetchone()[0]


def test_the_server_is_postgresql_15_or_newer(pg_admin_url: str) -> None:
    version = str(_scalar(pg_admin_url, "SELECT version()"))
    major = int(re.match(r"PostgreSQL (\d+)", version).group(1))
    assert major >= 15, version
    assert int(_scalar(pg_admin_url, "SHOW server_version_num")) >= 150000


@pytest.mark.parametrize("turn", ["first", "second"])
def test_each_test_gets_an_empty_database_of_its_own(pg_url: str, pg_admin_url: str, turn: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        name = conn.execute("SELECT current_database()").fetchone()[0]
        tables = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables"
            " WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
        ).fetchall()
        assert tables == []  # so the other turn's table, made below, is not here either
        conn.execute("CREATE TABLE left_behind (id int)")
    assert name != "postgres" and turn in name
    # every database this process made for an earlier test is gone: names are not reused, and nothing leaks
    prefix = f"tqcli_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}_{os.getpid()}_"  # as pg_database_name makes them
    assert name.startswith(prefix)
    ours = _scalar(pg_admin_url, "SELECT array_agg(datname) FROM pg_database WHERE starts_with(datname, %s)", prefix)
    assert ours == [name]


def test_a_database_with_open_connections_is_dropped(pg_admin_url: str) -> None:
    name = pgserver.create_database(pg_admin_url, "tqcli_drop_open_" + str(os.getpid())).rsplit("/", 1)[1]
    url = pgserver.database_url(pg_admin_url, name)
    idle = psycopg.connect(url)
    busy = psycopg.connect(url)
    try:
        busy.execute("BEGIN; CREATE TABLE t (id int)")  # a transaction left open as well
        pgserver.drop_database(pg_admin_url, name)
        assert _scalar(pg_admin_url, "SELECT count(*) FROM pg_database WHERE datname = %s", name) == 0
        with pytest.raises(psycopg.OperationalError):
            idle.execute("SELECT 1")
    finally:
        idle.close()
        busy.close()
    pgserver.drop_database(pg_admin_url, name)  # dropping what is gone is no error


def test_a_database_is_created_from_a_template(pg_admin_url: str) -> None:
    stem = f"tqcli_tpl_{os.getpid()}"
    template_url = pgserver.create_database(pg_admin_url, stem + "_template")
    try:
        with psycopg.connect(template_url, autocommit=True) as conn:
            conn.execute("CREATE TABLE schema_marker (id int PRIMARY KEY); INSERT INTO schema_marker VALUES (7)")
        copy_url = pgserver.create_database(pg_admin_url, stem + "_copy", template=stem + "_template")
        try:
            assert _scalar(copy_url, "SELECT id FROM schema_marker") == 7
        finally:
            pgserver.drop_database(pg_admin_url, stem + "_copy")
    finally:
        pgserver.drop_database(pg_admin_url, stem + "_template")


def _postmaster_pid(server: pgserver.Server) -> int:
    return int((server.base / "data" / "postmaster.pid").read_text().split()[0])


def test_a_started_server_is_tuned_for_tests_and_leaves_nothing() -> None:
    server = pgserver.start()
    try:
        settings = {name: str(_scalar(server.url, f"SHOW {name}")) for name in (
            "fsync", "synchronous_commit", "full_page_writes", "autovacuum", "listen_addresses", "max_connections",
            "TimeZone",
        )}
        assert settings == {
            "fsync": "off", "synchronous_commit": "off", "full_page_writes": "off", "autovacuum": "off",
            "listen_addresses": "127.0.0.1", "max_connections": "200", "TimeZone": "UTC",
        }
        assert server.url == f"postgresql://tqcli@127.0.0.1:{server.port}/postgres"
        assert _scalar(server.url, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user") is True
        if os.geteuid() == 0:  # initdb and postgres refuse root
            assert server.base.stat().st_uid != 0
        pid = _postmaster_pid(server)
    finally:
        server.stop()
    assert not server.base.exists()
    assert server.process.poll() is not None and not Path(f"/proc/{pid}").exists()
    server.stop()  # a second stop is harmless


def _run_script() -> tuple[subprocess.Popen, str, Path]:
    """`python tests/pgserver.py` started, with the URL it printed and its folder."""
    script = subprocess.Popen(
        [sys.executable, str(REPO / "tests" / "pgserver.py")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
    )
    url = script.stdout.readline().strip()
    note = script.stderr.readline()
    assert url.startswith("postgresql://tqcli@127.0.0.1:"), (url, note, script.stderr.read() if not url else "")
    base = Path(re.search(r"files in (\S+)\)", note).group(1))
    return script, url, base


def test_the_script_serves_until_sigterm_and_cleans_up() -> None:
    script, url, base = _run_script()
    try:
        assert _scalar(url, "SELECT 1") == 1
        assert base.is_dir()
    finally:
        script.send_signal(signal.SIGTERM)
        assert script.wait(30) == 0
    assert not base.exists()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=2)


def test_the_server_does_not_outlive_a_killed_parent() -> None:
    script, url, base = _run_script()
    try:
        assert _scalar(url, "SELECT 1") == 1
        script.kill()  # no finally, no atexit: only the parent-death signal stops the server
        script.wait(10)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                psycopg.connect(url, connect_timeout=2).close()
            except psycopg.OperationalError:
                break
            time.sleep(0.05)
        else:
            pytest.fail(f"the server at {url} still answers after its parent was killed")
        while (base / "data" / "postmaster.pid").exists() and time.monotonic() < deadline:
            time.sleep(0.05)  # the postmaster removes it last, as it exits
        assert not (base / "data" / "postmaster.pid").exists(), "the postmaster did not exit after its parent was killed"
    finally:
        script.kill()
        shutil.rmtree(base, ignore_errors=True)  # a later start sweeps it too; not this test's to leave
