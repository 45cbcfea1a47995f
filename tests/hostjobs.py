"""Task functions for workers on many hosts (tests/hosts.py): each run leaves lines in one shared event log.

Every line is one event, appended with a single write(2) on an O_APPEND
descriptor, so lines from processes on different hosts never interleave:

    EVENT KEY ATTEMPT HOSTNAME PID MONOTONIC_NS WALL_NS

EVENT is `start`, `end` or `overlap`; KEY names the task (the payload
says it); ATTEMPT is the `TQCLI_ATTEMPT` marker the worker gives each
attempt's processes (`DB_ID/TASK.CLAIM`); HOSTNAME is the host's (each host
has a UTS namespace of its own). CLOCK_MONOTONIC is one clock for the whole
machine, whatever PID or network namespace a process is in, so times from
different hosts compare exactly; WALL_NS is time.time_ns(), the clock the
workers' leases are written in.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path


def event(log: str, what: str, key: str) -> None:
    """Append one event line to `log`."""
    line = (
        f"{what} {key} {os.environ.get('TQCLI_ATTEMPT', '-')} {socket.gethostname()} {os.getpid()} "
        f"{time.monotonic_ns()} {time.time_ns()}\n"
    )
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def run(log: str, key: str, seconds: float = 0.0) -> str:
    """Record the start, take `seconds`, record the end."""
    event(log, "start", key)
    if seconds:
        time.sleep(seconds)
    event(log, "end", key)
    return key


def exclusive(log: str, key: str, lock: str, seconds: float) -> str:
    """`run`, holding an exclusive lock on the file `lock` all along; an `overlap` event if another run holds it.

    flock works across PID, network and mount namespaces (it locks the
    file, and every host sees the same file), and the kernel drops the lock
    the moment the holder dies: a run that starts while a killed or fenced
    run's process still lives finds the lock taken.
    """
    handle = open(lock, "a")  # noqa: SIM115 - held for the whole run
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        event(log, "overlap", key)
        raise RuntimeError(f"another run of {key} holds {lock}") from None
    event(log, "start", key)
    time.sleep(seconds)
    event(log, "end", key)
    return key


def nap(seconds: float = 0.01) -> None:
    """Sleep: a latency-bound task (for the benchmark)."""
    time.sleep(seconds)


def noop() -> None:
    return None


@dataclass
class Run:
    """One run of a task, read back from the log: its start, and its end if it reached it."""

    key: str
    attempt: str
    host: str
    pid: int
    start: int  # monotonic ns
    start_wall: int  # time.time_ns()
    end: int | None = None
    end_wall: int | None = None


def read_runs(log: str | Path) -> tuple[dict[str, list[Run]], list[str]]:
    """The runs of each key, in start order, and the keys of any `overlap` events."""
    runs: dict[str, list[Run]] = {}
    open_runs: dict[tuple[str, str, str, int], Run] = {}
    overlaps = []
    path = Path(log)
    text = path.read_text() if path.exists() else ""
    for line in text.splitlines():
        what, key, attempt, host, pid, mono, wall = line.split()
        if what == "overlap":
            overlaps.append(key)
        elif what == "start":
            run_ = Run(key, attempt, host, int(pid), int(mono), int(wall))
            runs.setdefault(key, []).append(run_)
            open_runs[(key, attempt, host, int(pid))] = run_
        elif what == "end":
            run_ = open_runs.pop((key, attempt, host, int(pid)))
            run_.end, run_.end_wall = int(mono), int(wall)
    for key_runs in runs.values():
        key_runs.sort(key=lambda r: r.start)
    return runs, overlaps


def overlapping(runs: list[Run]) -> list[tuple[Run, Run]]:
    """Pairs of runs of one task (in start order) where one started before an earlier one ended.

    A run with no end event (its process was killed) cannot be judged by
    its times: `exclusive`'s lock judges those.
    """
    pairs = []
    for index, first in enumerate(runs):
        for second in runs[index + 1:]:
            if first.end is not None and second.start < first.end:
                pairs.append((first, second))
    return pairs
