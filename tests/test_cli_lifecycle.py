"""wait, restart, edit, prune, workers, --expires, --cwd/--env and what status shows of runs, through the CLI."""

import json
import time

from tests.conftest import Cli


def test_wait_exit_codes_and_json(cli: Cli):
    good = cli.submit("tests.jobs:noop")
    bad = cli.submit("tests.jobs:boom", "--max-retries", "0")
    cli.ok("worker", "--once")
    assert cli.ok("wait", str(good)).stdout == ""
    both = cli("wait", str(good), str(bad), "--json")
    assert both.code == 1 and set(both.json) == {str(good), str(bad)}
    assert both.json[str(bad)]["state"] == "failed" and both.json[str(bad)]["history"][0]["error"] == "ValueError: boom"
    assert both.error_lines == [f"error: task {bad} failed: ValueError: boom"]
    assert "| ValueError: boom" in both.stderr, "the traceback's tail explains the failure"
    unknown = cli("wait", str(good), "99")
    assert unknown.code == 3 and "task 99 does not exist" in unknown.error_lines[0]


def test_wait_times_out_with_124_and_says_once_that_no_worker_runs(cli: Cli):
    task_id = cli.submit("tests.jobs:noop")
    result = cli("wait", str(task_id), "--timeout", "3s")
    assert result.code == 124 and f"task {task_id} is still pending after 3 s" in result.error_lines[0]
    assert result.stderr.count("no worker has sent a heartbeat") == 1


def test_submit_wait_shows_the_output_tail_of_a_failed_shell_task(cli: Cli):
    cli.create_db()
    worker = cli.spawn("worker", "--poll", "0.1")
    try:
        deadline = time.monotonic() + 20
        while not cli.ok("workers", "--json").json and time.monotonic() < deadline:
            time.sleep(0.05)
        result = cli("submit", "--backend", "shell", "echo first; echo last >&2; exit 4", "--max-retries", "0", "--wait")
    finally:
        worker.terminate()
        worker.communicate(timeout=30)
    assert result.code == 1 and result.error_lines == ["error: task 1 failed: exit status 4"]
    assert "| first" in result.stderr and "| last" in result.stderr
    assert "no worker has sent a heartbeat" not in result.stderr


def test_restart_and_its_conflict(cli: Cli):
    old = cli.submit("tests.jobs:add", "--payload", '{"a": 1, "b": 2}', "--idempotency-key", "k")
    assert cli("restart", str(old)).code == 6
    cli.ok("worker", "--once")
    new = int(cli.ok("restart", str(old), "--priority", "7").stdout)
    task = cli.task(new)
    assert task["restarted_from"] == old and task["priority"] == 7 and task["idempotency_key"] is None
    assert task["payload"] == {"a": 1, "b": 2}
    assert cli("restart", "99").code == 3


def test_edit_prints_what_changed_and_refuses_finished_tasks(cli: Cli):
    task_id = cli.submit("tests.jobs:noop", "--delay", "1h")
    edited = cli.ok("edit", str(task_id), "--priority", "3", "--target", "tests.jobs:add")
    assert f"task {task_id}: priority 0 -> 3" in edited.stderr and "name tests.jobs:noop -> tests.jobs:add" in edited.stderr
    assert cli.ok("edit", str(task_id), "--priority", "3").stderr == "nothing changed\n"
    entries = cli.ok("audit", "log", "--action", "task.edit", "--json").json
    assert len(entries) == 1 and entries[0]["details"]["priority"] == {"from": 0, "to": 3}
    bad = cli("edit", str(task_id), "--priority", "500")
    assert bad.code == 2 and bad.error_lines[0].startswith("error: invalid priority")
    cli.ok("cancel", str(task_id))
    assert cli("edit", str(task_id), "--priority", "1").code == 6


