"""Is the process holding a lease still alive? Asked of the kernel, not of the clock.

SQLite's WAL keeps every process that shares a database on one host, so a
worker can look up the holder of a lease in /proc. A holder is named by
boot, PID namespace, PID and process start time, so a reused PID, a
reboot or a container with its own PID numbers is never mistaken for the
original process. When the holder cannot be looked up (another boot or
namespace, not Linux) the lease's expiry alone decides.

This makes recovery exact where it can be: a lease whose holder is alive
and running is not taken over because a wall clock jumped forward, and a
lease whose holder is gone is taken over at once, without waiting for it
to expire. A stopped process (SIGSTOP) is neither: its lease is taken
over once it expires, and its late result is fenced off when it resumes.
Before a lease held on this host is taken over, every process its holder
started for attempts is ended (see `tqcli.backends.fence`), so a task
whose worker was killed in the middle of a long C call, or stopped, never
runs twice at the same time.
"""

from __future__ import annotations

import os
from functools import lru_cache


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as handle:
            return handle.read().strip()
    except OSError:
        return None


def _stat(pid: int) -> tuple[str, str] | None:
    """`(state letter, start time in clock ticks)` of a process, from /proc/PID/stat."""
    text = _read(f"/proc/{pid}/stat")
    if not text or ")" not in text:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return (fields[0], fields[19]) if len(fields) > 19 else None


@lru_cache(maxsize=1)
def _place() -> str | None:
    """This boot and PID namespace, or None where /proc cannot tell."""
    boot = _read("/proc/sys/kernel/random/boot_id")
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        return None
    return f"{boot}/{namespace}" if boot else None


def holder_name(pid: int | None = None) -> str | None:
    """The name of this process (or `pid`) as a lease holder, or None off Linux."""
    place = _place()
    pid = os.getpid() if pid is None else pid
    stat = _stat(pid)
    if place is None or stat is None:
        return None
    return f"{place}/{pid}/{stat[1]}"


@lru_cache(maxsize=8)
def own_name(pid: int) -> str | None:
    """`holder_name()` of this process, looked up once (keyed by PID, so a fork asks again)."""
    return holder_name(pid)


def is_local(holder: str | None) -> bool:
    """Whether the holder ran in this boot and PID namespace, so its processes can be seen here."""
    place = _place()
    return bool(holder) and place is not None and holder.startswith(place + "/")  # type: ignore[union-attr]


def holder_alive(holder: str | None) -> bool | None:
    """True if the holder runs, False if it is gone, None if that cannot be told (or it is stopped)."""
    place = _place()
    if not holder or place is None or not holder.startswith(place + "/"):
        return None
    try:
        pid_text, started = holder[len(place) + 1 :].split("/")
        pid = int(pid_text)
    except ValueError:
        return None
    stat = _stat(pid)
    if stat is None or stat[1] != started or stat[0] in ("Z", "X", "x"):
        return False  # gone, a zombie, or the PID now belongs to another process
    if stat[0] in ("T", "t"):
        return None  # stopped: it may come back, so let the lease decide
    return True
