"""Encryption at rest as a user meets it: `submit --encrypt`, encrypting queues, workers and readers with and without the key."""

import json
from pathlib import Path

import pytest

from tests.conftest import sql_shell
from tests.stores import raw_sql
from tqcli.security.keys import load_key_file, write_key_file

SECRET = "hunter2-5e1f"


@pytest.fixture
def keyed(cli):
    """The CLI with a key file (`keys init`), as its admin."""
    cli.ok("keys", "init")
    return cli


def key_file(cli) -> Path:
    return cli.home / "config" / "tqcli" / "keys.toml"


def grant(cli, user: str, role: str) -> None:
    raw_sql(cli.db, "INSERT INTO roles (user_name, role, tenant) VALUES (?, ?, '')", (user, role))


def admin_is_me(cli) -> None:
    me = cli.ok("audit", "log", "--json").json[0]["actor"]
    grant(cli, me, "admin")


def test_submit_encrypt_without_a_key_file_is_exit_8_and_enqueues_nothing(cli):
    result = cli("submit", "--encrypt", "tests.jobs:noop")
    assert result.code == 8 and result.stdout == "" and result.error_lines == [result.stderr.strip()]
    assert "tqcli keys init" in result.stderr and str(key_file(cli)) in result.stderr
    bulk = cli("submit", "--from-file", "-", input='{"target": "tests.jobs:noop"}\n{"target": "tests.jobs:noop", "encrypt": true}\n')
    assert bulk.code == 8 and bulk.stdout == ""
    assert cli.ok("status", "--json").json["counts"]["pending"] == 0


def test_an_encrypted_task_runs_and_its_owner_reads_it_while_the_database_holds_ciphertext(keyed):
    task_id = keyed.submit("--encrypt", "tests.jobs:add", "--payload", json.dumps({"a": SECRET, "b": "-done"}))
    stored = raw_sql(keyed.db, "SELECT payload, encrypted FROM tasks WHERE id = ?", (task_id,))[0]
    assert SECRET not in stored[0] and stored[1] == 1
    keyed.ok("worker", "--once")
    task = keyed.task(task_id)
    assert task["encrypted"] is True and task["payload"] == {"a": SECRET, "b": "-done"} and task["result"] == f"{SECRET}-done"
    assert SECRET not in raw_sql(keyed.db, "SELECT result FROM tasks WHERE id = ?", (task_id,))[0][0]
    shown = keyed.ok("status", str(task_id)).stdout
    assert SECRET in shown and "tqe1:" not in shown
    (entry,) = keyed.ok("audit", "log", "--action", "task.submit", "--json").json
    assert entry["details"]["encrypted"] is True
    assert SECRET not in keyed.ok("audit", "log", "--json").stdout
    assert keyed.ok("audit", "verify").code == 0


def test_a_viewer_and_a_process_without_the_key_see_encrypted(keyed, tmp_path):
    task_id = keyed.submit("--encrypt", "tests.jobs:boom", "--payload", json.dumps({"message": SECRET}), "--max-retries", "0")
    keyed.ok("worker", "--once")
    admin_is_me(keyed)
    grant(keyed, "vera", "viewer")
    viewer = keyed.ok("status", str(task_id), "--json", env={"TQCLI_USER": "vera"}).json
    assert (viewer["payload"], viewer["error"], viewer["history"][0]["error"], viewer["history"][0]["traceback"]) == ("<encrypted>",) * 4
    human = keyed.ok("status", str(task_id), env={"TQCLI_USER": "vera"}).stdout
    assert "<encrypted>" in human and SECRET not in human and "tqe1:" not in human
    listed = keyed.ok("dlq", "list", "--json", env={"TQCLI_USER": "vera"}).json
    assert [task["payload"] for task in listed] == ["<encrypted>"]
    mine = keyed.task(task_id)
    assert mine["payload"] == {"message": SECRET} and mine["error"] == f"ValueError: {SECRET}"
    keyless = keyed.ok("--key-file", str(tmp_path / "none.toml"), "status", str(task_id), "--json").json
    assert keyless["payload"] == "<encrypted>" and keyless["error"] == "<encrypted>"


def test_a_worker_without_the_data_key_leaves_the_task_pending_and_says_so_once(keyed, tmp_path):
    task_id = keyed.submit("--encrypt", "tests.jobs:noop")
    plain = keyed.submit("tests.jobs:noop")
    audit_only = tmp_path / "audit-only.toml"
    write_key_file(load_key_file(key_file(keyed)).replaced(path=audit_only, data=()))
    run = keyed.ok("--key-file", str(audit_only), "worker", "--once")
    assert run.stderr.count("encrypted tasks stay pending") == 1 and "keys export --for-worker" in run.stderr
    task = keyed.ok("--key-file", str(audit_only), "status", str(task_id), "--json").json
    assert (task["state"], task["attempts"], task["waiting"]) == ("pending", 0, "encryption key missing")
    assert keyed.task(plain)["state"] == "completed" and keyed.task(task_id)["waiting"] == "ready: waiting for a worker"
    keyed.ok("worker", "--once")
    assert keyed.task(task_id)["state"] == "completed"


