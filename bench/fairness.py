"""Tenants and fair claims (issue 12), for bench/run.py: what taking turns costs, and what it buys.

On each store bench/run.py measures (SQLite; PostgreSQL when it started
its server), through the library, the way a worker claims: every claim is
`tqcli.core.dispatcher.claim` in a committed write transaction of its own
(`Context.change`, audit entries included), one task at a time or a
window of 64.

- Claim rates on a backlog of pending no-op tasks spread round-robin over
  1, 100 and 10,000 tenants of equal weight (interleaved: 1, 100, 10,000,
  then again), in tasks claimed per second.
- Where a late tenant lands: tenant `b` submits k tasks behind tenant
  `a`'s backlog; claims go on until `b`'s last is claimed.
- The plans at that backlog: `Tx.explain_claim`, the level and work
  lookups (`Tx.level_start`, `Tx.queues_at_level`), and every other statement
  one claim runs, recorded as the claim runs them and then EXPLAINed.
- A claim beside a paused queue's backlog of the same tenant and level.
- `tqcli worker --once` drains of no-op tasks by 1 vs 100 tenants.
"""

from __future__ import annotations

import re
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import parallel
import tqcli
from common import Figure, spread
from tqcli.core import dispatcher
from tqcli.core.spec import TaskSpec

TARGET = "benchjobs:noop"
BACKENDS = ["shell", "simple"]  # what a worker with the built-in backends claims for
WINDOW = 64  # the largest window a worker slot claims at once (tqcli.core.execution.MAX_WINDOW)
CHUNK = 50_000
LEASE = 600.0
Store = parallel.SqliteStore | parallel.PostgresStore
Log = Callable[[str], None]


def rates(values: list[float]) -> str:
    """A spread of rates, with a decimal when they are small."""
    return spread(values, "/s", 1 if statistics.median(values) < 100 else 0)


def tenant(n: int) -> str:
    return f"t{n:05d}"


def fill(db: str, count: int, tenants: int, *, queue: str = "default", name: Callable[[int], str] = tenant) -> None:
    """Submit `count` no-op tasks round-robin over `tenants` tenants, in bulk transactions."""
    with tqcli.open(db) as q:
        for start in range(0, count, CHUNK):
            q.submit_many([TaskSpec(TARGET, tenant=name(i % tenants), queue=queue) for i in range(start, min(count, start + CHUNK))])


def ready(store: Store, db: str) -> None:
    """ANALYZE a filled PostgreSQL database, as autovacuum soon would (see parallel.analyze)."""
    if isinstance(store, parallel.PostgresStore):
        parallel.analyze(db)


def claim_once(q: Any, count: int) -> list[dispatcher.Claim]:
    """One claim as a worker makes it: its own write transaction, committed with its audit entries."""
    ctx = q._ctx
    with ctx.change() as (tx, journal):
        return dispatcher.claim(tx, journal, count=count, now=ctx.clock.now(), worker="bench", lease_seconds=LEASE, backends=BACKENDS)


def claim_rate(db: str, count: int, transactions: int, budget: float) -> float:
    """Tasks claimed per second by `transactions` claims of `count` (fewer once `budget` seconds passed, at least 3)."""
    with tqcli.open(db) as q:
        claim_once(q, count)  # the first claim of a connection prepares its statements
        claimed, started = 0, time.perf_counter()
        for n in range(transactions):
            got = claim_once(q, count)
            assert len(got) == count, f"a claim of {count} took {len(got)}: the backlog ran out"
            claimed += len(got)
            if n >= 2 and time.perf_counter() - started > budget:
                break
        return claimed / (time.perf_counter() - started)


# -- claim rates by tenants -----------------------------------------------------------


@dataclass
class Rates:
    """Tasks claimed per second, by (tenants, claim size), one value per run."""

    by: dict[tuple[int, int], list[float]] = field(default_factory=dict)

    def add(self, tenants: int, count: int, rate: float) -> None:
        self.by.setdefault((tenants, count), []).append(rate)

    def ratio(self, tenants: int, count: int) -> float:
        """How many times slower than one tenant, the median of the runs' ratios."""
        return statistics.median(a / b for a, b in zip(self.by[(1, count)], self.by[(tenants, count)]))


