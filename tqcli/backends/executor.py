"""Executor processes: where every attempt runs.

A worker keeps one long-lived executor per slot, started with
`python -m tqcli.backends.executor` in a session (and process group) of its
own, with the worker's own interpreter. Requests and replies travel over
two private pipes as length-prefixed frames in `marshal` format (both ends
are the same Python, and marshal is several times cheaper than JSON for
these small dicts). The executor's own stdout and stderr are pipes (see
`tqcli.backends.output_pipes`), so a `print` cannot corrupt the protocol:
what an attempt prints, and what a backend streams through
`ctx.on_output`, travels to the worker as `output` frames naming the
stream and the attempt's token (`of`), all before that attempt's reply.
Module state persists between the tasks an executor runs, as in any
prefork worker.

Pipelining: a worker may send several requests before the first reply (a
window of short tasks); the executor runs them in order and replies to
each. Before starting a task it reads whatever else has arrived, so a
`skip` for a task still waiting in line stops it from starting, and when
the running task outlasts LINE_PATIENCE, the executor gives back (replies
`returned` to) what waits behind it, so no claimed task waits long behind
a task that turned out slow. Replies name their request's token.

A failed attempt bars its service: what waits behind it of the same
service is given back at once, and so is every request of that service that
arrives until the worker acknowledges the failure (a `seen` frame naming
its token). Those requests were sent before the worker had read the
failure, so its circuit breaker never had the chance to hold them back; the
worker claims them again through the breaker (see
`tqcli.core.execution.Slot`).

Stopping: on timeout the worker ends the executor's whole process group
and starts a fresh executor; the tasks still waiting in line never
started and are released. On cancel of the running task it first sends a
`cancel` frame naming that attempt's token (so a cancel can never land on
the next attempt), which makes `ctx.is_cancelled()` true inside the task,
and ends the executor if the task has not returned a second later. A
backend that enforces its own limits (`shell`) gets a few seconds past its
timeout to report it before the worker steps in.

No attempt outlives its worker or its lease: the executor asks the kernel
for SIGKILL when the worker dies (PR_SET_PDEATHSIG), it carries the
markers of the worker's fence (see `tqcli.backends.fence`), which ends it
and everything it started once its lease can no longer be renewed, and
each attempt's processes carry `TQCLI_ATTEMPT`. The executor is a child
subreaper: what a task leaves running (a daemon started with `setsid`
included) becomes its child and is ended when the attempt ends.

One attempt's trouble stays in that attempt: a payload that does not
decode, a result that cannot be encoded (or nests too deep), or a task that
closes stdout fail that attempt only (the first two without retry).
"""

from __future__ import annotations

import json
import marshal
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from typing import Any, Callable

from tqcli.backends.base import TaskCancelled, TaskContext, TaskFailed, TaskTimeout
from tqcli.backends.output_pipes import OutputPipes
from tqcli.backends.shell import end_process_group

_HEADER = 4
LINE_PATIENCE = 0.05  # how long requests may wait behind a running one before they are given back
CANCEL_GRACE = 1.0
SELF_ENFORCED_GRACE = 5.0
_POLL = 0.1
MAX_RESULT_BYTES = 1024 * 1024
LEFTOVER_CHECK_EVERY = 0.01  # in a busy line, leftovers are looked for this often (and whenever the line empties)


class ExecutorDied(Exception):
    """The executor process ended while running a task (the task killed it, or it crashed)."""


class FrameReader:
    """Reads length-prefixed frames from a file descriptor, buffering partial ones."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._buffer = bytearray()
        self.closed = False

    def _frame(self) -> Any:
        if len(self._buffer) < _HEADER:
            return None
        size = int.from_bytes(self._buffer[:_HEADER], "big")
        if len(self._buffer) < _HEADER + size:
            return None
        body = bytes(self._buffer[_HEADER : _HEADER + size])
        del self._buffer[: _HEADER + size]
        return marshal.loads(body)

    def fill(self) -> bool:
        """Read what is there (one read); False at end of file."""
        chunk = os.read(self.fd, 1 << 16)
        if not chunk:
            self.closed = True
            return False
        self._buffer += chunk
        return True

    def pending(self) -> Any:
        """The next complete frame already read, or None."""
        return self._frame()

    def wait(self, timeout: float | None) -> Any:
        """The next frame, waiting at most `timeout` seconds (None: forever); None if none came."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            frame = self._frame()
            if frame is not None or self.closed:
                return frame
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if remaining is not None and not select.select([self.fd], [], [], remaining)[0]:
                return None
            self.fill()


