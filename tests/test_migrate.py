"""`tqcli migrate --to URL`: a SQLite database copied into an empty PostgreSQL one, and everything that refuses.

The source is built once per module (tasks in every state, attempts, a DAG
with a purged task, a schedule and its fire, breakers, settings, roles,
queues, tenants, worker runs, and an audit chain longer than one batch) and
copied per test. Each test has its own empty PostgreSQL database (`pg_url`).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import psycopg
import pytest

from tests.test_dags import DIAMOND as DAG_TEMPLATE

import tqcli
from tests import pgserver
from tests.conftest import TQCLI, pg_database_name
from tqcli.clock import SystemClock
from tqcli.config import login_name
from tqcli.core.dags import load_dag_file
from tqcli.core.spec import TaskSpec
from tqcli.errors import Conflict, StorageError
from tqcli.store import copy as store_copy
from tqcli.store import schema_pg

# Every test here reads a SQLite file and writes a PostgreSQL database of its own.
pytestmark = pytest.mark.sqlite_only

BULK = 6000  # submitted and cancelled: the tasks table and the audit chain (12,000+ entries) span several batches
DIAMOND = DAG_TEMPLATE.format(right="tests.jobs:boom")


class Later:
    """The system clock two minutes ahead: a schedule's next fire is due for it."""

    def now(self) -> int:
        return SystemClock().now() + 120_000_000


def build_source(db: Path, folder: Path) -> dict[str, int]:
    """A database with something in every table; the ids of the tasks worth looking at by name."""
    ids: dict[str, int] = {}
    with tqcli.open(db) as q:
        bulk = q.submit_many([TaskSpec(target="tests.jobs:noop", name=f"bulk-{n}") for n in range(BULK)])
        q.cancel(*bulk, reason="too many")
        ids["cancelled"] = bulk[-1]
        ids["completed"] = q.submit("tests.jobs:add", payload={"a": 1, "b": 2}, name="adder", priority=5, timeout=2.5)
        ids["failed"] = q.submit("tests.jobs:boom", payload={"message": "nope"}, max_retries=0, service="flaky-api")
        ids["retried"] = q.submit("tests.jobs:boom", max_retries=1, backoff=0.0)
        ids["printed"] = q.submit("tests.jobs:say", payload={"text": "ünïcode output"}, name="printer")  # task_output gets rows
        q.breakers.configure("flaky-api", failure_threshold=1, recovery_timeout=3600)
        q.breakers.configure(None, recovery_timeout=600)
        q.drain()
        (folder / "dag.toml").write_text(DIAMOND)
        dag = q.dags.run(load_dag_file(folder / "dag.toml"))
        ids["dag"] = dag.id
        ids["purged_dag_task"] = dag.tasks["right"].id
        q.dlq.purge([dag.tasks["right"].id], confirmed=True)
        ids["blocked"] = q.submit("tests.jobs:noop", depends_on=[ids["failed"]], name="after-failed")
        ids["pending"] = q.submit("tests.jobs:add", payload={"a": 2, "b": 3}, name="to-run", queue="later", tenant="acme")
        ids["waits"] = q.submit("tests.jobs:add", payload={"a": 3, "b": 4}, depends_on=[ids["pending"]])
        ids["delayed"] = q.submit("tests.jobs:noop", delay=3600, expires=7200, idempotency_key="once")
        ids["orphan"] = q.submit("tests.jobs:noop", name="orphan")
        _, token = q.tokens.create("alice", name="ci", expires=86400)  # tokens gets a row; the database keeps only its hash
        (folder / "token.txt").write_text(token)
        q.schedules.add("every-minute", cron="* * * * *", options={"target": "tests.jobs:noop"})
        q.schedules.add("nightly", cron="0 2 * * *", tz="Europe/Berlin", options={"target": "tests.jobs:noop", "priority": 3})
    with tqcli.open(db, clock=Later()) as q:
        assert q.fire_schedules() == 1
    with tqcli.open(db) as q:
        ids["last"] = q.submit("tests.jobs:boom", max_retries=0, name="last")  # the highest id, purged below
        assert q.run_now(ids["last"]) == "failed"
        q.dlq.purge([ids["last"]], confirmed=True)
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        # A task left running by a worker that is gone (no holder to look up, its lease expired).
        claim = conn.execute("SELECT value + 1 FROM counters WHERE name = 'claim'").fetchone()[0]
        conn.execute("UPDATE counters SET value = ? WHERE name = 'claim'", (claim,))
        started = SystemClock().now() - 120_000_000
        conn.execute(
            "UPDATE tasks SET state = 'running', attempts = 1, started_at = ?, claim = ?, lease_until = ?, worker = 'gone:1' WHERE id = ?",
            (started, claim, started + 60_000_000, ids["orphan"]),
        )
        # Roles as the sqlite3 shell would leave them; the user running the tests is an admin, so it may migrate.
        grants = [("alice", "admin", ""), ("bob", "viewer", "acme"), (login_name(), "admin", "")]
        conn.executemany("INSERT INTO roles (user_name, role, tenant) VALUES (?, ?, ?)", grants)
        conn.execute("INSERT INTO queues (name, max_length, max_running, paused, encrypt) VALUES ('later', 100, 2, 0, 1)")
        conn.execute("INSERT INTO tenants (name, max_pending, rate_count, rate_period, weight, tokens, refilled_at) VALUES ('acme', 50, 10, 1.5, 2.25, 7.5, ?)", (started,))
        conn.execute("INSERT INTO settings (key, value) VALUES ('note', 'ünïcode ✓')")
    finally:
        conn.close()
    return ids


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The source database, built once: (file, ids)."""
    folder = tmp_path_factory.mktemp("migrate-source")
    db = folder / "source.db"
    ids = build_source(db, folder)
    return db, ids


@pytest.fixture
def source(built, db_path):
    """A copy of the built source at the `cli` fixture's database path; the ids of its notable tasks."""
    shutil.copyfile(built[0], db_path)
    return built[1]