def claim_rates(store: Store, runs: int, sizes: dict[str, Any], log: Log) -> tuple[list[Figure], str]:
    """The claim rates by 1, 100 and 10,000 tenants on one store, and the plans at the 100-tenant backlog."""
    backlog, counts = sizes["tenant_backlog"], sizes["tenant_counts"]
    dbs = {}
    for tenants in counts:
        dbs[tenants] = store.fresh(f"bench_tenants_{tenants}")
        fill(dbs[tenants], backlog, tenants)
        ready(store, dbs[tenants])
    try:
        plans = Plans(store, dbs[counts[1]], counts[1])
        found = Rates()
        for run in range(runs):
            for tenants in counts:
                for count, transactions in zip((1, WINDOW), sizes["claim_transactions"]):
                    found.add(tenants, count, claim_rate(dbs[tenants], count, transactions, sizes["claim_budget"]))
            log(f"  {store.label}, run {run + 1}: " + ", ".join(
                f"{tenants:,} tenants {found.by[(tenants, 1)][-1]:,.1f}/s by one, {found.by[(tenants, WINDOW)][-1]:,.0f}/s by {WINDOW}"
                for tenants in counts
            ))
    finally:
        for db in dbs.values():
            store.drop(db)
    one, mid, big = counts
    by = found.by
    how = (
        f"`dispatcher.claim` in committed transactions on {backlog:,} pending no-op tasks spread round-robin over "
        f"{{}} tenants of equal weight: tasks claimed per second, one task per claim and windows of {WINDOW}"
    )
    worst = max(found.ratio(mid, 1), found.ratio(mid, WINDOW))
    figures = [
        Figure(
            f"claim rate, {one} vs {mid:,} tenants, {store.label}", how.format(f"{one} or {mid:,}"),
            f"one per claim: {rates(by[(one, 1)])} vs {rates(by[(mid, 1)])}: {found.ratio(mid, 1):.2f}x slower; "
            f"windows of {WINDOW}: {rates(by[(one, WINDOW)])} vs {rates(by[(mid, WINDOW)])}: "
            f"{found.ratio(mid, WINDOW):.2f}x slower",
            "<= 1.5x slower", worst <= 1.5,
        ),
        Figure(
            f"claim rate, {big:,} tenants, {store.label}", how.format(f"{big:,}"),
            f"one per claim: {rates(by[(big, 1)])}, {found.ratio(big, 1):.1f}x slower than 1 tenant; windows of {WINDOW}: "
            f"{rates(by[(big, WINDOW)])}, {found.ratio(big, WINDOW):.1f}x slower",
            "(reported)", None,
        ),
        plans.figure(),
    ]
    return figures, plans.table()


# -- the plans ------------------------------------------------------------------------


class _Recorder:
    """Stands in for a transaction's connection and records each statement run through it, with its parameters."""

    def __init__(self, conn: Any, calls: list[tuple[str, str, tuple]], kind: str = "tx") -> None:
        self._conn = conn
        self._calls = calls
        self._kind = kind

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        self._calls.append((self._kind, sql, tuple(params)))
        return self._conn.execute(sql, params)

    def executemany(self, sql: str, rows: Any) -> Any:
        rows = list(rows)
        if rows:
            self._calls.append((self._kind, sql, tuple(rows[0])))
        return self._conn.executemany(sql, rows)

    @property
    def raw(self) -> "_Recorder":  # PostgreSQL: statements written for psycopg itself (%s placeholders)
        return _Recorder(self._conn.raw, self._calls, "raw")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


class _Rollback(Exception):
    pass


