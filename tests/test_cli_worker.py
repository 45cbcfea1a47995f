"""Workers, run and --wait as real processes: kills, signals, concurrency, cron, plugins."""

import json
import re
import signal
import subprocess
import sys
import time

from tests.conftest import REPO, TQCLI
from tests.reliability.helpers import wait_until


def gone(pid):
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(") ")[1].startswith("Z")
    except OSError:
        return True


def test_worker_once_drains_and_prints_a_summary(cli):
    for n in range(3):
        cli.submit("tests.jobs:add", "--payload", f'{{"a": {n}, "b": 10}}')
    result = cli.ok("worker", "--once")
    assert result.stdout == ""
    assert re.search(r"ran 3 attempts in [\d.]+ s .*: 3 completed$", result.stderr.strip())
    assert [cli.task(i)["result"] for i in (1, 2, 3)] == [10, 11, 12]


def test_a_killed_worker_loses_its_task_to_the_next_worker(cli, tmp_path):
    marker = tmp_path / "pid"
    cli.submit("tests.jobs:sleepy", "--payload", f'{{"seconds": 2, "marker": "{marker}"}}', "--backoff", "0")
    worker = cli.spawn("worker", "--lease", "2")
    assert wait_until(marker.exists)
    executor_pid = int(marker.read_text())
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    assert wait_until(lambda: gone(executor_pid)), "the attempt must not outlive its worker"
    assert cli.task(1)["state"] == "running"
    time.sleep(2.2)  # let the lease run out
    result = cli.ok("worker", "--once")
    assert "1 reclaimed from lost workers" in result.stderr
    task = cli.task(1)
    assert task["state"] == "completed" and task["attempts"] == 2
    assert [h["outcome"] for h in task["history"]] == ["lost", "completed"]
    assert task["history"][0]["error"] == "worker lost"


def test_a_dead_workers_task_is_taken_over_without_waiting_for_its_lease(cli, tmp_path):
    marker = tmp_path / "pid"
    cli.submit("tests.jobs:sleepy", "--payload", f'{{"seconds": 1, "marker": "{marker}"}}', "--backoff", "0")
    worker = cli.spawn("worker", "--lease", "1h")
    assert wait_until(marker.exists)
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    started = time.monotonic()
    assert "1 reclaimed from lost workers" in cli.ok("worker", "--once").stderr
    assert time.monotonic() - started < 30
    assert cli.task(1)["state"] == "completed"


def test_three_workers_side_by_side_run_each_task_exactly_once(cli, tmp_path):
    ledger = tmp_path / "ledger"
    # Tasks of a few milliseconds, so every worker gets some before the others drain the queue.
    lines = "".join(f'{{"target": "tests.jobs:record", "payload": {{"path": "{ledger}", "value": {n}, "seconds": 0.005}}}}\n' for n in range(300))
    cli.ok("submit", "--from-file", "-", input=lines)
    workers = [cli.spawn("worker", "--once", "--concurrency", "2") for _ in range(3)]
    for worker in workers:
        assert worker.wait(timeout=120) == 0
    runs = ledger.read_text().split()
    assert sorted(map(int, runs)) == list(range(300))
    counts = cli.ok("status", "--json").json["counts"]
    assert counts["completed"] == 300 and counts["running"] == 0
    claims = cli.ok("audit", "log", "--action", "task.claim", "--limit", "1000", "--json").json
    assert len(claims) == 300 and len({e["details"]["worker"] for e in claims}) >= 2
    assert cli.ok("audit", "verify").code == 0
    # The workers committed their counters at the same time: none was lost to another's upsert.
    samples = {(sample["name"], sample["labels"].get("outcome")): sample["value"]
               for sample in cli.ok("metrics", "--format", "json").json if "le" not in sample["labels"]}
    assert samples[("tqcli_task_attempts_total", "completed")] == 300
    assert samples[("tqcli_task_duration_seconds_count", None)] == samples[("tqcli_task_wait_seconds_count", None)] == 300


