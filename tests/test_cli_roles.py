"""`tqcli role grant|revoke|list` and what a denial looks like, through the real executable, on both stores.

The identity rule is tried with a second OS user (runuser): tqcli names the
process's effective user, never $USER, and honours TQCLI_USER only while the
database runs open or for a global admin.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import pytest

from tests.conftest import REPO, Cli, Result
from tests.stores import raw_sql
from tqcli.config import login_name

ME = login_name()
OTHER = "tqcli-test-other"


def audit_actions(cli: Cli) -> list[tuple[str, str]]:
    return [(entry["actor"], entry["action"]) for entry in cli.ok("audit", "log", "--limit", "0", "--json").json]


def test_an_open_database_says_so(cli):
    cli.submit("tests.jobs:noop")
    assert "access: open" in cli.ok("status").stdout
    assert cli.ok("status", "--json").json["access"] == "open"
    assert "runs open" in cli.ok("role", "list").stderr
    assert cli.ok("role", "list", "--json").json == []


def test_grant_list_and_revoke(cli):
    first = cli("role", "grant", "bob", "viewer")
    assert first.code == 2 and first.error_lines == [first.stderr.strip()]
    assert "the first grant must make a global admin" in first.stderr and f"tqcli role grant {ME} admin" in first.stderr
    assert "granted admin to" in cli.ok("role", "grant", ME, "admin").stderr
    entries = len(audit_actions(cli))
    again = cli.ok("role", "grant", ME, "admin")
    assert again.stderr.startswith("nothing changed")
    assert len(audit_actions(cli)) == entries  # asking for the state it is in appends nothing
    cli.ok("role", "grant", "olga", "operator", "--tenant", "acme")
    assert cli.ok("role", "list", "--json").json == [
        {"user": "olga", "role": "operator", "tenant": "acme"},
        {"user": ME, "role": "admin", "tenant": None},
    ]
    assert "(every tenant)" in cli.ok("role", "list").stdout
    assert "access: open" not in cli.ok("status").stdout
    last = cli("role", "revoke", ME, "admin")
    assert last.code == 6 and "last global admin" in last.stderr
    assert "revoked operator from olga on tenant acme" in cli.ok("role", "revoke", "olga", "operator", "--tenant", "acme").stderr
    assert cli.ok("role", "revoke", "olga", "operator", "--tenant", "acme").stderr.startswith("nothing changed")
    assert (ME, "role.grant") in audit_actions(cli) and (ME, "role.revoke") in audit_actions(cli)


@pytest.mark.parametrize(
    "args, needle",
    [
        (("role", "grant", "bob", "admni"), "invalid role 'admni': use one of admin, operator, submitter, viewer, auditor"),
        (("role", "grant", "bob bob", "viewer"), "invalid user"),
        (("role", "grant", "bob", "viewer", "--tenant", "a c"), "invalid tenant name"),
        (("role", "grant", "bob"), "Missing argument 'ROLE'"),
        (("role", "grnat", "bob", "viewer"), "Did you mean 'grant'"),
    ],
)
def test_bad_role_commands_are_exit_2(cli, args, needle):
    result = cli(*args)
    assert result.code == 2, result.stderr
    assert needle in result.stderr and len(result.error_lines) == 1


def test_a_denial_is_exit_4_names_user_action_and_role_and_is_audited(cli):
    task_id = cli.submit("tests.jobs:noop")
    cli.ok("role", "grant", ME, "admin")
    cli.ok("role", "grant", "vera", "viewer")
    as_vera = {"TQCLI_USER": "vera"}
    denied = cli("cancel", str(task_id), env=as_vera)
    assert denied.code == 4
    assert denied.error_lines == [
        f"error: user vera may not cancel task {task_id}: it needs the admin or operator role for tenant default, "
        "or submitter for their own tasks; vera holds viewer; ask an admin to run 'tqcli role grant vera ROLE'"
    ]
    assert cli.task(task_id)["state"] == "pending"
    assert ("vera", "access.denied") in audit_actions(cli)
    assert cli("audit", "log", env=as_vera).code == 4  # viewers do not read the audit log
    assert cli.ok("status", env=as_vera).stdout  # but they read the queue
    worker = cli("worker", "--once", env=as_vera)
    assert worker.code == 4 and "may not run a worker" in worker.stderr


def test_a_revoked_operator_s_worker_stops_within_a_poll(cli):
    cli.ok("role", "grant", ME, "admin")
    cli.ok("role", "grant", "otto", "operator")
    worker = cli.spawn("worker", "--poll", "0.2", env={"TQCLI_USER": "otto"})
    try:
        first = cli.submit("tests.jobs:noop")
        cli.ok("wait", str(first), "--timeout", "30")
        cli.ok("role", "revoke", "otto", "operator")
        out, err = worker.communicate(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.communicate()
    assert worker.returncode == 4, err
    assert "stopping: user otto may not run a worker" in err
    second = cli.submit("tests.jobs:noop")
    assert cli.task(second)["state"] == "pending"


def test_apply_and_export_carry_roles(cli, tmp_path):
    settings = tmp_path / "roles.toml"
    settings.write_text(f'[[roles]]\nuser = "{ME}"\nrole = "admin"\n[[roles]]\nuser = "ada"\nrole = "auditor"\ntenant = "acme"\n')
    cli.ok("apply", str(settings))
    exported = cli.ok("export").stdout
    assert '[[roles]]\nuser = "ada"\nrole = "auditor"\ntenant = "acme"' in exported
    assert cli.ok("apply", "-", input=exported).stderr.startswith("nothing changed")
    bad = tmp_path / "bad.toml"
    bad.write_text('[[roles]]\nuser = "ada"\nrole = "admin"\ntenant = "acme"\n')
    result = cli("apply", "--prune", str(bad))
    assert result.code == 2 and "no global admin" in result.stderr
    assert len(cli.ok("role", "list", "--json").json) == 2


# -- a second OS user ------------------------------------------------------------


def _python_for_others() -> str | None:
    """An interpreter of this Python version that another user may run (the venv's may live under /root)."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (sys.executable, f"/usr/bin/{version}", f"/usr/local/bin/{version}"):
        if Path(candidate).exists():
            probe = subprocess.run(["runuser", "-u", OTHER, "--", candidate, "-c", "import sys"], capture_output=True)
            if probe.returncode == 0:
                return candidate
    return None


@pytest.fixture(scope="module")
def other_user():
    """A second OS user who may run tqcli (root and runuser needed); removed afterwards if this test made it."""
    if os.geteuid() != 0 or not shutil.which("runuser") or not shutil.which("useradd"):
        pytest.skip("needs root, runuser and useradd to act as a second OS user")
    made = subprocess.run(["id", OTHER], capture_output=True).returncode != 0
    if made:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", OTHER], check=True)
    try:
        python = _python_for_others()
        if python is None:
            pytest.skip(f"no Python {sys.version_info.major}.{sys.version_info.minor} that {OTHER} may run")
        yield python
    finally:
        if made:
            subprocess.run(["userdel", OTHER], capture_output=True)


@pytest.fixture
def shared_db(db_location):
    """The test's database where the other user can write it too (a file in a folder open to all, or the PostgreSQL URL)."""
    if isinstance(db_location, str):
        yield db_location
        return
    folder = Path(tempfile.mkdtemp(prefix="tqcli-shared-", dir="/tmp"))
    folder.chmod(0o777)
    try:
        yield folder / "tq.db"
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def run_as_other(python: str, db, *args: str, env: dict[str, str] | None = None) -> Result:
    site = sysconfig.get_paths()["purelib"]
    home = tempfile.mkdtemp(prefix="tqcli-home-", dir="/tmp")
    os.chmod(home, 0o777)
    environment = {
        "PATH": "/usr/bin:/bin", "HOME": home, "XDG_CONFIG_HOME": f"{home}/config", "LANG": "C.UTF-8",
        "TQCLI_DB": str(db), "PYTHONPATH": f"{REPO}{os.pathsep}{site}",
        "USER": ME, "LOGNAME": ME,  # never believed: the effective uid names the user
        **(env or {}),
    }
    done = subprocess.run(
        ["runuser", "-u", OTHER, "--", "env", "-i", *(f"{k}={v}" for k, v in environment.items()), python, "-m", "tqcli", *args],
        capture_output=True, text=True, timeout=60, cwd="/",
    )
    shutil.rmtree(home, ignore_errors=True)
    return Result(done.returncode, done.stdout, done.stderr)


def _share(db) -> None:
    if not isinstance(db, str):
        for path in Path(db).parent.glob(Path(db).name + "*"):
            path.chmod(0o666)


def test_a_second_os_user_is_named_by_its_uid_not_by_user(other_user, shared_db, cli):
    cli.db = shared_db
    cli.env["TQCLI_DB"] = str(shared_db)
    cli.submit("tests.jobs:noop")
    _share(shared_db)
    submitted = run_as_other(other_user, shared_db, "submit", "tests.jobs:noop")
    assert submitted.code == 0, submitted.stderr
    actors = raw_sql(shared_db, "SELECT actor FROM audit WHERE action = 'task.submit' ORDER BY seq")
    assert actors == [(ME,), (OTHER,)]  # $USER said root: tqcli believed the uid


def test_tqcli_user_is_refused_to_a_user_who_is_no_global_admin(other_user, shared_db, cli):
    cli.db = shared_db
    cli.env["TQCLI_DB"] = str(shared_db)
    task_id = cli.submit("tests.jobs:noop")
    cli.ok("role", "grant", ME, "admin")
    cli.ok("role", "grant", OTHER, "viewer")
    _share(shared_db)
    pretending = run_as_other(other_user, shared_db, "cancel", str(task_id), env={"TQCLI_USER": ME})
    assert pretending.code == 4, pretending.stderr
    assert f"user {OTHER} may not act as '{ME}' (TQCLI_USER)" in pretending.stderr
    denied = raw_sql(shared_db, "SELECT actor, details FROM audit WHERE action = 'access.denied'")
    assert [actor for actor, _ in denied] == [OTHER]
    assert run_as_other(other_user, shared_db, "status").code == 0
    submit = run_as_other(other_user, shared_db, "submit", "tests.jobs:noop")
    assert submit.code == 4 and f"user {OTHER} may not submit tasks to tenant default" in submit.stderr
    assert cli.task(task_id)["state"] == "pending"


# One command per row of SPEC's table, for every role: exit 0 where the table has a tick, exit 4 where it has none.
ROWS = {
    "read": lambda cli, task_id: ("status",),
    "submit": lambda cli, task_id: ("submit", "tests.jobs:noop"),
    "change_task": lambda cli, task_id: ("bump", str(task_id), "--by", "1"),
    "operate": lambda cli, task_id: ("breaker", "set", "svc", "--failure-threshold", "3"),
    "audit": lambda cli, task_id: ("audit", "verify"),
    "admin": lambda cli, task_id: ("role", "grant", "newcomer", "viewer"),
}


@pytest.mark.sqlite_only  # the library's table test (tests/test_rbac.py) covers both stores
@pytest.mark.parametrize("role", ["admin", "operator", "submitter", "viewer", "auditor"])
def test_each_role_gets_its_rows_of_the_table_through_the_cli(cli, role):
    from tqcli.security.rbac import PERMISSIONS

    cli.ok("role", "grant", ME, "admin")
    cli.ok("role", "grant", "user", role)
    codes = {}
    for permission, command in ROWS.items():
        task_id = cli.submit("tests.jobs:noop")
        result = cli(*command(cli, task_id), env={"TQCLI_USER": "user"})
        codes[permission] = result.code
        if result.code == 4:
            assert result.error_lines == [result.stderr.strip()] and "user user may not" in result.stderr
    assert codes == {permission: 0 if role in PERMISSIONS[permission] else 4 for permission in ROWS}
