"""Opening the database file: creation, WAL, refusals that leave the file untouched."""

import hashlib
import os
import sqlite3

import pytest

from tests.conftest import REPO, on_read_only_folder, read_only_mount_works
from tqcli.errors import StorageError
from tqcli.store import schema
from tqcli.store.sqlite import SqliteStore, filesystem_type

# The SQLite file itself (pragmas, WAL, foreign files, permissions).
pytestmark = pytest.mark.sqlite_only


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_new_database_is_created_with_its_folder_in_wal_mode(tmp_path):
    path = tmp_path / "deep" / "er" / "tq.db"
    store = SqliteStore(path)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == schema.SCHEMA_VERSION
    assert conn.execute("PRAGMA application_id").fetchone()[0] == schema.APPLICATION_ID
    store.close()


def test_connection_uses_foreign_keys_and_no_implicit_transactions(tmp_path):
    store = SqliteStore(tmp_path / "tq.db", busy_timeout=3)
    conn = store._conn
    assert conn.isolation_level is None
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 3000
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    store.close()


def test_synchronous_full_is_a_setting(tmp_path):
    store = SqliteStore(tmp_path / "tq.db", synchronous="full")
    assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == 2
    store.close()


def test_write_rolls_back_everything_on_error(tmp_path):
    store = SqliteStore(tmp_path / "tq.db")
    with pytest.raises(RuntimeError):
        with store.write() as tx:
            tx.conn.execute("INSERT INTO meta (key, value) VALUES ('x', 'y')")
            raise RuntimeError("boom")
    with store.read() as tx:
        assert tx.meta_value("x") is None
    store.close()


def test_database_from_a_newer_tqcli_is_refused_untouched(tmp_path):
    path = tmp_path / "tq.db"
    SqliteStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {schema.SCHEMA_VERSION + 1}")
    conn.execute("PRAGMA journal_mode = DELETE")
    conn.close()
    before = digest(path)
    with pytest.raises(StorageError, match="newer tqcli .* upgrade tqcli"):
        SqliteStore(path)
    assert digest(path) == before


@pytest.mark.parametrize("content", [b"this is not a database at all" * 100, b"SQLite format 3\x00" + b"\xff" * 4000])
def test_corrupt_file_is_refused_and_left_byte_for_byte(tmp_path, content):
    path = tmp_path / "tq.db"
    path.write_bytes(content)
    with pytest.raises(StorageError, match="corrupt or not a SQLite database.*restore it from a backup"):
        SqliteStore(path)
    assert path.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tq.db"]


def test_another_programs_database_is_not_touched(tmp_path):
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE invoices (id INTEGER)")
    conn.commit()
    conn.close()
    before = digest(path)
    with pytest.raises(StorageError, match="another program"):
        SqliteStore(path)
    assert digest(path) == before


def test_an_empty_file_becomes_a_database(tmp_path):
    path = tmp_path / "tq.db"
    path.touch()
    SqliteStore(path).close()
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == schema.SCHEMA_VERSION


def test_a_folder_in_place_of_the_file_is_refused(tmp_path):
    with pytest.raises(StorageError, match="not a file"):
        SqliteStore(tmp_path)


@pytest.mark.parametrize("fs_type", ["nfs4", "cifs"])
def test_a_network_filesystem_is_refused_before_anything_is_written(tmp_path, fs_type):
    mounts = tmp_path / "mounts"
    mounts.write_text(f"server:/export {tmp_path} {fs_type} rw 0 0\n")
    with pytest.raises(StorageError, match=f"{fs_type} filesystem, where SQLite's WAL cannot work.*local disk"):
        SqliteStore(tmp_path / "tq.db", mounts_file=str(mounts))
    assert not (tmp_path / "tq.db").exists()


