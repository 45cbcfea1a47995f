"""Where access control meets the keyed audit chain, through the real executable on both stores.

Once `keys init` has made an audit key, appending needs it: a worker without
the key file warns and claims nothing (exit 0), and a denial says when its
`access.denied` entry could not be appended.
"""

from __future__ import annotations

from tests.stores import raw_sql


def _keyed(cli) -> None:
    """A database whose chain is keyed: `keys init` with the key file in the test's home (the default place)."""
    cli.ok("keys", "init")


def test_a_worker_without_the_audit_key_warns_claims_nothing_and_exits_0(cli, tmp_path):
    _keyed(cli)
    task_id = cli.submit("tests.jobs:noop")
    elsewhere = {"XDG_CONFIG_HOME": str(tmp_path / "no-keys-here")}
    worker = cli("worker", "--once", env=elsewhere)
    assert worker.code == 0, worker.stderr
    assert "warning:" in worker.stderr and "claims nothing" in worker.stderr
    assert raw_sql(cli.db, "SELECT state, attempts FROM tasks WHERE id = ?", (task_id,)) == [("pending", 0)]
    cli.ok("worker", "--once")  # with the key it runs
    assert cli.task(task_id)["state"] == "completed"


def test_a_change_without_the_audit_key_is_exit_8_and_changes_nothing(cli, tmp_path):
    _keyed(cli)
    before = raw_sql(cli.db, "SELECT count(*) FROM tasks")[0][0]
    result = cli("submit", "tests.jobs:noop", env={"XDG_CONFIG_HOME": str(tmp_path / "no-keys-here")})
    assert result.code == 8 and len(result.error_lines) == 1
    assert raw_sql(cli.db, "SELECT count(*) FROM tasks")[0][0] == before


def test_a_denial_is_exit_4_even_without_the_audit_key_and_says_it_was_not_audited(cli, tmp_path):
    from tqcli.config import login_name

    _keyed(cli)
    cli.ok("role", "grant", login_name(), "admin")
    cli.ok("role", "grant", "vera", "viewer")
    entries = raw_sql(cli.db, "SELECT count(*) FROM audit")[0][0]
    no_key = {"XDG_CONFIG_HOME": str(tmp_path / "no-keys-here"), "TQCLI_USER": "vera"}
    result = cli("submit", "tests.jobs:noop", env=no_key)
    assert result.code == 4, result.stderr
    assert result.stderr.rstrip().endswith("(not audited: no audit key)")
    assert raw_sql(cli.db, "SELECT count(*) FROM audit")[0][0] == entries
    with_key = cli("submit", "tests.jobs:noop", env={"TQCLI_USER": "vera"})
    assert with_key.code == 4 and "not audited" not in with_key.stderr
    assert raw_sql(cli.db, "SELECT actor, action, key_id IS NOT NULL FROM audit ORDER BY seq DESC LIMIT 1") == [("vera", "access.denied", True)]
