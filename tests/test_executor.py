"""One attempt's trouble stays in that attempt, and nothing an attempt starts outlives it."""

import json

import pytest

from tests.conftest import sql_shell
from tests.test_cli_worker import wait_until
from tqcli.backends.executor import ExecutorProcess


def _request(token, target, *, backend="simple", payload="{}", timeout=None, service=None):
    request = {"token": token, "id": token, "claim": 1, "backend": backend, "target": target, "payload": payload, "attempt": 1, "timeout": timeout}
    return {**request, "service": service} if service else request


@pytest.fixture
def executor():
    process = ExecutorProcess()
    yield process
    process.close()


def test_a_cancel_for_a_finished_attempt_never_lands_on_the_next_one(executor):
    executor.send(_request(1, "true", backend="shell"), _request(2, "sleep 0.6; echo second", backend="shell"))
    first = executor.next_reply(stop_reason=lambda: None)
    assert first["token"] == 1 and first["ok"]
    executor.cancel(1)  # the worker's cancel for attempt 1 arrives just after it ended
    second = executor.next_reply(stop_reason=lambda: None)
    assert second["token"] == 2 and second["ok"], second
    assert json.loads(second["result"])["output"] == "second\n"


def test_a_payload_that_does_not_decode_fails_that_attempt_only(executor):
    executor.send(_request(1, "tests.jobs:noop", payload="{not json"), _request(2, "tests.jobs:add", payload='{"a": 1, "b": 2}'))
    bad = executor.next_reply(stop_reason=lambda: None)
    assert not bad["ok"] and bad["final"] and "not valid JSON" in bad["error"]
    good = executor.next_reply(stop_reason=lambda: None)
    assert good["ok"] and good["result"] == "3"


def test_a_payload_nested_half_a_million_deep_fails_that_attempt_only(executor):
    deep = '{"a":' * 500_000 + "1" + "}" * 500_000  # 1 MiB of nesting
    executor.send(_request(1, "tests.jobs:noop", payload=deep), _request(2, "tests.jobs:noop"))
    bad = executor.next_reply(stop_reason=lambda: None)
    assert not bad["ok"] and bad["final"] and "nests too deeply" in bad["error"]
    assert executor.next_reply(stop_reason=lambda: None)["ok"]


def test_a_result_nested_ten_thousand_deep_fails_without_killing_the_executor(executor):
    executor.send(_request(1, "tests.jobs:deep_result"), _request(2, "tests.jobs:noop"))
    bad = executor.next_reply(stop_reason=lambda: None)
    assert not bad["ok"] and bad["final"] and "nests too deeply" in bad["error"]
    assert executor.next_reply(stop_reason=lambda: None)["ok"]


def _replies(executor, count):
    replies = [executor.next_reply(stop_reason=lambda: None) for _ in range(count)]
    return {reply["token"]: "ok" if reply.get("ok") else "returned" if reply.get("returned") else "failed" for reply in replies}


def test_a_failure_gives_back_unstarted_what_waits_behind_it_of_its_service_alone(executor):
    executor.send(
        _request(1, "tests.jobs:boom", service="down"), _request(2, "tests.jobs:noop", service="down"),
        _request(3, "tests.jobs:noop", service="up"), _request(4, "tests.jobs:noop", service="down"),
    )
    assert _replies(executor, 4) == {1: "failed", 2: "returned", 3: "ok", 4: "returned"}


def test_a_failed_service_runs_again_once_the_worker_acknowledged_the_failure(executor):
    executor.send(_request(1, "tests.jobs:boom", service="down"))
    assert _replies(executor, 1) == {1: "failed"}
    executor.send(_request(2, "tests.jobs:noop", service="down"))  # sent before the worker read the failure
    assert _replies(executor, 1) == {2: "returned"}
    executor.acknowledge(1)
    executor.send(_request(3, "tests.jobs:noop", service="down"), _request(4, "tests.jobs:boom"))
    assert _replies(executor, 2) == {3: "ok", 4: "failed"}


def test_a_task_that_closes_stdout_does_not_break_the_next_one(executor):
    executor.send(_request(1, "tests.jobs:close_stdout"), _request(2, "tests.jobs:say"))
    assert executor.next_reply(stop_reason=lambda: None)["ok"]
    after = executor.next_reply(stop_reason=lambda: None)
    assert after["ok"], after


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


@pytest.mark.parametrize("ending", ["timeout", "success"])
def test_a_setsid_daemon_started_by_a_shell_task_is_gone_after_the_attempt(cli, tmp_path, ending):
    pid_file = tmp_path / "daemon.pid"
    tail = "sleep 30" if ending == "timeout" else "true"
    script = f"setsid sh -c 'echo $$ > {pid_file}; exec sleep 300' < /dev/null > /dev/null 2>&1 & sleep 0.3; {tail}"
    cli.submit("--backend", "shell", script, "--timeout", "2", "--max-retries", "0")
    cli("worker", "--once")
    assert wait_until(pid_file.exists, timeout=5)
    daemon = int(pid_file.read_text())
    assert wait_until(lambda: not _alive(daemon), timeout=5), "the daemon outlived its task"
    task = cli.task(1)
    assert task["state"] == ("failed" if ending == "timeout" else "completed"), task["error"]


