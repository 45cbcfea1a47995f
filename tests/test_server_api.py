"""The JSON API through a real `tqcli serve` and a real HTTP client: the CLI's documents, every action, every error status.

Each test shares one server across many assertions (a start costs about a
second), on both stores.
"""

import httpx
import pytest

from tests.serving import start_server
from tests.stores import raw_sql
from tests.test_cli_metrics import busy_database, check_metrics, promtool  # noqa: F401 - promtool is a fixture
from tqcli.config import login_name
from tqcli.errors import InvalidInput
from tqcli.observability.throughput import throughput
from tqcli.units import format_time

TASK = {"target": "tests.jobs:noop"}
DAG_TOML = 'name = "etl"\n[tasks.extract]\ntarget = "tests.jobs:noop"\n[tasks.load]\ntarget = "tests.jobs:noop"\ndepends_on = ["extract"]\n'
TOML = {"Content-Type": "application/toml"}


def total(cli) -> int:
    """How many tasks the database holds (as the CLI counts them)."""
    return sum(cli.ok("status", "--json").json["counts"].values())


def token_for(cli, user: str) -> str:
    return cli.ok("token", "create", user).stdout.split()[-1]


def error_of(answer: httpx.Response, status: int) -> str:
    """The message of an error answer, after checking its status and shape."""
    assert answer.status_code == status, (answer.status_code, answer.text)
    assert answer.headers["content-type"] == "application/json"
    body = answer.json()
    assert set(body) == {"error", "exit_code"} and isinstance(body["exit_code"], int), body
    assert "Traceback" not in body["error"]
    return body["error"]


def test_every_reading_endpoint_answers_what_the_cli_prints(cli, promtool):  # noqa: F811 - the fixture
    busy_database(cli)
    dag_file = cli.home / "etl.toml"
    dag_file.write_text(DAG_TOML)
    dag_id = int(cli.ok("dag", "submit", str(dag_file)).stdout)
    server = start_server(cli)
    try:
        with server.client() as client:
            for path, args in [
                ("/api/v1/tasks", ["status", "--json"]),
                ("/api/v1/tasks?queue=etl&tenant=acme&state=failed&limit=0", ["status", "--json", "--queue", "etl", "--tenant", "acme", "--state", "failed", "--limit", "0"]),
                ("/api/v1/tasks/1", ["status", "1", "--json"]),
                ("/api/v1/tasks/2", ["status", "2", "--json"]),
                ("/api/v1/dlq", ["dlq", "list", "--json"]),
                ("/api/v1/dlq?queue=web", ["dlq", "list", "--json", "--queue", "web"]),
                ("/api/v1/dags", ["dag", "list", "--json"]),
                (f"/api/v1/dags/{dag_id}", ["dag", "status", str(dag_id), "--json"]),
                ("/api/v1/breakers", ["breaker", "list", "--json"]),
                ("/api/v1/queues", ["queue", "list", "--json"]),
                ("/api/v1/tenants", ["tenant", "list", "--json"]),
                ("/api/v1/workers", ["workers", "--json"]),
                ("/api/v1/audit", ["audit", "log", "--json"]),
                ("/api/v1/audit?action=task.submit&limit=3", ["audit", "log", "--json", "--action", "task.submit", "--limit", "3"]),
                ("/api/v1/audit?task=2&actor=" + login_name(), ["audit", "log", "--json", "--task", "2", "--actor", login_name()]),
                ("/api/v1/audit/verify", ["audit", "verify", "--json"]),
            ]:
                answer = client.get(path)
                assert answer.status_code == 200, (path, answer.text)
                assert answer.headers["content-type"] == "application/json"
                assert answer.json() == cli.ok(*args).json, path

            [nightly] = client.get("/api/v1/schedules").json()
            fires = nightly.pop("next_fires")
            assert [nightly] == cli.ok("schedule", "list", "--json").json
            assert fires == cli.ok("schedule", "next", "nightly", "--json").json and len(fires) == 5
            assert client.get("/api/v1/schedules?count=2").json()[0]["next_fires"] == fires[:2]

            me = client.get("/api/v1/me").json()
            assert me == {"user": login_name(), "open": True, "roles": [],
                          "may": dict.fromkeys(["read", "submit", "change_task", "operate", "audit", "admin"], True)}

            chart = client.get("/api/v1/throughput", params={"minutes": 5}).json()
            assert chart["step"] == 60 and not chart["truncated"] and len(chart["series"]) == 5
            assert chart["since"] == chart["series"][0]["at"] and chart["series"][-1]["at"] > chart["since"]
            assert sum(point["completed"] for point in chart["series"]) == 1
            assert sum(point["failed"] for point in chart["series"]) == 2
            acme = client.get("/api/v1/throughput", params={"queue": "etl", "tenant": "acme"}).json()
            assert len(acme["series"]) == 60 and sum(point["failed"] for point in acme["series"]) == 1
            assert sum(point["completed"] for point in acme["series"]) == 0

            metrics = client.get("/metrics")
            assert metrics.status_code == 200
            assert metrics.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
            check_metrics(promtool, metrics.text)
            assert 'tqcli_tasks{queue="etl",tenant="acme",state="failed"} 1' in metrics.text

            # Bad query and path values are invalid input (400), as the CLI's flags are (exit 2).
            for path in ["/api/v1/tasks?state=sleeping", "/api/v1/tasks?limit=many", "/api/v1/tasks?limit=-1", "/api/v1/tasks/abc",
                         "/api/v1/tasks/0", "/api/v1/audit?since=yesterday", "/api/v1/audit?action=no.such", "/api/v1/dags?limit=0",
                         "/api/v1/dlq?queue=bad%20name", "/api/v1/throughput?minutes=0", "/api/v1/throughput?minutes=100000",
                         # A NUL can be in no stored name (PostgreSQL's text cannot even hold one): refused before any query.
                         "/api/v1/audit?action=task.%00submit", "/api/v1/audit?actor=%00", "/api/v1/audit?since=%00",
                         "/api/v1/tasks?queue=%00", "/api/v1/tasks?tenant=a%00", "/api/v1/dlq?queue=%00", "/api/v1/dlq?tenant=%00",
                         "/api/v1/throughput?queue=%00", "/api/v1/throughput?tenant=%00"]:
                assert error_of(client.get(path), 400), path
            assert "query parameter limit" in error_of(client.get("/api/v1/tasks?limit=many"), 400)
            for path in ["/api/v1/tasks/999", "/api/v1/dags/999"]:
                assert "999" in error_of(client.get(path), 404)

        # A tampered chain is a finding, not a failed request.
        raw_sql(cli.db, "UPDATE audit SET actor = 'mallory' WHERE seq = 2")
        with server.client() as client:
            report = client.get("/api/v1/audit/verify")
        assert report.status_code == 200
        assert report.json()["intact"] is False and report.json()["bad_seq"] == 2
    finally:
        assert server.stop() == 0
    assert "Traceback" not in server.stderr


