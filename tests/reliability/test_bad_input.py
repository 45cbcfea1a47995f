"""Every bad input, through the real CLI: its exit code, one error line, nothing changed."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import table_dump
from tqcli.core.dags import parse_dag
from tqcli.core.spec import parse_payload, spec_from_mapping
from tqcli.errors import InvalidInput
from tqcli.units import parse_duration, parse_time

CYCLE = '[tasks.a]\ntarget = "x:y"\ndepends_on = ["b"]\n[tasks.b]\ntarget = "x:y"\ndepends_on = ["a"]\n'
UNKNOWN_DEP = '[tasks.a]\ntarget = "x:y"\ndepends_on = ["ghost"]\n'
MALFORMED = '[tasks.a\ntarget = "x:y"\n'

CASES = [
    # (args, stdin or files, exit code, words in the error)
    (["submit", "x:y", "--payload", "{"], None, 2, "invalid JSON"),
    (["submit", "x:y", "--payload", "42"], None, 2, "must be a JSON object"),
    (["submit", "x:y", "--timeout", "-1s"], None, 2, "invalid timeout"),
    (["submit", "x:y", "--delay", "soon"], None, 2, "invalid delay"),
    (["submit", "x:y", "--delay", "99999999d"], None, 2, "at most 36500d"),
    (["submit", "x:y", "--delay", "1e300"], None, 2, "at most 36500d"),
    (["submit", "x:y", "--timeout", "3000000d"], None, 2, "at most 36500d"),
    (["submit", "x:y", "--at", "9999-12-31T23:59:59-14:00"], None, 2, "between 1970 and the year 9999"),
    (["submit", "x:y", "--at", "0001-01-01"], None, 2, "between 1970 and the year 9999"),
    (["status", "99999999999999999999"], None, 2, "a number is too large"),
    (["cancel", "99999999999999999999"], None, 2, "a number is too large"),
    (["breaker", "set", "k", "--recovery-timeout", "3000000d"], None, 2, "at most 36500d"),
    (["audit", "log", "--since", "0001-01-01"], None, 2, "between 1970"),
    (["submit", "x:y", "--at", "2026-02-30T00:00:00Z"], None, 2, "invalid time"),
    (["submit", "x:y", "--priority", "-101"], None, 2, "invalid priority"),
    (["submit", "x:y", "--backend", "nope"], None, 2, "unknown backend"),
    (["submit", "x:y", "--queue", "a/b"], None, 2, "invalid queue name"),
    (["submit", "--from-file", "-"], '{"target": "x:y"}\nnot json\n', 2, "line 2"),
    (["submit", "--from-file", "-"], "", 2, "holds no tasks"),
    (["submit", "x:y", "--depends-on", "404"], None, 3, "task 404"),
    (["dag", "submit", "{dir}/cycle.toml"], None, 2, "a -> b -> a"),
    (["dag", "submit", "{dir}/unknown.toml"], None, 2, "unknown task 'ghost'"),
    (["dag", "submit", "{dir}/malformed.toml"], None, 2, "line 1"),
    (["dag", "run", "{dir}/missing.toml"], None, 2, "cannot read DAG file"),
    (["schedule", "add", "s", "--cron", "* * *", "x:y"], None, 2, "five fields"),
    (["schedule", "add", "s", "--cron", "0 0 31 2 *", "x:y"], None, 2, "never fires"),
    (["schedule", "add", "s", "--cron", "@daily", "--tz", "Europe/Atlantis", "x:y"], None, 2, "unknown time zone"),
    (["schedule", "add", "bad name", "--cron", "@daily", "x:y"], None, 2, "invalid schedule name"),
    (["status", "404"], None, 3, "does not exist"),
    (["cancel", "404"], None, 3, "does not exist"),
    (["bump", "404", "--by", "1"], None, 3, "does not exist"),
    (["run", "--id", "404"], None, 3, "does not exist"),
    (["dlq", "replay", "404"], None, 3, "does not exist"),
    (["dlq", "purge", "404", "--yes"], None, 3, "does not exist"),
    (["dag", "status", "404"], None, 3, "does not exist"),
    (["dag", "cancel", "404"], None, 3, "does not exist"),
    (["schedule", "next", "ghost"], None, 3, "does not exist"),
    (["schedule", "pause", "ghost"], None, 3, "does not exist"),
    (["schedule", "resume", "ghost"], None, 3, "does not exist"),
    (["schedule", "remove", "ghost"], None, 3, "does not exist"),
    (["breaker", "reset", "ghost"], None, 3, "no circuit breaker"),
    (["worker", "--once", "--lease", "forever"], None, 2, "invalid --lease"),
    (["worker", "--once", "--concurrency", "0"], None, 2, "invalid concurrency"),
    (["worker", "--once", "--queue", "no such"], None, 2, "invalid queue name"),
    (["breaker", "set", "k", "--failure-threshold", "0"], None, 2, "invalid failure threshold"),
    (["breaker", "set", "k", "--recovery-timeout", "0"], None, 2, "recovery timeout"),
    (["audit", "log", "--since", "yesterday"], None, 2, "invalid time"),
    (["audit", "verify", "--checkpoint", "{dir}/missing.json"], None, 2, "cannot read checkpoint"),
    (["dlq", "purge", "--all"], None, 2, "--yes"),
    (["dlq", "replay", "--queue", "default"], None, 2, "add --all"),
    (["dlq", "replay"], None, 2, "nothing to replay"),
    (["breaker", "set", "--failure-threshold", "2"], None, 2, "missing KEY"),
    (["--db", "", "status"], None, 2, "--db is empty"),
    (["audit", "checkpoint", "--output", ""], None, 2, "give a file name"),
    (["audit", "checkpoint", "--output", "{dir}"], None, 2, "give a file name"),
    (["status", "--limit", "lots"], None, 2, "not a valid int"),
    (["frobnicate"], None, 2, "No such command"),
]


@pytest.mark.parametrize("args, stdin, code, words", CASES, ids=[" ".join(c[0]) for c in CASES])
def test_bad_input_is_refused_cleanly(cli, tmp_path, args, stdin, code, words):
    (tmp_path / "cycle.toml").write_text(CYCLE)
    (tmp_path / "unknown.toml").write_text(UNKNOWN_DEP)
    (tmp_path / "malformed.toml").write_text(MALFORMED)
    cli.submit("tests.jobs:noop")
    cli.ok("schedule", "add", "real", "--cron", "@daily", "tests.jobs:noop")
    before = table_dump(cli.db)
    result = cli(*[arg.replace("{dir}", str(tmp_path)) for arg in args], input=stdin)
    assert result.code == code, result.stderr
    assert result.stderr.count("error: ") == 1 and result.stderr.startswith("error: "), result.stderr
    assert words in result.stderr
    assert "Traceback" not in result.stderr
    assert table_dump(cli.db) == before


junk = st.one_of(st.text(max_size=40), st.integers(), st.floats(allow_nan=True), st.booleans(), st.none(), st.lists(st.integers(), max_size=3))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=30))
def test_durations_never_raise_anything_but_invalid_input(text):
    try:
        assert parse_duration(text) >= 0
    except InvalidInput:
        pass


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_times_never_raise_anything_but_invalid_input(text):
    try:
        parse_time(text)
    except InvalidInput:
        pass


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="0123456789*/,-abcdefghijklmnopqrstuvwxyz@ ", max_size=30), st.sampled_from(["UTC", "Europe/Berlin", "Nope/Zone"]))
def test_cron_expressions_never_raise_anything_but_invalid_input(expression, zone):
    from tqcli.scheduler.cron import CronSchedule

    try:
        cron = CronSchedule(expression, zone)
    except InvalidInput:
        return
    assert len(cron.next_after(1_780_000_000_000_000, 3)) == 3


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(["target", "backend", "payload", "priority", "max_retries", "backoff", "timeout", "delay", "at", "depends_on", "queue", "name", "oops"]), junk, max_size=6))
def test_bulk_lines_never_raise_anything_but_invalid_input(line):
    try:
        spec_from_mapping(line)
    except InvalidInput:
        pass


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_payloads_never_raise_anything_but_invalid_input(text):
    try:
        assert isinstance(parse_payload(text), dict)
    except InvalidInput:
        pass


task_tables = st.dictionaries(
    st.text(alphabet="abcd-", min_size=1, max_size=3),
    st.dictionaries(st.sampled_from(["target", "depends_on", "priority", "backend", "name"]), st.one_of(junk, st.lists(st.text(alphabet="abcd", max_size=2), max_size=3)), max_size=3),
    max_size=4,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.fixed_dictionaries({}, optional={"name": junk, "defaults": st.one_of(junk, st.dictionaries(st.sampled_from(["queue", "priority"]), junk, max_size=2)), "tasks": st.one_of(junk, task_tables), "extra": junk}))
def test_dag_documents_never_raise_anything_but_invalid_input(document):
    try:
        plan = parse_dag(document, "generated.toml")
    except InvalidInput:
        return
    for name in plan.order:  # a plan that is accepted is in dependency order
        assert all(plan.order.index(dep) < plan.order.index(name) for dep in plan.depends_on[name])


def test_a_payload_file_that_is_not_utf8(cli, tmp_path):
    path = tmp_path / "p.bin"
    path.write_bytes(b"\xff\xfe\x00garbage")
    result = cli("submit", "x:y", "--payload-file", str(path))
    assert result.code == 2 and "not UTF-8" in result.stderr


def test_a_bulk_file_with_a_huge_line_is_refused_whole(cli, tmp_path):
    path = tmp_path / "big.jsonl"
    path.write_text(json.dumps({"target": "x:y"}) + "\n" + json.dumps({"target": "x:y", "payload": {"b": "x" * (1 << 20)}}) + "\n")
    cli.create_db()
    before = table_dump(cli.db)
    result = cli("submit", "--from-file", str(path))
    assert result.code == 2 and "line 2" in result.stderr and "1 MiB" in result.stderr
    assert table_dump(cli.db) == before
