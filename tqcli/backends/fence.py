"""The fence: a small process that ends a worker's attempts once their lease can no longer hold.

A lease is only a promise in the database; what keeps a task from running
twice at once is that its processes are gone before the lease expires.
That cannot rest on Python code running where the task runs (a long C
call holds off signal handlers, and a task may ignore them), nor on the
worker (it may be stopped with Ctrl-Z or SIGSTOP, or killed). So each
worker starts one fence: a process that runs no task code, in a session of
its own (the worker's Ctrl-Z and stop signals do not reach it).

After every successful lease renewal the worker sends the fence, for each
executor slot, an absolute deadline on the system-wide monotonic clock
(renewal start + lease - margin, never "from now"). When a deadline
passes, the fence SIGKILLs every process of that slot; when the worker's
pipe closes (the worker ended or died), every process of the worker.

Processes are found by markers in their environment, which every child
inherits at exec (and, where the worker may create cgroups, the cgroup of
each executor: see `tqcli.backends.cgroups`): `TQCLI_FENCE` names one worker run, `TQCLI_SLOT` one of
its executor slots, `TQCLI_HOLDER` the worker process as its leases name
it, and `TQCLI_ATTEMPT` (`DB_ID/TASK.CLAIM`, unique across every database
on the host) the attempt a process was started for. A process that clears its environment escapes this; see
docs/backends.md.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

HOLDER = "TQCLI_HOLDER"
FENCE = "TQCLI_FENCE"
SLOT = "TQCLI_SLOT"
ATTEMPT = "TQCLI_ATTEMPT"


def attempt_marker(db_id: str, task_id: int, claim: int) -> str:
    """The `TQCLI_ATTEMPT` value of one attempt: the database's id, the task id and the claim number."""
    return f"{db_id}/{task_id}.{claim}"


def fence_margin(lease: float) -> float:
    """How long before a lease's expiry the fence ends its attempts: max(2 s, lease/6), at most lease/3."""
    return min(max(2.0, lease / 6), lease / 3)


def marked_processes(markers: list[tuple[str, str]], *, exclude: int | None = None) -> list[int]:
    """PIDs of the processes whose environment holds any of `markers` (`NAME`, `VALUE`)."""
    wanted = [f"{name}={value}".encode() for name, value in markers]
    found = []
    own = os.getpid() if exclude is None else exclude
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit() or int(entry) == own:
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as handle:
                variables = handle.read().split(b"\0")
        except OSError:
            continue  # gone, or not ours to look at
        if any(marker in variables for marker in wanted):
            found.append(int(entry))
    return found


def end_marked(markers: list[tuple[str, str]], *, timeout: float = 5.0) -> int:
    """SIGKILL every process carrying any of `markers` until none is left; how many were killed.

    Killed processes whose parent has not reaped them yet are zombies with
    no environment, so they no longer match: the loop ends when nothing
    that can still run is marked.
    """
    killed = 0
    deadline = time.monotonic() + timeout
    while True:
        pids = marked_processes(markers)
        if not pids:
            return killed
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except (ProcessLookupError, PermissionError):
                pass
        if time.monotonic() >= deadline:
            return killed
        time.sleep(0.005)


