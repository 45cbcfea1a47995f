"""Audit commands on a real file, tampered with the sqlite3 shell as an attacker would."""

import json
import re

import pytest


from tests.conftest import sql_shell
from tests.stores import table_dump
from tqcli.security.checkpoint import write_public_key
from tqcli.security.keys import new_key_ring, write_key_file


@pytest.fixture
def history(cli):
    for n in range(6):
        cli.submit("app.jobs:run", "--payload", json.dumps({"n": n}))
    cli.ok("cancel", "3")
    return cli


def test_verify_reports_count_and_head(history):
    out = history.ok("audit", "verify").stdout
    assert out.startswith("audit chain intact: 7 entries, head 7 ")
    report = history.ok("audit", "verify", "--json").json
    assert report["intact"] and report["entries"] == 7 and len(report["head_hash"]) == 64


@pytest.mark.parametrize(
    "sql, words",
    [
        ("UPDATE audit SET actor = 'mallory' WHERE seq = 4;", "entry 4 was changed"),
        ("UPDATE audit SET ts = '2020-01-01T00:00:00.000000Z' WHERE seq = 2;", "entry 2 was changed"),
        ("DELETE FROM audit WHERE seq = 5;", "entry 5 was removed"),
        ("UPDATE audit SET seq = 100 WHERE seq = 2; UPDATE audit SET seq = 2 WHERE seq = 3; UPDATE audit SET seq = 3 WHERE seq = 100;", "entries 2 and 3 were reordered"),
    ],
)
def test_tampering_with_a_sql_shell_is_detected(history, sql, words):
    sql_shell(history.db, sql)
    result = history("audit", "verify")
    assert result.code == 1
    assert result.error_lines == [f"error: audit chain broken: {result.error_lines[0].split(': ', 2)[2]}"]
    assert words in result.stderr
    report = history("audit", "verify", "--json")
    assert report.code == 1 and not report.json["intact"]


def test_deleting_the_tail_is_caught_by_a_checkpoint(history, tmp_path):
    checkpoint = tmp_path / "head.json"
    history.ok("audit", "checkpoint", "--output", str(checkpoint))
    saved = json.loads(checkpoint.read_text())
    assert saved["seq"] == 7 and saved["format"] == "tqcli-audit-checkpoint/1"
    assert history.ok("audit", "verify", "--checkpoint", str(checkpoint)).stdout.endswith("matches checkpoint at entry 7 (unsigned)\n")
    (entry,) = history.ok("audit", "log", "--action", "audit.checkpoint", "--json").json
    assert entry["seq"] == 8 and entry["details"] == {"seq": 7, "hash": saved["hash"], "signed": False}
    sql_shell(history.db, "DELETE FROM audit WHERE seq >= 6;")
    assert history("audit", "verify").code == 0  # a shorter chain is self-consistent...
    result = history("audit", "verify", "--checkpoint", str(checkpoint))
    assert result.code == 1 and "the log ends at entry 5 but the checkpoint names entry 7" in result.stderr


@pytest.mark.sqlite_only  # restores a copy of the file
def test_a_restored_older_copy_is_caught_by_a_checkpoint(history, tmp_path):
    backup = tmp_path / "backup.db"
    sql_shell(history.db, f".backup '{backup}'")
    history.submit("app.jobs:run")
    checkpoint = tmp_path / "head.json"
    history.ok("audit", "checkpoint", "--output", str(checkpoint))
    backup.replace(history.db)
    result = history("audit", "verify", "--checkpoint", str(checkpoint))
    assert result.code == 1 and "older copy of the database was restored" in result.stderr


def test_checkpoint_to_stdout(history):
    data = history.ok("audit", "checkpoint").json
    assert data["seq"] == 7 and data["signature"] is None and data["key_id"] is None
    assert history.ok("audit", "verify", "--json").json["head_seq"] == 8  # the audit.checkpoint entry