def _traced_claim(db: str, count: int) -> list[tuple[str, str, tuple]]:
    """Every statement one committed claim of `count` runs, its audit append included, in order."""
    calls: list[tuple[str, str, tuple]] = []
    with tqcli.open(db) as q:
        ctx = q._ctx
        with ctx.change() as (tx, journal):
            real = tx.conn
            tx.conn = _Recorder(real, calls)
            try:
                dispatcher.claim(tx, journal, count=count, now=ctx.clock.now(), worker="bench", lease_seconds=LEASE, backends=BACKENDS)
            except BaseException:
                tx.conn = real
                raise
        tx.conn = real  # kept through the audit append at the end of the `with`
    return calls


_COSTS = re.compile(r"\s*\(cost=[^)]*\)")
_MARKS = re.compile(r"(\?|%s)(\s*,\s*(\?|%s)){3,}")


def _short(sql: str, limit: int = 150) -> str:
    """A statement or plan line on one line: runs of placeholders shortened, long text cut."""
    text = _MARKS.sub(r"\1,...", " ".join(sql.split()))
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _plan_line(line: str) -> str:
    return _short(_COSTS.sub("", line).strip(), 200)


class Plans:
    """The plans of a claim's statements on one store, on a backlog spread over `tenants` tenants."""

    def __init__(self, store: Store, db: str, tenants: int) -> None:
        self.store, self.tenants = store, tenants
        self.pg = isinstance(store, parallel.PostgresStore)
        with tqcli.open(db) as q:
            for _ in range(tenants):  # every tenant takes a turn first, so each has a pass, as in a queue that has run a while
                claim_once(q, 1)
        traced = {count: _traced_claim(db, count) for count in (1, WINDOW)}
        self.calls: dict[str, list[int]] = {}  # statement -> runs in a claim of 1, of WINDOW
        self.first: dict[str, tuple[str, tuple]] = {}
        for n, count in enumerate((1, WINDOW)):
            for kind, sql, params in traced[count]:
                self.calls.setdefault(sql, [0, 0])[n] += 1
                self.first.setdefault(sql, (kind, params))
        with tqcli.open(db) as q, q._ctx.store.write() as tx:
            self.pending = tx.conn.execute("SELECT count(*) FROM tasks WHERE state = 'pending'").fetchone()[0]
            self.claim = [_plan_line(line) for line in tx.explain_claim(priority=0, tenants=(tenant(0),), queues=("default",), backends=BACKENDS)]
            self.plans = {sql: self._explain(tx, sql, *self.first[sql]) for sql in self.calls}
            self.level = next(plan for sql, plan in self.plans.items() if sql.lstrip().startswith("WITH RECURSIVE pairs(priority"))
            self.work = [plan for sql, plan in self.plans.items() if sql.lstrip().startswith("WITH RECURSIVE pairs")]
            # The plans are read in a transaction that writes nothing and is not kept.

    def _explain(self, tx: Any, sql: str, kind: str, params: tuple) -> list[str]:
        if sql.split(None, 1)[0].upper() not in ("SELECT", "INSERT", "UPDATE", "DELETE", "WITH"):
            return ["(not a query)"]
        if not self.pg:
            return [row[-1] for row in tx.conn.execute(f"EXPLAIN QUERY PLAN {sql}", params)]
        conn = tx.conn.raw if kind == "raw" else tx.conn
        return [_plan_line(row[0]) for row in conn.execute(f"EXPLAIN {sql}", params)]

    def problems(self, plan: list[str]) -> list[str]:
        """What in a plan is not an index search: scans of tables or indexes, temporary B-trees, sorts."""
        bad = []
        # SQLite names each CTE it evaluates (CO-ROUTINE or MATERIALIZE NAME); a SCAN of one reads the
        # few rows that CTE made, not a table or an index, as PostgreSQL's CTE Scan does.
        ctes = {line.strip().split()[1] for line in plan if line.strip().startswith(("CO-ROUTINE ", "MATERIALIZE "))}
        for line in plan:
            step = line.lstrip("-> ").strip()
            if self.pg:
                if step.startswith(("Seq Scan", "Sort", "Incremental Sort")) and not step.startswith("Sort Key"):
                    bad.append(step)
            elif step.startswith("SCAN ") and "CONSTANT ROW" not in step and step.split()[1] not in ctes or "TEMP B-TREE" in step:
                bad.append(step)
        return bad

    def figure(self) -> Figure:
        named = [("pick (explain_claim)", self.claim), ("level", self.level)] + [("tenants and queues at the level", plan) for plan in self.work]
        shown = "; ".join(f"{what}: {' / '.join(plan)}" for what, plan in named)
        searched = not any(self.problems(plan) for _, plan in named)
        return Figure(
            f"claim plan, {self.store.label}",
            f"at {self.pending:,} pending tasks over {self.tenants} tenants (each with a pass): one tenant's pick at one level and the claim of the "
            "picked ids (`explain_claim`), the level lookup, the lookup of the tenants and queues with work at the level",
            shown, "index searches; no temp B-tree, no Sort", searched,
        )

    def table(self) -> str:
        lines = [
            f"Every statement of one claim on {self.store.label} ({self.pending:,} pending tasks over {self.tenants} tenants, each "
            "with a pass; the audit append included), as the claim ran it, with its plan:",
            "",
            f"| statement | runs in a claim of 1 / of {WINDOW} | plan | scan, sort or temp B-tree |",
            "| --- | --- | --- | --- |",
        ]
        for sql, (one, window) in self.calls.items():
            plan = " / ".join(self.plans[sql]).replace("|", "\\|") or "(reads no table)"
            bad = "; ".join(self.problems(self.plans[sql])) or "-"
            lines.append(f"| `{_short(sql)}` | {one} / {window} | {plan} | {bad} |")
        return "\n".join(lines) + "\n"


