"""Task commands through the real `tqcli` executable on a real database file."""

import json
import re

import pytest

from tests.conftest import table_dump
from tests.stores import has_database

ANSI = re.compile(r"\x1b\[")


def refused(cli, args, code, fragment, *, input=None, env=None):
    """Run a command that must fail: its exit code, one error line, and the database unchanged."""
    cli.create_db()  # so that 'unchanged' is meaningful
    before = table_dump(cli.db)
    result = cli(*args, input=input, env=env)
    assert result.code == code, (args, result.code, result.stderr)
    assert len(result.error_lines) == 1 and result.stderr.startswith("error: "), result.stderr
    assert fragment in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert table_dump(cli.db) == before
    return result


def test_submit_prints_the_id_alone(cli):
    assert cli.ok("submit", "app.jobs:run").stdout == "1\n"
    assert cli.ok("submit", "--backend", "shell", "echo hi").stdout == "2\n"


def test_submit_json_is_the_task_object(cli):
    task = cli.ok("submit", "app.jobs:run", "--payload", '{"n": 1}', "--priority", "5", "--json").json
    assert task["id"] == 1 and task["payload"] == {"n": 1} and task["priority"] == 5 and task["state"] == "pending"
    assert set(task) >= {"name", "queue", "tenant", "backend", "target", "attempts", "max_retries", "backoff",
                         "timeout", "run_at", "depends_on", "dag_id", "service", "idempotency_key", "encrypted",
                         "result", "error", "created_at", "started_at", "finished_at", "submitted_by"}
    assert task["run_at"].endswith("Z")


def test_submit_reads_the_payload_from_a_file_or_stdin(cli, tmp_path):
    payload = tmp_path / "p.json"
    payload.write_text('{"from": "file"}')
    first = cli.submit("app.jobs:run", "--payload-file", str(payload))
    second = int(cli.ok("submit", "app.jobs:run", "--payload-file", "-", input='{"from": "stdin"}').stdout)
    assert cli.ok("status", str(first), "--json").json["payload"] == {"from": "file"}
    assert cli.ok("status", str(second), "--json").json["payload"] == {"from": "stdin"}


def test_idempotency_key_prints_the_existing_id(cli):
    first = cli.submit("app.jobs:run", "--idempotency-key", "k")
    again = cli.ok("submit", "app.jobs:run", "--idempotency-key", "k")
    assert int(again.stdout) == first and "already has idempotency key" in again.stderr
    other = cli("submit", "app.jobs:other", "--idempotency-key", "k")
    assert other.code == 6 and other.stdout == ""
    assert other.error_lines == [
        f"error: idempotency key k is held by task {first}, whose target differs: use another key for other work (nothing was submitted)"
    ]
    assert cli.ok("status", "--json").json["counts"]["pending"] == 1


def test_bulk_submit_prints_one_id_per_line(cli, tmp_path):
    lines = [{"target": "app.jobs:run", "payload": {"n": n}, "priority": n} for n in range(5)]
    lines.append({"target": "echo hi", "backend": "shell"})
    path = tmp_path / "tasks.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n")
    assert cli.ok("submit", "--from-file", str(path), "--queue", "bulk").stdout.split() == ["1", "2", "3", "4", "5", "6"]
    status = cli.ok("status", "--json").json
    assert status["queues"]["bulk"]["pending"] == 6
    assert len(cli.ok("audit", "log", "--json").json) == 6


def test_bulk_submit_from_stdin(cli):
    out = cli.ok("submit", "--from-file", "-", input='{"target": "a:b"}\n{"target": "c:d"}\n').stdout
    assert out == "1\n2\n"


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"target": "a:b", "priority": 500}', "line 2: invalid priority 500"),
        ('{"target": "a:b"', "line 2: invalid JSON"),
        ("[1, 2]", "line 2: a task must be a JSON object, not an array"),
        ('{"payload": {}}', "line 2: missing key 'target'"),
        ('{"target": "a:b", "colour": "red"}', "line 2: unknown key 'colour'"),
        ('{"target": "a:b", "backend": "nope"}', "line 2: unknown backend 'nope'"),
    ],
)
def test_bulk_submit_with_a_bad_line_enqueues_nothing(cli, tmp_path, line, message):
    path = tmp_path / "tasks.jsonl"
    path.write_text('{"target": "a:b"}\n' + line + '\n{"target": "c:d"}\n')
    refused(cli, ["submit", "--from-file", str(path)], 2, message)


def test_bulk_submit_counts_blank_lines_in_the_line_it_names(cli, tmp_path):
    path = tmp_path / "tasks.jsonl"
    path.write_text('{"target": "a:b"}\n\n   \n{"target": "a:b", "priority": "high"}\n')
    refused(cli, ["submit", "--from-file", str(path)], 2, "line 4: invalid priority 'high'")


