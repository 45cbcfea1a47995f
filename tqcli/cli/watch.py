"""`tqcli status --watch`: the status redrawn every second until Ctrl-C, which exits 0.

On a terminal it is a live view, 80 columns wide, redrawn in place by rich
(no clearing, so no flicker): tasks per queue and state with a sparkline of
completions per minute over the last ten minutes, the running tasks with
their worker and how long they have run, and the newest failures. Started
before the database exists, it says it waits for it and looks again every
second. Into a pipe it prints the plain `status` output once a second;
with `--json`, one JSON document per line once a second.
"""

from __future__ import annotations

import io
import json
import sys
import time
from collections import Counter
from contextlib import redirect_stdout
from typing import Any, Callable

from tqcli.cli import render
from tqcli.errors import NotFound, StorageBusy
from tqcli.units import US_PER_SECOND, format_duration

REDRAW_EVERY = 1.0  # seconds
WIDTH = 80  # the view never needs more columns than this
WINDOW_MINUTES = 10  # the sparkline's span, one character a minute
MINUTE = 60 * US_PER_SECOND
PAGES_PER_FRAME = 4  # catching up on a busy database takes a few frames, never one long read
RUNNING_SHOWN = 8
FAILURES_SHOWN = 5
QUEUES_SHOWN = 12
SPARKS = "▁▂▃▄▅▆▇█"


