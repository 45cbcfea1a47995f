"""tqcli's benchmark: `make bench` runs it and prints its tables.

Every figure is the median of several runs with their min-max, and every
comparison is a ratio measured in the same run (these machines are noisy:
absolute figures drift 15-30 %). Data is built in a temporary folder; what
tqcli is compared against is installed beside the project, never into its
environment: Huey into bench/.env, procrastinate and PgQueuer into
bench/.env-pg.

The first table is SQLite's, each figure against a reference run beside it:
`tqcli submit` against a bare Typer app doing one INSERT (bench/bare_typer.py),
with `python -c pass` for scale; `submit --from-file` of 100,000 tasks into
a database already holding 1,000,000 (built once, copied for each run)
against one transaction of `executemany` INSERTs of the same task and audit
rows into another copy; a no-op drain against Huey's worker loop as shipped
and at synchronous=NORMAL; a shell `true` drain against a bare Python loop
spawning the same; two workers against one on `sleep 0.02` and on `echo hi`
tasks (with the cores one worker uses); then worker memory, durability, and
claims, status, metrics and audit verify on a database of 2,000,000 tasks.

Then bench/parallel.py measures both stores with the same code, on a
PostgreSQL server it starts for the run at PostgreSQL's default durability
(tests/pgserver.py; stopped at the end): drains by 1, 2 and 4 worker
processes, bulk submit, submit latency, and the same drains by
procrastinate and PgQueuer on that server (with tqcli's 4-worker no-op
drain against theirs as a figure). Then bench/fairness.py measures tenants
taking turns (issue 12) on both stores: claim rates by 1, 100 and 10,000
tenants, where a late tenant's tasks land, the claim's plans, and drains
by 1 vs 100 tenants. Then bench/http_load.py measures `tqcli serve` under
load (issue 15) on both stores: request latencies at a fixed offered load
while one worker drains, the drain with and without that load, and the
most requests per second. Last, bench/audit_verify.py measures what
HMAC-SHA256 links cost `audit verify` against plain SHA-256 ones (issue
13), on SQLite.

    python bench/run.py [--quick] [--runs N] [--markdown FILE] [--no-compare] [--no-postgres] [--tenants-only] [--audit-only] [--metrics-only] [--http-only]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

import audit_verify as keyed_audit  # noqa: E402
import fairness  # noqa: E402
import http_load  # noqa: E402
import parallel  # noqa: E402
import tqcli  # noqa: E402
from common import Figure, spread, table  # noqa: E402
from tqcli.core.spec import TaskSpec  # noqa: E402

TQCLI = str(Path(sys.executable).parent / "tqcli")
ENV_DIR = HERE / ".env"


def run_env(db: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ, TQCLI_DB=str(db), PYTHONPATH=f"{HERE}:{ROOT}", NO_COLOR="1")
    env.pop("TQCLI_CONFIG", None)
    env.update(extra)
    return env


def timed(command: list[str], env: dict[str, str], **kwargs: object) -> float:
    started = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kwargs)  # type: ignore[call-overload]
    return time.perf_counter() - started


def fresh(folder: Path, name: str) -> Path:
    path = folder / name
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return path


def write_jobs(path: Path, count: int, target: str = "benchjobs:noop", backend: str = "simple") -> Path:
    with open(path, "w") as handle:
        line = json.dumps({"target": target, "backend": backend}) + "\n"
        handle.write(line * count)
    return path


def fill(db: Path, count: int, target: str = "benchjobs:noop", backend: str = "simple") -> None:
    """Submit `count` tasks through the library, in bulk transactions."""
    with tqcli.open(db) as queue:
        chunk = 50_000
        for start in range(0, count, chunk):
            queue.submit_many([TaskSpec(target, backend=backend) for _ in range(min(chunk, count - start))])


# -- the figures ----------------------------------------------------------------


def bare_typer_db(work: Path) -> Path:
    """The database bench/bare_typer.py inserts into, its table made (in WAL mode) before any timing."""
    db = fresh(work, "bare-typer.db")
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE tasks (id INTEGER PRIMARY KEY, target TEXT)")
    conn.close()
    return db


def submit_latency(work: Path, runs: int) -> Figure:
    """`tqcli submit` against a bare Typer app doing one INSERT (bench/bare_typer.py), in one loop with `python -c pass`."""
    db = fresh(work, "latency.db")
    env = run_env(db, BARE_TYPER_DB=str(bare_typer_db(work)))
    tqcli.open(db).close()  # create the database first
    bare, typer_app, ours = [], [], []
    for _ in range(runs * 5):
        bare.append(timed([sys.executable, "-c", "pass"], env))
        typer_app.append(timed([sys.executable, str(HERE / "bare_typer.py"), "submit", "benchjobs:noop"], env))
        ours.append(timed([TQCLI, "submit", "benchjobs:noop"], env))
    ms = {name: statistics.median(times) * 1000 for name, times in (("ours", ours), ("typer", typer_app), ("bare", bare))}
    over = ms["ours"] - ms["typer"]
    return Figure(
        "submit latency", "median wall time of `tqcli submit` vs a bare Typer app doing one SQLite INSERT (bench/bare_typer.py), "
        "same loop as `python -c pass`",
        f"{ms['ours']:.0f} ms vs bare Typer+INSERT {ms['typer']:.0f} ms ({over:+.0f} ms); python -c pass {ms['bare']:.1f} ms",
        "<= the bare Typer app + 10 ms", over <= 10,
    )


def built_base(work: Path, existing: int) -> Path:
    """A database already holding `existing` tasks (through the library), checkpointed so that its file alone is all of it."""
    db = fresh(work, "bulk-base.db")
    fill(db, existing)
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()  # the last connection closing removes the -wal file
    assert not Path(f"{db}-wal").exists(), "the base database still has a -wal file after its checkpoint"
    return db


def copy_of(base: Path, name: str) -> Path:
    """A copy of `base`, flushed to disk first: otherwise its writeback lands inside the timed run that follows."""
    copy = fresh(base.parent, name)
    shutil.copyfile(base, copy)
    os.sync()
    return copy


@dataclass
class SubmittedRows:
    """The rows tqcli writes for one submitted no-op task: its tasks row and its `task.submit` audit row, with their columns."""

    task_columns: list[str]
    task: tuple[Any, ...]
    audit_columns: list[str]
    audit: tuple[Any, ...]


def submitted_rows(work: Path) -> SubmittedRows:
    """Submit one task to a scratch database through the library and read back the rows it wrote (the floor's template)."""
    db = fresh(work, "template.db")
    with tqcli.open(db) as queue:
        queue.submit_many([TaskSpec("benchjobs:noop", backend="simple")])
    conn = sqlite3.connect(db)
    try:
        cursor = conn.execute("SELECT * FROM tasks")
        task = cursor.fetchone()
        task_columns = [c[0] for c in cursor.description]
        cursor = conn.execute("SELECT * FROM audit WHERE action = 'task.submit'")
        audit = cursor.fetchone()
        audit_columns = [c[0] for c in cursor.description]
    finally:
        conn.close()
    return SubmittedRows(task_columns, task, audit_columns, audit)


def floor_rows(template: SubmittedRows, count: int, first_id: int, first_seq: int) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """`count` copies of the template's rows, each with its own id, audit seq, task_id and chained hashes."""
    id_at = template.task_columns.index("id")
    seq_at, task_at = template.audit_columns.index("seq"), template.audit_columns.index("task_id")
    prev_at, hash_at = template.audit_columns.index("prev_hash"), template.audit_columns.index("hash")
    tasks, audit = [], []
    task, entry = list(template.task), list(template.audit)
    for n in range(count):
        task[id_at] = first_id + n
        entry[seq_at], entry[task_at] = first_seq + n, first_id + n
        entry[prev_at], entry[hash_at] = f"{first_seq + n - 1:064x}", f"{first_seq + n:064x}"
        tasks.append(tuple(task))
        audit.append(tuple(entry))
    return tasks, audit


def executemany_floor(db: Path, count: int, template: SubmittedRows, *, lean: bool = False) -> float:
    """Rate of one transaction of `executemany` INSERTs of `count` tasks rows and audit rows like tqcli's (the reference).

    `lean` writes NULL in the statements for the template's NULL columns and
    binds only the rest, as tqcli's own inserts do (tqcli.store.lean_insert):
    the floor of a plain executemany that binds no None.
    """
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("PRAGMA synchronous = NORMAL")  # as tqcli opens it (the file is in WAL mode already)
        conn.execute("PRAGMA foreign_keys = ON")
        (last_id,), = conn.execute("SELECT coalesce(max(id), 0) FROM tasks").fetchall()
        (last_seq,), = conn.execute("SELECT coalesce(max(seq), 0) FROM audit").fetchall()
        tasks, audit = floor_rows(template, count, last_id + 1, last_seq + 1)
        insert_task = f"INSERT INTO tasks VALUES ({', '.join('?' * len(template.task))})"
        insert_audit = f"INSERT INTO audit VALUES ({', '.join('?' * len(template.audit))})"
        if lean:
            insert_task, tasks = _without_nulls("tasks", template.task, tasks)
            insert_audit, audit = _without_nulls("audit", template.audit, audit)
        started = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(insert_task, tasks)
        conn.executemany(insert_audit, audit)
        conn.execute("COMMIT")
        elapsed = time.perf_counter() - started
    finally:
        conn.close()
    return count / elapsed


def _without_nulls(table: str, template: tuple[Any, ...], rows: list[tuple[Any, ...]]) -> tuple[str, list[tuple[Any, ...]]]:
    """The INSERT with NULL written where the template holds None, and the rows without those values."""
    kept = [at for at, value in enumerate(template) if value is not None]
    values = ", ".join("?" if value is not None else "NULL" for value in template)
    return f"INSERT INTO {table} VALUES ({values})", [tuple(row[at] for at in kept) for row in rows]


def stored_tasks(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT count(*) FROM tasks").fetchone()[0]
    finally:
        conn.close()


def bulk_submit(work: Path, runs: int, count: int, existing: int) -> Figure:
    """`submit --from-file` of `count` tasks into copies of a database of `existing` tasks, vs the executemany floor into others."""
    jobs = write_jobs(work / "bulk.jsonl", count)
    print(f"building a database of {existing:,} tasks for bulk submit...", file=sys.stderr)
    base = built_base(work, existing)
    template = submitted_rows(work)
    rates, floor, lean_floor = [], [], []
    try:
        for _ in range(runs):
            db = copy_of(base, "bulk.db")
            rates.append(count / timed([TQCLI, "submit", "--from-file", str(jobs)], run_env(db)))
            assert stored_tasks(db) == existing + count, "submit --from-file did not store every task"
            fresh(work, "bulk.db")
            for rates_of, lean in ((floor, False), (lean_floor, True)):
                db = copy_of(base, "floor.db")
                rates_of.append(executemany_floor(db, count, template, lean=lean))
                fresh(work, "floor.db")
    finally:
        fresh(work, "bulk-base.db")
    ratio = statistics.median([a / b for a, b in zip(rates, floor)])
    lean_ratio = statistics.median([a / b for a, b in zip(rates, lean_floor)])
    median = statistics.median(rates)
    return Figure(
        "bulk submit",
        f"`submit --from-file` of {count:,} tasks into a database already holding {existing:,}, audit entries included, vs one "
        "transaction of `executemany` INSERTs of the same tasks and audit rows into a copy of that database (and vs the same "
        "with NULL written in the statements instead of bound, as tqcli writes them)",
        f"{spread(rates, '/s')}; the executemany floor into the same tables: {spread(floor, '/s')}: {ratio:.2f}x; "
        f"with NULL written, not bound: {spread(lean_floor, '/s')}: {lean_ratio:.2f}x; "
        f"{'reaches' if median >= 100_000 else 'below'} 100,000/s",
        ">= 0.8x the executemany floor (100,000/s and the NULL-written floor: reported)", ratio >= 0.8,
    )


def huey_rate(work: Path, count: int, *mode: str) -> float:
    python = ENV_DIR / "bin" / "python"
    huey_db = fresh(work, "huey.db")
    out = subprocess.run([str(python), str(HERE / "huey_drain.py"), str(huey_db), str(count), *mode], capture_output=True, text=True, check=True, cwd=HERE)
    return count / json.loads(out.stdout)["seconds"]


def drain_noop(work: Path, runs: int, count: int, with_huey: bool) -> list[Figure]:
    ours, huey, huey_normal = [], [], []
    for _ in range(runs):
        db = fresh(work, "drain.db")
        fill(db, count)
        ours.append(count / timed([TQCLI, "worker", "--once"], run_env(db), cwd=HERE))
        if with_huey:
            huey.append(huey_rate(work, count))
            huey_normal.append(huey_rate(work, count, "normal"))
    figures = [Figure(
        "drain, no-op Python tasks", f"one `worker --once` over {count:,} ready tasks, audit on",
        spread(ours, "/s"), ">= 10,000/s", statistics.median(ours) >= 10_000,
    )]
    if with_huey:
        ratio = statistics.median([a / b for a, b in zip(ours, huey)])
        ratio_normal = statistics.median([a / b for a, b in zip(ours, huey_normal)])
        figures.append(Figure(
            "  vs Huey", "SqliteHuey's worker loop (dequeue + execute, in process, no audit) on the same tasks, same run",
            f"Huey as shipped {spread(huey, '/s')}: tqcli is {ratio:.2f}x; Huey with synchronous=NORMAL like tqcli "
            f"{spread(huey_normal, '/s')}: {ratio_normal:.2f}x", ">= 1.5x Huey at synchronous=NORMAL and >= 2x Huey as shipped",
            ratio_normal >= 1.5 and ratio >= 2,
        ))
    return figures


def bare_spawn_loop(count: int) -> float:
    started = time.perf_counter()
    for _ in range(count):
        subprocess.run(["/bin/sh", "-c", "true"], check=True)
    return count / (time.perf_counter() - started)


def drain_shell(work: Path, runs: int, count: int) -> Figure:
    ours, bare = [], []
    for _ in range(runs):
        db = fresh(work, "shell.db")
        fill(db, count, target="true", backend="shell")
        ours.append(count / timed([TQCLI, "worker", "--once"], run_env(db)))
        bare.append(bare_spawn_loop(count))
    ratio = statistics.median([a / b for a, b in zip(ours, bare)])
    return Figure(
        "drain, shell `true` tasks", f"one worker over {count:,} tasks vs a bare Python loop spawning `/bin/sh -c true`",
        f"{spread(ours, '/s')} vs {spread(bare, '/s')}: {ratio:.2f}x", ">= 0.8x", ratio >= 0.8,
    )


def run_twice(db: Path) -> int:
    """Tasks not completed after exactly one attempt, and claims of a task already claimed."""
    conn = sqlite3.connect(db)
    try:
        doubled = conn.execute("SELECT count(*) FROM tasks WHERE attempts != 1 OR state != 'completed'").fetchone()[0]
        doubled += conn.execute("SELECT count(*) - count(DISTINCT task_id) FROM audit WHERE action = 'task.claim'").fetchone()[0]
    finally:
        conn.close()
    return doubled


def one_worker(db: Path) -> tuple[float, float]:
    """Wall seconds of one `worker --once`, and the cores it used: CPU of it and its children over that wall time."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = timed([TQCLI, "worker", "--once"], run_env(db))
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu / wall


def two_at_once(db: Path) -> float:
    """Wall seconds of two `worker --once` started together on one database."""
    env = run_env(db)
    started = time.perf_counter()
    workers = [subprocess.Popen([TQCLI, "worker", "--once"], env=env, stderr=subprocess.DEVNULL) for _ in range(2)]
    for worker in workers:
        worker.wait()
    return time.perf_counter() - started


def two_vs_one(work: Path, runs: int, count: int, command: str) -> tuple[list[float], list[float], int]:
    """Per run: two workers' speed-up over one on `count` shell tasks, the cores the one used; and tasks run twice by the two."""
    ratios, cores, doubled = [], [], 0
    for _ in range(runs):
        db = fresh(work, "one.db")
        fill(db, count, target=command, backend="shell")
        one, busy = one_worker(db)
        db = fresh(work, "two.db")
        fill(db, count, target=command, backend="shell")
        ratios.append(one / two_at_once(db))
        cores.append(busy)
        doubled += run_twice(db)
    return ratios, cores, doubled


def two_workers(work: Path, runs: int, count: int) -> list[Figure]:
    """Two workers vs one on latency-bound `sleep 0.02` tasks, and on `echo hi` ones (CPU-bound: what one worker leaves idle)."""
    ratios, _, doubled = two_vs_one(work, runs, count, "sleep 0.02")
    echo_ratios, cores, echo_doubled = two_vs_one(work, runs, count, "echo hi")
    ratio = statistics.median(ratios)
    return [
        Figure(
            "two workers, shell tasks", f"`worker --once` x2 vs x1 over {count:,} `sleep 0.02` tasks",
            f"{spread(ratios, 'x', 2)}; tasks run twice: {doubled}", ">= 1.8x; 0 run twice", ratio >= 1.8 and doubled == 0,
        ),
        Figure(
            "two workers, `echo hi` tasks",
            f"`worker --once` x2 vs x1 over {count:,} `echo hi` tasks; cores one worker uses (CPU of it and its children / wall time)",
            f"{spread(echo_ratios, 'x', 2)}; one worker uses {spread(cores, ' cores', 2)}; "
            f"tasks run twice: {echo_doubled}/{count * runs:,}",
            "(reported)", None,
        ),
    ]


def claim_cost(db: Path, samples: int) -> float:
    """Median seconds of one claim (rolled back, so every sample claims from the same data)."""
    times = []
    with tqcli.open(db) as queue:
        store = queue._ctx.store
        for _ in range(samples):
            started = time.perf_counter()
            try:
                with store.write() as tx:
                    tx.claim_tasks(count=1, now=queue.clock.now(), claim_number=1, lease_until=0, worker="bench")
                    raise _Rollback
            except _Rollback:
                pass
            times.append(time.perf_counter() - started)
    return statistics.median(times)


class _Rollback(Exception):
    pass


def build_big(work: Path, pending: int, finished: int) -> Path:
    db = fresh(work, "big.db")
    fill(db, pending + finished)
    conn = sqlite3.connect(db)
    conn.execute("UPDATE tasks SET state = 'completed', attempts = 1, finished_at = created_at, result = 'null' WHERE id <= ?", (finished,))
    conn.commit()
    conn.close()
    return db


def claim_growth(work: Path, runs: int, big: Path, pending: int, finished: int) -> Figure:
    small = fresh(work, "small.db")
    fill(small, 1000)
    ratios, small_times, big_times = [], [], []
    for _ in range(runs):
        s, b = claim_cost(small, 300), claim_cost(big, 300)
        small_times.append(s * 1e6)
        big_times.append(b * 1e6)
        ratios.append(b / s)
    with tqcli.open(big) as queue, queue._ctx.read() as tx:
        plan = "; ".join(tx.explain_claim())
    # An index search of tasks_claim (covering or followed by rowid lookups), never a scan or a sort.
    searched = ("USING COVERING INDEX tasks_claim" in plan or "USING INDEX tasks_claim" in plan) and "TEMP B-TREE" not in plan \
        and "SCAN tasks" not in plan
    ratio = statistics.median(ratios)
    return Figure(
        "claim cost growth", f"per-claim time, 1k pending vs {pending:,} pending + {finished:,} finished",
        f"{spread(small_times, ' us', 1)} vs {spread(big_times, ' us', 1)}: {ratio:.2f}x; plan: {plan}",
        "<= 1.25x; index search, no temp B-tree", ratio <= 1.25 and searched,
    )


def status_at_scale(runs: int, big: Path, total: int) -> Figure:
    times = [timed([TQCLI, "status"], run_env(big)) for _ in range(runs)]
    return Figure(
        "status at scale", f"`tqcli status` on a database of {total:,} tasks",
        spread(times, " s", 3), "<= 0.5 s", statistics.median(times) <= 0.5,
    )


def build_metrics_db(work: Path, total: int) -> Path:
    """`total` tasks over 4 queues and 3 tenants, in every state (60 % completed, 30 % pending, the rest spread), with counters."""
    db = fresh(work, "metrics.db")
    queues, tenants = ("default", "etl", "web", "mail"), ("default", "acme", "beta")
    with tqcli.open(db) as queue:
        chunk = 50_000
        for start in range(0, total, chunk):
            size = min(chunk, total - start)
            queue.submit_many([
                TaskSpec("benchjobs:noop", queue=queues[n % 4], tenant=tenants[n % 3], priority=(n % 5) - 2) for n in range(start, start + size)
            ])
        queue.drain(max_tasks=200)  # attempts, durations and waits in the counters
    conn = sqlite3.connect(db)
    conn.execute("UPDATE tasks SET state = 'completed', finished_at = created_at WHERE id % 10 < 6 AND state = 'pending'")
    conn.execute("UPDATE tasks SET state = 'failed', finished_at = created_at WHERE id % 10 = 6")
    conn.execute("UPDATE tasks SET state = 'cancelled', finished_at = created_at WHERE id % 100 = 7")
    conn.execute("UPDATE tasks SET state = 'blocked' WHERE id % 100 = 17")
    conn.commit()
    conn.close()
    return db


def metrics_at_scale(runs: int, db: Path, total: int) -> Figure:
    """`tqcli metrics` (a whole process) on `total` tasks, with the plans of its two task queries."""
    from tqcli.store.metrics_sql import COUNTS_SQL, OLDEST_READY_SQL

    times = [timed([TQCLI, "metrics", "--output", str(db.parent / "metrics.prom")], run_env(db)) for _ in range(runs * 3)]
    conn = sqlite3.connect(db)
    plans = [" ".join(row[-1] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params)) for sql, params in ((COUNTS_SQL, ()), (OLDEST_READY_SQL, (0,)))]
    conn.close()
    covering = "SEARCH c USING COVERING INDEX tasks_counts" in plans[0] and "TEMP B-TREE" not in plans[0] and "SCAN tasks " not in plans[1].replace("SCAN tasks USING", "")
    return Figure(
        "metrics at scale", f"`tqcli metrics --output FILE` on a database of {total:,} tasks (4 queues, 3 tenants, every state)",
        f"{spread(times, ' s', 3)}; plans: {'index searches only' if covering else ' / '.join(plans)}", "< 0.5 s; index only",
        statistics.median(times) < 0.5 and covering,
    )


def read_rows(db: Path) -> float:
    conn = sqlite3.connect(db)
    started = time.perf_counter()
    for _ in conn.execute("SELECT seq, ts, actor, action, task_id, tenant, details, key_id, prev_hash, hash FROM audit ORDER BY seq"):
        pass
    elapsed = time.perf_counter() - started
    conn.close()
    return elapsed


def audit_verify(runs: int, big: Path, entries: int) -> Figure:
    ratios, verify_times = [], []
    for _ in range(runs):
        read = read_rows(big)
        with tqcli.open(big) as queue:
            started = time.perf_counter()
            report = queue.audit.verify()
            verify = time.perf_counter() - started
        assert report.intact
        verify_times.append(verify)
        ratios.append(verify / read)
    ratio = statistics.median(ratios)
    return Figure(
        "audit verify", f"{entries:,} entries, vs just reading those rows",
        f"{spread(verify_times, ' s', 2)}: {ratio:.2f}x the read", "<= 1.5x", ratio <= 1.5,
    )


def _high_water(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def peak_rss(db: Path) -> tuple[float, float]:
    """Peak resident memory (MB) of one `worker --once` process, and of its executor process.

    Read from /proc (VmHWM) while they run: the rusage of a child that
    waited for children of its own mixes in theirs.
    """
    process = subprocess.Popen([TQCLI, "worker", "--once"], env=run_env(db), stderr=subprocess.DEVNULL, cwd=HERE)
    worker = executor = 0
    while process.poll() is None:
        worker = max(worker, _high_water(process.pid))
        for children in Path(f"/proc/{process.pid}/task").glob("*/children"):  # executors are children of slot threads
            try:
                for child in children.read_text().split():
                    executor = max(executor, _high_water(int(child)))
            except OSError:
                pass
        time.sleep(0.02)
    return worker / 1024, executor / 1024


def worker_memory(work: Path, count: int) -> Figure:
    small = fresh(work, "mem-small.db")
    fill(small, count // 10)
    big = fresh(work, "mem-big.db")
    fill(big, count)
    (low, _), (high, executor) = peak_rss(small), peak_rss(big)
    return Figure(
        "worker memory", f"peak RSS of `worker --once` over {count // 10:,} vs {count:,} tasks",
        f"{low:.1f} MB vs {high:.1f} MB (its executor process: {executor:.1f} MB)", "<= 35 MB, flat",
        high <= 35 and high <= low * 1.15,
    )


def durability(work: Path, runs: int, count: int) -> Figure:
    rates: dict[str, list[float]] = {"normal": [], "full": []}
    for _ in range(runs):
        for mode in rates:
            db = fresh(work, f"sync-{mode}.db")
            fill(db, count)
            config = work / f"{mode}.toml"
            config.write_text(f'synchronous = "{mode}"\n')
            rates[mode].append(count / timed([TQCLI, "--config", str(config), "worker", "--once"], run_env(db), cwd=HERE))
    ratio = statistics.median(rates["normal"]) / statistics.median(rates["full"])
    return Figure(
        "durability setting", f"drain of {count:,} no-op tasks, synchronous NORMAL (default) vs FULL",
        f"NORMAL {spread(rates['normal'], '/s')}, FULL {spread(rates['full'], '/s')}: FULL costs {ratio:.1f}x", "(reported)", None,
    )


# -- the run --------------------------------------------------------------------


def ensure_comparison_env() -> bool:
    """bench/.env with Huey, the queue tqcli is compared against."""
    python = ENV_DIR / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(ENV_DIR)], check=True)
    probe = subprocess.run([str(python), "-c", "import huey"], capture_output=True)
    if probe.returncode != 0:
        done = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "huey>=2.5"], capture_output=True, text=True)
        if done.returncode != 0:
            print(f"warning: could not install Huey ({done.stderr.strip()[-200:]}); skipping the comparison", file=sys.stderr)
            return False
    return True


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip() or "?"
    return (
        f"{platform.system()} {platform.machine()}, nproc {nproc} ({cpu}), Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}"
    )