def test_submit_one_or_many_with_idempotency_all_or_nothing_and_every_refusal(cli):
    cli.create_db()
    cli.ok("queue", "set", "tight", "--max-length", "2")
    server = start_server(cli)
    try:
        with server.client() as client:
            created = client.post("/api/v1/tasks", json={**TASK, "idempotency_key": "k1", "priority": 5})
            assert created.status_code == 201
            task = created.json()
            assert task == cli.task(task["id"]) and task["priority"] == 5 and task["submitted_by"] == login_name()
            again = client.post("/api/v1/tasks", json={**TASK, "idempotency_key": "k1", "priority": 5})
            assert again.status_code == 200 and again.json()["id"] == task["id"]
            assert "k1" in error_of(client.post("/api/v1/tasks", json={"target": "tests.jobs:add", "idempotency_key": "k1"}), 409)

            bulk = [{"target": "tests.jobs:add", "payload": {"a": 1, "b": 2}}, {**TASK, "queue": "etl", "delay": "1h"},
                    {"backend": "shell", "target": "echo hi", "timeout": 30, "name": "greet"}]
            answer = client.post("/api/v1/tasks", json=bulk)
            assert answer.status_code == 201
            tasks = answer.json()
            assert [item["target"] for item in tasks] == ["tests.jobs:add", "tests.jobs:noop", "echo hi"]
            assert tasks == [cli.task(item["id"]) for item in tasks]
            assert [tasks[0]["id"] + offset for offset in range(3)] == [item["id"] for item in tasks]
            assert tasks[1]["queue"] == "etl" and tasks[2]["name"] == "greet" and tasks[2]["timeout"] == 30
            repeated = client.post("/api/v1/tasks", json=[{**TASK, "idempotency_key": "k1", "priority": 5}])
            assert repeated.status_code == 200 and [item["id"] for item in repeated.json()] == [task["id"]]

            held = total(cli)
            refusals = [
                # (body, status, words in the error)
                ([TASK, {**TASK, "colour": "red"}], 422, ["body[1]", "unknown key 'colour'", "nothing was submitted"]),
                ([TASK, {"payload": {}}], 422, ["body[1]", "missing key 'target'"]),
                ([TASK, "tests.jobs:noop"], 422, ["body[1]", "JSON object"]),
                ([TASK, {**TASK, "priority": 1000}], 422, ["body[1]", "priority"]),
                ([TASK, {**TASK, "encrypt": "yes"}], 422, ["body[1]", "encrypt"]),
                ({**TASK, "at": "someday"}, 422, ["someday"]),
                ([], 422, ["empty list"]),
                (42, 422, ["task object"]),
                ([TASK, {**TASK, "backend": "nope"}], 400, ["body[1]", "unknown backend 'nope'"]),
                ([TASK, {**TASK, "depends_on": [999]}], 404, ["999"]),
                ([TASK, {"target": "tests.jobs:add", "idempotency_key": "k1"}], 409, ["k1"]),
                ([{**TASK, "queue": "tight"}] * 3, 429, ["tight"]),
            ]
            for body, status, words in refusals:
                message = error_of(client.post("/api/v1/tasks", json=body), status)
                assert all(word in message for word in words), (body, message)
            assert error_of(client.post("/api/v1/tasks", content=b'{"target": "tests.jobs:noop", "target": "x"}',
                                        headers={"Content-Type": "application/json"}), 422)
            assert "NaN" in error_of(client.post("/api/v1/tasks", content=b'{"target": "tests.jobs:noop", "priority": NaN}',
                                                 headers={"Content-Type": "application/json"}), 422)
            assert "JSON" in error_of(client.post("/api/v1/tasks", content=b"target=x",
                                                  headers={"Content-Type": "application/x-www-form-urlencoded"}), 415)
            assert "limit" in error_of(client.post("/api/v1/tasks", content=b"[" + b" " * (16 * 1024 * 1024) + b"]",
                                                   headers={"Content-Type": "application/json"}), 413)
            assert total(cli) == held, "a refused submit enqueued nothing"

            client.post("/api/v1/tasks", json={**TASK, "queue": "tight"}).raise_for_status()
            client.post("/api/v1/tasks", json={**TASK, "queue": "tight"}).raise_for_status()
            assert "tight" in error_of(client.post("/api/v1/tasks", json={**TASK, "queue": "tight"}), 429)
            assert error_of(client.post("/api/v1/tasks", json=TASK, headers={"Host": "evil.example"}), 400)
            assert total(cli) == held + 2
    finally:
        assert server.stop() == 0


