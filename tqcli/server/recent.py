"""Answers of the costly reads, kept for a second per user and query.

`GET /api/v1/tasks`, `/queues` and `/tenants` count every task by queue and
state: a scan whose cost grows with the table (about 35 ms at 300,000
tasks). Dashboards and scripts poll them many times a second, so each
server process computes one such answer at most once a second per user and
query and hands the same one to everyone else asking in that second.

An answer is dropped sooner, as soon as the events poller has seen a new
audit entry (every change appends one), so a page that refreshes because an
event arrived never gets the answer from before it. A change, wherever it
was made, thus shows in these answers within the poller's period (half a
second), and within a second at most. Dropping answers on every change made
through the server would defeat the point: 20 submits a second would mean
20 scans a second. A denial is never kept: each one is checked and audited.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Any, Callable, Hashable

from fastapi import Request

FRESH_FOR = 1.0  # seconds an answer is handed out again
KEPT = 256  # answers kept at most (the least recently stored go first)


class RecentAnswers:
    """A small map from (user, query) to an answer and when it was computed."""

    def __init__(self, fresh_for: float = FRESH_FOR, kept: int = KEPT) -> None:
        self.fresh_for = fresh_for
        self.kept = kept
        self._answers: OrderedDict[Hashable, tuple[float, int, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, version: int, compute: Callable[[], Any]) -> Any:
        """The answer for `key` computed at `version` less than `fresh_for` seconds ago, else `compute()`'s (kept for the next asker)."""
        now = time.monotonic()
        with self._lock:
            kept = self._answers.get(key)
            if kept is not None and kept[1] == version and now - kept[0] < self.fresh_for:
                return kept[2]
        answer = compute()  # outside the lock: two first askers may both compute, never wait on each other
        with self._lock:
            self._answers[key] = (now, version, answer)
            self._answers.move_to_end(key)
            while len(self._answers) > self.kept:
                self._answers.popitem(last=False)
        return answer


def recent_answer(request: Request, key: Hashable, compute: Callable[[], Any]) -> Any:
    """`compute()`'s answer for `key` (which names the user and the query), or the same answer given within the last second.

    The version is the newest audit seq the server's events poller has seen.
    """
    store: RecentAnswers = request.app.state.recent
    return store.get(key, request.app.state.events.cursor, compute)
