"""The same drains and claims by two builds of tqcli, interleaved: what a change costs.

    python bench/compare_builds.py OLD_REV [NEW_REV] [--runs N] [--quick] [--drains-only] [--markdown FILE]

Each revision (NEW_REV: HEAD by default) is checked out by `git worktree
add --detach` into a temporary folder, byte-compiled, run from there with
this environment's Python and packages (PYTHONPATH names the checkout; no
install), and removed at the end. A database is always made by the build
that reads it (each writes its own schema), through that build's library.

Per run, old then new, each on a fresh SQLite database of its own:

- the no-op drain of bench/run.py: one `tqcli worker --once` over N ready
  `benchjobs:noop` tasks, start-up included, with 1 tenant and with the
  tasks spread round-robin over 100;
- the printing drain: the same over `benchjobs:chatty` tasks, which print
  one line each (a build with output capture stores it; an older one sent
  it to the worker's stderr);
- the shell drain: the same over `true` tasks of the shell backend;
- claims through the library (`dispatcher.claim` in committed
  transactions, one task per claim and windows of 64) on a backlog of
  100,000 tasks of 1 tenant.

Every figure is the median of the runs with its min-max, and new/old is
the median of the runs' ratios; each is given by wall time and by CPU time
(the tasks over the CPU seconds the worker, its executor and its shells
used, or the claiming process), which other work on the machine moves less. The load average is printed before and
after, since other work on the machine moves every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# Each build runs through its own `python -m tqcli` (the installed script names one build's entry point).
TQCLI = [sys.executable, "-m", "tqcli"]


# -- run inside a build (PYTHONPATH names its checkout) ----------------------------------


def child_fill(db: str, count: int, tenants: int, target: str, backend: str) -> None:
    import tqcli
    from tqcli.core.spec import TaskSpec

    with tqcli.open(db) as q:
        for start in range(0, count, 50_000):
            q.submit_many([
                TaskSpec(target, backend=backend, tenant=f"t{i % tenants:05d}") for i in range(start, min(count, start + 50_000))
            ])
    print(json.dumps({"tqcli": tqcli.__file__}))


def child_claims(db: str, count: int, transactions: int) -> None:
    import tqcli
    from tqcli.core import dispatcher

    with tqcli.open(db) as q:
        ctx = q._ctx

        def claim() -> int:
            with ctx.change() as (tx, journal):
                return len(dispatcher.claim(tx, journal, count=count, now=ctx.clock.now(), worker="bench", lease_seconds=600.0,
                                            backends=["shell", "simple"]))

        claim()
        started, cpu = time.perf_counter(), time.process_time()
        claimed = sum(claim() for _ in range(transactions))
        rate = claimed / (time.perf_counter() - started)
        cpu_rate = claimed / (time.process_time() - cpu)
    assert claimed == count * transactions
    print(json.dumps({"tqcli": tqcli.__file__, "rate": rate, "cpu_rate": cpu_rate}))


# -- the comparison ----------------------------------------------------------------------


class Build:
    """One revision, checked out in a folder of its own."""

    def __init__(self, rev: str, folder: Path) -> None:
        self.commit = git("rev-parse", "--short", rev)
        self.rev = rev
        self.folder = folder
        git("worktree", "add", "--detach", str(folder), rev)
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(folder / "tqcli")], check=True)

    def env(self, db: Path) -> dict[str, str]:
        env = dict(os.environ, TQCLI_DB=str(db), PYTHONPATH=f"{self.folder}:{HERE}", NO_COLOR="1")
        env.pop("TQCLI_CONFIG", None)
        return env

    def child(self, db: Path, *args: object) -> dict:
        # cwd is bench/ of this checkout: it holds no tqcli package that could shadow the build's.
        out = subprocess.run([sys.executable, str(Path(__file__)), "--child", *map(str, args)], env=self.env(db), cwd=HERE,
                             capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"{self.commit}: {out.stderr[-2000:]}")
        result = json.loads(out.stdout.strip().splitlines()[-1])
        assert result["tqcli"].startswith(str(self.folder)), f"ran {result['tqcli']}, not the build in {self.folder}"
        return result

    def drain(self, work: Path, count: int, tenants: int, target: str = "benchjobs:noop", backend: str = "simple") -> dict:
        """One `worker --once` over `count` fresh tasks: tasks per second of wall time, and per second of its CPU time.

        The CPU time is the worker's and its executor's (and the shells'),
        start-up included: what the build spends, less moved by other work on
        the machine than the wall time.
        """
        db = fresh(work / f"{self.commit}.db")
        self.child(db, "fill", db, count, tenants, target, backend)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        subprocess.run([*TQCLI, "worker", "--once"], env=self.env(db), cwd=HERE, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        fresh(db)
        return {"rate": count / wall, "cpu_rate": count / cpu}

    def remove(self) -> None:
        git("worktree", "remove", "--force", str(self.folder))


def git(*args: str) -> str:
    return subprocess.run(["git", *args], capture_output=True, text=True, cwd=ROOT, check=True).stdout.strip()


def fresh(path: Path) -> Path:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return path


def load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def spread(values: list[float], unit: str = "", digits: int = 0) -> str:
    fmt = f"{{:,.{digits}f}}"
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}-{fmt.format(max(values))}){unit}"


Series = list[tuple[str, list[dict], list[dict]]]


def compare(old: Build, new: Build, work: Path, runs: int, sizes: dict[str, int], log, drains_only: bool = False) -> Series:
    measures = [
        (f"no-op drain, {sizes['drain']:,} tasks, 1 tenant (/s)", lambda b: b.drain(work, sizes["drain"], 1)),
        (f"no-op drain, {sizes['drain']:,} tasks, 100 tenants (/s)", lambda b: b.drain(work, sizes["drain"], 100)),
        (f"printing drain (one line each), {sizes['drain']:,} tasks, 1 tenant (/s)", lambda b: b.drain(work, sizes["drain"], 1, "benchjobs:chatty")),
    ]
    if not drains_only:
        measures.append((f"shell `true` drain, {sizes['shell']:,} tasks, 1 tenant (/s)", lambda b: b.drain(work, sizes["shell"], 1, "true", "shell")))
    claim_dbs = {}
    for build in () if drains_only else (old, new):
        claim_dbs[build] = fresh(work / f"claims-{build.commit}.db")
        build.child(claim_dbs[build], "fill", claim_dbs[build], sizes["backlog"], 1, "benchjobs:noop", "simple")
    for count, transactions in () if drains_only else ((1, sizes["claims1"]), (64, sizes["claims64"])):
        measures.append((
            f"claims of {count}, {sizes['backlog']:,} tasks of 1 tenant (tasks/s)",
            lambda b, count=count, transactions=transactions: b.child(claim_dbs[b], "claims", claim_dbs[b], count, transactions),
        ))
    results = [(name, [], []) for name, _ in measures]
    for run in range(runs):
        for (name, measure), (_, olds, news) in zip(measures, results):
            olds.append(measure(old))
            news.append(measure(new))
            log(f"run {run + 1}, {name}: old {olds[-1]['rate']:,.0f} (by CPU {olds[-1]['cpu_rate']:,.0f}), "
                f"new {news[-1]['rate']:,.0f} (by CPU {news[-1]['cpu_rate']:,.0f}) (load {load()})")
    return results


def report(old: Build, new: Build, results: Series) -> str:
    """Rates by wall time and by CPU time (tasks per CPU-second), old and new, and new / old of each."""
    lines = [
        f"| measure | old: {old.commit} | new: {new.commit} | new / old | by CPU time, old | by CPU time, new | new / old, by CPU time |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, olds, news in results:
        cells = []
        for key in ("rate", "cpu_rate"):
            a, b = [o[key] for o in olds], [n[key] for n in news]
            cells += [spread(a), spread(b), spread([y / x for x, y in zip(a, b)], "x", 3)]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        kind, *args = sys.argv[2:]
        if kind == "fill":
            child_fill(args[0], int(args[1]), int(args[2]), args[3], args[4])
        else:
            child_claims(args[0], int(args[1]), int(args[2]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", metavar="OLD_REV")
    parser.add_argument("new", metavar="NEW_REV", nargs="?", default="HEAD")
    parser.add_argument("--runs", type=int, default=5, help="runs of each build (default 5), interleaved old, new, old, new...")
    parser.add_argument("--quick", action="store_true", help="small data sets (a smoke run, not the figures)")
    parser.add_argument("--drains-only", action="store_true", help="only the no-op and printing drains (no shell drain, no claims)")
    parser.add_argument("--markdown", metavar="FILE", help="also write the table to FILE")
    args = parser.parse_args()
    sizes = dict(drain=20_000, shell=2_000, backlog=100_000, claims1=1_000, claims64=100)
    if args.quick:
        sizes = dict(drain=500, shell=50, backlog=2_000, claims1=50, claims64=5)
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    work = Path(tempfile.mkdtemp(prefix="tqcli-builds-"))
    builds: list[Build] = []
    started, load_before = time.perf_counter(), load()
    try:
        for name, rev in (("old", args.old), ("new", args.new)):
            builds.append(Build(rev, work / name))
        old, new = builds
        results = compare(old, new, work, args.runs, sizes, log, args.drains_only)
    finally:
        for build in builds:
            build.remove()
        shutil.rmtree(work, ignore_errors=True)
    text = (
        f"old {old.commit} ({args.old}) vs new {new.commit} ({args.new}); {args.runs} runs each, interleaved; "
        f"took {time.perf_counter() - started:.0f} s; load average (1, 5, 15 min) {load_before} at the start, {load()} at the end\n\n"
        + report(old, new, results)
    )
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text + "\n")


if __name__ == "__main__":
    main()