def test_bulk_submit_with_an_unknown_dependency_is_not_found(cli, tmp_path):
    path = tmp_path / "tasks.jsonl"
    path.write_text('{"target": "a:b"}\n{"target": "a:b", "depends_on": [99]}\n')
    refused(cli, ["submit", "--from-file", str(path)], 3, "line 2: task 99")


BAD_SUBMITS = [
    (["submit", "a:b", "--payload", "{bad"], 2, "invalid JSON in --payload"),
    (["submit", "a:b", "--payload", "[1]"], 2, "must be a JSON object, not an array"),
    (["submit", "a:b", "--payload", '{"x": NaN}'], 2, "NaN is not valid JSON"),
    (["submit", "a:b", "--priority", "101"], 2, "invalid priority 101"),
    (["submit", "a:b", "--priority", "high"], 2, "'high' is not a valid int"),
    (["submit", "a:b", "--max-retries", "-1"], 2, "invalid max retries -1"),
    (["submit", "a:b", "--timeout", "soon"], 2, "invalid timeout 'soon'"),
    (["submit", "a:b", "--timeout", "0"], 2, "longer than 0 seconds"),
    (["submit", "a:b", "--delay", "5y"], 2, "invalid delay '5y'"),
    (["submit", "a:b", "--backoff", "-3"], 2, "invalid backoff"),
    (["submit", "a:b", "--at", "tomorrow"], 2, "invalid time 'tomorrow'"),
    (["submit", "a:b", "--delay", "1m", "--at", "2030-01-01T00:00:00Z"], 2, "either --delay or --at"),
    (["submit", "a:b", "--payload", "{}", "--payload-file", "x"], 2, "either --payload or --payload-file"),
    (["submit", "a:b", "--payload-file", "/nonexistent/p.json"], 2, "cannot read payload file /nonexistent/p.json"),
    (["submit", "--from-file", "/nonexistent/t.jsonl"], 2, "cannot read bulk file"),
    (["submit", "a:b", "--queue", "has space"], 2, "invalid queue name 'has space'"),
    (["submit", "a:b", "--tenant", ""], 2, "invalid tenant name"),
    (["submit", "not-a-function"], 2, "package.module:function"),
    (["submit", "x", "--backend", "k8s"], 2, "unknown backend 'k8s'; available: shell, simple"),
    (["submit"], 2, "missing TARGET"),
    (["submit", "a:b", "--prio", "3"], 2, "No such option: --prio"),
    (["submit", "a:b", "--depends-on", "99"], 3, "task 99 (named in depends_on) does not exist"),
    (["submit", "a:b", "--depends-on", "x"], 2, "'x' is not a valid int"),
    (["sumbit", "a:b"], 2, "No such command 'sumbit'. Did you mean 'submit'?"),
]


@pytest.mark.parametrize("args, code, fragment", BAD_SUBMITS, ids=[" ".join(a) for a, _, _ in BAD_SUBMITS])
def test_bad_submit_input_gets_its_exit_code_and_one_error_line(cli, args, code, fragment):
    refused(cli, args, code, fragment)


def test_oversized_payload_is_refused(cli, tmp_path):
    big = tmp_path / "big.json"
    big.write_text(json.dumps({"blob": "x" * (1024 * 1024)}))
    refused(cli, ["submit", "a:b", "--payload-file", str(big)], 2, "larger than 1048576 bytes")


def test_status_of_one_task_has_history_and_waiting(cli):
    a = cli.submit("app.jobs:run")
    b = cli.submit("app.jobs:run", "--depends-on", str(a))
    task = cli.ok("status", str(b), "--json").json
    assert task["history"] == [] and task["waiting"] == f"waiting for task {a}" and task["depends_on"] == [a]
    text = cli.ok("status", str(b)).stdout
    assert f"waiting for task {a}" in text and "depends on" in text


def test_status_summary_json_has_all_six_states(cli):
    cli.submit("app.jobs:run", "--queue", "etl")
    data = cli.ok("status", "--json").json
    assert set(data) == {"counts", "queues", "tasks", "queue_limits", "tenant_limits", "access"}  # keys are only ever added
    assert data["counts"] == {"pending": 1, "running": 0, "completed": 0, "failed": 0, "cancelled": 0, "blocked": 0}
    assert data["queues"]["etl"]["pending"] == 1 and len(data["tasks"]) == 1


def test_status_filters(cli):
    cli.submit("app.jobs:run", "--queue", "a")
    cli.submit("app.jobs:run", "--queue", "b", "--tenant", "acme")
    assert [t["id"] for t in cli.ok("status", "--queue", "b", "--json").json["tasks"]] == [2]
    assert [t["id"] for t in cli.ok("status", "--tenant", "acme", "--json").json["tasks"]] == [2]
    assert cli.ok("status", "--state", "cancelled", "--json").json["tasks"] == []
    refused(cli, ["status", "--state", "done"], 2, "invalid state 'done'")
    refused(cli, ["status", "99"], 3, "task 99 does not exist")


