"""Shell completions: generated from the app, never stale, and working in a real bash."""

import importlib.machinery
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

import tqcli
from tests.conftest import REPO, TQCLI

# Shell completion and its index lookups on SQLite; PostgreSQL's lookups are in test_store_contract.py.
pytestmark = pytest.mark.sqlite_only


def generator():
    loader = importlib.machinery.SourceFileLoader("gen_completions", str(REPO / "scripts" / "gen-completions"))
    spec = importlib.util.spec_from_loader("gen_completions", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_committed_completions_are_current(shell):
    committed = (REPO / "completions" / f"tqcli.{shell}").read_text()
    assert committed == generator().generate(shell), "completions are stale: run 'make completions'"


def complete_in_bash(words: str, cword: int) -> list[str]:
    script = f"""
source {REPO / 'completions' / 'tqcli.bash'}
COMP_WORDS=({words})
COMP_CWORD={cword}
_tqcli_completion tqcli
printf '%s\\n' "${{COMPREPLY[@]}}"
"""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
    done = subprocess.run(["bash", "--norc", "--noprofile", "-c", script], capture_output=True, text=True, env=env, timeout=30, check=True)
    return done.stdout.split()


def test_bash_completes_a_command():
    assert complete_in_bash("tqcli su", 1) == ["submit"]


def test_bash_completes_subcommands_and_options():
    assert complete_in_bash("tqcli audit ver", 2) == ["verify"]
    assert "--priority" in complete_in_bash("tqcli submit --pri", 2)


# -- values, through Click's completion protocol ------------------------------

def complete(cli, line: str, env: dict[str, str] | None = None, instruction: str = "bash_complete") -> list[str]:
    """What `tqcli` offers for the last word of `line` (empty when it ends with a space); stderr must stay empty."""
    words = line.split()
    cword = len(words) if line.endswith(" ") else len(words) - 1
    merged = {**cli.env, "_TQCLI_COMPLETE": instruction, "COMP_WORDS": line, "COMP_CWORD": str(cword), **(env or {})}
    merged = {key: value for key, value in merged.items() if value is not None}
    done = subprocess.run([TQCLI], capture_output=True, text=True, env=merged, cwd=cli.cwd, timeout=30)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    return done.stdout.split()


@pytest.fixture
def filled(cli):
    """A database with tasks in three queues and two tenants, a schedule, a DAG and a circuit."""
    with tqcli.open(cli.db) as queue:
        queue.submit("tests.jobs:noop", queue="emails", tenant="acme")
        queue.submit("tests.jobs:noop", queue="emails-bulk", tenant="acme")
        queue.submit("tests.jobs:noop", queue="reports", tenant="globex")
        queue.schedules.add("nightly-backup", cron="0 3 * * *", options={"target": "tests.jobs:noop"})
        queue.breakers.configure("smtp:relay", failure_threshold=3)
    cli.ok("dag", "submit", str(REPO / "sample-configs" / next(p.name for p in (REPO / "sample-configs").glob("*.toml") if "dag" in p.name)))
    return cli


def test_backends_come_from_the_entry_points(cli):
    assert {"simple", "shell"} <= set(complete(cli, "tqcli submit --backend "))
    assert complete(cli, "tqcli run --backend sh") == ["shell"]


def test_states_are_offered(cli):
    assert complete(cli, "tqcli status --state c") == ["completed", "cancelled"]
    assert len(complete(cli, "tqcli status --state ")) == 6
    assert complete(cli, "tqcli prune --state ") == ["completed", "cancelled", "failed"], "prune takes finished states only"


def test_queues_and_tenants_come_from_the_database(filled):
    assert complete(filled, "tqcli status --queue ") == ["default", "emails", "emails-bulk", "reports"]  # default: the DAG's
    assert complete(filled, "tqcli worker --queue em") == ["emails", "emails-bulk"]
    assert complete(filled, "tqcli dlq list --tenant ") == ["acme", "default", "globex"]
    assert complete(filled, "tqcli submit --tenant g") == ["globex"]
    assert complete(filled, "tqcli submit --service sm") == ["smtp:relay"]


def test_the_db_typed_on_the_command_line_wins(filled, tmp_path):
    other = tmp_path / "other.db"
    with tqcli.open(other) as queue:
        queue.submit("tests.jobs:noop", queue="elsewhere")
    assert complete(filled, f"tqcli --db {other} status --queue e") == ["elsewhere"]
    assert complete(filled, f"tqcli --db={other} status --queue e") == ["elsewhere"]
    assert complete(filled, "tqcli status --queue e") == ["emails", "emails-bulk"], "else TQCLI_DB"


def test_the_config_files_db_is_used_without_tqcli_db(filled, tmp_path):
    config = tmp_path / "tq.toml"
    config.write_text(f'db = "{filled.db}"\n')
    assert complete(filled, f"tqcli --config {config} status --queue r", env={"TQCLI_DB": None}) == ["reports"]


def test_schedule_names_dag_ids_and_breaker_keys(filled):
    assert complete(filled, "tqcli schedule pause ") == ["nightly-backup"]
    assert complete(filled, "tqcli schedule next n") == ["nightly-backup"]
    assert complete(filled, "tqcli schedule add ") == [], "a new name cannot be completed"
    assert complete(filled, "tqcli dag status ") == ["1"]
    assert complete(filled, "tqcli dag cancel 2") == []
    assert complete(filled, "tqcli breaker reset ") == ["smtp:relay"]


def test_zsh_gets_values_with_their_descriptions(filled):
    out = " ".join(complete(filled, "", env={"_TYPER_COMPLETE_ARGS": "tqcli schedule pause "}, instruction="zsh_complete"))
    assert '"nightly-backup":"0 3 * * *"' in out, "the cron expression describes the schedule"


@pytest.mark.parametrize("problem", ["missing", "empty", "garbage", "folder", "bad config"])
def test_any_failure_offers_nothing_prints_nothing_and_creates_nothing(cli, tmp_path, problem):
    db = tmp_path / "nowhere" / "tq.db"
    env = {"TQCLI_DB": str(db)}
    if problem == "empty":
        db.parent.mkdir()
        db.write_bytes(b"")
    elif problem == "garbage":
        db.parent.mkdir()
        db.write_bytes(b"not a database at all" * 100)
    elif problem == "folder":
        db.mkdir(parents=True)
    elif problem == "bad config":
        (cli.cwd / "tqcli.toml").write_text("db = [\n")
        env = {"TQCLI_DB": None}
    before = sorted(tmp_path.rglob("*"))
    assert complete(cli, "tqcli status --queue ", env=env) == []
    assert complete(cli, "tqcli schedule pause ", env=env) == []
    assert sorted(tmp_path.rglob("*")) == before, "completion never creates a file"


def test_completion_never_writes_the_database(filled):
    filled.ok("status")  # a reader closes cleanly; then nothing may change
    before = {path.name: path.read_bytes() for path in filled.db.parent.glob("tq.db*")}
    for line in ("tqcli status --queue ", "tqcli status --tenant ", "tqcli schedule pause ", "tqcli dag status "):
        complete(filled, line)
    assert {path.name: path.read_bytes() for path in filled.db.parent.glob("tq.db*")} == before


def test_options_added_later_complete_by_their_name():
    import typer
    from typer.main import get_command

    from tqcli.cli import command_group
    from tqcli.cli.conventions import apply

    group = command_group("Someone's new group.")

    @group.command("drain")
    def drain(queue: str = typer.Option("default", "--queue"), state: str = typer.Option("pending", "--state")) -> None:
        """Drain."""

    command = get_command(group)
    command.name = "extra"
    apply(command)
    sub = command  # a group of one command is that command
    ctx = sub.context_class(sub, info_name="drain")
    by_flag = {param.opts[0]: param for param in sub.params}
    assert [item.value for item in by_flag["--state"].shell_complete(ctx, "r")] == ["running"]
    assert by_flag["--queue"]._custom_shell_complete is not None


# -- the lookups use indexes, whatever the size of the database ---------------

def plans(db, kind: str, prefix: str) -> list[str]:
    """The query plan lines of every statement known_names runs."""
    import sqlite3

    from tqcli.store.names_sql import LOOKUPS

    conn = sqlite3.connect(db)
    seen: list[str] = []

    class Recording:
        def execute(self, sql, params=()):
            seen.extend(row[-1] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params))
            return conn.execute(sql, params)

    LOOKUPS[kind](Recording(), prefix, 100)
    conn.close()
    return seen