def test_cancel_bump_replay_and_dags(cli):
    first = cli.submit("tests.jobs:noop")
    child = cli.submit("tests.jobs:noop", "--depends-on", str(first))
    other = cli.submit("tests.jobs:noop")
    broken = [cli.submit("tests.jobs:boom", "--max-retries", "0", "--queue", queue) for queue in ("etl", "etl", "web")]
    cli.ok("worker", "--once", "--queue", "etl")
    cli.ok("worker", "--once", "--queue", "web")
    server = start_server(cli)
    try:
        with server.client() as client:
            bumped = client.post(f"/api/v1/tasks/{other}/bump", json={"priority": 7})
            assert bumped.status_code == 200 and bumped.json() == cli.task(other) and bumped.json()["priority"] == 7
            assert client.post(f"/api/v1/tasks/{other}/bump", json={"by": -10}).json()["priority"] == -3
            assert error_of(client.post(f"/api/v1/tasks/{other}/bump", json={"priority": 101}), 422)
            assert error_of(client.post(f"/api/v1/tasks/{other}/bump", json={"level": 1}), 422)
            assert "either" in error_of(client.post(f"/api/v1/tasks/{other}/bump", json={}), 422)
            assert error_of(client.post(f"/api/v1/tasks/{other}/bump", json={"priority": 1, "by": 1}), 422)
            assert error_of(client.post("/api/v1/tasks/999/bump", json={"by": 1}), 404)

            assert "NUL" in error_of(client.post(f"/api/v1/tasks/{first}/cancel", json={"reason": "a\u0000b"}), 400)
            assert cli.task(first)["state"] == "pending", "a refused cancel cancels nothing"
            cancelled = client.post(f"/api/v1/tasks/{first}/cancel", json={"cascade": True, "reason": "not needed"})
            assert cancelled.status_code == 200
            assert [task["id"] for task in cancelled.json()] == [first, child]
            assert cancelled.json() == [cli.task(first), cli.task(child)]
            assert all(task["state"] == "cancelled" for task in cancelled.json())
            assert [task["id"] for task in client.post(f"/api/v1/tasks/{other}/cancel").json()] == [other]
            assert "pending or blocked" in error_of(client.post(f"/api/v1/tasks/{other}/bump", json={"by": 1}), 409)
            assert error_of(client.post("/api/v1/tasks/999/cancel"), 404)
            assert error_of(client.post(f"/api/v1/tasks/{first}/cancel", json={"cascade": "maybe"}), 422)

            would = client.post("/api/v1/dlq/replay", json={"all": True, "queue": "etl", "dry_run": True})
            assert would.status_code == 200 and sorted(task["id"] for task in would.json()) == broken[:2]
            assert all(task["state"] == "failed" for task in would.json())
            assert {task["id"] for task in cli.ok("dlq", "list", "--json").json} == set(broken)
            replayed = client.post("/api/v1/dlq/replay", json={"ids": [broken[2]], "priority": 9})
            assert replayed.status_code == 200
            [task] = replayed.json()
            assert task["id"] == broken[2] and task["state"] == "pending" and task["priority"] == 9 and task["attempts"] == 0
            assert sorted(task["id"] for task in client.post("/api/v1/dlq/replay", json={"all": True}).json()) == broken[:2]
            assert error_of(client.post("/api/v1/dlq/replay", json={}), 400)
            assert error_of(client.post("/api/v1/dlq/replay", json={"ids": "all"}), 422)
            assert error_of(client.post("/api/v1/dlq/replay", json={"ids": [999]}), 404)

            dag = client.post("/api/v1/dags", content=DAG_TOML, headers=TOML)
            assert dag.status_code == 201
            assert dag.json() == client.get(f"/api/v1/dags/{dag.json()['id']}").json() == cli.ok("dag", "status", str(dag.json()["id"]), "--json").json
            assert dag.json()["name"] == "etl" and list(dag.json()["tasks"]) == ["extract", "load"]
            unnamed = client.post("/api/v1/dags", content='[tasks.one]\ntarget = "tests.jobs:noop"\n', headers=TOML)
            assert unnamed.status_code == 201 and unnamed.json()["name"] == "dag"
            held = total(cli)
            assert "TOML" in error_of(client.post("/api/v1/dags", content="name = ", headers=TOML), 422)
            assert "cycle" in error_of(client.post("/api/v1/dags", content='[tasks.a]\ntarget = "tests.jobs:noop"\ndepends_on = ["a"]\n', headers=TOML), 422)
            nul_name = error_of(client.post("/api/v1/dags", content='name = "a\\u0000"\n[tasks.a]\ntarget = "tests.jobs:noop"\n', headers=TOML), 422)
            assert nul_name.startswith("invalid request: body: name must be") and "NUL" in nul_name, nul_name
            assert "application/toml" in error_of(client.post("/api/v1/dags", json={"name": "x"}), 415)
            assert error_of(client.post("/api/v1/dags", content=DAG_TOML), 415)
            assert total(cli) == held
    finally:
        assert server.stop() == 0