# -- a late tenant ----------------------------------------------------------------------


def late_tenant(store: Store, backlog: int, log: Log) -> Figure:
    """Tenant b's k tasks behind tenant a's backlog: how many claims and tasks come before b's first and last."""
    found: dict[tuple[int, int], tuple[tuple[int, int], tuple[int, int]]] = {}
    for k in (1, 10):
        for count in (1, WINDOW):
            db = store.fresh("bench_late")
            try:
                fill(db, backlog, 1, name=lambda _: "a")
                fill(db, k, 1, name=lambda _: "b")
                ready(store, db)
                found[(k, count)] = _claims_until(db, k, count)
            finally:
                store.drop(db)
    met = all(last[1] + 1 <= 2 * k for (k, _), (_, last) in found.items())

    def where(k: int, count: int) -> str:
        (c1, t1), (c2, t2) = found[(k, count)]
        if k == 1:
            return f"k=1: b's task after {_claims(c1)} (task {t1 + 1} claimed)"
        return f"k=10: b's first after {_claims(c1)} (task {t1 + 1}), its last after {_claims(c2)} (task {t2 + 1})"

    value = "; ".join(
        f"{'one task per claim' if count == 1 else f'windows of {WINDOW}'}: {where(1, count)}, {where(10, count)}"
        for count in (1, WINDOW)
    )
    log(f"  {store.label}: {value}")
    return Figure(
        f"late tenant, {store.label}",
        f"tenant b submits k tasks after tenant a's {backlog:,} pending ones (same priority, weight 1 each); claims go on until "
        f"b's last is claimed (before issue 12, oldest first: behind all {backlog:,})",
        value, "b's k-th among the first 2k tasks claimed", met,
    )


def _claims(n: int) -> str:
    return f"{n} claim{'' if n == 1 else 's'}"


