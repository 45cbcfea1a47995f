"""Access control in the library: SPEC's permission table row by row, on both stores.

Every operation goes through `Context.authorize`, whichever client asks;
these tests ask through the Python API (`tqcli.open(db, actor=USER)`, which
the test's own user may do once it is a global admin). A denial raises
PermissionDenied (exit 4), leaves the change undone and appends one
`access.denied` entry of its own.
"""

from __future__ import annotations

from typing import Any, Callable

import pytest

import tqcli
from tests.stores import raw_sql
from tqcli.config import login_name
from tqcli.core.spec import TaskSpec
from tqcli.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from tqcli.security.rbac import ROLES, PERMISSIONS, Access
from tqcli.tenancy.declarative import load_settings

ME = login_name()


def grant(queue: tqcli.Queue, user: str, role: str, tenant: str | None = None) -> None:
    assert queue.roles.grant(user, role, tenant=tenant)


@pytest.fixture
def db(db_location):
    """A database whose global admin is the user running the tests, with one user per role."""
    with tqcli.open(db_location) as admin:
        grant(admin, ME, "admin")
        for role in ROLES:
            grant(admin, f"{role}-user", role)
    return db_location


def as_user(db, user: str) -> tqcli.Queue:
    return tqcli.open(db, actor=user)


def denied_entries(db) -> list[tuple[Any, ...]]:
    return raw_sql(db, "SELECT actor, details FROM audit WHERE action = 'access.denied' ORDER BY seq")


# -- the rules, as data ------------------------------------------------------


def test_the_table_is_specs():
    holders = {permission: sorted(roles) for permission, roles in PERMISSIONS.items()}
    assert holders == {
        "read": sorted(ROLES),
        "submit": ["admin", "operator", "submitter"],
        "change_task": ["admin", "operator"],
        "operate": ["admin", "operator"],
        "audit": ["admin", "auditor"],
        "admin": ["admin"],
        "decrypt": ["admin", "operator"],
    }


def test_a_submitter_may_change_and_see_its_own_tasks_only():
    access = Access("sam", [("submitter", "")], open=False)
    assert access.allows("change_task", tenant="t", owner="sam")
    assert access.allows("decrypt", tenant="t", owner="sam")
    assert not access.allows("change_task", tenant="t", owner="bob")
    assert not access.allows("operate", tenant="t", owner="sam")


def test_a_tenant_grant_covers_that_tenant_only():
    access = Access("olga", [("operator", "acme")], open=False)
    assert access.allows("operate", tenant="acme")
    assert not access.allows("operate", tenant="beta")
    assert not access.allows("operate", tenant=None)  # shared objects (breakers, schedules) need a global grant
    assert access.tenants("operate") == {"acme"}
    assert Access("root", [("operator", "")], open=False).tenants("operate") is None
    assert Access("anyone", [], open=True).allows("admin")


# -- every row of the table, through the library ---------------------------

def _failed_task(admin: tqcli.Queue) -> int:
    task_id = admin.submit("tests.jobs:boom", max_retries=0)
    admin.run_now(task_id)
    return task_id