def test_filesystem_type_picks_the_longest_mount_point(tmp_path):
    mounts = tmp_path / "mounts"
    mounts.write_text(f"/dev/vda / ext4 rw 0 0\ntmpfs {tmp_path} tmpfs rw 0 0\n")
    assert filesystem_type(tmp_path / "x.db", str(mounts)) == "tmpfs"
    assert filesystem_type(tmp_path.parent, str(mounts)) == "ext4"


@pytest.mark.skipif(not read_only_mount_works(), reason="needs root and unshare --mount for a read-only filesystem")
def test_read_only_database_reads_but_refuses_writes(tmp_path):
    import sys

    path = tmp_path / "tq.db"
    SqliteStore(path).close()
    code = f"""
from tests.conftest import REPO, on_read_only_folder, read_only_mount_works
from tqcli.errors import StorageError
from tqcli.store.sqlite import SqliteStore
store = SqliteStore({str(path)!r})
assert store.read_only
with store.read() as tx:
    assert tx.meta_value("db_id")
try:
    with store.write() as tx:
        pass
except StorageError as exc:
    assert "read-only" in exc.message, exc.message
    print("refused")
"""
    result = on_read_only_folder(tmp_path, [sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(REPO)})
    assert (result.code, result.stdout) == (0, "refused\n"), result.stderr


def test_processes_creating_the_database_at_once_all_succeed(tmp_path):
    import subprocess
    import sys

    import time

    for round in range(4):
        path = tmp_path / f"race-{round}.db"
        start = time.time() + 1.0  # every racer opens at the same moment, imports done
        code = (
            "import time; from tqcli.store.sqlite import SqliteStore; "
            f"time.sleep(max(0, {start} - time.time())); SqliteStore({str(path)!r}).close()"
        )
        racers = [subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True) for _ in range(10)]
        for racer in racers:
            _, err = racer.communicate(timeout=60)
            assert racer.returncode == 0, err
        assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == schema.SCHEMA_VERSION


READING_COMMANDS = [
    ["status"], ["status", "1"], ["status", "--json"], ["audit", "verify"], ["audit", "log"], ["dlq", "list"],
    ["schedule", "list"], ["schedule", "next", "nightly"], ["breaker", "list"], ["dag", "list"],
    ["logs", "1"], ["logs", "1", "--json"], ["metrics"], ["cancel", "--all", "--dry-run"],
]


def _fingerprint(path):
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns


def test_reading_commands_never_write(cli):
    cli.submit("tests.jobs:noop")
    cli.ok("schedule", "add", "nightly", "--cron", "0 3 * * *", "tests.jobs:noop")
    cli.ok("worker", "--once")
    before = _fingerprint(cli.db)
    for args in READING_COMMANDS:
        cli.ok(*args)
    assert _fingerprint(cli.db) == before
    assert not (cli.db.parent / f"{cli.db.name}-wal").exists() or (cli.db.parent / f"{cli.db.name}-wal").stat().st_size == 0


def test_reading_an_older_schema_changes_nothing_and_names_the_upgrade(cli):
    from tests.test_migrations import _database_at_schema

    _database_at_schema(cli.db, 4).close()
    before = _fingerprint(cli.db)
    for args in (["status"], ["audit", "verify"], ["dlq", "list"]):
        result = cli(*args)
        assert result.code == 7, (args, result.stderr)
        assert "uses schema 4" in result.error_lines[0] and "'tqcli worker --once'" in result.error_lines[0]
    assert _fingerprint(cli.db) == before
    conn = sqlite3.connect(cli.db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 4
    conn.close()


def test_an_empty_file_is_no_database_for_commands_that_do_not_create_one(cli):
    cli.db.write_bytes(b"")
    for args in (["status"], ["audit", "verify"], ["cancel", "1"], ["worker", "--once"]):
        result = cli(*args)
        assert result.code == 3, (args, result.stderr)
        assert "no database at" in result.error_lines[0]
    assert cli.db.stat().st_size == 0
    cli.submit("tests.jobs:noop")  # a command that adds work makes it a database
    assert cli.task(1)["state"] == "pending"
