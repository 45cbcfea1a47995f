"""`GET /api/v1/tasks/{id}/logs` through a real `tqcli serve`: the `logs --json` document, its errors, and `follow=1` as NDJSON."""

import signal
import time

import httpx

from tests.serving import start_server
from tests.sse import END, ndjson
from tests.test_cli_encryption import key_file
from tqcli.config import login_name


def token_for(cli, user: str) -> str:
    return cli.ok("token", "create", user).stdout.split()[-1]


def error_of(answer: httpx.Response, status: int) -> dict:
    assert answer.status_code == status, (answer.status_code, answer.text)
    body = answer.json()
    assert set(body) == {"error", "exit_code"} and "Traceback" not in body["error"]
    return body


def test_a_task_run_by_a_worker_shows_what_it_printed_as_logs_json_does(cli, server):
    # Two pipes are read as their data comes: the pause keeps stderr's line ahead of seq's in the stored order.
    task_id = cli.submit("--backend", "shell", "echo to stdout; echo to stderr >&2; sleep 0.2; seq 1 5")
    retried = cli.submit("--backend", "shell", "echo try; exit 1", "--max-retries", "1", "--backoff", "0")
    cli("worker", "--once")
    with server.client() as client:
        document = client.get(f"/api/v1/tasks/{task_id}/logs").json()
        assert document == cli.ok("logs", str(task_id), "--json").json
        first = document["chunks"][0]  # how writes gather into chunks depends on when the pipe is read
        assert (first["stream"], first["dropped_before"]) == ("stdout", 0) and first["text"].startswith("to stdout\n")
        assert (document["task"], document["attempt"], document["running"]) == (task_id, 1, False)
        assert client.get(f"/api/v1/tasks/{task_id}/logs", params={"tail": 2}).json()["output"] == "4\n5\n"
        assert client.get(f"/api/v1/tasks/{retried}/logs", params={"attempt": 1}).json() == cli.ok(
            "logs", str(retried), "--attempt", "1", "--json").json
        assert client.get(f"/api/v1/tasks/{retried}/logs").json()["attempt"] == 2
        assert "no attempt 3" in error_of(client.get(f"/api/v1/tasks/{retried}/logs", params={"attempt": 3}), 404)["error"]
        assert error_of(client.get("/api/v1/tasks/99/logs"), 404)["exit_code"] == 3
        assert error_of(client.get("/api/v1/tasks/99/logs", params={"follow": 1}), 404)["exit_code"] == 3
        waiting = cli.submit("tests.jobs:noop")
        assert "has not run yet" in error_of(client.get(f"/api/v1/tasks/{waiting}/logs"), 404)["error"]
        error_of(client.get(f"/api/v1/tasks/{task_id}/logs", params={"attempt": 0}), 422)
        error_of(client.get(f"/api/v1/tasks/{task_id}/logs", params={"tail": -1}), 422)
    error_of(httpx.get(f"{server.url}/api/v1/tasks/{task_id}/logs"), 401)


def test_follow_streams_output_while_the_task_runs_and_ends_when_it_finishes(cli, server, tmp_path):
    gate = tmp_path / "gate"
    script = f"echo first; while [ ! -e {gate} ]; do sleep 0.05; done; echo second >&2; sleep 0.3; echo last; exit 4"
    task_id = cli.submit("--backend", "shell", script, "--max-retries", "0")
    with ndjson(server, f"/api/v1/tasks/{task_id}/logs", params={"follow": 1}) as stream:
        assert stream.status == 200 and stream.response_headers["content-type"] == "application/x-ndjson"
        assert stream.response_headers["cache-control"] == "no-cache"
        worker = cli.spawn("worker", "--once")
        try:
            before = stream.until(lambda line: "first\n" in line.get("output", ""), timeout=20)
            assert not gate.exists() and all(line["event"] == "output" for line in before)
            gate.touch()
            released = time.monotonic()
            after = stream.until(lambda line: line["event"] == "end", timeout=15)
            assert time.monotonic() - released < 3
            assert stream.next() is END
        finally:
            worker.wait(timeout=30)
    lines = before + after
    assert after[-1] == {"event": "end", "task": task_id, "state": "failed", "exit_code": 1, "error": after[-1]["error"]}
    assert "exit status 4" in after[-1]["error"]
    outputs = [line for line in lines if line["event"] == "output"]
    assert {line["attempt"] for line in outputs} == {1} and all(line["chunks"] for line in outputs[1:])
    assert outputs[-1]["running"] is False
    chunks = [chunk for line in outputs for chunk in line["chunks"]]
    assert chunks == cli.ok("logs", str(task_id), "--json").json["chunks"]
    assert [(chunk["stream"], chunk["text"]) for chunk in chunks] == [("stdout", "first\n"), ("stderr", "second\n"), ("stdout", "last\n")]