# Each operation gets a fresh admin handle to set up what it needs, and the handle of the user to judge.
Operation = Callable[[tqcli.Queue, tqcli.Queue], Any]
OPERATIONS: dict[str, list[tuple[str, Operation]]] = {
    "read": [
        ("status", lambda admin, user: user.status()),
        ("status ID", lambda admin, user: user.get(admin.submit("tests.jobs:noop"))),
        ("wait", lambda admin, user: user.wait_all([_failed_task(admin)], timeout=5)),
        ("workers", lambda admin, user: user.workers()),
        ("dlq list", lambda admin, user: user.dlq.list()),
        ("dag list", lambda admin, user: user.dags.list()),
        ("schedule list", lambda admin, user: user.schedules.list()),
        ("breaker list", lambda admin, user: user.breakers.list()),
        ("queue list", lambda admin, user: user.tenancy.queues()),
        ("tenant list", lambda admin, user: user.tenancy.tenants()),
    ],
    "submit": [
        ("submit", lambda admin, user: user.submit("tests.jobs:noop")),
        ("restart", lambda admin, user: user.restart(_failed_task(admin))),
        ("run", lambda admin, user: user.run_now(spec=TaskSpec(target="tests.jobs:noop"))),
    ],
    "change_task": [
        ("cancel", lambda admin, user: user.cancel(admin.submit("tests.jobs:noop"))),
        ("bump", lambda admin, user: user.bump(admin.submit("tests.jobs:noop"), by=1)),
        ("edit", lambda admin, user: user.edit(admin.submit("tests.jobs:noop"), priority=5)),
    ],
    "operate": [
        ("worker", lambda admin, user: user.drain()),
        ("prune", lambda admin, user: user.prune(older_than=0)),
        ("dlq replay", lambda admin, user: user.dlq.replay([_failed_task(admin)])),
        ("dlq purge", lambda admin, user: user.dlq.purge([_failed_task(admin)], confirmed=True)),
        ("breaker set", lambda admin, user: user.breakers.configure("svc", failure_threshold=7)),
        ("schedule add", lambda admin, user: user.schedules.add(f"s-{id(user)}", cron="@daily", options={"target": "tests.jobs:noop"})),
        ("queue set", lambda admin, user: user.tenancy.set_queue("etl", max_length=50)),
        ("tenant set", lambda admin, user: user.tenancy.set_tenant("acme", weight=2)),
    ],
    "audit": [
        ("audit log", lambda admin, user: user.audit.entries()),
        ("audit verify", lambda admin, user: user.audit.verify()),
        ("export", lambda admin, user: user.settings.export()),
        ("role list", lambda admin, user: user.roles.list()),
    ],
    "admin": [
        ("role grant", lambda admin, user: user.roles.grant("newcomer", "viewer")),
        ("apply", lambda admin, user: user.settings.apply(load_settings('[queues.q]\nmax_length = 9\n', "settings.toml"))),
    ],
}
CASES = [(permission, name, op) for permission, ops in OPERATIONS.items() for name, op in ops]


@pytest.mark.parametrize("role", ROLES)
def test_every_row_of_the_permission_table(db, role):
    """Each role may do exactly what SPEC's table gives it; every other operation is exit 4 and audited."""
    user = f"{role}-user"
    outcomes = {}
    with tqcli.open(db) as admin, as_user(db, user) as queue:
        for permission, name, op in CASES:
            before = len(denied_entries(db))
            try:
                op(admin, queue)
            except PermissionDenied as denial:
                outcomes[name] = False
                assert user in denial.message and "may not" in denial.message
                assert len(denied_entries(db)) == before + 1, f"{name}: the denial was not audited"
            else:
                outcomes[name] = True
    expected = {name: role in PERMISSIONS[permission] for permission, name, _ in CASES}
    assert outcomes == expected


def test_a_denied_change_changes_nothing_and_is_audited_as_the_acting_user(db):
    with tqcli.open(db) as admin:
        task_id = admin.submit("tests.jobs:noop")
    with as_user(db, "viewer-user") as viewer:
        with pytest.raises(PermissionDenied, match=r"user viewer-user may not cancel task \d+: it needs the admin or operator role"):
            viewer.cancel(task_id)
    assert raw_sql(db, "SELECT state FROM tasks WHERE id = ?", (task_id,)) == [("pending",)]
    actor, details = denied_entries(db)[-1]
    assert actor == "viewer-user" and f"cancel task {task_id}" in details


def test_a_submitter_cancels_its_own_tasks_but_not_others(db):
    with tqcli.open(db) as admin, as_user(db, "submitter-user") as sam:
        theirs = admin.submit("tests.jobs:noop")
        own = sam.submit("tests.jobs:noop")
        assert sam.cancel(own) == [own]
        assert sam.bump(sam.submit("tests.jobs:noop"), by=2) == (0, 2)
        with pytest.raises(PermissionDenied, match="or submitter for their own tasks"):
            sam.cancel(theirs)


# -- grants ------------------------------------------------------------------


def test_the_first_grant_must_make_a_global_admin(db_location):
    with tqcli.open(db_location) as queue:
        assert queue.status().access_open
        with pytest.raises(InvalidInput, match="the first grant must make a global admin"):
            queue.roles.grant("bob", "viewer")
        with pytest.raises(InvalidInput, match="the first grant must make a global admin"):
            queue.roles.grant(ME, "admin", tenant="acme")
        assert queue.roles.list() == []
        assert queue.roles.grant(ME, "admin")
        assert not queue.status().access_open


