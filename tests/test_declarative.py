"""Declarative settings through the library: a file is checked whole, applied in one audited transaction, exported back.

The CLI's `apply` and `export` are in tests/test_cli_settings.py.
"""

import json
from dataclasses import replace

import pytest

from tests.conftest import REPO
from tests.stores import table_dump
from tqcli.errors import InvalidInput
from tqcli.resilience.circuit_breaker import DEFAULT_RECOVERY_TIMEOUT
from tqcli.tenancy.declarative import load_settings

SAMPLES = sorted((REPO / "sample-configs").glob("settings-*.toml"))

SPEC_EXAMPLE = """
[queues.etl]
max_length = 10000
max_running = 4
[tenants.acme]
max_pending = 5000
rate = "100/m"
weight = 2
[schedules.nightly]
cron = "0 2 * * *"
tz = "Europe/Berlin"
target = "etl.jobs:nightly"
payload = { full = true }
[breakers.billing-api]
failure_threshold = 3
recovery_timeout = "1m"
"""


def nightly(*lines):
    """SPEC_EXAMPLE with more keys in its [schedules.nightly]."""
    return SPEC_EXAMPLE.replace("payload = { full = true }\n", "payload = { full = true }\n" + "".join(f"{line}\n" for line in lines))


def apply(queue, text, *, prune=False, source="settings.toml"):
    return queue.settings.apply(load_settings(text, source), prune=prune)


def applies(queue):
    """The details of every settings.apply entry, in order."""
    return [json.loads(entry.details) for entry in queue.audit.entries(limit=0) if entry.action == "settings.apply"]


def entry_count(queue):
    return len(queue.audit.entries(limit=0))


def reloaded(queue, source="export"):
    """What the database exports, read back as a settings file."""
    return load_settings(queue.settings.export_toml(), source)


# -- apply and export ---------------------------------------------------------------------------


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda path: path.name)
def test_every_sample_config_applies_and_exports_as_what_it_declares(queue, sample):
    declared = load_settings(sample.read_text(), "export")
    assert apply(queue, sample.read_text()).changed
    assert reloaded(queue) == declared
    before = entry_count(queue)
    assert not apply(queue, queue.settings.export_toml(), prune=True).changed
    assert entry_count(queue) == before


def test_apply_writes_one_entry_with_the_difference(queue):
    queue.tenancy.set_queue("etl", max_running=4)
    report = apply(queue, SPEC_EXAMPLE)
    assert report.diff == {
        "queues": {"etl": {"max_length": {"from": 0, "to": 10000}}},
        "tenants": {"acme": {"max_pending": {"from": 0, "to": 5000}, "rate": {"from": None, "to": "100/m"},
                             "weight": {"from": 1.0, "to": 2.0}}},
        "schedules": {"nightly": "added"},
        "breakers": {"billing-api": {"failure_threshold": {"from": None, "to": 3}, "recovery_timeout": {"from": None, "to": 60.0}}},
    }
    assert applies(queue) == [{"file": "settings.toml", "prune": False, **report.diff}]
    assert [e.action for e in queue.audit.entries(limit=0)] == ["queue.set", "settings.apply"]  # no schedule.add, no breaker.set
    nightly = queue.schedules.get("nightly")
    assert (nightly.cron, nightly.tz, nightly.spec) == ("0 2 * * *", "Europe/Berlin", {"target": "etl.jobs:nightly", "payload": {"full": True}})
    (tenant,) = queue.tenancy.tenants()
    assert (tenant.rate, tenant.weight, tenant.tokens) == ("100/m", 2.0, 100.0)


def test_applying_the_same_file_again_changes_nothing_and_audits_nothing(queue, db_location):
    apply(queue, SPEC_EXAMPLE)
    before = table_dump(db_location)
    report = apply(queue, SPEC_EXAMPLE)
    assert not report.changed and report.diff == {}
    assert table_dump(db_location) == before


def test_a_key_the_file_leaves_out_goes_back_to_its_default(queue):
    apply(queue, nightly("catchup = true", "priority = 5", 'timeout = "5m"'))
    report = apply(queue, SPEC_EXAMPLE.replace("max_running = 4\n", "").replace("weight = 2\n", ""))
    assert report.diff == {
        "queues": {"etl": {"max_running": {"from": 4, "to": 0}}},
        "tenants": {"acme": {"weight": {"from": 2.0, "to": 1.0}}},
        "schedules": {"nightly": {"catchup": {"from": True, "to": False}, "priority": {"from": 5, "to": 0},
                                  "timeout": {"from": 300.0, "to": None}}},
    }
    assert queue.schedules.get("nightly").spec == {"target": "etl.jobs:nightly", "payload": {"full": True}}


