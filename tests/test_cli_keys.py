"""`tqcli keys ...` as an admin meets them: the key file's safety, status counts, rotation, export, retire, exit codes."""

import os
import stat
from pathlib import Path

import pytest

from tests.stores import raw_sql
from tqcli.security.crypto import FieldCipher, sealed_key_id
from tqcli.security.keys import load_key_file


def key_file(cli) -> Path:
    return cli.home / "config" / "tqcli" / "keys.toml"


def keys_json(cli) -> dict:
    return cli.ok("keys", "status", "--json").json


def data_keys(cli) -> list[dict]:
    return [key for key in keys_json(cli)["keys"] if key["kind"] == "data"]


def actions(cli) -> list[str]:
    return [entry["action"] for entry in cli.ok("audit", "log", "--json").json]


def sealed_task(cli, payload: str = '{"secret": "s3cr3t"}') -> int:
    """A task whose payload is stored sealed under the key file's primary data key."""
    task_id = cli.submit("tests.jobs:noop", "--payload", payload)
    db_id = raw_sql(cli.db, "SELECT value FROM meta WHERE key = 'db_id'")[0][0]
    sealed = FieldCipher(db_id, load_key_file(key_file(cli))).seal(task_id, "payload", payload)
    raw_sql(cli.db, "UPDATE tasks SET encrypted = 1, payload = ? WHERE id = ?", (sealed, task_id))
    return task_id


def stored_payload(cli, task_id: int) -> str:
    return raw_sql(cli.db, "SELECT payload FROM tasks WHERE id = ?", (task_id,))[0][0]


def test_init_creates_a_private_key_file_in_a_new_folder_and_audits_it(cli):
    result = cli.ok("keys", "init")
    path = key_file(cli)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert str(path) in result.stderr and "keep a backup" in result.stderr and result.stdout == ""
    ring = load_key_file(path)
    assert ring.primary_data and ring.primary_audit and ring.signing_private and ring.signing_public
    (entry,) = cli.ok("audit", "log", "--json").json
    assert entry["action"] == "keys.init"
    assert entry["details"] == {
        "key_file": str(path), "data": ring.primary_data.id, "audit": ring.primary_audit.id, "signing": ring.signing_id,
    }
    status = keys_json(cli)
    assert status["key_file"] == str(path)
    assert [(key["id"], key["kind"], key["primary"], key["values"]) for key in status["keys"]] == [
        (ring.primary_data.id, "data", True, 0), (ring.primary_audit.id, "audit", True, 1), (ring.signing_id, "signing", True, None),
    ]
    assert all(set(key) >= {"id", "kind", "primary", "values"} for key in status["keys"])


def test_init_never_overwrites_a_key_file(cli):
    cli.ok("keys", "init")
    before = key_file(cli).read_bytes()
    again = cli("keys", "init")
    assert again.code == 6 and again.error_lines == [again.stderr.strip()]
    assert "exists already" in again.stderr and "keys rotate" in again.stderr
    assert key_file(cli).read_bytes() == before and actions(cli) == ["keys.init"]


@pytest.mark.parametrize(
    "args", [["status"], ["rotate"], ["retire", "data-00000000"], ["public"], ["export", "--for-worker", "w.toml"]],
)
def test_a_missing_key_file_is_exit_8_naming_the_path_and_keys_init(cli, args):
    cli.create_db()
    result = cli("keys", *args)
    assert result.code == 8 and result.error_lines == [result.stderr.strip()], result.stderr
    assert str(key_file(cli)) in result.stderr and "tqcli keys init" in result.stderr
    assert not (cli.home / "w.toml").exists()


def test_a_key_file_others_can_read_is_exit_8_with_the_chmod_to_run(cli):
    cli.ok("keys", "init")
    key_file(cli).chmod(0o644)
    result = cli("keys", "status")
    assert result.code == 8 and result.error_lines == [result.stderr.strip()]
    assert f"chmod 600 {key_file(cli)}" in result.stderr and "mode 0644" in result.stderr


def test_rotate_adds_a_primary_data_key_and_keeps_the_old_one_for_reading(cli):
    cli.ok("keys", "init")
    task_id = sealed_task(cli)
    (old,) = data_keys(cli)
    result = cli.ok("keys", "rotate")
    assert "kept for reading" in result.stderr and f"keys retire {old['id']}" in result.stderr
    keys = data_keys(cli)
    assert [(key["id"], key["primary"], key["values"]) for key in keys][0] == (old["id"], False, 1)
    assert keys[1]["primary"] and keys[1]["values"] == 0
    assert stat.S_IMODE(key_file(cli).stat().st_mode) == 0o600
    ring = load_key_file(key_file(cli))
    db_id = raw_sql(cli.db, "SELECT value FROM meta WHERE key = 'db_id'")[0][0]
    assert FieldCipher(db_id, ring).open(task_id, "payload", stored_payload(cli, task_id)) == '{"secret": "s3cr3t"}'
    entry = cli.ok("audit", "log", "--action", "keys.rotate", "--json").json[0]
    assert entry["details"]["previous"] == old["id"] and entry["details"]["primary"] == keys[1]["id"]