def test_bad_checkpoint_files_are_invalid_input(history, tmp_path):
    missing = history("audit", "verify", "--checkpoint", str(tmp_path / "nope.json"))
    assert missing.code == 2 and "cannot read checkpoint file" in missing.stderr
    junk = tmp_path / "junk.json"
    junk.write_text('{"seq": 1}')
    result = history("audit", "verify", "--checkpoint", str(junk))
    assert result.code == 2 and "not valid" in result.stderr


def test_audit_log_filters_and_json_shape(history):
    entries = history.ok("audit", "log", "--json").json
    assert [e["seq"] for e in entries] == list(range(1, 8))
    assert set(entries[0]) >= {"seq", "ts", "actor", "action", "task_id", "tenant", "details", "prev_hash", "hash"}
    assert [e["action"] for e in history.ok("audit", "log", "--action", "task.cancel", "--json").json] == ["task.cancel"]
    assert [e["seq"] for e in history.ok("audit", "log", "--limit", "2", "--json").json] == [6, 7]
    assert len(history.ok("audit", "log", "--limit", "0", "--json").json) == 7
    assert [e["task_id"] for e in history.ok("audit", "log", "--task", "3", "--json").json] == [3, 3]
    assert history.ok("audit", "log", "--since", "2999-01-01T00:00:00Z", "--json").json == []
    text = history.ok("audit", "log").stdout
    assert "task.cancel" in text and "\x1b[" not in text


def test_audit_log_bad_input(history):
    result = history("audit", "log", "--since", "last week")
    assert result.code == 2 and "invalid time 'last week'" in result.stderr
    assert history("audit", "log", "--limit", "-1").code == 2