def test_values_are_compared_as_they_take_effect(queue):
    apply(queue, nightly('timeout = "5m"'))
    assert not apply(queue, nightly("timeout = 300").replace('"1m"', "60").replace("weight = 2", "weight = 2.0")).changed
    assert queue.schedules.get("nightly").spec["timeout"] == "5m"  # the stored form stays


def test_a_schedule_changes_in_place_keeping_its_fire_history(queue, clock):
    apply(queue, SPEC_EXAMPLE)
    created = queue.schedules.get("nightly")
    clock.advance(86400)
    assert queue.fire_schedules() == 1
    report = apply(queue, nightly("paused = true").replace('"0 2 * * *"', '"0 3 * * *"'))
    assert report.diff["schedules"] == {"nightly": {"cron": {"from": "0 2 * * *", "to": "0 3 * * *"}, "paused": {"from": False, "to": True}}}
    changed = queue.schedules.get("nightly")
    assert (changed.paused, changed.created_at, changed.last_fire_at) == (True, created.created_at, created.next_fire_at)


def test_a_new_schedule_can_be_declared_paused(queue):
    apply(queue, nightly("paused = true"))
    assert queue.schedules.get("nightly").paused
    assert applies(queue)[0]["schedules"] == {"nightly": "added"}


def test_breaker_defaults_are_their_own_table(queue):
    report = apply(queue, '[breaker_defaults]\nfailure_threshold = 8\n')
    assert report.diff == {"breaker_defaults": {"failure_threshold": {"from": 5, "to": 8}}}
    assert queue.breakers.defaults() == (8, DEFAULT_RECOVERY_TIMEOUT)
    assert queue.settings.export() == {"breaker_defaults": {"failure_threshold": 8}}
    assert not apply(queue, "").changed  # not declared, not pruned: kept


# -- prune --------------------------------------------------------------------------------------


def test_without_prune_what_the_file_does_not_declare_stays(queue):
    apply(queue, SPEC_EXAMPLE + '[breaker_defaults]\nrecovery_timeout = "2m"\n')
    assert not apply(queue, "[queues.other]\n").changed
    assert set(queue.settings.export()) == {"queues", "tenants", "schedules", "breaker_defaults", "breakers"}


def test_prune_removes_the_queues_tenants_schedules_and_breaker_defaults_not_declared(queue):
    apply(queue, SPEC_EXAMPLE + '[breaker_defaults]\nrecovery_timeout = "2m"\n')
    queue.tenancy.set_tenant("beta", weight=3)
    kept = SPEC_EXAMPLE.split("[tenants.acme]")[0] + SPEC_EXAMPLE[SPEC_EXAMPLE.index("[breakers."):]
    report = apply(queue, kept, prune=True)
    assert report.diff == {
        "tenants": {"acme": {"max_pending": {"from": 5000, "to": 0}, "rate": {"from": "100/m", "to": None},
                             "weight": {"from": 2.0, "to": 1.0}},
                    "beta": {"weight": {"from": 3.0, "to": 1.0}}},
        "schedules": {"nightly": "removed"},
        "breaker_defaults": {"recovery_timeout": {"from": 120.0, "to": DEFAULT_RECOVERY_TIMEOUT}},
    }
    assert applies(queue)[-1]["prune"] is True
    assert queue.schedules.list() == [] and queue.tenancy.tenants() == []  # their settings rows are gone
    assert reloaded(queue) == load_settings(kept, "export")


def test_a_declared_breaker_that_leaves_a_key_out_follows_the_default_for_it(queue):
    apply(queue, SPEC_EXAMPLE)
    report = apply(queue, "[breakers.billing-api]\nfailure_threshold = 3\n")
    assert report.diff["breakers"] == {"billing-api": {"recovery_timeout": {"from": 60.0, "to": None}}}
    assert not apply(queue, "[breakers.billing-api]\nfailure_threshold = 3\n").changed


def test_without_prune_an_undeclared_breaker_keeps_its_own_settings(queue):
    apply(queue, SPEC_EXAMPLE)
    assert "breakers" not in apply(queue, "[queues.etl]\n").diff
    assert "billing-api" in queue.settings.export_toml()


