"""Storage faults: a full disk, a file-size limit, a lock held too long, a read-only file."""

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

from tests.conftest import TQCLI, on_read_only_folder, read_only_mount_works, table_dump
from tests.reliability.helpers import consistency_problems
from tqcli import TaskSpec
from tqcli.errors import StorageError

# A full disk, a file-size limit, a lock and a read-only file are the SQLite file's
# faults; PostgreSQL's (a lost connection, a server down) are in test_postgres_faults.py.
pytestmark = pytest.mark.sqlite_only


def limit_pages(queue, extra):
    conn = queue._ctx.store._conn
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages + extra}")


def lift_limit(queue):
    queue._ctx.store._conn.execute("PRAGMA max_page_count = 4294967294")


def test_disk_full_during_a_bulk_submit_writes_nothing(queue):
    queue.submit("tests.jobs:noop")
    before = table_dump(queue.path)
    limit_pages(queue, 3)
    with pytest.raises(StorageError, match="disk full .*nothing was changed"):
        queue.submit_many([TaskSpec("tests.jobs:noop", payload={"blob": "x" * 2000}) for _ in range(500)])
    assert table_dump(queue.path) == before
    lift_limit(queue)
    assert queue.submit("tests.jobs:noop") == 2  # the database still works
    assert queue.audit.verify().intact


FULL_DISK_WORKER = """
import sys
import tqcli
from tqcli.errors import StorageError
from tqcli.store.sqlite import SqliteStore

opened = SqliteStore.reopen


def nearly_full(store):
    # Every connection the worker opens sees a disk with two pages left.
    other = opened(store)
    conn = other._conn
    conn.execute(f"PRAGMA max_page_count = {conn.execute('PRAGMA page_count').fetchone()[0] + 2}")
    return other


SqliteStore.reopen = nearly_full
with tqcli.open(sys.argv[1]) as queue:
    try:
        queue.drain(lease=2)
    except StorageError as exc:
        print(exc.message, file=sys.stderr)
        sys.exit(exc.exit_code)
"""


def test_disk_full_while_a_worker_finishes_loses_no_task(queue):
    for _ in range(50):
        queue.submit("tests.jobs:record", payload={"path": os.devnull, "value": "x" * 3000}, backoff=0)
    worker = subprocess.run([sys.executable, "-c", FULL_DISK_WORKER, str(queue.path)], capture_output=True, text=True, timeout=120)
    assert worker.returncode == 7 and "disk full" in worker.stderr, worker.stderr
    assert consistency_problems(queue.path) == []
    queue.drain()  # the next worker takes over what the failed one held, at once
    assert queue.status().counts["completed"] == 50
    assert queue.audit.verify().intact


