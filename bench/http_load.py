"""The HTTP API under load (issue 15), for bench/run.py (`--http-only`), or alone.

A real `tqcli serve --port 0` process answers real HTTP clients (http.client,
one keep-alive connection per client thread) while one `tqcli worker --once`
drains ready no-op tasks (benchjobs:noop, each stamping its end time):

- **offered load**: 20 client threads send 100 GET/s (half GET
  /api/v1/tasks/{id}, 30 % GET /api/v1/tasks?limit=50, 20 % GET
  /api/v1/queues) and 20 POST/s (POST /api/v1/tasks, one task each) on a
  fixed schedule (open loop). A request's latency is measured from the time
  it was scheduled, not from when it was sent, so a slow server cannot hide
  the queue behind it (coordinated omission).
- **drain with and without it**: after a warm-up under load, the load is
  switched off and on in phases of equal length, in the order off, on, on,
  off, off, on... (so a drift of the machine's speed hits both alike). The
  drain rate of a phase is the tasks whose stamp ends inside it, per second.
  The server runs through every phase; off means it answers nothing.
- **maximum requests per second**: with the worker stopped, 20 clients send
  GET /api/v1/tasks/{id} back to back (closed loop).

Errors are any answer but 200 (201 for a POST) and any connection failure;
5xx and busy answers (429, 503) are counted apart, and the server's stderr
is kept for the report.

    python bench/http_load.py [--quick] [--db PATH]
"""

from __future__ import annotations

import http.client
import json
import os
import random
import re
import resource
import signal
import sqlite3
import statistics
import struct
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
from common import Figure, table  # noqa: E402
from tqcli.core.spec import TaskSpec  # noqa: E402

TQCLI = str(Path(sys.executable).parent / "tqcli")
LOGIN = re.compile(r"http://(\S+?):(\d+)/\?token=(\S+)")
CLIENTS = 20
GET_RATE, POST_RATE = 100, 20  # requests per second offered
GET_CYCLE = ("task", "list", "task", "queues", "task", "list", "task", "queues", "task", "list")  # 50 / 30 / 20 %
PATHS = {"list": "/api/v1/tasks?limit=50", "queues": "/api/v1/queues"}
IDLE_REOPEN = 3.0  # seconds: reopen a connection idle this long (uvicorn closes idle ones after 5 s)
START_TIMEOUT = 30.0


@dataclass
class Plan:
    """How long each part runs (seconds)."""

    baseline: float = 8.0  # the drain alone, before any load
    warmup: float = 3.0
    phase: float = 5.0
    pairs: int = 4  # off/on pairs: this many phases of each
    closed: float = 8.0  # the closed-loop run, after a warm-up of 1 s
    probe: float = 1.0  # each endpoint alone, one client back to back, before the backlog and after the drain
    calibrate: int = 10_000  # tasks of the drain that sizes the backlog

    @classmethod
    def quick(cls) -> "Plan":
        return cls(baseline=0.5, warmup=0.25, phase=0.5, pairs=1, closed=0.5, probe=0.1, calibrate=500)

    @property
    def loaded(self) -> float:
        return self.baseline + self.warmup + 2 * self.phase * self.pairs


# -- the server and a client ------------------------------------------------------


