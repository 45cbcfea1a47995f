"""Encryption at rest through the library, with real workers: what is stored, who sees it, and keys that are missing or rotated."""

import json
from pathlib import Path

import pytest

import tqcli
from tests.stores import raw_sql
from tqcli.core.dags import parse_dag
from tqcli.errors import Conflict, KeyProblem
from tqcli.security.crypto import ENCRYPTED, FieldCipher, sealed_key_id
from tqcli.security.keys import load_key_file, write_key_file

SECRET = "s3cr3t-payload-7f1c"
RESULT = "RESULT-" + "TAIL-9d2e"  # appears as a whole only in the result
LEAK = "leaky-error-4b8a"


@pytest.fixture
def key_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "keys" / "keys.toml"
    monkeypatch.setenv("TQCLI_KEY_FILE", str(path))
    return path


@pytest.fixture
def secure(db_location, clock, key_path):
    """A queue whose key file exists (`keys init`)."""
    with tqcli.open(db_location, clock=clock) as opened:
        opened.keys.init()
        yield opened


def stored(location, task_id: int, column: str = "payload"):
    return raw_sql(location, f"SELECT {column} FROM tasks WHERE id = ?", (task_id,))[0][0]


def db_id(location) -> str:
    return raw_sql(location, "SELECT value FROM meta WHERE key = 'db_id'")[0][0]


def as_user(location, clock, user: str, monkeypatch=None, key_file: Path | None = None):
    if key_file is not None and monkeypatch is not None:
        monkeypatch.setenv("TQCLI_KEY_FILE", str(key_file))
    return tqcli.open(location, clock=clock, actor=user)


def grant(location, user: str, role: str, tenant: str = "") -> None:
    raw_sql(location, "INSERT INTO roles (user_name, role, tenant) VALUES (?, ?, ?)", (user, role, tenant))


def test_no_clear_text_reaches_the_database_file_its_wal_or_the_audit_chain(db_path, clock, key_path):
    with tqcli.open(db_path, clock=clock) as queue:
        queue.keys.init()
        done = queue.submit("tests.jobs:add", payload={"a": "RESULT-", "b": "TAIL-9d2e"}, encrypt=True)
        hidden = queue.submit("tests.jobs:add", payload={"a": SECRET, "b": "!"}, encrypt=True)
        failed = queue.submit("tests.jobs:boom", payload={"message": LEAK}, max_retries=1, backoff=0, encrypt=True)
        queue.drain()
        assert queue.get(done).result_value == RESULT and queue.get(hidden).payload_value["a"] == SECRET
        task = queue.get(failed)
        assert task.state.value == "failed" and task.error == f"ValueError: {LEAK}"
        assert LEAK in task.history[-1].traceback and task.history[0].error == f"ValueError: {LEAK}"
        files = [path for path in (db_path, Path(f"{db_path}-wal")) if path.exists()]
        assert Path(f"{db_path}-wal") in files  # still open: the WAL holds the latest pages
        for path in files:
            data = path.read_bytes()
            for secret in (SECRET, RESULT, LEAK):
                assert secret.encode() not in data, f"{secret} in {path.name}"
        audit = raw_sql(db_path, "SELECT action, details FROM audit")
        assert {"task.fail", "task.complete"} <= {action for action, _ in audit}
        assert not any(secret in details for _, details in audit for secret in (SECRET, RESULT, LEAK))
        assert any(action == "task.fail" and ENCRYPTED in details for action, details in audit)
        assert queue.audit.verify().intact


def test_a_ciphertext_swapped_into_another_task_fails_without_retry_and_never_runs(secure, db_location, tmp_path):
    first, second = tmp_path / "first.ran", tmp_path / "second.ran"
    a = secure.submit("tests.jobs:record", payload={"path": str(first), "value": "a"}, encrypt=True)
    b = secure.submit("tests.jobs:record", payload={"path": str(second), "value": "b"}, encrypt=True)
    pa, pb = stored(db_location, a), stored(db_location, b)
    raw_sql(db_location, "UPDATE tasks SET payload = ? WHERE id = ?", (pb, a))
    raw_sql(db_location, "UPDATE tasks SET payload = ? WHERE id = ?", (pa, b))
    warnings: list[str] = []
    secure.drain(log=warnings.append)
    assert len(warnings) == 2 and all("ciphertext does not decrypt" in warning for warning in warnings)
    for task_id in (a, b):
        task = secure.get(task_id)
        assert (task.state.value, task.attempts, task.error) == ("failed", 1, "ciphertext does not decrypt")
        assert [attempt.error for attempt in task.history] == ["ciphertext does not decrypt"]
    assert not first.exists() and not second.exists()
    assert secure.breakers.list() == []  # the service did nothing wrong: its circuit counts nothing


def test_a_task_stays_readable_after_rotation_and_its_result_is_sealed_under_the_new_key(secure, db_location):
    old = secure.submit("tests.jobs:add", payload={"a": 1, "b": 2}, encrypt=True)
    before, after = secure.keys.rotate()
    assert sealed_key_id(stored(db_location, old)) == before
    secure.drain()
    task = secure.get(old)
    assert (task.state.value, task.result_value, task.payload_value) == ("completed", 3, {"a": 1, "b": 2})
    assert sealed_key_id(stored(db_location, old, "result")) == after


