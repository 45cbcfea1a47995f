"""`tqcli apply` and `tqcli export` through the CLI: round trips change nothing, bad files change nothing, one audit entry per change."""

import pytest

from tests.conftest import REPO
from tests.stores import table_dump
from tests.test_declarative import SPEC_EXAMPLE

SPEC_FILE = REPO / "sample-configs" / "settings-spec.toml"
TEAMS_FILE = REPO / "sample-configs" / "settings-teams.toml"


def entries(cli):
    return cli.ok("audit", "log", "--limit", "0", "--json").json


def applies(cli):
    return [entry["details"] for entry in entries(cli) if entry["action"] == "settings.apply"]


def test_apply_says_what_changed_and_appends_one_entry_with_the_difference(cli):
    cli.ok("queue", "set", "etl", "--max-running", "4")
    result = cli.ok("apply", str(SPEC_FILE))
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "queue etl: max_length 0 -> 10000",
        "tenant acme: max_pending 0 -> 5000, rate none -> 100/m, weight 1 -> 2",
        "schedule nightly: added",
        "breaker billing-api: failure_threshold default -> 3, recovery_timeout default -> 1m",
        f"applied {SPEC_FILE}: changed 1 queue, 1 tenant, 1 schedule, 1 breaker",
    ]
    (details,) = applies(cli)
    assert details["file"] == str(SPEC_FILE) and details["prune"] is False
    assert details["queues"] == {"etl": {"max_length": {"from": 0, "to": 10000}}}
    assert details["schedules"] == {"nightly": "added"}
    assert [e["action"] for e in entries(cli)] == ["queue.set", "settings.apply"]


def test_a_dry_run_says_what_would_change_and_changes_nothing(cli):
    cli.ok("queue", "set", "etl", "--max-running", "4")
    before, count = table_dump(cli.db), len(entries(cli))
    result = cli.ok("apply", "--dry-run", "--prune", str(SPEC_FILE))
    assert result.stderr.splitlines() == [
        "queue etl: max_length 0 -> 10000",
        "tenant acme: max_pending 0 -> 5000, rate none -> 100/m, weight 1 -> 2",
        "schedule nightly: added",
        "breaker billing-api: failure_threshold default -> 3, recovery_timeout default -> 1m",
        f"dry run of {SPEC_FILE}: would change 1 queue, 1 tenant, 1 schedule, 1 breaker; nothing was changed",
    ]
    assert table_dump(cli.db) == before and len(entries(cli)) == count
    cli.ok("apply", str(SPEC_FILE))
    assert cli.ok("apply", "--dry-run", str(SPEC_FILE)).stderr.startswith("nothing would change")


def test_a_dry_run_needs_a_database_and_makes_none(cli, tmp_path):
    missing = tmp_path / "none.db"
    result = cli("apply", "--dry-run", str(SPEC_FILE), env={"TQCLI_DB": str(missing)})
    assert result.code == 3 and not missing.exists()


def test_applying_again_changes_nothing(cli):
    cli.ok("apply", str(TEAMS_FILE))
    before, count = table_dump(cli.db), len(entries(cli))
    result = cli.ok("apply", str(TEAMS_FILE), "--prune")
    assert result.stderr == f"nothing changed: the database already declares what {TEAMS_FILE} does\n"
    assert table_dump(cli.db) == before and len(entries(cli)) == count


def test_export_piped_to_apply_changes_nothing_and_appends_no_entry(cli):
    cli.ok("apply", str(TEAMS_FILE))
    cli.ok("schedule", "add", "hourly", "--cron", "@hourly", "tests.jobs:noop", "--timeout", "5m", "--payload", '{"a": null}')
    exported = cli.ok("export").stdout
    assert "[schedules.hourly]" in exported and '[breakers."simple:billing.jobs:send_invoices"]' in exported
    before, count = table_dump(cli.db), len(entries(cli))
    result = cli.ok("apply", "-", "--prune", input=exported)
    assert "nothing changed" in result.stderr
    assert table_dump(cli.db) == before and len(entries(cli)) == count
    assert cli.ok("export").stdout == exported


def test_a_file_with_one_bad_key_among_good_ones_changes_nothing(cli, tmp_path):
    cli.ok("apply", str(SPEC_FILE))
    exported, count = cli.ok("export").stdout, len(entries(cli))
    bad = tmp_path / "settings.toml"
    bad.write_text(SPEC_EXAMPLE.replace("max_length = 10000", "max_length = 20000").replace("weight = 2", "weight = 0")
                   + "[queues.new]\nmax_running = 1\n")
    result = cli("apply", str(bad))
    assert result.code == 2
    assert result.stderr.splitlines() == [result.error_lines[0]]
    assert result.error_lines[0].startswith(f"error: {bad}: [tenants.acme] weight: invalid weight 0")
    assert cli.ok("export").stdout == exported and len(entries(cli)) == count


