"""Cron expressions evaluated the way cron(8) does, in an IANA time zone.

croniter walks wall-clock times (naive datetimes, so no time zone is
involved); this module turns each wall time into the real instants it
means, keeping cron(8)'s promise across DST changes (Vixie/Debian cron):

- a job whose minute or hour field starts with `*` (`*`, `*/15`) runs in
  every real hour: twice when a wall-clock hour repeats, not at all in the
  skipped hour;
- any other job runs once, at the first occurrence, when its time repeats,
  and right after the jump when its time is skipped.

croniter alone fires a fixed-time job twice when the hour repeats (it
treats both folds as matches), hence this layer. The day fields follow
cron(8): when both are restricted a day matching either runs the job;
when either starts with `*` both must match.

Only the standard five fields (numbers, `*`, ranges, steps, lists, month
and weekday names) and the aliases `@yearly @annually @monthly @weekly
@daily @midnight @hourly` are accepted.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Iterator
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from croniter.croniter import CroniterBadCronError, CroniterBadDateError, CroniterNotAlphaError

from tqcli.errors import InvalidInput

ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_ITEM = re.compile(r"(?:(\*)|([0-9A-Za-z]+)(?:-([0-9A-Za-z]+))?)(?:/([0-9]+))?")
_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
# name, lowest, highest, names (numbered from `lowest`) of the five fields
_FIELDS = [
    ("minute", 0, 59, []),
    ("hour", 0, 23, []),
    ("day of month", 1, 31, []),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _DAYS),
]
_MARGIN = timedelta(hours=3)  # more than any DST shift: wall times this far apart never interleave
_NEVER = timedelta(days=366 * 50)
_US = 1_000_000


def _us(moment: datetime) -> int:
    return int(moment.timestamp()) * _US + moment.microsecond


def check_zone(name: str) -> ZoneInfo:
    """The IANA zone `name`; an unknown zone is invalid input."""
    try:
        if not name or name != name.strip() or name.startswith(("/", ".")) or ".." in name:
            raise ValueError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidInput(f"unknown time zone {name!r}: use an IANA name such as UTC, Europe/Berlin or America/New_York") from None


def _value(text: str, field: tuple[str, int, int, list[str]]) -> int:
    name, low, high, names = field
    if text.isdigit():
        value = int(text)
    elif text.lower() in names:
        value = low + names.index(text.lower())
    else:
        known = f" (or a name: {'-'.join((names[0], names[-1]))})" if names else ""
        raise ValueError(f"{name} {text!r} is not a number{known}")
    if not low <= value <= high:
        raise ValueError(f"{name} {value} is out of range {low}-{high}")
    return value


def _check_item(item: str, field: tuple[str, int, int, list[str]]) -> None:
    name, low, high, _ = field
    match = _ITEM.fullmatch(item)
    if match is None:
        raise ValueError(f"{name} {item!r} is not a value, range (a-b), step (*/n) or list (a,b)")
    star, first, last, step = match.groups()
    if first is not None:
        start = _value(first, field)
        if last is not None and _value(last, field) < start:
            hint = " (Sunday is 0 or 7: mon-sun is 1-7)" if name == "day of week" else ""
            raise ValueError(f"{name} range {item!r} runs backwards; write it low-high{hint}")
    if step is not None and not (step.isdigit() and 1 <= int(step) <= high - low + 1):
        raise ValueError(f"{name} step {step!r} must be a whole number from 1 to {high - low + 1}")


def _check_fields(expression: str) -> list[str]:
    fields = expression.split()
    if len(fields) != 5:
        raise InvalidInput(
            f"invalid cron expression {expression!r}: use five fields (minute hour day-of-month month day-of-week) "
            f"or one of {', '.join(ALIASES)}"
        )
    for text, field in zip(fields, _FIELDS):
        try:
            for item in text.split(","):
                _check_item(item, field)
        except ValueError as exc:
            raise InvalidInput(f"invalid cron expression {expression!r}: {exc}") from None
    return fields


class CronSchedule:
    """One cron expression in one zone: its fire times as UTC microseconds."""

    def __init__(self, expression: str, zone: str = "UTC") -> None:
        text = str(expression).strip()
        normalized = ALIASES.get(text.lower(), text)
        if normalized.startswith("@"):
            raise InvalidInput(f"invalid cron expression {text!r}: the aliases are {', '.join(ALIASES)}")
        minute, hour, day, month, weekday = _check_fields(normalized)
        self.expression = text
        self.zone_name = zone
        self.zone = check_zone(zone)
        self._fields = " ".join((minute, hour, day, month, weekday))
        self.every_hour = minute.startswith("*") or hour.startswith("*")
        self._day_or = not (day.startswith("*") or weekday.startswith("*"))
        try:
            croniter(self._fields, datetime(2000, 1, 1), day_or=self._day_or)
        except (CroniterBadCronError, CroniterNotAlphaError, ValueError, KeyError) as exc:
            raise InvalidInput(f"invalid cron expression {text!r}: {exc}") from None
        if not self.next_after(_us(datetime(2000, 1, 1, tzinfo=timezone.utc)), 1):
            raise InvalidInput(f"cron expression {text!r} never fires (no such date in any year)")

    # -- wall time <-> instants -------------------------------------------

    def _wall(self, us: int) -> datetime:
        return datetime.fromtimestamp(us / _US, tz=self.zone).replace(tzinfo=None)

    def _walls(self, start: datetime, end: datetime) -> Iterator[datetime]:
        """Matching wall times from `start` to `end`, both included."""
        walker = croniter(self._fields, start - timedelta(seconds=1), day_or=self._day_or)
        while True:
            try:
                wall = walker.get_next(datetime)
            except CroniterBadDateError:
                return
            if wall > end:
                return
            yield wall

    def _instants(self, wall: datetime) -> list[int]:
        """The real instants one wall time means, by cron(8)'s DST rules."""
        first = wall.replace(tzinfo=self.zone, fold=0)
        second = wall.replace(tzinfo=self.zone, fold=1)
        if first.utcoffset() == second.utcoffset():
            return [_us(first)]
        exists = first.astimezone(timezone.utc).astimezone(self.zone).replace(tzinfo=None) == wall
        if exists:  # the hour repeats
            return [_us(first), _us(second)] if self.every_hour else [_us(first)]
        if self.every_hour:  # a skipped hour is not a real hour
            return []
        later = wall
        while True:  # right after the jump: the first wall time that exists
            later += timedelta(minutes=1)
            moment = later.replace(tzinfo=self.zone, fold=0)
            if moment.astimezone(timezone.utc).astimezone(self.zone).replace(tzinfo=None) == later:
                return [_us(moment)]

    def _between(self, start: datetime, end: datetime) -> list[int]:
        return sorted({instant for wall in self._walls(start, end) for instant in self._instants(wall)})

    # -- queries -----------------------------------------------------------

    def next_after(self, after_us: int, count: int = 1) -> list[int]:
        """The first `count` fire times strictly after `after_us`."""
        start = self._wall(after_us) - _MARGIN
        span = timedelta(hours=2)
        while True:
            end = start + span
            found = [instant for instant in self._between(start, end) if instant > after_us]
            if len(found) >= count and self._wall(found[count - 1]) + _MARGIN <= end:
                return found[:count]
            if span > _NEVER:
                return found[:count]
            span *= 4

    def latest_between(self, since_us: int, until_us: int, limit: int = 1) -> list[int]:
        """Up to `limit` of the latest fire times in (since, until], oldest first."""
        end = self._wall(until_us) + _MARGIN
        floor = self._wall(since_us) - _MARGIN
        span = timedelta(hours=2)
        while True:
            start = max(end - span, floor)
            found = [instant for instant in self._between(start, end) if since_us < instant <= until_us]
            if start <= floor or (len(found) >= limit and start + _MARGIN <= self._wall(found[-limit])):
                return found[-limit:] if limit else []
            span *= 4