def frame(message: Any) -> bytes:
    """One message as a length-prefixed frame."""
    body = marshal.dumps(message)
    return len(body).to_bytes(_HEADER, "big") + body


def write_all(fd: int, data: bytes) -> None:
    """Write every byte of `data` to `fd`."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def write_message(fd: int, message: Any) -> None:
    """Write one framed message to `fd`."""
    write_all(fd, frame(message))


def error_text(exc: BaseException) -> str:
    """The text recorded for a failed attempt: `Type: message` (a `TaskFailed` is its message alone)."""
    if isinstance(exc, SystemExit):
        return f"the task called exit({exc.code})"
    text = str(exc)
    if isinstance(exc, TaskFailed):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def traceback_text(exc: BaseException) -> str | None:
    """The traceback of a task's exception from the task's own first frame (tqcli's frames left out)."""
    import traceback  # only when a task failed: it is not needed on the way to a success

    if isinstance(exc, (TaskFailed, SystemExit)):
        return None
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename.startswith(_PACKAGE_DIR + os.sep):
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))


class Unrunnable(ValueError):
    """An attempt that can never succeed as stored (SPEC §2 rule 3): it fails without retry."""


def decode_payload(text: str) -> Any:
    """The stored payload as a JSON value; Unrunnable when it does not decode or nests too deep."""
    try:
        return json.loads(text)
    except RecursionError:
        raise Unrunnable("the stored payload nests too deeply to decode") from None
    except (TypeError, ValueError) as exc:
        raise Unrunnable(f"the stored payload is not valid JSON ({exc})") from None


