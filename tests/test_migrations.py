"""Schema upgrades: a frozen database of the first schema opens and upgrades intact."""

import shutil
import sqlite3

import pytest

import tqcli
from tests.conftest import REPO
from tqcli.store import schema

# SQLite's migration chain from schema 1; PostgreSQL starts at schema 6.
pytestmark = pytest.mark.sqlite_only

FROZEN = REPO / "tests" / "data" / "schema-v1.db"


def test_the_frozen_first_schema_is_version_1():
    conn = sqlite3.connect(f"file:{FROZEN}?mode=ro", uri=True)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    conn.close()


def test_frozen_v1_database_upgrades_through_every_migration(tmp_path):
    copy = tmp_path / "old.db"
    shutil.copy(FROZEN, copy)
    with tqcli.open(copy) as queue:
        assert queue.audit.verify().count == 4
        extract, load, echo = (queue.get(i) for i in (1, 2, 3))
        assert (extract.queue, extract.priority, extract.payload_value) == ("etl", 5, {"day": "2026-06-01"})
        assert load.depends_on == [1] and load.idempotency_key == "load-2026-06-01"
        assert echo.state.value == "cancelled" and echo.error == "cancelled by frozen: frozen fixture"
        new_id = queue.submit("app.jobs:run")
        assert new_id == 4
        assert queue.audit.verify().count == 5
    conn = sqlite3.connect(copy)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == schema.SCHEMA_VERSION
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()