class Serve:
    """A `tqcli serve --port 0` process: its address and login token, read from the line it prints on stderr."""

    def __init__(self, db: str, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [TQCLI, "--db", db, "serve", "--port", "0"], env=env, cwd=HERE,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        self.lines: list[str] = []
        found = threading.Event()

        def read() -> None:  # always drained: a full pipe would stall the server
            assert self.process.stderr is not None
            for line in self.process.stderr:
                self.lines.append(line.rstrip("\n"))
                if LOGIN.search(line):
                    found.set()
            found.set()

        threading.Thread(target=read, daemon=True).start()
        match = LOGIN.search(self.lines[-1]) if found.wait(START_TIMEOUT) and self.lines else None
        if match is None:
            self.stop()
            raise RuntimeError(f"tqcli serve printed no login URL: {' | '.join(self.lines[-5:])}")
        self.host, self.port, self.token = match.group(1), int(match.group(2)), match.group(3)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                if Client(self).request("GET", "/healthz")[0] == 200:
                    break
            except (OSError, http.client.HTTPException):
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"tqcli serve did not answer /healthz: {' | '.join(self.lines[-5:])}")
            time.sleep(0.05)

    def cpu(self) -> float:
        """CPU seconds the server process used so far."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def said(self) -> list[str]:
        """What the server printed besides its login line (a traceback, a warning)."""
        return [line for line in self.lines if line.strip() and not LOGIN.search(line)]

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


class Client:
    """One keep-alive HTTP/1.1 connection with the bearer token, reopened after a failure or an idle spell."""

    def __init__(self, server: Serve) -> None:
        self.server = server
        self.headers = {"Authorization": f"Bearer {server.token}", "Accept": "application/json"}
        self.conn: http.client.HTTPConnection | None = None
        self.used = 0.0

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        """Send one request and read its whole answer: (status, body). Raises OSError or HTTPException when the connection fails."""
        if self.conn is None or time.monotonic() - self.used > IDLE_REOPEN:
            self.close()
            self.conn = http.client.HTTPConnection(self.server.host, self.server.port, timeout=60)
        headers = dict(self.headers, **({"Content-Type": "application/json"} if body is not None else {}))
        try:
            self.conn.request(method, path, body=body, headers=headers)
            answer = self.conn.getresponse()
            data = answer.read()
        except BaseException:
            self.close()
            raise
        self.used = time.monotonic()
        if answer.will_close:
            self.close()
        return answer.status, data

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


# -- requests and their latencies --------------------------------------------------


@dataclass
class Sample:
    kind: str  # task, list, queues, post
    at: float  # monotonic time it was scheduled (open loop) or sent (closed loop)
    latency: float
    status: int  # 0: the connection failed
    error: str | None = None


def send(client: Client, kind: str, ids: int, rng: random.Random) -> tuple[int, str | None]:
    """One request of `kind`; (status, error or None). Task ids are drawn from 1..ids."""
    try:
        if kind == "post":
            status, body = client.request("POST", "/api/v1/tasks", json.dumps({"target": "benchjobs:noop"}).encode())
            expected = (201,)
        else:
            path = f"/api/v1/tasks/{rng.randint(1, ids)}" if kind == "task" else PATHS[kind]
            status, body = client.request("GET", path)
            expected = (200,)
    except (OSError, http.client.HTTPException) as error:
        return 0, f"{type(error).__name__}: {error}"
    return status, None if status in expected else body[:200].decode(errors="replace")


def schedule(windows: list[tuple[float, float]]) -> list[tuple[float, str]]:
    """Every request of the offered load inside `windows` (start, end), in time order."""
    events: list[tuple[float, str]] = []
    n = 0
    for start, end in windows:
        for k in range(int((end - start) * GET_RATE)):
            events.append((start + k / GET_RATE, GET_CYCLE[n % len(GET_CYCLE)]))
            n += 1
        offset = 0.5 / POST_RATE  # POSTs fall between GETs
        events += [(start + offset + k / POST_RATE, "post") for k in range(int((end - start) * POST_RATE))]
    return sorted(events)


def open_loop(server: Serve, windows: list[tuple[float, float]], ids: int) -> list[Sample]:
    """The offered load over `windows`, from CLIENTS threads taking the requests in turn; latency from the scheduled time."""
    events = schedule(windows)
    samples: list[list[Sample]] = [[] for _ in range(CLIENTS)]

    def run(index: int) -> None:
        client, rng, mine = Client(server), random.Random(index), samples[index]
        for at, kind in events[index::CLIENTS]:
            delay = at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            status, error = send(client, kind, ids, rng)
            mine.append(Sample(kind, at, time.monotonic() - at, status, error))
        client.close()

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [s for mine in samples for s in mine]


def closed_loop(server: Serve, seconds: float, ids: int, clients: int = CLIENTS) -> tuple[list[Sample], float, float]:
    """`clients` threads sending GET /api/v1/tasks/{id} back to back for 1 s of warm-up and `seconds` more.

    The measured samples, the measured span, and the server's CPU seconds in it.
    """
    start = time.monotonic() + 0.2
    begin, end = start + 1.0, start + 1.0 + seconds
    samples: list[list[Sample]] = [[] for _ in range(clients)]
    cpu: list[float] = []

    def run(index: int) -> None:
        client, rng = Client(server), random.Random(1000 + index)
        time.sleep(max(0.0, start - time.monotonic()))
        while (now := time.monotonic()) < end:
            status, error = send(client, "task", ids, rng)
            if now >= begin:
                samples[index].append(Sample("task", now, time.monotonic() - now, status, error))
        client.close()

    def meter() -> None:
        time.sleep(max(0.0, begin - time.monotonic()))
        cpu.append(server.cpu())
        time.sleep(max(0.0, end - time.monotonic()))
        cpu.append(server.cpu())

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(clients)] + [threading.Thread(target=meter, daemon=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [s for mine in samples for s in mine], seconds, cpu[1] - cpu[0]


def endpoint_costs(server: Serve, seconds: float, ids: int) -> dict[str, tuple[float, float]]:
    """Each kind of request alone, one client back to back for `seconds`: (server CPU, median latency) per request, seconds."""
    costs = {}
    for kind in ("task", "list", "queues", "post"):
        client, rng, latencies, failed = Client(server), random.Random(7), [], 0
        before, end = server.cpu(), time.monotonic() + seconds
        while (now := time.monotonic()) < end:
            status, error = send(client, kind, ids, rng)
            latencies.append(time.monotonic() - now)
            failed += error is not None
        costs[kind] = ((server.cpu() - before) / len(latencies), statistics.median(latencies) if not failed else float("nan"))
        client.close()
    return costs


# -- what the database committed ----------------------------------------------------


def write_transactions(db: str) -> int | None:
    """Write transactions committed so far: SQLite's WAL-index change counter (the -shm header); None on PostgreSQL."""
    if db.startswith("postgresql:"):
        return None
    try:
        with open(f"{db}-shm", "rb") as handle:
            return int(struct.unpack("=I", handle.read(12)[8:12])[0])
    except (OSError, struct.error):
        return None


