"""Worker processes on SQLite and PostgreSQL, and procrastinate's and PgQueuer's on the same server, for bench/run.py.

What is measured, on both stores by the same code (only the location of
the database differs: a file, or a postgresql:// URL):

- drains of ready tasks by 1, 2 and 4 worker processes (`tqcli worker
  --once`, one task at a time each, started together once every task is
  submitted) of 10 ms sleeps (latency-bound) and of no-ops;
- the CPU the worker processes use (their rusage, with their executors'),
  and on PostgreSQL the server's (its processes' CPU from /proc);
- on PostgreSQL, what the single audit chain costs under 4 workers: the
  same drain with the audit append skipped (bench/tqcli_noaudit.py), and
  how often a worker's connection waits for the chain's lock;
- bulk submit through the library (`queue.submit_many`), and `tqcli submit`
  latency, one process per submit;
- the same drains by procrastinate and PgQueuer (bench/.env-pg, never the
  project's environment), each in a database of its own on the same server.

The drain rate is tasks / (last task's end - first task's start), read from
stamps every task writes (benchjobs.record), one clock for every queue; the
first task of each process waits until all N workers reached theirs
(benchjobs.barrier), so worker start-up is not in the rate and N workers
are timed running together. The wall time from starting the workers
to the last one's exit is kept beside it. Every drain checks that each task
ran exactly once (by the stamps, and for tqcli by its tables and the audit
chain); what went wrong goes into `problems` rather than stopping the run.

The server keeps PostgreSQL's default durability (fsync, synchronous
commit, full-page writes on, WAL for replicas, autovacuum), unlike the
tests' server, and its data on disk (/var/tmp), not in memory.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

import tqcli  # noqa: E402
from common import Figure, spread  # noqa: E402
from tqcli.core.spec import TaskSpec  # noqa: E402

TQCLI = str(Path(sys.executable).parent / "tqcli")
NOAUDIT = [sys.executable, str(HERE / "tqcli_noaudit.py")]
PEER_ENV = HERE / ".env-pg"
PEER_PACKAGES = ("procrastinate>=3,<4", "pgqueuer>=1,<2", "psycopg[binary,pool]>=3.2", "asyncpg>=0.29")
DRAIN_TIMEOUT = 600.0  # seconds one drain may take before its workers are killed and it counts as a problem
WORKER_COUNTS = (1, 2, 4)
JOBS = {"nap": "10 ms sleep", "noop": "no-op"}

# PostgreSQL's defaults for what keeps data, where tests/pgserver.py turns them off for speed.
DURABLE = {
    "fsync": "on", "synchronous_commit": "on", "full_page_writes": "on", "wal_level": "replica",
    "max_wal_senders": "10", "autovacuum": "on", "jit": "on", "max_connections": "100",
}
SHOWN = (
    "server_version", "shared_buffers", "synchronous_commit", "fsync", "full_page_writes", "wal_level",
    "wal_sync_method", "max_connections", "autovacuum", "jit",
)


# -- the server ---------------------------------------------------------------------


class Server:
    """A PostgreSQL server for the benchmark (tests/pgserver.py at default durability, data on disk)."""

    def __init__(self) -> None:
        from tests import pgserver

        self._pg = pgserver
        root = Path("/var/tmp") if os.path.isdir("/var/tmp") else Path(tempfile.gettempdir())
        _sweep(root)
        self.base = Path(tempfile.mkdtemp(prefix="tqcli-bench-pg-", dir=root))
        try:
            self.server = pgserver.start(self.base, settings=DURABLE)
        except BaseException:
            shutil.rmtree(self.base, ignore_errors=True)
            raise
        self.url = self.server.url
        self.settings = {name: self.value(f"SHOW {name}") for name in SHOWN}
        self.filesystem = _filesystem(self.base)

    def value(self, sql: str) -> Any:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            return conn.execute(sql).fetchone()[0]  # type: ignore[index]

    def database(self, name: str) -> str:
        """A new, empty database `name` (dropped first if it exists); its URL."""
        self._pg.drop_database(self.url, name)
        return self._pg.create_database(self.url, name)

    def drop(self, name: str) -> None:
        self._pg.drop_database(self.url, name)

    def cpu(self) -> float:
        """CPU seconds the server's processes used so far: the postmaster's, its reaped children's and its live ones'."""
        pid = self.server.process.pid
        total = _cpu_of(pid, children=True)
        for children in Path(f"/proc/{pid}/task").glob("*/children"):
            try:
                for child in children.read_text().split():
                    total += _cpu_of(int(child), children=False)
            except OSError:
                pass
        return total

    def describe(self) -> str:
        s = self.settings
        return (
            f"PostgreSQL {s['server_version']}, data on {self.filesystem}; shared_buffers={s['shared_buffers']}, "
            f"fsync={s['fsync']}, synchronous_commit={s['synchronous_commit']}, full_page_writes={s['full_page_writes']}, "
            f"wal_level={s['wal_level']}, wal_sync_method={s['wal_sync_method']}, max_connections={s['max_connections']}, "
            f"autovacuum={s['autovacuum']}, jit={s['jit']}"
        )

    def stop(self) -> None:
        try:
            self.server.stop()
        finally:
            shutil.rmtree(self.base, ignore_errors=True)


_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_of(pid: int, *, children: bool) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    # after the command: state is field 3, utime 14, stime 15, cutime 16, cstime 17
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / _TICK


def _filesystem(path: Path) -> str:
    best, kind = "", "?"
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            parts = line.split()
            if len(parts) > 2 and str(path).startswith(parts[1]) and len(parts[1]) > len(best):
                best, kind = parts[1], parts[2]
    except OSError:
        pass
    return f"{kind} ({path.parent})"


def _sweep(root: Path) -> None:
    """Remove the folders of earlier benchmark servers whose run was killed."""
    for folder in root.glob("tqcli-bench-pg-*"):
        try:
            owner = int((folder / "owner.pid").read_text())
            os.kill(owner, 0)
            continue
        except ProcessLookupError:
            pass
        except (OSError, ValueError):
            if time.time() - folder.stat().st_mtime < 3600:
                continue
        shutil.rmtree(folder, ignore_errors=True)


# -- the stores ---------------------------------------------------------------------


class SqliteStore:
    label = "SQLite"

    def __init__(self, work: Path) -> None:
        self.work = work

    def fresh(self, name: str) -> str:
        path = self.work / f"{name}.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return str(path)

    def rows(self, db: str, sql: str) -> list[tuple[Any, ...]]:
        conn = sqlite3.connect(db)
        try:
            return conn.execute(sql).fetchall()
        finally:
            conn.close()

    def drop(self, db: str) -> None:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)


class PostgresStore:
    label = "PostgreSQL"

    def __init__(self, server: Server) -> None:
        self.server = server

    def fresh(self, name: str) -> str:
        return self.server.database(name)

    def rows(self, db: str, sql: str) -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(db, autocommit=True) as conn:
            return conn.execute(sql).fetchall()

    def drop(self, db: str) -> None:
        self.server.drop(db.rsplit("/", 1)[1])


# -- one drain ------------------------------------------------------------------------


@dataclass
class Drain:
    queue: str
    job: str
    workers: int
    tasks: int
    span: float = 0.0  # seconds from the first task's start to the last one's end
    wall: float = 0.0  # seconds from starting the workers to the last one's exit
    client_cpu: float = 0.0  # CPU seconds of the worker processes (and their executors)
    server_cpu: float | None = None
    transactions: int | None = None  # transactions the database committed during the drain (PostgreSQL)
    wal_flushes: int | None = None  # WAL syncs to disk the server did during the drain (PostgreSQL)
    problems: list[str] = field(default_factory=list)
    waits: Counter | None = None  # pg_stat_activity samples of the workers' connections, by what they did

    @property
    def rate(self) -> float:
        return self.tasks / self.span if self.span > 0 else 0.0

    @property
    def wall_rate(self) -> float:
        return self.tasks / self.wall if self.wall > 0 else 0.0


def server_counts(db: str) -> tuple[int, int]:
    """Transactions committed in database `db` so far, and WAL syncs of the whole server."""
    import psycopg

    with psycopg.connect(db, autocommit=True) as conn:
        commits = conn.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()").fetchone()[0]  # type: ignore[index]
        syncs = conn.execute("SELECT wal_sync FROM pg_stat_wal").fetchone()[0]  # type: ignore[index]
    return int(commits), int(syncs)


def analyze(db: str) -> None:
    """ANALYZE the freshly filled tables, as autovacuum soon would on a queue that lives on (not within a drain's seconds)."""
    import psycopg

    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("ANALYZE")


def run_workers(
    drain: Drain, argv: list[str], env: dict[str, str], stamps: Path, logs: Path,
    server: Server | None, sampler: Callable[[threading.Event], Counter] | None = None, db: str | None = None,
) -> None:
    """Start drain.workers processes of `argv` at once, wait for all, and fill in the drain's times and checks.

    `db`, a PostgreSQL URL, is the database whose transactions are counted.
    """
    stamps.unlink(missing_ok=True)
    barrier = logs / "barrier"
    shutil.rmtree(barrier, ignore_errors=True)
    barrier.mkdir()
    env = dict(env, BENCH_STAMPS=str(stamps), BENCH_BARRIER=str(barrier), BENCH_PARTIES=str(drain.workers))
    handles, processes = [], []
    stop_sampling = threading.Event()
    sampled: list[Counter] = []
    thread = None
    if sampler is not None:
        thread = threading.Thread(target=lambda: sampled.append(sampler(stop_sampling)), daemon=True)
        thread.start()
    counts_before = server_counts(db) if db else None
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_before = server.cpu() if server else None
    started = time.perf_counter()
    for index in range(drain.workers):
        log = open(logs / f"worker-{index}.log", "wb")  # noqa: SIM115 - closed below
        handles.append(log)
        processes.append(subprocess.Popen(argv, env=env, cwd=HERE, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT))
    deadline = started + DRAIN_TIMEOUT
    for index, process in enumerate(processes):
        try:
            process.wait(max(0.1, deadline - time.perf_counter()))
        except subprocess.TimeoutExpired:
            drain.problems.append(f"worker {index} still ran after {DRAIN_TIMEOUT:.0f} s: killed")
            process.kill()
            process.wait()
    drain.wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if server is not None and server_before is not None:
        drain.server_cpu = server.cpu() - server_before
    stop_sampling.set()
    if thread is not None:
        thread.join(5)
        drain.waits = sampled[0] if sampled else None
    for handle in handles:
        handle.close()
    drain.client_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if db and counts_before:
        time.sleep(0.1)  # a backend reports its counts as it exits, just after its client did
        commits, syncs = server_counts(db)
        drain.transactions, drain.wal_flushes = commits - counts_before[0] - 1, syncs - counts_before[1]
    for index, process in enumerate(processes):
        text = (logs / f"worker-{index}.log").read_text(errors="replace").strip().splitlines()
        if process.returncode != 0:
            drain.problems.append(f"worker {index} exited {process.returncode}: {' | '.join(text[-3:])}")
        else:  # a worker that exited 0 may still have said something went wrong
            said = [line.strip() for line in text if re.search(r"\b(error|warning|traceback)\b", line, re.IGNORECASE)]
            if said:
                drain.problems.append(f"worker {index} said: {' | '.join(said[:3])}")
    keys: Counter = Counter()
    first, last = None, None
    if stamps.exists():
        for line in stamps.read_text().splitlines():
            key, start, end = line.split()
            keys[key] += 1
            first = int(start) if first is None else min(first, int(start))
            last = int(end) if last is None else max(last, int(end))
    if first is not None and last is not None:
        drain.span = (last - first) / 1e9
    arrived = len(os.listdir(barrier))
    if arrived < drain.workers:
        drain.problems.append(f"only {arrived} of {drain.workers} workers ran a task (the others found none left; too few tasks?)")
    ran = sum(keys.values())
    twice = sum(1 for n in keys.values() if n > 1)
    if len(keys) != drain.tasks or twice:
        drain.problems.append(f"{drain.tasks - len(keys)} task(s) never ran, {twice} ran more than once ({ran} runs for {drain.tasks} tasks)")


def env_for(db: str | None = None, **extra: str) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=f"{HERE}:{ROOT}", NO_COLOR="1")
    env.pop("TQCLI_CONFIG", None)
    if db is not None:
        env["TQCLI_DB"] = db
    env.update(extra)
    return env


