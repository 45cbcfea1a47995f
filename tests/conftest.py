"""Shared fixtures: a database per test, a library queue on a manual clock, and the real CLI."""

from __future__ import annotations

import io
import itertools
import json
import locale
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import tqcli
from tests import forkserver, pgserver
from tests.stores import db_location, psql, pytest_generate_tests, table_dump  # noqa: F401 - fixtures, the hook and helpers for both stores
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
def queue(db_location: Path | str, clock: ManualClock):
    """A library Queue on a fresh database of each store (see tests/stores.py), on the manual clock."""
    with tqcli.open(db_location, clock=clock) as opened:
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

    def __init__(self, db: Path | str, home: Path) -> None:
        self.db = db  # a file path, or a PostgreSQL URL
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
        server = fork_server(self.env)
        if server is not None and server.fits(merged):
            return _run_forked(server, [TQCLI, *args], input, merged, self.cwd, timeout)
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


_fork_server: forkserver.ForkServer | None = None


def fork_server(env: dict[str, str]) -> forkserver.ForkServer | None:
    """This test process's fork server (see tests/forkserver.py), started on first use; None when TQCLI_TEST_EXEC=1."""
    global _fork_server
    if os.environ.get("TQCLI_TEST_EXEC") == "1":
        return None
    if _fork_server is None:
        python = str(Path(TQCLI).with_name("python"))
        _fork_server = forkserver.ForkServer(python if Path(python).exists() else sys.executable, env)
    return _fork_server


def _run_forked(server: forkserver.ForkServer, argv: list[str], input: str | None, env: dict[str, str], cwd: Path, timeout: float) -> Result:
    """Run a command through the fork server, its streams in files as `subprocess.run(capture_output=True)` would hold them."""
    encoding = locale.getpreferredencoding(False)
    with tempfile.TemporaryFile() as stdin, tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
        if input is not None:
            stdin.write(input.encode(encoding))
            stdin.seek(0)
            source = stdin.fileno()
        else:
            source = os.open(os.devnull, os.O_RDONLY)
        try:
            code = server.run(argv, env, str(cwd), [source, stdout.fileno(), stderr.fileno()], timeout)
        finally:
            if input is None:
                os.close(source)
        return Result(code, *(_text(stream, encoding) for stream in (stdout, stderr)))


def _text(stream: Any, encoding: str) -> str:
    """A captured stream's text, decoded and with its newlines translated as `text=True` does."""
    stream.seek(0)
    return io.TextIOWrapper(io.BytesIO(stream.read()), encoding=encoding).read()


@pytest.fixture(scope="session", autouse=True)
def _stop_fork_server():
    yield
    global _fork_server
    if _fork_server is not None:
        _fork_server.close()
        _fork_server = None


@pytest.fixture
def cli(tmp_path: Path, db_location: Path | str) -> Cli:
    """The real tqcli executable, with TQCLI_DB pointing at this test's database (of each store)."""
    home = tmp_path / "home"
    home.mkdir()
    return Cli(db_location, home)


def sql_shell(db: Path | str, sql: str) -> None:
    """Run SQL with the store's own shell (sqlite3, or psql for PostgreSQL), as someone tampering with it would."""
    if isinstance(db, str):
        psql(db, sql)
        return
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


# PostgreSQL: one throwaway server for the whole run (tests/pgserver.py), a database per test.

PG_ENV = "TQCLI_TEST_POSTGRES"
_pg_server: pgserver.Server | None = None