def test_prune_needs_yes_or_dry_run_and_prints_ids(cli: Cli):
    first = cli.submit("tests.jobs:noop")
    cli.ok("worker", "--once")
    assert cli("prune", "--older-than", "0").code == 2
    assert cli("prune", "--yes").code == 2
    assert cli("prune", "--older-than", "0", "--state", "pending", "--yes").code == 2
    assert cli.ok("prune", "--older-than", "0", "--dry-run").stdout == f"{first}\n"
    assert cli.ok("prune", "--older-than", "1d", "--yes").stdout == ""
    assert cli.ok("prune", "--older-than", "0", "--yes").stdout == f"{first}\n"
    assert cli("status", str(first)).code == 3
    assert cli.ok("audit", "verify", "--json").json["intact"]


def test_workers_lists_a_running_worker_and_its_task(cli: Cli, tmp_path):
    marker = tmp_path / "started"
    task_id = cli.submit("tests.jobs:sleepy", "--payload", json.dumps({"seconds": 30, "marker": str(marker)}))
    worker = cli.spawn("worker", "--id", "busy-1", "--poll", "0.1")
    try:
        deadline = time.monotonic() + 20
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        (seen,) = cli.ok("workers", "--json").json
        assert seen["id"] == "busy-1" and seen["alive"] and seen["running"] == [task_id] and seen["pid"] == worker.pid
        assert "busy-1" in cli.ok("workers").stdout
    finally:
        worker.terminate()
        time.sleep(0.5)
        worker.terminate()  # the second signal stops the 30 s task now rather than waiting it out
        worker.communicate(timeout=30)
    (gone,) = cli.ok("workers", "--json").json
    assert not gone["alive"] and gone["running"] == [] and gone["stopped_at"] is not None


def test_an_expired_task_is_cancelled_by_the_next_worker(cli: Cli):
    task_id = cli.submit("tests.jobs:noop", "--at", "2020-01-01T00:00:00Z", "--expires", "1m")
    assert cli.task(task_id)["waiting"] == "expired"
    result = cli.ok("worker", "--once")
    assert "1 expired" in result.stderr
    task = cli.task(task_id)
    assert task["state"] == "cancelled" and task["error"] == "expired" and task["attempts"] == 0
    assert cli("submit", "tests.jobs:noop", "--expires", "0s").code == 2


def test_shell_tasks_run_in_their_cwd_with_their_env(cli: Cli, tmp_path):
    folder = tmp_path / "work here"
    folder.mkdir()
    task_id = cli.submit("--backend", "shell", 'pwd; printf "%s\\n" "$GREETING"', "--cwd", str(folder), "--env", "GREETING=hi there")
    here = cli.submit("--backend", "shell", "pwd", "--cwd", ".")
    cli.ok("worker", "--once")
    assert cli.task(task_id)["result"]["output"] == f"{folder}\nhi there\n"
    assert cli.task(here)["cwd"] == str(cli.cwd) and cli.task(here)["result"]["output"] == f"{cli.cwd}\n"
    assert cli("submit", "tests.jobs:noop", "--cwd", "/tmp").code == 2
    assert cli("submit", "--backend", "shell", "true", "--env", "NOEQUALS").code == 2
    assert cli("submit", "--backend", "shell", "true", "--env", "TQCLI_TASK_ID=1").code == 2
    missing = cli.submit("--backend", "shell", "true", "--cwd", str(tmp_path / "nowhere"), "--max-retries", "0")
    cli.ok("worker", "--once")
    assert "does not exist on this worker's host" in cli.task(missing)["error"]


def test_status_shows_runs_after_a_replay_and_the_traceback(cli: Cli):
    task_id = cli.submit("tests.jobs:boom", "--max-retries", "0")
    cli.ok("worker", "--once")
    cli.ok("dlq", "replay", str(task_id))
    cli.ok("worker", "--once")
    shown = cli.ok("status", str(task_id)).stdout
    assert "-- run 2: replayed " in shown and " by " in shown
    assert "traceback of attempt 1:" in shown and shown.rstrip().endswith("ValueError: boom")
    history = cli.task(task_id)["history"]
    assert [(item["run"], item["attempt"]) for item in history] == [(1, 1), (2, 1)]