def tqcli_drain(
    store: SqliteStore | PostgresStore, job: str, count: int, workers: int, work: Path, server: Server | None,
    *, command: list[str] | None = None, queue: str | None = None, sample: bool = False,
) -> Drain:
    """`workers` x `tqcli worker --once` over `count` ready tasks of benchjobs.<job>, each with its own key."""
    drain = Drain(queue or f"tqcli, {store.label}", job, workers, count)
    db = store.fresh(f"bench_{job}_{workers}")
    try:
        with tqcli.open(db) as q:
            q.submit_many([TaskSpec(f"benchjobs:{job}", payload={"key": key}) for key in range(count)])
        sampler = None
        pg = isinstance(store, PostgresStore)
        if pg:
            analyze(db)
        if sample and pg:
            sampler = lambda stop: sample_waits(db, stop)  # noqa: E731
        run_workers(
            drain, [*(command or [TQCLI]), "worker", "--once"], env_for(db), work / "stamps", work, server, sampler,
            db=db if pg else None,
        )
        check_tqcli(store, db, drain, audited=command is None)
    except Exception as exc:  # noqa: BLE001 - a failed drain is a finding, reported with the others
        drain.problems.append(f"{type(exc).__name__}: {exc}")
    finally:
        store.drop(db)
    return drain