def encode_result(result: Any) -> str:
    """The stored form of a task's result; refuses (Unrunnable) what is not JSON or is over 1 MiB."""
    try:
        text = json.dumps(result, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except RecursionError:
        raise Unrunnable("the result nests too deeply to be encoded as JSON") from None
    except (TypeError, ValueError) as exc:
        raise Unrunnable(f"the result is not JSON-serialisable: {exc}") from None
    if len(text) > MAX_RESULT_BYTES // 4 and len(text.encode()) > MAX_RESULT_BYTES:
        raise Unrunnable("the result is larger than 1 MiB")
    return text


def run_request(
    request: dict[str, Any],
    backend: Any,
    cancelled: Callable[[], bool],
    on_output: Callable[..., None] | None = None,
) -> dict[str, Any]:
    """Run one attempt described by `request` with `backend`; the reply to send back.

    A reply with `final` set failed in a way no retry can change.
    """
    try:
        payload = decode_payload(request["payload"])
    except Unrunnable as exc:
        return {"ok": False, "error": str(exc), "final": True}
    ctx = TaskContext(
        id=request["id"],
        target=request["target"],
        payload=payload,
        attempt=request["attempt"],
        timeout=request["timeout"],
        cwd=request.get("cwd"),
        env=json.loads(request["env"]) if request.get("env") else None,
        cancelled=cancelled,
        on_output=on_output,
    )
    try:
        result = backend.execute(ctx)
    except TaskCancelled:
        return {"ok": False, "cancelled": True}
    except BaseException as exc:  # the task's failure, whatever it raised
        try:
            return {"ok": False, "error": error_text(exc), "traceback": traceback_text(exc)}
        except BaseException:  # its message could not even be made into text
            return {"ok": False, "error": type(exc).__name__}
    try:
        return {"ok": True, "result": encode_result(result)}
    except Unrunnable as exc:
        return {"ok": False, "error": str(exc), "final": True}


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
    """Die with the worker (SIGKILL, PR_SET_PDEATHSIG) and adopt what tasks leave behind; exit now if the worker is gone.

    SIGKILL, not a signal Python handles: a handler cannot run during a long
    C call and a task could ignore it. The fence ends the task's own
    sessions (shell commands), which this death would leave running.
    """
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            pr_set_pdeathsig, pr_set_child_subreaper = 1, 36
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
            libc.prctl(pr_set_child_subreaper, 1, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:
        os._exit(0)


def _leftover_children(owned: set[int]) -> list[int]:
    """Children of this process that no Popen owns: what an attempt left running, adopted as subreaper."""
    children: list[int] = []
    try:
        threads = os.listdir("/proc/self/task")
    except OSError:
        return children
    for thread in threads:
        try:  # os.open and os.read: a file object costs more than the read itself, once per attempt
            fd = os.open(f"/proc/self/task/{thread}/children", os.O_RDONLY)
        except OSError:
            continue
        try:
            data = b""
            while chunk := os.read(fd, 1 << 16):
                data += chunk
            children += [int(pid) for pid in data.split()]
        except OSError:
            pass
        finally:
            os.close(fd)
    return [pid for pid in children if pid not in owned]


def end_leftovers(attempt_markers: list[str], owned: set[int]) -> None:
    """End what these attempts left behind (adopted children, anything carrying their markers) and reap it.

    Killing an adopted child orphans its own children, which are adopted in
    turn, so this repeats until none is left. Only pids no `Popen` owns are
    reaped: a `waitpid(-1)` would steal a shell's exit status.
    """
    leftovers = _leftover_children(owned)
    if not leftovers:
        return
    from tqcli.backends.fence import ATTEMPT, end_marked

    end_marked([(ATTEMPT, marker) for marker in attempt_markers])
    for _ in range(100):
        if not leftovers:
            return
        for pid in leftovers:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid in leftovers:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        leftovers = _leftover_children(owned)


def _keep_stdout() -> Callable[[], None]:
    """A function that gives the next task working stdout and stderr, whatever the last one did to them.

    Two `fstat` calls per attempt: a fraction of a microsecond.
    """
    saved, saved_err = os.dup(1), os.dup(2)

    def restore() -> None:
        for fd, copy in ((1, saved), (2, saved_err)):
            try:
                os.fstat(fd)
            except OSError:  # the task closed the descriptor itself
                os.dup2(copy, fd)
        if sys.stderr is not None and sys.stderr.closed:
            sys.stderr = open(2, "w", closefd=False, buffering=1)  # noqa: SIM115 - lives as long as the process
        if sys.stdout is None or sys.stdout.closed:
            os.dup2(saved, 1)
            sys.stdout = open(1, "w", closefd=False, buffering=1)  # noqa: SIM115 - lives as long as the process

    return restore


class _Line:
    """The requests waiting in an executor, shared by its main thread and a watcher.

    The main thread reads requests and runs them one at a time. While a task
    runs longer than LINE_PATIENCE, the watcher reads what has arrived and
    gives back (replies `returned` to) everything waiting behind it. The
    lock makes "start this request" and "give it back" exclusive: a request
    is either run or returned, never both.
    """

    def __init__(self, read_fd: int, write_fd: int) -> None:
        self.read_fd = read_fd
        self.reader = FrameReader(read_fd)
        self.write_fd = write_fd
        self.lock = threading.Lock()
        self.waiting: deque[dict[str, Any]] = deque()
        self.skipped: set[Any] = set()
        self.cancelled: set[Any] = set()  # tokens whose cancel arrived (running or still to come)
        self.barred: dict[Any, Any] = {}  # service -> token of its failure the worker has not acknowledged yet
        self.running: Any = None  # the token of the attempt running now
        self.running_since: float | None = None

    def send(self, message: dict[str, Any]) -> None:
        """Write a message to the worker (from either thread)."""
        with self.lock:
            write_message(self.write_fd, message)

    def _take_arrived(self) -> None:
        """Move every message that has arrived into the line (the lock is held)."""
        while select.select([self.read_fd], [], [], 0)[0] and self.reader.fill():
            pass
        while (message := self.reader.pending()) is not None:
            if "skip" in message:
                self.skipped.add(message["skip"])
            elif "cancel" in message:
                self.cancelled.add(message["cancel"])
            elif "seen" in message:
                self.barred = {service: token for service, token in self.barred.items() if token != message["seen"]}
            elif message.get("service") in self.barred:
                self._give_back(message)
            else:
                self.waiting.append(message)

    def _give_back(self, request: dict[str, Any]) -> None:
        """Reply `returned` to a request that will not start here (the lock is held)."""
        write_message(self.write_fd, {"token": request["token"], "returned": True})

    def _bar(self, service: Any, token: Any) -> None:
        """After `token` of `service` failed: give back what of it waits or arrives, until the worker has seen the failure."""
        self.barred[service] = token
        for request in self.waiting:
            if request.get("service") == service:
                self._give_back(request)
        self.waiting = deque(request for request in self.waiting if request.get("service") != service)

    def start_next(self, on_idle: Callable[[], None] = lambda: None) -> dict[str, Any] | None:
        """The next request to run (marked running); None once the worker closed the pipe.

        `on_idle` runs once before the executor waits for the worker.
        """
        idle_done = False
        while True:
            with self.lock:
                self._take_arrived()
                while self.waiting:
                    request = self.waiting.popleft()
                    if request["token"] in self.skipped:
                        self.skipped.discard(request["token"])
                        write_message(self.write_fd, {"token": request["token"], "skipped": True})
                        continue
                    self.running_since = time.monotonic()
                    self.running = request["token"]
                    return request
                if self.reader.closed:
                    return None
            if not idle_done:
                on_idle()
                idle_done = True
                continue  # something may have arrived meanwhile
            select.select([self.read_fd], [], [])  # idle: wait for the worker

    def finish(self, reply: dict[str, Any], service: Any = None) -> None:
        """Send a finished request's reply; a failure bars its service (see the module docstring)."""
        with self.lock:
            self.running_since = None
            self.cancelled.discard(self.running)
            self.running = None
            write_message(self.write_fd, reply)
            if service is not None and failed(reply):
                self._bar(service, reply["token"])

    def is_cancelled(self, token: Any) -> bool:
        """Whether a cancel for this attempt has arrived (read from the watcher, never a stray signal)."""
        with self.lock:
            self._take_arrived()
            return token in self.cancelled

    def watch(self) -> None:
        """The watcher thread: give back what waits behind a task that outlasts LINE_PATIENCE."""
        while True:
            time.sleep(LINE_PATIENCE / 4)
            with self.lock:
                since = self.running_since
                if since is None or time.monotonic() - since <= LINE_PATIENCE:
                    continue
                self._take_arrived()
                for request in self.waiting:
                    self._give_back(request)
                self.waiting.clear()


def serve(read_fd: int, write_fd: int) -> None:
    """The executor's loop: run requests in order until the worker closes the pipe."""
    from tqcli.backends.plugins import load_backend

    from tqcli.backends.fence import ATTEMPT
    from tqcli.backends.shell import LIVE_GROUPS

    signal.signal(signal.SIGTERM, _die_with_tasks)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the worker decides when its tasks stop
    backends: dict[str, Any] = {}
    line = _Line(read_fd, write_fd)
    threading.Thread(target=line.watch, name="tqcli-line", daemon=True).start()
    worker_stderr = os.dup(2)
    pipes = OutputPipes(line.send, lambda: line.running, lambda chunk: write_all(worker_stderr, chunk))
    restore_stdout = _keep_stdout()  # after the pipes: a task that closes fd 1 gets its pipe back

    def stream(chunk: bytes, stream: int = 1) -> None:
        line.send({"output": chunk, "stream": stream, "of": line.running})

    unchecked: list[str] = []  # ended attempts not yet checked for leftovers
    checked_at = 0.0

    def check_leftovers() -> None:
        nonlocal checked_at
        if unchecked:
            end_leftovers(unchecked, set(LIVE_GROUPS))
            unchecked.clear()
        checked_at = time.perf_counter()

    while (request := line.start_next(check_leftovers)) is not None:
        name = request["backend"]
        token = request["token"]
        marker = request.get("marker") or f"{os.getpid()}/{token}"
        os.environ[ATTEMPT] = marker  # every process this attempt starts carries it
        started = time.perf_counter()
        try:
            backend = backends.get(name) or backends.setdefault(name, load_backend(name))
        except Exception as exc:
            reply = {"ok": False, "error": f"backend {name!r} failed to load: {error_text(exc)}"}
        else:
            reply = run_request(request, backend, lambda: line.is_cancelled(token), stream)
        # Reading /proc costs a quick shell task a twentieth of its time, so a busy line is
        # checked after the first attempt to end LEFTOVER_CHECK_EVERY after the last check,
        # and whenever it empties: what an attempt leaves behind outlives it by at most that
        # long plus the attempts that end meanwhile.
        unchecked.append(marker)
        if time.perf_counter() - checked_at >= LEFTOVER_CHECK_EVERY:
            check_leftovers()
        restore_stdout()
        reply["token"] = token
        reply["seconds"] = time.perf_counter() - started
        with pipes.settled():  # everything the attempt printed goes before its reply
            line.finish(reply, request.get("service"))


def failed(reply: dict[str, Any]) -> bool:
    """Whether a reply of `run_request` says the attempt failed (neither succeeded nor was cancelled)."""
    return not reply.get("ok") and not reply.get("cancelled")


class ExecutorProcess:
    """The worker's handle on one executor process, started on first use.

    Requests are answered in the order they were sent; `outstanding` lists
    them. Only one thread may use an ExecutorProcess.
    """

    def __init__(self, markers: dict[str, str] | None = None, make_cgroup: Callable[[], Any] | None = None) -> None:
        self._markers = markers or {}
        self._make_cgroup = make_cgroup  # called once, at the first start: the slot's cgroup or None
        self._cgroup: Any = None
        self._process: subprocess.Popen[bytes] | None = None
        self._requests = -1
        self._reader: FrameReader | None = None
        self.outstanding: deque[dict[str, Any]] = deque()
        self._current_since = 0.0
        self._signalled_at: float | None = None

    def _start(self) -> None:
        request_read, request_write = os.pipe()
        try:
            reply_read, reply_write = os.pipe()
        except OSError:
            os.close(request_read)
            os.close(request_write)
            raise
        try:
            output: Any = sys.stderr.fileno()
        except (AttributeError, ValueError, OSError):
            output = subprocess.DEVNULL
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "tqcli.backends.executor", str(request_read), str(reply_write), str(os.getpid())],
                pass_fds=(request_read, reply_write),
                stdin=subprocess.DEVNULL,
                stdout=output,
                start_new_session=True,
                env={**os.environ, **self._markers} if self._markers else None,
            )
        except BaseException:
            for fd in (request_read, request_write, reply_read, reply_write):
                os.close(fd)
            raise
        os.close(request_read)
        os.close(reply_write)
        if self._make_cgroup is not None:
            self._cgroup, self._make_cgroup = self._make_cgroup(), None
        if self._cgroup is not None:
            from tqcli.backends import cgroups

            cgroups.enter(self._cgroup, self._process.pid)  # before its first request: what it starts stays inside
        self._requests = request_write
        self._reader = FrameReader(reply_read)

    @property
    def alive(self) -> bool:
        """Whether the process is running."""
        return self._process is not None and self._process.poll() is None

    def current_seconds(self) -> float:
        """How long the oldest outstanding request has been running (0 when there is none)."""
        return time.monotonic() - self._current_since if self.outstanding else 0.0

    def send(self, *requests: dict[str, Any]) -> None:
        """Queue attempts (each needs a unique `token`) in one write; replies come back in order."""
        if not self.alive:
            self.kill()
            self._start()
        if not self.outstanding:
            self._current_since = time.monotonic()
            self._signalled_at = None
        self.outstanding.extend(requests)
        try:
            write_all(self._requests, b"".join(frame(request) for request in requests))
        except BrokenPipeError:
            pass  # it died; the next reply wait reports it

    def skip(self, token: Any) -> None:
        """Ask the executor not to start a request still waiting in line."""
        if self.alive:
            try:
                write_message(self._requests, {"skip": token})
            except BrokenPipeError:
                pass

    def acknowledge(self, token: Any) -> None:
        """Tell the executor the worker has read the failure of `token`: its service's requests sent from now on may start."""
        if self.alive:
            try:
                write_message(self._requests, {"seen": token})
            except BrokenPipeError:
                pass

    def next_reply(
        self,
        *,
        stop_reason: Callable[[], str | None],
        self_enforced: bool = False,
        on_output: Callable[..., None] | None = None,
        wait: float | None = None,
    ) -> dict[str, Any] | None:
        """The reply to the oldest outstanding request, enforcing its timeout and stop requests.

        Returns None if `wait` seconds passed without a reply. Raises
        TaskTimeout or TaskCancelled after ending the process group, and
        ExecutorDied when the process ended on its own; either way the
        requests still waiting are forgotten (they never started).
        """
        assert self._reader is not None and self.outstanding
        current = self.outstanding[0]
        timeout = current.get("timeout")
        deadline = None if timeout is None else self._current_since + timeout + (SELF_ENFORCED_GRACE if self_enforced else 0)
        give_up = None if wait is None else time.monotonic() + wait
        while True:
            now = time.monotonic()
            limit = _POLL
            if deadline is not None:
                limit = min(limit, max(0.0, deadline - now))
            if give_up is not None:
                limit = min(limit, max(0.0, give_up - now))
            reply = self._reader.wait(limit)
            if reply is not None:
                if "output" in reply:
                    if on_output is not None:
                        on_output(reply["output"], reply.get("stream", 1), reply.get("of"))
                    continue
                self._forget(reply)
                return reply  # type: ignore[no-any-return]
            if self._reader.closed:
                raise ExecutorDied(self._death())
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                self.kill()
                raise TaskTimeout(timeout)  # type: ignore[arg-type]
            if stop_reason() is not None:
                if self._signalled_at is None:
                    self._signalled_at = now
                    self.cancel(current.get("token"))
                elif now - self._signalled_at >= CANCEL_GRACE:
                    self.kill()
                    raise TaskCancelled()
            if give_up is not None and now >= give_up:
                return None

    def _forget(self, reply: dict[str, Any]) -> None:
        """Drop the request a reply answers; when it was the running one, the next one starts."""
        token = reply.get("token")
        if self.outstanding and self.outstanding[0].get("token") == token:
            self.outstanding.popleft()
            if not reply.get("returned"):
                self._current_since = time.monotonic()
                self._signalled_at = None
            return
        for request in self.outstanding:
            if request.get("token") == token:
                self.outstanding.remove(request)
                return

    def ready_reply(self, on_output: Callable[..., None] | None = None) -> dict[str, Any] | None:
        """The next reply if it has already arrived (no waiting, no stop checks), else None; output frames on the way go to `on_output`."""
        if self._reader is None or not self.outstanding:
            return None
        reply = self._reader.pending()
        while reply is not None and "output" in reply:
            if on_output is not None:
                on_output(reply["output"], reply.get("stream", 1), reply.get("of"))
            reply = self._reader.pending()
        if reply is not None:
            self._forget(reply)
        return reply  # type: ignore[no-any-return]

    def run(
        self,
        request: dict[str, Any],
        *,
        timeout: float | None,
        stop_reason: Callable[[], str | None],
        self_enforced: bool = False,
        on_output: Callable[..., None] | None = None,
    ) -> dict[str, Any]:
        """Send one attempt and wait for its reply (see `next_reply`); the next attempt may be of the same service, even after a failure."""
        message = {"token": 0, **request, "timeout": timeout}
        self.send(message)
        reply = self.next_reply(stop_reason=stop_reason, self_enforced=self_enforced, on_output=on_output)
        assert reply is not None
        if failed(reply):
            self.acknowledge(reply["token"])  # one at a time: nothing was sent before this failure was read
        return reply

    def cancel(self, token: Any) -> None:
        """Tell the executor to cancel one attempt, named by its token."""
        if self.alive:
            try:
                write_message(self._requests, {"cancel": token})
            except BrokenPipeError:
                pass

    def _death(self) -> str:
        assert self._process is not None
        code = self._process.wait()
        self.kill()
        cause = f"exit status {code}" if code >= 0 else f"signal {-code}"
        return f"the executor process died while running the task ({cause})"

    def terminate(self) -> None:
        """End the process and what its tasks started; safe from another thread (the owner then sees it died).

        SIGTERM first: the executor's handler ends the shell commands' own
        process groups, which a SIGKILL of its group alone would leave running.
        """
        process = self._process
        if process is not None and process.poll() is None:
            end_process_group(process.pid, grace=CANCEL_GRACE, leader=process)
        if self._cgroup is not None:
            from tqcli.backends import cgroups

            cgroups.kill(self._cgroup)

    def kill(self) -> None:
        """End the process, its process group and everything carrying its slot's marker; the next send starts a new one."""
        if self._process is not None:
            if self._process.poll() is None:
                end_process_group(self._process.pid, grace=CANCEL_GRACE, leader=self._process)
            else:
                end_process_group(self._process.pid, grace=0.2)  # children the task left behind
            self._process.wait()
            self._process = None
            if self._cgroup is not None:
                from tqcli.backends import cgroups

                cgroups.kill(self._cgroup)  # everything forked under it, whatever its environment
            from tqcli.backends.fence import SLOT, end_marked

            if SLOT in self._markers:  # sessions of its own (shell commands, setsid daemons) included
                end_marked([(SLOT, self._markers[SLOT])])
        if self._requests >= 0:
            os.close(self._requests)
            self._requests = -1
        if self._reader is not None:
            os.close(self._reader.fd)
            self._reader = None
        self.outstanding.clear()

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
        if self._cgroup is not None:
            from tqcli.backends import cgroups

            cgroups.kill(self._cgroup, remove=True)


def main(argv: list[str]) -> None:
    """Entry point of `python -m tqcli.backends.executor READ_FD WRITE_FD WORKER_PID`."""
    _follow_parent(int(argv[2]))
    serve(int(argv[0]), int(argv[1]))


if __name__ == "__main__":
    main(sys.argv[1:])
