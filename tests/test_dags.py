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
        ('name = "nightly\\u0000"\n[tasks.a]\ntarget = "x:y"\n', "without a NUL character"),  # PostgreSQL's text cannot hold one
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
    before = table_dump(queue.location)
    with pytest.raises(InvalidInput, match="task 'b': unknown backend 'nope'"):
        queue.dags.submit(plan)
    assert table_dump(queue.location) == before


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
    assert cases["right"].find("failure").get("message") == "ValueError: boom"
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


KEYED = """
[tasks.setup]
target = "tests.jobs:noop"
idempotency_key = "setup-2026"
[tasks.work]
target = "tests.jobs:noop"
depends_on = ["setup"]
"""


def test_a_dag_task_whose_key_is_held_for_the_same_work_counts_as_done(queue, tmp_path):
    held = queue.submit("tests.jobs:noop", idempotency_key="setup-2026")
    queue.drain()
    dag_id = queue.dags.submit(load_dag_file(write(tmp_path, KEYED)))
    dag = queue.dags.get(dag_id)
    assert list(dag.tasks) == ["work"], "the held task stands in for 'setup'"
    assert dag.tasks["work"].depends_on == [held] and dag.tasks["work"].waiting_deps == 0
    queue.drain()
    assert queue.dags.get(dag_id).state == "completed"


def test_a_dag_task_whose_key_is_held_for_other_work_refuses_the_whole_dag(queue, tmp_path):
    holder = queue.submit("tests.jobs:add", payload={"a": 1, "b": 2}, idempotency_key="setup-2026")
    path = write(tmp_path, KEYED)
    with pytest.raises(Conflict, match=f"task 'setup': idempotency key setup-2026 is held by task {holder}"):
        queue.dags.submit(load_dag_file(path))
    assert queue.dags.list() == [] and queue.status().counts["pending"] == 1


def test_one_key_for_two_works_in_one_bulk_submit_names_both_lines(queue):
    from tqcli import TaskSpec

    with pytest.raises(Conflict, match="line 2: idempotency key k is also given to line 1, for other work"):
        queue.submit_specs([TaskSpec("a:b", idempotency_key="k"), TaskSpec("c:d", idempotency_key="k")], where=["line 1", "line 2"])


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


# -- long chains: every walk is iterative --------------------------------

CHAIN = 10_000


def chain_file(tmp_path, count=CHAIN, *, cycle=False, name="chain.toml"):
    """A DAG file of `count` tasks t0 <- t1 <- … (listed last first, so no walk meets them in order); `cycle` closes it."""
    lines = []
    for index in reversed(range(count)):
        lines.append(f'[tasks.t{index}]\ntarget = "tests.jobs:noop"\n')
        if index or cycle:
            lines.append(f'depends_on = ["t{(index - 1) % count}"]\n')
    return write(tmp_path, "".join(lines), name)


def test_a_10000_task_chain_is_ordered_and_a_10000_task_cycle_is_named_without_recursion(tmp_path):
    plan = load_dag_file(chain_file(tmp_path))
    assert plan.order == [f"t{index}" for index in range(CHAIN)]
    with pytest.raises(InvalidInput) as caught:
        load_dag_file(chain_file(tmp_path, cycle=True, name="cycle.toml"))
    path = caught.value.message.split("dependency cycle ", 1)[1].split(" -> ")
    assert len(path) == CHAIN + 1 and path[0] == path[-1]
    assert all(int(later[1:]) == (int(earlier[1:]) - 1) % CHAIN for earlier, later in zip(path, path[1:]))


def test_a_10000_task_cycle_through_the_cli_is_exit_2_naming_the_path(cli, tmp_path):
    cli.create_db()
    before = table_dump(cli.db)
    result = cli("dag", "submit", str(chain_file(tmp_path, cycle=True)))
    assert result.code == 2 and len(result.error_lines) == 1, result.stderr[-500:]
    assert "dependency cycle t9999 -> t9998 -> t9997 -> " in result.stderr and result.stderr.rstrip().endswith("t0 -> t9999")
    assert table_dump(cli.db) == before