def test_what_an_attempt_leaves_behind_is_ended_while_quick_attempts_keep_the_line_busy(executor, tmp_path):
    pid_file = tmp_path / "daemon.pid"
    script = f"setsid sleep 300 < /dev/null > /dev/null 2>&1 & echo $! > {pid_file}"  # quick: nothing is given back
    quick = [_request(token, "true", backend="shell") for token in range(1, 300)]
    executor.send(*quick[:20], _request(300, script, backend="shell"), *quick[20:])
    replies = [executor.next_reply(stop_reason=lambda: None) for _ in range(21)]
    assert all(reply["ok"] for reply in replies) and replies[-1]["token"] == 300
    daemon = int(pid_file.read_text())
    ended_after = None
    for count in range(1, 280):
        assert executor.next_reply(stop_reason=lambda: None)["ok"]
        if ended_after is None and not _alive(daemon):
            ended_after = count
    # Checked every 10 ms in a busy line: long before the quick attempts behind it end.
    assert ended_after is not None and ended_after < 200, f"the daemon ended only {ended_after} attempts later" if ended_after else "the daemon outlived the whole line"


def test_a_setsid_daemon_started_by_a_python_task_is_gone_after_the_attempt(cli, tmp_path):
    pid_file = tmp_path / "daemon.pid"
    cli.submit("tests.jobs:start_daemon", "--payload", json.dumps({"pid_file": str(pid_file)}))
    cli.ok("worker", "--once")
    daemon = int(pid_file.read_text())
    assert wait_until(lambda: not _alive(daemon), timeout=5), "the daemon outlived its task"
    assert cli.task(1)["state"] == "completed"


def test_a_corrupt_payload_written_with_a_sql_shell_fails_without_retry(cli):
    bad = cli.submit("tests.jobs:noop", "--max-retries", "3")
    good = cli.submit("tests.jobs:add", "--payload", '{"a": 2, "b": 3}')
    sql_shell(cli.db, f"UPDATE tasks SET payload = '{{\"a\": ' WHERE id = {bad};")
    run = cli("worker", "--once")
    assert run.code == 0, run.stderr
    task = cli.task(bad)
    assert task["state"] == "failed" and task["attempts"] == 1
    assert "stored payload is not valid JSON" in task["error"]
    assert cli.task(good)["state"] == "completed"


def test_a_result_that_is_not_json_fails_without_retry(cli):
    cli.submit("tests.jobs:not_json", "--max-retries", "3", "--backoff", "0")
    cli.ok("worker", "--once")
    task = cli.task(1)
    assert task["state"] == "failed" and task["attempts"] == 1
    assert "not JSON-serialisable" in task["error"]



def _cgroups_usable():
    from tqcli.backends import cgroups

    group = cgroups.create("probe", "probe")
    if group is None:
        return False
    cgroups.kill(group, remove=True)
    return True


@pytest.mark.skipif(not _cgroups_usable(), reason="needs a writable cgroup v2 hierarchy with cgroup.kill")
def test_where_cgroups_can_be_made_an_attempt_runs_in_its_slots_cgroup_and_nothing_outlives_it(cli, tmp_path):
    seen, pid_file = tmp_path / "cgroup", tmp_path / "daemon.pid"
    # A daemon with an empty environment (no markers) in a session of its own.
    script = f"cat /proc/self/cgroup > {seen}; env -i setsid sh -c 'echo $$ > {pid_file}; exec sleep 300' </dev/null >/dev/null 2>&1 & sleep 30"
    cli.submit("--backend", "shell", script, "--timeout", "1", "--max-retries", "0")
    cli("worker", "--once")
    assert "/tqcli-" in seen.read_text()
    daemon = int(pid_file.read_text())
    assert wait_until(lambda: not _alive(daemon), timeout=5), "the daemon outlived its task"


def test_a_task_that_closes_descriptors_1_and_2_does_not_break_the_next_one(executor):
    executor.send(_request(1, "tests.jobs:close_descriptors"), _request(2, "tests.jobs:print_both"))
    assert executor.next_reply(stop_reason=lambda: None)["ok"]
    after = executor.next_reply(stop_reason=lambda: None)
    assert after["ok"], after


def test_a_shell_timeout_ends_the_attempt_without_waiting_out_the_grace(cli):
    import time

    cli.submit("--backend", "shell", "sleep 30", "--timeout", "1", "--max-retries", "0")
    started = time.monotonic()
    cli("worker", "--once")
    assert time.monotonic() - started < 2.8, "the stop waited out the whole kill grace"
    assert "timed out" in cli.task(1)["error"]