def test_prune_removes_a_breakers_own_settings(queue):
    apply(queue, SPEC_EXAMPLE)
    report = apply(queue, "[queues.etl]\n", prune=True)
    assert report.diff["breakers"] == {"billing-api": {"failure_threshold": {"from": 3, "to": None},
                                                       "recovery_timeout": {"from": 60.0, "to": None}}}
    assert "billing-api" not in queue.settings.export_toml()
    assert not apply(queue, "[queues.etl]\n", prune=True).changed


@pytest.mark.parametrize("text", ["", "# only a comment\n"])
def test_prune_with_a_file_that_declares_nothing_is_refused_and_changes_nothing(queue, db_location, text):
    """An empty pipe (an export that failed) must not remove every setting."""
    apply(queue, SPEC_EXAMPLE)
    before = table_dump(db_location)
    with pytest.raises(InvalidInput, match=r"declares nothing, so --prune would remove every"):
        apply(queue, text, prune=True)
    assert table_dump(db_location) == before


# -- export -------------------------------------------------------------------------------------


def test_export_of_a_new_database_is_empty(queue):
    assert queue.settings.export() == {} and queue.settings.export_toml() == ""


def test_export_writes_a_payload_toml_cannot_hold_as_json_that_applies_back(queue):
    queue.schedules.add("odd", cron="@daily", options={"target": "a:b", "payload": {"none": None, "big": 2**70}, "timeout": None})
    table = load_settings(queue.settings.export_toml(), "export").schedules["odd"]
    assert table.options == {"target": "a:b", "payload": '{"big":1180591620717411303424,"none":null}'}
    assert not apply(queue, queue.settings.export_toml()).changed


def test_export_quotes_names_toml_would_split(queue):
    apply(queue, '[queues."etl.v2"]\nmax_length = 3\n[breakers."simple:etl.jobs:sync"]\nfailure_threshold = 2\n')
    text = queue.settings.export_toml()
    assert '[queues."etl.v2"]' in text and '[breakers."simple:etl.jobs:sync"]' in text
    assert not apply(queue, text).changed


# -- checking a file ----------------------------------------------------------------------------


