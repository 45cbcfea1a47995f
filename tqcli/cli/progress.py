"""Progress bars on stderr for long commands.

SPEC §2: a bar appears only when stderr is a terminal, never under `--json`,
with `CI` set or `TERM=dumb` (`render.progress_shown` decides). A command
asks `bar()` for a `Bar`: a rich bar on stderr when bars are allowed, else
one that does nothing. The library never sees it: it reports through plain
callbacks (`progress(done, total, what)`), or the command reads the
database from a thread of its own (`polled`), so a run without a terminal
(cron, CI, a pipe) pays nothing and a run with one pays a read every half
second, on its own connection.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from tqcli.cli import render

REDRAW_EVERY = 0.2  # seconds between the updates a bar passes on, however often it is told
POLL_EVERY = 0.5  # seconds between the reads of `polled`


def allowed(json_output: bool = False) -> bool:
    """Whether a bar may be drawn now (stderr a terminal, no --json, no CI, TERM not dumb)."""
    return render.progress_shown(json_output)


class Bar:
    """A progress bar that shows nothing: what a command gets where bars are not allowed."""

    def update(self, done: int, total: int | None = None, what: str | None = None, *, now: bool = False) -> None:
        """Say that `done` of `total` (None: unknown) are done, `what` saying of what; dropped unless due or `now`."""


class _RichBar(Bar):
    """A rich bar on stderr, passed at most one update per REDRAW_EVERY (the bar redraws itself five times a second)."""

    def __init__(self, progress: Any, task: Any, total: int | None) -> None:
        self._progress, self._task, self._total, self._last = progress, task, total, 0.0

    def update(self, done: int, total: int | None = None, what: str | None = None, *, now: bool = False) -> None:
        moment = time.monotonic()
        if not now and moment - self._last < REDRAW_EVERY and (total is None or done < total):
            return
        self._last = moment
        if total is None and self._total is not None:  # rich keeps a total once set: a pulse needs a bar of its own
            self._progress.update(self._task, visible=False)
            self._task = self._progress.add_task(what or "", total=None)
        self._total = total
        changes: dict[str, Any] = {"completed": done, "total": total}
        if what is not None:
            changes["description"] = what
        self._progress.update(self._task, **changes)


@contextmanager
def bar(what: str, *, json_output: bool = False, total: int | None = None) -> Iterator[Bar]:
    """A bar on stderr for the time of the block, starting at 0 of `total` (None: a pulse until a total is known); gone after it."""
    if not allowed(json_output):
        yield Bar()
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"), BarColumn(bar_width=24), MofNCompleteColumn(), TimeElapsedColumn(),
        console=render.console(stderr=True), transient=True, refresh_per_second=5,
    ) as progress:
        yield _RichBar(progress, progress.add_task(what, total=total), total)


@contextmanager
def polled(
    what: str,
    opener: Callable[[], Any],
    read: Callable[[Any], tuple[int, int | None, str]],
    *,
    json_output: bool = False,
) -> Iterator[None]:
    """A bar fed by a thread that calls `read(source)` every POLL_EVERY s while the block runs; nothing where bars are not allowed.

    `opener()` is called in that thread (a database connection belongs to
    the thread that made it) and what it returns is closed when the block
    ends. `read` answers `(done, total, what)`. A read that fails stops the
    updates, never the command.
    """
    if not allowed(json_output):
        yield
        return
    stop = threading.Event()
    with bar(what, json_output=json_output) as shown:

        def follow() -> None:
            try:
                source = opener()
            except Exception:  # noqa: BLE001 - a bar must never fail the command it decorates
                return
            try:
                while not stop.wait(POLL_EVERY):
                    done, total, text = read(source)
                    shown.update(done, total, text, now=True)
            except Exception:  # noqa: BLE001 - the database busy, say: the bar stops moving, the command goes on
                pass
            finally:
                close = getattr(source, "close", None)
                if close is not None:
                    close()

        thread = threading.Thread(target=follow, name="tqcli-progress", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=2)


def _reopened(queue_obj: Any) -> Callable[[], Any]:
    """Opens the database of `queue_obj` again, read-only and as the same identity (for `polled`'s thread)."""

    def reopen() -> Any:
        from tqcli.api import open as open_queue

        return open_queue(config=queue_obj.config, actor=queue_obj.actor, read_only=True)

    return reopen


def _counts(queue_obj: Any, queues: tuple[str, ...], tenants: tuple[str, ...]) -> dict[str, int]:
    """Tasks per state in `queues` (all when empty) of `tenants` (all when empty, or when several: status filters one)."""
    summary = queue_obj.status(tenant=tenants[0] if len(tenants) == 1 else None, limit=1)
    if not queues:
        return dict(summary.counts)
    counts: dict[str, int] = {}
    for name in queues:
        for state, count in summary.queues.get(name, {}).items():
            counts[state] = counts.get(state, 0) + count
    return counts


@contextmanager
def drain(queue_obj: Any, *, queues: tuple[str, ...] = (), tenants: tuple[str, ...] = ()) -> Iterator[None]:
    """A bar for `worker --once`: tasks completed and failed since it started, and those still pending (of its queues)."""
    if not allowed():
        yield
        return
    before = _counts(queue_obj, queues, tenants)

    def read(source: Any) -> tuple[int, int | None, str]:
        now = _counts(source, queues, tenants)
        done = max(0, now.get("completed", 0) - before.get("completed", 0))
        failed = max(0, now.get("failed", 0) - before.get("failed", 0))
        left = now.get("pending", 0) + now.get("running", 0)
        return done + failed, done + failed + left, f"worker: {done} completed, {failed} failed, {now.get('pending', 0)} still pending"

    with polled("worker: starting", _reopened(queue_obj), read):
        yield


def dag_states(queue_obj: Any, dag_id: int) -> Any:
    """A bar for `dag run` of DAG `dag_id`: its tasks by state (a context manager)."""

    def read(source: Any) -> tuple[int, int | None, str]:
        dag = source.dags.get(dag_id)
        by_state: dict[str, int] = {}
        for task in dag.tasks.values():
            by_state[task.state.value] = by_state.get(task.state.value, 0) + 1
        finished = sum(count for state, count in by_state.items() if state in ("completed", "failed", "cancelled"))
        shown = ", ".join(f"{by_state[state]} {state}" for state in ("completed", "failed", "running", "pending", "blocked", "cancelled") if by_state.get(state))
        return finished, len(dag.tasks), f"DAG {dag_id}: {shown}"

    return polled(f"DAG {dag_id}: starting", _reopened(queue_obj), read)