def wal_bytes(db: str) -> int | None:
    """WAL bytes the PostgreSQL server wrote so far (None on SQLite)."""
    if not db.startswith("postgresql:"):
        return None
    import psycopg

    with psycopg.connect(db, autocommit=True) as conn:
        return int(conn.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").fetchone()[0])  # type: ignore[index]


# -- the worker ------------------------------------------------------------------


def fill(db: str, count: int, first_key: int) -> None:
    """`count` ready no-op tasks, keyed first_key, first_key + 1, ... (their stamps tell when each ran)."""
    with tqcli.open(db) as queue:
        for start in range(0, count, 50_000):
            size = min(50_000, count - start)
            queue.submit_many([TaskSpec("benchjobs:noop", payload={"key": first_key + start + k}) for k in range(size)])
    if db.startswith("postgresql:"):  # as autovacuum soon would on a queue that lives on (bench/parallel.py does the same)
        import psycopg

        with psycopg.connect(db, autocommit=True) as conn:
            conn.execute("ANALYZE")


def stamps_of(path: Path) -> list[int]:
    """The end times (monotonic ns) of the tasks that ran, from BENCH_STAMPS."""
    if not path.exists():
        return []
    return [int(line.split()[2]) for line in path.read_text().splitlines() if line.count(" ") == 2]


class Worker:
    """One `tqcli worker --once` with its stamps and its log; stopped with SIGTERM."""

    def __init__(self, db: str, env: dict[str, str], work: Path, name: str) -> None:
        self.stamps, self.log_path = work / f"{name}.stamps", work / f"{name}.log"
        self.stamps.unlink(missing_ok=True)
        self.log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [TQCLI, "--db", db, "worker", "--once"], env=dict(env, BENCH_STAMPS=str(self.stamps)), cwd=HERE,
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
        )

    def wait_running(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while not (self.stamps.exists() and self.stamps.stat().st_size) and self.process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)

    def stop(self, wait: bool = False) -> tuple[int, list[str]]:
        """Stop it (or wait for it to finish): exit code and what its log said of errors, warnings or busy waits."""
        if not wait and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(120)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self.log.close()
        text = self.log_path.read_text(errors="replace").splitlines()
        said = [line.strip() for line in text if re.search(r"\b(error|warning|traceback|busy|locked)\b", line, re.IGNORECASE)]
        return code, said