def load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def revision() -> str:
    """The commit measured, and whether tqcli/ had changes not committed yet."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, cwd=ROOT).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "?"
    dirty = git("status", "--porcelain", "--", "tqcli")
    return f"{commit}{' with uncommitted changes in tqcli/' if dirty else ''}"


def progress(figures: list[Figure]) -> None:
    for figure in figures:
        print(f"{figure.name}: {figure.value}", file=sys.stderr)


def sqlite_figures(args: argparse.Namespace, sizes: dict[str, int], work: Path, have_huey: bool) -> list[Figure]:
    """The SQLite table: single-worker throughput, latency, scale and memory."""
    figures: list[Figure] = []
    steps = [
        lambda: [submit_latency(work, args.runs)],
        lambda: [bulk_submit(work, args.runs, sizes["bulk"], sizes["bulk_existing"])],
        lambda: drain_noop(work, args.runs, sizes["drain"], have_huey),
        lambda: [drain_shell(work, args.runs, sizes["shell"])],
        lambda: two_workers(work, args.runs, sizes["two"]),
        lambda: [worker_memory(work, sizes["memory"])],
        lambda: [durability(work, args.runs, sizes["sync"])],
    ]
    for step in steps:
        done = step()
        progress(done)
        figures += done
    print(f"building a database of {sizes['pending'] + sizes['finished']:,} tasks...", file=sys.stderr)
    big = build_big(work, sizes["pending"], sizes["finished"])
    total = sizes["pending"] + sizes["finished"]
    for figure in (
        claim_growth(work, args.runs, big, sizes["pending"], sizes["finished"]),
        status_at_scale(args.runs, big, total),
        metrics_at_scale(args.runs, big, total),
        audit_verify(args.runs, big, total),
    ):
        progress([figure])
        figures.append(figure)
    fresh(work, "big.db")  # 2M tasks: not kept on disk for the rest of the run
    return figures


BenchStore = parallel.SqliteStore | parallel.PostgresStore


@contextlib.contextmanager
def bench_stores(args: argparse.Namespace, work: Path, header: list[str]) -> Iterator[tuple[list[BenchStore], parallel.Server | None]]:
    """SQLite, and PostgreSQL on a server started for the run unless --no-postgres (stopped at the end); notes go to `header`."""
    stores: list[parallel.SqliteStore | parallel.PostgresStore] = [parallel.SqliteStore(work)]
    server = None
    if not args.no_postgres:
        try:
            server = parallel.Server()
        except Exception as exc:  # noqa: BLE001 - PostgresUnavailable, or a server that did not start: SQLite goes on alone
            print(f"warning: no PostgreSQL for the benchmark ({str(exc).splitlines()[0]}); measuring SQLite only", file=sys.stderr)
            header.append(f"PostgreSQL: not measured ({str(exc).splitlines()[0]})")
    try:
        if server is not None:
            stores.append(parallel.PostgresStore(server))
            header.append(f"PostgreSQL server: {server.describe()}")
            print(header[-1], file=sys.stderr)
        yield stores, server
    finally:
        if server is not None:
            server.stop()


def store_sections(
    args: argparse.Namespace, sizes: dict[str, int], work: Path, stores: list[parallel.SqliteStore | parallel.PostgresStore],
    server: parallel.Server | None, header: list[str],
) -> tuple[list[Figure], str]:
    """Both stores side by side, and the peers on PostgreSQL: figures and the extra tables (notes go to `header`)."""
    log = lambda line: print(line, file=sys.stderr)  # noqa: E731
    peers: list[parallel.Peer] = []
    results = parallel.Results()
    try:
        if server is not None and not args.no_compare:
            why = parallel.ensure_peer_env()
            if why:
                print(f"warning: {why}; skipping procrastinate and PgQueuer", file=sys.stderr)
                header.append(f"procrastinate and PgQueuer: not compared ({why})")
            for tool in ("procrastinate", "pgqueuer") if not why else ():
                try:
                    peers.append(parallel.Peer(tool, server))
                except Exception as exc:  # noqa: BLE001 - one peer that cannot be set up does not stop the rest
                    print(f"warning: {tool} could not be set up ({exc}); skipping it", file=sys.stderr)
                    header.append(f"{tool}: not compared ({str(exc).splitlines()[-1][:200]})")
            if peers:
                header.append(f"Compared (bench/.env-pg): {parallel.peer_versions()}")
        figures = parallel.submit_latency(args.runs, stores)
        progress(figures)
        done = parallel.bulk_submit_many(work, args.runs, sizes["bulk_lib"], stores)
        progress(done)
        figures += done
        log("drains by 1, 2 and 4 worker processes:")
        parallel.drains(work, args.runs, {"nap": sizes["nap"], "noop": sizes["noop"]}, stores, peers, server, results, log)
        pg = stores[1] if server is not None else None
        if pg is not None:
            log("the audit chain under 4 workers:")
            parallel.audit_cost(work, args.runs, sizes["noop"], pg, server, results, log)  # type: ignore[arg-type]
        done = parallel.scaling_figures(results, stores, sizes) + parallel.noop_cores_figure(results, stores, sizes["noop"])
        if pg is not None:
            done += [parallel.audit_figure(results, sizes["noop"]), parallel.lost_or_doubled(results)]
        if peers:
            done.append(parallel.versus_peers_figure(results, [peer.label for peer in peers], sizes["noop"]))
        progress(done)
        figures += done
    finally:
        for peer in peers:
            try:
                peer.close()
            except Exception:  # noqa: BLE001 - the server goes next anyway
                pass
    queues = [f"tqcli, {store.label}" for store in stores] + [peer.label for peer in peers]
    tables = "### Drains by worker processes\n\n" + parallel.drain_table(results, queues) + "\n"
    if peers:
        tables += "\n### tqcli on PostgreSQL against its peers (ratios of drain rates, side by side)\n\n"
        tables += parallel.versus_table(results, "tqcli, PostgreSQL", [peer.label for peer in peers]) + "\n"
    problems = results.problems()
    tables += "\n### Problems during the drains\n\n" + ("\n".join(f"- {p}" for p in problems) if problems else "none") + "\n"
    return figures, tables


def tenant_section(args: argparse.Namespace, sizes: dict[str, Any], stores: list[parallel.SqliteStore | parallel.PostgresStore]) -> str:
    """The "Tenants and fair claims (issue 12)" section (bench/fairness.py): its table and the claim statements' plans."""
    log = lambda line: print(line, file=sys.stderr)  # noqa: E731
    figures, plans = fairness.section(stores, args.runs, sizes, log)
    progress(figures)
    return "### Tenants and fair claims (issue 12)\n\n" + table(figures) + "\n\n#### The plans of one claim\n\n" + plans


