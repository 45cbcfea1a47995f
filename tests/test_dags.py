"""DAGs: file checks, one-transaction submit, derived state, blocking, replay, JUnit reports."""

from xml.etree import ElementTree

import pytest

from tests.conftest import REPO, table_dump
from tqcli.core.dags import dag_state, find_cycle, load_dag_file, parse_dag
from tqcli.errors import Conflict, InvalidInput

DIAMOND = """
name = "diamond"
[defaults]
max_retries = 0
[tasks.root]
target = "tests.jobs:noop"
[tasks.left]
target = "tests.jobs:noop"
depends_on = ["root"]
[tasks.right]
target = "{right}"
depends_on = ["root"]
[tasks.sink]
target = "tests.jobs:noop"
depends_on = ["left", "right"]
"""


def write(tmp_path, text, name="dag.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_cycle_paths():
    assert find_cycle({"a": ["b"], "b": ["a"]}) == ["a", "b", "a"]
    assert find_cycle({"a": ["b"], "b": ["c"], "c": ["a"], "d": []}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": ["a"]}) == ["a", "a"]
    assert find_cycle({"a": [], "b": ["a"]}) is None


@pytest.mark.parametrize(
    "text, message",
    [
        ('[tasks.a]\ntarget = "x:y"\ndepends_on = ["b"]\n', "task 'a' depends on unknown task 'b'"),
        ('[tasks.extract]\ntarget = "x:y"\ndepends_on = ["transform"]\n[tasks.transform]\ntarget = "x:y"\ndepends_on = ["extract"]\n', "dependency cycle extract -> transform -> extract"),
        ('name = "x"\n', "no tasks"),
        ('colour = "red"\n[tasks.a]\ntarget = "x:y"\n', "unknown key 'colour'"),
        ('[tasks.a]\ntarget = "x:y"\npriority = 500\n', "task 'a': invalid priority 500"),
        ('[tasks.a]\ntarget = "x:y"\nname = "other"\n', "remove 'name'"),
        ('[tasks.a]\ntarget = "x:y"\ndepends_on = [1]\n', "depends_on must list task names"),
        ('[defaults]\ndepends_on = ["a"]\n[tasks.a]\ntarget = "x:y"\n', "[defaults] cannot set depends_on"),
        ('[tasks."bad name"]\ntarget = "x:y"\n', "invalid task name"),
        ('[tasks.a]\nbackend = "shell"\n', "missing key 'target'"),
    ],
)
def test_bad_dag_files_are_refused_with_a_reason(tmp_path, text, message):
    with pytest.raises(InvalidInput) as caught:
        load_dag_file(write(tmp_path, text))
    assert message in caught.value.message


def test_malformed_toml_names_the_file_and_line(tmp_path):
    path = write(tmp_path, '[tasks.a]\ntarget = "x:y"\n\nmax_retries = = 2\n')
    with pytest.raises(InvalidInput, match=r"malformed TOML in .*dag.toml: .*line 4"):
        load_dag_file(path)
    with pytest.raises(InvalidInput, match="cannot read DAG file"):
        load_dag_file(tmp_path / "missing.toml")


def test_defaults_apply_and_tasks_are_ordered_by_dependencies(tmp_path):
    plan = load_dag_file(write(tmp_path, DIAMOND.format(right="tests.jobs:noop")))
    assert plan.name == "diamond" and plan.order == ["root", "left", "right", "sink"]
    assert all(spec.max_retries == 0 for spec in plan.specs.values())
    unordered = parse_dag({"tasks": {"late": {"target": "a:b", "depends_on": ["early"]}, "early": {"target": "a:b"}}}, "x.toml")
    assert unordered.order == ["early", "late"] and unordered.name == "x"


@pytest.mark.parametrize(
    "counts, cancelled, expected",
    [
        ({"completed": 3}, False, "completed"),
        ({"pending": 3}, False, "pending"),
        ({"completed": 1, "pending": 2}, False, "running"),
        ({"failed": 1, "running": 1, "pending": 1}, False, "running"),
        ({"failed": 1, "blocked": 2, "completed": 1}, False, "failed"),
        ({"completed": 2, "blocked": 1, "cancelled": 1}, False, "failed"),
        ({"cancelled": 3}, True, "cancelled"),
        ({"completed": 1, "cancelled": 2}, False, "cancelled"),
        ({"cancelled": 2, "running": 1}, True, "running"),
    ],
)
def test_dag_state_is_derived_from_its_tasks(counts, cancelled, expected):
    assert dag_state(counts, cancelled) == expected


def test_the_whole_dag_is_enqueued_in_one_transaction(queue, tmp_path):
    plan = load_dag_file(write(tmp_path, DIAMOND.format(right="tests.jobs:noop")))
    dag_id = queue.dags.submit(plan)
    dag = queue.dags.get(dag_id)
    assert dag.state == "pending" and list(dag.tasks) == ["root", "left", "right", "sink"]
    assert dag.tasks["sink"].depends_on == [dag.tasks["left"].id, dag.tasks["right"].id]
    assert all(task.dag_id == dag_id for task in dag.tasks.values())
    actions = [e.action for e in queue.audit.entries()]
    assert actions == ["dag.submit"] + ["task.submit"] * 4


def test_a_bad_backend_in_a_dag_enqueues_nothing(queue, tmp_path):
    plan = load_dag_file(write(tmp_path, '[tasks.a]\ntarget = "x:y"\n[tasks.b]\ntarget = "x"\nbackend = "nope"\n'))
    before = table_dump(queue.path)
    with pytest.raises(InvalidInput, match="task 'b': unknown backend 'nope'"):
        queue.dags.submit(plan)
    assert table_dump(queue.path) == before


def started(dag, name):
    return dag.tasks[name].history[0].started_at if dag.tasks[name].history else None


def test_a_diamond_runs_root_first_and_sink_last(queue, tmp_path):
    plan = load_dag_file(write(tmp_path, DIAMOND.format(right="tests.jobs:noop")))
    dag = queue.dags.run(plan, concurrency=2)
    assert dag.state == "completed"
    full = {name: queue.get(task.id) for name, task in dag.tasks.items()}
    assert full["root"].finished_at <= min(full["left"].started_at, full["right"].started_at)
    assert full["sink"].started_at >= max(full["left"].finished_at, full["right"].finished_at)


def test_a_failing_middle_task_blocks_the_sink_and_replay_completes_the_dag(queue, tmp_path):
    plan = load_dag_file(write(tmp_path, DIAMOND.format(right="tests.jobs:boom")))
    dag = queue.dags.run(plan)
    assert dag.state == "failed"
    assert {name: task.state.value for name, task in dag.tasks.items()} == {"root": "completed", "left": "completed", "right": "failed", "sink": "blocked"}
    # Fix the code, then replay: the blocked sink is released and the DAG completes.
    right = dag.tasks["right"].id
    with queue._ctx.store.write() as tx:
        tx.conn.execute("UPDATE tasks SET target = 'tests.jobs:noop', service = 'simple:tests.jobs:noop' WHERE id = ?", (right,))
    queue.dlq.replay([right])
    assert queue.dags.get(dag.id).state == "running"
    queue.drain()
    assert queue.dags.get(dag.id).state == "completed"


def test_dag_cancel(queue, tmp_path):
    plan = load_dag_file(write(tmp_path, DIAMOND.format(right="tests.jobs:noop")))
    dag_id = queue.dags.submit(plan)
    assert len(queue.dags.cancel(dag_id)) == 4
    assert queue.dags.get(dag_id).state == "cancelled"
    with pytest.raises(Conflict, match="already cancelled"):
        queue.dags.cancel(dag_id)
    assert queue.drain().claimed == 0


def test_junit_report_is_valid_with_one_case_per_task_and_failures_marked(cli, tmp_path):
    path = write(tmp_path, DIAMOND.format(right="tests.jobs:boom"))
    report = tmp_path / "junit.xml"
    result = cli("dag", "run", str(path), "--junit", str(report))
    assert result.code == 1 and "right failed" in result.error_lines[0]
    root = ElementTree.parse(report).getroot()
    assert root.tag == "testsuites"
    (suite,) = root.findall("testsuite")
    assert suite.get("name") == "diamond" and suite.get("tests") == "4" and suite.get("failures") == "1" and suite.get("skipped") == "1"
    cases = {case.get("name"): case for case in suite.findall("testcase")}
    assert list(cases) == ["root", "left", "right", "sink"]
    assert cases["right"].find("failure").get("message") == "ValueError: boom"  # SPEC: errors read 'ValueError: nope'
    assert cases["sink"].find("skipped") is not None
    assert cases["root"].find("failure") is None and float(cases["root"].get("time")) >= 0


def test_dag_cli_submit_status_list_and_wait(cli, tmp_path):
    path = write(tmp_path, DIAMOND.format(right="tests.jobs:noop"))
    dag_id = int(cli.ok("dag", "submit", str(path)).stdout)
    status = cli.ok("dag", "status", str(dag_id), "--json").json
    assert status["id"] == dag_id and status["name"] == "diamond" and status["state"] == "pending"
    assert set(status["tasks"]) == {"root", "left", "right", "sink"} and status["tasks"]["root"]["state"] == "pending"
    assert cli.ok("dag", "list", "--json").json[0] == {k: status[k] for k in ("id", "name", "state", "created_at", "submitted_by", "counts")}
    text = cli.ok("dag", "status", str(dag_id)).stdout
    assert "sink" in text and "left, right" in text
    cli.ok("worker", "--once")
    assert cli.ok("dag", "status", str(dag_id), "--json").json["state"] == "completed"
    waited = cli("dag", "submit", str(path), "--wait", "--wait-timeout", "0.3")
    assert waited.code == 124
    for args, code in [(["dag", "status", "99"], 3), (["dag", "cancel", "99"], 3), (["dag", "submit", "nope.toml"], 2), (["dag", "cancel", str(dag_id)], 6)]:
        result = cli(*args)
        assert result.code == code and len(result.error_lines) == 1, (args, result.stderr)


def test_cycle_through_the_cli_names_the_path_and_enqueues_nothing(cli, tmp_path):
    path = write(tmp_path, '[tasks.a]\ntarget = "x:y"\ndepends_on = ["b"]\n[tasks.b]\ntarget = "x:y"\ndepends_on = ["a"]\n')
    cli.create_db()
    before = table_dump(cli.db)
    result = cli("dag", "submit", str(path))
    assert result.code == 2 and "a -> b -> a" in result.stderr
    assert table_dump(cli.db) == before


@pytest.mark.parametrize("sample", sorted((REPO / "sample-configs").glob("dag-*.toml")), ids=lambda p: p.name)
def test_sample_dags_load_and_run(sample, cli):
    plan = load_dag_file(sample)
    assert plan.order
    result = cli("dag", "run", str(sample), "--concurrency", "3", "--json", env={"PYTHONPATH": str(REPO)})
    assert result.code == 0, result.stderr
    assert result.json["state"] == "completed" and set(result.json["tasks"]) == set(plan.order)


def test_the_sample_config_file_loads(tmp_path):
    from tqcli.config import load_config

    config = load_config(config_flag=str(REPO / "sample-configs" / "tqcli.toml"), env={"HOME": str(tmp_path)}, cwd=tmp_path)
    assert str(config.db) == "/var/lib/tqcli/jobs.db" and config.worker.concurrency == 2


def test_dag_run_checks_its_options_before_submitting_anything(cli, tmp_path):
    path = write(tmp_path, DIAMOND.format(right="tests.jobs:noop"))
    cli.create_db()
    before = table_dump(cli.db)
    for args, fragment in [
        (["--concurrency", "0"], "invalid concurrency"),
        (["--junit", str(tmp_path)], "give a file name"),
        (["--junit", ""], "give a file name"),
        (["--junit", str(tmp_path / "missing" / "r.xml")], "its folder does not exist"),
    ]:
        result = cli("dag", "run", str(path), *args)
        assert result.code == 2 and len(result.error_lines) == 1 and fragment in result.stderr, (args, result.stderr)
    assert table_dump(cli.db) == before


def test_a_dag_task_cannot_carry_an_idempotency_key(tmp_path):
    path = write(tmp_path, '[tasks.a]\ntarget = "x:y"\nidempotency_key = "k"\n')
    with pytest.raises(InvalidInput, match="cannot have idempotency keys"):
        load_dag_file(path)


def test_ctrl_c_on_dag_run_stops_and_cancels_the_dag(cli, tmp_path):
    import signal
    import time

    marker = tmp_path / "started"
    path = write(tmp_path, f'[tasks.slow]\ntarget = "touch {marker}; sleep 30"\nbackend = "shell"\n'
                           '[tasks.after]\ntarget = "true"\nbackend = "shell"\ndepends_on = ["slow"]\n')
    running = cli.spawn("dag", "run", str(path))
    deadline = time.monotonic() + 15
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    started = time.monotonic()
    running.send_signal(signal.SIGINT)
    _, stderr = running.communicate(timeout=30)
    assert time.monotonic() - started < 10, "Ctrl-C stops the run without waiting for the task"
    assert running.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1].startswith("error: interrupted: DAG 1 cancelled")
    dag = cli.ok("dag", "status", "1", "--json").json
    assert dag["state"] == "cancelled" and {t["state"] for t in dag["tasks"].values()} == {"cancelled"}
