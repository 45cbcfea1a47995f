"""Cron evaluation: cron(8)'s rules, DST in real zones, checked against an independent implementation."""

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest
from cronsim import CronSim

from tqcli.errors import InvalidInput
from tqcli.scheduler.cron import CronSchedule


def us(text):
    return int(datetime.fromisoformat(text).timestamp() * 1_000_000)


def local(values, zone):
    return [datetime.fromtimestamp(v / 1e6, ZoneInfo(zone)).isoformat() for v in values]


# Vectors from docs/research (croniter 7 + zoneinfo, corrected where cron(8) fires once).
VECTORS = [
    ("*/15 * * * *", "UTC", "2025-01-01T10:07:00+00:00", ["2025-01-01T10:15:00+00:00", "2025-01-01T10:30:00+00:00", "2025-01-01T10:45:00+00:00"]),
    ("0 9 * * mon-fri", "UTC", "2025-01-03T09:00:00+00:00", ["2025-01-06T09:00:00+00:00", "2025-01-07T09:00:00+00:00"]),
    ("0 0 13 * fri", "UTC", "2025-01-01T00:00:00+00:00", ["2025-01-03T00:00:00+00:00", "2025-01-10T00:00:00+00:00", "2025-01-13T00:00:00+00:00", "2025-01-17T00:00:00+00:00"]),
    ("@hourly", "UTC", "2025-01-01T10:59:59+00:00", ["2025-01-01T11:00:00+00:00", "2025-01-01T12:00:00+00:00"]),
    ("30 2 * * *", "Europe/Berlin", "2025-03-29T03:00:00+01:00", ["2025-03-30T03:00:00+02:00", "2025-03-31T02:30:00+02:00"]),
    ("30 2 * * *", "Europe/Berlin", "2025-10-25T03:00:00+02:00", ["2025-10-26T02:30:00+02:00", "2025-10-27T02:30:00+01:00"]),
    ("0 9 * * *", "Europe/Berlin", "2025-03-29T10:00:00+01:00", ["2025-03-30T09:00:00+02:00", "2025-03-31T09:00:00+02:00"]),
    ("0 * * * *", "America/New_York", "2025-11-02T00:00:00-04:00", ["2025-11-02T01:00:00-04:00", "2025-11-02T01:00:00-05:00", "2025-11-02T02:00:00-05:00", "2025-11-02T03:00:00-05:00"]),
    ("*/30 * * * *", "America/New_York", "2025-03-09T01:00:00-05:00", ["2025-03-09T01:30:00-05:00", "2025-03-09T03:00:00-04:00", "2025-03-09T03:30:00-04:00"]),
    ("30 1 * * *", "America/New_York", "2025-11-01T12:00:00-04:00", ["2025-11-02T01:30:00-04:00", "2025-11-03T01:30:00-05:00"]),
]


@pytest.mark.parametrize("expression, zone, start, expected", VECTORS)
def test_known_vectors(expression, zone, start, expected):
    assert local(CronSchedule(expression, zone).next_after(us(start), len(expected)), zone) == expected


def test_fixed_time_in_the_repeated_hour_fires_once():
    fires = CronSchedule("30 2 * * *", "Europe/Berlin").next_after(us("2025-10-26T00:00:00+02:00"), 2)
    assert local(fires, "Europe/Berlin") == ["2025-10-26T02:30:00+02:00", "2025-10-27T02:30:00+01:00"]


def test_wildcard_minute_in_the_repeated_hour_fires_in_both_hours():
    fires = CronSchedule("*/30 2 * * *", "Europe/Berlin").next_after(us("2025-10-26T01:59:00+02:00"), 4)
    assert local(fires, "Europe/Berlin") == ["2025-10-26T02:00:00+02:00", "2025-10-26T02:30:00+02:00", "2025-10-26T02:00:00+01:00", "2025-10-26T02:30:00+01:00"]


def test_skipped_fixed_times_run_once_right_after_the_jump():
    fires = CronSchedule("15,45 2 * * *", "Europe/Berlin").next_after(us("2025-03-30T00:00:00+01:00"), 2)
    assert local(fires, "Europe/Berlin") == ["2025-03-30T03:00:00+02:00", "2025-03-31T02:15:00+02:00"]


def test_day_of_month_or_day_of_week_when_both_are_restricted():
    assert CronSchedule("0 0 1 * mon").next_after(us("2025-09-01T00:00:00+00:00"), 3) == [
        us("2025-09-08T00:00:00+00:00"), us("2025-09-15T00:00:00+00:00"), us("2025-09-22T00:00:00+00:00")
    ]


def test_a_day_field_starting_with_a_star_means_both_must_match():
    # cron(8): */2 starts with '*', so odd days AND Mondays
    fires = CronSchedule("0 0 */2 * mon").next_after(us("2025-01-01T00:00:00+00:00"), 3)
    assert [datetime.fromtimestamp(f / 1e6, timezone.utc).day for f in fires] == [13, 27, 3]