def test_racing_workers_run_every_live_task_once_and_no_expired_one(cli, tmp_path):
    """Three workers claim at once from tasks of which every third had expired: those are cancelled, never run."""
    ledger = tmp_path / "ledger"
    lines = []
    for n in range(240):
        line = {"target": "tests.jobs:record", "payload": {"path": str(ledger), "value": n, "seconds": 0.003}, "expires": "1h"}
        if n % 3 == 0:
            line["at"] = "2020-01-01T00:00:00Z"  # expired an hour after that
        lines.append(json.dumps(line) + "\n")
    cli.ok("submit", "--from-file", "-", input="".join(lines))
    workers = [cli.spawn("worker", "--once", "--concurrency", "2") for _ in range(3)]
    for worker in workers:
        assert worker.wait(timeout=120) == 0
    assert sorted(map(int, ledger.read_text().split())) == [n for n in range(240) if n % 3], "each live task ran exactly once"
    counts = cli.ok("status", "--json").json["counts"]
    assert counts["completed"] == 160 and counts["cancelled"] == 80 and counts["pending"] == counts["running"] == 0
    cancels = cli.ok("audit", "log", "--action", "task.cancel", "--limit", "0", "--json").json
    assert sorted(entry["task_id"] for entry in cancels) == list(range(1, 241, 3)), "each expired task cancelled once"
    assert all(entry["details"]["reason"] == "expired" for entry in cancels)
    assert cli.ok("audit", "verify").code == 0


def test_sigterm_lets_the_worker_exit_0_with_nothing_left_running(cli):
    (cli.home / "tqcli.toml").write_text('[worker]\ngrace = "1s"\n')
    cli.submit("--backend", "shell", "sleep 30")
    worker = cli.spawn("worker")
    assert wait_until(lambda: cli.task(1)["state"] == "running")
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=20) == 0
    task = cli.task(1)
    assert task["state"] == "pending" and task["attempts"] == 0
    assert task["history"][-1]["outcome"] == "released"


def test_sigterm_waits_for_a_task_that_finishes_within_the_grace(cli):
    cli.submit("--backend", "shell", "sleep 1; echo done")
    worker = cli.spawn("worker")
    assert wait_until(lambda: cli.task(1)["state"] == "running")
    worker.send_signal(signal.SIGINT)
    assert worker.wait(timeout=20) == 0
    assert cli.task(1)["state"] == "completed"


def test_cancel_stops_a_running_shell_task_and_its_children(cli, tmp_path):
    pids = tmp_path / "pids"
    cli.submit("--backend", "shell", f"sleep 60 & echo $! > {pids}.tmp; mv {pids}.tmp {pids}; sleep 60")
    worker = cli.spawn("worker", "--poll", "0.2")
    try:
        assert wait_until(pids.exists)
        child = int(pids.read_text())
        requested = time.monotonic()
        cli.ok("cancel", "1")
        assert wait_until(lambda: cli.task(1)["state"] == "cancelled", timeout=10)
        assert time.monotonic() - requested < 5
        assert wait_until(lambda: gone(child))
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=20)
    assert cli.task(1)["history"][0]["outcome"] == "cancelled"


def test_a_shell_timeout_ends_the_process_group(cli, tmp_path):
    pids = tmp_path / "pids"
    cli.submit("--backend", "shell", f"sleep 60 & echo $! > {pids}.tmp; mv {pids}.tmp {pids}; sleep 60", "--timeout", "1", "--max-retries", "0")
    cli.ok("worker", "--once")
    assert cli.task(1)["error"] == "timed out after 1 s"
    assert wait_until(lambda: gone(int(pids.read_text())))


def test_worker_from_cron_bare_environment_no_terminal_closed_stdin(cli):
    cli.submit("--backend", "shell", "echo from-cron")
    cli.submit("tests.jobs:boom", "--max-retries", "0")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [TQCLI, "--db", str(cli.db), "worker", "--once"], env=env, cwd="/", stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "\x1b[" not in done.stdout + done.stderr
    assert cli.task(1)["result"]["output"] == "from-cron\n"
    assert cli.task(2)["state"] == "failed"


def test_run_streams_shell_output_and_exits_0(cli):
    result = cli("run", "--backend", "shell", "echo one; echo two")
    assert result.code == 0 and result.stdout == "one\ntwo\n"
    assert cli.task(1)["state"] == "completed"


