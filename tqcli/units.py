"""Parsing and formatting of durations, times and names.

Times inside tqcli are integers: microseconds since the Unix epoch, UTC.
They leave the library as ISO 8601 strings ending in `Z`.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone

from tqcli.errors import InvalidInput

US_PER_SECOND = 1_000_000
# Bounds that keep every time tqcli stores printable (datetime ends at year 9999).
MAX_DURATION = 100 * 365 * 86400.0
EARLIEST_TIME = 0
LATEST_TIME = int(datetime(9999, 1, 1, tzinfo=timezone.utc).timestamp()) * US_PER_SECOND

_DURATION_PART = r"(\d+(?:\.\d+)?)([smhd])"
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_GOOD_NAMES: set[str] = set()
_NAME_CHARACTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")


def parse_duration(text: str, *, what: str = "duration") -> float:
    """Seconds in `text`: `30s`, `5m`, `2h`, `1d`, `1h30m` or plain seconds (`90`, `0.5`); at most 100 years."""
    seconds = _duration_seconds(text, what)
    return check_seconds(seconds, what=what, text=text)


def check_seconds(seconds: float, *, what: str, text: object = None) -> float:
    """`seconds` if it is a duration tqcli can store: 0 up to 100 years."""
    if not 0 <= seconds <= MAX_DURATION:
        shown = repr(text) if text is not None else f"{seconds:g}"
        raise InvalidInput(f"invalid {what} {shown}: use at most 36500d (100 years)")
    return seconds


def _duration_seconds(text: str, what: str) -> float:
    value = str(text).strip().lower()
    hint = f"invalid {what} {text!r}: use seconds or a number with s, m, h or d, e.g. 30s, 5m, 2h, 1d"
    if not value:
        raise InvalidInput(hint)
    try:
        seconds = float(value)
    except ValueError:
        seconds = None
    if seconds is not None:
        if not seconds >= 0 or seconds == float("inf"):
            raise InvalidInput(hint)
        return seconds
    pos = 0
    total = 0.0
    for match in re.finditer(_DURATION_PART, value):
        if match.start() != pos:
            raise InvalidInput(hint)
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if pos != len(value) or pos == 0:
        raise InvalidInput(hint)
    return total


def format_duration(seconds: float) -> str:
    """A short human form of `seconds`: `45s`, `5m`, `1h30m`, `2d`."""
    if seconds < 60:
        return f"{seconds:g}s"
    parts = []
    remaining = int(round(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if remaining >= size:
            parts.append(f"{remaining // size}{unit}")
            remaining %= size
    return "".join(parts)


def parse_time(text: str) -> int:
    """Microseconds since the epoch of an ISO 8601 time; a time without offset is local time."""
    value = str(text).strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    what = f"time {text!r}"
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"invalid {what}: use ISO 8601, e.g. 2026-11-28T09:30:00Z or 2026-11-28 09:30") from None
    try:
        if parsed.tzinfo is None:
            parsed = parsed.astimezone()  # the machine's local zone, as `date` would read it
        us = int(parsed.timestamp() * US_PER_SECOND)
    except (ValueError, OverflowError, OSError):  # beyond what the platform's clock functions take
        us = -1
    return check_instant(us, what=what)


def check_instant(us: int, *, what: str) -> int:
    """`us` if it lies between 1970 and the year 9999, the times tqcli can store."""
    if not EARLIEST_TIME <= us < LATEST_TIME:
        raise InvalidInput(f"invalid {what}: use a time between 1970 and the year 9999")
    return us


def format_time(us: int | None) -> str | None:
    """ISO 8601 UTC with `Z`; fractional seconds only when there are any."""
    if us is None:
        return None
    us = min(max(us, EARLIEST_TIME), LATEST_TIME)  # stored times are checked; this only guards old rows
    seconds, micros = divmod(us, US_PER_SECOND)
    stamp = datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{micros:06d}Z" if micros else f"{stamp}Z"


def check_filters(*, queue: str | None = None, tenant: str | None = None) -> None:
    """Refuse a `--queue`/`--tenant` filter no queue or tenant could be named (instead of matching nothing)."""
    if queue is not None:
        check_name(queue, what="queue")
    if tenant is not None:
        check_name(tenant, what="tenant")


MAX_REASON = 10_000  # characters of a cancel's reason, kept in the task's error and its audit entry


def check_reason(reason: str | None) -> None:
    """Refuse a cancel reason that is not text, holds a NUL (which PostgreSQL's text cannot store) or is over MAX_REASON."""
    if reason is None:
        return
    if not isinstance(reason, str) or "\x00" in reason:
        raise InvalidInput("invalid reason: give plain text (it cannot hold a NUL character)")
    if len(reason) > MAX_REASON:
        raise InvalidInput(f"invalid reason: longer than {MAX_REASON} characters; say why in fewer")


def check_name(value: str, *, what: str) -> str:
    """`value` if it is a valid queue, tenant, schedule or DAG task name (1-64 of ASCII A-Za-z0-9._-)."""
    if value in _GOOD_NAMES:
        return value
    if not isinstance(value, str) or not 1 <= len(value) <= 64 or not _NAME_CHARACTERS.issuperset(value):
        bad = next((char for char in value if char not in _NAME_CHARACTERS), None) if isinstance(value, str) else None
        which = f" ({bad!r}, U+{ord(bad):04X}, is not one of them)" if bad is not None and not bad.isascii() else ""
        raise InvalidInput(f"invalid {what} name {value!r}: use 1-64 characters of A-Z a-z 0-9 . _ - (ASCII){which}")
    if len(_GOOD_NAMES) < 4096:  # bulk submits repeat the same few names
        _GOOD_NAMES.add(value)
    return value
