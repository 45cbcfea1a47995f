"""`tqcli serve` as a process: the login URL, clean stops, tokens, and the guards every request passes."""

import json
import select
import signal
import socket
import subprocess
import sys

import httpx
import pytest

from tests.serving import start_server
from tqcli.config import login_name


def token_list(cli):
    return cli.ok("token", "list", "--json").json


def test_serve_prints_a_login_url_and_stops_on_sigterm_with_exit_0_revoking_its_login_token(cli):
    cli.create_db()
    server = start_server(cli)
    assert server.url.startswith("http://127.0.0.1:")
    assert server.token.startswith("tq_")
    [login] = [token for token in token_list(cli) if token["name"] == "serve login"]
    assert login["revoked_at"] is None and login["expires_at"] is not None
    with server.client() as client:
        assert client.get("/api/v1/me").status_code == 200
    assert server.stop(signal.SIGTERM) == 0
    assert "Traceback" not in server.stderr
    [login] = [token for token in token_list(cli) if token["name"] == "serve login"]
    assert login["revoked_at"] is not None
    actions = [entry["action"] for entry in cli.ok("audit", "log", "--json").json]
    assert actions.count("token.create") == 1 and actions.count("token.revoke") == 1


def test_ctrl_c_stops_it_with_exit_0_too(cli):
    cli.create_db()
    server = start_server(cli)
    assert server.stop(signal.SIGINT) == 0
    assert "Traceback" not in server.stderr


def test_healthz_and_the_openapi_document_need_no_token(server):
    with server.client(token="") as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        document = client.get("/openapi.json").json()
    assert document["openapi"].startswith("3.")
    assert "/api/v1/tasks" in document["paths"]


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Bearer tq_1_not-the-secret"},
    {"Authorization": "Bearer nonsense"},
    {"Authorization": "Basic dXNlcjpwYXNz"},
])
def test_a_request_without_a_valid_token_is_401_with_the_error_shape(server, headers):
    answer = httpx.get(f"{server.url}/api/v1/me", headers=headers)
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == "Bearer"
    body = answer.json()
    assert set(body) == {"error", "exit_code"} and body["exit_code"] == 4
    assert "token" in body["error"]


def test_a_revoked_token_is_401_at_once(cli, server):
    created = cli.ok("token", "create", "alice")
    token = created.stdout.split()[-1]
    with server.client(token=token) as client:
        assert client.get("/api/v1/me").json()["user"] == "alice"
        token_id = next(item["id"] for item in token_list(cli) if item["user"] == "alice")
        cli.ok("token", "revoke", str(token_id))
        assert client.get("/api/v1/me").status_code == 401


def test_a_foreign_host_is_refused_and_allowed_names_are_served(cli):
    cli.create_db()
    server = start_server(cli, "--allow-host", "queue.example.com")
    try:
        with server.client() as client:
            port = server.url.rsplit(":", 1)[1]
            refused = client.get("/healthz", headers={"Host": f"evil.example:{port}"})
            assert refused.status_code == 400
            assert "--allow-host evil.example" in refused.json()["error"]
            for host in (f"localhost:{port}", f"127.0.0.1:{port}", "queue.example.com", "QUEUE.example.com:443"):
                assert client.get("/healthz", headers={"Host": host}).status_code == 200, host
    finally:
        assert server.stop() == 0


def _raw_request(server, head: bytes, body_chunks=()) -> bytes:
    """Send a request as raw bytes and read the answer; stop sending once the server has answered (it may refuse early)."""
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head)
        for chunk in body_chunks:
            if select.select([sock], [], [], 0)[0]:
                break  # the answer came before the body ended
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass  # the server closed a connection it had unread bytes on, after answering
    return answer


def test_a_body_over_16_mib_is_refused_by_its_length_before_it_is_sent(server):
    head = (
        f"POST /api/v1/tasks HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {server.token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {17 * 1024 * 1024}\r\nConnection: close\r\n\r\n"
    ).encode()
    answer = _raw_request(server, head)
    assert answer.startswith(b"HTTP/1.1 413")
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["exit_code"] == 2


def test_a_streamed_body_is_cut_off_once_it_passes_the_limit(server):
    head = (
        f"POST /api/v1/tasks HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {server.token}\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    ).encode()
    piece = b"x" * (64 * 1024)
    chunks = [b"%x\r\n%s\r\n" % (len(piece), piece)] * (17 * 16) + [b"0\r\n\r\n"]
    answer = _raw_request(server, head, chunks)
    assert answer.startswith(b"HTTP/1.1 413")
    assert "limit of 16 MiB" in json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]


def test_unknown_paths_and_methods_answer_the_error_shape(server):
    with server.client() as client:
        missing = client.get("/api/v1/nothing-here")
        assert missing.status_code == 404 and missing.json()["exit_code"] == 3
        wrong = client.delete("/api/v1/tasks")
        assert wrong.status_code == 405 and wrong.json()["exit_code"] == 2


def test_a_cookie_session_needs_the_request_header_to_change_anything(server):
    with httpx.Client(base_url=server.url, follow_redirects=False) as browser:
        login = browser.get(f"/?token={server.token}")
        assert login.status_code == 302 and login.headers["location"] == "/"
        cookie = login.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        assert browser.get("/api/v1/me").status_code == 200
        task = {"target": "tests.jobs:noop"}
        refused = browser.post("/api/v1/tasks", json=task)
        assert refused.status_code == 403 and "X-Tqcli-Request" in refused.json()["error"]
        assert browser.post("/api/v1/tasks", json=task, headers={"X-Tqcli-Request": "1"}).status_code == 201


def test_serve_without_the_server_extra_is_exit_2_naming_the_install(cli):
    code = "import sys; sys.modules['fastapi'] = None; from tqcli.cli import main; sys.argv = ['tqcli', 'serve']; main()"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=cli.env, cwd=cli.cwd)
    assert done.returncode == 2
    assert done.stderr == "error: serve needs the server extra (fastapi is not installed): pip install 'tqcli[server]'\n"


def test_bad_addresses_are_exit_2_with_one_error_line(cli):
    cli.create_db()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for args, expected in [
            (["--port", str(port)], f"port {port} on 127.0.0.1 is in use"),
            (["--port", "70000"], "--port 70000 is not a port"),
            (["--host", "no-such-host.invalid"], "cannot listen on --host 'no-such-host.invalid'"),
            (["--allow-host", "http://x/"], "--allow-host takes a host name"),
            (["--prot", "1"], "No such option: --prot"),
        ]:
            result = cli("serve", *args)
            assert result.code == 2, (args, result.stderr)
            assert len(result.error_lines) == 1 and expected in result.error_lines[0], result.stderr
    assert [token for token in token_list(cli) if token["name"] == "serve login"] == []


def test_serving_needs_the_operate_permission(cli):
    cli.create_db()
    cli.ok("role", "grant", login_name(), "admin")
    cli.ok("role", "grant", "vera", "viewer")
    result = cli("serve", "--port", "0", env={"TQCLI_USER": "vera"})
    assert result.code == 4
    assert "vera" in result.error_lines[0] and "operator" in result.error_lines[0]
    assert [token for token in token_list(cli) if token["name"] == "serve login"] == []