def test_run_prints_a_python_result(cli):
    assert cli.ok("run", "tests.jobs:add", "--payload", '{"a": 20, "b": 22}').stdout == "42\n"


def test_run_retries_in_process_then_exits_1(cli):
    result = cli("run", "tests.jobs:boom", "--max-retries", "2", "--backoff", "0.1")
    assert result.code == 1
    assert result.stderr.count("retrying in") == 2
    assert result.error_lines == ["error: task 1 failed after 3 attempt(s): ValueError: boom"]


def test_run_an_existing_task_by_id(cli):
    task_id = cli.submit("tests.jobs:add", "--payload", '{"a": 1, "b": 2}', "--delay", "1h")
    assert cli.ok("run", "--id", str(task_id)).stdout == "3\n"
    cli.ok("cancel", str(cli.submit("tests.jobs:noop")))
    result = cli("run", "--id", "2")
    assert result.code == 6 and "only a pending task can be run" in result.stderr
    blocked_parent = cli.submit("tests.jobs:noop")
    waiting = cli.submit("tests.jobs:noop", "--depends-on", str(blocked_parent))
    result = cli("run", "--id", str(waiting))
    assert result.code == 6 and f"waiting for task {blocked_parent}" in result.stderr
    assert cli("run", "--id", "99").code == 3
    assert cli("run", "--id", "1", "tests.jobs:noop").code == 2


def test_run_json_prints_the_finished_task(cli):
    result = cli("run", "--backend", "shell", "echo hidden", "--json")
    assert result.code == 0
    assert result.json["state"] == "completed" and result.json["result"]["output"] == "hidden\n"


def test_ctrl_c_on_run_cancels_the_task_it_submitted(cli, tmp_path):
    marker = tmp_path / "started"
    running = cli.spawn("run", "--backend", "shell", f"touch {marker}; sleep 30")
    assert wait_until(marker.exists)
    running.send_signal(signal.SIGINT)
    _, stderr = running.communicate(timeout=30)
    assert running.returncode == 130
    assert stderr.strip().splitlines()[-1] == "error: interrupted: task 1 cancelled"
    assert cli.task(1)["state"] == "cancelled"


def test_ctrl_c_on_run_by_id_puts_the_task_back_once_its_command_is_gone(cli, tmp_path):
    marker = tmp_path / "pid"
    task_id = cli.submit("--backend", "shell", f"echo $$ > {marker}.tmp; mv {marker}.tmp {marker}; exec sleep 30")
    running = cli.spawn("run", "--id", str(task_id))
    assert wait_until(marker.exists)
    command_pid = int(marker.read_text())
    running.send_signal(signal.SIGINT)
    _, stderr = running.communicate(timeout=30)
    assert running.returncode == 130 and "is pending again" in stderr
    assert gone(command_pid), "the command ends before the task is given back"
    task = cli.task(task_id)
    assert task["state"] == "pending" and task["attempts"] == 0
    assert [entry["action"] for entry in cli.ok("audit", "log", "--task", str(task_id), "--json").json][-1] == "task.release"


def test_run_with_a_used_idempotency_key_does_not_run_again(cli):
    first = cli.ok("run", "tests.jobs:add", "--payload", '{"a": 1, "b": 2}', "--idempotency-key", "k1")
    assert first.stdout == "3\n"
    again = cli("run", "tests.jobs:add", "--payload", '{"b": 2, "a": 1}', "--idempotency-key", "k1")
    assert again.code == 0 and again.stdout == "3\n"
    assert "task 1 already has idempotency key 'k1'; nothing was submitted" in again.stderr
    other = cli("run", "tests.jobs:boom", "--idempotency-key", "k1")
    assert other.code == 6 and "held by task 1" in other.error_lines[0]
    assert cli.ok("status", "--json").json["counts"]["completed"] == 1
    assert cli.task(1)["attempts"] == 1


