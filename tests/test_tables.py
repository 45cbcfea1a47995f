"""Snapshots of every table the CLI draws on a terminal of 60, 80 and 120 columns.

The database is built once through the library on a manual clock with a
fixed worker id, so ids, times and names are the same on every run. The
snapshots live in tests/data/tables/; `TQCLI_UPDATE_SNAPSHOTS=1 pytest
tests/test_tables.py` rewrites them (read the diff before committing it).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

import tqcli
from tests.conftest import REPO, Cli
from tests.test_output import run_on_terminal
from tqcli.clock import ManualClock
from tqcli.core.dags import load_dag_file

# Table rendering is the CLI's: the store under it does not change a line.
pytestmark = pytest.mark.sqlite_only

SNAPSHOTS = REPO / "tests" / "data" / "tables"
WIDTHS = (60, 80, 120)
LONG_ERROR = (
    "ConnectionError: the upstream server at https://api.example.com/v2/reports "
    "closed the connection unexpectedly while we were reading the response"
)
LONG_COMMAND = "pg_dumpall --clean --if-exists | gzip -9 > /backups/cluster-nightly.sql.gz"

TABLES = {
    "status": ["status"],
    "status-task": ["status", "2"],
    "dlq-list": ["dlq", "list"],
    "dag-list": ["dag", "list"],
    "dag-status": ["dag", "status", "1"],
    "schedule-list": ["schedule", "list"],
    "breaker-list": ["breaker", "list"],
    "audit-log": ["audit", "log", "--limit", "6"],
}


def build(db: Path) -> None:
    """Tasks in every state that has a table, a failed DAG, a schedule, an open circuit and audit entries."""
    with tqcli.open(db, clock=ManualClock(), actor="alice") as queue:
        queue.breakers.configure("simple:tests.jobs:boom", failure_threshold=2)
        # one task per drain: a worker claims its next task before it records the last, so two would race
        queue.submit("tests.jobs:noop", name="nightly report for the finance team of the northern region")
        queue.drain(worker_id="worker-1")
        queue.submit("tests.jobs:boom", name="flaky", max_retries=1, backoff=0, payload={"message": LONG_ERROR})
        queue.drain(worker_id="worker-1")  # two failures: its circuit opens
        queue.submit("tests.jobs:boom", name="short", max_retries=0, queue="emails", tenant="acme", service="smtp-relay.example.com:587")
        queue.drain(worker_id="worker-1")
        queue.submit("tests.jobs:noop", name="waits for its turn", priority=10, queue="reports-eu-west")
        dag = db.parent / "etl.toml"
        dag.write_text(
            'name = "etl"\n[tasks.extract]\ntarget = "tests.jobs:noop"\n'
            '[tasks.load]\ntarget = "tests.jobs:add"\nmax_retries = 0\ndepends_on = ["extract"]\n'
        )
        queue.dags.submit(load_dag_file(dag))
        queue.drain(worker_id="worker-1", queues=("default",))  # the DAG: its tasks run one after the other
        queue.schedules.add("nightly-backup", cron="0 3 * * *", tz="Europe/Paris", options={"target": LONG_COMMAND, "backend": "shell"})


@pytest.fixture(scope="module")
def tables_cli(tmp_path_factory: pytest.TempPathFactory) -> Cli:
    """The CLI on the snapshot database (built once for this module; the commands only read)."""
    folder = tmp_path_factory.mktemp("tables")
    (folder / "home").mkdir()
    build(folder / "tq.db")
    return Cli(folder / "tq.db", folder / "home")


def drawn(cli: Cli, args: list[str], width: int) -> str:
    """What a terminal of `width` columns shows, without colour and trailing blanks."""
    out = run_on_terminal(cli, *args, env={"NO_COLOR": "1", "COLUMNS": str(width)})
    return "\n".join(line.rstrip() for line in out.replace("\r\n", "\n").splitlines()) + "\n"


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("table", list(TABLES))
def test_table_matches_its_snapshot(tables_cli: Cli, table: str, width: int) -> None:
    repo = str(Path(__file__).resolve().parent.parent)
    text = drawn(tables_cli, TABLES[table], width).replace(repo, "<repo>")  # tracebacks name the clone's folder
    snapshot = SNAPSHOTS / f"{table}-{width}.txt"
    if os.environ.get("TQCLI_UPDATE_SNAPSHOTS") == "1":
        SNAPSHOTS.mkdir(parents=True, exist_ok=True)
        snapshot.write_text(text)
    assert snapshot.exists(), f"no snapshot {snapshot.name}: run with TQCLI_UPDATE_SNAPSHOTS=1"
    assert text == snapshot.read_text(), f"{' '.join(TABLES[table])} at {width} columns changed: compare with {snapshot}"


def tokens(text: str) -> list[list[str]]:
    """Words per line, times in the terminal's short form: what two layouts of one table share."""
    short = re.sub(r"(\d{4}-\d\d-\d\d)[T ](\d\d:\d\d:\d\d)(\.\d+)?Z", r"\1_\2Z", text)
    return [line.split() for line in short.splitlines()]


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("table", [name for name in TABLES if name != "dag-status"])
def test_each_table_fits_its_terminal_one_line_a_row_or_is_the_plain_layout(tables_cli: Cli, table: str, width: int) -> None:
    shown_blocks = drawn(tables_cli, TABLES[table], width).split("\n\n")
    plain_blocks = tables_cli.ok(*TABLES[table]).stdout.split("\n\n")
    if table == "status-task":  # its first block is `name  value` lines, not a table
        shown_blocks, plain_blocks = shown_blocks[1:], plain_blocks[1:]
    assert len(shown_blocks) == len(plain_blocks)
    for shown, plain in zip(shown_blocks, plain_blocks):
        if any(len(line) > width for line in shown.splitlines()):
            assert "…" not in shown and tokens(shown) == tokens(plain), "a table too wide is the plain layout"
        else:
            assert len(shown.splitlines()) == len(plain.splitlines()), "one line a row"


def test_ids_states_counts_and_times_are_never_cut(tables_cli: Cli) -> None:
    for width in WIDTHS:
        for args in (["status"], ["dlq", "list"], ["audit", "log", "--limit", "6"]):
            for line in drawn(tables_cli, args, width).splitlines():
                first = line.split()[:1]
                assert not first or "…" not in first[0], f"{args} at {width}: {line}"
                assert not re.search(r"\d{4}-\d\d-\d\d[ T][\d:.]*…", line), f"a time was cut: {line}"


def test_free_text_is_one_line_and_ellipsised_on_an_80_column_terminal(tables_cli: Cli) -> None:
    lines = drawn(tables_cli, ["dlq", "list"], 80).splitlines()
    assert len(lines) == 1 + 3, "one line per failed task"
    flaky = next(line for line in lines if " flaky " in line)
    assert flaky.endswith("…") and len(flaky) <= 80 and "ValueError: C" in flaky


def test_a_cell_is_never_read_as_markup(cli: Cli) -> None:
    cli.submit("tests.jobs:noop", "--name", "[bold]not bold[/] [/nothing]")
    out = run_on_terminal(cli, "status", env={"NO_COLOR": "1", "COLUMNS": "120"})
    assert "[bold]not bold[/] [/nothing]" in out
