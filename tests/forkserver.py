"""Runs `tqcli` commands for the tests in processes forked from one that has imported it already.

Most of the suite's CLI tests run short commands, and each fresh `tqcli`
process spends most of its life importing Typer, rich and psycopg. A fork
server imports them once; a command then runs in a new process forked from it,
with the test's argv, environment, working directory and standard streams,
exactly as the installed `tqcli` script would run `tqcli.cli.main()`.

Only what Python reads when it starts must match for the fork to stand in
for an exec: the interpreter and the environment variables that shape
start-up (`PYTHON*`, the locale). `Cli` uses the server only when they do,
and runs the real executable otherwise; `TQCLI_TEST_EXEC=1` makes every
command an exec, to check that the two agree.

Each request forks twice: the first child waits for the command's process
and reports how it ended (its exit status, or the signal that killed it),
so a command that ends by `os._exit` or a signal reads the same as an exec.

Protocol (over a Unix socket, one connection per command): the client sends
the length of a JSON header with stdin, stdout and stderr as file
descriptors (SCM_RIGHTS), then the header; the server answers `pid N` once
the command runs, then `exit N` or `signal N` when it ends.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import socket
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Any

# What Python reads at start-up, so it must be the same in the server and the command.
START_UP_VARIABLES = ("LANG", "LANGUAGE")


def start_up_environment(env: dict[str, str]) -> dict[str, str]:
    """The part of an environment that Python reads before running any code of tqcli."""
    return {
        key: value for key, value in env.items()
        if key.startswith(("PYTHON", "LC_")) or key in START_UP_VARIABLES
    }


def serve(path: str, parent: int) -> None:
    """Import tqcli, then fork one command per connection on the socket at `path` until `parent` exits."""
    _import_everything()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path + ".new")
    listener.listen(16)
    os.rename(path + ".new", path)  # the client waits for the name: it appears once connections are taken
    listener.settimeout(1.0)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # reap the waiters; each waiter reaps its command
    while os.getppid() == parent:
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            continue
        header, fds = _receive(conn)
        if os.fork() == 0:
            listener.close()
            _wait_for_command(conn, header, fds)
        conn.close()
        for fd in fds:
            os.close(fd)


def _import_everything() -> None:
    """Import every module of tqcli (commands import theirs when they run) and the libraries they load late."""
    import importlib
    import pkgutil

    import tqcli

    for module in pkgutil.walk_packages(tqcli.__path__, "tqcli."):
        if module.name != "tqcli.__main__":
            importlib.import_module(module.name)
    for name in ("psycopg", "rich.table", "rich.progress", "rich.live", "rich.tree", "rich.markup", "croniter", "cryptography.hazmat.primitives.ciphers.aead"):
        try:
            importlib.import_module(name)
        except ImportError:
            pass


def _receive(conn: socket.socket) -> tuple[dict[str, Any], list[int]]:
    """The header (its length, a newline, then its JSON: a stream socket may deliver it in parts) and the three fds."""
    message, fds, _, _ = socket.recv_fds(conn, 1 << 16, 3)
    length, _, body = message.partition(b"\n")
    while len(body) < int(length):
        more = conn.recv(1 << 20)
        if not more:
            raise ConnectionError("the client went away mid-request")
        body += more
    return json.loads(body), fds


def _wait_for_command(conn: socket.socket, header: dict[str, Any], fds: list[int]) -> None:
    """In the first child: run the command in a grandchild and report how it ended; never returns."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    pid = os.fork()
    if pid == 0:
        conn.close()
        _run_command(header, fds)
    for fd in fds:
        os.close(fd)
    conn.sendall(f"pid {pid}\n".encode())
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        conn.sendall(f"signal {os.WTERMSIG(status)}\n".encode())
    else:
        conn.sendall(f"exit {os.waitstatus_to_exitcode(status)}\n".encode())
    os._exit(0)


def _run_command(header: dict[str, Any], fds: list[int]) -> None:
    """In the grandchild: become the command, run it as the `tqcli` script does, and exit as Python would; never returns."""
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(header["cwd"])
    os.environ.clear()
    os.environ.update(header["env"])
    sys.argv = header["argv"]
    code = 1
    try:
        from tqcli.cli import main

        code = _exit_code(main())
    except SystemExit as stop:
        code = _exit_code(stop.code)
    except KeyboardInterrupt:
        traceback.print_exc()
        code = -signal.SIGINT
    except BaseException:  # noqa: BLE001 - an uncaught exception, reported as Python reports it
        traceback.print_exc()
    _exit(code)


def _exit_code(code: object) -> int:
    """The exit status Python gives `sys.exit(code)`, printing a code that is not a number as it does."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def _exit(code: int) -> None:
    """Do what the interpreter does at exit that a command can see, then leave at once.

    Waiting for threads, atexit handlers and flushing the streams are what
    a command's output and files depend on; the rest of finalization (freeing
    every module) only costs time here, some 100 ms per command, because it
    writes to every page shared with the server.
    """
    threading._shutdown()  # type: ignore[attr-defined] - what Py_FinalizeEx calls first
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - Python exits 120 when its streams cannot be flushed
            code = 120
    if code < 0:
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    os._exit(code)


class ForkServer:
    """The client side: a server process started for this test process, and a way to run a command through it."""

    def __init__(self, python: str, env: dict[str, str]) -> None:
        self.env = start_up_environment(env)
        self.folder = tempfile.mkdtemp(prefix="tqcli-fork-")
        self.path = str(Path(self.folder) / "socket")
        import subprocess

        self.process = subprocess.Popen(
            [python, "-c", f"from tests.forkserver import serve; serve({self.path!r}, {os.getpid()})"],
            env=env, cwd=str(Path(__file__).resolve().parent.parent),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while not os.path.exists(self.path):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the tqcli fork server did not start")
            time.sleep(0.01)

    def fits(self, env: dict[str, str]) -> bool:
        """Whether a command with this environment would start as the server did."""
        return start_up_environment(env) == self.env

    def run(self, argv: list[str], env: dict[str, str], cwd: str, fds: list[int], timeout: float) -> int:
        """Run one command with these standard streams; its exit code, or minus the signal that ended it."""
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            conn.connect(self.path)
            body = json.dumps({"argv": argv, "env": env, "cwd": cwd}).encode()
            socket.send_fds(conn, [b"%d\n" % len(body)], fds)
            conn.sendall(body)
            reader = conn.makefile("r")
            conn.settimeout(timeout)
            pid = int(reader.readline().split()[1])
            try:
                kind, number = reader.readline().split()
            except TimeoutError:
                os.kill(pid, signal.SIGKILL)
                import subprocess

                raise subprocess.TimeoutExpired(argv, timeout) from None
            return int(number) if kind == "exit" else -int(number)
        finally:
            conn.close()

    def close(self) -> None:
        """Stop the server."""
        self.process.kill()
        self.process.wait()
        for name in os.listdir(self.folder):
            os.unlink(os.path.join(self.folder, name))
        os.rmdir(self.folder)