def pg(url: str, sql: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


def pg_tables(url: str) -> list[str]:
    return [row[0] for row in pg(url, "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'S') ORDER BY 1")]


def pg_dump(url: str) -> bytes:
    """The whole database as SQL text: schema, rows and sequence values (without the random key of psql's \\restrict)."""
    done = subprocess.run([shutil.which("pg_dump") or "pg_dump", "--no-owner", "-d", url], capture_output=True, check=True, timeout=60)
    return b"".join(line for line in done.stdout.splitlines(keepends=True) if not line.startswith((b"\\restrict ", b"\\unrestrict ")))


def sqlite_rows(db: Path, sql: str, params: tuple = ()) -> list[tuple]:
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def sqlite_dump(db: Path) -> dict[str, list[tuple]]:
    """Every row of every table of a SQLite file, and its sequences."""
    names = [row[0] for row in sqlite_rows(db, "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
    return {name: sqlite_rows(db, f'SELECT * FROM "{name}" ORDER BY 1, 2') for name in names}


def counts(db: Path) -> dict[str, int]:
    return {name: sqlite_rows(db, f"SELECT count(*) FROM {name}")[0][0] for name in schema_pg.DATA_TABLES}


@pytest.fixture
def second_pg(pg_admin_url):
    """Another empty PostgreSQL database, for a copy of a copy."""
    name = pg_database_name("second")
    url = pgserver.create_database(pg_admin_url, name, template="template0")
    try:
        yield url
    finally:
        pgserver.drop_database(pg_admin_url, name)


# -- a whole database, through the CLI ---------------------------------------------

def test_migrate_copies_every_table_and_the_target_works_as_the_source_did(cli, built, source, db_path, pg_url, tmp_path):
    checkpoint = tmp_path / "head.json"
    cli.ok("audit", "checkpoint", "--output", str(checkpoint))  # appends its own audit.checkpoint entry
    before = counts(db_path)
    verified = cli.ok("audit", "verify", "--json").json
    views = {
        "tasks": {name: cli.task(task_id) for name, task_id in source.items() if name not in ("dag", "purged_dag_task", "last")},
        "dag": cli.ok("dag", "status", str(source["dag"]), "--json").json,
        "dags": cli.ok("dag", "list", "--json").json,
        "schedules": cli.ok("schedule", "list", "--json").json,
        "breakers": cli.ok("breaker", "list", "--json").json,
        "dlq": cli.ok("dlq", "list", "--json").json,
        "audit": cli.ok("audit", "log", "--limit", "0", "--json").json,
    }
    assert before["audit"] > 2 * store_copy.BATCH_ROWS and before["tasks"] > store_copy.BATCH_ROWS
    assert all(before.values()), "a row in every table"
    assert sqlite_rows(db_path, "SELECT count(DISTINCT state) FROM tasks")[0][0] == 6, "tasks in every state"
    untouched = sqlite_dump(db_path)

    result = cli.ok("migrate", "--to", pg_url, "--json")
    report = result.json
    assert report == {
        "to": pg_url,
        "tables": before,
        "audit": {"entries": verified["entries"], "head": verified["head_hash"]},
    }
    assert result.stderr == "", "no progress bar and no message on a pipe under --json"

    target = ["--db", pg_url]
    assert sqlite_dump(db_path) == untouched, "the source is not changed: migrate appends to neither store"
    assert cli.ok(*target, "audit", "verify", "--json").json == verified
    assert cli.ok(*target, "audit", "verify", "--checkpoint", str(checkpoint), "--json").json["intact"], "same db_id, same chain"
    assert pg(pg_url, "SELECT value FROM meta WHERE key = 'db_id'") == sqlite_rows(db_path, "SELECT value FROM meta WHERE key = 'db_id'")
    assert {name: cli.ok(*target, "status", str(task_id), "--json").json for name, task_id in source.items() if name in views["tasks"]} == views["tasks"]
    assert cli.ok(*target, "dag", "status", str(source["dag"]), "--json").json == views["dag"]
    assert cli.ok(*target, "dag", "list", "--json").json == views["dags"]
    assert cli.ok(*target, "schedule", "list", "--json").json == views["schedules"]
    assert cli.ok(*target, "breaker", "list", "--json").json == views["breakers"]
    assert cli.ok(*target, "dlq", "list", "--json").json == views["dlq"]
    assert cli.ok(*target, "audit", "log", "--limit", "0", "--json").json == views["audit"], "entry for entry"
    for table in ("roles", "queues", "tenants", "settings", "counters", "workers", "purged_tasks", "schedule_fires", "tokens"):
        assert sorted(pg(pg_url, f"SELECT * FROM {table}")) == sorted(sqlite_rows(db_path, f"SELECT * FROM {table}")), table
    assert pg(pg_url, "SELECT rate_period, weight, tokens FROM tenants") == [(1.5, 2.25, 7.5)]
    numbers = "SELECT backoff, timeout, priority, encrypted, waiting_deps FROM tasks WHERE id = {}"
    for task_id in source.values():
        assert pg(pg_url, numbers.format(task_id)) == sqlite_rows(db_path, numbers.format(task_id))

    # A token made on the source lets its user in on the target; new tokens continue past its id.
    token = (built[0].parent / "token.txt").read_text()
    assert cli.ok(*target, "token", "list", "--json").json == cli.ok("token", "list", "--json").json
    with tqcli.open(pg_url) as q:
        assert q.tokens.authenticate(token).user == "alice"
    assert cli.ok(*target, "token", "create", "bob", "--json").json["id"] == 2

    # A worker on the target takes over: the orphan is reclaimed, the ready tasks run, claims continue past the old ones.
    old_claim = sqlite_rows(db_path, "SELECT value FROM counters WHERE name = 'claim'")[0][0]
    cli.ok(*target, "worker", "--once")
    after = {name: cli.ok(*target, "status", str(source[name]), "--json").json for name in ("pending", "waits", "orphan", "delayed", "blocked")}
    assert {name: task["state"] for name, task in after.items()} == {
        "pending": "completed", "waits": "completed", "orphan": "pending", "delayed": "pending", "blocked": "blocked",
    }
    assert after["orphan"]["attempts"] == 1 and "worker lost" in json.dumps(after["orphan"]), "reclaimed, to be retried"
    new_claims = pg(pg_url, "SELECT claim FROM attempts WHERE task_id = ANY(%s)", ([source["pending"], source["waits"]],))
    assert len(new_claims) == 2 and all(claim > old_claim for (claim,) in new_claims)
    # New ids continue past the highest the source ever gave, the purged newest task included.
    new_id = int(cli.ok(*target, "submit", "tests.jobs:noop").stdout)
    assert new_id == source["last"] + 1
    (tmp_path / "dag.toml").write_text(DIAMOND)
    assert cli.ok(*target, "dag", "submit", str(tmp_path / "dag.toml"), "--json").json["id"] == source["dag"] + 1
    assert cli.ok(*target, "audit", "verify", "--json").json["intact"]


def test_plain_output_is_a_table_of_counts_and_a_summary(cli, source, db_path, pg_url):
    before = counts(db_path)
    result = cli.ok("migrate", "--to", pg_url)
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["TABLE", "ROWS"]
    assert {line.split()[0]: int(line.split()[1]) for line in lines[1:]} == before
    head = sqlite_rows(db_path, "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")[0]
    assert f"copied {db_path} to {pg_url}: {sum(before.values())} rows in {len(before)} tables" in result.stderr
    assert f"audit chain verified there: {head[0]} entries, head {head[0]} {head[1][:12]}" in result.stderr
    assert "\r" not in result.stderr and "copying" not in result.stderr, "no progress bar when stderr is not a terminal"


def on_terminal_stderr(cli, *args, env=None):
    """Run tqcli with stderr on a pseudo-terminal: (exit code, stdout, what was drawn on stderr)."""
    import pty

    leader, follower = pty.openpty()
    merged = {**cli.env, "TERM": "xterm-256color", "COLUMNS": "100", **(env or {})}
    process = subprocess.Popen([TQCLI, *args], stdout=subprocess.PIPE, stderr=follower, env=merged, cwd=cli.cwd)
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    out, _ = process.communicate(timeout=60)
    os.close(leader)
    return process.returncode, out.decode(), b"".join(chunks).decode(errors="replace")


def test_a_terminal_gets_a_progress_bar_on_stderr_unless_ci_is_set(cli, source, pg_url, second_pg):
    code, out, drawn = on_terminal_stderr(cli, "migrate", "--to", pg_url)
    assert code == 0, drawn
    assert "copying" in drawn and "copied" in drawn
    assert out.startswith("TABLE") and "copying" not in out, "the bar goes to stderr alone"
    code, out, drawn = on_terminal_stderr(cli, "migrate", "--to", second_pg, env={"CI": "true"})
    assert code == 0, drawn
    assert "copying" not in drawn and "copied" in drawn


def test_a_copy_of_a_copy_is_the_same_database(cli, source, db_path, pg_url, second_pg):
    """PostgreSQL to PostgreSQL: the same rows, chain and sequences."""
    first = cli.ok("migrate", "--to", pg_url, "--json").json
    second = cli.ok("--db", pg_url, "migrate", "--to", second_pg, "--json").json
    assert second["tables"] == first["tables"] and second["audit"] == first["audit"]
    assert cli.ok("--db", second_pg, "status", str(source["completed"]), "--json").json == cli.task(source["completed"])
    verified = cli.ok("--db", second_pg, "audit", "verify", "--json").json
    assert (verified["entries"], verified["head_hash"]) == (first["audit"]["entries"], first["audit"]["head"])
    assert int(cli.ok("--db", second_pg, "submit", "tests.jobs:noop").stdout) == source["last"] + 1


def test_a_target_with_an_empty_tqcli_schema_counts_as_empty_and_takes_the_sources_id(cli, source, db_path, pg_url):
    tqcli.open(pg_url).close()  # a new database: its own db_id and the claim counter at 0
    cli.ok("migrate", "--to", pg_url)
    assert pg(pg_url, "SELECT key, value FROM meta") == sqlite_rows(db_path, "SELECT key, value FROM meta")


# -- what refuses, and leaves the target as it was ----------------------------------

def test_a_target_that_is_not_empty_is_exit_6_and_left_unchanged(cli, source, pg_url):
    cli.ok("--db", pg_url, "submit", "tests.jobs:noop")
    dump = pg_dump(pg_url)
    result = cli("migrate", "--to", pg_url)
    assert result.code == 6, result.stderr
    assert result.error_lines == [result.stderr.strip()]
    assert "is not empty" in result.stderr and "tasks" in result.stderr and "left unchanged" in result.stderr
    assert pg_dump(pg_url) == dump


@pytest.mark.parametrize("rows", [False, True], ids=["empty-table", "with-rows"])
def test_a_target_with_tables_of_another_program_is_exit_6_and_left_unchanged(cli, source, pg_url, rows):
    pg(pg_url, "CREATE TABLE invoices (id int PRIMARY KEY, total numeric)")
    if rows:
        pg(pg_url, "INSERT INTO invoices VALUES (1, 9.99)")
    dump = pg_dump(pg_url)
    result = cli("migrate", "--to", pg_url)
    assert result.code == 6, result.stderr
    assert "tables of another program (invoices)" in result.stderr
    assert pg_dump(pg_url) == dump


def test_only_a_new_databases_own_rows_count_as_empty(pg_url, db_path):
    """A fresh database's db_id and claim counter are not rows; any other meta or counters row is."""
    tqcli.open(pg_url).close()
    tqcli.open(db_path).close()
    pg(pg_url, "UPDATE counters SET value = 1 WHERE name = 'claim'")
    with tqcli.open(db_path) as q, pytest.raises(Conflict, match="counters holds rows"):
        q.migrate_to(pg_url)
    pg(pg_url, "UPDATE counters SET value = 0 WHERE name = 'claim'; INSERT INTO meta VALUES ('other', 'x')")
    with tqcli.open(db_path) as q, pytest.raises(Conflict, match="meta holds rows"):
        q.migrate_to(pg_url)


def test_while_a_worker_is_alive_on_the_source_it_is_exit_6_and_nothing_is_written(cli, source, pg_url):
    worker = cli.spawn("worker", "--poll", "0.2", "--id", "busy-bee")
    try:
        deadline = time.monotonic() + 30
        while not any(run["alive"] and run["id"] == "busy-bee" for run in cli.ok("workers", "--json").json):
            assert time.monotonic() < deadline and worker.poll() is None, "the worker did not start"
            time.sleep(0.1)
        result = cli("migrate", "--to", pg_url)
        assert result.code == 6, result.stderr
        assert "workers are alive" in result.stderr and "busy-bee" in result.stderr and "stop them first" in result.stderr
        assert pg_tables(pg_url) == [], "nothing was written, not even the schema"
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.communicate(timeout=30)
    cli.ok("migrate", "--to", pg_url)


def test_a_running_task_whose_holder_lives_keeps_the_migration_off(db_path, pg_url):
    from tqcli.core import liveness

    with tqcli.open(db_path) as q:
        task_id = q.submit("tests.jobs:noop")
    sqlite_rows(
        db_path, "UPDATE tasks SET state = 'running', claim = 1, lease_until = 0, started_at = 0, worker = 'w', holder = ? WHERE id = ?",
        (liveness.holder_name(), task_id),
    )
    with tqcli.open(db_path) as q, pytest.raises(Conflict, match=f"running task {task_id} "):
        q.migrate_to(pg_url)
    assert pg_tables(pg_url) == []


def test_a_missing_source_a_target_that_is_not_postgresql_or_the_source_itself_are_clear_errors(cli, tmp_path, pg_url):
    missing = cli("--db", str(tmp_path / "nope.db"), "migrate", "--to", pg_url)
    assert missing.code == 3 and missing.error_lines and "no database at" in missing.stderr
    assert not (tmp_path / "nope.db").exists() and pg_tables(pg_url) == []
    cli.create_db()
    for wrong in (str(tmp_path / "other.db"), "mysql://localhost/x"):
        result = cli("migrate", "--to", wrong)
        assert result.code == 2 and "is not a PostgreSQL URL" in result.error_lines[0], result.stderr
    assert cli("migrate").code == 2, "--to is required"
    cli.ok("migrate", "--to", pg_url)
    itself = cli("--db", pg_url, "migrate", "--to", pg_url)
    assert itself.code == 2 and "names the database being copied" in itself.stderr, itself.stderr


def test_a_database_url_that_does_not_exist_says_to_create_it(cli, pg_url):
    cli.create_db()
    result = cli("migrate", "--to", pg_url.rsplit("/", 1)[0] + "/no_such_database_here")
    assert result.code == 7 and "create it first" in result.stderr, result.stderr


# -- failures midway: the target is left as it was ---------------------------------

def test_a_row_that_cannot_be_inserted_fails_the_copy_and_drops_what_it_created(cli, source, db_path, pg_url):
    conn = sqlite3.connect(db_path, isolation_level=None)  # foreign keys off, as in the sqlite3 shell
    conn.execute("INSERT INTO attempts (task_id, claim, attempt, worker, started_at) VALUES (999999, 1, 1, 'w', 0)")
    conn.close()
    result = cli("migrate", "--to", pg_url)
    assert result.code == 7, result.stderr
    assert "cannot copy table attempts" in result.stderr and "999999" in result.stderr and "nothing was copied" in result.stderr
    assert pg_tables(pg_url) == [], "the schema it created is dropped again"


def test_a_failure_into_an_existing_empty_schema_leaves_it_byte_for_byte(cli, source, db_path, pg_url):
    tqcli.open(pg_url).close()
    dump = pg_dump(pg_url)
    sqlite_rows(db_path, "INSERT INTO task_deps (task_id, depends_on) VALUES (424242, 1)")
    result = cli("migrate", "--to", pg_url)
    assert result.code == 7 and "task_deps" in result.stderr, result.stderr
    assert pg_dump(pg_url) == dump


def test_ctrl_c_midway_leaves_the_target_empty(source, db_path, pg_url):
    seen = []

    def progress(done, total, table):
        seen.append(table)
        if table == "audit" and done > 0:
            raise KeyboardInterrupt

    with tqcli.open(db_path) as q, pytest.raises(KeyboardInterrupt):
        q.migrate_to(pg_url, progress=progress)
    assert "tasks" in seen
    assert pg_tables(pg_url) == []


def test_sigint_to_the_command_is_exit_130_and_leaves_the_target_empty(cli, source, pg_url):
    process = cli.spawn("migrate", "--to", pg_url)
    deadline = time.monotonic() + 30
    while not pg(pg_url, "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'COPY%%' AND state = 'active'"):
        if process.poll() is not None or time.monotonic() > deadline:
            pytest.skip("the copy ended before it could be interrupted")
        time.sleep(0.005)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=30)
    if process.returncode == 0:
        pytest.skip("the copy ended before the signal arrived")
    assert process.returncode == 130, err
    assert err.strip().splitlines()[-1].startswith("error: interrupted: nothing was copied")
    assert pg_tables(pg_url) == []


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ("UPDATE tasks SET max_retries = 'lots' WHERE id = {id}", "column max_retries holds the text 'lots', where PostgreSQL needs an integer"),
        ("UPDATE tasks SET attempts = 1.5 WHERE id = {id}", "column attempts holds the real number 1.5, where PostgreSQL needs an integer"),
        ("UPDATE tasks SET encrypted = 3000000000 WHERE id = {id}", "column encrypted holds the integer 3000000000, where PostgreSQL needs an integer from -2147483648 to 2147483647"),
        ("UPDATE tasks SET name = x'00ff' WHERE id = {id}", "column name holds a blob, hex '00ff', where PostgreSQL needs text"),
        ("UPDATE tasks SET name = 'a' || char(0) || 'b' WHERE id = {id}", "column name holds the text 'a\\x00b', where PostgreSQL needs text without NUL characters"),
        ("UPDATE tasks SET backoff = 'slow' WHERE id = {id}", "column backoff holds the text 'slow', where PostgreSQL needs a number"),
    ],
    ids=["text-in-integer", "real-in-integer", "too-large-for-int4", "blob-in-text", "nul-in-text", "text-in-real"],
)
def test_a_hand_edited_value_of_another_type_is_named_by_table_row_and_column(db_path, pg_url, edit, message):
    with tqcli.open(db_path) as q:
        task_id = q.submit("tests.jobs:noop")
    sqlite_rows(db_path, edit.format(id=task_id))
    with tqcli.open(db_path) as q, pytest.raises(StorageError) as caught:
        q.migrate_to(pg_url)
    assert f"cannot copy table tasks, row id={task_id}: {message}" in caught.value.message
    assert pg_tables(pg_url) == []


