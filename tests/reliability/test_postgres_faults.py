"""PostgreSQL's own faults: a server that is not there, connections killed under a running worker, wake-ups.

SQLite's faults (a full disk, a read-only file, a held lock) are in
test_storage_faults.py; these are the ones a database server adds.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from tests.conftest import TQCLI
from tests.reliability.helpers import consistency_problems, counts
from tests.stores import raw_sql

pytestmark = pytest.mark.postgres_only


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.05)


def _writing_transactions(url: str) -> int:
    """How many other sessions on this database hold a transaction that has written (has an xid)."""
    query = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_xid IS NOT NULL"
    return int(raw_sql(url, query)[0][0])


def test_a_server_that_is_not_there_is_exit_7_in_one_line(cli):
    down = {"TQCLI_DB": "postgresql://tqcli@127.0.0.1:1/nothing"}
    for args in (["status"], ["submit", "tests.jobs:noop"], ["worker", "--once"], ["audit", "verify"]):
        result = cli(*args, env=down)
        assert result.code == 7, result.stderr
        assert result.error_lines == [result.stderr.strip()] and "cannot reach the PostgreSQL server" in result.stderr
        assert "Traceback" not in result.stderr
    debug = cli("status", env={**down, "TQCLI_DEBUG": "1"})
    assert debug.code == 7 and "Traceback" in debug.stderr


def test_an_idle_worker_is_woken_by_a_submit_not_by_its_poll(cli):
    cli.create_db()
    worker = cli.spawn("worker", "--poll", "30", "--quiet")
    try:
        time.sleep(1.5)  # it polled once at start, found nothing, and now waits up to 30 s
        task_id = cli.submit("tests.jobs:noop")
        _wait_for(lambda: cli.task(task_id)["state"] == "completed", 8, "the woken worker to run the task")
    finally:
        worker.terminate()
        worker.wait(timeout=30)


def test_a_worker_whose_connections_are_killed_reconnects_and_loses_nothing(cli):
    cli.create_db()
    worker = cli.spawn("worker", "--poll", "0.2", "--concurrency", "2")
    try:
        first = [cli.submit("tests.jobs:sleepy", "--payload", json.dumps({"seconds": 0.05})) for _ in range(10)]
        time.sleep(0.3)
        for _ in range(3):  # kill every connection tqcli has, mid-work, three times
            raw_sql(  # this test's database only: other tests share the server
                cli.db,
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'tqcli' AND datname = current_database()",
            )
            time.sleep(0.3)
        second = [cli.submit("tests.jobs:noop") for _ in range(10)]
        _wait_for(lambda: counts(cli.db).get("completed", 0) == len(first) + len(second), 40, "every task to complete")
    finally:
        worker.terminate()
        out, err = worker.communicate(timeout=30)
    assert worker.returncode == 0, err
    assert "Traceback" not in err
    assert consistency_problems(cli.db) == []
    assert cli("audit", "verify").code == 0


def test_a_commit_lost_in_flight_is_read_back_not_left_to_the_lease(queue, monkeypatch):
    """The connection drops after COMMIT reached the server: the worker learns what landed from its tokens."""
    from contextlib import contextmanager

    from tqcli.errors import StorageLost
    from tqcli.store.postgres import PostgresStore
    from tqcli.store.postgres_tx import PostgresTx

    ids = [queue.submit("tests.jobs:noop") for _ in range(6)]
    real_write, real_claim = PostgresStore.write, PostgresTx.claim_picked
    to_lose = {"commits": 2}

    def claim_picked(self, ids, **options):
        rows = real_claim(self, ids, **options)
        self.claimed_here = getattr(self, "claimed_here", False) or bool(rows)
        return rows

    @contextmanager
    def write(self):
        with real_write(self) as tx:
            yield tx
        if getattr(tx, "claimed_here", False) and to_lose["commits"]:
            to_lose["commits"] -= 1
            self._conn.raw.close()  # committed, but the answer never arrives
            raise StorageLost("connection lost during COMMIT (injected)")

    monkeypatch.setattr(PostgresTx, "claim_picked", claim_picked)
    monkeypatch.setattr(PostgresStore, "write", write)
    report = queue.drain(concurrency=2)
    assert to_lose["commits"] < 2, "no commit was lost"
    assert {queue.get(task_id).state.value for task_id in ids} == {"completed"}
    actions = [entry.action for entry in queue.audit.entries(limit=0)]
    assert "task.lost" not in actions and "task.stale" not in actions  # nothing waited for a lease or was recorded twice
    assert consistency_problems(queue.location) == []
    assert report.outcomes.get("completed") == 6


SKEWED_CLOCK = """
import os, time
_skew = float(os.environ.get("TQCLI_TEST_SKEW", "0"))
_time, _time_ns = time.time, time.time_ns
time.time = lambda: _time() + _skew
time.time_ns = lambda: _time_ns() + int(_skew * 1e9)
"""


def test_a_host_whose_clock_runs_ahead_does_not_take_over_a_healthy_lease(cli, tmp_path):
    """Leases are judged by the server's clock: a rescuer 5 s ahead, with 6 s leases, sees a live lease as live."""
    ahead = tmp_path / "ahead"
    ahead.mkdir()
    (ahead / "sitecustomize.py").write_text(SKEWED_CLOCK)
    task_id = cli.submit("tests.jobs:sleepy", "--payload", json.dumps({"seconds": 5}), "--max-retries", "0")
    healthy = cli.spawn("worker", "--once", "--lease", "6", "--id", "healthy")
    try:
        _wait_for(lambda: cli.task(task_id)["state"] == "running", 20, "the healthy worker to start the task")
        time.sleep(1.0)
        # Another host: its own PID namespace (it cannot see the healthy worker), its clock 5 s ahead.
        skewed = subprocess.run(
            ["unshare", "--pid", "--fork", "--mount-proc", TQCLI, "worker", "--once", "--lease", "6", "--id", "ahead"],
            env={**cli.env, "PYTHONPATH": f"{ahead}:{cli.env['PYTHONPATH']}", "TQCLI_TEST_SKEW": "5"},
            cwd=cli.cwd, capture_output=True, text=True, timeout=60,
        )
        assert skewed.returncode == 0, skewed.stderr
        assert "was lost" not in skewed.stderr
    finally:
        healthy.communicate(timeout=60)
    task = cli.task(task_id)
    assert task["state"] == "completed" and task["attempts"] == 1