def serve(run_id: str) -> None:
    """The fence's loop: read deadlines from stdin, end slots whose deadline passed, end all at EOF."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGTSTP):
        signal.signal(signum, signal.SIG_IGN)  # only the worker's pipe closing ends the fence
    # Run as a script, this file's folder is first on sys.path: its sibling imports as a plain module.
    import cgroups  # type: ignore[import-not-found]

    os.set_blocking(1, False)  # a worker that never asks must not be able to stall the fence
    deadlines: dict[str, float] = {}
    groups: dict[str, str] = {}  # slot key -> its cgroup, where the worker made one
    buffer = b""
    while True:
        timeout = None
        if deadlines:
            timeout = max(0.0, min(deadlines.values()) - time.monotonic())
        readable, _, _ = select.select([0], [], [], timeout)
        if readable:
            chunk = os.read(0, 65536)
            if not chunk:
                for path in groups.values():
                    cgroups.kill(Path(path), remove=True)
                end_marked([(FENCE, run_id)])
                return
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                command, _, rest = line.decode().partition(" ")
                if command == "deadline":
                    key, _, when = rest.partition(" ")
                    deadlines[key] = float(when)
                elif command == "clear":
                    deadlines.pop(rest, None)
                elif command == "cgroup":
                    key, _, path = rest.partition(" ")
                    groups[key] = path
        now = time.monotonic()
        for key, when in list(deadlines.items()):
            if when <= now:
                del deadlines[key]
                if key in groups:
                    cgroups.kill(Path(groups[key]))
                end_marked([(SLOT, key)])
                try:
                    os.write(1, f"ended {key}\n".encode())
                except OSError:  # full (nobody asked lately) or closed: the worker learns it from the executor's death
                    pass


class Fence:
    """The worker's handle on its fence process; safe to use from several threads."""

    def __init__(self, lease: float) -> None:
        self.run_id = uuid.uuid4().hex
        self.margin = fence_margin(lease)
        self.lease = lease
        self._lock = threading.Lock()
        self._ended: set[str] = set()
        self._buffer = b""
        self._process: subprocess.Popen[bytes] | None = None
        self._told: list[str] = []  # lines every fence process must hear first (cgroups), sent when it starts

    def _started(self) -> subprocess.Popen[bytes]:
        if self._process is None or self._process.poll() is not None:
            # Run as a plain script without site-packages: it needs only the standard
            # library, and starts in a fraction of the time a package import takes.
            self._process = subprocess.Popen(
                [sys.executable, "-S", "-E", os.path.abspath(__file__), self.run_id],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            os.set_blocking(self._process.stdout.fileno(), False)  # type: ignore[union-attr]
            if self._told:
                self._process.stdin.write("".join(f"{line}\n" for line in self._told).encode())  # type: ignore[union-attr]
        return self._process

    def slot_key(self, index: int) -> str:
        """The marker value of one executor slot of this run."""
        return f"{self.run_id}.{index}"

    def environment(self, index: int) -> dict[str, str]:
        """The marker variables an executor of slot `index` is started with."""
        return {FENCE: self.run_id, SLOT: self.slot_key(index)}

    def _send(self, line: str) -> None:
        with self._lock:
            process = self._started()
            try:
                process.stdin.write(line.encode() + b"\n")  # type: ignore[union-attr]
                process.stdin.flush()  # type: ignore[union-attr]
            except BrokenPipeError:  # the fence was killed: start another and tell it again
                self._process = None
                process = self._started()
                process.stdin.write(line.encode() + b"\n")  # type: ignore[union-attr]
                process.stdin.flush()  # type: ignore[union-attr]

    def hold_until(self, key: str, renewed_at: float) -> None:
        """The lease of slot `key` was renewed (or claimed) at monotonic time `renewed_at`."""
        self._send(f"deadline {key} {renewed_at + self.lease - self.margin!r}")

    def watch_cgroup(self, key: str, path: str) -> None:
        """Slot `key`'s executor lives in cgroup `path`: end it there too (and remove it at the end).

        Told when the fence starts (at the first claim), so an idle run starts no fence.
        """
        with self._lock:
            self._told.append(f"cgroup {key} {path}")
            if self._process is not None and self._process.poll() is None:
                try:
                    self._process.stdin.write(f"cgroup {key} {path}\n".encode())  # type: ignore[union-attr]
                    self._process.stdin.flush()  # type: ignore[union-attr]
                except BrokenPipeError:
                    self._process = None  # the next line starts another fence, which hears it first

    def release(self, key: str) -> None:
        """Slot `key` holds no attempt now: no deadline."""
        self._send(f"clear {key}")

    def ended(self, key: str) -> bool:
        """Whether the fence ended slot `key`'s processes since the last time this was asked."""
        with self._lock:
            if self._process is not None and self._process.stdout is not None:
                try:
                    chunk = os.read(self._process.stdout.fileno(), 65536)
                except BlockingIOError:
                    chunk = b""
                self._buffer += chunk
                *lines, self._buffer = self._buffer.split(b"\n")
                self._ended.update(line.decode().split(" ", 1)[1] for line in lines if line.startswith(b"ended "))
            if key in self._ended:
                self._ended.discard(key)
                return True
            return False

    def close(self, *, wait: bool = False) -> None:
        """Close the pipe: the fence ends whatever is still marked with this run, then exits.

        The worker has ended its executors itself by then, so it does not
        wait for the fence's last look unless `wait` asks it to.
        """
        with self._lock:
            process, self._process = self._process, None
        if process is not None:
            for stream in (process.stdin, process.stdout):
                try:
                    stream.close()  # type: ignore[union-attr]
                except OSError:
                    pass
            if wait:
                process.wait()


if __name__ == "__main__":
    serve(sys.argv[1])