# -- one store ----------------------------------------------------------------------


@dataclass
class Result:
    store: str
    samples: list[Sample] = field(default_factory=list)  # the load phases' requests
    on_seconds: float = 0.0
    windows: list[tuple[float, float]] = field(default_factory=list)  # the measured phases with load
    off_rates: list[float] = field(default_factory=list)  # the drain, per phase without load
    base_rate: float = 0.0  # the drain before any load
    on_rates: list[float] = field(default_factory=list)  # the drain, per phase with load
    server_cores: float = 0.0  # server CPU / time, under load
    idle_cores: float = 0.0  # server CPU / time, in the phases without load
    client_cores: float = 0.0  # this process's CPU / time, under load
    db_cores: float | None = 0.0  # the PostgreSQL server's CPU / time, under load (None on SQLite)
    db_idle_cores: float | None = 0.0  # ... in the phases without load
    max_samples: list[Sample] = field(default_factory=list)
    max_seconds: float = 0.0
    max_cpu: float = 0.0
    max_writes: int | None = None  # write transactions (SQLite) during the closed loop
    max_wal: int | None = None  # WAL bytes (PostgreSQL) during the closed loop
    backlog: int = 0
    small: int = 0  # tasks in the database when costs_small was measured
    large: int = 0  # ... and costs_large (besides the few hundred the POSTs added)
    costs_small: dict[str, tuple[float, float]] = field(default_factory=dict)  # kind: (server CPU s, latency s) per request
    costs_large: dict[str, tuple[float, float]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def phases(start: float, plan: Plan) -> list[tuple[str, float, float]]:
    """(base/on/off, start, end) of every measured phase: the drain alone, then after the warm-up off, on, on, off, off, on, ..."""
    order = [name for i in range(plan.pairs) for name in (("off", "on") if i % 2 == 0 else ("on", "off"))]
    t = start + plan.baseline + plan.warmup
    out = [("base", start, start + plan.baseline)]
    for name in order:
        out.append((name, t, t + plan.phase))
        t += plan.phase
    return out


def measure(
    label: str, db: str, env: dict[str, str], work: Path, plan: Plan, log: Callable[[str], None], db_cpu: Callable[[], float] | None = None,
) -> Result:
    """Everything above on the database `db` (fresh and empty); a failure is a problem of the result, not an exception.

    `db_cpu`: CPU seconds the PostgreSQL server's processes used so far (its share of the load is reported too).
    """
    result = Result(label)
    server = None
    try:
        log(f"HTTP load, {label}: sizing the backlog by a drain of {plan.calibrate:,} tasks...")
        fill(db, plan.calibrate, 0)
        calibration = Worker(db, env, work, "calibrate")
        calibration.stop(wait=True)
        ends = sorted(stamps_of(calibration.stamps))
        rate = (len(ends) - 1) / ((ends[-1] - ends[0]) / 1e9) if len(ends) > 1 and ends[-1] > ends[0] else 10_000.0
        result.backlog = int(rate * 1.2 * (plan.loaded + 2)) + 1000
        server = Serve(db, env)
        result.small = plan.calibrate
        result.costs_small = endpoint_costs(server, plan.probe, plan.calibrate)
        fill(db, result.backlog, plan.calibrate)
        ids = result.large = plan.calibrate + result.backlog
        worker = Worker(db, env, work, "drain")
        worker.wait_running()
        log(f"HTTP load, {label}: {result.backlog:,} ready tasks; {plan.loaded:.0f} s of drain with the load switched on and off...")
        start = time.monotonic() + 0.2
        timeline = phases(start, plan)
        warm = start + plan.baseline
        windows = [(warm, warm + plan.warmup)] + [(a, b) for name, a, b in timeline if name == "on"]
        cpu_marks: list[tuple[float, float, float]] = []  # (server CPU, our CPU, database CPU) at each phase's start and end

        def meter() -> None:
            for at in [t for _, a, b in timeline for t in (a, b)]:
                time.sleep(max(0.0, at - time.monotonic()))
                own = resource.getrusage(resource.RUSAGE_SELF)
                cpu_marks.append((server.cpu(), own.ru_utime + own.ru_stime, db_cpu() if db_cpu else 0.0))

        metering = threading.Thread(target=meter, daemon=True)
        metering.start()
        samples = open_loop(server, windows, ids)
        metering.join()
        code, said = worker.stop()
        if said:
            result.problems.append(f"the worker said: {' | '.join(said[:3])}")
        if code != 0:
            result.problems.append(f"the worker exited {code}")
        ends = stamps_of(worker.stamps)
        if len(ends) >= result.backlog:
            result.problems.append("the backlog ran out before the last phase ended: the drain rates are low")
        measured_from = warm + plan.warmup
        result.samples = [s for s in samples if s.at >= measured_from]
        for (name, a, b), (server_a, own_a, db_a), (server_b, own_b, db_b) in zip(timeline, cpu_marks[::2], cpu_marks[1::2]):
            done = sum(1 for end in ends if a * 1e9 <= end < b * 1e9)
            if name == "base":
                result.base_rate = done / (b - a)
                continue
            (result.on_rates if name == "on" else result.off_rates).append(done / (b - a))
            if name == "on":
                result.on_seconds += b - a
                result.windows.append((a, b))
                result.server_cores += (server_b - server_a)
                result.client_cores += (own_b - own_a)
                result.db_cores += (db_b - db_a)
            else:
                result.idle_cores += (server_b - server_a) / (b - a) / plan.pairs
                result.db_idle_cores += (db_b - db_a) / (b - a) / plan.pairs
        result.server_cores /= result.on_seconds or 1
        result.client_cores /= result.on_seconds or 1
        result.db_cores = result.db_cores / (result.on_seconds or 1) if db_cpu else None
        result.db_idle_cores = result.db_idle_cores if db_cpu else None
        result.costs_large = endpoint_costs(server, plan.probe, ids)
        log(f"HTTP load, {label}: {plan.closed:.0f} s of GET /api/v1/tasks/{{id}} from {CLIENTS} clients back to back...")
        writes, wal = write_transactions(db), wal_bytes(db)
        result.max_samples, result.max_seconds, result.max_cpu = closed_loop(server, plan.closed, ids)
        after_writes, after_wal = write_transactions(db), wal_bytes(db)
        result.max_writes = None if writes is None or after_writes is None else after_writes - writes
        result.max_wal = None if wal is None or after_wal is None else after_wal - wal
        states = tasks_in_trouble(db)
        if states:
            result.problems.append(f"tasks not completed cleanly: {states}")
    except Exception as exc:  # noqa: BLE001 - a failed run is a finding, reported with the figures
        result.problems.append(f"{type(exc).__name__}: {exc}")
    finally:
        if server is not None:
            code = server.stop()
            said = server.said()
            if said:
                result.problems.append(f"the server printed {len(said)} line(s) on stderr, first: {' | '.join(said[:3])[:400]}")
            if code != 0:
                result.problems.append(f"tqcli serve exited {code} on SIGTERM")
    return result


def tasks_in_trouble(db: str) -> dict[str, int]:
    """Tasks that failed, or completed after more than one attempt (none expected)."""
    sql = "SELECT state, count(*) FROM tasks WHERE state IN ('failed', 'dead') OR (state = 'completed' AND attempts != 1) GROUP BY state"
    if db.startswith("postgresql:"):
        import psycopg

        with psycopg.connect(db, autocommit=True) as conn:
            return {state: n for state, n in conn.execute(sql).fetchall()}
    conn = sqlite3.connect(db)
    try:
        return {state: n for state, n in conn.execute(sql).fetchall()}
    finally:
        conn.close()


# -- the figures --------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    """The q-quantile (nearest rank) of `values`."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(q * len(ordered) + 0.5)) - 1))] if ordered else float("nan")


def latencies(samples: list[Sample]) -> str:
    ms = [s.latency * 1000 for s in samples]
    return f"p50 {pct(ms, 0.5):.1f} ms, p99 {pct(ms, 0.99):.1f} ms, max {max(ms, default=float('nan')):.0f} ms"


def errors(samples: list[Sample]) -> tuple[int, str]:
    """How many requests failed, and a summary by status (5xx and busy answers named)."""
    bad = [s for s in samples if s.error is not None]
    if not bad:
        return 0, "0 errors"
    by = Counter("connection failed" if s.status == 0 else f"HTTP {s.status}" for s in bad)
    first = next(s.error for s in bad)
    return len(bad), f"**{len(bad)} errors** ({', '.join(f'{k}: {v}' for k, v in by.most_common())}; first: {first[:120]})"


def achieved(samples: list[Sample], result: Result) -> float:
    """Requests per second answered before the end of the phase they were scheduled in (a saturated server falls behind)."""
    answered = sum(1 for s in samples if any(a <= s.at < b and s.at + s.latency <= b for a, b in result.windows))
    return answered / (result.on_seconds or 1)


def costs(result: Result) -> str:
    """Server CPU and median latency per request of each endpoint alone, at both database sizes."""
    names = {"task": "GET /api/v1/tasks/{id}", "list": "GET /api/v1/tasks?limit=50", "queues": "GET /api/v1/queues", "post": "POST /api/v1/tasks"}
    parts = []
    for kind, name in names.items():
        small, large = result.costs_small.get(kind), result.costs_large.get(kind)
        if small and large:
            parts.append(f"{name} {small[0] * 1000:.2f} / {large[0] * 1000:.2f} ms CPU ({small[1] * 1000:.1f} / {large[1] * 1000:.1f} ms latency)")
    rates = {kind: GET_RATE * GET_CYCLE.count(kind) / len(GET_CYCLE) for kind in set(GET_CYCLE)} | {"post": POST_RATE}
    if all(kind in result.costs_small and kind in result.costs_large for kind in rates):
        demand = [sum(rate * measured[kind][0] for kind, rate in rates.items()) for measured in (result.costs_small, result.costs_large)]
        parts.append(f"so the offered load needs {demand[0]:.2f} / {demand[1]:.2f} cores of server CPU (one process: at most about 1 core of Python)")
    return "; ".join(parts)


def figures(result: Result, plan: Plan) -> list[Figure]:
    """The rows of the section's table for one store."""
    label, out = result.store, []
    gets = [s for s in result.samples if s.kind != "post"]
    posts = [s for s in result.samples if s.kind == "post"]
    seconds = result.on_seconds or 1
    offered = f"{GET_RATE} GET/s + {POST_RATE} POST/s offered by {CLIENTS} clients, open loop, latency from the scheduled time, while one worker drains"
    if gets:
        count, said = errors(gets)
        per = "; ".join(f"{PATHS.get(kind, '/api/v1/tasks/{id}')}: {latencies([s for s in gets if s.kind == kind])}" for kind in ("task", "list", "queues"))
        out.append(Figure(
            f"GET under load, {label}", f"{offered}; {seconds:.0f} s measured",
            f"{latencies(gets)} ({per}); answered in time {achieved(gets, result):.1f}/s; {said}", "0 errors", count == 0,
        ))
    if posts:
        count, said = errors(posts)
        out.append(Figure(
            f"POST under load, {label}", "POST /api/v1/tasks, one task each, in the same load",
            f"{latencies(posts)}; answered in time {achieved(posts, result):.1f}/s; {said}", "0 errors", count == 0,
        ))
    if result.on_rates and result.off_rates:
        on, off = statistics.mean(result.on_rates), statistics.mean(result.off_rates)
        pairs = [a / b for a, b in zip(result.on_rates, result.off_rates) if b > 0]
        ratio = on / off if off else 0.0
        base = on / result.base_rate if result.base_rate else 0.0
        out.append(Figure(
            f"drain under HTTP load, {label}",
            f"one `worker --once` over {result.backlog:,} ready no-op tasks: {plan.baseline:g} s alone, then after a warm-up "
            f"{plan.pairs} phases of {plan.phase:g} s with the load and {plan.pairs} without, alternating",
            f"{on:,.0f}/s with vs {off:,.0f}/s in the phases without: {ratio:.2f}x (phase pairs {min(pairs):.2f}-{max(pairs):.2f}x); "
            f"vs {result.base_rate:,.0f}/s before any load: {base:.2f}x; "
            f"under load tqcli serve used {result.server_cores:.2f} cores ({result.idle_cores:.2f} in the phases without)"
            + (f", PostgreSQL {result.db_cores:.2f} ({result.db_idle_cores:.2f})" if result.db_cores is not None else "")
            + f", the load generator {result.client_cores:.2f}",
            ">= 0.8x (both)", ratio >= 0.8 and base >= 0.8,
        ))
    if result.costs_small and result.costs_large:
        out.append(Figure(
            f"cost per request, {label}", f"each endpoint alone, one client back to back for {plan.probe:g} s, no worker: "
            f"server CPU per request at {result.small:,} / {result.large:,} tasks in the database",
            costs(result), "(reported)", None,
        ))
    if result.max_samples:
        count, said = errors(result.max_samples)
        rate = len(result.max_samples) / result.max_seconds
        writes = ""
        if result.max_writes is not None:
            writes = f"; write transactions meanwhile: {result.max_writes}"
        elif result.max_wal is not None:
            writes = f"; WAL written meanwhile: {result.max_wal:,} bytes"
        out.append(Figure(
            f"maximum requests/s, {label}", f"closed loop: {CLIENTS} clients send GET /api/v1/tasks/{{id}} back to back for {result.max_seconds:g} s, no worker",
            f"{rate:,.0f}/s; {latencies(result.max_samples)}; server CPU {result.max_cpu / len(result.max_samples) * 1e6:,.0f} us per request"
            f"{writes}; {said}", "(reported)", None if count == 0 else False,
        ))
    if result.problems:
        out.append(Figure(f"problems, {label}", "what went wrong in the run", " / ".join(result.problems), "none", False))
    return out


def section(stores: list[Any], plan: Plan, work: Path, env_for: Callable[[str], dict[str, str]], log: Callable[[str], None]) -> str:
    """The "HTTP API under load (issue 15)" section: a table over `stores` (bench/parallel.py's SqliteStore, PostgresStore)."""
    rows: list[Figure] = []
    for store in stores:
        db = store.fresh("http_load")
        try:
            server = getattr(store, "server", None)  # PostgresStore: the PostgreSQL server (bench/parallel.py)
            result = measure(store.label, db, env_for(db), work, plan, log, server.cpu if server is not None else None)
        finally:
            store.drop(db)
        done = figures(result, plan)
        for figure in done:
            log(f"{figure.name}: {figure.value}")
        rows += done
    return "### HTTP API under load (issue 15)\n\n" + table(rows) + "\n"


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short phases (a smoke run)")
    parser.add_argument("--db", help="a postgresql:// URL of an empty database to measure instead of a SQLite file")
    args = parser.parse_args()
    plan = Plan.quick() if args.quick else Plan()
    work = Path(tempfile.mkdtemp(prefix="tqcli-http-"))
    env = lambda db: dict(os.environ, PYTHONPATH=f"{HERE}:{ROOT}", NO_COLOR="1", TQCLI_DB=db)  # noqa: E731
    db = args.db or str(work / "http.db")
    try:
        result = measure("PostgreSQL" if args.db else "SQLite", db, env(db), work, plan, lambda line: print(line, file=sys.stderr))
        print(table(figures(result, plan)))
    finally:
        import shutil

        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
