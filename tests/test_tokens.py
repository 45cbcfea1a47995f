"""API tokens in the library (`TokenService`), on both stores: hashes only, what authenticates, who may manage them, the audit."""

from __future__ import annotations

import hashlib
import json

import pytest

import tqcli
from tests.stores import raw_sql
from tqcli.config import login_name
from tqcli.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from tqcli.security.tokens import LOGIN_NAME, TokenInfo, Unauthenticated

ME = login_name()
REJECTED = "unknown, expired or revoked"


def rows(location) -> list[tuple]:
    return raw_sql(location, "SELECT id, user_name, name, hash, created_at, expires_at, last_used_at, revoked_at FROM tokens ORDER BY id")


def entries(location, action: str) -> list[tuple[str, dict]]:
    return [(actor, json.loads(details)) for actor, details in raw_sql(location, "SELECT actor, details FROM audit WHERE action = ? ORDER BY seq", (action,))]


@pytest.fixture
def roles_db(db_location):
    """A database whose global admin is the user running the tests, with a viewer and an operator."""
    with tqcli.open(db_location) as admin:
        admin.roles.grant(ME, "admin")
        admin.roles.grant("vera", "viewer")
        admin.roles.grant("otto", "operator")
    return db_location


# -- create and authenticate ---------------------------------------------------------


def test_a_created_token_authenticates_as_its_user_and_only_its_hash_is_stored(queue):
    info, text = queue.tokens.create("alice", name="ci deploys")
    assert isinstance(info, TokenInfo) and info.user == "alice" and info.name == "ci deploys" and info.expires_at is None
    assert text.startswith(f"tq_{info.id}_") and len(text.split("_", 2)[2]) >= 43, "at least 256 bits of secret"
    assert queue.tokens.authenticate(text).user == "alice"
    stored = rows(queue.location)
    assert len(stored) == 1 and stored[0][3] == hashlib.sha256(text.encode()).hexdigest()
    secret = text.split("_", 2)[2]
    for value in stored[0]:
        assert secret not in str(value) and text not in str(value)
    audit_text = json.dumps(raw_sql(queue.location, "SELECT * FROM audit"))
    assert secret not in audit_text and stored[0][3] not in audit_text, "neither the text nor its hash reaches the audit chain"


def test_two_tokens_get_different_ids_and_secrets(queue):
    first, text1 = queue.tokens.create("alice")
    second, text2 = queue.tokens.create("alice")
    assert second.id == first.id + 1 and text1.split("_", 2)[2] != text2.split("_", 2)[2]
    assert queue.tokens.authenticate(text2).id == second.id


@pytest.mark.parametrize(
    "presented",
    ["", "tq_", "tq_1", "tq_1_", "bearer", "tq_0_" + "a" * 43, "tq_x_" + "a" * 43, "tq_1_short", "tq_1_" + "a" * 43 + "!", None, 42],
)
def test_a_malformed_token_is_unauthenticated(queue, presented):
    queue.tokens.create("alice")
    with pytest.raises(Unauthenticated, match=REJECTED) as caught:
        queue.tokens.authenticate(presented)
    assert caught.value.exit_code == 4


def test_an_unknown_id_and_a_wrong_secret_are_refused_alike(queue):
    info, text = queue.tokens.create("alice")
    wrong_secret = text[:-4] + ("AAAA" if not text.endswith("AAAA") else "BBBB")
    unknown_id = text.replace(f"tq_{info.id}_", f"tq_{info.id + 7}_", 1)
    messages = set()
    for presented in (wrong_secret, unknown_id):
        with pytest.raises(Unauthenticated) as caught:
            queue.tokens.authenticate(presented)
        messages.add(caught.value.message)
    assert len(messages) == 1 and REJECTED in messages.pop(), "nothing tells which part was wrong"


def test_an_expired_token_is_refused_from_its_expiry_on(queue, clock):
    info, text = queue.tokens.create("alice", expires=3600)
    assert info.expires_at == info.created_at + 3600 * 1_000_000
    clock.advance(3599)
    assert queue.tokens.authenticate(text).id == info.id
    clock.advance(1)
    with pytest.raises(Unauthenticated, match=REJECTED):
        queue.tokens.authenticate(text)


