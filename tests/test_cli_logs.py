"""`tqcli logs` through the real CLI: what a user sees, live from another process, and what a task printing 100 MB costs."""

from __future__ import annotations

import json
import os
import select
import subprocess
import time

import pytest

from tests.conftest import TQCLI
from tests.stores import raw_sql


def test_logs_prints_each_stream_to_its_own_and_json_gives_one_document(cli):
    task_id = cli.submit("--backend", "shell", "echo to stdout; echo to stderr >&2")
    cli.ok("worker", "--once")
    shown = cli.ok("logs", str(task_id))
    assert (shown.stdout, shown.stderr) == ("to stdout\n", "to stderr\n")
    document = cli.ok("logs", str(task_id), "--json").json
    assert set(document) == {"task", "attempt", "output", "dropped_bytes", "running", "chunks"}
    assert (document["task"], document["attempt"], document["dropped_bytes"], document["running"]) == (task_id, 1, 0, False)
    assert sorted(document["output"].splitlines()) == ["to stderr", "to stdout"]
    by_stream = {chunk["stream"]: chunk["text"] for chunk in document["chunks"]}
    assert by_stream == {"stdout": "to stdout\n", "stderr": "to stderr\n"}
    assert "".join(chunk["text"] for chunk in document["chunks"]) == document["output"]


def test_a_function_prints_reach_logs_and_run_streams_them_to_stdout_and_stderr(cli):
    ran = cli("run", "tests.printing_jobs:both_ways", "--payload", '{"lines": 1}')
    assert ran.code == 0, ran.stderr
    assert ran.stdout.startswith("out 0\nraw fd 1\nfrom a child\n") and ran.stdout.endswith('"printed"\n')
    assert "err 0\nraw fd 2\n" in ran.stderr
    shown = cli.ok("logs", "1")
    assert shown.stdout == "out 0\nraw fd 1\nfrom a child\n" and shown.stderr == "err 0\nraw fd 2\n"
    shell = cli("run", "--backend", "shell", "echo shell out; echo shell err >&2")
    assert shell.stdout == "shell out\n" and "shell err\n" in shell.stderr
    assert cli.ok("logs", "2").stdout == "shell out\n"


def test_attempts_are_numbered_across_retries_and_a_missing_one_is_exit_3(cli):
    task_id = cli.submit("--backend", "shell", "echo try; exit 1", "--max-retries", "1", "--backoff", "0")
    cli("worker", "--once")
    assert cli.ok("logs", str(task_id), "--attempt", "1").stdout == "try\n"
    assert cli.ok("logs", str(task_id), "--attempt", "2", "--json").json["attempt"] == 2
    missing = cli("logs", str(task_id), "--attempt", "3")
    assert missing.code == 3 and missing.error_lines == ["error: task 1 has no attempt 3: it has 2 (--attempt 1 to 2)"]
    assert cli("logs", "99").code == 3
    waiting = cli.submit("tests.jobs:noop")
    not_yet = cli("logs", str(waiting))
    assert not_yet.code == 3 and "has not run yet" in not_yet.stderr
    assert cli("logs", str(task_id), "--attempt", "0").code == 2
    assert cli("logs", str(task_id), "--tail", "-1").code == 2


def test_tail_prints_the_last_lines(cli):
    task_id = cli.submit("--backend", "shell", "seq 1 100")
    cli.ok("worker", "--once")
    assert cli.ok("logs", str(task_id), "--tail", "3").stdout == "98\n99\n100\n"


def _lines_until(process: subprocess.Popen, wanted: str, timeout: float) -> tuple[list[str], float]:
    """Lines `process` printed until one equals `wanted`, and when that one came."""
    lines, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        if select.select([process.stdout], [], [], max(0.0, deadline - time.monotonic()))[0]:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line.rstrip("\n"))
            if lines[-1] == wanted:
                return lines, time.monotonic()
    raise AssertionError(f"never printed {wanted!r}; printed {lines!r}")


