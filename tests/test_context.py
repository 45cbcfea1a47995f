"""`retrying`: a change that lost a race runs again, a bounded number of times."""

import pytest

from tqcli.core import context
from tqcli.core.context import CONFLICT_RETRIES, retrying
from tqcli.errors import StorageConflict


def test_a_change_that_lost_a_race_runs_again_until_it_lands(monkeypatch):
    monkeypatch.setattr(context.time, "sleep", lambda seconds: None)
    calls = []

    @retrying
    def change(value):
        calls.append(value)
        if len(calls) < 3:
            raise StorageConflict("deadlock detected; nothing was changed")
        return value * 2

    assert change(21) == 42 and calls == [21, 21, 21]


def test_a_change_that_keeps_losing_is_a_storage_error_after_the_last_try(monkeypatch):
    monkeypatch.setattr(context.time, "sleep", lambda seconds: None)
    calls = []

    @retrying
    def change():
        calls.append(1)
        raise StorageConflict("deadlock detected; nothing was changed")

    with pytest.raises(StorageConflict) as raised:
        change()
    assert len(calls) == CONFLICT_RETRIES and raised.value.exit_code == 7


def test_other_errors_are_not_retried():
    calls = []

    @retrying
    def change():
        calls.append(1)
        raise ValueError("a bug, not a race")

    with pytest.raises(ValueError):
        change()
    assert calls == [1]
