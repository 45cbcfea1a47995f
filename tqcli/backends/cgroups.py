"""Per-executor cgroups (v2), where the worker may create them: ending an attempt ends everything it started.

Environment markers and the executor's child subreaper catch what a task
leaves behind unless it both clears its environment and escapes to
another subreaper. A cgroup catches that too: every process forked under
the executor stays in its cgroup, and writing `1` to `cgroup.kill` ends
them all at once. They are used when the worker's own cgroup (from
/proc/self/cgroup) lies in a writable cgroup v2 hierarchy whose kernel has
`cgroup.kill` (Linux 5.14); otherwise tqcli falls back to markers alone,
silently (docs/backends.md says what can then escape).

A slot's cgroup is named `tqcli-<holder tag>-<slot key>` beside the
worker's own cgroup, so a worker taking over a lease on the same host, in
the same cgroup, can find and end the cgroups of the lease's holder.
"""

from __future__ import annotations

import hashlib
import os
import time
from functools import lru_cache
from pathlib import Path
from typing import Any


@lru_cache(maxsize=1)
def base() -> Path | None:
    """The writable cgroup v2 folder under which executors' cgroups are made, or None."""
    try:
        with open("/proc/self/cgroup", encoding="ascii") as handle:
            own = next((line.strip()[3:] for line in handle if line.startswith("0::")), None)
        with open("/proc/mounts", encoding="ascii") as handle:
            mounts = [line.split() for line in handle]
    except OSError:
        return None
    mount = next((fields[1] for fields in mounts if len(fields) > 2 and fields[2] == "cgroup2"), None)
    if own is None or mount is None:
        return None
    folder = Path(mount) / own.lstrip("/")
    return folder if os.access(folder, os.W_OK) else None


def holder_tag(holder: str) -> str:
    """A short, file-name-safe tag for a lease holder."""
    return hashlib.sha256(holder.encode()).hexdigest()[:12]


def create(holder: str, key: str, fence: Any = None) -> Path | None:
    """Make (or reuse) the cgroup for one executor slot and tell `fence` of it; None where cgroups cannot be used.

    Made when the slot first starts an executor, after the fence runs, so
    the fence removes it even if the worker is killed.
    """
    folder = base()
    if folder is None:
        return None
    path = folder / f"tqcli-{holder_tag(holder)}-{key}"
    try:
        path.mkdir(exist_ok=True)
    except OSError:
        return None
    if not (path / "cgroup.kill").exists():  # a kernel before 5.14: markers alone
        try:
            path.rmdir()
        except OSError:
            pass
        return None
    if fence is not None:
        fence.watch_cgroup(key, str(path))
    return path


def enter(path: Path, pid: int) -> bool:
    """Move process `pid` into cgroup `path`; whether it worked."""
    try:
        (path / "cgroup.procs").write_text(f"{pid}\n")
        return True
    except OSError:
        return False


def kill(path: Path, *, timeout: float = 5.0, remove: bool = False) -> None:
    """End every process in cgroup `path` and wait until it is empty; remove it too with `remove`."""
    try:
        (path / "cgroup.kill").write_text("1\n")
    except OSError:
        return  # gone already, or no cgroup.kill: the markers do the work
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if not (path / "cgroup.procs").read_text().strip():
                break
        except OSError:
            break
        time.sleep(0.005)
    if remove:
        try:
            path.rmdir()
        except OSError:
            pass


def kill_holder(holder: str) -> None:
    """End and remove every slot cgroup of the worker process `holder` (before its lease is taken over)."""
    folder = base()
    if folder is None:
        return
    for path in folder.glob(f"tqcli-{holder_tag(holder)}-*"):
        kill(path, remove=True)