def test_piped_status_is_plain_text_and_never_truncated(cli):
    long_name = "n" * 150
    cli.submit("app.jobs:run", "--name", long_name)
    out = cli.ok("status", env={"COLUMNS": "40"}).stdout
    assert not ANSI.search(out)
    assert long_name in out


def test_cancel_and_its_conflicts(cli):
    a = cli.submit("app.jobs:run")
    b = cli.submit("app.jobs:run", "--depends-on", str(a))
    refused(cli, ["cancel", str(a), "--reason", "x" * 10_001], 2, "invalid reason: longer than 10000 characters")
    refused(cli, ["cancel", "--all", "--yes", "--reason", "x" * 10_001], 2, "invalid reason: longer than 10000 characters")
    assert cli.ok("status", str(a), "--json").json["state"] == "pending", "a refused cancel cancels nothing"
    result = cli.ok("cancel", str(a), "--reason", "not needed")
    assert f"cancelled task {a}" in result.stderr and result.stdout == ""
    assert cli.ok("status", str(b), "--json").json["state"] == "blocked"
    refused(cli, ["cancel", str(a)], 6, f"task {a} is already cancelled")
    refused(cli, ["cancel", "77"], 3, "task 77 does not exist")


def test_cancel_cascade(cli):
    a = cli.submit("app.jobs:run")
    b = cli.submit("app.jobs:run", "--depends-on", str(a))
    cli.ok("cancel", "--cascade", str(a))
    assert cli.ok("status", str(b), "--json").json["state"] == "cancelled"


def test_bump(cli):
    a = cli.submit("app.jobs:run")
    assert "priority 0 -> 4" in cli.ok("bump", str(a), "--by", "4").stderr
    assert cli.ok("status", str(a), "--json").json["priority"] == 4
    refused(cli, ["bump", str(a)], 2, "either --priority P or --by N")
    refused(cli, ["bump", str(a), "--priority", "200"], 2, "between -100 and 100")
    cli.ok("cancel", str(a))
    refused(cli, ["bump", str(a), "--by", "1"], 6, "only pending or blocked tasks can be bumped")
    refused(cli, ["bump", "55", "--by", "1"], 3, "task 55 does not exist")


@pytest.mark.sqlite_only  # a garbage file; PostgreSQL's storage errors are in reliability/test_postgres_faults.py
def test_no_traceback_unless_asked(cli):
    cli.db.write_bytes(b"garbage" * 1000)
    result = cli("status")
    assert result.code == 7 and "Traceback" not in result.stderr and result.error_lines
    debug = cli("status", env={"TQCLI_DEBUG": "1"})
    assert "Traceback" in debug.stderr and debug.code == 7 and debug.error_lines == result.error_lines


@pytest.mark.parametrize("args, code", [(["status", "99"], 3), (["submit", "a:b", "--priority", "500"], 2), (["status", "--nosuch"], 2)])
def test_debug_adds_a_traceback_and_changes_no_exit_code(cli, args, code):
    cli.submit("tests.jobs:noop")
    plain = cli(*args)
    debug = cli(*args, env={"TQCLI_DEBUG": "1"})
    assert plain.code == debug.code == code
    assert "Traceback" in debug.stderr and "Traceback" not in plain.stderr
    assert debug.error_lines == plain.error_lines


@pytest.mark.sqlite_only  # a corrupt file
def test_corrupt_database_is_exit_7_and_untouched(cli):
    content = b"SQLite format 3\x00" + bytes(range(256)) * 40
    cli.db.write_bytes(content)
    result = cli("submit", "a:b")
    assert result.code == 7 and "corrupt" in result.stderr and "restore it from a backup" in result.stderr
    assert cli.db.read_bytes() == content


def test_version(cli):
    assert cli.ok("--version").stdout.startswith("tqcli ")


def test_help_keeps_square_brackets(cli):
    assert "[default: simple]" in cli.ok("submit", "--help").stdout


@pytest.mark.parametrize(
    "args",
    [["status"], ["status", "1"], ["cancel", "1"], ["run", "--id", "1"], ["audit", "verify"], ["audit", "log"], ["dag", "list"],
     ["dlq", "list"], ["breaker", "list"], ["schedule", "list"]],
)
def test_commands_that_only_look_do_not_create_a_missing_database(cli, args):
    result = cli(*args)
    assert result.code == 3
    assert result.error_lines == [f"error: no database at {cli.db} yet: submitting a task creates it (or check --db, TQCLI_DB and the config file)"]
    assert not has_database(cli.db)


@pytest.mark.parametrize("args", [[], ["dag"], ["audit"]])
def test_a_command_group_alone_prints_its_help(cli, args):
    result = cli(*args)
    assert result.code == 0 and result.stderr == ""
    assert result.stdout.startswith(f"Usage: tqcli {' '.join(args)}".rstrip() + " [OPTIONS] COMMAND")