def test_tokens_roles_cookies_and_access_denied(cli):
    cli.create_db()
    cli.ok("role", "grant", login_name(), "admin")
    cli.ok("role", "grant", "vera", "viewer")
    cli.ok("role", "grant", "sam", "submitter", "--tenant", "acme")
    cli.ok("role", "grant", "otto", "operator")
    server = start_server(cli)
    try:
        vera, sam, otto = token_for(cli, "vera"), token_for(cli, "sam"), token_for(cli, "otto")
        with server.client(token=vera) as viewer, server.client(token=sam) as submitter, server.client(token=otto) as operator:
            assert viewer.get("/api/v1/me").json() == {
                "user": "vera", "open": False, "roles": [{"role": "viewer", "tenant": None}],
                "may": {"read": True, "submit": False, "change_task": False, "operate": False, "audit": False, "admin": False},
            }
            assert submitter.get("/api/v1/me").json()["may"] == {
                "read": True, "submit": True, "change_task": "own", "operate": False, "audit": False, "admin": False,
            }
            assert submitter.get("/api/v1/me").json()["roles"] == [{"role": "submitter", "tenant": "acme"}]
            assert operator.get("/api/v1/me").json()["may"]["change_task"] is True

            held = total(cli)
            message = error_of(viewer.post("/api/v1/tasks", json=[TASK, TASK]), 403)
            assert "vera" in message and "submit" in message
            assert total(cli) == held
            [denied] = cli.ok("audit", "log", "--action", "access.denied", "--json").json
            assert denied["actor"] == "vera"
            assert error_of(viewer.get("/api/v1/audit"), 403) and error_of(viewer.get("/api/v1/audit/verify"), 403)
            assert viewer.get("/metrics").status_code == 200 and viewer.get("/api/v1/tasks").status_code == 200

            own = submitter.post("/api/v1/tasks", json={**TASK, "tenant": "acme"})
            assert own.status_code == 201 and own.json()["submitted_by"] == "sam"
            assert error_of(submitter.post("/api/v1/tasks", json=TASK), 403)  # tenant default: not sam's
            theirs = operator.post("/api/v1/tasks", json={**TASK, "tenant": "acme"}).json()
            assert submitter.post(f"/api/v1/tasks/{own.json()['id']}/bump", json={"by": 1}).status_code == 200
            assert error_of(submitter.post(f"/api/v1/tasks/{theirs['id']}/cancel"), 403)
            assert error_of(viewer.post(f"/api/v1/tasks/{theirs['id']}/cancel"), 403)
            assert error_of(viewer.post("/api/v1/dlq/replay", json={"all": True}), 403)
            assert error_of(viewer.post("/api/v1/dags", content=DAG_TOML, headers=TOML), 403)
            assert operator.post(f"/api/v1/tasks/{theirs['id']}/cancel").status_code == 200

            with server.client(token="") as anonymous:
                for path in ["/api/v1/tasks", "/api/v1/me", "/metrics", "/api/v1/throughput"]:
                    assert "token" in error_of(anonymous.get(path), 401), path
                assert error_of(anonymous.post("/api/v1/tasks", json=TASK), 401)
            token_id = next(item["id"] for item in cli.ok("token", "list", "--json").json if item["user"] == "vera")
            cli.ok("token", "revoke", str(token_id))
            assert error_of(viewer.get("/api/v1/tasks"), 401)

        with httpx.Client(base_url=server.url, follow_redirects=False) as browser:
            assert browser.get(f"/?token={otto}").status_code == 302
            assert browser.get("/api/v1/me").json()["user"] == "otto"
            held = total(cli)
            assert "X-Tqcli-Request" in error_of(browser.post("/api/v1/tasks", json=TASK), 403)
            assert error_of(browser.post("/api/v1/dags", content=DAG_TOML, headers=TOML), 403)
            assert total(cli) == held
            sent = browser.post("/api/v1/tasks", json=TASK, headers={"X-Tqcli-Request": "1"})
            assert sent.status_code == 201 and sent.json()["submitted_by"] == "otto"
    finally:
        assert server.stop() == 0


