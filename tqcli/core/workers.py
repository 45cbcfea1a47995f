"""The worker registry: which workers run, where, since when, and what they hold.

Each worker run adds a row when it starts, refreshes its heartbeat on every
poll and lease renewal, and marks it stopped when it ends. A worker that was
killed stops sending heartbeats: it counts as alive until `alive_for`
seconds after its last one (its lease, or twice its poll if longer), or
until this host sees that its process is gone. Rows
older than a week are dropped by the next worker that starts.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from typing import Any

from tqcli.core import liveness
from tqcli.core.context import Context
from tqcli.store.base import Tx, WorkerRow
from tqcli.units import US_PER_SECOND, format_time

SHOWN_FOR = 24 * 3600  # `tqcli workers` lists the runs seen this recently
KEPT_FOR = 7 * 24 * 3600
QUIET_WORKERS = 10  # seconds without any heartbeat before `wait` says no worker is running


@dataclass
class WorkerInfo:
    """One worker run as `tqcli workers` shows it."""

    run_id: str
    id: str
    host: str
    pid: int
    started_at: int
    heartbeat_at: int
    stopped_at: int | None
    alive: bool
    running: list[int] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The object of `workers --json`."""
        return {
            "id": self.id,
            "host": self.host,
            "pid": self.pid,
            "started_at": format_time(self.started_at),
            "heartbeat_at": format_time(self.heartbeat_at),
            "stopped_at": format_time(self.stopped_at),
            "running": self.running,
            "alive": self.alive,
        }


def register(tx: Tx, run_id: str, worker_id: str, *, holder: str | None, alive_for: float, now: int) -> None:
    """Add this worker run to the registry (and forget runs older than a week)."""
    tx.forget_workers(now - KEPT_FOR * US_PER_SECOND)
    tx.register_worker((run_id, worker_id, socket.gethostname(), os.getpid(), holder, alive_for, now, now, None))


def run_alive(run: WorkerRow, now: int) -> bool:
    """Whether a worker run counts as alive at `now`: not stopped, heard from within `alive_for`, and not seen gone.

    "Seen gone" is the rescue rule's: this host can look its process up and
    it no longer runs (a worker killed here), see `tqcli.core.liveness`.
    """
    recent = run.stopped_at is None and run.heartbeat_at + int(run.alive_for * US_PER_SECOND) >= now
    return recent and liveness.holder_alive(run.holder) is not False


def list_workers(ctx: Context) -> list[WorkerInfo]:
    """The worker runs seen in the last 24 hours, newest heartbeat first, with the tasks each runs."""
    now = ctx.clock.now()
    with ctx.read() as tx:
        ctx.authorize_any(tx, "read", "list workers")
        rows = tx.worker_rows(now - SHOWN_FOR * US_PER_SECOND)
        running = tx.running_by_worker()
    workers = []
    by_holder: dict[str, WorkerInfo] = {}
    by_id: dict[str, WorkerInfo] = {}
    for row in rows:
        run_id, worker_id, host, pid, holder, alive_for, started_at, heartbeat_at, stopped_at = row
        alive = run_alive(row, now)
        info = WorkerInfo(run_id, worker_id, host, pid, started_at, heartbeat_at, stopped_at, alive)
        workers.append(info)
        if holder:
            by_holder.setdefault(holder, info)
        if alive:
            by_id.setdefault(worker_id, info)
    for worker_id, holder, task_id in running:
        info = by_holder.get(holder or "") or by_id.get(worker_id or "")
        if info is not None:
            info.running.append(task_id)
    return workers


def no_recent_heartbeat(ctx: Context, seconds: float = QUIET_WORKERS) -> bool:
    """True when no running worker has sent a heartbeat in the last `seconds`."""
    with ctx.read() as tx:
        latest = tx.latest_heartbeat()
    return latest is None or latest < ctx.clock.now() - int(seconds * US_PER_SECOND)
