"""Tasks finished per minute over a recent window (the dashboard's chart), counted from their finish times.

The tasks are read through `TaskService.finished_after` in pages of bounded
size (the index on finish time), at most `MAX_PAGES` of them per answer, so
one request costs a bounded number of queries however busy the window was;
when the window holds more than that, counting stops where the reading did
(the newest minutes come up short) and the answer says `truncated`.
"""

from __future__ import annotations

from typing import Any

from tqcli.errors import InvalidInput
from tqcli.units import format_time

STEP = 60  # seconds per point of the series
US = 1_000_000
MAX_MINUTES = 24 * 60
PAGE = 5000
MAX_PAGES = 40
OUTCOMES = ("completed", "failed", "cancelled")


def throughput(
    tasks: Any, now_us: int, *, minutes: int = 60, queue: str | None = None, tenant: str | None = None,
    page: int = PAGE, max_pages: int = MAX_PAGES,
) -> dict[str, Any]:
    """`{"step", "since", "series": [{"at", "completed", "failed", "cancelled"}], "truncated"}` for the last `minutes` minutes.

    `tasks` is a `TaskService` (its `finished_after` checks who may read
    what); the last point is the minute `now_us` falls in, so `since` is
    the start of the minute `minutes - 1` before it.
    """
    if isinstance(minutes, bool) or not isinstance(minutes, int) or not 1 <= minutes <= MAX_MINUTES:
        raise InvalidInput(f"invalid minutes {minutes!r}: give 1 to {MAX_MINUTES} (a day)")
    step_us = STEP * US
    end = (now_us // step_us + 1) * step_us
    since = end - minutes * step_us
    counts = [dict.fromkeys(OUTCOMES, 0) for _ in range(minutes)]
    cursor = (since, 0)  # task ids start at 1: every task finished at `since` or later
    truncated = False
    for _ in range(max_pages):
        rows, after = tasks.finished_after(cursor, queue=queue, tenant=tenant, limit=page)
        if after == cursor:
            break
        cursor = after
        for finished_at, _task_id, _queue, _tenant, state in rows:
            if since <= finished_at < end and state in OUTCOMES:
                counts[(finished_at - since) // step_us][state] += 1
        if cursor[0] >= end:
            break
    else:
        truncated = True
    series = [{"at": format_time(since + index * step_us), **count} for index, count in enumerate(counts)]
    return {"step": STEP, "since": format_time(since), "series": series, "truncated": truncated}