def test_an_interrupted_reencrypt_is_finished_by_a_rerun_and_then_the_old_key_can_go(secure, db_location):
    ids = [secure.submit("tests.jobs:add", payload={"a": n, "b": 1}, encrypt=True) for n in range(5)]
    secure.drain()
    old, new = secure.keys.rotate()

    def crash(done, total, what):
        raise KeyboardInterrupt("killed mid-way")

    with pytest.raises(KeyboardInterrupt):
        secure.keys.reencrypt(batch=2, progress=crash)
    counts = {key.id: key.values for key in secure.keys.status() if key.kind == "data"}
    assert counts[new] == 4 and counts[old] == 6  # the first batch (2 tasks: payload and result each) landed
    with pytest.raises(Conflict, match="still protects 6 stored values"):
        secure.keys.retire(old)
    report = secure.keys.reencrypt(batch=2)
    assert (report.tasks, report.values, report.batches) == (3, 6, 2)
    assert {key.id: key.values for key in secure.keys.status() if key.kind == "data"} == {old: 0, new: 10}
    secure.keys.retire(old)
    assert [secure.get(task_id).result_value for task_id in ids] == [1, 2, 3, 4, 5]
    entries = secure.audit.entries(action="keys.reencrypt")
    assert [json.loads(entry.details)["tasks"] for entry in entries] == [ids[:2], ids[2:4], ids[4:]]


def test_a_worker_without_a_data_key_leaves_encrypted_tasks_pending_with_no_attempt_used(secure, db_location, clock, tmp_path, monkeypatch):
    encrypted = secure.submit("tests.jobs:add", payload={"a": 1, "b": 1}, encrypt=True)
    plain = secure.submit("tests.jobs:add", payload={"a": 2, "b": 2})
    keyless = tmp_path / "audit-only.toml"
    write_key_file(load_key_file(secure._ctx.key_file).replaced(path=keyless, data=()))
    monkeypatch.setenv("TQCLI_KEY_FILE", str(keyless))
    warnings: list[str] = []
    with tqcli.open(db_location, clock=clock) as worker_side:
        report = worker_side.drain(log=warnings.append)
        assert report.outcomes == {"completed": 1}
        task = worker_side.get(encrypted)
        assert (task.state.value, task.attempts, task.payload_value) == ("pending", 0, ENCRYPTED)
        assert task.waiting == "encryption key missing"
        worker_side.drain(log=warnings.append)
    assert secure.get(plain).result_value == 4
    assert len([w for w in warnings if "encrypted tasks stay pending" in w]) == 2  # once per run
    assert "keys export --for-worker" in warnings[0]


def test_a_worker_whose_key_file_lacks_the_new_key_gives_the_task_back_unused(secure, db_location, clock, tmp_path, monkeypatch):
    stale = tmp_path / "stale.toml"
    write_key_file(load_key_file(secure._ctx.key_file).replaced(path=stale))
    _, new = secure.keys.rotate()
    encrypted = secure.submit("tests.jobs:add", payload={"a": 1, "b": 1}, encrypt=True)
    others = [secure.submit("tests.jobs:add", payload={"a": 1, "b": 1}, encrypt=True) for _ in range(3)]
    monkeypatch.setenv("TQCLI_KEY_FILE", str(stale))
    warnings: list[str] = []
    with tqcli.open(db_location, clock=clock) as worker_side:
        report = worker_side.drain(log=warnings.append)
    assert report.claimed == 0 and len(warnings) == 1 and new in warnings[0]
    for task_id in (encrypted, *others):
        task = secure.get(task_id)
        assert (task.state.value, task.attempts) == ("pending", 0)
    assert not [entry for entry in secure.audit.entries() if entry.action in ("task.claim", "task.release")]
    secure.drain()
    assert secure.get(encrypted).result_value == 2


def test_status_shows_encrypted_values_only_to_who_may_decrypt_them(secure, db_location, clock):
    admin = secure.actor
    grant(db_location, admin, "admin")
    for user, role in (("vera", "viewer"), ("olga", "operator"), ("sam", "submitter"), ("sue", "submitter")):
        grant(db_location, user, role)
    with as_user(db_location, clock, "sam") as sam:
        own = sam.submit("tests.jobs:add", payload={"a": "x", "b": "y"}, encrypt=True)
        secure.drain()
        assert sam.get(own).result_value == "xy"
        assert sam.status().tasks[0].payload_value == {"a": "x", "b": "y"}
    for user, sees in (("vera", False), ("sue", False), ("olga", True), (admin, True)):
        with as_user(db_location, clock, user) as reader:
            task = reader.get(own).to_json()
            listed = reader.status().to_json()["tasks"][0]
        expected = ({"a": "x", "b": "y"}, "xy") if sees else (ENCRYPTED, ENCRYPTED)
        assert (task["payload"], task["result"]) == expected, user
        assert (listed["payload"], listed["result"]) == expected, user