def test_prune_removes_what_the_file_does_not_declare_and_without_it_it_stays(cli, tmp_path):
    cli.ok("apply", str(SPEC_FILE))
    cli.ok("queue", "set", "other", "--max-length", "5")
    cli.ok("breaker", "set", "--default", "--failure-threshold", "9")
    small = tmp_path / "small.toml"
    small.write_text(SPEC_EXAMPLE.split("[tenants.acme]")[0] + SPEC_EXAMPLE[SPEC_EXAMPLE.index("[breakers."):])
    assert "nothing changed" in cli.ok("apply", str(small)).stderr
    assert {"[queues.other]", "[tenants.acme]", "[schedules.nightly]", "[breaker_defaults]"} <= set(cli.ok("export").stdout.splitlines())
    result = cli.ok("apply", str(small), "--prune")
    assert "queue other: max_length 5 -> 0" in result.stderr and "schedule nightly: removed" in result.stderr
    assert "breaker defaults: failure_threshold 9 -> 5" in result.stderr
    assert cli.ok("export").stdout == (
        '[queues.etl]\nmax_length = 10000\nmax_running = 4\n\n[breakers.billing-api]\nfailure_threshold = 3\nrecovery_timeout = "1m"\n'
    )
    assert cli.ok("schedule", "list", "--json").json == []
    assert [q["name"] for q in cli.ok("queue", "list", "--json").json] == ["etl"]
    assert applies(cli)[-1]["prune"] is True


def test_prune_takes_away_a_breakers_own_settings(cli):
    cli.ok("apply", str(SPEC_FILE))
    cli.ok("apply", "-", "--prune", input="[queues.etl]\n")
    (entry,) = applies(cli)[-1:]
    assert entry["breakers"] == {"billing-api": {"failure_threshold": {"from": 3, "to": None}, "recovery_timeout": {"from": 60.0, "to": None}}}
    assert "billing-api" not in cli.ok("export").stdout


def test_export_json_is_the_same_document(cli):
    cli.ok("apply", str(SPEC_FILE))
    assert cli.ok("export", "--json").json == {
        "queues": {"etl": {"max_length": 10000, "max_running": 4}},
        "tenants": {"acme": {"max_pending": 5000, "rate": "100/m", "weight": 2}},
        "schedules": {"nightly": {"cron": "0 2 * * *", "tz": "Europe/Berlin", "target": "etl.jobs:nightly", "payload": {"full": True}}},
        "breakers": {"billing-api": {"failure_threshold": 3, "recovery_timeout": "1m"}},
    }


@pytest.mark.sqlite_only
@pytest.mark.parametrize("text, says", [
    ("[queues.etl\nmax_length = 1\n", "error: {file}: malformed TOML: "),
    ("[queues.etl]\nmax_length = 1\nmax_lenght = 2\n", "error: {file}: [queues.etl] max_lenght: unknown key"),
    ('[tenants.acme]\nrate = "lots"\n', "error: {file}: [tenants.acme] rate: invalid rate 'lots'"),
    ('[schedules.n]\ncron = "0 2 * * *"\ntz = "Nowhere/Land"\ntarget = "a:b"\n', "error: {file}: [schedules.n] tz: unknown time zone"),
    ('[[roles]]\nuser = "alice"\nrole = "root"\n', "error: {file}: [[roles]] #1: invalid role 'root'"),
])
def test_a_bad_file_is_exit_2_with_one_error_line_and_creates_nothing(cli, tmp_path, text, says):
    """Refused before the database is opened, whatever the store: on SQLite, no file appears."""
    path = tmp_path / "settings.toml"
    path.write_text(text)
    result = cli("apply", str(path))
    assert result.code == 2 and result.stderr.splitlines() == [result.error_lines[0]]
    assert result.error_lines[0].startswith(says.format(file=path)), result.stderr
    from_stdin = cli("apply", "-", input=text)
    assert from_stdin.code == 2 and from_stdin.error_lines[0].startswith(says.format(file="<stdin>"))
    assert not cli.db.exists()


@pytest.mark.sqlite_only
def test_a_missing_or_unreadable_file_is_exit_2(cli, tmp_path):
    """Refused before the database is opened: on SQLite, no file appears."""
    for path in (tmp_path / "missing.toml", tmp_path):
        result = cli("apply", str(path))
        assert result.code == 2 and result.error_lines == [result.stderr.strip()]
        assert result.error_lines[0].startswith(f"error: cannot read settings file {path}: ")
    assert not cli.db.exists()


def test_apply_from_stdin(cli):
    result = cli.ok("apply", "-", input=SPEC_EXAMPLE)
    assert result.stderr.endswith("applied <stdin>: changed 1 queue, 1 tenant, 1 schedule, 1 breaker\n")
    assert applies(cli)[0]["file"] == "<stdin>"