def test_a_10000_task_chain_submits_and_dag_status_shows_it_as_json_table_and_tree(cli, tmp_path):
    from tests.test_output import run_on_terminal

    dag_id = cli.ok("dag", "submit", str(chain_file(tmp_path))).stdout.strip()
    status = cli.ok("dag", "status", dag_id, "--json").json
    assert len(status["tasks"]) == CHAIN and status["state"] == "pending"
    assert status["tasks"]["t9999"]["depends_on"] == [status["tasks"]["t9998"]["id"]]
    table = cli.ok("dag", "status", dag_id).stdout.splitlines()
    assert len(table) == CHAIN + 1 and table[-1].split()[:5] == ["t9999", "10000", "pending", "0", "t9998"]
    tree = run_on_terminal(cli, "dag", "status", dag_id, env={"NO_COLOR": "1", "COLUMNS": "120"}).splitlines()
    assert tree[0] == f"DAG {dag_id} chain: pending"
    drawn = [line for line in tree[1:] if "pending" in line and "continued below" not in line]
    assert len(drawn) == CHAIN, "every task drawn once"
    assert max(len(line) for line in tree) <= 120, "a long chain goes on at the top level instead of past the edge"
    assert any(line.startswith("├── t20 #21 pending (after t19 #20)") for line in tree)


def test_the_tree_of_a_diamond_deeper_than_the_terminal_still_draws_each_task_once(cli, tmp_path):
    from tests.test_output import run_on_terminal

    # a ladder: each rung has two tasks that both depend on both tasks of the rung before
    text = ['[tasks.a0]\ntarget = "tests.jobs:noop"\n[tasks.b0]\ntarget = "tests.jobs:noop"\n']
    for rung in range(1, 40):
        for side in "ab":
            text.append(f'[tasks.{side}{rung}]\ntarget = "tests.jobs:noop"\ndepends_on = ["a{rung - 1}", "b{rung - 1}"]\n')
    dag_id = cli.ok("dag", "submit", str(write(tmp_path, "".join(text)))).stdout.strip()
    tree = run_on_terminal(cli, "dag", "status", dag_id, env={"NO_COLOR": "1", "COLUMNS": "80"}).splitlines()
    labels = [line for line in tree[1:] if " pending" in line and "(see above)" not in line and "continued below" not in line]
    assert len(labels) == 80 and max(len(line) for line in tree) <= 80


# -- DAG file messages ----------------------------------------------------


@pytest.mark.parametrize(
    "defaults, message",
    [
        ('queu = "etl"', "[defaults]: unknown key 'queu'"),
        ("priority = 500", "[defaults]: invalid priority 500"),
        ('queue = "caf\u00e9"', "[defaults]: invalid queue name 'caf\u00e9': use 1-64 characters of A-Z a-z 0-9 . _ - (ASCII)"),
        ('backoff = "soon"', "[defaults]: invalid backoff 'soon'"),
    ],
)
def test_a_bad_value_in_defaults_is_reported_against_the_defaults_table(cli, tmp_path, defaults, message):
    path = write(tmp_path, f'[defaults]\n{defaults}\n[tasks.first]\ntarget = "tests.jobs:noop"\n')
    result = cli("dag", "submit", str(path))
    assert result.code == 2 and result.error_lines == [result.error_lines[0]]
    assert result.error_lines[0].startswith(f"error: {path}: {message}"), result.stderr
    assert "first" not in result.stderr


def test_defaults_a_task_overrides_are_still_checked_alone(tmp_path):
    plan = load_dag_file(write(tmp_path, '[defaults]\ntarget = "echo hi"\n[tasks.a]\nbackend = "shell"\n[tasks.b]\ntarget = "tests.jobs:noop"\n'))
    assert plan.specs["a"].target == "echo hi" and plan.specs["b"].backend == "simple"


def test_an_unknown_backend_in_a_dag_file_names_the_file(cli, tmp_path):
    path = write(tmp_path, '[tasks.a]\ntarget = "tests.jobs:noop"\n[tasks.b]\ntarget = "echo"\nbackend = "shel"\n')
    cli.create_db()
    before = table_dump(cli.db)
    result = cli("dag", "submit", str(path))
    assert result.code == 2 and result.error_lines[0].startswith(f"error: {path}: task 'b': unknown backend 'shel'; available: "), result.stderr
    assert table_dump(cli.db) == before


@pytest.mark.parametrize("name", ["caf\u00e9", "\u212aelvin", "\uff41", "t\u0663"])
def test_a_non_ascii_task_name_is_refused_saying_which_characters_are_allowed(cli, tmp_path, name):
    path = write(tmp_path, f'[tasks."{name}"]\ntarget = "tests.jobs:noop"\n')
    result = cli("dag", "submit", str(path))
    assert result.code == 2
    assert result.error_lines[0].startswith(f"error: {path}: invalid task name "), result.stderr
    assert "use 1-64 characters of A-Z a-z 0-9 . _ - (ASCII)" in result.stderr


# -- dag list --limit -----------------------------------------------------