def check_tqcli(store: SqliteStore | PostgresStore, db: str, drain: Drain, *, audited: bool) -> None:
    """Every task completed after one attempt, one claim each in the audit, and the chain verifies."""
    (total, bad), = store.rows(db, "SELECT count(*), count(*) FILTER (WHERE state != 'completed' OR attempts != 1) FROM tasks")
    if total != drain.tasks or bad:
        states = store.rows(db, "SELECT state, attempts, count(*) FROM tasks GROUP BY state, attempts ORDER BY 1, 2")
        drain.problems.append(f"tasks table: {total} tasks, {bad} not completed after exactly one attempt: {states}")
    if not audited:
        return
    (claims, distinct), = store.rows(db, "SELECT count(*), count(DISTINCT task_id) FROM audit WHERE action = 'task.claim'")
    if claims != drain.tasks or distinct != drain.tasks:
        drain.problems.append(f"audit: {claims} task.claim entries for {distinct} tasks (expected {drain.tasks} each)")
    with tqcli.open(db, create=False) as q:
        report = q.audit.verify()
    if not report.intact:
        drain.problems.append(f"audit verify: the chain is broken ({report})")


def sample_waits(db: str, stop: threading.Event, every: float = 0.005) -> Counter:
    """What the tqcli connections to `db` do, sampled every `every` s from pg_stat_activity and pg_locks until `stop`."""
    import psycopg

    try:
        from tqcli.store.postgres_tx import AUDIT_LOCK
    except ImportError:
        from tqcli.store.postgres import AUDIT_LOCK

    high, low = AUDIT_LOCK >> 32, AUDIT_LOCK & 0xFFFFFFFF
    tally: Counter = Counter()
    sql = (
        "SELECT a.state, a.wait_event_type, a.wait_event, "
        "bool_or(l.locktype = 'advisory' AND l.classid = %s AND l.objid = %s AND l.objsubid = 1) "
        "FROM pg_stat_activity AS a LEFT JOIN pg_locks AS l ON l.pid = a.pid AND NOT l.granted "
        "WHERE a.datname = current_database() AND a.application_name = 'tqcli' AND a.pid != pg_backend_pid() "
        "GROUP BY a.pid, a.state, a.wait_event_type, a.wait_event"
    )
    with psycopg.connect(db, autocommit=True) as conn:
        while not stop.is_set():
            for state, wait_type, wait_event, audit_lock in conn.execute(sql, (high, low)).fetchall():
                if state == "idle":
                    tally["idle (between transactions)"] += 1
                elif audit_lock:
                    tally["waiting for the audit chain's lock"] += 1
                elif wait_type == "Lock":
                    tally[f"waiting for another lock ({wait_event})"] += 1
                elif state == "idle in transaction":
                    tally["in a transaction, the worker's turn"] += 1
                elif wait_type in ("IO", "LWLock") and wait_event and "WAL" in wait_event:
                    tally["committing: WAL flush"] += 1
                elif wait_type == "Client":
                    tally["in a transaction, the worker's turn"] += 1
                else:
                    tally["running a statement"] += 1
            stop.wait(every)
    return tally


