"""A real `tqcli serve` process for tests, and an HTTP client for it (httpx)."""

from __future__ import annotations

import re
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

LOGIN_LINE = re.compile(r"(http://\S+)/\?token=(\S+)")


@dataclass
class Server:
    """A running `tqcli serve`: its base URL, the login token it printed, and its stderr so far."""

    process: subprocess.Popen
    url: str
    token: str
    _stderr: list[str] = field(default_factory=list)

    @property
    def login_url(self) -> str:
        return f"{self.url}/?token={self.token}"

    @property
    def stderr(self) -> str:
        return "".join(self._stderr)

    def client(self, token: str | None = None, **options: Any) -> httpx.Client:
        """An HTTP client with `Authorization: Bearer` set to `token` (default: the login token); token="" sends none."""
        token = self.token if token is None else token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=options.pop("timeout", 30), **options)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        """Send `sig` and wait for the server to exit; its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"tqcli serve did not stop within {timeout} s of signal {sig}; stderr: {self.stderr}") from None


def start_server(cli: Any, *args: str, env: dict[str, str] | None = None, timeout: float = 30) -> Server:
    """Start `tqcli serve --port 0 ARGS` for `cli`'s database and wait until it answers /healthz."""
    process = cli.spawn("serve", "--port", "0", *args, env=env)
    lines: list[str] = []
    found = threading.Event()

    def read_stderr() -> None:
        for line in process.stderr:
            lines.append(line)
            if LOGIN_LINE.search(line):
                found.set()
        found.set()

    threading.Thread(target=read_stderr, daemon=True).start()
    if not found.wait(timeout) or not any(LOGIN_LINE.search(line) for line in lines):
        process.kill()
        process.wait()
        raise AssertionError(f"tqcli serve printed no login URL (exit {process.poll()}): {''.join(lines)}")
    match = next(LOGIN_LINE.search(line) for line in lines if LOGIN_LINE.search(line))
    server = Server(process, match.group(1), match.group(2), lines)
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            server.stop(signal.SIGKILL)
            raise AssertionError(f"tqcli serve did not answer /healthz: {server.stderr}")
        time.sleep(0.05)
