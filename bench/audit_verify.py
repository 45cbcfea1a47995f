"""The keyed audit chain (issue 13): what HMAC-SHA256 links cost `audit verify`, on SQLite.

Two databases hold the same N entries (default 1,000,000), built directly
with the link encoder (`tqcli.security.audit.link_bytes`) and inserted in
one transaction, not through N commands:

- plain: SHA-256 links, no key id (a database without a key file);
- keyed: HMAC-SHA256 links under the audit key of a key file made as
  `tqcli keys init` makes one, each entry naming its key id.

Each is verified by `queue.audit.verify()` in one process (the ordered
fast pass, `scan_stretch`) and split between processes (one per core, the
default of `tqcli audit verify`), runs interleaved (plain, keyed, then
again); every figure is the median of `--runs` with its min-max, the ratio
taken run by run. Goal: keyed within 1.5x plain.

    python bench/audit_verify.py [--entries N] [--runs N] [--markdown FILE]
"""

from __future__ import annotations

import argparse
import os
import resource
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

import tqcli  # noqa: E402
from common import Figure, spread, table  # noqa: E402
from tqcli.config import Config  # noqa: E402
from tqcli.security.audit import GENESIS_HASH, audit_time, encode_details, link_bytes, link_hasher  # noqa: E402
from tqcli.security.audit_log import PARALLEL_FROM  # noqa: E402
from tqcli.security.keys import KeyRing, new_key_ring, write_key_file  # noqa: E402

GOAL = 1.5
_BATCH = 50_000


def build_chain(db: Path, entries: int, key: tuple[str, bytes] | None) -> str:
    """A database whose audit table holds `entries` task.submit-like entries linked by `key` (None: plain); the head hash."""
    tqcli.open(db).close()  # the schema, as tqcli makes it
    key_id, secret = key if key is not None else (None, None)
    hasher = link_hasher(secret)
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("BEGIN")
    prev, started = GENESIS_HASH, 1_765_000_000_000_000
    batch = []
    for seq in range(1, entries + 1):
        ts = audit_time(started + seq * 1000)
        details = encode_details({"queue": "default", "priority": 0, "target": "app.jobs:step"})
        fields = (seq, ts, "bench", "task.submit", seq, "default", details, key_id, prev)
        prev = hasher(link_bytes(*fields))
        batch.append((*fields, prev))
        if len(batch) == _BATCH:
            conn.executemany("INSERT INTO audit VALUES (?,?,?,?,?,?,?,?,?,?)", batch)
            batch.clear()
    conn.executemany("INSERT INTO audit VALUES (?,?,?,?,?,?,?,?,?,?)", batch)
    conn.execute("COMMIT")
    conn.close()
    return prev


def _cpu() -> float:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def time_verify(db: Path, key_file: Path, processes: int | None, head: str) -> tuple[float, float]:
    """`(wall, CPU)` seconds of one `audit.verify()` of `db` (opened with `key_file`, helpers' CPU included), checked intact and ending at `head`."""
    with tqcli.open(db, config=Config(db, key_file=key_file)) as queue:
        cpu, started = _cpu(), time.perf_counter()
        report = queue.audit.verify(processes=processes)
        elapsed, cpu = time.perf_counter() - started, _cpu() - cpu
    if not report.intact or report.head_hash != head:
        raise RuntimeError(f"{db}: verify failed: {report.problem}")
    return elapsed, cpu


def section(work: Path, entries: int, runs: int, log: Callable[[str], None]) -> list[Figure]:
    """The figures: plain and keyed verify in one process and split, and their ratios."""
    ring: KeyRing = new_key_ring(work / "keys.toml")
    write_key_file(ring)
    audit = ring.primary_audit
    assert audit is not None
    no_keys = work / "no-keys.toml"
    plain_db, keyed_db = work / "plain.db", work / "keyed.db"
    log(f"building {entries:,} plain and {entries:,} keyed entries")
    heads = {plain_db: build_chain(plain_db, entries, None), keyed_db: build_chain(keyed_db, entries, (audit.id, audit.key))}
    cores = os.cpu_count() or 1
    split = f"split between {cores} processes" if cores > 1 and entries >= PARALLEL_FROM else "tqcli's default (one process below PARALLEL_FROM)"
    figures = []
    for label, processes in (("one process", 1), (split, None)):
        plain, keyed = [], []
        for _ in range(runs):
            plain.append(time_verify(plain_db, no_keys, processes, heads[plain_db]))
            keyed.append(time_verify(keyed_db, ring.path, processes, heads[keyed_db]))
            log(f"{label}: plain {plain[-1][0]:.2f} s ({plain[-1][1]:.2f} s CPU), keyed {keyed[-1][0]:.2f} s ({keyed[-1][1]:.2f} s CPU)")
        wall = statistics.median(k[0] / p[0] for k, p in zip(keyed, plain))
        cpu = statistics.median(k[1] / p[1] for k, p in zip(keyed, plain))

        def figure(times: list[tuple[float, float]]) -> str:
            walls = [t[0] for t in times]
            return f"{spread(walls, ' s', 2)} = {spread([entries / t for t in walls], '/s')}, CPU {spread([t[1] for t in times], ' s', 2)}"

        figures.append(Figure(
            f"audit verify, HMAC vs SHA-256, {label}",
            f"{entries:,} entries each, SQLite",
            f"SHA-256 {figure(plain)}; HMAC {figure(keyed)}: {wall:.2f}x the wall time, {cpu:.2f}x the CPU",
            f"HMAC <= {GOAL}x SHA-256",
            max(wall, cpu) <= GOAL,
        ))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000, help="entries in each chain (default 1,000,000)")
    parser.add_argument("--runs", type=int, default=3, help="runs per figure (default 3)")
    parser.add_argument("--markdown", metavar="FILE", help="also write the table to FILE")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tqcli-bench-audit-") as folder:
        figures = section(Path(folder), args.entries, args.runs, lambda line: print(line, file=sys.stderr))
    report = table(figures)
    print(report)
    if args.markdown:
        Path(args.markdown).write_text(report + "\n")


if __name__ == "__main__":
    main()
