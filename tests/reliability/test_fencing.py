"""No task runs twice at once, whatever happens to its worker: stopped, killed in a long C call, seen or not.

Each task holds an exclusive file lock while it runs and writes `overlap`
to its ledger if it ever finds the lock taken: that would be two runs of
one task at the same time. A rescuer in a PID namespace of its own cannot
see the first worker's processes, as a worker on another host could not,
so only the lease and the fence keep the runs apart.
"""

import json
import shutil
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import TQCLI
from tests.reliability.helpers import consistency_problems
from tests.test_cli_worker import wait_until

pytestmark = pytest.mark.slow


def _can_unshare() -> bool:
    if shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"], capture_output=True).returncode == 0


NEEDS_UNSHARE = pytest.mark.skipif(not _can_unshare(), reason="needs unshare --pid")
RESCUER_IDS = {"same": "rescuer-sees-the-worker", "namespace": "rescuer-in-own-pid-namespace"}
# Every pair of store, backend and rescuer is covered by four runs instead of all eight (each takes 5-8 s):
# what could go wrong lives in a pair (a backend's processes on one store, a rescuer's view on one store).
PAIRWISE = [
    pytest.param(store, backend, rescuer, id=f"{store}-{backend}-{RESCUER_IDS[rescuer]}", marks=[NEEDS_UNSHARE] if rescuer == "namespace" else [])
    for store, backend, rescuer in (
        ("sqlite", "simple", "same"), ("sqlite", "shell", "namespace"), ("postgres", "simple", "namespace"), ("postgres", "shell", "same"),
    )
]


def _submit_exclusive(cli, tmp_path, backend, *, seconds, c_call):
    lock, ledger = tmp_path / "lock", tmp_path / "ledger"
    args = {"lock": str(lock), "ledger": str(ledger), "seconds": seconds, "c_call": c_call}
    if backend == "simple":
        cli.submit("tests.jobs:exclusive", "--payload", json.dumps(args), "--backoff", "0")
    else:
        code = f"from tests.jobs import exclusive; exclusive(**{args!r})"
        cli.submit("--backend", "shell", f"{sys.executable} -c \"{code}\"", "--backoff", "0")
    return ledger


def _rescue(cli, rescuer):
    """Run `worker --once` until the task is finished, the way the rescuer sees the world."""
    prefix = ["unshare", "--pid", "--fork", "--mount-proc"] if rescuer == "namespace" else []
    for _ in range(40):
        subprocess.run([*prefix, TQCLI, "worker", "--once", "--lease", "2"], env=cli.env, cwd=cli.cwd, capture_output=True, timeout=120)
        if cli.task(1)["state"] in ("completed", "failed"):
            return
        time.sleep(0.25)


def _assert_ran_apart_and_completed_after_a_takeover(cli, ledger):
    text = ledger.read_text()
    assert "overlap" not in text, text
    task = cli.task(1)
    assert task["state"] == "completed", task
    assert [h["outcome"] for h in task["history"]] == ["lost", "completed"]
    assert consistency_problems(cli.db) == []


def _started(ledger):
    return ledger.exists() and ledger.read_text().count("start") >= 1


@pytest.mark.parametrize(("store_kind", "backend", "rescuer"), PAIRWISE)
def test_a_stopped_workers_task_is_ended_before_another_worker_runs_it(cli, tmp_path, backend, rescuer):
    ledger = _submit_exclusive(cli, tmp_path, backend, seconds=4, c_call=False)
    stopped = cli.spawn("worker", "--lease", "2", "--poll", "0.2")
    try:
        assert wait_until(lambda: _started(ledger), timeout=20)
        stopped.send_signal(signal.SIGSTOP)  # as Ctrl-Z would; its executor is in a session of its own
        time.sleep(2.5)  # past the lease
        _rescue(cli, rescuer)
    finally:
        stopped.send_signal(signal.SIGCONT)
        stopped.send_signal(signal.SIGTERM)
        stopped.wait(timeout=60)
    _assert_ran_apart_and_completed_after_a_takeover(cli, ledger)


@pytest.mark.parametrize(("store_kind", "backend", "rescuer"), PAIRWISE)
def test_a_killed_workers_task_inside_a_long_c_call_never_overlaps_its_rerun(cli, tmp_path, backend, rescuer):
    ledger = _submit_exclusive(cli, tmp_path, backend, seconds=3, c_call=True)
    killed = cli.spawn("worker", "--lease", "2", "--poll", "0.2")
    assert wait_until(lambda: _started(ledger), timeout=20)
    time.sleep(0.3)  # well inside sum(range(...)), where no Python signal handler runs
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    _rescue(cli, rescuer)
    _assert_ran_apart_and_completed_after_a_takeover(cli, ledger)