def test_ctrl_c_during_a_long_statement_is_interrupted_and_writes_nothing(cli, tmp_path):
    import signal

    lines = tmp_path / "bulk.jsonl"
    lines.write_text("".join(json.dumps({"target": "tests.jobs:noop", "payload": {"n": n}}) + "\n" for n in range(300_000)))
    cli.create_db()
    submit = cli.spawn("submit", "--from-file", str(lines))
    # Interrupt it only once its transaction has written (a fixed sleep could land during imports).
    _wait_for(lambda: _writing_transactions(cli.db) > 0 or submit.poll() is not None, 60, "the submit to start writing")
    assert submit.poll() is None, "the submit finished before it could be interrupted"
    submit.send_signal(signal.SIGINT)
    out, err = submit.communicate(timeout=60)
    assert submit.returncode == 130, err
    assert [line for line in err.splitlines() if line.startswith("error: ")] == ["error: interrupted"]
    assert counts(cli.db) == {}
    assert cli("audit", "verify").code == 0


def test_a_worker_stopped_while_its_server_is_down_still_stops(cli, tmp_path):
    """The database went away under a worker: a second SIGTERM ends it (exit 7) instead of waiting for the server."""
    import signal

    from tests import pgserver

    with pgserver.start() as server:
        url = pgserver.create_database(server.url, "outage")
        env = {"TQCLI_DB": url}
        cli("submit", "tests.jobs:sleepy", "--payload", json.dumps({"seconds": 1}), env=env)
        worker = cli.spawn("worker", "--poll", "0.1", env=env)
        _wait_for(lambda: "running" in cli("status", env=env).stdout, 20, "the task to start")
        server.stop()
        time.sleep(2)  # the task ends; its outcome cannot be recorded
        started = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        worker.send_signal(signal.SIGTERM)
        out, err = worker.communicate(timeout=30)
    assert time.monotonic() - started < 20
    assert worker.returncode == 7, err
    assert "stopped with 1 finished attempt(s) not recorded" in err and "Traceback" not in err


STOPPED_HOLDER = r"""
import os, signal, sys
from tqcli.errors import StorageLost
from tqcli.store import open as open_store
from tqcli.store.postgres_tx import AUDIT_LOCK

store = open_store(sys.argv[1], busy_timeout=2.0)
try:
    with store.write() as tx:
        tx.conn.raw.execute("SELECT pg_advisory_xact_lock(%s)", (AUDIT_LOCK,))  # the audit chain's head: every change waits on it
        tx.conn.raw.execute("INSERT INTO meta (key, value) VALUES ('stopped-holder', 'committed')")
        print("holding", flush=True)
        os.kill(os.getpid(), signal.SIGSTOP)  # stopped inside the transaction, as SIGSTOP or a frozen VM leaves a worker
        tx.conn.raw.execute("SELECT 1")
except StorageLost as exc:
    print("lost:", exc, flush=True)
"""