def test_follow_in_another_process_shows_a_running_shell_tasks_lines_within_a_second_and_exits_1_when_it_fails(cli, tmp_path):
    gate = tmp_path / "gate"
    script = f"echo first; while [ ! -e {gate} ]; do sleep 0.05; done; echo second >&2; sleep 0.3; echo last; exit 4"
    task_id = cli.submit("--backend", "shell", script, "--max-retries", "0")
    worker = cli.spawn("worker", "--once")
    follower = subprocess.Popen(
        [TQCLI, "logs", str(task_id), "--follow"], env=cli.env, cwd=cli.cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        lines, _ = _lines_until(follower, "first", timeout=20)
        assert lines == ["first"] and not gate.exists()  # shown while the task waits, before it could end
        gate.touch()
        released = time.monotonic()
        _, at = _lines_until(follower, "last", timeout=10)
        assert at - released < 2.0  # 0.3 s of the task's own sleep, under a second of flushing and polling
        assert follower.wait(timeout=10) == 1
        assert "second\n" in follower.stderr.read()
    finally:
        follower.kill()
        worker.wait(timeout=30)
    assert cli.task(task_id)["state"] == "failed"
    done = cli(
        "logs", str(task_id), "--follow", "--json",
    )
    assert done.code == 1 and done.json["output"].endswith("last\n") and "task 1 failed: exit status 4" in done.stderr


def test_follow_waits_for_a_pending_task_and_exits_0_when_it_completes(cli):
    task_id = cli.submit("--backend", "shell", "echo done")
    follower = cli.spawn("logs", str(task_id), "--follow")
    time.sleep(0.5)
    cli.ok("worker", "--once")
    out, _ = follower.communicate(timeout=20)
    assert follower.returncode == 0 and out == "done\n"


def test_follow_of_a_task_that_ends_without_running_exits_as_wait_does(cli):
    first = cli.submit("--backend", "shell", "--max-retries", "0", "exit 3")
    blocked = cli.submit("--backend", "shell", "--depends-on", str(first), "echo never")
    cancelled = cli.submit("--backend", "shell", "echo never")
    cli.ok("cancel", str(cancelled))
    cli("worker", "--once")
    for task_id, says in ((blocked, f"task {first} failed"), (cancelled, "cancelled")):
        followed, waited = cli("logs", str(task_id), "--follow"), cli("wait", str(task_id))
        assert (followed.code, waited.code) == (1, 1)
        assert followed.stdout == "" and len(followed.error_lines) == 1 and says in followed.error_lines[0]
    assert cli("logs", str(cancelled), "--follow", "--attempt", "1").code == 3  # an attempt it never had


def test_logs_into_a_pipe_that_closes_early_exits_0_and_says_nothing(cli):
    task_id = cli.submit("--backend", "shell", "seq 1 100000")  # 0.6 MB: all kept, more than a pipe holds
    cli.ok("worker", "--once")
    for follow in ((), ("--follow",)):
        reader = subprocess.Popen([TQCLI, "logs", str(task_id), *follow], env=cli.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert reader.stdout.readline() == b"1\n"
        reader.stdout.close()  # as `| head -1` does
        assert reader.wait(timeout=30) == 0 and reader.stderr.read() == b""


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _peak_rss_of_worker(cli, *args: str) -> int:
    worker = cli.spawn("worker", "--once", *args)
    peak = 0
    while worker.poll() is None:
        try:
            peak = max(peak, _rss_kib(worker.pid))
        except OSError:
            break
        time.sleep(0.02)
    assert worker.wait(timeout=120) == 0, worker.stderr.read()
    return peak


@pytest.mark.sqlite_only
def test_a_task_printing_100_mb_keeps_the_last_mib_says_what_was_dropped_and_the_workers_memory_stays_flat(cli):
    """SQLite only: the memory bound is the worker's own; the store's side of the limit runs on both stores in tests/test_logs.py."""
    quiet = cli.submit("--backend", "shell", "echo small")
    baseline = _peak_rss_of_worker(cli)
    size = 100 * 1000 * 1000
    loud = cli.submit("tests.printing_jobs:print_bytes", "--payload", json.dumps({"size": size}))
    shell = cli.submit("--backend", "shell", f"yes 0123456789abcde | head -c {size}")
    peak = _peak_rss_of_worker(cli)
    assert peak < baseline + 30 * 1024, (baseline, peak)  # 100 MB went through it twice
    for task_id in (loud, shell):
        document = cli.ok("logs", str(task_id), "--json").json
        kept = len(document["output"].encode())
        assert 1024 * 1024 - 16 * 1024 < kept <= 1024 * 1024
        assert document["dropped_bytes"] == size - kept
    shown = cli.ok("logs", str(shell))
    assert shown.stderr == f"({size - len(shown.stdout.encode()):,} bytes dropped before this)\n"
    assert shown.stdout.endswith("0123456789abcde\n")
    stored = raw_sql(cli.db, "SELECT sum(size) FROM task_output WHERE task_id = ?", (shell,))[0][0]
    assert stored <= 1024 * 1024
    assert cli.ok("logs", str(quiet)).stdout == "small\n"


def test_the_limit_comes_from_the_config_file(cli):
    config = cli.home / "tqcli.toml"
    config.write_text('output_limit = "1KiB"\n')
    task_id = cli.submit("--backend", "shell", "seq 1 10000")
    cli.ok("--config", str(config), "worker", "--once")
    document = cli.ok("logs", str(task_id), "--json").json
    assert len(document["output"]) <= 1024 and document["output"].endswith("10000\n") and document["dropped_bytes"] > 40_000
    config.write_text('output_limit = "lots"\n')
    bad = cli("--config", str(config), "worker", "--once")
    assert bad.code == 2 and "output_limit" in bad.error_lines[0]


def test_a_tenant_scoped_viewer_reads_only_its_tenants_logs(cli):
    mine = cli.submit("--backend", "shell", "echo acme", "--tenant", "acme")
    other = cli.submit("--backend", "shell", "echo globex", "--tenant", "globex")
    cli.ok("worker", "--once")
    cli.ok("role", "grant", _me(), "admin")
    cli.ok("role", "grant", "ann", "viewer", "--tenant", "acme")
    assert cli.ok("logs", str(mine), env={"TQCLI_USER": "ann"}).stdout == "acme\n"
    denied = cli("logs", str(other), env={"TQCLI_USER": "ann"})
    assert denied.code == 4 and denied.stdout == ""


def _me() -> str:
    from tqcli.config import login_name

    return login_name()


def test_an_encrypted_tasks_output_is_sealed_in_the_database_and_shown_as_its_payload_is(cli, tmp_path):
    secret = "hunter2-output-3c9a"
    cli.ok("keys", "init")
    task_id = cli.submit("--encrypt", "--backend", "shell", f"echo {secret}; echo {secret}-err >&2")
    cli.ok("worker", "--once")
    stored = raw_sql(cli.db, "SELECT text FROM task_output WHERE task_id = ?", (task_id,))
    assert stored and all(text.startswith("tqe1:") and secret not in text for (text,) in stored)
    shown = cli.ok("logs", str(task_id))
    assert (shown.stdout, shown.stderr) == (f"{secret}\n", f"{secret}-err\n")
    keyless = cli("--key-file", str(tmp_path / "none.toml"), "logs", str(task_id))
    assert keyless.code == 8 and keyless.stdout == "" and len(keyless.error_lines) == 1
    cli.ok("role", "grant", _me(), "admin")
    cli.ok("role", "grant", "vera", "viewer")
    viewer = cli.ok("logs", str(task_id), "--json", env={"TQCLI_USER": "vera"}).json
    assert viewer["output"] == "<encrypted>\n" and secret not in json.dumps(viewer)
    # A chunk moved to another offset does not decrypt.
    raw_sql(cli.db, "UPDATE task_output SET byte_offset = byte_offset + 1000 WHERE task_id = ?", (task_id,))
    assert "does not decrypt" in cli.ok("logs", str(task_id)).stdout + cli.ok("logs", str(task_id)).stderr


def test_ctrl_c_ends_a_follow_with_exit_130(cli):
    import signal

    task_id = cli.submit("tests.jobs:noop")
    follower = cli.spawn("logs", str(task_id), "--follow")
    time.sleep(1.0)
    follower.send_signal(signal.SIGINT)
    _, err = follower.communicate(timeout=20)
    assert follower.returncode == 130 and err.strip() == "error: interrupted"