def audit_section(args: argparse.Namespace, sizes: dict[str, Any], work: Path) -> str:
    """The "Keyed audit chain (issue 13)" section (bench/audit_verify.py): HMAC against SHA-256 links in `audit verify`."""
    folder = work / "audit"
    folder.mkdir()
    figures = keyed_audit.section(folder, sizes["audit_entries"], args.runs, lambda line: print(line, file=sys.stderr))
    return "### Keyed audit chain (issue 13)\n\n" + table(figures) + "\n"


def http_section(args: argparse.Namespace, work: Path, stores: list[parallel.SqliteStore | parallel.PostgresStore]) -> str:
    """The "HTTP API under load (issue 15)" section (bench/http_load.py), or a line saying why it was skipped."""
    from tqcli.server import INSTALL_HINT, missing_extra

    missing = missing_extra()
    if missing:
        print(f"warning: no HTTP benchmark ({missing} is not installed: {INSTALL_HINT})", file=sys.stderr)
        return f"### HTTP API under load (issue 15)\n\nnot measured: {missing} is not installed ({INSTALL_HINT})\n"
    folder = work / "http"
    folder.mkdir()
    plan = http_load.Plan.quick() if args.quick else http_load.Plan()
    return http_load.section(stores, plan, folder, parallel.env_for, lambda line: print(line, file=sys.stderr))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small data sets (a smoke run, not the figures)")
    parser.add_argument("--runs", type=int, default=3, help="runs per figure (default 3)")
    parser.add_argument("--markdown", metavar="FILE", help="also write the tables to FILE")
    parser.add_argument("--no-compare", action="store_true", help="skip installing and running Huey, procrastinate and PgQueuer")
    parser.add_argument("--no-postgres", action="store_true", help="skip PostgreSQL (and so procrastinate and PgQueuer)")
    parser.add_argument("--tenants-only", action="store_true", help="only the tenants and fair claims section (bench/fairness.py)")
    parser.add_argument("--audit-only", action="store_true", help="only the keyed audit chain section (bench/audit_verify.py)")
    parser.add_argument("--metrics-only", action="store_true", help="only `tqcli metrics` on a database of 1,000,000 tasks")
    parser.add_argument("--http-only", action="store_true", help="only the HTTP API under load section (bench/http_load.py)")
    args = parser.parse_args()
    sizes = dict(
        bulk=100_000, bulk_existing=1_000_000, drain=20_000, shell=2_000, two=400, pending=1_000_000, finished=1_000_000,
        memory=100_000, sync=5_000,
        bulk_lib=100_000, nap=240, noop=2_000,
        tenant_backlog=100_000, tenant_counts=(1, 100, 10_000), claim_transactions=(200, 30), claim_budget=1.5,
        late_backlog=100_000, paused_backlog=100_000, tenant_drain=20_000, audit_entries=1_000_000,
        metrics_tasks=1_000_000,
    )
    if args.quick:
        sizes = dict(
            bulk=2_000, bulk_existing=20_000, drain=500, shell=50, two=20, pending=5_000, finished=5_000, memory=2_000, sync=200,
            bulk_lib=2_000, nap=100, noop=400,
            tenant_backlog=3_000, tenant_counts=(1, 100, 1_000), claim_transactions=(20, 3), claim_budget=0.3,
            late_backlog=2_000, paused_backlog=2_000, tenant_drain=500, audit_entries=5_000,
            metrics_tasks=5_000,
        )
    if args.metrics_only:
        work = Path(tempfile.mkdtemp(prefix="tqcli-bench-"))
        try:
            total = sizes["metrics_tasks"]
            print(f"building a database of {total:,} tasks...", file=sys.stderr)
            figure = metrics_at_scale(args.runs, build_metrics_db(work, total), total)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        print(f"Machine: {machine()}\ntqcli {revision()}; load average {load()}\n\n" + table([figure]))
        return
    only = args.tenants_only or args.audit_only or args.http_only
    have_huey = not args.no_compare and not only and ensure_comparison_env()
    work = Path(tempfile.mkdtemp(prefix="tqcli-bench-"))
    started = time.perf_counter()
    load_before = load()
    header: list[str] = []
    sections: list[str] = []
    try:
        if args.http_only:
            with bench_stores(args, work, header) as (stores, _):
                sections.append(http_section(args, work, stores))
        elif not args.audit_only:
            if not args.tenants_only:
                figures = sqlite_figures(args, sizes, work, have_huey)
                sections.append("### SQLite\n\n" + table(figures) + "\n")
            with bench_stores(args, work, header) as (stores, server):
                if not args.tenants_only:
                    store_figures, tables = store_sections(args, sizes, work, stores, server, header)
                    sections.append("### Both stores\n\n" + table(store_figures) + "\n\n" + tables)
                sections.append(tenant_section(args, sizes, stores))
                if not args.tenants_only:
                    sections.append(http_section(args, work, stores))
        if not args.tenants_only and not args.http_only:
            sections.append(audit_section(args, sizes, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    lines = [
        f"Machine: {machine()}",
        f"tqcli {revision()}; runs per figure: {args.runs}; took {time.perf_counter() - started:.0f} s; "
        f"load average (1, 5, 15 min) {load_before} at the start, {load()} at the end",
        *header,
    ]
    report = "\n".join(lines) + "\n\n" + "\n".join(sections)
    print(report)
    if args.markdown:
        Path(args.markdown).write_text(report)


if __name__ == "__main__":
    main()
