"""Executor processes: where every attempt runs.

A worker keeps one long-lived executor per slot, started with
`python -m tqcli.backends.executor` in a session (and process group) of its
own. Requests and replies travel over two private pipes as length-prefixed
JSON; the task's own stdout goes to the worker's stderr so a `print` cannot
corrupt the protocol. Module state persists between the tasks an executor
runs, as in any prefork worker.

Stopping: on timeout the worker ends the executor's whole process group
and starts a fresh executor for the next task. On cancel it first sends
SIGUSR1, which makes `ctx.is_cancelled()` true inside the task, and ends
the group if the task has not returned a second later. A backend that
enforces its own limits (`shell`) gets a few seconds past its timeout to
report it before the worker steps in.

No attempt outlives its worker: on Linux the executor asks the kernel for
SIGTERM when the worker dies (PR_SET_PDEATHSIG), and then ends the process
groups its tasks started and its own group, so a task reclaimed after its
worker died never runs twice at the same time.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from typing import Any, Callable

from tqcli.backends.base import TaskCancelled, TaskContext, TaskTimeout
from tqcli.backends.shell import end_process_group

_HEADER = 4
CANCEL_GRACE = 1.0
SELF_ENFORCED_GRACE = 5.0
_POLL = 0.1
MAX_RESULT_BYTES = 1024 * 1024


class ExecutorDied(Exception):
    """The executor process ended while running a task (the task killed it, or it crashed)."""


def _read_exact(fd: int, size: int) -> bytes | None:
    chunks = []
    while size:
        chunk = os.read(fd, size)
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def read_message(fd: int) -> Any:
    """One framed JSON message from `fd`, or None at end of file."""
    header = _read_exact(fd, _HEADER)
    if header is None:
        return None
    body = _read_exact(fd, int.from_bytes(header, "big"))
    return None if body is None else json.loads(body)


def write_message(fd: int, message: Any) -> None:
    """Write one framed JSON message to `fd`."""
    body = json.dumps(message, separators=(",", ":")).encode()
    data = memoryview(len(body).to_bytes(_HEADER, "big") + body)
    while data:
        data = data[os.write(fd, data):]


def error_text(exc: BaseException) -> str:
    """The text recorded for a failed attempt: the exception's message, else its type."""
    text = str(exc)
    if isinstance(exc, SystemExit):
        return f"the task called exit({exc.code})"
    return text if text else type(exc).__name__


def encode_result(result: Any) -> str:
    """The stored form of a task's result; refuses what is not JSON or is over 1 MiB."""
    try:
        text = json.dumps(result, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"the result is not JSON-serialisable: {exc}") from None
    if len(text) > MAX_RESULT_BYTES // 4 and len(text.encode()) > MAX_RESULT_BYTES:
        raise ValueError("the result is larger than 1 MiB")
    return text


def run_request(
    request: dict[str, Any],
    backend: Any,
    cancelled: Callable[[], bool],
    on_output: Callable[[bytes], None] | None = None,
) -> dict[str, Any]:
    """Run one attempt described by `request` with `backend`; the reply to send back."""
    ctx = TaskContext(
        id=request["id"],
        target=request["target"],
        payload=json.loads(request["payload"]),
        attempt=request["attempt"],
        timeout=request["timeout"],
        cancelled=cancelled,
        on_output=on_output,
    )
    try:
        result = backend.execute(ctx)
    except TaskCancelled:
        return {"ok": False, "cancelled": True}
    except BaseException as exc:  # the task's failure, whatever it raised
        return {"ok": False, "error": error_text(exc)}
    try:
        return {"ok": True, "result": encode_result(result)}
    except ValueError as exc:
        return {"ok": False, "error": str(exc)}


def _die_with_tasks(signum: int, frame: Any) -> None:
    """SIGTERM: end every process group our tasks started, then our own group (and us)."""
    from tqcli.backends.shell import LIVE_GROUPS

    for group in list(LIVE_GROUPS):
        try:
            os.killpg(group, signal.SIGKILL)
        except ProcessLookupError:
            pass
    os.killpg(os.getpid(), signal.SIGKILL)


def _follow_parent(parent: int) -> None:
    """Ask Linux to send SIGTERM when the worker dies; exit now if it already did."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            pr_set_pdeathsig = 1
            ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:
        os._exit(0)


def serve(read_fd: int, write_fd: int) -> None:
    """The executor's loop: answer requests until the worker closes the pipe."""
    from tqcli.backends.plugins import load_backend

    flag = {"cancelled": False}
    signal.signal(signal.SIGUSR1, lambda signum, frame: flag.__setitem__("cancelled", True))
    signal.signal(signal.SIGTERM, _die_with_tasks)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the worker decides when its tasks stop
    backends: dict[str, Any] = {}

    def stream(chunk: bytes) -> None:
        write_message(write_fd, {"output": chunk.decode("latin-1")})

    while True:
        request = read_message(read_fd)
        if request is None:
            return
        flag["cancelled"] = False
        name = request["backend"]
        try:
            backend = backends.get(name) or backends.setdefault(name, load_backend(name))
        except Exception as exc:
            write_message(write_fd, {"ok": False, "error": f"backend {name!r} failed to load: {error_text(exc)}"})
            continue
        on_output = stream if request.get("stream") else None
        write_message(write_fd, run_request(request, backend, lambda: flag["cancelled"], on_output))


