"""Throughput of tqcli workers on 1, 2 and 4 hosts sharing one PostgreSQL over network links.

Each worker runs on a host of its own made by tests/hosts.py (a network,
PID and UTS namespace whose one veth link leads to the database namespace,
where the server listens), so every claim, renewal and result crosses a
TCP link, as between machines; the hosts share this machine's cores. The
server keeps PostgreSQL's default durability (fsync, synchronous_commit and
full_page_writes on, wal_level replica, autovacuum on), unlike the tests'
server, and keeps its data on disk (/var/tmp), not in memory.

For each workload and host count: a fresh database, the workers started
and idle (one per host, `worker --concurrency C`), then all tasks submitted
in one transaction; the rate is tasks / (last attempt's end - first
attempt's start), read from the attempts table, so worker start-up is not
in it. Every run also checks that every task completed after exactly one
attempt, that each has one task.complete entry, and `tqcli audit verify`.
Figures are the median of --runs runs with the min-max.

    python bench/many_hosts.py [--quick] [--runs N] [--concurrency C] [--hosts 1,2,4] [--markdown FILE]

Root only (namespaces); run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

import tqcli  # noqa: E402
from tests import hosts, pgserver  # noqa: E402

TQCLI = str(Path(sys.executable).parent / "tqcli")
# PostgreSQL's defaults for what keeps data, where tests/pgserver.py turns them off for speed
DURABLE = {
    "fsync": "on", "synchronous_commit": "on", "full_page_writes": "on",
    "wal_level": "replica", "max_wal_senders": "10", "autovacuum": "on",
}
SHOWN = (
    "server_version", "fsync", "synchronous_commit", "full_page_writes", "wal_level", "wal_sync_method",
    "autovacuum", "shared_buffers", "max_connections", "listen_addresses", "data_directory",
)


@dataclass
class Workload:
    name: str
    line: dict
    tasks: int  # per run in a full run
    quick: int  # per run with --quick


WORKLOADS = [
    Workload("shell `sleep 0.01`", {"backend": "shell", "target": "sleep 0.01"}, 1000, 100),
    Workload("Python, sleeps 10 ms", {"target": "tests.hostjobs:nap", "payload": {"seconds": 0.01}}, 2000, 200),
    Workload("no-op Python", {"target": "tests.hostjobs:noop"}, 4000, 300),
]


@dataclass
class Run:
    rate: float  # tasks/s over the drain
    drain: float  # seconds
    wall: float  # seconds from the submit to the last completion seen


def spread(values: list[float], digits: int = 0) -> str:
    fmt = f"{{:,.{digits}f}}"
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def query(url: str, sql: str, *params):
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(sql, params).fetchall()


def one_run(lab: hosts.Lab, server: pgserver.Server, workload: Workload, count: int, workers: int, concurrency: int, scratch: Path, number: int) -> Run:
    name = f"bench_many_hosts_{os.getpid()}_{number}"
    local = pgserver.create_database(server.url, name)
    remote = pgserver.database_url(server.url_at(hosts.SERVER_ADDRESS), name)
    started: list[hosts.Process] = []
    try:
        tqcli.open(local).close()  # the schema: workers create no database
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(scratch), "LANG": "C.UTF-8", "TQCLI_DB": remote}
        for index in range(workers):
            log = open(scratch / f"{name}-w{index + 1}.log", "wb")  # noqa: SIM115
            started.append(lab.hosts[index].spawn(
                [TQCLI, "worker", "--concurrency", str(concurrency), "--id", f"w{index + 1}", "--quiet"],
                env=env, stdout=log, stderr=log, cwd=scratch,
            ))
            log.close()
        time.sleep(1.0)  # every worker up and idle, waiting on LISTEN
        batch = scratch / f"{name}.jsonl"
        batch.write_text("".join(json.dumps(workload.line) + "\n" for _ in range(count)))
        submitted = time.monotonic()
        subprocess.run([TQCLI, "submit", "--from-file", str(batch)], env={**env, "TQCLI_DB": local}, check=True, capture_output=True)
        deadline = submitted + 600
        while query(local, "SELECT count(*) FROM tasks WHERE state = 'completed'")[0][0] < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{workload.name}: not done in 600 s")
            dead = [p for p in started if p.popen.poll() is not None]
            if dead:
                raise RuntimeError(f"a worker exited ({dead[0].popen.returncode}): {(scratch / f'{name}-w1.log').read_text()[-2000:]}")
            time.sleep(0.02)
        wall = time.monotonic() - submitted
        for process in started:
            process.signal(signal.SIGTERM)
        for process in started:
            process.wait(60)
        (first, last), = query(local, "SELECT min(started_at), max(finished_at) FROM attempts")
        check(local, count, workload)
        drain = (last - first) / 1e6
        return Run(count / drain, drain, wall)
    finally:
        for process in started:
            if process.popen.poll() is None:
                process.kill_host()
                process.wait(10)
        pgserver.drop_database(server.url, name)


def check(url: str, count: int, workload: Workload) -> None:
    """Every task completed after one attempt, once in the audit, and the chain verifies."""
    (tasks, completed, attempts), = query(url, "SELECT count(*), count(*) FILTER (WHERE state = 'completed'), sum(attempts) FROM tasks")
    (rows,), = query(url, "SELECT count(*) FROM attempts")
    (entries, distinct), = query(url, "SELECT count(*), count(DISTINCT task_id) FROM audit WHERE action = 'task.complete'")
    if not (tasks == completed == attempts == rows == entries == distinct == count):
        raise RuntimeError(
            f"{workload.name}: {tasks} tasks, {completed} completed, {attempts} attempts, {rows} attempt rows, "
            f"{entries} completions of {distinct} tasks (expected {count} of each)"
        )
    done = subprocess.run([TQCLI, "--db", url, "audit", "verify", "--json"], capture_output=True, text=True)
    report = json.loads(done.stdout or "{}")
    if done.returncode != 0 or not report.get("intact"):
        raise RuntimeError(f"{workload.name}: audit verify failed: {done.stdout}{done.stderr}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small runs, one each: checks the script, not the figures")
    parser.add_argument("--runs", type=int, default=None, help="runs per figure [default: 3, 1 with --quick]")
    parser.add_argument("--concurrency", type=int, default=2, help="--concurrency of each worker [default: 2]")
    parser.add_argument("--hosts", default="1,2,4", help="host counts to compare [default: 1,2,4]")
    parser.add_argument("--markdown", type=Path, help="also write the table to this file")
    args = parser.parse_args()
    runs = args.runs or (1 if args.quick else 3)
    counts = [int(part) for part in args.hosts.split(",")]
    began = time.monotonic()
    scratch = Path(tempfile.mkdtemp(prefix="tqcli-bench-hosts-"))
    data = Path(tempfile.mkdtemp(prefix="tqcli-bench-pg-", dir="/var/tmp" if os.path.isdir("/var/tmp") else None))
    try:
        with hosts.Lab(max(counts), scratch / "lab") as lab:
            server = pgserver.start(data, listen=[hosts.SERVER_ADDRESS], trust=[hosts.NETWORK], netns=lab.db_netns, settings=DURABLE)
            try:
                settings = {name: query(server.url, f"SHOW {name}")[0][0] for name in SHOWN}
                print(f"# {platform.system()} {platform.machine()}, nproc {os.cpu_count()}, Python {platform.python_version()}, "
                      f"PostgreSQL {settings.pop('server_version')}")
                print("# server: " + ", ".join(f"{name}={value}" for name, value in settings.items()))
                print(f"# each worker on its own host (network + PID namespace), over a veth link; --concurrency {args.concurrency}; "
                      f"{runs} run(s) per figure", flush=True)
                lines = [
                    "| workload | hosts | tasks | drain rate, tasks/s | vs 1 host | submit to done, s |",
                    "| --- | --- | --- | --- | --- | --- |",
                ]
                print("\n".join(lines), flush=True)
                number = 0
                for workload in WORKLOADS:
                    count = workload.quick if args.quick else workload.tasks
                    base = None
                    for workers in counts:
                        results = []
                        for _ in range(runs):
                            number += 1
                            results.append(one_run(lab, server, workload, count, workers, args.concurrency, scratch, number))
                        rates = [r.rate for r in results]
                        base = base or statistics.median(rates)
                        line = (f"| {workload.name} | {workers} | {count:,} | {spread(rates)} | "
                                f"{statistics.median(rates) / base:.2f}x | {spread([r.wall for r in results], 1)} |")
                        lines.append(line)
                        print(line, flush=True)
            finally:
                server.stop()
        print(f"# every task ran once (one attempt, one task.complete), audit verify intact, in every run; took {time.monotonic() - began:.0f} s")
        if args.markdown:
            args.markdown.write_text("\n".join(lines) + "\n")
        return 0
    except (hosts.LabUnavailable, pgserver.PostgresUnavailable) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