def test_dag_list_limit_shows_the_newest_and_refuses_zero_or_less(cli, tmp_path):
    path = write(tmp_path, '[tasks.a]\ntarget = "tests.jobs:noop"\n')
    for _ in range(3):
        cli.ok("dag", "submit", str(path))
    assert [dag["id"] for dag in cli.ok("dag", "list", "--json").json] == [3, 2, 1]
    assert [dag["id"] for dag in cli.ok("dag", "list", "--limit", "2", "--json").json] == [3, 2]
    assert [line.split()[0] for line in cli.ok("dag", "list", "--limit", "1").stdout.splitlines()] == ["ID", "3"]
    for bad in ("0", "-1"):
        result = cli("dag", "list", "--limit", bad)
        assert result.code == 2 and len(result.error_lines) == 1, result.stderr
        assert f"invalid limit {bad} (--limit): give 1 or more" in result.stderr and not result.stdout


# -- purged tasks: the DAG keeps its state ---------------------------------


def failed_diamond(cli, tmp_path):
    """A diamond DAG whose `right` failed and whose `sink` is blocked; (dag id, {name: task id})."""
    result = cli("dag", "run", str(write(tmp_path, DIAMOND.format(right="tests.jobs:boom"))), "--json")
    assert result.code == 1, result.stderr
    return result.json["id"], {name: task["id"] for name, task in result.json["tasks"].items()}


def test_dlq_purge_keeps_a_failed_dag_failed_and_shows_the_purged_task(cli, tmp_path):
    from tests.test_output import run_on_terminal

    dag_id, ids = failed_diamond(cli, tmp_path)
    assert cli.ok("dlq", "purge", str(ids["right"]), "--yes").stdout == f"{ids['right']}\n"
    dag = cli.ok("dag", "status", str(dag_id), "--json").json
    assert dag["state"] == "failed"
    assert list(dag["tasks"]) == ["root", "left", "right", "sink"]
    assert dag["tasks"]["right"] == {"id": ids["right"], "state": None, "purged": True}
    assert dag["tasks"]["sink"]["state"] == "cancelled", "what was blocked on a purged task is cancelled"
    assert ids["right"] in dag["tasks"]["sink"]["depends_on"], "its dependents still say what they depended on"
    assert dag["counts"] == {"pending": 0, "running": 0, "completed": 2, "failed": 1, "cancelled": 1, "blocked": 0}
    listed = cli.ok("dag", "list", "--json").json[0]
    assert listed["state"] == "failed" and listed["counts"] == dag["counts"]
    rows = {line.split()[0]: line.split() for line in cli.ok("dag", "status", str(dag_id)).stdout.splitlines()[1:]}
    assert rows["right"][:3] == ["right", str(ids["right"]), "purged"] and "failed" in rows["right"]
    assert "right" in " ".join(rows["sink"]), "DEPENDS ON names the purged task"
    tree = run_on_terminal(cli, "dag", "status", str(dag_id), env={"NO_COLOR": "1"})
    assert f"right #{ids['right']} purged" in tree and tree.startswith(f"DAG {dag_id} diamond: failed")
    assert cli("dag", "cancel", str(dag_id)).code == 6, "a failed DAG stays finished"
    assert cli.ok("audit", "verify", "--json").json["intact"]


def test_a_pruned_task_of_a_completed_dag_keeps_the_dag_completed(queue, tmp_path):
    """`prune` deletes through the same store call as `dlq purge`: the tombstone comes with it."""
    dag = queue.dags.run(load_dag_file(write(tmp_path, DIAMOND.format(right="tests.jobs:noop"))))
    assert dag.state == "completed"
    assert sorted(queue.prune(older_than=0)) == sorted(task.id for task in dag.tasks.values())
    again = queue.dags.get(dag.id)
    assert again.state == "completed" and again.counts["completed"] == 4
    assert again.to_json()["tasks"]["root"] == {"id": dag.tasks["root"].id, "state": None, "purged": True}
    assert queue.audit.verify().intact


def test_deleting_a_task_outside_any_dag_leaves_no_tombstone(queue):
    task_id = queue.submit("tests.jobs:noop")
    queue.cancel(task_id)
    with queue._ctx.store.write() as tx:
        tx.delete_tasks([task_id], now=queue.clock.now())
        assert tx.conn.execute("SELECT count(*) FROM purged_tasks").fetchone() == (0,)


def test_shell_defaults_cwd_and_env_reach_every_task(queue, tmp_path):
    plan = load_dag_file(write(tmp_path, f"""
name = "shelly"
[defaults]
backend = "shell"
cwd = "{tmp_path}"
env = {{ WHO = "dag" }}
[tasks.one]
target = "pwd; echo $WHO"
"""))
    dag = queue.dags.run(plan)
    assert dag.state == "completed"
    assert dag.tasks["one"].result_value["output"] == f"{tmp_path}\ndag\n"
