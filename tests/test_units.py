"""Durations, times and names: what users type and what they get back."""

import pytest

from tqcli.errors import InvalidInput
from tqcli.units import check_name, format_duration, format_time, parse_duration, parse_time


@pytest.mark.parametrize(
    "text, seconds",
    [("30s", 30), ("5m", 300), ("2h", 7200), ("1d", 86400), ("90", 90), ("0.5", 0.5), ("1h30m", 5400), (" 10S ", 10), ("0", 0)],
)
def test_parse_duration_accepts_units_and_plain_seconds(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "5x", "-5", "5 m", "m5", "1h-2m", "nan", "inf", "1e400", "5mm"])
def test_parse_duration_rejects_junk_with_a_hint(text):
    with pytest.raises(InvalidInput, match="use seconds or a number with s, m, h or d"):
        parse_duration(text)


def test_format_duration_is_short():
    assert format_duration(45) == "45s"
    assert format_duration(5400) == "1h30m"
    assert format_duration(172800) == "2d"


def test_times_round_trip_through_iso_8601_with_z():
    us = parse_time("2026-11-28T09:30:00Z")
    assert format_time(us) == "2026-11-28T09:30:00Z"
    assert format_time(us + 250_000) == "2026-11-28T09:30:00.250000Z"
    assert parse_time("2026-11-28T10:30:00+01:00") == us


def test_time_without_offset_is_local_time(monkeypatch):
    monkeypatch.setenv("TZ", "Europe/Berlin")
    import time

    time.tzset()
    try:
        assert format_time(parse_time("2026-11-28 10:30")) == "2026-11-28T09:30:00Z"
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


@pytest.mark.parametrize("text", ["yesterday", "2026-13-01", "28/11/2026", ""])
def test_bad_times_are_invalid_input(text):
    with pytest.raises(InvalidInput, match="ISO 8601"):
        parse_time(text)


@pytest.mark.parametrize("name", ["default", "etl.nightly", "a-b_c", "x" * 64])
def test_valid_names(name):
    assert check_name(name, what="queue") == name


@pytest.mark.parametrize("name", ["", "x" * 65, "with space", "slash/y", "ümlaut", "semi;colon", "\u212a", "\uff41bc", "\u0131", "caf\u00e9", "\u0663"])
def test_invalid_names_say_exactly_which_ascii_characters_are_allowed(name):
    with pytest.raises(InvalidInput) as caught:
        check_name(name, what="queue")
    assert "use 1-64 characters of A-Z a-z 0-9 . _ - (ASCII)" in caught.value.message


def test_a_non_ascii_letter_in_a_name_is_named_with_its_code_point():
    with pytest.raises(InvalidInput, match=r"U\+212A, is not one of them"):
        check_name("\u212aelvin", what="tenant")


def test_paused_gc_turns_the_collector_off_inside_and_back_on_after():
    import gc

    from tqcli.nogc import paused_gc

    assert gc.isenabled()
    with pytest.raises(ValueError):
        with paused_gc():
            assert not gc.isenabled()
            raise ValueError("the block failed")
    assert gc.isenabled()
    gc.disable()
    try:
        with paused_gc():
            pass
        assert not gc.isenabled()  # it was off before: it stays off
    finally:
        gc.enable()