def test_a_file_size_limit_on_a_real_process_is_exit_7(cli, tmp_path):
    cli.submit("tests.jobs:noop")
    before = table_dump(cli.db)
    size_kb = (cli.db.stat().st_size + 1023) // 1024
    lines = "".join(json.dumps({"target": "tests.jobs:noop", "payload": {"blob": "x" * 4000}}) + "\n" for _ in range(2000))
    bulk = tmp_path / "big.jsonl"
    bulk.write_text(lines)
    done = subprocess.run(
        ["bash", "-c", f"ulimit -f {size_kb + 8}; exec {TQCLI} submit --from-file {bulk}"],
        env=cli.env, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 7, done.stderr
    assert done.stderr.startswith("error: ") and len(done.stderr.strip().splitlines()) == 1
    assert table_dump(cli.db) == before
    assert cli.ok("status", "--json").json["counts"]["pending"] == 1


def test_a_lock_held_past_the_busy_timeout_is_exit_7_and_says_busy(cli):
    cli.submit("tests.jobs:noop")
    (cli.home / "tqcli.toml").write_text('busy_timeout = "1s"\n')
    before = table_dump(cli.db)
    holder = sqlite3.connect(cli.db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        started = time.monotonic()
        result = cli("submit", "tests.jobs:noop")
        elapsed = time.monotonic() - started
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert result.code == 7 and "is busy" in result.stderr and "busy timeout of 1 s" in result.stderr
    assert 0.9 < elapsed < 10
    assert table_dump(cli.db) == before


@pytest.mark.skipif(not read_only_mount_works(), reason="needs root and unshare --mount for a read-only filesystem")
def test_a_read_only_database_reads_but_refuses_writes(cli):
    cli.submit("tests.jobs:noop")
    before = table_dump(cli.db)
    status = on_read_only_folder(cli.db.parent, [TQCLI, "status", "--json"], env=cli.env, cwd=cli.cwd)
    assert status.code == 0, status.stderr
    assert json.loads(status.stdout)["counts"]["pending"] == 1
    submit = on_read_only_folder(cli.db.parent, [TQCLI, "submit", "tests.jobs:noop"], env=cli.env, cwd=cli.cwd)
    assert submit.code == 7 and submit.stderr.startswith("error: "), submit.stderr
    assert "is on a read-only filesystem" in submit.stderr, "the mount is named as the cause"
    assert len(submit.error_lines) == 1
    assert table_dump(cli.db) == before


def test_a_busy_database_during_a_workers_run_is_waited_out(cli):
    for _ in range(20):
        cli.submit("tests.jobs:noop")
    holder = sqlite3.connect(cli.db, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    release = threading.Timer(1.0, lambda: (holder.execute("ROLLBACK"), holder.close()))
    release.start()
    result = cli("worker", "--once")  # waits on the lock within the 10 s busy timeout
    release.join()
    assert result.code == 0, result.stderr
    assert cli.ok("status", "--json").json["counts"]["completed"] == 20


def test_results_a_failed_commit_held_are_recorded_not_run_again(queue, tmp_path, monkeypatch):
    from tqcli.core import worker as worker_module

    log = tmp_path / "ran"
    ids = [queue.submit("tests.jobs:record", payload={"path": str(log), "value": n}) for n in range(3)]
    real_finish_all = worker_module.dispatcher.finish_all
    failures = []

    def fails_once(tx, journal, ended, **kwargs):
        if ended and not failures:
            failures.append(len(ended))
            raise StorageError("disk full while writing: nothing was changed")
        return real_finish_all(tx, journal, ended, **kwargs)

    monkeypatch.setattr(worker_module.dispatcher, "finish_all", fails_once)
    with pytest.raises(StorageError, match="disk full"):
        queue.drain()
    assert failures, "the fault was injected"
    monkeypatch.setattr(worker_module.dispatcher, "finish_all", real_finish_all)
    queue.drain()
    assert [queue.get(i).state.value for i in ids] == ["completed"] * 3
    assert sorted(log.read_text().split()) == ["0", "1", "2"], "each task ran exactly once"
    assert consistency_problems(queue.path) == []


def test_a_long_running_worker_outlasts_a_lock_held_past_its_busy_timeout(cli, tmp_path):
    (cli.home / "tqcli.toml").write_text('busy_timeout = "0.3s"\n')
    log = tmp_path / "ran"
    for n in range(6):
        cli.submit("tests.jobs:record", "--payload", json.dumps({"path": str(log), "value": n, "seconds": 0.2}))
    worker = cli.spawn("worker", "--poll", "0.1")
    deadline = time.monotonic() + 15
    while not log.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    holder = sqlite3.connect(cli.db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    time.sleep(1.5)  # five busy timeouts
    holder.execute("ROLLBACK")
    holder.close()
    while cli.ok("status", "--json").json["counts"]["completed"] < 6 and time.monotonic() < deadline + 15:
        time.sleep(0.1)
    worker.terminate()
    _, stderr = worker.communicate(timeout=30)
    assert worker.returncode == 0, stderr
    assert "is busy" in stderr and "trying again" in stderr
    assert sorted(log.read_text().split()) == [str(n) for n in range(6)], "each task ran exactly once"
    assert cli.ok("audit", "verify").code == 0


FULL_TMPFS = r"""
import json, os, subprocess, sys, time
tq, folder, ledger, mode = sys.argv[1:5]
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tqcli-full", folder], check=True)
env = dict(os.environ, TQCLI_DB=f"{folder}/tq.db")
def cli(*args, **kwargs):
    done = subprocess.run([tq, *args], env=env, capture_output=True, text=True, timeout=120, **kwargs)
    return {"code": done.returncode, "stdout": done.stdout, "stderr": done.stderr}
task = {"target": "tests.jobs:record", "payload": {"path": ledger, "value": "x" * 20000, "seconds": 1.0}, "backoff": 0}
assert cli("submit", "--from-file", "-", input=(json.dumps(task) + "\n") * 5)["code"] == 0
lease = "10s" if mode == "in-time" else "3s"
worker = subprocess.Popen([tq, "worker", "--once", "--concurrency", "5", "--lease", lease], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
deadline = time.time() + 30
while (not os.path.exists(ledger) or open(ledger).read().count("\n") < 5) and time.time() < deadline:
    time.sleep(0.02)
fd = os.open(f"{folder}/filler", os.O_WRONLY | os.O_CREAT)
try:
    while True:
        os.write(fd, b"\0" * 65536)
except OSError:
    pass
os.close(fd)
report = {}
if mode == "in-time":
    time.sleep(2.5)  # the tasks finished meanwhile and could not be recorded
    os.remove(f"{folder}/filler")
    out, err = worker.communicate(timeout=60)
    report["first"] = {"code": worker.returncode, "stderr": err}
else:
    out, err = worker.communicate(timeout=60)
    report["first"] = {"code": worker.returncode, "stderr": err}
    os.remove(f"{folder}/filler")
    report["second"] = cli("worker", "--once")
report["tasks"] = [json.loads(cli("status", str(n), "--json")["stdout"]) for n in range(1, 6)]
report["verify"] = cli("audit", "verify")["code"]
report["left"] = sorted(name for name in os.listdir(folder) if "-outcomes-" in name)
print(json.dumps(report))
"""


@pytest.mark.skipif(not read_only_mount_works(), reason="needs root and unshare --mount for a tmpfs of its own")
@pytest.mark.parametrize("mode", ["in-time", "too-late"])
def test_a_full_disk_costs_no_attempt_for_work_that_succeeded(cli, tmp_path, mode):
    folder, ledger = tmp_path / "fs", tmp_path / "ledger"
    folder.mkdir()
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", sys.executable, "-c", FULL_TMPFS, TQCLI, str(folder), str(ledger), mode],
        capture_output=True, text=True, env=cli.env, cwd=cli.cwd, timeout=180,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    if mode == "in-time":
        assert report["first"]["code"] == 0, report["first"]["stderr"]
        assert "disk full" in report["first"]["stderr"] and "the disk has room again" in report["first"]["stderr"]
    else:
        first = report["first"]
        assert first["code"] == 7 and "5 outcome(s) were saved in" in first["stderr"], first["stderr"]
        assert report["second"]["code"] == 0, report["second"]["stderr"]
    for task in report["tasks"]:
        assert (task["state"], task["attempts"]) == ("completed", 1), task
        assert [h["outcome"] for h in task["history"]] == ["completed"]
    assert ledger.read_text().count("\n") == 5, "each task ran once"
    assert report["verify"] == 0 and report["left"] == []