def pytest_configure(config: pytest.Config) -> None:
    """Start the run's PostgreSQL server unless TQCLI_TEST_POSTGRES names one, and put its URL there.

    Only the xdist controller, or a run without xdist, starts it. It does so
    here because xdist spawns its workers later, in its own
    pytest_sessionstart (after every pytest_configure), as child processes
    that inherit os.environ: they find TQCLI_TEST_POSTGRES set as if by the
    user, and start nothing (checked: workers see the controller's value).
    A server that does not start, or a TQCLI_TEST_POSTGRES that does not
    answer, ends the run with the reason: no PostgreSQL test ever skips.
    """
    global _pg_server
    if hasattr(config, "workerinput") or config.option.help:
        return
    url = os.environ.get(PG_ENV)
    if url:
        problem = _pg_problem(url)
        if problem:
            raise pytest.UsageError(f"{PG_ENV}={url}: {problem}")
        return
    try:
        _pg_server = pgserver.start()
    except pgserver.PostgresUnavailable as error:
        raise pytest.UsageError(
            f"could not start a PostgreSQL server for the tests: {error}\n"
            f"(scripts/ensure-tools installs PostgreSQL; or set {PG_ENV} to a server's URL)"
        ) from None
    os.environ[PG_ENV] = _pg_server.url


def pytest_unconfigure(config: pytest.Config) -> None:
    """Stop the server pytest_configure started (its atexit hook is the backup, after a second Ctrl-C say)."""
    global _pg_server
    server, _pg_server = _pg_server, None
    if server is not None:
        try:
            server.stop()
        finally:
            if os.environ.get(PG_ENV) == server.url:
                del os.environ[PG_ENV]


def _pg_problem(url: str) -> str | None:
    """Why the server at `url` cannot serve the tests, or None."""
    try:
        import psycopg

        with psycopg.connect(url, connect_timeout=10) as conn:
            version = conn.info.server_version
    except Exception as error:  # noqa: BLE001 - any failure is the reason to report
        return f"cannot connect: {error}"
    if version < pgserver.MIN_VERSION * 10000:
        return f"server version {version} is older than PostgreSQL {pgserver.MIN_VERSION}"
    return None


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    """The run's PostgreSQL server: a URL whose user may CREATE DATABASE (the server's `postgres` database)."""
    url = os.environ.get(PG_ENV)
    if not url:
        pytest.fail(f"{PG_ENV} is not set: tests/conftest.py's pytest_configure sets it in the controller", pytrace=False)
    return url


@pytest.fixture
def pg_template() -> str | None:
    """The database `pg_url` copies: None for an empty one (copied from template0).

    To give tests the app's schema without building it in each, override
    this fixture (in a conftest.py or a test module) with a session-scoped
    one that creates a database once per worker (named `tqcli_template_`
    with the worker and pid, not by `pg_database_name`, which names the
    databases of tests), fills it, closes its connections (PostgreSQL copies
    only a template nobody is connected to) and returns its name. Copying a
    template of a few tables costs about what copying an empty one does.
    """
    return None


_pg_numbers = itertools.count()


def pg_database_name(label: str) -> str:
    """A database name of this process alone, with `label` in it for whoever looks at the server.

    It holds the xdist worker and the pid, so neither two workers nor two
    runs sharing a TQCLI_TEST_POSTGRES server collide; at most 63 bytes,
    keeping the end of a long label (where a test's parameters are).
    """
    prefix = f"tqcli_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}_{os.getpid()}_{next(_pg_numbers)}_"
    slug = re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")
    return prefix + slug[-(63 - len(prefix)):].lstrip("_")


@pytest.fixture
def pg_url(request: pytest.FixtureRequest, pg_admin_url: str, pg_template: str | None):
    """The URL of a new database of this test's own (empty, or a copy of `pg_template`), dropped after it.

    The drop ends connections the test left open (DROP DATABASE ... WITH
    (FORCE)). Creating and dropping one costs about 14 ms on the throwaway
    server of an idle machine (9 + 5 ms, median of 60; 20-50 ms while the
    whole suite runs on 2 cores); tests/pgserver.py says why it is that fast.
    """
    name = pg_database_name(request.node.name)
    url = pgserver.create_database(pg_admin_url, name, template=pg_template or "template0")
    try:
        yield url
    finally:
        pgserver.drop_database(pg_admin_url, name)


@pytest.fixture
def server(cli: Cli):
    """A real `tqcli serve` on this test's database (tests/serving.py), stopped with SIGTERM after the test."""
    from tests.serving import start_server

    running = start_server(cli)
    yield running
    running.stop()