# -- the peers ------------------------------------------------------------------------


def ensure_peer_env() -> str | None:
    """bench/.env-pg with procrastinate and PgQueuer; None when ready, else why not."""
    python = PEER_ENV / "bin" / "python"
    if not python.exists():
        done = subprocess.run([sys.executable, "-m", "venv", str(PEER_ENV)], capture_output=True, text=True)
        if done.returncode != 0:
            return f"could not make {PEER_ENV}: {done.stderr.strip()[-200:]}"
    probe = subprocess.run([str(python), "-c", "import procrastinate, pgqueuer, asyncpg, uvloop, psycopg"], capture_output=True)
    if probe.returncode != 0:
        done = subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *PEER_PACKAGES],
            capture_output=True, text=True,
        )
        if done.returncode != 0:
            return f"could not install procrastinate and PgQueuer: {done.stderr.strip()[-300:]}"
    return None


def peer_versions() -> str:
    python = PEER_ENV / "bin" / "python"
    code = "import importlib.metadata as m; print(', '.join(f'{p} {m.version(p)}' for p in ('procrastinate', 'pgqueuer', 'psycopg', 'asyncpg')))"
    return subprocess.run([str(python), "-c", code], capture_output=True, text=True).stdout.strip()


class Peer:
    """procrastinate or PgQueuer, in a database of its own on the benchmark's server."""

    def __init__(self, tool: str, server: Server) -> None:
        self.tool = tool
        self.label = {"procrastinate": "procrastinate", "pgqueuer": "PgQueuer"}[tool]
        self.server = server
        self.url = server.database(f"bench_{tool}")
        self._peers("install")

    def _peers(self, *args: str) -> str:
        done = subprocess.run(
            [str(PEER_ENV / "bin" / "python"), str(HERE / "peers.py"), args[0], self.tool, self.url, *args[1:]],
            capture_output=True, text=True, env=env_for(), cwd=HERE,
        )
        if done.returncode != 0:
            raise RuntimeError(f"peers.py {args[0]} {self.tool}: {done.stderr.strip()[-500:]}")
        return done.stdout

    def argv(self) -> list[str]:
        if self.tool == "procrastinate":
            return [str(PEER_ENV / "bin" / "procrastinate"), "--app=procrastinate_jobs.app", "worker", "--one-shot"]
        return [str(PEER_ENV / "bin" / "python"), str(HERE / "pgqueuer_jobs.py")]

    def drain(self, job: str, count: int, workers: int, work: Path) -> Drain:
        drain = Drain(self.label, job, workers, count)
        try:
            self._peers("reset")
            self._peers("fill", job, str(count))
            analyze(self.url)
            env = env_for(BENCH_PG_URL=self.url, PROCRASTINATE_LOG_LEVEL="warning")
            run_workers(drain, self.argv(), env, work / "stamps", work, self.server, db=self.url)
            left = json.loads(self._peers("left"))
            if left["left"]:
                drain.problems.append(f"{left['left']} job(s) not done: {left['states']}")
        except Exception as exc:  # noqa: BLE001
            drain.problems.append(f"{type(exc).__name__}: {exc}")
        return drain

    def close(self) -> None:
        self.server.drop(f"bench_{self.tool}")