def fill_tasks(db, rows: int) -> None:
    """Add `rows` tasks spread over 40 queues, 6 states and 25 tenants, straight into the table (fast)."""
    import sqlite3

    tqcli.open(db).close()
    conn = sqlite3.connect(db)
    conn.execute(
        """INSERT INTO tasks (name, queue, tenant, backend, target, payload, priority, state, max_retries, backoff,
                              run_at, service, created_at, submitted_by)
        WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
        SELECT 'job', 'queue-' || (i % 40), 'tenant-' || (i % 25), 'simple', 'app:run', '{}', 0,
               CASE i % 6 WHEN 0 THEN 'pending' WHEN 1 THEN 'running' WHEN 2 THEN 'completed'
                          WHEN 3 THEN 'failed' WHEN 4 THEN 'cancelled' ELSE 'blocked' END,
               3, 5, i, 'simple:app:run', i, 'bench' FROM n""",
        (rows,),
    )
    conn.commit()
    conn.close()


@pytest.mark.parametrize("kind", ["queue", "tenant", "schedule", "service", "dag"])
@pytest.mark.parametrize("prefix", ["", "queue-1", "tenant-2", "1"])
def test_lookups_seek_indexes_and_never_scan_a_table(tmp_path, kind, prefix):
    db = tmp_path / "tq.db"
    fill_tasks(db, 2000)
    steps = plans(db, kind, prefix)
    if kind == "dag" and not prefix:  # the newest DAGs: a backwards walk of the primary key that stops at the limit
        steps = [step for step in steps if step != "SCAN dags"]
    assert not [step for step in steps if step.startswith("SCAN") and "CONSTANT ROW" not in step and "found" not in step], steps