def test_granting_twice_or_revoking_what_is_not_held_changes_nothing(db):
    count = raw_sql(db, "SELECT count(*) FROM audit")[0][0]
    with tqcli.open(db) as admin:
        assert not admin.roles.grant("viewer-user", "viewer")
        assert not admin.roles.revoke("viewer-user", "operator")
    assert raw_sql(db, "SELECT count(*) FROM audit")[0][0] == count


def test_the_last_global_admin_cannot_be_revoked(db):
    with tqcli.open(db) as admin:
        assert admin.roles.revoke("admin-user", "admin")
        with pytest.raises(Conflict, match=f"{ME} is the last global admin"):
            admin.roles.revoke(ME, "admin")
        admin.roles.grant("second", "admin")
        assert admin.roles.revoke("second", "admin")
        assert admin.roles.grant("second", "admin", tenant="acme")  # a tenant admin is no global admin
        with pytest.raises(Conflict):
            admin.roles.revoke(ME, "admin")


def test_bad_grants_are_invalid_input(db):
    with tqcli.open(db) as admin:
        for user, role, tenant in (("", "viewer", None), ("a b", "viewer", None), ("bob", "superuser", None), ("bob", "viewer", "no spaces")):
            with pytest.raises(InvalidInput):
                admin.roles.grant(user, role, tenant=tenant)


def test_apply_refuses_to_leave_grants_without_a_global_admin(db):
    text = f'[[roles]]\nuser = "{ME}"\nrole = "admin"\ntenant = "acme"\n[[roles]]\nuser = "viewer-user"\nrole = "viewer"\n'
    with tqcli.open(db) as admin:
        with pytest.raises(InvalidInput, match="no global admin"):
            admin.settings.apply(load_settings(text, "roles.toml"), prune=True)
        assert (ME, "admin", None) in [(g.user, g.role, g.tenant) for g in admin.roles.list()]
        kept = text.replace('tenant = "acme"\n', "")
        report = admin.settings.apply(load_settings(kept, "roles.toml"), prune=True)
        assert {g["user"] for g in report.diff["roles"]["removed"]} == {f"{role}-user" for role in ROLES if role != "viewer"}
        assert admin.settings.export()["roles"] == [{"user": ME, "role": "admin"}, {"user": "viewer-user", "role": "viewer"}]


# -- tenant-scoped grants ------------------------------------------------------


def test_a_tenant_scoped_reader_sees_only_its_tenants(db):
    with tqcli.open(db) as admin:
        grant(admin, "acme-viewer", "viewer", "acme")
        ours = admin.submit("tests.jobs:noop", tenant="acme")
        theirs = admin.submit("tests.jobs:noop", tenant="beta")
    with as_user(db, "acme-viewer") as viewer:
        summary = viewer.status()
        assert [task.id for task in summary.tasks] == [ours]
        assert summary.counts["pending"] == 1
        assert viewer.get(ours).tenant == "acme"
        with pytest.raises(PermissionDenied, match=f"may not read task {theirs}"):
            viewer.get(theirs)
        with pytest.raises(PermissionDenied):
            viewer.status(tenant="beta")
        with pytest.raises(PermissionDenied):
            viewer.audit.verify()  # the whole chain: global auditors and admins only


def test_a_tenant_scoped_operator_works_only_its_tenant(db):
    with tqcli.open(db) as admin:
        grant(admin, "acme-op", "operator", "acme")
        ours = admin.submit("tests.jobs:noop", tenant="acme")
        theirs = admin.submit("tests.jobs:noop", tenant="beta")
    with as_user(db, "acme-op") as operator:
        report = operator.drain()
        assert report.claimed == 1
        assert operator.get(ours).state.value == "completed"
        with pytest.raises(PermissionDenied):
            operator.cancel(theirs)
        with pytest.raises(PermissionDenied):
            operator.breakers.configure("svc", failure_threshold=3)  # shared settings need a global grant
        with pytest.raises(PermissionDenied, match="run a worker for tenant beta"):
            operator.drain(tenants=("beta",))
    with tqcli.open(db) as admin:
        assert admin.get(theirs).state.value == "pending"
