"""Shared fixtures: a database per test, a library queue on a manual clock, and the real CLI."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import tqcli
from tqcli.clock import ManualClock

REPO = Path(__file__).resolve().parent.parent
TQCLI = shutil.which("tqcli", path=str(Path(sys.executable).parent)) or "tqcli"


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """A database file path that does not exist yet."""
    return tmp_path / "tq.db"


@pytest.fixture
def clock() -> ManualClock:
    """A clock that moves only when the test says so."""
    return ManualClock()


@pytest.fixture
def queue(db_path: Path, clock: ManualClock):
    """A library Queue on a fresh database, on the manual clock."""
    with tqcli.open(db_path, clock=clock) as opened:
        yield opened


@dataclass
class Result:
    """What a CLI run printed and returned."""

    code: int
    stdout: str
    stderr: str

    @property
    def json(self) -> Any:
        return json.loads(self.stdout)

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("error: ")]


class Cli:
    """Runs the installed `tqcli` executable against one database, in a clean environment."""

    def __init__(self, db: Path, home: Path) -> None:
        self.db = db
        self.home = home
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "XDG_DATA_HOME": str(home / "data"),
            "XDG_CONFIG_HOME": str(home / "config"),
            "TQCLI_DB": str(db),
            "LANG": "C.UTF-8",
            "PYTHONPATH": str(REPO),  # so workers can import tests.jobs
        }
        self.cwd = home

    def __call__(self, *args: str, input: str | None = None, env: dict[str, str] | None = None, timeout: float = 60) -> Result:
        merged = {**self.env, **(env or {})}
        merged = {key: value for key, value in merged.items() if value is not None}
        done = subprocess.run(
            [TQCLI, *args], input=input, capture_output=True, text=True, env=merged, cwd=self.cwd, timeout=timeout
        )
        return Result(done.returncode, done.stdout, done.stderr)

    def ok(self, *args: str, **kwargs: Any) -> Result:
        """Run and insist on exit 0."""
        result = self(*args, **kwargs)
        assert result.code == 0, f"tqcli {' '.join(args)} exited {result.code}: {result.stderr}"
        return result

    def submit(self, *args: str) -> int:
        """Submit and return the new id."""
        return int(self.ok("submit", *args).stdout.strip())

    def spawn(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        """Start tqcli in the background (a worker, say); the caller waits for it."""
        merged = {**self.env, **(env or {})}
        return subprocess.Popen(
            [TQCLI, *args], env=merged, cwd=self.cwd, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )

    def create_db(self) -> None:
        """Create the (empty) database, as the first submit would."""
        import tqcli

        tqcli.open(self.db).close()

    def task(self, task_id: int) -> dict[str, Any]:
        """The task's JSON as `status ID --json` prints it."""
        return self.ok("status", str(task_id), "--json").json


@pytest.fixture
def cli(tmp_path: Path, db_path: Path) -> Cli:
    """The real tqcli executable, with TQCLI_DB pointing at this test's database."""
    home = tmp_path / "home"
    home.mkdir()
    return Cli(db_path, home)


def table_dump(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table: the database's logical contents, for 'nothing changed' checks."""
    if not db.exists():
        return {}
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        names = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        return {name: conn.execute(f'SELECT * FROM "{name}" ORDER BY 1').fetchall() for name in names}
    finally:
        conn.close()


def sqlite_shell(db: Path, sql: str) -> None:
    """Run SQL with the sqlite3 command-line shell, as someone tampering with the file would."""
    subprocess.run(["sqlite3", str(db)], input=sql, text=True, check=True, capture_output=True)


def read_only_mount_works() -> bool:
    """Whether this machine lets the tests make a folder read-only in a mount namespace of their own (root, unshare)."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "--mount", "sh", "-c", "mount --bind / / 2>/dev/null || mount --bind /tmp /tmp"], capture_output=True)
    return probe.returncode == 0


def on_read_only_folder(folder: Path, argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> Result:
    """Run `argv` where `folder` is a read-only filesystem (a read-only bind mount in a private mount namespace).

    Nothing else changes: the same user, the same interpreter and checkout,
    wherever they lie, so the test does not depend on where it is cloned.
    """
    script = 'mount --bind "$1" "$1" && mount -o remount,ro,bind "$1" && shift && exec "$@"'
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", str(folder), *argv],
        capture_output=True, text=True, env=env, cwd=cwd, timeout=60,
    )
    return Result(done.returncode, done.stdout, done.stderr)