def _database_at_schema(path, version):
    """A database built by the first `version` migrations, as that tqcli left it."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    for step in schema.MIGRATIONS[:version]:
        for statement in step:
            conn.execute(statement)
    conn.execute(f"PRAGMA application_id = {schema.APPLICATION_ID}")
    conn.execute("INSERT INTO meta (key, value) VALUES ('db_id', 'test')")
    conn.execute(f"PRAGMA user_version = {version}")
    return conn


def _insert_running_task(conn, task_id, token):
    conn.execute(
        "INSERT INTO tasks (id, name, queue, tenant, backend, target, payload, priority, state, attempts, max_retries, "
        "backoff, run_at, service, created_at, submitted_by, lease_token, lease_until, worker, started_at) "
        "VALUES (?, 'job', 'default', 'default', 'simple', 'tests.jobs:add', '{}', 0, 'running', 2, 3, 0, 0, "
        "'simple:tests.jobs:add', 0, 'old', ?, 1, 'old-worker', 5)",
        (task_id, token),
    )


def test_version_4_tokens_become_claim_numbers(tmp_path):
    path = tmp_path / "v4.db"
    conn = _database_at_schema(path, 4)
    _insert_running_task(conn, 3, 7 * 2**32 + 3)
    conn.execute(
        "INSERT INTO attempts (id, task_id, attempt, token, worker, started_at, finished_at, outcome, error) "
        "VALUES (?, 3, 1, ?, 'old-worker', 1, 2, 'failed', 'boom')",
        (5 * 2**32 + 3, 5 * 2**32 + 3),
    )
    conn.close()
    with tqcli.open(path) as queue:
        assert [(a.attempt, a.outcome, a.error) for a in queue.get(3).history][0] == (1, "failed", "boom")
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT claim, typeof(claim) FROM tasks").fetchone() == (7, "integer")
    assert conn.execute("SELECT task_id, claim FROM attempts").fetchall() == [(3, 5)]
    conn.close()


def test_an_older_worker_still_running_during_the_upgrade_fails_instead_of_writing(tmp_path):
    path = tmp_path / "v4.db"
    _database_at_schema(path, 4).close()
    old_worker = sqlite3.connect(path, isolation_level=None)  # opened before the upgrade, as a running worker's is
    old_worker.execute("SELECT count(*) FROM tasks").fetchone()
    tqcli.open(path).close()  # a newer tqcli upgrades the database
    old_statements = [  # what a version-4 worker runs to renew, complete, retry and claim
        "UPDATE tasks SET lease_until = 1 WHERE state = 'running' AND lease_token IN (1)",
        "UPDATE tasks SET state = 'completed', lease_token = NULL WHERE id = 1 AND lease_token = 1",
        "UPDATE tasks SET state = 'pending', lease_token = NULL WHERE id = 1 AND lease_token = 1",
        "UPDATE tasks SET state = 'running', lease_token = 2 * 4294967296 + id WHERE id = 1",
        "INSERT INTO attempts (id, task_id, attempt, token, worker, started_at) VALUES (1, 1, 1, 1, 'w', 0)",
    ]
    for statement in old_statements:
        with pytest.raises(sqlite3.OperationalError, match="lease_token|has no column named (id|token)"):
            old_worker.execute(statement)
    old_worker.close()


@pytest.mark.parametrize("counter", [2**31 - 2, 2**32 + 5, 2**62])
def test_claims_past_the_old_token_limit_work(tmp_path, counter):
    path = tmp_path / "tq.db"
    with tqcli.open(path) as queue:
        first, second = queue.submit("tests.jobs:add", payload={"a": 1, "b": 2}), queue.submit("tests.jobs:add", payload={"a": 2, "b": 2})
    conn = sqlite3.connect(path)
    conn.execute("UPDATE counters SET value = ? WHERE name = 'claim'", (counter,))
    conn.commit()
    conn.close()
    with tqcli.open(path) as queue:
        queue.drain()
        queue.submit("tests.jobs:add", payload={"a": 3, "b": 2})
        queue.drain(concurrency=2)
        assert [queue.get(i).result_value for i in (first, second, 3)] == [3, 4, 5]
    conn = sqlite3.connect(path)
    claims = conn.execute("SELECT claim, typeof(claim) FROM attempts ORDER BY claim").fetchall()
    conn.close()
    assert all(kind == "integer" and claim > counter for claim, kind in claims)


def test_version_5_attempts_are_numbered_into_runs(tmp_path):
    """A task replayed before schema 6 (attempts 1 2 3 1 2) reads as run 1 (1 2 3) and run 2 (1 2)."""
    path = tmp_path / "v5.db"
    conn = _database_at_schema(path, 5)
    conn.execute(
        "INSERT INTO tasks (id, name, queue, tenant, backend, target, payload, priority, state, attempts, max_retries, "
        "backoff, run_at, service, created_at, submitted_by, finished_at) VALUES (4, 'job', 'default', 'default', "
        "'simple', 'tests.jobs:boom', '{}', 0, 'failed', 2, 2, 0, 0, 'simple:tests.jobs:boom', 0, 'old', 9)"
    )
    for claim, attempt in enumerate([1, 2, 3, 1, 2], start=10):
        conn.execute(
            "INSERT INTO attempts (task_id, claim, attempt, worker, started_at, finished_at, outcome, error) "
            "VALUES (4, ?, ?, 'w', ?, ?, 'failed', 'boom')",
            (claim, attempt, claim, claim),
        )
    conn.close()
    with tqcli.open(path) as queue:
        task = queue.get(4)
        assert [(a.run, a.attempt) for a in task.history] == [(1, 1), (1, 2), (1, 3), (2, 1), (2, 2)]
        assert task.run == 2 and task.expires_at is None and task.cwd is None


def test_the_roles_user_column_is_renamed_for_postgresql(tmp_path):
    path = tmp_path / "v5roles.db"
    conn = _database_at_schema(path, 5)
    conn.execute("INSERT INTO roles (user, role, tenant) VALUES ('alice', 'admin', '')")
    conn.close()
    tqcli.open(path).close()
    conn = sqlite3.connect(path)
    assert [row[1] for row in conn.execute("PRAGMA table_info(roles)")][:1] == ["user_name"]
    assert conn.execute("SELECT user_name, role FROM roles").fetchall() == [("alice", "admin")]
    conn.close()