def test_a_revoked_token_is_refused_and_revoking_again_changes_nothing(queue):
    info, text = queue.tokens.create("alice", name="laptop")
    revoked, changed = queue.tokens.revoke(info.id)
    assert changed and revoked.revoked_at is not None
    with pytest.raises(Unauthenticated, match=REJECTED):
        queue.tokens.authenticate(text)
    before = raw_sql(queue.location, "SELECT count(*) FROM audit")[0][0]
    again, changed = queue.tokens.revoke(info.id)
    assert not changed and again.revoked_at == revoked.revoked_at
    assert raw_sql(queue.location, "SELECT count(*) FROM audit")[0][0] == before, "nothing changed: no audit entry"


def test_revoking_an_unknown_token_is_not_found(queue):
    with pytest.raises(NotFound, match="token list"):
        queue.tokens.revoke(99)


@pytest.mark.parametrize("expires", [0, -5, float("nan"), 1e12, "1h", True])
def test_a_bad_lifetime_is_invalid_input(queue, expires):
    with pytest.raises(InvalidInput):
        queue.tokens.create("alice", expires=expires)
    assert rows(queue.location) == []


@pytest.mark.parametrize("user", ["", "two words", "tab\tuser", "x" * 257])
def test_a_user_role_grant_would_refuse_is_refused(queue, user):
    with pytest.raises(InvalidInput, match="invalid user"):
        queue.tokens.create(user)
    with pytest.raises(InvalidInput, match="invalid user"):
        queue.roles.grant(user, "viewer")


@pytest.mark.parametrize("name", ["", "   ", "new\nline", "x" * 201])
def test_a_bad_label_is_refused(queue, name):
    with pytest.raises(InvalidInput, match="--name"):
        queue.tokens.create("alice", name=name)


# -- last use --------------------------------------------------------------------------


def test_last_use_is_recorded_at_most_once_a_minute(queue, clock):
    info, text = queue.tokens.create("alice")
    first = queue.tokens.authenticate(text).last_used_at
    assert first == clock.now()
    clock.advance(59)
    assert queue.tokens.authenticate(text).last_used_at == first
    assert rows(queue.location)[0][6] == first, "not written again within the minute"
    clock.advance(1)
    assert queue.tokens.authenticate(text).last_used_at == first + 60_000_000
    assert rows(queue.location)[0][6] == first + 60_000_000


def test_authenticating_writes_nothing_but_the_last_use(queue, clock):
    _, text = queue.tokens.create("alice")
    queue.tokens.authenticate(text)
    audit = raw_sql(queue.location, "SELECT count(*) FROM audit")[0][0]
    clock.advance(120)
    queue.tokens.authenticate(text)
    assert raw_sql(queue.location, "SELECT count(*) FROM audit")[0][0] == audit


# -- the login token of serve ------------------------------------------------------------


def test_the_login_token_is_the_actors_named_serve_login_extended_and_ended(queue, clock):
    login, text = queue.tokens.create_login(lifetime=3600)
    assert (login.user, login.name) == (queue.actor, LOGIN_NAME)
    assert login.expires_at == clock.now() + 3600 * 1_000_000
    clock.advance(3000)
    queue.tokens.extend(login.id, lifetime=3600)
    clock.advance(3000)  # past the first expiry, within the extended one
    assert queue.tokens.authenticate(text).user == queue.actor
    assert [t.id for t in queue.tokens.list()] == [login.id], "listed"
    assert queue.tokens.end_login(login.id) is True
    assert queue.tokens.end_login(login.id) is False
    with pytest.raises(Unauthenticated):
        queue.tokens.authenticate(text)
    assert [details["id"] for _, details in entries(queue.location, "token.revoke")] == [login.id]


def test_an_expired_or_revoked_token_cannot_be_extended(queue, clock):
    login, _ = queue.tokens.create_login(lifetime=60)
    clock.advance(61)
    with pytest.raises(Conflict, match="expired"):
        queue.tokens.extend(login.id, lifetime=60)
    other, _ = queue.tokens.create("alice")
    queue.tokens.revoke(other.id)
    with pytest.raises(Conflict, match="revoked"):
        queue.tokens.extend(other.id, lifetime=60)
    with pytest.raises(NotFound):
        queue.tokens.extend(99, lifetime=60)


# -- who may --------------------------------------------------------------------------------


