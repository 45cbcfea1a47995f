"""Output on a terminal (rich) versus a pipe (plain), and NO_COLOR."""

import os
import pty
import re
import subprocess

from tests.conftest import TQCLI

ANSI_COLOR = re.compile(r"\x1b\[[0-9;]*m")


def run_on_terminal(cli, *args, env=None):
    """Run tqcli with stdout on a pseudo-terminal; returns what it drew."""
    leader, follower = pty.openpty()
    merged = {**cli.env, "TERM": "xterm-256color", "COLUMNS": "120", **(env or {})}
    process = subprocess.Popen([TQCLI, *args], stdout=follower, stderr=subprocess.PIPE, env=merged, cwd=cli.cwd)
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    process.wait(timeout=30)
    os.close(leader)
    return b"".join(chunks).decode()


def test_terminal_gets_a_rich_table_with_colour(cli):
    cli.submit("app.jobs:run", "--name", "nightly")
    out = run_on_terminal(cli, "status")
    assert "nightly" in out and "PENDING" in out
    assert ANSI_COLOR.search(out), "a terminal should get styled output"


def test_no_color_turns_styles_off_on_a_terminal(cli):
    cli.submit("app.jobs:run", "--name", "nightly")
    out = run_on_terminal(cli, "status", env={"NO_COLOR": "1"})
    assert "nightly" in out
    assert not ANSI_COLOR.search(out)


def test_pipe_gets_plain_aligned_columns(cli):
    cli.submit("app.jobs:run", "--name", "nightly")
    lines = cli.ok("status").stdout.splitlines()
    assert lines[0].split() == ["QUEUE", "PENDING", "RUNNING", "COMPLETED", "FAILED", "CANCELLED", "BLOCKED"]
    header = next(line for line in lines if line.startswith("ID"))
    assert header.split() == ["ID", "STATE", "QUEUE", "TENANT", "PRIO", "ATTEMPTS", "CREATED", "NAME"]


def test_dag_status_draws_a_tree_on_a_terminal(cli, tmp_path):
    dag = tmp_path / "d.toml"
    dag.write_text('[tasks.root]\ntarget = "tests.jobs:noop"\n[tasks.left]\ntarget = "tests.jobs:noop"\ndepends_on = ["root"]\n'
                   '[tasks.right]\ntarget = "tests.jobs:noop"\ndepends_on = ["root"]\n[tasks.sink]\ntarget = "tests.jobs:noop"\ndepends_on = ["left", "right"]\n')
    cli.ok("dag", "submit", str(dag))
    out = run_on_terminal(cli, "dag", "status", "1", env={"NO_COLOR": "1"})
    lines = out.splitlines()
    assert lines[0].startswith("DAG 1")
    assert any("root #1 pending" in line for line in lines)
    assert sum("sink #4" in line for line in lines) == 2 and "(see above)" in out  # a diamond: the sink under both parents
    assert sum(line.startswith("DAG 1") for line in lines) == 1, "the DAG is named once"
    assert any(line.lstrip().startswith(("├", "└")) for line in lines)
    cli.ok("cancel", "2")
    out = run_on_terminal(cli, "dag", "status", "1", env={"NO_COLOR": "1"})
    assert "left #2 cancelled: cancelled by" in out, "a task that did not complete says why"


def test_tables_fit_an_80_column_terminal(cli):
    cli.submit("tests.jobs:boom", "--max-retries", "1", "--backoff", "0", "--name", "a rather long task name")
    cli.ok("worker", "--once")
    listing = run_on_terminal(cli, "status", env={"NO_COLOR": "1", "COLUMNS": "80"})
    row = next(line for line in listing.splitlines() if line.startswith("1 "))
    assert len(row.rstrip()) <= 80 and " failed " in row and re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ", row)
    detail = run_on_terminal(cli, "status", "1", env={"NO_COLOR": "1", "COLUMNS": "80"})
    attempts = [line for line in detail.splitlines() if line.split()[:1] in (["1"], ["2"])]
    # the error is shown, whole or ellipsised (with a long host name in WORKER the table falls back to plain lines)
    assert len(attempts) == 2 and all(re.search(r"ValueE(rror: boom|\S*…)$", line.rstrip()) for line in attempts), attempts


def test_status_watch_redraws_until_interrupted(cli):
    import signal
    import time

    cli.submit("tests.jobs:noop", "--name", "watched")
    watcher = cli.spawn("status", "--watch")
    time.sleep(2.5)
    watcher.send_signal(signal.SIGINT)
    out, err = watcher.communicate(timeout=10)
    assert watcher.returncode == 0, err
    assert out.count("watched") >= 2  # drawn more than once