def test_ciphertexts_swapped_with_sql_fail_without_retry_and_their_targets_never_run(keyed, tmp_path):
    markers = [tmp_path / "a.ran", tmp_path / "b.ran"]
    ids = [keyed.submit("--encrypt", "tests.jobs:record", "--payload", json.dumps({"path": str(m), "value": "x"})) for m in markers]
    first, second = (raw_sql(keyed.db, "SELECT payload FROM tasks WHERE id = ?", (task_id,))[0][0] for task_id in ids)
    sql_shell(keyed.db, f"UPDATE tasks SET payload = '{second}' WHERE id = {ids[0]}; UPDATE tasks SET payload = '{first}' WHERE id = {ids[1]};")
    run = keyed.ok("worker", "--once")
    assert run.stderr.count("ciphertext does not decrypt") == 2
    for task_id in ids:
        task = keyed.task(task_id)
        assert (task["state"], task["attempts"], task["error"]) == ("failed", 1, "ciphertext does not decrypt")
    assert not any(marker.exists() for marker in markers)


def test_a_key_file_others_can_read_is_exit_8_with_the_chmod_to_run(keyed):
    task_id = keyed.submit("--encrypt", "tests.jobs:noop")
    key_file(keyed).chmod(0o644)
    for args in (["submit", "--encrypt", "tests.jobs:noop"], ["status", str(task_id)], ["worker", "--once"]):
        result = keyed(*args)
        assert result.code == 8 and result.error_lines == [result.stderr.strip()], (args, result.stderr)
        assert f"chmod 600 {key_file(keyed)}" in result.stderr
    key_file(keyed).chmod(0o600)
    assert keyed.ok("status", "--json").json["counts"]["pending"] == 1


def test_bulk_lines_and_queues_ask_for_encryption(keyed):
    ids = keyed.ok("submit", "--from-file", "-", input=(
        '{"target": "tests.jobs:noop", "encrypt": true}\n{"target": "tests.jobs:noop"}\n{"target": "tests.jobs:noop", "queue": "vault"}\n'
    )).stdout.split()
    assert [keyed.task(int(task_id))["encrypted"] for task_id in ids] == [True, False, False]
    bad = keyed("submit", "--from-file", "-", input='{"target": "tests.jobs:noop", "encrypt": "yes"}\n')
    assert bad.code == 2 and "stdin line 1: invalid encrypt 'yes': use true or false" in bad.stderr
    assert "encrypts its tasks" in keyed.ok("queue", "set", "vault", "--encrypt").stderr
    assert keyed.ok("queue", "set", "vault", "--encrypt").stderr.startswith("nothing changed")
    assert keyed.task(keyed.submit("tests.jobs:noop", "--queue", "vault"))["encrypted"] is True
    (vault,) = [q for q in keyed.ok("queue", "list", "--json").json if q["name"] == "vault"]
    assert vault["encrypt"] is True and "encrypt" in keyed.ok("queue", "list").stdout
    keyed.ok("queue", "set", "vault", "--no-encrypt")
    assert keyed.task(keyed.submit("tests.jobs:noop", "--queue", "vault"))["encrypted"] is False
    assert keyed.task(int(ids[0]))["encrypted"] is True  # a task keeps how it was stored


def test_rotation_keeps_old_tasks_readable_then_reencrypt_and_retire(keyed):
    old_task = keyed.submit("--encrypt", "tests.jobs:add", "--payload", '{"a": 1, "b": 2}')
    keyed.ok("keys", "rotate")
    new_task = keyed.submit("--encrypt", "tests.jobs:add", "--payload", '{"a": 3, "b": 4}')
    keyed.ok("worker", "--once")
    assert (keyed.task(old_task)["result"], keyed.task(new_task)["result"]) == (3, 7)
    old = next(key["id"] for key in keyed.ok("keys", "status", "--json").json["keys"] if key["kind"] == "data" and not key["primary"])
    assert keyed("keys", "retire", old).code == 6
    keyed.ok("keys", "rotate", "--reencrypt")
    keyed.ok("keys", "retire", old)
    assert (keyed.task(old_task)["payload"], keyed.task(old_task)["result"]) == ({"a": 1, "b": 2}, 3)