# -- the figures ----------------------------------------------------------------------


@dataclass
class Results:
    drains: list[Drain] = field(default_factory=list)
    audit: list[Drain] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        out = []
        for d in self.drains + self.audit:
            out += [f"{d.queue}, {JOBS[d.job]}, {d.workers} worker(s): {p}" for p in d.problems]
        return out


def drains(
    work: Path, runs: int, sizes: dict[str, int], stores: list[SqliteStore | PostgresStore], peers: list[Peer],
    server: Server | None, results: Results, log: Callable[[str], None],
) -> None:
    """Every queue drains every job with 1, 2 and 4 workers, run after run, interleaved so that ratios pair up in time."""
    for run in range(runs):
        for job in JOBS:
            for workers in WORKER_COUNTS:
                for store in stores:
                    d = tqcli_drain(store, job, sizes[job], workers, work, server if isinstance(store, PostgresStore) else None)
                    results.drains.append(d)
                    log(_line(d, run))
                for peer in peers:
                    d = peer.drain(job, sizes[job], workers, work)
                    results.drains.append(d)
                    log(_line(d, run))


def audit_cost(work: Path, runs: int, count: int, store: PostgresStore, server: Server, results: Results, log: Callable[[str], None]) -> None:
    """No-op drains with the audit append as is and skipped, by 1 and 4 workers; the 4-worker ones sampled for lock waits."""
    for run in range(runs):
        for workers in (1, 4):
            for command, queue in ((None, "tqcli, PostgreSQL"), (NOAUDIT, "tqcli, PostgreSQL, audit append skipped")):
                d = tqcli_drain(store, "noop", count, workers, work, server, command=command, queue=queue, sample=workers == 4)
                results.audit.append(d)
                log(_line(d, run))


