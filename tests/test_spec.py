"""Validation of what a submit asks for, wherever it comes from."""

import pytest

from tqcli.core.spec import MAX_PAYLOAD_BYTES, TaskSpec, parse_json, parse_payload, spec_from_mapping
from tqcli.errors import InvalidInput


def test_defaults_follow_the_spec():
    spec = TaskSpec("app.jobs:run")
    assert (spec.backend, spec.queue, spec.tenant, spec.priority, spec.max_retries, spec.backoff) == ("simple", "default", "default", 0, 3, 5.0)
    assert spec.display_name == "app.jobs:run"
    assert spec.service_key == "simple:app.jobs:run"
    assert spec.payload_json == "{}"


@pytest.mark.parametrize("target", ["app.jobs", "app jobs:run", ":run", "app.:run", "app.jobs:", "1app:run"])
def test_simple_targets_must_be_function_paths(target):
    with pytest.raises(InvalidInput, match="package.module:function"):
        TaskSpec(target)


def test_shell_targets_are_free_text():
    assert TaskSpec("echo hi && true", backend="shell").target == "echo hi && true"


@pytest.mark.parametrize("priority", [-101, 101, True, 1.5, "3"])
def test_priority_must_be_a_whole_number_in_range(priority):
    with pytest.raises(InvalidInput, match="priority"):
        TaskSpec("a:b", priority=priority)


def test_payload_must_be_an_object():
    with pytest.raises(InvalidInput, match="must be a JSON object, not an array"):
        parse_payload("[1, 2]")
    with pytest.raises(InvalidInput, match="not a string"):
        parse_payload('"x"')


@pytest.mark.parametrize("text, message", [("{", "line 1 column 2"), ('{"a": NaN}', "NaN"), ('{"a": 1, "a": 2}', "duplicate key 'a'"),
    ('{"x": {"b": 1, "c": 2, "b": 3}}', "duplicate key 'b'"), ('[{"a": 1}, {"k": 1, "a": 2, "k": 3}]', "duplicate key 'k'"),
])
def test_strict_json(text, message):
    with pytest.raises(InvalidInput, match=message):
        parse_json(text, what="payload")


def test_payload_over_one_mebibyte_is_refused():
    big = {"data": "x" * MAX_PAYLOAD_BYTES}
    with pytest.raises(InvalidInput, match="1 MiB"):
        TaskSpec("a:b", payload=big)


def test_payload_just_under_the_limit_is_fine():
    payload = {"d": "x" * (MAX_PAYLOAD_BYTES - 10)}
    assert len(TaskSpec("a:b", payload=payload).payload_json) == MAX_PAYLOAD_BYTES - 2


def test_mapping_accepts_durations_as_strings_or_numbers():
    spec = spec_from_mapping({"target": "a:b", "timeout": "5m", "backoff": 2, "delay": "30s", "priority": "7"})
    assert (spec.timeout, spec.backoff, spec.delay, spec.priority) == (300, 2, 30, 7)


def test_mapping_names_unknown_keys():
    with pytest.raises(InvalidInput, match="unknown key 'prio'"):
        spec_from_mapping({"target": "a:b", "prio": 3})


def test_mapping_requires_a_target():
    with pytest.raises(InvalidInput, match="missing key 'target'"):
        spec_from_mapping({"payload": {}})


def test_mapping_takes_null_as_not_given_except_where_a_value_is_required():
    spec = spec_from_mapping({"target": "a:b", "queue": None, "timeout": None, "payload": None, "env": None, "at": None})
    assert (spec.queue, spec.timeout, spec.payload, spec.at) == ("default", None, {}, None)
    for key, named in (("priority", "priority"), ("max_retries", "max retries"), ("depends_on", "depends_on")):
        with pytest.raises(InvalidInput, match=f"invalid {named} None"):
            spec_from_mapping({"target": "a:b", key: None})


def test_mapping_refuses_an_unknown_key_before_a_bad_value():
    with pytest.raises(InvalidInput, match="unknown key 'prio'"):
        spec_from_mapping({"target": 5, "priority": "x", "prio": 3})


def test_defaults_apply_under_explicit_keys():
    spec = spec_from_mapping({"target": "a:b", "priority": 1}, defaults={"queue": "etl", "priority": 9})
    assert (spec.queue, spec.priority) == ("etl", 1)


def test_delay_and_at_are_exclusive():
    with pytest.raises(InvalidInput, match="either delay or at"):
        spec_from_mapping({"target": "a:b", "delay": "1m", "at": "2026-01-01T00:00:00Z"})