def test_metrics_need_a_token_unless_public(cli, promtool):  # noqa: F811 - the fixture
    cli.submit("tests.jobs:noop")
    server = start_server(cli, "--public-metrics")
    try:
        answer = httpx.get(f"{server.url}/metrics")
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain; version=0.0.4")
        check_metrics(promtool, answer.text)
        assert 'tqcli_tasks{queue="default",tenant="default",state="pending"} 1' in answer.text
        assert error_of(httpx.get(f"{server.url}/api/v1/tasks"), 401), "only /metrics is public"
    finally:
        assert server.stop() == 0


def test_throughput_counts_finish_times_per_minute_in_bounded_pages(queue, clock):
    clock.set(clock.now() - clock.now() % 60_000_000 + 10_000_000)  # 10 s into a minute
    start = clock.now()
    for _ in range(3):
        queue.submit("tests.jobs:noop")
    queue.submit("tests.jobs:boom", max_retries=0)
    queue.drain()
    clock.advance(120)
    queue.submit("tests.jobs:noop", queue="etl")
    queue.drain()
    queue.cancel(queue.submit("tests.jobs:noop"))
    document = throughput(queue.tasks, clock.now(), minutes=4)
    assert document["step"] == 60 and document["truncated"] is False
    assert [point["at"] for point in document["series"]][-1] > document["since"]
    counts = [(point["completed"], point["failed"], point["cancelled"]) for point in document["series"]]
    assert counts == [(0, 0, 0), (3, 1, 0), (0, 0, 0), (1, 0, 1)]
    assert document["series"][1]["at"] == format_time(start - start % 60_000_000)
    assert [point["completed"] for point in throughput(queue.tasks, clock.now(), minutes=4, queue="etl")["series"]] == [0, 0, 0, 1]
    assert throughput(queue.tasks, clock.now(), minutes=1)["series"] == [
        {"at": format_time(clock.now() - clock.now() % 60_000_000), "completed": 1, "failed": 0, "cancelled": 1},
    ]
    cut = throughput(queue.tasks, clock.now(), minutes=4, page=2, max_pages=2)
    assert cut["truncated"] is True and sum(point["completed"] + point["failed"] for point in cut["series"]) == 4
    with pytest.raises(InvalidInput, match="invalid minutes"):
        throughput(queue.tasks, clock.now(), minutes=0)
