"""Both built-in backends keep the backend contract that third parties test against."""

import json

import pytest

from tqcli.backends.shell import ShellBackend, ShellFailed
from tqcli.backends.simple import SimpleBackend
from tqcli.testing import BackendContract, context


class TestSimpleBackend(BackendContract):
    succeeding_target = "tests.jobs:add"
    failing_target = "tests.jobs:boom"
    payload = {"a": 1, "b": 2}

    @pytest.fixture
    def backend(self):
        return SimpleBackend()

    def test_payload_becomes_keyword_arguments(self, backend):
        assert backend.execute(context("tests.jobs:add", {"a": 2, "b": 40})) == 42

    def test_missing_module_is_a_failure(self, backend):
        with pytest.raises(ModuleNotFoundError):
            backend.execute(context("tests.nope:x"))


class TestShellBackend(BackendContract):
    succeeding_target = "echo ok"
    failing_target = "echo oops >&2; exit 3"
    slow_target = "sleep 30"

    @pytest.fixture
    def backend(self):
        return ShellBackend()

    def test_result_has_exit_code_and_output(self, backend):
        assert backend.execute(context("echo out; echo err >&2")) == {"exit_code": 0, "output": "out\nerr\n"}

    def test_failure_names_the_exit_status_and_output_tail(self, backend):
        with pytest.raises(ShellFailed, match="exit status 3\noops"):
            backend.execute(context("echo oops >&2; exit 3"))

    def test_payload_on_stdin_and_in_the_environment(self, backend):
        payload = {"day": "2026-11-28", "n": 3}
        result = backend.execute(context('cat; echo; echo "$TQCLI_PAYLOAD"; echo "$TQCLI_TASK_ID"', payload, id=42))
        stdin, env, task_id = result["output"].splitlines()
        assert json.loads(stdin) == payload and json.loads(env) == payload and task_id == "42"

    def test_a_payload_nobody_reads_does_not_block(self, backend):
        big = {"blob": "x" * 500_000}
        assert backend.execute(context("true", big))["exit_code"] == 0

    def test_a_big_payload_comes_only_on_stdin(self, backend):
        big = {"blob": "x" * 200_000}
        output = backend.execute(context('wc -c; echo "${TQCLI_PAYLOAD:-unset}"', big))["output"].split()
        assert output == [str(len(json.dumps(big, separators=(",", ":")))), "unset"]

    def test_output_keeps_the_last_4_kib(self, backend):
        output = backend.execute(context("seq 1 20000"))["output"]
        assert len(output.encode()) == 4096 and output.endswith("20000\n")

    def test_output_streams_to_a_callback(self, backend):
        seen = []
        result = backend.execute(context("echo a; sleep 0.05; echo b >&2", on_output=lambda chunk, stream: seen.append((stream, chunk))))
        assert seen == [(1, b"a\n"), (2, b"b\n")], "stdout and stderr are told apart, in the order read"
        assert result["output"] == "a\nb\n", "the result keeps both, in order"

    def test_timeout_ends_the_whole_process_group(self, backend, tmp_path):
        pids = tmp_path / "pids"
        script = f"sleep 30 & echo $! > {pids}; sleep 30"
        from tqcli.backends.base import TaskTimeout

        with pytest.raises(TaskTimeout):
            backend.execute(context(script, timeout=0.5))
        child = int(pids.read_text())
        assert not _alive(child)

    def test_leftover_background_processes_end_with_the_task(self, backend, tmp_path):
        pids = tmp_path / "pids"
        backend.execute(context(f"sleep 30 & echo $! > {pids}"))
        assert not _alive(int(pids.read_text()))

    def test_killed_by_a_signal(self, backend):
        with pytest.raises(ShellFailed, match="killed by signal 9"):
            backend.execute(context("kill -9 $$"))


def _alive(pid):
    import os
    import time

    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        try:
            with open(f"/proc/{pid}/stat") as handle:
                if handle.read().split(") ")[1].startswith("Z"):
                    return False
        except OSError:
            return False
        time.sleep(0.05)
    return True
