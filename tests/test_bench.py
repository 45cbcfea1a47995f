"""The benchmark script runs end to end (on tiny data: this checks the script, not the figures)."""

import subprocess
import sys

from tests.conftest import REPO


def test_the_benchmark_runs_and_prints_its_table():
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "run.py"), "--quick", "--runs", "1", "--no-compare"],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    table = done.stdout
    for figure in ("submit latency", "bulk submit", "drain, no-op Python tasks", "drain, shell `true` tasks",
                   "two workers, shell tasks", "claim cost growth", "status at scale", "metrics at scale", "audit verify",
                   "worker memory", "two workers, `echo hi` tasks"):
        assert f"| {figure} |" in table, figure
    assert "the executemany floor into the same tables" in table
    assert "bare Typer+INSERT" in table
    assert "| 4 workers on PostgreSQL vs procrastinate and PgQueuer |" not in table  # the peers were not run (--no-compare)
    assert "### Tenants and fair claims (issue 12)" in table
    for figure in ("claim rate, 1 vs 100 tenants", "claim plan", "late tenant", "claim beside a paused queue", "drain by 1 vs 100 tenants"):
        assert f"| {figure}, SQLite |" in table, figure