def _line(d: Drain, run: int) -> str:
    server = f", server {d.server_cpu:.2f} s CPU" if d.server_cpu is not None else ""
    if d.transactions is not None:
        server += f", {d.transactions} transactions, {d.wal_flushes} WAL flushes"
    trouble = f"  PROBLEMS: {d.problems}" if d.problems else ""
    return (
        f"  run {run + 1}: {d.queue}, {JOBS[d.job]}, {d.workers} worker(s): {d.rate:,.0f}/s over {d.span:.2f} s "
        f"(wall {d.wall:.2f} s), workers {d.client_cpu:.2f} s CPU{server}{trouble}"
    )


def _select(ds: list[Drain], queue: str, job: str, workers: int) -> list[Drain]:
    return [d for d in ds if d.queue == queue and d.job == job and d.workers == workers and not d.problems and d.span > 0]


def _paired(ds: list[Drain], queue_a: str, workers_a: int, queue_b: str, workers_b: int, job: str, wall: bool = False) -> list[float]:
    """Ratios a/b of runs measured side by side (the n-th drain of each)."""
    a = [d for d in ds if d.queue == queue_a and d.job == job and d.workers == workers_a]
    b = [d for d in ds if d.queue == queue_b and d.job == job and d.workers == workers_b]
    out = []
    for x, y in zip(a, b):
        if x.problems or y.problems or not x.span or not y.span:
            continue
        out.append((x.wall_rate / y.wall_rate) if wall else (x.rate / y.rate))
    return out