def _claims_until(db: str, k: int, count: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """Claims of `count` until tenant b's k tasks are all claimed: (claims, tasks) before b's first and before its last."""
    claims = tasks = seen = 0
    first = last = None
    with tqcli.open(db) as q:
        while last is None:
            got = claim_once(q, count)
            assert got, "the claims ran out of tasks before tenant b's were claimed"
            for n, claimed in enumerate(got):  # in the order the slot runs them
                if claimed.tenant == "b":
                    seen += 1
                    if seen == 1:
                        first = (claims, tasks + n)
                    if seen == k:
                        last = (claims, tasks + n)
            claims += 1
            tasks += len(got)
    assert first is not None
    return first, last


# -- a paused queue -----------------------------------------------------------------------


def paused_backlog(store: Store, backlog: int, sizes: dict[str, Any], log: Log) -> Figure:
    """Claims of one task while the same tenant has `backlog` older tasks in a paused queue at the same priority."""
    db = store.fresh("bench_paused")
    try:
        fill(db, backlog, 1, queue="held")
        fill(db, 2_000, 1)
        ready(store, db)
        transactions = sizes["claim_transactions"][0]
        with tqcli.open(db) as q:
            q.tenancy.set_queue("held", paused=True)
        paused = claim_rate(db, 1, transactions, sizes["claim_budget"])
        with tqcli.open(db) as q:
            q.tenancy.set_queue("held", paused=False)
        running = claim_rate(db, 1, transactions, sizes["claim_budget"])
    finally:
        store.drop(db)
    log(f"  {store.label}: {paused:,.0f}/s beside the paused queue, {running:,.0f}/s once it is resumed")
    return Figure(
        f"claim beside a paused queue, {store.label}",
        f"one task per claim from a queue of 2,000 ready tasks while the same tenant has {backlog:,} older tasks at the same "
        "priority in a paused queue, vs the same claims once that queue is resumed",
        f"{paused:,.0f}/s paused vs {running:,.0f}/s resumed: {running / paused:.1f}x slower while paused", "(reported)", None,
    )


# -- drains -------------------------------------------------------------------------------


def drains_by_tenants(stores: Sequence[Store], runs: int, count: int, log: Log) -> list[Figure]:
    """`tqcli worker --once` over `count` no-op tasks of 1 vs 100 tenants, interleaved; start-up included, as in run.py's drain."""
    found: dict[tuple[str, int], list[float]] = {}
    for _ in range(runs):
        for store in stores:
            for tenants in (1, 100):
                db = store.fresh(f"bench_tenant_drain_{tenants}")
                try:
                    fill(db, count, tenants)
                    ready(store, db)
                    started = time.perf_counter()
                    subprocess.run([parallel.TQCLI, "worker", "--once"], env=parallel.env_for(db), cwd=parallel.HERE, check=True,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    found.setdefault((store.label, tenants), []).append(count / (time.perf_counter() - started))
                    (left,), = store.rows(db, "SELECT count(*) FROM tasks WHERE state != 'completed'")
                    assert left == 0, f"{left} tasks not completed"
                finally:
                    store.drop(db)
    figures = []
    for store in stores:
        one, hundred = found[(store.label, 1)], found[(store.label, 100)]
        ratio = statistics.median(b / a for a, b in zip(one, hundred))
        log(f"  drain {store.label}: 1 tenant {spread(one, '/s')}, 100 tenants {spread(hundred, '/s')}")
        figures.append(Figure(
            f"drain by 1 vs 100 tenants, {store.label}",
            f"one `worker --once` over {count:,} no-op tasks of 1 tenant or spread over 100, start-up included",
            f"{spread(one, '/s')} vs {spread(hundred, '/s')}: 100 tenants drain at {ratio:.2f}x the rate", "(reported)", None,
        ))
    return figures


# -- the section ----------------------------------------------------------------------------


def section(stores: Sequence[Store], runs: int, sizes: dict[str, Any], log: Log) -> tuple[list[Figure], str]:
    """bench/run.py's "Tenants and fair claims" section: its figures, and the tables of every claim statement's plan."""
    figures: list[Figure] = []
    tables: list[str] = []
    for store in stores:
        log(f"claim rates by tenants, {store.label}:")
        done, table = claim_rates(store, runs, sizes, log)
        figures += done
        tables.append(table)
        log(f"a late tenant, {store.label}:")
        figures.append(late_tenant(store, sizes["late_backlog"], log))
        log(f"a paused queue's backlog, {store.label}:")
        figures.append(paused_backlog(store, sizes["paused_backlog"], sizes, log))
    log("drains by 1 and 100 tenants:")
    figures += drains_by_tenants(stores, runs, sizes["tenant_drain"], log)
    return figures, "\n".join(tables)