def test_follow_of_a_finished_task_sends_everything_then_end_and_waits_for_a_pending_one(cli, server):
    done = cli.submit("--backend", "shell", "seq 1 3")
    cancelled = cli.submit("--backend", "shell", "echo never")
    cli.ok("cancel", str(cancelled))
    cli.ok("worker", "--once")
    with ndjson(server, f"/api/v1/tasks/{done}/logs", params={"follow": 1, "tail": 1}) as stream:
        output, end = stream.next(), stream.next()
        assert output["event"] == "output" and output["output"] == "3\n"
        assert end == {"event": "end", "task": done, "state": "completed", "exit_code": 0, "error": None}
        assert stream.next() is END
    with ndjson(server, f"/api/v1/tasks/{cancelled}/logs", params={"follow": 1}) as stream:
        assert stream.next()["state"] == "cancelled" and stream.next() is END
    pending = cli.submit("--backend", "shell", "echo later")
    with ndjson(server, f"/api/v1/tasks/{pending}/logs", params={"follow": 1}) as stream:
        assert stream.status == 200 and stream.quiet(1.0) == []  # waits for a worker, sending nothing
        cli.ok("worker", "--once")
        lines = stream.until(lambda line: line["event"] == "end")
        assert "".join(line.get("output", "") for line in lines) == "later\n" and lines[-1]["exit_code"] == 0


def test_sigterm_ends_an_open_follow_and_the_server_exits_0(cli):
    task_id = cli.submit("--backend", "shell", "echo never runs")
    server = start_server(cli)
    with ndjson(server, f"/api/v1/tasks/{task_id}/logs", params={"follow": 1}) as stream:
        assert stream.status == 200
        started = time.monotonic()
        assert server.stop(signal.SIGTERM, timeout=15) == 0
        assert time.monotonic() - started < 3 and stream.ended(2)
    assert "Traceback" not in server.stderr


def test_another_tenants_task_is_403_and_a_missing_key_is_500_exit_8(cli):
    cli.ok("keys", "init")
    secret = cli.submit("--backend", "shell", "--encrypt", "echo hunter2")
    acme = cli.submit("--backend", "shell", "--tenant", "acme", "echo acme")
    cli.ok("worker", "--once")
    cli.ok("role", "grant", login_name(), "admin")
    cli.ok("role", "grant", "tina", "viewer", "--tenant", "acme")
    cli.ok("role", "grant", "vera", "viewer")
    server = start_server(cli)
    try:
        with server.client(token=token_for(cli, "tina")) as tina, server.client(token=token_for(cli, "vera")) as vera:
            assert tina.get(f"/api/v1/tasks/{acme}/logs").json()["output"] == "acme\n"
            for params in ({}, {"follow": 1}):
                assert "tina" in error_of(tina.get(f"/api/v1/tasks/{secret}/logs", params=params), 403)["error"]
            assert vera.get(f"/api/v1/tasks/{secret}/logs").json()["output"] == "<encrypted>\n"  # a viewer sees it masked
        denied = [entry for entry in cli.ok("audit", "log", "--json").json if entry["action"] == "access.denied"]
        assert denied and all(entry["actor"] == "tina" for entry in denied)
        with server.client() as admin:
            assert admin.get(f"/api/v1/tasks/{secret}/logs").json()["output"] == "hunter2\n"
            key_file(cli).rename(key_file(cli).with_name("elsewhere.toml"))
            for params in ({}, {"follow": 1}):
                assert error_of(admin.get(f"/api/v1/tasks/{secret}/logs", params=params), 500)["exit_code"] == 8
    finally:
        assert server.stop() == 0