class Throughput:
    """Completions per minute and queue over the last WINDOW_MINUTES, kept up to date through the index on finished time.

    The first frames read what finished in the window, later ones only what
    finished since the last read, so a frame's cost follows the work done
    since the one before, never the size of the table.
    """

    def __init__(self, now: int) -> None:
        self.cursor = (now - WINDOW_MINUTES * MINUTE, 0)
        self.per_minute: Counter[tuple[str, int]] = Counter()

    def catch_up(self, queue_obj: Any, *, queue: str | None, tenant: str | None, now: int) -> None:
        """Count the completions since the last call (a few bounded reads at most), and forget minutes out of the window."""
        for _ in range(PAGES_PER_FRAME):
            rows, cursor = queue_obj.tasks.finished_after(self.cursor, queue=queue, tenant=tenant)
            for finished_at, _, queue_name, _, state in rows:
                if state == "completed":
                    self.per_minute[(queue_name, finished_at // MINUTE)] += 1
            if cursor == self.cursor:
                break
            self.cursor = cursor
        oldest = now // MINUTE - WINDOW_MINUTES + 1
        for key in [key for key in self.per_minute if key[1] < oldest]:
            del self.per_minute[key]

    def series(self, queue: str, now: int) -> list[int]:
        """Completions of `queue` in each of the last WINDOW_MINUTES minutes, oldest first (the last one still filling)."""
        current = now // MINUTE
        return [self.per_minute.get((queue, minute), 0) for minute in range(current - WINDOW_MINUTES + 1, current + 1)]


def sparkline(counts: list[int]) -> str:
    """One character per count, scaled to the largest; a minute with none is a space."""
    top = max(counts, default=0)
    if top == 0:
        return " " * len(counts)
    return "".join(" " if n == 0 else SPARKS[min(len(SPARKS) - 1, (n * len(SPARKS) - 1) // top)] for n in counts)


def _cut(text: Any, width: int) -> str:
    """`text` on one line, at most `width` characters (… when cut)."""
    line = " ".join(str("-" if text is None else text).split())
    return line if len(line) <= width else line[: width - 1] + "…"


def frame_lines(summary: Any, throughput: Throughput, running: list[Any], workers: dict[int, str], failures: list[Any], now: int, where: str) -> list[str]:
    """The live view as lines of at most WIDTH characters."""
    clock = time.strftime("%H:%M:%S", time.gmtime(now / US_PER_SECOND))
    right = f"  {clock}Z  Ctrl-C exits"
    lines = [_cut(f"tqcli status --watch  {where}", WIDTH - len(right)).ljust(WIDTH - len(right)) + right]
    lines.append("")
    lines.append(f"{'QUEUE':<14}{'PENDING':>8}{'RUNNING':>8}{'BLOCKED':>8}{'DONE':>8}{'FAILED':>7}{'CANC':>6}  {'LAST 10 MIN':<11}{'DONE':>5}")
    names = list(summary.queues)[:QUEUES_SHOWN]
    for name in names:
        counts = summary.queues[name]
        series = throughput.series(name, now)
        lines.append(
            f"{_cut(name, 13):<14}{counts['pending']:>8}{counts['running']:>8}{counts['blocked']:>8}{counts['completed']:>8}"
            f"{counts['failed']:>7}{counts['cancelled']:>6}  {sparkline(series):<10}{sum(series):>6}"
        )
    if len(summary.queues) > QUEUES_SHOWN:
        lines.append(f"… and {len(summary.queues) - QUEUES_SHOWN} more queues ('tqcli status' lists them)")
    if not names:
        lines.append("no tasks yet")
    lines += ["", f"running ({summary.counts['running']})"]
    for task in running[:RUNNING_SHOWN]:
        elapsed = format_duration(max(0, now - (task.started_at or now)) // US_PER_SECOND)
        lines.append(f"  {task.id:>7}  {_cut(workers.get(task.id, '?'), 24):<24}  {elapsed:>8}  {_cut(task.name, WIDTH - 47)}")
    if not running:
        lines.append("  none")
    lines += ["", "newest failures"]
    for task in failures[:FAILURES_SHOWN]:
        first = (task.error or "").splitlines()[0] if task.error else "-"
        lines.append(f"  {task.id:>7}  {_cut(task.queue, 12):<12}  {_cut(first, WIDTH - 27)}")
    if not failures:
        lines.append("  none")
    return [line[:WIDTH] for line in lines]


class LiveView:
    """What one frame of the live view reads, through the library, and how it is drawn."""

    def __init__(self, queue_obj: Any, *, queue: str | None, tenant: str | None, where: str) -> None:
        self.queue_obj, self.queue, self.tenant, self.where = queue_obj, queue, tenant, where
        self.throughput = Throughput(queue_obj.clock.now())

    def lines(self) -> list[str]:
        """Read the database once more and lay the view out."""
        q, now = self.queue_obj, self.queue_obj.clock.now()
        summary = q.status(queue=self.queue, tenant=self.tenant, limit=1)
        self.throughput.catch_up(q, queue=self.queue, tenant=self.tenant, now=now)
        running = q.status(queue=self.queue, tenant=self.tenant, state="running", limit=RUNNING_SHOWN).tasks if summary.counts["running"] else []
        workers = {task_id: info.id for info in q.workers() for task_id in info.running} if running else {}
        failures = q.dlq.list(queue=self.queue, tenant=self.tenant, limit=FAILURES_SHOWN) if summary.counts["failed"] else []
        return frame_lines(summary, self.throughput, running, workers, failures, now, self.where)


def watch(open_queue: Callable[[], Any], where: str, draw_plain: Callable[[Any], None], draw_json: Callable[[Any], Any], *, json_output: bool, queue: str | None, tenant: str | None, one_task: bool) -> None:
    """Redraw every REDRAW_EVERY s until Ctrl-C (then return, exit 0); wait for a database that does not exist yet.

    `open_queue()` opens the database read-only (NotFound while it is not
    there); `draw_plain(queue)` prints the plain status, `draw_json(queue)`
    returns the JSON document. `one_task`: `status ID`, drawn as plain text.
    """
    try:
        if json_output:
            _json_lines(open_queue, where, draw_json)
        elif not render.stdout_is_terminal():
            _plain_snapshots(open_queue, where, draw_plain)
        else:
            _live(open_queue, where, draw_plain, queue=queue, tenant=tenant, one_task=one_task)
    except KeyboardInterrupt:
        return


def shown_location(location: Any) -> str:
    """Where the database is, for the view: a file path, or a PostgreSQL URL without its user and password."""
    text = str(location)
    scheme, separator, rest = text.partition("://")
    if not separator:
        return text
    return f"{scheme}://{rest.rsplit('@', 1)[-1]}"


def _waiting_text(where: str) -> str:
    return f"waiting for {where} to be created; Ctrl-C exits"


def _opened(open_queue: Callable[[], Any], where: str, show_wait: Callable[[str], None]) -> Any:
    """The queue, once its database exists: until then `show_wait` is told so, every REDRAW_EVERY s."""
    while True:
        try:
            return open_queue()
        except NotFound:
            show_wait(_waiting_text(where))
            time.sleep(REDRAW_EVERY)


def _json_lines(open_queue: Callable[[], Any], where: str, draw_json: Callable[[Any], Any]) -> None:
    _every_second(open_queue, where, lambda queue_obj: sys.stdout.write(
        json.dumps(draw_json(queue_obj), ensure_ascii=False, separators=(",", ":")) + "\n"
    ))


def _plain_snapshots(open_queue: Callable[[], Any], where: str, draw_plain: Callable[[Any], None]) -> None:
    def snapshot(queue_obj: Any) -> None:
        draw_plain(queue_obj)
        sys.stdout.write("\n")

    _every_second(open_queue, where, snapshot)


def _every_second(open_queue: Callable[[], Any], where: str, show: Callable[[Any], Any]) -> None:
    """Say once on stderr that the database is awaited, then `show` the queue every REDRAW_EVERY s, until Ctrl-C."""
    told: list[str] = []

    def tell_once(text: str) -> None:
        if not told:
            told.append(text)
            render.message(text)

    queue_obj = _opened(open_queue, where, tell_once)
    while True:
        show(queue_obj)
        sys.stdout.flush()
        time.sleep(REDRAW_EVERY)


def _live(open_queue: Callable[[], Any], where: str, draw_plain: Callable[[Any], None], *, queue: str | None, tenant: str | None, one_task: bool) -> None:
    from rich.live import Live
    from rich.text import Text

    out = render.console()
    styled = not render.no_color()

    def view(lines: list[str]) -> Any:
        text = Text("\n".join(lines), no_wrap=True, overflow="ellipsis")
        if styled and lines:
            text.stylize("bold", 0, len(lines[0]))
        return text

    with Live(view([]), console=out, auto_refresh=False, transient=False, redirect_stderr=False) as live:
        queue_obj = _opened(open_queue, where, lambda text: live.update(view([text]), refresh=True))
        frames = LiveView(queue_obj, queue=queue, tenant=tenant, where=where)
        while True:
            try:
                if one_task:
                    captured = io.StringIO()
                    with redirect_stdout(captured):
                        draw_plain(queue_obj)
                    lines = captured.getvalue().rstrip("\n").splitlines()
                else:
                    lines = frames.lines()
            except StorageBusy as busy:  # a long write holds the database: say so and look again
                lines = [f"database busy ({busy.message.split(';')[0]}); looking again"]
            live.update(view(lines), refresh=True)
            time.sleep(REDRAW_EVERY)