def test_restart_copies_an_encrypted_task_encrypted_under_its_new_id(secure, db_location):
    first = secure.submit("tests.jobs:add", payload={"a": 2, "b": 3}, encrypt=True)
    secure.drain()
    again = secure.restart(first)
    assert stored(db_location, again) != stored(db_location, first)
    assert secure.get(again).encrypted and secure.get(again).payload_value == {"a": 2, "b": 3}
    secure.drain()
    assert secure.get(again).result_value == 5
    plain = secure.submit("tests.jobs:noop")
    secure.drain()
    assert secure.get(secure.restart(plain, encrypt=True)).encrypted


def test_edit_and_replay_seal_a_new_payload_and_audit_no_clear_text(secure, db_location):
    pending = secure.submit("tests.jobs:add", payload={"a": 1, "b": 1}, encrypt=True, delay=3600)
    changes = secure.edit(pending, payload={"a": SECRET, "b": "!"})
    assert changes == {"payload": {"from": ENCRYPTED, "to": ENCRYPTED}}
    assert secure.edit(pending, payload={"a": SECRET, "b": "!"}) == {}  # the same payload: nothing changed
    assert secure.edit(pending, priority=5) == {"priority": {"from": 0, "to": 5}}
    assert secure.get(pending).payload_value == {"a": SECRET, "b": "!"} and SECRET not in stored(db_location, pending)
    failed = secure.submit("tests.jobs:boom", payload={"message": LEAK}, max_retries=0, encrypt=True)
    secure.drain()
    (replayed,) = secure.dlq.replay([failed], payload={"message": SECRET})
    assert replayed.payload_value == {"message": SECRET} and SECRET not in stored(db_location, failed)
    cipher = FieldCipher(db_id(db_location), load_key_file(secure._ctx.key_file))
    assert cipher.open(failed, "payload", stored(db_location, failed)) == f'{{"message":"{SECRET}"}}'
    details = " ".join(row[0] for row in raw_sql(db_location, "SELECT details FROM audit"))
    assert SECRET not in details and LEAK not in details


def test_without_a_data_key_an_encrypted_submit_is_exit_8_and_enqueues_nothing(queue):
    with pytest.raises(KeyProblem, match="keys init") as caught:
        queue.submit("tests.jobs:noop", encrypt=True)
    assert caught.value.exit_code == 8
    queue.tenancy.set_queue("secret", encrypt=True)
    with pytest.raises(KeyProblem, match="queue secret encrypts"):
        queue.submit_many([tqcli.TaskSpec("tests.jobs:noop"), tqcli.TaskSpec("tests.jobs:noop", queue="secret")])
    assert queue.status().counts["pending"] == 0
    assert [entry.action for entry in queue.audit.entries()] == ["queue.set"]


def test_a_queue_that_encrypts_encrypts_what_is_submitted_to_it_from_then_on(secure, db_location):
    before = secure.submit("tests.jobs:noop", queue="vault")
    secure.tenancy.set_queue("vault", encrypt=True)
    during = secure.submit("tests.jobs:noop", queue="vault")
    secure.tenancy.set_queue("vault", encrypt=False)
    after = secure.submit("tests.jobs:noop", queue="vault")
    assert [secure.get(task_id).encrypted for task_id in (before, during, after)] == [False, True, False]
    assert [info.encrypt for info in secure.tenancy.queues() if info.name == "vault"] == [False]
    secure.drain()
    assert secure.get(during).state.value == "completed" and sealed_key_id(stored(db_location, during, "result"))


def test_an_idempotency_key_held_by_an_encrypted_task_compares_its_payload_in_clear(secure):
    held = secure.submit("tests.jobs:add", payload={"a": 1, "b": 2}, idempotency_key="k", encrypt=True)
    assert secure.submit("tests.jobs:add", payload={"a": 1, "b": 2}, idempotency_key="k", encrypt=True) == held
    with pytest.raises(Conflict, match=f"held by task {held}, whose payload differs"):
        secure.submit("tests.jobs:add", payload={"a": 9, "b": 2}, idempotency_key="k")


def test_a_dag_file_encrypts_the_tasks_that_ask(secure):
    plan = parse_dag({"defaults": {"encrypt": True}, "tasks": {
        "one": {"target": "tests.jobs:add", "payload": {"a": 1, "b": 1}},
        "two": {"target": "tests.jobs:add", "payload": {"a": 2, "b": 2}, "encrypt": False, "depends_on": ["one"]},
    }}, "plan.toml")
    dag = secure.dags.get(secure.dags.submit(plan))
    assert {name: task.encrypted for name, task in dag.tasks.items()} == {"one": True, "two": False}
    secure.drain()
    assert {name: task.result_value for name, task in secure.dags.get(dag.id).tasks.items()} == {"one": 2, "two": 4}
    with pytest.raises(tqcli.InvalidInput, match="invalid encrypt 'yes'"):
        parse_dag({"tasks": {"one": {"target": "tests.jobs:noop", "encrypt": "yes"}}}, "bad.toml")