def test_half_hour_dst_shift_fires_in_every_real_hour():
    # Lord Howe goes from 02:00 +11:00 back to 01:30 +10:30; 02:00-02:59 then happens once.
    fires = CronSchedule("*/20 2 * * *", "Australia/Lord_Howe").next_after(us("2025-04-05T10:00:00+00:00"), 3)
    assert local(fires, "Australia/Lord_Howe") == ["2025-04-06T02:00:00+10:30", "2025-04-06T02:20:00+10:30", "2025-04-06T02:40:00+10:30"]
    fixed = CronSchedule("45 1 * * *", "Australia/Lord_Howe").next_after(us("2025-04-05T10:00:00+00:00"), 2)
    assert local(fixed, "Australia/Lord_Howe") == ["2025-04-06T01:45:00+11:00", "2025-04-07T01:45:00+10:30"]


def test_latest_between_gives_only_the_latest_or_up_to_a_limit():
    cron = CronSchedule("*/10 * * * *")
    since, until = us("2025-01-01T10:00:00+00:00"), us("2025-01-01T11:05:00+00:00")
    assert cron.latest_between(since, until, 1) == [us("2025-01-01T11:00:00+00:00")]
    assert len(cron.latest_between(since, until, 100)) == 6
    assert cron.latest_between(since, since + 1, 5) == []
    assert len(CronSchedule("* * * * *").latest_between(since, since + 10 * 86400 * 10**6, 100)) == 100


@pytest.mark.parametrize(
    "expression, message",
    [
        ("0 0 30 2 *", "never fires"),
        ("61 * * * *", "minute 61 is out of range 0-59"),
        ("0 24 * * *", "hour 24 is out of range 0-23"),
        ("0 0 0 * *", "day of month 0 is out of range 1-31"),
        ("0 0 * 13 *", "month 13 is out of range 1-12"),
        ("0 0 * * 8", "day of week 8 is out of range 0-7"),
        ("5-1 * * * *", "minute range '5-1' runs backwards"),
        ("0 0 * * fri-mon", "day of week range 'fri-mon' runs backwards; write it low-high \\(Sunday is 0 or 7"),
        ("*/0 * * * *", "minute step '0' must be a whole number from 1 to 60"),
        ("0 */25 * * *", "hour step '25'"),
        ("1,,2 * * * *", "minute '' is not a value"),
        ("* * * *", "five fields"),
        ("0 0 * * * *", "five fields"),
        ("@reboot", "aliases are"),
        ("0 0 L * *", "day of month 'L' is not a number"),
        ("0 9 * * funday", "day of week 'funday' is not a number \\(or a name: sun-sat\\)"),
        ("0 0 * foo *", "month 'foo' is not a number \\(or a name: jan-dec\\)"),
        ("0 0 ? * *", "day of month '\\?' is not a value"),
        ("* * * * fri#2", "is not a value"),
        ("", "five fields"),
    ],
)
def test_invalid_expressions(expression, message):
    with pytest.raises(InvalidInput, match=message):
        CronSchedule(expression)


@pytest.mark.parametrize("zone", ["Mars/Base", "", "../etc/passwd", "Europe/"])
def test_invalid_zones(zone):
    with pytest.raises(InvalidInput, match="unknown time zone"):
        CronSchedule("0 0 * * *", zone)


EXPRESSIONS = [
    "* * * * *", "*/7 * * * *", "0 * * * *", "30 2 * * *", "15,45 1-3 * * *", "0 9 * * mon-fri", "0 0 1 * *",
    "0 0 13 * fri", "5 4 * * sun", "0 */6 * * *", "*/20 2 * * *", "0 0 1 1 *", "59 23 31 12 *", "0 12 * jan,jul *",
    "@daily", "@weekly", "@monthly", "0 1 * * 7", "10-50/20 1,2 * * *",
]
# Zones with whole-hour DST shifts (cronsim mis-steps on Lord Howe's half-hour one; see the test below).
ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Europe/London", "Asia/Kolkata"]
STARTS = ["2025-03-08T18:00:00+00:00", "2025-03-29T20:00:00+00:00", "2025-10-25T20:00:00+00:00", "2025-11-01T20:00:00+00:00", "2025-04-05T10:00:00+00:00", "2025-06-15T12:34:00+00:00"]


def reference(expression, zone, start_us, count):
    """What Debian cron would do, by cronsim (an independent implementation)."""
    start = datetime.fromtimestamp(start_us / 1e6, ZoneInfo(zone))
    aliases = {"@daily": "0 0 * * *", "@weekly": "0 0 * * 0", "@monthly": "0 0 1 * *"}
    walker = CronSim(aliases.get(expression, expression), start)
    found = []
    while len(found) < count:
        moment = next(walker)
        found.append(int(moment.timestamp() * 1_000_000))
    return found


@pytest.mark.parametrize("zone", ZONES)
@pytest.mark.parametrize("expression", EXPRESSIONS)
def test_agrees_with_an_independent_cron_implementation(expression, zone):
    cron = CronSchedule(expression, zone)
    for start in STARTS:
        ours = cron.next_after(us(start), 12)
        theirs = reference(expression, zone, us(start), 12)
        assert ours == theirs, (expression, zone, start, local(ours, zone), local(theirs, zone))