def test_submit_wait_exit_codes(cli):
    cli.create_db()
    worker = cli.spawn("worker", "--poll", "0.1")
    try:
        ok = cli("submit", "tests.jobs:noop", "--wait")
        assert ok.code == 0 and ok.stdout.strip().isdigit()
        bad = cli("submit", "tests.jobs:boom", "--max-retries", "0", "--wait")
        assert bad.code == 1 and bad.error_lines[0].endswith("failed: ValueError: boom")
        slow = cli("submit", "tests.jobs:sleepy", "--payload", '{"seconds": 5}', "--wait", "--wait-timeout", "0.5")
        assert slow.code == 124 and "still running" in slow.stderr
        json_done = cli("submit", "tests.jobs:add", "--payload", '{"a": 1, "b": 1}', "--wait", "--json")
        assert json_done.code == 0 and json_done.json["result"] == 2
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
    assert cli("submit", "tests.jobs:noop", "--wait-timeout", "1").code == 2


def test_dlq_and_breaker_commands(cli):
    cli.submit("tests.jobs:boom", "--max-retries", "0")
    cli.ok("worker", "--once")
    listed = cli.ok("dlq", "list", "--json").json
    assert [t["id"] for t in listed] == [1] and listed[0]["error"] == "ValueError: boom"
    assert cli.ok("dlq", "replay", "1", "--dry-run").stdout == "1\n"
    assert cli.task(1)["state"] == "failed"
    replayed = cli.ok("dlq", "replay", "1", "--json").json
    assert [(t["id"], t["state"], t["attempts"]) for t in replayed] == [(1, "pending", 0)]
    cli.ok("worker", "--once")
    assert cli("dlq", "purge", "--all").code == 2
    assert cli.ok("dlq", "purge", "--all", "--yes").stdout == "1\n"
    cli.submit("tests.jobs:boom", "--max-retries", "0")
    cli.ok("worker", "--once")
    assert cli.ok("dlq", "replay", "--all").stdout == "2\n"
    cli.ok("worker", "--once")
    purged = cli.ok("dlq", "purge", "2", "--yes", "--json").json
    assert [(t["id"], t["state"]) for t in purged] == [(2, "failed")]
    assert cli("status", "1").code == 3
    breakers = cli.ok("breaker", "list", "--json").json
    assert breakers[0]["key"] == "simple:tests.jobs:boom" and breakers[0]["failures"] == 4
    cli.ok("breaker", "set", "simple:tests.jobs:boom", "--failure-threshold", "1", "--recovery-timeout", "1h")
    cli.ok("breaker", "set", "--default", "--failure-threshold", "9")
    assert cli("breaker", "set", "--failure-threshold", "1").code == 2
    cli.ok("breaker", "reset", "simple:tests.jobs:boom")
    assert cli("breaker", "reset", "nope").code == 3
    assert cli("dlq", "replay", "7").code == 3


def test_circuit_open_shows_in_status(cli):
    cli.ok("breaker", "set", "--default", "--failure-threshold", "1", "--recovery-timeout", "1h")
    cli.submit("tests.jobs:boom", "--max-retries", "0")
    second = cli.submit("tests.jobs:boom")
    cli.ok("worker", "--once")
    task = cli.task(second)
    assert task["state"] == "pending" and task["attempts"] == 0 and task["waiting"] == "circuit open"
    assert cli.ok("breaker", "list", "--json").json[0]["state"] == "open"


def test_plugins_lists_the_builtin_backends(cli):
    found = cli.ok("plugins", "--json").json
    assert {(p["name"], p["distribution"], p["status"]) for p in found} >= {("simple", "tqcli", "ok"), ("shell", "tqcli", "ok")}


PLUGIN = '''
class EchoBackend:
    """Returns its payload, prefixed with its target."""

    def execute(self, ctx):
        return {"echo": ctx.target, "payload": ctx.payload, "attempt": ctx.attempt}
'''