def test_skip_scans_find_exactly_the_distinct_names(tmp_path):
    import sqlite3

    from tqcli.core.names import known_names

    db = tmp_path / "tq.db"
    fill_tasks(db, 3000)
    conn = sqlite3.connect(db)
    for column, kind in (("queue", "queue"), ("tenant", "tenant")):
        every = sorted(row[0] for row in conn.execute(f"SELECT DISTINCT {column} FROM tasks"))
        for prefix in ("", f"{column}-1", f"{column}-2", f"{column}-", "x", f"{column}-19"):
            expected = [name for name in every if name.startswith(prefix)]
            assert [value for value, _ in known_names(db, kind, prefix)] == expected, (kind, prefix)


@pytest.mark.skipif(os.environ.get("TQCLI_COMPLETION_BENCH") != "1", reason="builds a million tasks: set TQCLI_COMPLETION_BENCH=1")
def test_completion_answers_within_150_ms_on_a_million_tasks(cli):
    import time

    fill_tasks(cli.db, 1_000_000)
    for line in ("tqcli status --queue ", "tqcli status --tenant ", "tqcli worker --tenant tenant-1"):
        complete(cli, line)  # warm the page cache, as a second TAB would
        times = []
        for _ in range(7):
            started = time.perf_counter()
            assert complete(cli, line)
            times.append(time.perf_counter() - started)
        print(f"{line!r}: best {min(times) * 1000:.0f} ms, median {sorted(times)[3] * 1000:.0f} ms")
        assert min(times) < 0.150, line