def test_a_source_whose_chain_does_not_verify_is_not_copied(cli, db_path, pg_url):
    cli.submit("tests.jobs:noop")
    cli.submit("tests.jobs:noop")
    sqlite_rows(db_path, "UPDATE audit SET actor = 'mallory' WHERE seq = 1")
    result = cli("migrate", "--to", pg_url)
    assert result.code == 1 and "does not verify (entry 1 was changed" in result.stderr, result.stderr
    assert pg_tables(pg_url) == []


def test_an_audit_type_edit_is_caught_before_the_chain_is(cli, db_path, pg_url):
    cli.submit("tests.jobs:noop")
    sqlite_rows(db_path, "UPDATE audit SET task_id = 'one' WHERE seq = 1")
    result = cli("migrate", "--to", pg_url)
    assert result.code == 7 and "cannot copy table audit, row seq=1: column task_id holds the text 'one'" in result.stderr, result.stderr


def test_help_says_what_it_does(cli):
    text = cli.ok("migrate", "--help").stdout
    for words in ("empty PostgreSQL database", "one snapshot", "one transaction", "Exit 6", "audit entry", "--to URL", "--json"):
        assert words in " ".join(text.split()), words


def test_the_json_names_the_target_without_its_password(cli, pg_url):
    cli.create_db()
    with_password = pg_url.replace("://tqcli@", "://tqcli:secret@")
    if with_password == pg_url:
        pytest.skip("the test server's URL has another form")
    report = cli.ok("migrate", "--to", with_password, "--json").json
    assert report["to"] == pg_url.replace("://tqcli@", "://tqcli:***@") and "secret" not in json.dumps(report)