def test_a_third_party_backend_from_another_distribution(cli, tmp_path):
    project = tmp_path / "tqcli-echo"
    (project / "tqcli_echo").mkdir(parents=True)
    (project / "tqcli_echo" / "__init__.py").write_text(PLUGIN)
    (project / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "tqcli-echo"\nversion = "1.0"\n'
        '[project.entry-points."tqcli.backends"]\necho = "tqcli_echo:EchoBackend"\n'
    )
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site), str(project)],
        check=True, capture_output=True, timeout=180,
    )
    env = {"PYTHONPATH": f"{site}:{REPO}"}
    cli.ok("submit", "--backend", "echo", "hello", "--payload", '{"n": 1}', env=env)
    assert cli("submit", "--backend", "echo", "hello").code == 2  # without the distribution it is unknown
    assert any(p["name"] == "echo" and p["distribution"] == "tqcli_echo" for p in cli.ok("plugins", "--json", env=env).json)
    cli.ok("worker", "--once", env=env)
    assert cli.task(1)["result"] == {"echo": "hello", "payload": {"n": 1}, "attempt": 1}


def test_submit_wait_ends_when_the_task_becomes_blocked(cli):
    first = cli.submit("tests.jobs:boom", "--max-retries", "0")
    waiting = cli.spawn("submit", "tests.jobs:noop", "--depends-on", str(first), "--wait")
    time.sleep(0.5)
    cli.ok("worker", "--once")
    out, err = waiting.communicate(timeout=30)
    assert waiting.returncode == 1
    assert err.strip().splitlines()[-1] == f"error: task {first + 1} is blocked: task {first} failed"


def test_a_worker_never_creates_a_database(cli, tmp_path):
    mistyped = tmp_path / "nosuch" / "jobs.db"
    result = cli("--db", str(mistyped), "worker", "--once")
    assert result.code == 3 and "no database at" in result.error_lines[0]
    assert not mistyped.parent.exists()


def test_worker_once_is_silent_when_there_was_nothing_to_do(cli):
    cli.create_db()
    idle = cli("worker", "--once")
    assert (idle.code, idle.stdout, idle.stderr) == (0, "", "")
    cli.submit("tests.jobs:boom", "--max-retries", "0")
    busy = cli("worker", "--once")
    assert busy.code == 0 and "ran 1 attempt" in busy.stderr and "1 failed" in busy.stderr


def test_worker_quiet_prints_no_task_failures_and_no_summary(cli):
    cli.submit("tests.jobs:boom", "--max-retries", "0")
    quiet = cli("worker", "--once", "--quiet")
    assert (quiet.code, quiet.stderr) == (0, "")
    assert cli.task(1)["state"] == "failed"


def test_the_readme_crontab_line_mails_nothing_while_idle(cli):
    """The README's crontab line, run as cron would (no terminal, a minute apart), prints nothing without news."""
    import re
    import shlex

    readme = (REPO / "README.md").read_text()
    line = re.search(r"```cron\n(.+)\n```", readme).group(1)
    argv = shlex.split(line)[5:]  # after the five cron fields
    assert argv[:3] == ["tqcli", "--db", "/srv/jobs.db"] and "--once" in argv
    argv[2] = str(cli.db)
    cli.create_db()
    cli.submit("tests.jobs:noop", "--delay", "1h")  # work that is not due yet is no news either
    cli.ok("schedule", "add", "yearly", "--cron", "@yearly", "tests.jobs:noop")
    for _ in range(3):
        run = cli(*argv[1:], env={"TERM": None})
        assert (run.code, run.stdout, run.stderr) == (0, "", "")


def test_run_keeps_its_task_from_a_running_worker(cli):
    """`run` submits and claims in one transaction, and holds the task between attempts: no worker takes it."""
    cli.create_db()
    worker = cli.spawn("worker", "--poll", "0.05")
    try:
        for _ in range(3):
            result = cli("run", "--backend", "shell", "echo ran-here")
            assert result.code == 0, result.stderr
            assert result.stdout.startswith("ran-here")
        failing = cli("run", "--backend", "shell", "exit 2", "--max-retries", "1", "--backoff", "0.3")
        assert failing.code == 1, failing.stderr
        task_id = int(failing.stderr.split("task ", 1)[1].split()[0])
        history = cli.task(task_id)["history"]
        assert [item["worker"].startswith("run:") for item in history] == [True, True], history
    finally:
        worker.terminate()
        worker.wait(timeout=60)