def test_an_open_database_lets_anyone_manage_tokens(db_location):
    with tqcli.open(db_location, actor="nobody") as anyone:
        info, _ = anyone.tokens.create("alice")
        assert [t.id for t in anyone.tokens.list()] == [info.id]
        assert anyone.tokens.revoke(info.id)[1]


def test_a_viewer_may_not_create_list_or_revoke_and_each_denial_is_audited(roles_db):
    with tqcli.open(roles_db) as admin:
        info, text = admin.tokens.create("vera")
    with tqcli.open(roles_db, actor="vera") as viewer:
        calls = [lambda: viewer.tokens.create("vera"), viewer.tokens.list, lambda: viewer.tokens.revoke(info.id),
                 lambda: viewer.tokens.revoke(999), lambda: viewer.tokens.create_login(lifetime=60)]
        for call in calls:
            with pytest.raises(PermissionDenied) as caught:
                call()
            assert caught.value.exit_code == 4 and "vera" in caught.value.message
        assert viewer.tokens.authenticate(text).user == "vera", "authenticating needs no role"
    denied = entries(roles_db, "access.denied")
    assert [actor for actor, _ in denied] == ["vera"] * 5
    assert [details["action"] for _, details in denied] == [
        "create a token for vera", "list tokens", f"revoke token {info.id}", "revoke token 999", "serve",
    ]
    assert len(rows(roles_db)) == 1, "nothing was created"
    with tqcli.open(roles_db) as admin:
        assert admin.tokens.list()[0].revoked_at is None, "nor revoked"


def test_the_login_token_needs_operate_and_one_may_extend_and_end_only_ones_own(roles_db):
    with tqcli.open(roles_db, actor="otto") as operator:
        login, text = operator.tokens.create_login(lifetime=60)
        assert operator.tokens.authenticate(text).user == "otto"
        operator.tokens.extend(login.id, lifetime=120)
        with pytest.raises(PermissionDenied):
            operator.tokens.create("otto")
        with tqcli.open(roles_db) as admin:
            others, _ = admin.tokens.create("alice")
        with pytest.raises(PermissionDenied):
            operator.tokens.extend(others.id, lifetime=60)
        with pytest.raises(PermissionDenied):
            operator.tokens.end_login(others.id)
        assert operator.tokens.end_login(login.id)


# -- the audit ------------------------------------------------------------------------------------


def test_create_and_revoke_are_audited_without_the_secret_and_the_chain_verifies(queue):
    info, text = queue.tokens.create("alice", expires=86400, name="ci")
    login, login_text = queue.tokens.create_login(lifetime=600)
    queue.tokens.revoke(info.id)
    created = entries(queue.location, "token.create")
    assert created == [
        (queue.actor, {"id": info.id, "user": "alice", "name": "ci", "expires_at": info.to_json()["expires_at"]}),
        (queue.actor, {"id": login.id, "user": queue.actor, "name": LOGIN_NAME, "expires_at": login.to_json()["expires_at"]}),
    ]
    assert entries(queue.location, "token.revoke") == [(queue.actor, {"id": info.id, "user": "alice", "name": "ci"})]
    assert queue.audit.verify().intact
    assert [entry.action for entry in queue.audit.entries(action="token.create")] == ["token.create"] * 2


def test_to_json_has_the_fields_of_token_list(queue, clock):
    info, text = queue.tokens.create("alice", expires=60)
    queue.tokens.authenticate(text)
    (listed,) = queue.tokens.list()
    assert listed.to_json() == {
        "id": info.id, "user": "alice", "name": None,
        "created_at": "2026-05-28T20:26:40Z", "expires_at": "2026-05-28T20:27:40Z",
        "last_used_at": "2026-05-28T20:26:40Z", "revoked_at": None,
    }


def test_tokens_created_at_once_on_several_connections_get_distinct_ids(db_location):
    """Ids are max + 1 under the write lock (an advisory lock on PostgreSQL): no two creators get the same one."""
    import threading

    tqcli.open(db_location).close()
    made: list[int] = []
    errors: list[BaseException] = []

    def create_some() -> None:
        try:
            with tqcli.open(db_location) as q:
                for _ in range(10):
                    made.append(q.tokens.create("alice")[0].id)
        except BaseException as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=create_some) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and sorted(made) == list(range(1, 41))
