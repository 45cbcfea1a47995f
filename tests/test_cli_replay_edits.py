"""`dlq replay` fix-and-retry through the CLI: encrypted payloads, who may replay, and all-or-nothing across several tasks (both stores)."""

import json

from tests.stores import raw_sql, table_dump
from tests.test_cli_encryption import SECRET, keyed  # noqa: F401 - the fixture
from tests.test_rbac import ME


def replay_details(cli):
    return {entry["task_id"]: entry["details"] for entry in cli.ok("audit", "log", "--action", "dlq.replay", "--json").json}


def test_replay_payload_of_an_encrypted_task_is_sealed_and_runs_with_the_fix(keyed):
    task_id = keyed.submit("--encrypt", "tests.jobs:add", "--payload", json.dumps({"a": "x"}), "--max-retries", "0")
    keyed.ok("worker", "--once")  # add() needs b: it fails
    assert keyed.task(task_id)["state"] == "failed"
    keyed.ok("dlq", "replay", str(task_id), "--payload", json.dumps({"a": SECRET, "b": "-fixed"}), "--priority", "3")
    stored = raw_sql(keyed.db, "SELECT payload FROM tasks WHERE id = ?", (task_id,))[0][0]
    assert SECRET not in stored and stored.startswith("tqe1:")
    details = replay_details(keyed)[task_id]
    assert details["payload"] == {"from": "<encrypted>", "to": "<encrypted>"} and details["priority"] == {"from": 0, "to": 3}
    keyed.ok("worker", "--once")
    task = keyed.task(task_id)
    assert (task["state"], task["result"], task["run"]) == ("completed", f"{SECRET}-fixed", 2)
    assert SECRET not in keyed.ok("audit", "log", "--json").stdout
    assert keyed.ok("audit", "verify").code == 0


def test_replay_all_with_a_payload_seals_each_encrypted_task_under_its_own_id_and_leaves_plain_ones_plain(keyed):
    secret_id = keyed.submit("--encrypt", "tests.jobs:boom", "--max-retries", "0")
    plain_id = keyed.submit("tests.jobs:boom", "--max-retries", "0")
    keyed.ok("worker", "--once")
    keyed.ok("dlq", "replay", "--all", "--payload", json.dumps({"message": "again"}))
    rows = dict(raw_sql(keyed.db, "SELECT id, payload FROM tasks ORDER BY id"))
    assert rows[secret_id].startswith("tqe1:") and json.loads(rows[plain_id]) == {"message": "again"}
    assert keyed.task(secret_id)["payload"] == keyed.task(plain_id)["payload"] == {"message": "again"}
    assert replay_details(keyed)[plain_id]["payload"] == {"from": {}, "to": {"message": "again"}}


def test_a_viewer_may_not_replay_and_a_tenant_operator_replays_its_tenant_only(cli):
    cli.ok("role", "grant", ME, "admin")
    cli.ok("role", "grant", "olga", "operator", "--tenant", "acme")
    cli.ok("role", "grant", "vic", "viewer")
    ours = cli.submit("tests.jobs:boom", "--max-retries", "0", "--tenant", "acme")
    theirs = cli.submit("tests.jobs:boom", "--max-retries", "0", "--tenant", "beta")
    cli.ok("worker", "--once")
    denied = cli("dlq", "replay", "--all", "--priority", "5", env={"TQCLI_USER": "vic"})
    assert denied.code == 4 and len(denied.error_lines) == 1 and "vic" in denied.error_lines[0] and denied.stdout == ""
    assert cli.task(ours)["state"] == cli.task(theirs)["state"] == "failed"
    assert cli("dlq", "replay", str(theirs), env={"TQCLI_USER": "olga"}).code == 4
    assert cli.ok("dlq", "replay", "--all", "--priority", "5", env={"TQCLI_USER": "olga"}).stdout == f"{ours}\n"
    assert (cli.task(ours)["state"], cli.task(ours)["priority"], cli.task(theirs)["state"]) == ("pending", 5, "failed")


def test_replay_of_several_tasks_into_a_full_queue_replays_none_of_them(cli):
    ids = [cli.submit("tests.jobs:boom", "--max-retries", "0", "--queue", "src") for _ in range(3)]
    cli.ok("worker", "--once")
    cli.ok("queue", "set", "fixed", "--max-length", "2")
    before = table_dump(cli.db)
    result = cli("dlq", "replay", "--all", "--to-queue", "fixed", "--max-retries", "2")
    assert result.code == 5 and result.stdout == "" and len(result.error_lines) == 1
    assert "queue fixed: max-length 2 reached (0 unfinished, 3 replayed)" in result.error_lines[0]
    assert table_dump(cli.db) == before, "no task replayed, no dlq.replay entry"
    assert [cli.task(i)["queue"] for i in ids] == ["src"] * 3


def test_an_invalid_payload_is_exit_2_before_anything_is_read_or_changed(cli):
    (task_id,) = [cli.submit("tests.jobs:boom", "--max-retries", "0")]
    cli.ok("worker", "--once")
    before = table_dump(cli.db)
    for payload in ("{not json", "[]", '"text"'):
        result = cli("dlq", "replay", "--all", "--payload", payload)
        assert result.code == 2 and len(result.error_lines) == 1 and "--payload" in result.error_lines[0], result.stderr
    assert table_dump(cli.db) == before and cli.task(task_id)["state"] == "failed"