class ExecutorProcess:
    """The worker's handle on one executor process, started on first use."""

    def __init__(self) -> None:
        self._process: subprocess.Popen[bytes] | None = None
        self._requests = -1
        self._replies = -1

    def _start(self) -> None:
        request_read, self._requests = os.pipe()
        self._replies, reply_write = os.pipe()
        try:
            output: Any = sys.stderr.fileno()
        except (AttributeError, ValueError, OSError):
            output = subprocess.DEVNULL
        self._process = subprocess.Popen(
            [sys.executable, "-m", "tqcli.backends.executor", str(request_read), str(reply_write), str(os.getpid())],
            pass_fds=(request_read, reply_write),
            stdin=subprocess.DEVNULL,
            stdout=output,
            start_new_session=True,
        )
        os.close(request_read)
        os.close(reply_write)

    @property
    def alive(self) -> bool:
        """Whether the process is running."""
        return self._process is not None and self._process.poll() is None

    def run(
        self,
        request: dict[str, Any],
        *,
        timeout: float | None,
        stop_reason: Callable[[], str | None],
        self_enforced: bool = False,
        on_output: Callable[[bytes], None] | None = None,
    ) -> dict[str, Any]:
        """Send one attempt and wait for its reply, enforcing `timeout` and stop requests.

        Raises TaskTimeout or TaskCancelled after ending the process group,
        and ExecutorDied when the process ended on its own. A backend that is
        `self_enforced` gets a grace past its timeout to report it itself;
        `on_output` receives its output as it streams.
        """
        if on_output is not None:
            request = {**request, "stream": True}
        if not self.alive:
            self.kill()
            self._start()
        try:
            write_message(self._requests, request)
        except BrokenPipeError:
            self.kill()
            self._start()
            write_message(self._requests, request)
        deadline = None if timeout is None else time.monotonic() + timeout + (SELF_ENFORCED_GRACE if self_enforced else 0)
        signalled_at: float | None = None
        while True:
            wait = _POLL if deadline is None else max(0.0, min(_POLL, deadline - time.monotonic()))
            readable, _, _ = select.select([self._replies], [], [], wait)
            if readable:
                reply = read_message(self._replies)
                if reply is None:
                    raise ExecutorDied(self._death())
                if "output" in reply:
                    if on_output is not None:
                        on_output(reply["output"].encode("latin-1"))
                    continue
                return reply  # type: ignore[no-any-return]
            if deadline is not None and time.monotonic() >= deadline:
                self.kill()
                raise TaskTimeout(timeout)  # type: ignore[arg-type]
            if stop_reason() is not None:
                if signalled_at is None:
                    signalled_at = time.monotonic()
                    self._signal(signal.SIGUSR1)
                elif time.monotonic() - signalled_at >= CANCEL_GRACE:
                    self.kill()
                    raise TaskCancelled()

    def _signal(self, signum: int) -> None:
        if self._process is not None:
            try:
                self._process.send_signal(signum)
            except ProcessLookupError:
                pass

    def _death(self) -> str:
        assert self._process is not None
        code = self._process.wait()
        self.kill()
        cause = f"exit status {code}" if code >= 0 else f"signal {-code}"
        return f"the executor process died while running the task ({cause})"

    def kill(self) -> None:
        """End the process and everything in its process group; the next run starts a new one."""
        if self._process is not None:
            if self._process.poll() is None:
                end_process_group(self._process.pid, grace=CANCEL_GRACE)
            else:
                end_process_group(self._process.pid, grace=0.2)  # children the task left behind
            self._process.wait()
            self._process = None
        for fd in (self._requests, self._replies):
            if fd >= 0:
                os.close(fd)
        self._requests = self._replies = -1

    def close(self) -> None:
        """Let the process exit on its own (end of input), ending it if it lingers."""
        if self._process is not None and self._requests >= 0:
            os.close(self._requests)
            self._requests = -1
            try:
                self._process.wait(timeout=2)
            except subprocess.TimeoutExpired:
                pass
        self.kill()


def main(argv: list[str]) -> None:
    """Entry point of `python -m tqcli.backends.executor READ_FD WRITE_FD WORKER_PID`."""
    _follow_parent(int(argv[2]))
    serve(int(argv[0]), int(argv[1]))


if __name__ == "__main__":
    main(sys.argv[1:])
