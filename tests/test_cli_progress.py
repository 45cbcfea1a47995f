"""Progress bars on stderr: in a real terminal (tmux) for bulk submit, worker --once and dag run; never in a pipe, with CI or --json."""

import json
import os
import threading

import pytest

from tests.tmux import needs_tmux, terminal  # noqa: F401 - the fixture

BAR = "━"  # what rich draws a bar with


def lines(count):
    """A bulk file of `count` no-op tasks."""
    return "".join(json.dumps({"target": "tests.jobs:noop"}) + "\n" for _ in range(count))


@pytest.fixture
def held_stdin(tmp_path):
    """A fifo that a command reads as stdin, held open until the test closes it (so the command is caught mid-read)."""
    path = tmp_path / "stdin.fifo"
    os.mkfifo(path)
    opened = {}

    def hold():
        opened["fd"] = os.open(path, os.O_WRONLY)  # blocks until the command opens it for reading

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()

    class Held:
        name = str(path)

        def write(self, text):
            holder.join(timeout=10)
            os.write(opened["fd"], text.encode())

        def close(self):
            holder.join(timeout=10)
            os.close(opened.pop("fd"))

    yield Held()
    if "fd" in opened:
        os.close(opened["fd"])


@needs_tmux
def test_bulk_submit_shows_a_bar_on_a_terminal_and_prints_only_ids(cli, terminal, held_stdin, tmp_path):
    ids = tmp_path / "ids"
    pane = terminal("submit", "--from-file", "-", redirect=f"< {held_stdin.name} > {ids}")
    held_stdin.write(lines(300))
    pane.wait_for(lambda screen: "reading stdin" in screen and BAR in screen)
    held_stdin.close()
    assert pane.exit_code() == 0
    assert ids.read_text().split() == [str(n) for n in range(1, 301)]
    assert "reading stdin" not in pane.screen(), "the bar goes when the submit ends"


@needs_tmux
@pytest.mark.parametrize("setting", [{"CI": "true"}, {"TERM": "dumb"}])
def test_no_bar_with_ci_set_or_a_dumb_terminal(cli, terminal, held_stdin, tmp_path, setting):
    ids = tmp_path / "ids"
    env_prefix = " ".join(f"{name}={value}" for name, value in setting.items())
    pane = terminal("submit", "--from-file", "-", redirect=f"< {held_stdin.name} > {ids}", env=setting)
    held_stdin.write(lines(3))
    held_stdin.close()
    assert pane.exit_code() == 0, env_prefix
    assert ids.read_text().split() == ["1", "2", "3"]
    assert pane.screen().strip() == ""


@needs_tmux
def test_no_bar_under_json(cli, terminal, tmp_path):
    source = tmp_path / "tasks.jsonl"
    source.write_text(lines(5))
    out = tmp_path / "out.json"
    pane = terminal("submit", "--from-file", str(source), "--json", redirect=f"> {out}")
    assert pane.exit_code() == 0
    assert [task["id"] for task in json.loads(out.read_text())] == [1, 2, 3, 4, 5]
    assert pane.screen().strip() == ""


def test_no_bar_when_stderr_is_a_pipe(cli, tmp_path):
    source = tmp_path / "tasks.jsonl"
    source.write_text(lines(2000))
    result = cli.ok("submit", "--from-file", str(source))
    assert result.stdout.split() == [str(n) for n in range(1, 2001)]
    assert result.stderr == ""


@needs_tmux
def test_worker_once_shows_completed_failed_and_still_pending(cli, terminal, tmp_path):
    for _ in range(4):
        cli.submit("tests.jobs:sleepy", "--payload", '{"seconds": 0.6}')
    cli.submit("tests.jobs:boom", "--max-retries", "0", "--priority", "9")
    pane = terminal("worker", "--once")
    screen = pane.wait_for(lambda screen: "1 failed" in screen and "still pending" in screen)
    assert "worker:" in screen and BAR in screen
    assert pane.exit_code(timeout=20) == 0
    summary = pane.screen()
    assert "4 completed, 1 failed" in summary and "still pending" not in summary, "the bar goes, the summary stays"


@needs_tmux
def test_dag_run_shows_its_tasks_by_state(cli, terminal, tmp_path):
    dag = tmp_path / "dag.toml"
    dag.write_text(
        'name = "shown"\n'
        '[tasks.first]\ntarget = "tests.jobs:sleepy"\npayload = { seconds = 1.5 }\n'
        '[tasks.second]\ntarget = "tests.jobs:noop"\ndepends_on = ["first"]\n'
    )
    pane = terminal("dag", "run", str(dag), redirect=f"> {tmp_path / 'out'}")
    pane.wait_for(lambda screen: "DAG 1: 1 running, 1 pending" in screen)
    assert pane.exit_code(timeout=20) == 0
    assert "DAG 1:" not in pane.screen().replace("running DAG 1", "")


# -- the library's callbacks -------------------------------------------------------


def test_audit_verify_reports_entries_checked_as_it_goes(queue, monkeypatch):
    from tqcli.security import verify

    monkeypatch.setattr(verify, "PROGRESS_EVERY", 10)
    queue.submit_many([tqcli_spec() for _ in range(35)])
    calls = []
    report = queue.audit.verify(progress=lambda done, total, what: calls.append((done, total, what)))
    assert report.intact and report.count == 35
    assert calls == [(10, 35, "audit entries checked"), (20, 35, "audit entries checked"), (30, 35, "audit entries checked")]


def test_audit_verify_split_between_processes_estimates_from_its_own_stretch(queue, monkeypatch):
    from tqcli.security import audit_log, verify

    monkeypatch.setattr(verify, "PROGRESS_EVERY", 10)
    monkeypatch.setattr(audit_log, "PARALLEL_FROM", 20)
    queue.submit_many([tqcli_spec() for _ in range(40)])
    calls = []
    assert queue.audit.verify(processes=2, progress=lambda *call: calls.append(call)).intact
    assert calls == [(20, 40, "audit entries checked (2 processes)"), (40, 40, "audit entries checked (2 processes)")]


def test_bulk_lines_are_reported_in_steps_not_one_by_one(tmp_path, monkeypatch):
    from tqcli.cli import tasks

    monkeypatch.setattr(tasks, "BULK_PROGRESS_LINES", 4)
    source = tmp_path / "tasks.jsonl"
    source.write_text(lines(10))
    calls = []
    specs, _, _ = tasks._bulk_specs(str(source), {}, progress=lambda *call: calls.append(call))
    assert len(specs) == 10
    assert [call[:2] for call in calls] == [(4, 10), (8, 10), (10, 10)]


def tqcli_spec():
    from tqcli.core.spec import TaskSpec

    return TaskSpec("tests.jobs:noop")
