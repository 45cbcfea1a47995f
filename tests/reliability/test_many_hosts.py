"""Many hosts, for real: workers on three hosts (network, PID and UTS namespaces) share one PostgreSQL over veth links.

tests/hosts.py makes the hosts: each worker runs in a network namespace
whose only link leads to the database namespace, in a PID namespace of its
own, under a hostname of its own. No worker can see another's processes,
so tqcli's same-host shortcuts (a lease whose holder is known to be gone is
taken over at once, its processes are killed first) never apply: only the
cross-host rules, lease expiry and the fencing token, keep a task from
running twice. Every run of a task appends `start` and `end` lines to one
shared event log (tests/hostjobs.py), on the machine-wide monotonic clock;
the long tasks also hold a file lock while they run, so a run that starts
while another still lives, even a killed one's, is caught.

One test, in two phases on one database:
1. 200 short tasks, three workers (one per host, --concurrency 2): each
   task runs exactly once, on whichever host claimed it.
2. Under the load of 100 more short tasks, a worker on host 1 is SIGKILLed
   and one on host 2 SIGSTOPped in the middle of a long task each; a
   rescuer on host 3 takes both over, only once their leases expired,
   without overlap; the stopped worker's attempt was ended by its fence,
   and once it is continued it records nothing over the rescuer's.
Then `tqcli audit verify` passes: one chain, no fork.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections import Counter
from pathlib import Path

import psycopg
import pytest

import tqcli
from tests import hostjobs, hosts, pgserver
from tests.conftest import REPO, TQCLI

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

LEASE = 2.0  # seconds: a renewal every LEASE/3, the fence ends an attempt LEASE/3 before the lease expires
SHORT = 200
MORE = 100
WORKER = ["worker", "--concurrency", "2", "--lease", f"{LEASE:g}", "--poll", "0.2"]


@pytest.fixture(scope="module")
def lab_server(tmp_path_factory):
    """Three hosts and a PostgreSQL server in the lab's database namespace, for this module."""
    try:
        lab = hosts.Lab(3, tmp_path_factory.mktemp("lab"))
    except hosts.LabUnavailable as error:
        pytest.fail(f"this test needs network and PID namespaces (root, ip netns, unshare): {error}", pytrace=False)
    try:
        server = pgserver.start(listen=[hosts.SERVER_ADDRESS], trust=[hosts.NETWORK], netns=lab.db_netns)
        try:
            yield lab, server
        finally:
            server.stop()
    finally:
        lab.close()


