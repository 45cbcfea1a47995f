"""A real terminal for tests: a command in a tmux pane of its own, its screen read back as text.

Each `Pane` runs on a tmux server of its own (`-L`), so tests running at
once never share one, and the server is killed when the test ends. The
command's exit status is written to a file, since the pane's shell is gone
when it ends.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import Callable

import pytest

needs_tmux = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux (apt-get install tmux)")


class Pane:
    """One command in an 80x30 tmux pane, with `env`, from `cwd`."""

    def __init__(self, argv: list[str], *, env: dict[str, str], cwd: Path, folder: Path, redirect: str = "") -> None:
        self.socket = f"tqcli-test-{uuid.uuid4().hex[:12]}"
        self.exit_file = folder / f"{self.socket}.rc"
        command = " ".join(shlex.quote(part) for part in argv) + (f" {redirect}" if redirect else "")
        assignments = " ".join(f"{name}={shlex.quote(value)}" for name, value in env.items())
        # The trap keeps the pane's shell alive through a Ctrl-C (the command gets it, with its default handler) to write the status.
        script = (
            f"trap true INT; cd {shlex.quote(str(cwd))} && env -i {assignments} TERM=xterm-256color {command}; "
            f"echo $? > {shlex.quote(str(self.exit_file))}; sleep 60"
        )
        self._tmux("new-session", "-d", "-s", "t", "-x", "80", "-y", "30", "sh", "-c", script)

    def _tmux(self, *args: str) -> str:
        done = subprocess.run(["tmux", "-L", self.socket, "-f", "/dev/null", *args], capture_output=True, text=True, timeout=10)
        return done.stdout

    def screen(self) -> str:
        """What the pane shows now."""
        return self._tmux("capture-pane", "-p", "-t", "t")

    def wait_for(self, found: Callable[[str], bool], timeout: float = 10) -> str:
        """The screen once `found(screen)` holds; fails the test with the last screen after `timeout` s."""
        deadline = time.monotonic() + timeout
        while True:
            shown = self.screen()
            if found(shown):
                return shown
            if time.monotonic() > deadline:
                raise AssertionError(f"the pane never showed what was expected; it shows:\n{shown}")
            time.sleep(0.1)

    def keys(self, *keys: str) -> None:
        """Type keys into the pane (`C-c` is Ctrl-C)."""
        self._tmux("send-keys", "-t", "t", *keys)

    def exit_code(self, timeout: float = 10) -> int:
        """The command's exit status, once it ended."""
        deadline = time.monotonic() + timeout
        while not (self.exit_file.exists() and self.exit_file.read_text().strip()):
            if time.monotonic() > deadline:
                raise AssertionError(f"the command did not end; the pane shows:\n{self.screen()}")
            time.sleep(0.05)
        return int(self.exit_file.read_text())

    def close(self) -> None:
        """Kill the pane's tmux server."""
        self._tmux("kill-server")


@pytest.fixture
def terminal(cli, tmp_path):  # type: ignore[no-untyped-def]
    """Start `tqcli ARGS...` in a real terminal with the `cli` fixture's environment: `terminal(*args, redirect="> out")`."""
    from tests.conftest import TQCLI

    panes: list[Pane] = []

    def start(*args: str, redirect: str = "", env: dict[str, str] | None = None) -> Pane:
        pane = Pane([TQCLI, *args], env={**cli.env, **(env or {})}, cwd=cli.cwd, folder=tmp_path, redirect=redirect)
        panes.append(pane)
        return pane

    yield start
    for pane in panes:
        pane.close()