def drain_table(results: Results, queues: list[str]) -> str:
    """Rates by queue, job and worker count; the 4-worker speed-up; CPU per task."""
    ds = results.drains
    lines = [
        "| job | queue | 1 worker | 2 workers | 4 workers | 4 vs 1 | 4 vs 1, wall incl. start-up "
        "| CPU per task incl. start-up, 1 worker: workers / server | cores busy (CPU / wall), 1 worker: workers / server "
        "| per task, 1 worker: transactions / WAL flushes |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for job, name in JOBS.items():
        for queue in queues:
            cells = []
            for workers in WORKER_COUNTS:
                rates = [d.rate for d in _select(ds, queue, job, workers)]
                cells.append(spread(rates, "/s") if rates else "failed")
            speedup = _paired(ds, queue, 4, queue, 1, job)
            speedup_wall = _paired(ds, queue, 4, queue, 1, job, wall=True)
            ones = _select(ds, queue, job, 1)
            cpu = busy = "-"
            if ones:
                client = statistics.median(d.client_cpu / d.tasks * 1e6 for d in ones)
                client_busy = statistics.median(d.client_cpu / d.wall for d in ones)
                servers = [d for d in ones if d.server_cpu is not None]
                if servers:
                    server = statistics.median(d.server_cpu / d.tasks * 1e6 for d in servers)  # type: ignore[operator]
                    server_busy = statistics.median(d.server_cpu / d.wall for d in servers)  # type: ignore[operator]
                    cpu, busy = f"{client:,.0f} / {server:,.0f} us", f"{client_busy:.2f} / {server_busy:.2f}"
                else:
                    cpu, busy = f"{client:,.0f} us / -", f"{client_busy:.2f} / -"
            counted = [d for d in ones if d.transactions is not None and d.wal_flushes is not None]
            per_task = "-"
            if counted:
                per_task = (
                    f"{statistics.median(d.transactions / d.tasks for d in counted):.2f} / "  # type: ignore[operator]
                    f"{statistics.median(d.wal_flushes / d.tasks for d in counted):.2f}"  # type: ignore[operator]
                )
            lines.append(
                f"| {name} | {queue} | {' | '.join(cells)} | {spread(speedup, 'x', 2) if speedup else '-'} | "
                f"{spread(speedup_wall, 'x', 2) if speedup_wall else '-'} | {cpu} | {busy} | {per_task} |"
            )
    return "\n".join(lines)


def versus_table(results: Results, ours: str, peers: list[str]) -> str:
    """tqcli on PostgreSQL against each peer: ratios of drain rates measured side by side."""
    lines = ["| job | tqcli on PostgreSQL vs | 1 worker | 2 workers | 4 workers |", "| --- | --- | --- | --- | --- |"]
    for job, name in JOBS.items():
        for peer in peers:
            cells = []
            for workers in WORKER_COUNTS:
                ratios = _paired(results.drains, ours, workers, peer, workers, job)
                cells.append(spread(ratios, "x", 2) if ratios else "-")
            lines.append(f"| {name} | {peer} | {' | '.join(cells)} |")
    return "\n".join(lines)


def scaling_figures(results: Results, stores: list[SqliteStore | PostgresStore], sizes: dict[str, int]) -> list[Figure]:
    figures = []
    for store in stores:
        queue = f"tqcli, {store.label}"
        ratios = _paired(results.drains, queue, 4, queue, 1, "nap")
        ones = [d.rate for d in _select(results.drains, queue, "nap", 1)]
        fours = [d.rate for d in _select(results.drains, queue, "nap", 4)]
        is_pg = isinstance(store, PostgresStore)
        value = f"{spread(ratios, 'x', 2)} ({spread(fours, '/s')} vs {spread(ones, '/s')})" if ratios else "failed"
        figures.append(Figure(
            f"4 workers vs 1, 10 ms tasks, {store.label}",
            f"4 vs 1 `worker --once` processes over {sizes['nap']:,} ready tasks sleeping 10 ms",
            value, ">= 2.5x" if is_pg else "(reported)", (bool(ratios) and statistics.median(ratios) >= 2.5) if is_pg else None,
        ))
    return figures


def audit_figure(results: Results, count: int) -> Figure:
    ds, queue, skipped = results.audit, "tqcli, PostgreSQL", "tqcli, PostgreSQL, audit append skipped"
    cost = {w: _paired(ds, skipped, w, queue, w, "noop") for w in (1, 4)}
    if not cost[1] or not cost[4]:
        return Figure("audit chain under 4 workers, PostgreSQL", "", "failed", "(reported)", None)
    waits: Counter = Counter()
    for d in ds:
        if d.queue == queue and d.workers == 4 and d.waits:
            waits.update(d.waits)
    busy = sum(n for what, n in waits.items() if not what.startswith("idle"))
    share = waits["waiting for the audit chain's lock"] / busy if busy else 0.0
    top = ", ".join(f"{what} {n / busy:.0%}" for what, n in waits.most_common() if not what.startswith("idle") and n / busy >= 0.02)
    return Figure(
        "audit chain under 4 workers, PostgreSQL",
        f"no-op drain of {count:,} tasks with the audit append skipped vs as is (bench/tqcli_noaudit.py), "
        "and the 4-worker drains' connections sampled in pg_stat_activity",
        f"skipping it is {spread(cost[1], 'x', 2)} as fast with 1 worker, {spread(cost[4], 'x', 2)} with 4; "
        f"inside a transaction, 4 workers' connections wait for the chain's lock {share:.0%} of the time ({top})",
        "(reported)", None,
    )


def bulk_submit_many(work: Path, runs: int, count: int, stores: list[SqliteStore | PostgresStore]) -> list[Figure]:
    """`queue.submit_many` of `count` tasks in one call, on each store (specs built beforehand)."""
    rates: dict[str, list[float]] = {store.label: [] for store in stores}
    for _ in range(runs):
        for store in stores:
            db = store.fresh("bench_bulk")
            try:
                specs = [TaskSpec("benchjobs:noop") for _ in range(count)]
                with tqcli.open(db) as q:
                    started = time.perf_counter()
                    ids = q.submit_many(specs)
                    rates[store.label].append(count / (time.perf_counter() - started))
                assert len(ids) == count
                (stored,), = store.rows(db, "SELECT count(*) FROM tasks")
                assert stored == count, f"{stored} tasks stored of {count}"
            finally:
                store.drop(db)
    figures = []
    for store in stores:
        median = statistics.median(rates[store.label])
        pg = isinstance(store, PostgresStore)
        figures.append(Figure(
            f"bulk submit_many, {store.label}", f"`queue.submit_many` of {count:,} tasks in one call, audit entries included",
            spread(rates[store.label], "/s"), ">= 50,000/s" if pg else "(reported)", median >= 50_000 if pg else None,
        ))
    return figures


def submit_latency(runs: int, stores: list[SqliteStore | PostgresStore]) -> list[Figure]:
    """`tqcli submit` (one process each) on every store, interleaved with `python -c pass`."""
    dbs = {}
    for store in stores:
        dbs[store.label] = store.fresh("bench_latency")
        tqcli.open(dbs[store.label]).close()
    times: dict[str, list[float]] = {label: [] for label in [*dbs, "bare"]}
    try:
        for _ in range(runs * 5):
            started = time.perf_counter()
            subprocess.run([sys.executable, "-c", "pass"], check=True)
            times["bare"].append(time.perf_counter() - started)
            for label, db in dbs.items():
                started = time.perf_counter()
                subprocess.run([TQCLI, "submit", "benchjobs:noop"], env=env_for(db), check=True, stdout=subprocess.DEVNULL)
                times[label].append(time.perf_counter() - started)
    finally:
        for store in stores:
            store.drop(dbs[store.label])
    bare = statistics.median(times["bare"])
    figures = []
    for label in dbs:
        ms = [t * 1000 for t in times[label]]
        figures.append(Figure(
            f"submit latency, {label}", "median wall time of `tqcli submit` (a process each), same loop as `python -c pass`",
            f"{spread(ms, ' ms', 1)}: {statistics.median(times[label]) / bare:.1f}x `python -c pass` ({bare * 1000:.1f} ms)",
            "(reported)", None,
        ))
    return figures


def noop_cores_figure(results: Results, stores: list[SqliteStore | PostgresStore], count: int) -> list[Figure]:
    figures = []
    for store in stores:
        queue = f"tqcli, {store.label}"
        ones = _select(results.drains, queue, "noop", 1)
        if not ones:
            continue
        rates = [d.rate for d in ones]
        busy = [d.client_cpu / d.wall for d in ones]
        server = [d.server_cpu / d.wall for d in ones if d.server_cpu is not None]  # type: ignore[operator]
        extra = f", the server {spread(server, ' cores', 2)}" if server else ""
        figures.append(Figure(
            f"one worker, no-op tasks, {store.label}",
            f"one `worker --once` over {count:,} no-op tasks: rate, and cores busy (CPU / wall time, start-up included)",
            f"{spread(rates, '/s')}; the worker and its executor {spread(busy, ' cores', 2)}{extra}", "(reported)", None,
        ))
    return figures


def lost_or_doubled(results: Results) -> Figure:
    problems = results.problems()
    tqcli_pg = [p for p in problems if p.startswith("tqcli, PostgreSQL")]
    n = len([d for d in results.drains + results.audit if d.queue.startswith("tqcli, PostgreSQL")])
    return Figure(
        "drains without a fault, PostgreSQL", f"{n} tqcli drains on PostgreSQL: every task ran once, completed once, one claim each, the chain verifies",
        "all clean" if not tqcli_pg else f"{len(tqcli_pg)} problem(s), listed below the tables",
        "0 problems", not tqcli_pg,
    )


def versus_peers_figure(results: Results, peers: list[str], count: int) -> Figure:
    """tqcli on PostgreSQL by 4 workers against each peer by 4, on no-op tasks: medians of ratios of drains side by side."""
    ours = "tqcli, PostgreSQL"
    parts, medians = [], []
    for peer in peers:
        ratios = _paired(results.drains, ours, 4, peer, 4, "noop")
        rates = [d.rate for d in _select(results.drains, peer, "noop", 4)]
        if ratios:
            medians.append(statistics.median(ratios))
            parts.append(f"{spread(ratios, 'x', 2)} {peer} ({spread(rates, '/s')})")
        else:
            parts.append(f"no clean pair of drains with {peer}")
    mine = [d.rate for d in _select(results.drains, ours, "noop", 4)]
    return Figure(
        "4 workers on PostgreSQL vs procrastinate and PgQueuer",
        f"drain of {count:,} no-op tasks by 4 worker processes each, tqcli / the peer, run side by side",
        f"tqcli {spread(mine, '/s') if mine else 'failed'}: " + "; ".join(parts),
        "> 1x both", len(medians) == 2 and all(m > 1 for m in medians),
    )
