"""Encryption at rest (issue 13): what encrypting every task costs a worker's drain, on SQLite.

One `tqcli worker --once` drains N ready no-op tasks (default 2,000) of
one of three databases, filled the same way (`submit --from-file`):

- plain, no key file: the audit chain is plain SHA-256;
- plain, with a key file: the chain is HMAC-keyed, as on any database
  that has run `tqcli keys init` (the baseline of the goal);
- encrypted: every line says `"encrypt": true`, so the worker opens each
  payload before running it and seals each result before recording it.

Runs are interleaved (plain, keyed, encrypted, then again) and each figure
is the median of `--runs` with its min-max; the ratio is taken run by run.
Goal: encrypted at least 0.8x plain with the same key file.

    python bench/encrypted_drain.py [--count N] [--runs N] [--markdown FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from common import Figure, spread, table  # noqa: E402

TQCLI = str(Path(sys.executable).parent / "tqcli")
GOAL = 0.8


def environment(work: Path, db: Path, keyed: bool) -> dict[str, str]:
    """The environment of one kind of run: its database, and a key file or none."""
    env = dict(os.environ, TQCLI_DB=str(db), PYTHONPATH=f"{HERE}:{ROOT}", NO_COLOR="1", XDG_CONFIG_HOME=str(work / "config"))
    env.pop("TQCLI_CONFIG", None)
    env["TQCLI_KEY_FILE"] = str(work / "keys.toml") if keyed else str(work / "no-keys.toml")
    return env


def fresh(path: Path) -> Path:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return path


def drain_rate(work: Path, kind: str, jobs: Path, count: int) -> float:
    """Fill a fresh database of `kind` (plain, keyed, encrypted) and time one `worker --once` over it; tasks per second."""
    db = fresh(work / f"{kind}.db")
    env = environment(work, db, keyed=kind != "plain")
    subprocess.run([TQCLI, "submit", "--from-file", str(jobs)], env=env, check=True, stdout=subprocess.DEVNULL)
    started = time.perf_counter()
    subprocess.run([TQCLI, "worker", "--once", "--quiet"], env=env, check=True, cwd=HERE, stdout=subprocess.DEVNULL)
    elapsed = time.perf_counter() - started
    done = subprocess.run([TQCLI, "status", "--json"], env=env, check=True, capture_output=True, text=True)
    completed = json.loads(done.stdout)["counts"]["completed"]
    if completed != count:
        raise SystemExit(f"{kind}: {completed} of {count} tasks completed")
    return count / elapsed


def measure(count: int, runs: int) -> list[Figure]:
    """The three drains, interleaved, `runs` times each; the figures of the table."""
    with tempfile.TemporaryDirectory(prefix="tqcli-bench-enc-") as folder:
        work = Path(folder)
        keys_env = environment(work, work / "keys.db", keyed=True)
        subprocess.run([TQCLI, "keys", "init"], env=keys_env, check=True, stderr=subprocess.DEVNULL)
        plain_jobs, encrypted_jobs = work / "plain.jsonl", work / "encrypted.jsonl"
        plain_jobs.write_text((json.dumps({"target": "benchjobs:noop"}) + "\n") * count)
        encrypted_jobs.write_text((json.dumps({"target": "benchjobs:noop", "encrypt": True}) + "\n") * count)
        rates: dict[str, list[float]] = {"plain": [], "keyed": [], "encrypted": []}
        for _ in range(runs):
            rates["plain"].append(drain_rate(work, "plain", plain_jobs, count))
            rates["keyed"].append(drain_rate(work, "keyed", plain_jobs, count))
            rates["encrypted"].append(drain_rate(work, "encrypted", encrypted_jobs, count))
    ratios = [encrypted / keyed for encrypted, keyed in zip(rates["encrypted"], rates["keyed"])]
    plain_ratios = [encrypted / plain for encrypted, plain in zip(rates["encrypted"], rates["plain"])]
    ratio = statistics.median(ratios)
    return [
        Figure("drain, plain", f"`worker --once` over {count:,} no-op tasks, no key file (SHA-256 chain)", spread(rates["plain"], "/s"), "-", None),
        Figure("drain, plain with keys", "the same with a key file (HMAC chain)", spread(rates["keyed"], "/s"), "-", None),
        Figure(
            "drain, encrypted", "the same tasks submitted with `encrypt`: payload opened, result sealed per task",
            f"{spread(rates['encrypted'], '/s')}: {spread(ratios, 'x', 2)} of plain with keys, "
            f"{spread(plain_ratios, 'x', 2)} of plain without", f">= {GOAL}x plain with keys", ratio >= GOAL,
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000, help="tasks per drain (default 2,000)")
    parser.add_argument("--runs", type=int, default=5, help="runs of each drain (default 5)")
    parser.add_argument("--markdown", metavar="FILE", help="also write the table to FILE")
    args = parser.parse_args()
    text = table(measure(args.count, args.runs))
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text + "\n")


if __name__ == "__main__":
    main()
