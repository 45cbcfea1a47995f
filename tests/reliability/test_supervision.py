"""A supervised worker: a slot that fails is recorded and restarted once; a second failure stops the worker cleanly.

The failure is injected from outside the product, as the operating system
would cause it: a `sitecustomize` module on the worker's PYTHONPATH makes
starting an executor fail with EMFILE (too many open files).
"""

import textwrap

import pytest

pytestmark = pytest.mark.slow

INJECT = """
import errno, os, subprocess

_real_init = subprocess.Popen.__init__
_left = int(os.environ.get("TQCLI_TEST_EMFILE", "0"))

def _init(self, args, *rest, **kwargs):
    global _left
    if _left and any("tqcli.backends.executor" in str(arg) for arg in args):
        _left -= 1
        raise OSError(errno.EMFILE, "Too many open files")
    _real_init(self, args, *rest, **kwargs)

subprocess.Popen.__init__ = _init
"""


@pytest.fixture
def emfile(tmp_path, cli):
    """`count` failed executor starts in each worker run (-1: every one)."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(textwrap.dedent(INJECT))

    def env(count):
        return {"PYTHONPATH": f"{site}:{cli.env['PYTHONPATH']}", "TQCLI_TEST_EMFILE": str(count)}

    return env


def test_one_failed_executor_start_is_survived_and_the_task_runs(cli, emfile):
    task = cli.submit("tests.jobs:add", "--payload", '{"a": 1, "b": 2}')
    run = cli("worker", "--once", env=emfile(1), timeout=60)
    assert run.code == 0, run.stderr
    assert "a worker slot failed (OSError: [Errno 24] Too many open files)" in run.stderr
    assert "Traceback" not in run.stderr
    done = cli.task(task)
    assert done["state"] == "completed" and done["result"] == 3 and done["attempts"] == 1


def test_a_slot_that_keeps_failing_stops_the_worker_with_exit_70_and_gives_its_task_back(cli, emfile):
    task = cli.submit("tests.jobs:noop")
    run = cli("worker", "--once", env=emfile(-1), timeout=60)
    assert run.code == 70, run.stderr
    assert run.error_lines and "a worker slot failed twice" in run.error_lines[0]
    assert "Traceback" not in run.stderr
    left = cli.task(task)
    assert left["state"] == "pending" and left["attempts"] == 0
    cli.ok("worker", "--once")  # without the fault it runs
    assert cli.task(task)["state"] == "completed"


def test_a_long_running_worker_that_keeps_failing_stops_too(cli, emfile):
    cli.submit("tests.jobs:noop")
    worker = cli.spawn("worker", "--poll", "0.1", env=emfile(-1))
    assert worker.wait(timeout=60) == 70
    assert cli.task(1)["state"] == "pending"