def test_a_process_stopped_inside_a_write_transaction_holds_no_one_up_past_half_the_busy_timeout(cli):
    """The server ends a session left idle in a write transaction, so a stopped holder's locks do not block every host."""
    import signal
    import sys

    cli.create_db()
    (cli.home / "tqcli.toml").write_text('busy_timeout = "2s"\n')
    holder = subprocess.Popen([sys.executable, "-c", STOPPED_HOLDER, cli.db], stdout=subprocess.PIPE, text=True, env=cli.env)
    try:
        assert holder.stdout.readline() == "holding\n"
        _wait_for(lambda: open(f"/proc/{holder.pid}/stat").read().split(") ", 1)[1].startswith("T"), 10, "the holder to stop")
        started = time.monotonic()
        submitted = cli("submit", "tests.jobs:noop")
        waited = time.monotonic() - started
        assert submitted.code == 0, submitted.stderr  # not exit 7 (busy) after the 2 s busy timeout
        assert waited < 10, f"the submit took {waited:.1f} s"
    finally:
        holder.send_signal(signal.SIGCONT)
        out, _ = holder.communicate(timeout=30)
    assert out.startswith("lost: the PostgreSQL server of ") and "ended this session: it sat idle inside a transaction" in out, out
    assert raw_sql(cli.db, "SELECT count(*) FROM meta WHERE key = 'stopped-holder'") == [(0,)], "nothing of the stopped change was committed"
    assert cli("audit", "verify").code == 0


def _spin(seconds: float) -> None:
    """Busy in pure Python, holding the GIL as a bulk submit's row builder does."""
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        pass


def test_a_running_process_busy_in_python_inside_a_transaction_for_longer_than_the_limit_is_not_ended(db_location):
    """A bulk submit builds its rows between two statements, a read may wait on a pipe: their sessions are kept alive."""
    from tqcli.store import open as open_store
    from tqcli.store.postgres_idle import idle_limit

    store = open_store(db_location, busy_timeout=2.0)
    try:
        with store.write() as tx:
            tx.conn.raw.execute("INSERT INTO meta (key, value) VALUES ('long-change', 'committed')")
            _spin(2.5 * idle_limit(2.0))
        with store.read() as tx:
            _spin(2.5 * idle_limit(2.0))
            assert tx.conn.raw.execute("SELECT value FROM meta WHERE key = 'long-change'").fetchall() == [("committed",)]
    finally:
        store.close()
    assert raw_sql(db_location, "SELECT value FROM meta WHERE key = 'long-change'") == [("committed",)]


def test_a_busy_timeout_of_zero_does_not_wait_for_a_lock(cli):
    """0 is "do not wait", as on SQLite (PostgreSQL's own lock_timeout of 0 would wait forever)."""
    import psycopg

    from tqcli.store.postgres_tx import AUDIT_LOCK

    cli.create_db()
    (cli.home / "tqcli.toml").write_text('busy_timeout = "0s"\n')
    with psycopg.connect(cli.db, autocommit=True) as holder:
        holder.execute("BEGIN")
        holder.execute("SELECT pg_advisory_xact_lock(%s)", (AUDIT_LOCK,))
        started = time.monotonic()
        result = cli("submit", "tests.jobs:noop", timeout=30)
        waited = time.monotonic() - started
        holder.execute("ROLLBACK")
    assert result.code == 7 and "is busy" in result.stderr, result.stderr
    assert waited < 10
    assert counts(cli.db) == {}


def test_a_forked_child_keeps_its_own_transactions_alive(db_location):
    """A fork copies the keeper but not its thread: the child starts its own (as a fork server's children do)."""
    import os

    from tqcli.store import open as open_store
    from tqcli.store.postgres_idle import idle_limit

    parent = open_store(db_location, busy_timeout=2.0)
    with parent.write():
        pass  # the parent's keeper thread runs from here on
    pid = os.fork()
    if pid == 0:  # the child reports by its exit status
        code = 1
        try:
            child = open_store(db_location, busy_timeout=2.0)
            with child.write() as tx:
                tx.conn.raw.execute("INSERT INTO meta (key, value) VALUES ('forked-change', 'committed')")
                _spin(2.5 * idle_limit(2.0))
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    parent.close()
    assert os.waitstatus_to_exitcode(status) == 0
    assert raw_sql(db_location, "SELECT value FROM meta WHERE key = 'forked-change'") == [("committed",)]