def emitted_actions():
    """Every action name the code passes to journal.add / add_text, or as `action=` to a helper that does."""
    import ast

    from tests.conftest import REPO

    found = {}
    for path in sorted((REPO / "tqcli").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            function = node.func
            if isinstance(function, ast.Attribute) and function.attr in ("add", "add_text") and isinstance(function.value, ast.Name) and function.value.id.endswith("journal"):
                names = node.args[:1]  # an `action=` keyword here is a detail (access.denied names what was denied)
            elif (isinstance(function, ast.Attribute) and function.attr == "append" and isinstance(function.value, ast.Name)
                  and function.value.id == "entries" and node.args and isinstance(node.args[0], ast.Tuple)):
                names = node.args[0].elts[:1]  # a bulk change's entries, joined to its journal at once (Journal.add_texts)
            else:
                names = [keyword.value for keyword in node.keywords if keyword.arg == "action"]
            for expression in names:
                for constant in ast.walk(expression):
                    if isinstance(constant, ast.Constant) and isinstance(constant.value, str):
                        found.setdefault(constant.value, f"{path.relative_to(REPO)}:{constant.lineno}")
    return found


def test_every_action_the_code_emits_is_a_known_action():
    from tqcli.security.audit_log import KNOWN_ACTIONS

    found = emitted_actions()
    assert {"task.submit", "task.fail", "task.lost", "schedule.fire", "schedule.pause", "schedule.resume", "breaker.set"} <= set(found)
    missing = {name: where for name, where in found.items() if name not in KNOWN_ACTIONS}
    assert not missing, f"add these to KNOWN_ACTIONS in tqcli/security/audit_log.py: {missing}"
    fixed = {"task.submit", "task.claim", "task.complete", "task.fail", "task.cancel", "task.bump", "task.lost", "task.stale",
             "dlq.replay", "dlq.purge", "dag.submit", "schedule.fire", "role.grant", "access.denied"}  # SPEC "Audit"
    assert fixed <= KNOWN_ACTIONS
    assert all(re.fullmatch(r"[a-z_]+(\.[a-z_]+)+", name) for name in KNOWN_ACTIONS)


def test_audit_log_of_an_unknown_action_is_exit_2_listing_the_known_ones(history):
    result = history("audit", "log", "--action", "nosuch")
    assert result.code == 2 and result.stdout == "" and len(result.error_lines) == 1
    assert "unknown action 'nosuch'" in result.stderr and "task.submit, " in result.stderr and "schedule.fire" in result.stderr
    typo = history("audit", "log", "--action", "task.cancle")
    assert typo.code == 2 and "did you mean task.cancel?" in typo.stderr
    assert history.ok("audit", "log", "--action", "dlq.purge", "--json").json == []  # known, none yet


def test_audit_log_accepts_an_action_the_database_holds_though_this_tqcli_does_not_know_it(history):
    import tqcli

    with tqcli.open(history.db) as queue, queue._ctx.change() as (tx, journal):
        journal.add("plugin.custom", None, None, note="written by a newer tqcli, say")
    (entry,) = history.ok("audit", "log", "--action", "plugin.custom", "--json").json
    assert entry["details"] == {"note": "written by a newer tqcli, say"}


@pytest.mark.parametrize(
    "args, words",
    [
        (["--actor", ""], "invalid actor ''"),
        (["--actor", " alice"], "invalid actor ' alice'"),
        (["--since", ""], "invalid time ''"),
        (["--since", "yesterday"], "invalid time 'yesterday': use ISO 8601"),
        (["--since", "1960-01-01"], "between 1970 and the year 9999"),
        (["--limit", "-1"], "invalid limit -1: use 0 (every entry) or a positive number"),
        (["--limit", "ten"], "Invalid value for '--limit': 'ten' is not a valid int"),
        (["--task", "0"], "invalid task id 0"),
    ],
)
def test_audit_log_bad_filters_are_exit_2_saying_what_is_wrong(history, args, words):
    result = history("audit", "log", *args)
    assert result.code == 2 and result.stdout == "" and len(result.error_lines) == 1 and words in result.stderr, result.stderr


# -- a keyed chain and signed checkpoints (tests/test_audit_keyed.py has the library's cases) --


@pytest.fixture
def ring(tmp_path):
    """A key file made as `tqcli keys init` makes one (mode 0600)."""
    made = new_key_ring(tmp_path / "keys" / "keys.toml")
    write_key_file(made)
    return made


def other_ring(tmp_path, name="other.toml"):
    made = new_key_ring(tmp_path / "keys" / name)
    write_key_file(made)
    return made


@pytest.fixture
def kcli(cli, ring):
    """The CLI with a keyed history of 6 entries, and how to run it with (`k`) and without the key file."""
    for n in range(5):
        cli.ok("--key-file", str(ring.path), "submit", "app.jobs:run", "--payload", json.dumps({"n": n}))
    cli.ok("--key-file", str(ring.path), "cancel", "3")
    cli.k = lambda *args, **kw: cli("--key-file", str(ring.path), *args, **kw)
    return cli


def test_cli_verify_of_a_keyed_chain(kcli, ring):
    result = kcli.k("audit", "verify")
    assert result.code == 0 and result.stdout.startswith("audit chain intact: 6 entries, head 6 ")
    missing = kcli("audit", "verify")
    assert missing.code == 8 and missing.error_lines == [missing.stderr.strip()] and ring.primary_audit.id in missing.stderr
    assert "Traceback" not in missing.stderr
    assert "Traceback" in kcli("audit", "verify", env={"TQCLI_DEBUG": "1"}).stderr


@pytest.mark.parametrize("sql, words", [
    ("UPDATE audit SET actor = 'mallory' WHERE seq = 4;", "entry 4 was changed"),
    ("UPDATE audit SET key_id = NULL WHERE seq = 5;", "entry 5 was changed"),
])
def test_cli_tampering_with_a_keyed_chain_is_exit_1_naming_the_entry(kcli, sql, words):
    sql_shell(kcli.db, sql)
    result = kcli.k("audit", "verify")
    assert result.code == 1 and words in result.stderr and len(result.error_lines) == 1
    assert kcli.k("audit", "verify", "--json").json["bad_seq"] == int(words.split()[1])


def test_cli_a_change_without_the_key_is_exit_8_and_changes_nothing(kcli):
    before = table_dump(kcli.db)
    for args in (["submit", "app.jobs:run"], ["cancel", "2"], ["audit", "checkpoint"]):
        result = kcli(*args)
        assert result.code == 8, (args, result.stderr)
        assert len(result.error_lines) == 1 and "the audit chain is keyed" in result.stderr and "--key-file" in result.stderr
    assert table_dump(kcli.db) == before


def test_cli_signed_checkpoint_and_public_key(kcli, ring, tmp_path):
    head = tmp_path / "head.json"
    done = kcli.k("audit", "checkpoint", "--output", str(head))
    assert f"signed by {ring.signing_id}" in done.stderr
    saved = json.loads(head.read_text())
    assert saved["seq"] == 6 and saved["key_id"] == ring.signing_id and saved["signature"]
    assert kcli.k("audit", "log", "--action", "audit.checkpoint", "--json").json[0]["details"]["signed"] is True
    ok = kcli.k("audit", "verify", "--checkpoint", str(head))
    assert ok.stdout.endswith(f"matches checkpoint at entry 6, signed by {ring.signing_id}\n")
    public = tmp_path / "signing.pub"
    write_public_key(public, ring.signing_public)
    assert kcli.k("audit", "verify", "--checkpoint", str(head), "--public-key", str(public), "--json").json["checkpoint_signed_by"] == ring.signing_id
    stranger = tmp_path / "stranger.pub"
    write_public_key(stranger, other_ring(tmp_path).signing_public)
    forged = kcli.k("audit", "verify", "--checkpoint", str(head), "--public-key", str(stranger))
    assert forged.code == 1 and "signature does not verify" in forged.stderr
    assert kcli.k("audit", "verify", "--checkpoint", str(head), "--public-key", str(stranger), "--json").json["kind"] == "forged checkpoint"
    saved["seq"] = 5
    head.write_text(json.dumps(saved))
    edited_file = kcli.k("audit", "verify", "--checkpoint", str(head))  # A10
    assert edited_file.code == 1 and "edited or signed by another key" in edited_file.stderr
    junk = tmp_path / "junk.pub"
    junk.write_text("not a key\n")
    assert kcli.k("audit", "verify", "--checkpoint", str(head), "--public-key", str(junk)).code == 2
    assert kcli.k("audit", "verify", "--public-key", str(public)).code == 2  # nothing to check it against


def test_cli_a_signed_checkpoint_without_any_public_key_is_exit_8(kcli, ring, tmp_path):
    head = tmp_path / "head.json"
    kcli.k("audit", "checkpoint", "--output", str(head))
    audit_only = ring.replaced(path=tmp_path / "keys" / "audit-only.toml", signing_id=None, signing_private=None, signing_public=None)
    write_key_file(audit_only)
    result = kcli("--key-file", str(audit_only.path), "audit", "verify", "--checkpoint", str(head))
    assert result.code == 8 and "--public-key" in result.stderr


def test_cli_truncation_against_a_signed_checkpoint(kcli, tmp_path):  # A7
    head = tmp_path / "head.json"
    kcli.k("audit", "checkpoint", "--output", str(head))
    sql_shell(kcli.db, "DELETE FROM audit WHERE seq >= 5;")
    assert kcli.k("audit", "verify").code == 0
    result = kcli.k("audit", "verify", "--checkpoint", str(head))
    assert result.code == 1 and "the log ends at entry 4 but the checkpoint names entry 6" in result.stderr


@pytest.mark.sqlite_only  # restores a copy of the file
def test_cli_an_older_copy_restored_is_caught_by_a_signed_checkpoint(kcli, tmp_path):  # A8
    backup = tmp_path / "backup.db"
    sql_shell(kcli.db, f".backup '{backup}'")
    kcli.k("submit", "app.jobs:run")
    head = tmp_path / "head.json"
    kcli.k("audit", "checkpoint", "--output", str(head))
    backup.replace(kcli.db)
    assert kcli.k("audit", "verify").code == 0
    result = kcli.k("audit", "verify", "--checkpoint", str(head))
    assert result.code == 1 and "older copy of the database was restored" in result.stderr
    kcli.k("submit", "app.jobs:run")  # the restored copy goes on, past the checkpoint's seq
    kcli.k("submit", "app.jobs:run")
    rewritten = kcli.k("audit", "verify", "--checkpoint", str(head), "--json")
    assert rewritten.code == 1 and rewritten.json["kind"] == "rewritten"
