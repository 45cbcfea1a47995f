"""The `shell` backend: `/bin/sh -c TARGET` in its own process group.

The payload arrives as JSON on stdin and in `TQCLI_PAYLOAD` (only stdin
when it is over 100 KiB: Linux refuses environment strings past 128 KiB);
`TQCLI_TASK_ID` names the task. Exit status 0 is success with the result
`{"exit_code": 0, "output": LAST_4KB}` (stdout and stderr together); any
other status fails the attempt with `exit status N` and the output's tail.

On timeout or cancel the whole process group is ended (SIGTERM, then
SIGKILL after a short grace). When the shell exits, whatever it left
running in its group is ended too, as systemd does for a service, so no
task leaves processes behind that escape its timeout.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator

from tqcli.backends.base import TaskCancelled, TaskContext, TaskFailed, TaskTimeout

OUTPUT_TAIL = 4096
ERROR_TAIL = 2000
KILL_GRACE = 2.0
CANCEL_POLL = 0.25
MAX_ENV_PAYLOAD = 100 * 1024

# Process groups this process started and has not ended yet; an executor that
# is told to die (its worker died) ends them first, so no task outlives its worker.
LIVE_GROUPS: set[int] = set()


class ShellFailed(TaskFailed):
    """The command exited with a non-zero status (or was killed by a signal)."""


_SPAWN_LOCK = threading.Lock()


@contextmanager
def _task_environment(task_id: int, payload: str, extra: dict[str, str] | None = None) -> Iterator[None]:
    """Set TQCLI_TASK_ID and TQCLI_PAYLOAD in this process's environment for one spawn.

    Cheaper than handing Popen a copied environment, which it re-encodes
    variable by variable on every task; spawns hold `_SPAWN_LOCK`, so
    threads never see each other's values.
    """
    names = ("TQCLI_TASK_ID", "TQCLI_PAYLOAD", *(extra or ()))
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update(extra or {})
    os.environ["TQCLI_TASK_ID"] = str(task_id)
    if len(payload) <= MAX_ENV_PAYLOAD:
        os.environ["TQCLI_PAYLOAD"] = payload
    else:
        os.environ.pop("TQCLI_PAYLOAD", None)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _exit_notice(pid: int) -> int | None:
    """A descriptor that becomes readable when `pid` exits (Linux pidfd), or None."""
    try:
        return os.pidfd_open(pid)  # type: ignore[attr-defined]
    except (AttributeError, OSError):
        return None


def _reap_group(pgid: int) -> None:
    """Reap our own exited children in process group `pgid` (adopted orphans, as a subreaper), so the group can empty."""
    while True:
        try:
            pid, _ = os.waitpid(-pgid, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def end_process_group(pgid: int, grace: float = KILL_GRACE, leader: "subprocess.Popen[bytes] | None" = None) -> None:
    """SIGTERM the group, then SIGKILL whatever is still there after `grace` seconds.

    Pass the group's `leader` when this process started it: it, and any of
    its group that this process adopted as a subreaper, are reaped as soon
    as they exit, since unreaped zombies keep the group alive and would
    make every stop wait out the whole grace.
    """
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if leader is not None:
            leader.poll()
            _reap_group(pgid)
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.02)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class ShellBackend:
    """Runs the target with /bin/sh -c; stops its process group on timeout and cancel."""

    enforces_limits = True

    def execute(self, ctx: TaskContext) -> Any:
        """Run the command; return its exit code and the last 4 KiB of its output."""
        payload = json.dumps(ctx.payload, separators=(",", ":"))
        try:
            with _SPAWN_LOCK, _task_environment(ctx.id, payload, ctx.env):
                process = subprocess.Popen(
                    ["/bin/sh", "-c", ctx.target],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    start_new_session=True,
                    cwd=ctx.cwd,
                )
        except OSError as exc:
            if ctx.cwd is not None and not os.path.isdir(ctx.cwd):
                why = "is not a directory" if os.path.exists(ctx.cwd) else "does not exist"
                raise ShellFailed(f"the working directory {ctx.cwd} {why} on this worker's host") from None
            raise ShellFailed(f"could not start /bin/sh: {exc.strerror or exc}") from None
        LIVE_GROUPS.add(process.pid)
        try:
            tail = self._pump(process, payload.encode(), ctx)
        except BaseException:
            end_process_group(process.pid, leader=process)
            process.wait()
            raise
        finally:
            LIVE_GROUPS.discard(process.pid)
            for stream in (process.stdin, process.stdout, process.stderr):
                if stream is not None and not stream.closed:
                    stream.close()
        output = tail.decode("utf-8", "replace")
        code = process.returncode
        if code == 0:
            return {"exit_code": 0, "output": output}
        status = f"exit status {code}" if code > 0 else f"killed by signal {-code}"
        raise ShellFailed(f"{status}\n{output[-ERROR_TAIL:]}".rstrip())

    def _pump(self, process: subprocess.Popen[bytes], stdin_data: bytes, ctx: TaskContext) -> bytes:
        """Feed stdin, collect output, and watch the clock and the cancel flag until the shell exits."""
        assert process.stdin is not None and process.stdout is not None and process.stderr is not None
        deadline = None if ctx.timeout is None else time.monotonic() + ctx.timeout
        tail = bytearray()
        stdout_fd, stderr_fd = process.stdout.fileno(), process.stderr.fileno()
        streams = {stdout_fd: 1, stderr_fd: 2}

        def keep(chunk: bytes, fd: int) -> None:
            if ctx.on_output is not None:
                ctx.on_output(chunk, streams[fd])
            tail.extend(chunk)
            if len(tail) > 2 * OUTPUT_TAIL:
                del tail[:-OUTPUT_TAIL]

        pending = memoryview(stdin_data)
        stdin_fd = process.stdin.fileno()
        exit_fd = _exit_notice(process.pid)  # readable when the shell exits: no polling
        poller = select.poll()  # select.poll directly: the selectors layer costs per task
        watched = {stdout_fd, stderr_fd}
        poller.register(stdout_fd, select.POLLIN)
        poller.register(stderr_fd, select.POLLIN)
        if exit_fd is not None:
            poller.register(exit_fd, select.POLLIN)
            watched.add(exit_fd)
        if pending:
            os.set_blocking(stdin_fd, False)
            poller.register(stdin_fd, select.POLLOUT)
            watched.add(stdin_fd)
        else:
            process.stdin.close()
        try:
            while True:
                wait = CANCEL_POLL if deadline is None else min(CANCEL_POLL, max(0.0, deadline - time.monotonic()))
                output_open = stdout_fd in watched or stderr_fd in watched
                if exit_fd is None and not output_open:
                    try:  # no exit notice on this system: wait for the shell itself
                        process.wait(timeout=wait)
                    except subprocess.TimeoutExpired:
                        pass
                for fd, _ in poller.poll(wait * 1000):
                    if fd in streams:
                        chunk = os.read(fd, 65536)
                        if chunk:
                            keep(chunk, fd)
                        else:
                            poller.unregister(fd)
                            watched.discard(fd)
                    elif fd == exit_fd:
                        poller.unregister(exit_fd)
                        watched.discard(exit_fd)
                    elif fd == stdin_fd:
                        pending = self._feed(process, pending)
                        if not pending:
                            poller.unregister(stdin_fd)
                            watched.discard(stdin_fd)
                # Once output ended or the exit notice came, the shell is usually gone already.
                output_open = stdout_fd in watched or stderr_fd in watched
                if (exit_fd not in watched or not output_open) and process.poll() is not None:
                    for fd in (stdout_fd, stderr_fd):
                        if fd in watched:
                            self._drain(fd, keep)
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    raise TaskTimeout(ctx.timeout)  # type: ignore[arg-type]
                if ctx.is_cancelled():
                    raise TaskCancelled()
        finally:
            if exit_fd is not None:
                os.close(exit_fd)
        end_process_group(process.pid, grace=0.2, leader=process)
        return bytes(tail[-OUTPUT_TAIL:])

    @staticmethod
    def _feed(process: subprocess.Popen[bytes], pending: memoryview) -> memoryview:
        """Write the next piece of the payload to stdin; close it when all is written."""
        assert process.stdin is not None
        try:
            written = os.write(process.stdin.fileno(), pending[:65536])
        except BlockingIOError:
            written = 0
        except BrokenPipeError:
            written = len(pending)  # the command does not read its stdin: fine
        pending = pending[written:]
        if not pending:
            process.stdin.close()
        return pending

    @staticmethod
    def _drain(fd: int, keep: Any) -> None:
        """Read what is left in the pipe without waiting for processes that still hold it."""
        os.set_blocking(fd, False)
        while True:
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                return
            if not chunk:
                return
            keep(chunk, fd)