def _wait_until(check, timeout, what, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


class Deployment:
    """One database on the lab's server, and the workers started on its hosts."""

    def __init__(self, lab, server, tmp_path: Path) -> None:
        self.lab = lab
        name = f"many_hosts_{os.getpid()}"
        pgserver.drop_database(server.url, name)
        self.local_url = pgserver.create_database(server.url, name)  # over the server's Unix socket, for our checks
        self.url = pgserver.database_url(server.url_at(hosts.SERVER_ADDRESS), name)  # over the links, for the hosts
        self.tmp = tmp_path
        home = tmp_path / "home"
        home.mkdir()
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LANG": "C.UTF-8",
            "TQCLI_DB": self.url, "PYTHONPATH": str(REPO),
        }
        self.log = tmp_path / "events.log"
        self.workers: dict[str, hosts.Process] = {}

    def tqcli(self, *args: str, host: int = 1, check: bool = True, timeout: float = 60):
        """Run tqcli on a host (an operator's shell there); its output."""
        done = self.lab.hosts[host - 1].run([TQCLI, *args], env=self.env, cwd=self.tmp, timeout=timeout)
        if check:
            assert done.returncode == 0, f"tqcli {' '.join(args)} on host {host}: exit {done.returncode}: {done.stderr}"
        return done

    def submit(self, lines: list[dict]) -> list[int]:
        path = self.tmp / f"batch-{len(list(self.tmp.glob('batch-*')))}.jsonl"
        path.write_text("".join(json.dumps(line) + "\n" for line in lines))
        return [int(word) for word in self.tqcli("submit", "--from-file", str(path)).stdout.split()]

    def short(self, keys: range) -> list[dict]:
        return [
            {"target": "tests.hostjobs:run", "payload": {"log": str(self.log), "key": f"t{key}", "seconds": 0.01 + key % 3 * 0.005}}
            for key in keys
        ]

    def long(self, key: str, queue: str, seconds: float) -> dict:
        payload = {"log": str(self.log), "key": key, "lock": str(self.tmp / f"{key}.lock"), "seconds": seconds}
        return {"target": "tests.hostjobs:exclusive", "payload": payload, "queue": queue, "backoff": 0}

    def start_worker(self, name: str, host: int, *queues: str) -> hosts.Process:
        args = [*WORKER, "--id", name, *[arg for queue in queues for arg in ("--queue", queue)]]
        out = open(self.tmp / f"{name}.log", "wb")  # noqa: SIM115 - the worker's stdout and stderr, read on failure
        process = self.lab.hosts[host - 1].spawn([TQCLI, *args], env=self.env, stdout=out, stderr=out, cwd=self.tmp)
        out.close()
        process.pid()
        self.workers[name] = process
        return process

    def worker_log(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text(errors="replace")[-3000:]

    def stop_workers(self, *names: str) -> None:
        for name in names:
            self.workers[name].signal(signal.SIGTERM)
        for name in names:
            code = self.workers[name].wait(60)
            assert code == 0, f"worker {name} exited {code}:\n{self.worker_log(name)}"

    def query(self, sql: str, *params):
        with psycopg.connect(self.local_url, autocommit=True) as conn:
            return conn.execute(sql, params).fetchall()

    def states(self) -> Counter:
        return Counter(dict(self.query("SELECT state, count(*) FROM tasks GROUP BY state")))

    def task(self, key: str) -> tuple:
        """(id, state, attempts, lease_until, result, finished_at) of the task whose payload has this key."""
        rows = self.query(
            "SELECT id, state, attempts, lease_until, result, finished_at FROM tasks WHERE payload::jsonb->>'key' = %s", key
        )
        assert len(rows) == 1, rows
        return rows[0]


def _problems(dep: Deployment) -> list[str]:
    """Bookkeeping that does not add up: SPEC §1's promises, read from the database (helpers.py does it for SQLite)."""
    problems = []
    completions = Counter(task for (task,) in dep.query("SELECT task_id FROM audit WHERE action = 'task.complete'"))
    claims = Counter(task for (task,) in dep.query("SELECT task_id FROM audit WHERE action = 'task.claim'"))
    recorded = Counter(task for (task,) in dep.query("SELECT task_id FROM attempts WHERE outcome IS DISTINCT FROM 'released'"))
    for task_id, state, attempts in dep.query("SELECT id, state, attempts FROM tasks ORDER BY id"):
        if state != "completed":
            problems.append(f"task {task_id} is {state}")
        if completions[task_id] != 1:
            problems.append(f"task {task_id}: {completions[task_id]} task.complete entries")
        if recorded[task_id] != attempts or claims[task_id] != attempts:
            problems.append(f"task {task_id}: attempts {attempts}, {recorded[task_id]} attempt rows, {claims[task_id]} claims")
    return problems


def _assert_one_chain(dep: Deployment) -> dict:
    verify = dep.tqcli("audit", "verify", "--json", host=3, check=False)
    report = json.loads(verify.stdout)
    assert verify.returncode == 0 and report["intact"], report
    (count, low, high, hashes, prevs), = dep.query(
        "SELECT count(*), min(seq), max(seq), count(DISTINCT hash), count(DISTINCT prev_hash) FROM audit"
    )
    assert report["entries"] == count == high and low == 1, (report, count, low, high)
    assert hashes == prevs == count, "two entries share a predecessor: the chain forked"
    return report


def test_workers_on_three_hosts_run_each_task_once_and_rescue_killed_and_stopped_ones_only_after_their_leases(lab_server, tmp_path):
    lab, server = lab_server
    dep = Deployment(lab, server, tmp_path)
    tqcli.open(dep.local_url).close()  # the schema, so that workers start on an empty queue (they create no database)
    began = time.monotonic()

    # Phase 1: three hosts, 200 short tasks.
    for index in (1, 2, 3):
        dep.start_worker(f"w{index}", index, "default")
    # while they run, host 1 sees none of their processes, and has no way to host 2
    probe = "import os, socket; print(socket.gethostname(), sorted(int(p) for p in os.listdir('/proc') if p.isdigit()), " \
        "socket.socket().connect_ex((%r, 5432)) != 0)" % lab.hosts[1].address
    seen_from_1 = lab.hosts[0].run([sys.executable, "-c", probe], env=dep.env).stdout.split(" ", 1)
    assert seen_from_1 == ["tqhost1", "[1, 2] True\n"], seen_from_1  # its init and itself
    submitted = time.monotonic()
    dep.submit(dep.short(range(SHORT)))
    _wait_until(lambda: dep.states() == Counter(completed=SHORT), 60, f"{SHORT} tasks to complete: {dep.states()}")
    runs, overlaps = hostjobs.read_runs(dep.log)
    assert overlaps == []
    twice = {key: [(r.host, r.attempt) for r in key_runs] for key, key_runs in runs.items() if len(key_runs) != 1}
    assert twice == {}, f"tasks run more than once: {twice}"
    assert sorted(runs) == sorted(f"t{key}" for key in range(SHORT))
    assert all(key_runs[0].end is not None for key_runs in runs.values())
    phase1_hosts = Counter(key_runs[0].host for key_runs in runs.values())
    assert len(phase1_hosts) >= 2, f"one host ran everything: {phase1_hosts}"
    phase1 = time.monotonic() - submitted

    # Phase 2: a victim on host 1 (killed) and one on host 2 (stopped), under load; the rescuer on host 3.
    dep.start_worker("victim-k", 1, "kill")
    dep.start_worker("victim-s", 2, "stop")
    dep.submit([dep.long("kill", "kill", 3.0), dep.long("stop", "stop", 4.0), *dep.short(range(SHORT, SHORT + MORE))])

    _wait_until(lambda: {"kill", "stop"} <= set(hostjobs.read_runs(dep.log)[0]), 30, "both long tasks to start")
    time.sleep(0.3)
    dep.workers["victim-k"].signal(signal.SIGKILL)
    dep.workers["victim-s"].signal(signal.SIGSTOP)
    faulted = time.monotonic_ns()
    _wait_until(dep.workers["victim-k"].gone, 10, "the killed worker to be gone")
    time.sleep(0.3)  # whatever either had in flight has reached the server (or never will)
    kill_lease = dep.task("kill")[3]
    stop_lease = dep.task("stop")[3]
    assert dep.task("kill")[1] == dep.task("stop")[1] == "running"

    dep.start_worker("rescuer", 3, "kill", "stop")
    _wait_until(lambda: dep.task("kill")[1] == dep.task("stop")[1] == "completed", 30, "the rescuer to finish both")
    stop_after_rescue = dep.task("stop")
    # the killed worker's host stayed up: its orphans (fence, executors) ended by themselves
    assert dep.workers["victim-k"].wait(15) == 128 + signal.SIGKILL

    dep.workers["victim-s"].signal(signal.SIGCONT)
    _wait_until(
        lambda: dep.query("SELECT count(*) FROM audit WHERE action = 'task.stale' AND task_id = %s", stop_after_rescue[0])[0][0],
        15, "the continued worker to drop its late result (task.stale)",
    )
    dep.stop_workers("victim-s")
    _wait_until(lambda: dep.states() == Counter(completed=SHORT + MORE + 2), 60, f"every task to complete: {dep.states()}")
    dep.stop_workers("w1", "w2", "w3", "rescuer")

    runs, overlaps = hostjobs.read_runs(dep.log)
    assert overlaps == [], f"a run started while another run of the same task held its lock: {overlaps}"
    assert {key: pairs for key, key_runs in runs.items() if (pairs := hostjobs.overlapping(key_runs))} == {}
    twice = {key: len(key_runs) for key, key_runs in runs.items() if key.startswith("t") and len(key_runs) != 1}
    assert twice == {}, f"short tasks run more than once: {twice}"

    for key, victim_host, lease_until in (("kill", "tqhost1", kill_lease), ("stop", "tqhost2", stop_lease)):
        first, second = runs[key]
        assert (first.host, second.host) == (victim_host, "tqhost3"), runs[key]
        assert first.end is None, f"{key}: the victim's attempt ran to its end: it was not ended"
        assert second.end is not None
        assert first.start < faulted < second.start
        # the rule between hosts: no takeover before the lease expired (the wall clock the leases are written in)
        assert second.start_wall >= lease_until * 1000, f"{key}: rescued {(lease_until * 1000 - second.start_wall) / 1e6:.0f} ms early"
        task_id, state, attempts, _, result, _ = dep.task(key)
        assert (state, attempts, json.loads(result)) == ("completed", 2, key)
        history = dep.query("SELECT outcome, worker FROM attempts WHERE task_id = %s ORDER BY claim", task_id)
        assert history == [("lost", f"victim-{key[0]}"), ("completed", "rescuer")], history
    # the stopped worker, continued, wrote nothing over the rescuer's outcome
    assert dep.task("stop") == stop_after_rescue
    stale = [(task, json.loads(details)) for task, details in dep.query("SELECT task_id, details FROM audit WHERE action = 'task.stale'")]
    assert [(task, details["worker"]) for task, details in stale] == [(stop_after_rescue[0], "victim-s")], stale

    assert _problems(dep) == []
    report = _assert_one_chain(dep)
    seen = {worker["id"]: worker["host"] for worker in json.loads(dep.tqcli("workers", "--json", host=2).stdout)}
    assert seen == {"w1": "tqhost1", "w2": "tqhost2", "w3": "tqhost3", "victim-k": "tqhost1", "victim-s": "tqhost2", "rescuer": "tqhost3"}
    print(
        f"\nphase 1: {SHORT} tasks in {phase1:.1f} s by host {dict(sorted(phase1_hosts.items()))}; "
        f"kill rescued {(runs['kill'][1].start - faulted) / 1e9:.2f} s after the fault, "
        f"stop {(runs['stop'][1].start - faulted) / 1e9:.2f} s; audit {report['entries']} entries; "
        f"total {time.monotonic() - began:.1f} s",
        file=sys.stderr,
    )