@pytest.mark.parametrize("text, message", [
    ("[queues.etl\n", "settings.toml: malformed TOML: "),
    ("[queues.etl]\nmax_lenght = 3\n", "settings.toml: [queues.etl] max_lenght: unknown key; a queue takes max_length, max_running and "
                                       "paused (did you mean max_length?)"),
    ("[queues.etl]\nmax_length = -1\n", "settings.toml: [queues.etl] max_length: invalid max-length -1"),
    ("[queues.etl]\nmax_running = 1.5\n", "settings.toml: [queues.etl] max_running: invalid max-running 1.5"),
    ("[queues.etl]\npaused = 1\n", "settings.toml: [queues.etl] paused: invalid paused 1: use true or false"),
    ("[queues.etl]\nencrypt = true\n", "settings.toml: [queues.etl] encrypt: apply does not set a queue's encryption"),
    ("[queues.etl.v2]\nmax_length = 3\n", 'settings.toml: [queues.etl] v2: is a table, not a setting: a queue name with a dot is quoted, '
                                          '[queues."etl.v2"]'),
    ('[queues."a b"]\n', "settings.toml: [queues.\"a b\"]: invalid queue name 'a b'"),
    ("[tenants.acme]\nweight = 0\n", "settings.toml: [tenants.acme] weight: invalid weight 0"),
    ('[tenants.acme]\nweight = "2"\n', "settings.toml: [tenants.acme] weight: invalid weight '2'"),
    ('[tenants.acme]\nrate = "100/week"\n', "settings.toml: [tenants.acme] rate: invalid rate '100/week'"),
    ("[tenants.acme]\nrate = 100\n", "settings.toml: [tenants.acme] rate: invalid rate 100: give a string N/PERIOD"),
    ("[tenants.acme]\nmax_pending = -5\n", "settings.toml: [tenants.acme] max_pending: invalid max-pending -5"),
    ('[schedules.n]\ntarget = "a:b"\n', "settings.toml: [schedules.n]: missing key cron"),
    ('[schedules.n]\ncron = "0 2 * * *"\n', "settings.toml: [schedules.n]: missing key target"),
    ('[schedules.n]\ncron = "0 25 * * *"\ntarget = "a:b"\n', "settings.toml: [schedules.n] cron: invalid cron expression"),
    ('[schedules.n]\ncron = "0 0 30 2 *"\ntarget = "a:b"\n', "settings.toml: [schedules.n] cron: cron expression '0 0 30 2 *' never fires"),
    ('[schedules.n]\ncron = "@daily"\ntz = "Mars/Base"\ntarget = "a:b"\n', "settings.toml: [schedules.n] tz: unknown time zone 'Mars/Base'"),
    ('[schedules.n]\ncron = "@daily"\ntarget = "not a function"\n', "settings.toml: [schedules.n] target: invalid target"),
    ('[schedules.n]\ncron = "@daily"\ntarget = "a:b"\nbackend = "nope"\n', "settings.toml: [schedules.n] backend: unknown backend 'nope'"),
    ('[schedules.n]\ncron = "@daily"\ntarget = "a:b"\npriority = 101\n', "settings.toml: [schedules.n] priority: invalid priority 101"),
    ('[schedules.n]\ncron = "@daily"\ntarget = "a:b"\ntimeout = "soon"\n', "settings.toml: [schedules.n] timeout: invalid timeout 'soon'"),
    ('[schedules.n]\ncron = "@daily"\ntarget = "a:b"\nidempotency_key = "k"\n',
     "settings.toml: [schedules.n] idempotency_key: a schedule cannot set idempotency_key"),
    ('[schedules.n]\ncron = "@daily"\ntarget = "a:b"\ncatchup = "yes"\n', 'settings.toml: [schedules.n] catchup: invalid catchup "yes"'),
    ('[schedules.n]\ncron = "@daily"\ntarget = "a:b"\ncwd = "/tmp"\n', "settings.toml: [schedules.n] cwd: cwd and env apply to shell tasks"),
    ("[breakers.b]\nfailure_threshold = 0\n", "settings.toml: [breakers.b] failure_threshold: invalid failure threshold 0"),
    ('[breakers.b]\nrecovery_timeout = "0s"\n', "settings.toml: [breakers.b] recovery_timeout: invalid recovery timeout"),
    ("[breakers.b]\nrecovery_timeout = true\n", "settings.toml: [breakers.b] recovery_timeout: invalid recovery timeout true"),
    ("[breaker_defaults]\nthreshold = 3\n", "settings.toml: [breaker_defaults] threshold: unknown key"),
    ("[[roles]]\nuser = \"alice\"\nrole = \"root\"\n", "settings.toml: [[roles]] #1: invalid role 'root': use one of admin"),
    ("[[roles]]\nuser = \"alice\"\nrule = \"admin\"\n", "settings.toml: [[roles]] #1 rule: unknown key; a role has user, role and tenant (did you mean role?)"),
    ("[roles]\nuser = \"alice\"\n", "settings.toml: roles: not an array of tables"),
    ("[queue.etl]\n", "settings.toml: [queue]: unknown table; a settings file has the tables queues, tenants, schedules, "
                      "breaker_defaults and breakers (did you mean queues?)"),
    ("db = \"x.db\"\n", "settings.toml: db: unknown key; a settings file has the tables"),
    ("[[queues]]\nname = \"etl\"\n", "settings.toml: [[queues]]: not a table: write [queues.NAME]"),
    ("queues = { etl = 3 }\n", "settings.toml: [queues] etl: not a table: write [queues.etl]"),
])
def test_a_bad_file_is_refused_naming_the_table_and_the_key(text, message):
    with pytest.raises(InvalidInput) as refused:
        load_settings(text, "settings.toml")
    assert refused.value.message.startswith(message), refused.value.message
    assert "\n" not in refused.value.message


def test_a_file_is_checked_whole_before_anything_is_written(queue, db_location):
    apply(queue, SPEC_EXAMPLE)
    before = table_dump(db_location)
    with pytest.raises(InvalidInput, match="weight"):
        apply(queue, SPEC_EXAMPLE.replace("max_length = 10000", "max_length = 1").replace("weight = 2", "weight = 0"))
    assert table_dump(db_location) == before


def test_settings_compare_by_value_whatever_file_they_came_from():
    assert replace(load_settings(SPEC_EXAMPLE, "a.toml"), source="b.toml") == load_settings(SPEC_EXAMPLE, "b.toml")
