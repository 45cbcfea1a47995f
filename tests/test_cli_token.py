"""`tqcli token create|list|revoke` through the real executable, on both stores."""

from __future__ import annotations

import re

import pytest

import tqcli
from tests.stores import raw_sql
from tqcli.config import login_name
from tqcli.security.tokens import Unauthenticated

ME = login_name()
TOKEN = re.compile(r"tq_[0-9]+_[A-Za-z0-9_-]{43}")


def audit_actions(cli) -> list[tuple[str, str]]:
    return [(entry["actor"], entry["action"]) for entry in cli.ok("audit", "log", "--limit", "0", "--json").json]


def test_create_prints_the_token_once_as_the_last_word_on_stdout(cli):
    result = cli.ok("token", "create", "alice", "--name", "ci deploys", "--expires", "30d")
    assert result.stdout.endswith("\n") and len(result.stdout.splitlines()) == 1
    token = result.stdout.split()[-1]
    assert TOKEN.fullmatch(token)
    assert "created token 1 (ci deploys) for alice" in result.stderr and "in 30d" in result.stderr and token not in result.stderr
    with tqcli.open(cli.db) as q:
        assert q.tokens.authenticate(token).user == "alice"
    secret = token.split("_", 2)[2]
    assert all(secret not in str(value) for row in raw_sql(cli.db, "SELECT * FROM tokens") for value in row)
    listed = cli.ok("token", "list")
    assert token not in listed.stdout and secret not in listed.stdout


def test_create_json_carries_the_token(cli):
    made = cli.ok("token", "create", "bob", "--json").json
    assert TOKEN.fullmatch(made.pop("token"))
    assert made["id"] == 1 and made["user"] == "bob" and made["expires_at"] is None


def test_list_json_has_specs_fields_and_the_table_shows_state(cli):
    cli.create_db()
    assert cli.ok("token", "list", "--json").json == []
    assert "no token" in cli.ok("token", "list").stderr
    cli.ok("token", "create", "alice", "--name", "ci")
    cli.ok("token", "create", "bob", "--expires", "1h")
    cli.ok("token", "revoke", "1")
    listed = cli.ok("token", "list", "--json").json
    assert [set(token) for token in listed] == [{"id", "user", "name", "created_at", "expires_at", "last_used_at", "revoked_at"}] * 2
    alice, bob = listed
    assert (alice["id"], alice["user"], alice["name"], alice["expires_at"], alice["last_used_at"]) == (1, "alice", "ci", None, None)
    assert alice["revoked_at"] is not None and alice["created_at"].endswith("Z")
    assert (bob["user"], bob["name"], bob["revoked_at"]) == ("bob", None, None) and bob["expires_at"] > bob["created_at"]
    table = cli.ok("token", "list").stdout.splitlines()
    assert table[0].split() == ["ID", "USER", "NAME", "CREATED", "EXPIRES", "LAST", "USED", "STATE"]
    assert table[1].split()[-1] == "revoked" and table[2].split()[-1] == "active"


def test_revoke_then_revoke_again_changes_nothing(cli):
    token = cli.ok("token", "create", "alice").stdout.split()[-1]
    assert "revoked token 1 of alice" in cli.ok("token", "revoke", "1").stderr
    entries = audit_actions(cli)
    again = cli("token", "revoke", "1")
    assert again.code == 0 and again.stderr.startswith("nothing changed") and again.stdout == ""
    assert audit_actions(cli) == entries, "nothing changed: no audit entry"
    assert [action for _, action in entries] == ["token.create", "token.revoke"]
    with tqcli.open(cli.db) as q, pytest.raises(Unauthenticated, match="unknown, expired or revoked"):
        q.tokens.authenticate(token)


@pytest.mark.parametrize("token_id", ["7", "0", "-1", "99999999999999999999"])
def test_revoking_an_unknown_token_is_exit_3(cli, token_id):
    cli.ok("token", "create", "alice")
    result = cli("token", "revoke", "--", token_id)
    assert result.code == 3, result.stderr
    assert result.error_lines == [result.stderr.strip()] and "token list" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("token", "create", "alice", "--expires", "soon"),
        ("token", "create", "alice", "--expires", "0"),
        ("token", "create", "alice", "--expires", "-1h"),
        ("token", "create", "two words"),
        ("token", "create", "alice", "--name", ""),
        ("token", "create", "alice", "--expire", "1d"),
        ("token", "revoke", "abc"),
        ("token", "list", "--jsn"),
        ("token", "delete", "1"),
    ],
    ids=["bad-duration", "zero", "negative", "bad-user", "empty-label", "typo-option", "bad-id", "typo-flag", "unknown-command"],
)
def test_usage_errors_are_exit_2_with_one_error_line_and_change_nothing(cli, args):
    cli.create_db()
    result = cli(*args)
    assert result.code == 2, result.stderr
    assert result.error_lines == [result.stderr.strip()] and result.stdout == ""
    assert raw_sql(cli.db, "SELECT count(*) FROM tokens") == [(0,)]


def test_managing_tokens_needs_admin_and_a_denial_is_audited(cli):
    cli.ok("role", "grant", ME, "admin")
    cli.ok("role", "grant", "vera", "viewer")
    cli.ok("token", "create", "vera")
    as_vera = {"TQCLI_USER": "vera"}
    for args in (("token", "create", "vera"), ("token", "list"), ("token", "revoke", "1")):
        result = cli(*args, env=as_vera)
        assert result.code == 4, (args, result.stderr)
        assert result.error_lines == [result.stderr.strip()] and "vera" in result.stderr and "admin" in result.stderr
    assert [actor for actor, action in audit_actions(cli) if action == "access.denied"] == ["vera"] * 3
    assert raw_sql(cli.db, "SELECT count(*) FROM tokens WHERE revoked_at IS NULL") == [(1,)]