def test_status_names_an_open_circuit(cli: Cli):
    cli.ok("breaker", "set", "svc", "--failure-threshold", "1")
    cli.submit("tests.jobs:boom", "--service", "svc", "--max-retries", "0")
    cli.ok("worker", "--once")
    waiting = cli.submit("tests.jobs:noop", "--service", "svc")
    task = cli.task(waiting)
    assert task["waiting"] == "circuit open" and task["waiting_detail"]["service"] == "svc"
    shown = cli.ok("status", str(waiting))
    assert "circuit svc is open: its trial is due at " in shown.stderr and "'tqcli breaker reset svc'" in shown.stderr


def test_run_keeps_stdout_and_stderr_apart_and_json_errors_on_one_line(cli: Cli, tmp_path):
    shown = cli("run", "--backend", "shell", "echo to-out; echo to-err >&2; exit 3", "--max-retries", "0", "--cwd", str(tmp_path))
    assert shown.code == 1 and shown.stdout == "to-out\n" and "to-err\n" in shown.stderr
    as_json = cli("run", "--backend", "shell", "echo to-out; echo to-err >&2; exit 3", "--max-retries", "0", "--json")
    assert as_json.code == 1 and as_json.json["state"] == "failed"
    assert as_json.stderr.splitlines()[-1] == f"error: task {as_json.json['id']} failed after 1 attempt(s): exit status 3"
    env = cli.ok("run", "--backend", "shell", 'echo "$WHO"', "--env", "WHO=me")
    assert env.stdout == "me\n"


def test_a_timed_out_wait_with_json_still_prints_the_task(cli: Cli):
    result = cli("submit", "tests.jobs:noop", "--wait", "--wait-timeout", "0.3s", "--json")
    assert result.code == 124 and result.json["id"] == 1 and result.json["state"] == "pending"


def test_filters_with_impossible_names_are_refused(cli: Cli):
    cli.submit("tests.jobs:noop")
    for args in (["status", "--queue", "bad q"], ["dlq", "list", "--tenant", ""], ["dlq", "purge", "--all", "--queue", "x y", "--dry-run"]):
        result = cli(*args)
        assert result.code == 2 and "use 1-64 characters" in result.error_lines[0], args


def test_restart_on_another_backend_drops_the_shell_settings_and_run_checks_its_cwd(cli: Cli, tmp_path):
    old = cli.submit("--backend", "shell", "true", "--cwd", str(tmp_path), "--env", "EMPTY=")
    assert cli.task(old)["env"] == {"EMPTY": ""}, "an empty value is a value"
    cli.ok("cancel", str(old))
    new = cli.task(int(cli.ok("restart", str(old), "--backend", "simple", "--target", "tests.jobs:noop").stdout))
    assert new["backend"] == "simple" and new["cwd"] is None and new["env"] == {}
    unknown = cli("restart", str(old), "--backend", "nope")
    assert unknown.code == 2 and "unknown backend 'nope'" in unknown.error_lines[0]
    file = tmp_path / "a-file"
    file.write_text("")
    bad = cli("run", "--backend", "shell", "pwd", "--cwd", str(file))
    assert bad.code == 2 and "is not a directory on this host" in bad.error_lines[0]
    assert sum(cli.ok("status", "--json").json["counts"].values()) == 2, "run submitted nothing"


def test_a_killed_worker_on_this_host_is_not_listed_as_alive(cli: Cli, tmp_path):
    import signal

    marker = tmp_path / "started"
    cli.submit("tests.jobs:sleepy", "--payload", json.dumps({"seconds": 30, "marker": str(marker)}))
    worker = cli.spawn("worker", "--id", "doomed", "--poll", "0.1")
    deadline = time.monotonic() + 20
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    worker.send_signal(signal.SIGKILL)
    worker.communicate(timeout=30)
    (seen,) = cli.ok("workers", "--json").json
    assert seen["id"] == "doomed" and not seen["alive"]  # its heartbeat is recent, but this host sees it gone