def test_rotate_reencrypt_then_retire_the_old_keys(cli):
    cli.ok("keys", "init")
    ids = [sealed_task(cli, f'{{"n": {n}}}') for n in range(3)]
    (first,) = data_keys(cli)
    cli.ok("keys", "rotate")
    busy = cli("keys", "retire", first["id"])
    assert busy.code == 6 and busy.error_lines == [busy.stderr.strip()]
    assert "still protects 3 stored values" in busy.stderr and "keys rotate --reencrypt" in busy.stderr
    result = cli.ok("keys", "rotate", "--reencrypt")
    newest = next(key for key in data_keys(cli) if key["primary"])
    assert f"re-encrypted 3 values of 3 tasks under {newest['id']} (1 transaction)" in result.stderr
    assert [key["values"] for key in data_keys(cli)] == [0, 0, 3] and data_keys(cli)[2] == {**newest, "values": 3}
    assert all(sealed_key_id(stored_payload(cli, task_id)) == newest["id"] for task_id in ids)
    for key in data_keys(cli)[:2]:
        cli.ok("keys", "retire", key["id"])
    (left,) = data_keys(cli)
    assert left["id"] == newest["id"] and left["values"] == 3
    ring = load_key_file(key_file(cli))
    db_id = raw_sql(cli.db, "SELECT value FROM meta WHERE key = 'db_id'")[0][0]
    assert FieldCipher(db_id, ring).open(ids[2], "payload", stored_payload(cli, ids[2])) == '{"n": 2}'
    assert actions(cli).count("keys.reencrypt") == 1 and actions(cli).count("keys.retire") == 2
    (batch,) = cli.ok("audit", "log", "--action", "keys.reencrypt", "--json").json
    assert batch["details"]["tasks"] == ids and batch["details"]["values"] == 3 and batch["details"]["key"] == newest["id"]


@pytest.mark.parametrize(
    "key_id, code, words",
    [("primary", 6, "is the primary one"), ("data-00000000", 3, "is not in key file"), ("nonsense", 2, "invalid key id 'nonsense'")],
)
def test_retire_refuses_the_primary_an_unknown_id_and_what_is_no_key_id(cli, key_id, code, words):
    cli.ok("keys", "init")
    if key_id == "primary":
        key_id = data_keys(cli)[0]["id"]
    before = key_file(cli).read_bytes()
    result = cli("keys", "retire", key_id)
    assert result.code == code and result.error_lines == [result.stderr.strip()] and words in result.stderr
    assert key_file(cli).read_bytes() == before and "keys.retire" not in actions(cli)


def test_export_for_worker_leaves_out_the_private_signing_key_and_never_overwrites(cli):
    cli.ok("keys", "init")
    target = cli.home / "worker-keys.toml"
    cli.ok("keys", "export", "--for-worker", str(target))
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    full, copy = load_key_file(key_file(cli)), load_key_file(target)
    assert copy.signing_private is None and copy.signing_public == full.signing_public
    assert copy.data == full.data and copy.audit == full.audit
    assert "private_key" not in target.read_text()
    again = cli("keys", "export", "--for-worker", str(target))
    assert again.code == 6 and "exists already" in again.stderr and again.error_lines == [again.stderr.strip()]
    worker = cli.ok("--key-file", str(target), "keys", "status", "--json").json
    assert worker["key_file"] == str(target) and [key["id"] for key in worker["keys"]] == [key["id"] for key in keys_json(cli)["keys"]]


def test_public_writes_the_signing_key_to_stdout_or_a_file(cli):
    from tqcli.security.checkpoint import read_public_key

    cli.ok("keys", "init")
    raw = load_key_file(key_file(cli)).signing_public
    shown = cli.ok("keys", "public").stdout
    assert shown.startswith("-----BEGIN PUBLIC KEY-----")
    (cli.home / "stdout.pem").write_text(shown)
    assert read_public_key(cli.home / "stdout.pem") == raw
    cli.ok("keys", "public", "--output", "signing.pub")
    assert read_public_key(cli.home / "signing.pub") == raw


def test_every_keys_command_is_admin_only(cli):
    cli.ok("keys", "init")
    user = cli.ok("audit", "log", "--json").json[0]["actor"]
    raw_sql(cli.db, "INSERT INTO roles (user_name, role, tenant) VALUES (?, 'admin', '')", (user,))
    raw_sql(cli.db, "INSERT INTO roles (user_name, role, tenant) VALUES ('bob', 'operator', '')")
    before = key_file(cli).read_bytes()
    bob = {"TQCLI_USER": "bob"}
    for args in (["status"], ["rotate"], ["rotate", "--reencrypt"], ["retire", "data-00000000"], ["public"],
                 ["export", "--for-worker", "w.toml"], ["init"]):
        result = cli("keys", *args, env=bob)
        assert result.code == 4, (args, result.stderr)
        assert "user bob may not" in result.stderr and "admin" in result.stderr and result.error_lines == [result.stderr.strip()]
    assert key_file(cli).read_bytes() == before and not (cli.home / "w.toml").exists()
    assert actions(cli).count("access.denied") == 7
    cli.ok("keys", "status")  # the real admin still may


def test_keys_status_lists_a_key_the_database_names_but_the_key_file_lacks(cli):
    cli.ok("keys", "init")
    sealed_task(cli)
    (old,) = data_keys(cli)
    cli.ok("keys", "rotate")
    path = key_file(cli)
    ring = load_key_file(path)
    from tqcli.security.keys import write_key_file

    write_key_file(ring.without_data_key(old["id"]), replace_existing=True)
    listed = {key["id"]: key for key in data_keys(cli)}
    assert listed[old["id"]] == {"id": old["id"], "kind": "data", "primary": False, "values": 1, "in_key_file": False}
    assert "missing from the key file" in cli.ok("keys", "status").stdout
    assert os.environ.get("TQCLI_KEY_FILE") is None
