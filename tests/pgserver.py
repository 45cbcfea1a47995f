"""A throwaway PostgreSQL server for the tests, and databases on it.

`start()` makes a fresh cluster in a new folder (on /dev/shm when it is a
roomy tmpfs, else under /tmp), starts it on a free port of 127.0.0.1 and
returns a `Server` whose `.url` names its `postgres` database as the
superuser `tqcli`; `stop()` (or leaving its `with` block) shuts it down and
removes the folder. `create_database` and `drop_database` give each test a
database of its own, on this server or on one named by TQCLI_TEST_POSTGRES.
tests/conftest.py starts one server per test run with this module.
`start(listen=..., trust=..., netns=...)` serves other hosts instead: a
server in a network namespace of its own, listening on that namespace's
addresses and trusting their networks (tests/hosts.py makes such hosts).

The server is tuned for tests, not for keeping data: fsync, synchronous
commit and full-page writes are off, WAL is minimal, there is no autovacuum
(no background worker races a test or holds a database a test drops) and no
JIT; it runs in UTC with the C.UTF-8 locale, so results do not depend on the
machine. Measured here (2 cores, PostgreSQL 15.18, /dev/shm): initdb and
start take 0.4-0.5 s, stop a few ms; create_database and drop_database
about 9 and 5 ms on an idle machine (see create_database).

Run as a script, it starts a server, prints its URL and stops on Ctrl-C or
SIGTERM:

    python tests/pgserver.py &      # prints postgresql://tqcli@127.0.0.1:PORT/postgres
    TQCLI_TEST_POSTGRES=postgresql://tqcli@127.0.0.1:PORT/postgres make test

Binaries come from PATH or from the newest /usr/lib/postgresql/*/bin, where
Debian's postgresql package puts them (scripts/ensure-tools installs it).
initdb and postgres refuse to run as root, so as root the cluster belongs to
the `postgres` system user (else `nobody`), and its folder is never in the
checkout: that may lie in a 0700 folder such a user cannot enter.

A server does not outlive the process that started it: the postmaster gets
SIGINT (fast shutdown) when its parent dies, even by SIGKILL (setpriv
--pdeathsig), and `stop` also runs at exit. A folder left by a killed run is
removed by a later `start`.
"""

from __future__ import annotations

import atexit
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import Any

MIN_VERSION = 15
PREFIX = "tqcli-pg-"
READY_TIMEOUT = 60.0  # seconds for a started server to accept connections
TEMP_ROOTS = ("/dev/shm", "/tmp")  # where start puts folders (see _temp_root), and sweeps them
SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "wal_level": "minimal",  # less WAL for tables created and filled in one transaction
    "max_wal_senders": "0",  # which wal_level=minimal requires
    "listen_addresses": "127.0.0.1",
    "max_connections": "200",
    "autovacuum": "off",
    "jit": "off",  # compiling a plan costs more than any test query saves
    "TimeZone": "UTC",
    "log_timezone": "UTC",
    "logging_collector": "off",  # the log goes to postgres.log in the folder, read on failure
}


class PostgresUnavailable(RuntimeError):
    """PostgreSQL binaries are missing, or the server did not start or answer."""


def _version_key(folder: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", folder.parent.parent.name)) or (0,)


def find_bin(name: str) -> str:
    """The path of PostgreSQL's program `name` (initdb, pg_ctl, postgres...).

    PATH first, then the newest /usr/lib/postgresql/VERSION/bin (Debian does
    not put the server's programs on PATH).
    """
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), key=_version_key)
    candidates = [path for path in candidates if os.access(path, os.X_OK)]
    if candidates:
        return str(candidates[-1])
    raise PostgresUnavailable(
        f"PostgreSQL's {name} is neither on PATH nor in /usr/lib/postgresql/*/bin: "
        "install the PostgreSQL server (Debian's postgresql package; scripts/ensure-tools does), "
        "or set TQCLI_TEST_POSTGRES to the URL of a server where the user may CREATE DATABASE"
    )


def _server_bins() -> tuple[str, str]:
    """initdb and postgres of one installation: postgres is taken beside initdb."""
    initdb = os.path.realpath(find_bin("initdb"))
    postgres = os.path.join(os.path.dirname(initdb), "postgres")
    if not os.access(postgres, os.X_OK):
        postgres = os.path.realpath(find_bin("postgres"))
    done = subprocess.run([postgres, "--version"], capture_output=True, text=True)
    match = re.search(r"(\d+)(?:\.\d+)?", done.stdout)
    if done.returncode != 0 or not match:
        raise PostgresUnavailable(f"{postgres} --version failed: {done.stdout}{done.stderr}")
    if int(match.group(1)) < MIN_VERSION:
        raise PostgresUnavailable(f"{postgres} is {done.stdout.strip()}; the tests need PostgreSQL {MIN_VERSION} or newer")
    return initdb, postgres


def _unprivileged_user() -> pwd.struct_passwd | None:
    """Whom to run the server as: None (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            pass
    raise PostgresUnavailable("running as root, and neither a `postgres` nor a `nobody` user exists to run PostgreSQL as")


def _as_user(user: pwd.struct_passwd | None, argv: list[str]) -> tuple[list[str], dict[str, Any]]:
    """argv and Popen keywords running argv as `user`, dying with its parent where setpriv can arrange it."""
    setpriv = shutil.which("setpriv")
    if setpriv:
        ids = [f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups"] if user else []
        return [setpriv, *ids, "--pdeathsig", "INT", "--", *argv], {}
    if user:
        return argv, {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
    return argv, {}


def _environment() -> dict[str, str]:
    """Our environment without libpq's PG* variables and locale choices, which would override the settings here."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "LC_")) and k != "LANG"}
    env["LANG"] = "C.UTF-8"
    return env


def _temp_root() -> str:
    """Where the server's folder goes: /dev/shm when it is a roomy tmpfs, else /tmp.

    Both let any user in, unlike a checkout that may lie in a 0700 folder.
    Memory is much faster for a cluster whose databases come and go: measured
    here, creating and dropping a database took ~10 ms on /dev/shm against
    25-120 ms on /tmp (ext4 mounted with discard: each of the thousand files
    DROP DATABASE unlinks is trimmed on the spot). Docker's default /dev/shm
    (64 MB) is too small for it, and /tmp is used.
    """
    try:
        with open("/proc/mounts") as mounts:
            tmpfs = {fields[1] for fields in (line.split() for line in mounts) if len(fields) > 2 and fields[2] == "tmpfs"}
        shm = os.statvfs("/dev/shm")
        if "/dev/shm" in tmpfs and shm.f_bavail * shm.f_frsize >= 2 << 30 and os.access("/dev/shm", os.W_OK | os.X_OK):
            return "/dev/shm"
    except OSError:
        pass
    return "/tmp" if os.path.isdir("/tmp") else tempfile.gettempdir()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def alive(pid: int) -> bool:
    """Whether a process with this pid exists (one of another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _sweep_stale(root: Path) -> None:
    """Remove folders of earlier runs that were killed before they could clean up.

    A folder is stale when the process that made it is gone and nothing in
    it changed for a minute, or for five when a postmaster.pid is still there
    (a live postmaster touches its socket lock file every minute; one that
    exits removes postmaster.pid).
    """
    now = time.time()
    for folder in root.glob(PREFIX + "*"):
        try:
            if alive(int((folder / "owner.pid").read_text())):
                continue
            newest = max(entry.stat().st_mtime for entry in [folder, *folder.iterdir()])
            min_age = 300 if (folder / "data" / "postmaster.pid").exists() else 60
        except (OSError, ValueError):
            continue
        if now - newest > min_age:
            shutil.rmtree(folder, ignore_errors=True)


def _log_tail(log: Path, lines: int = 30) -> str:
    try:
        text = log.read_text(errors="replace")
    except OSError as error:
        return f"(no log: {error})"
    return "\n".join(text.splitlines()[-lines:]) or "(log is empty)"


def _psycopg():
    try:
        import psycopg
    except ImportError as error:
        raise PostgresUnavailable(
            f"psycopg is not installed ({error}): install the test extras, pip install -e '.[test]' (make test does)"
        ) from None
    return psycopg


class Server:
    """A running throwaway server; `url` names its `postgres` database as superuser `tqcli`.

    `url` is reachable from the process that started it: 127.0.0.1, or the
    server's Unix socket when it runs in a network namespace of its own
    (see `start`). `url_at(address)` is the URL over one of the addresses
    it listens on.
    """

    def __init__(
        self, base: Path, port: int, process: subprocess.Popen, log: Path, owned: bool, *, unix_socket: bool = False
    ) -> None:
        self.base = base
        self.port = port
        self.process = process
        self.log = log
        if unix_socket:  # libpq takes a folder as the host: the socket is BASE/.s.PGSQL.PORT
            self.url = f"postgresql://tqcli@/postgres?host={urllib.parse.quote(str(base), safe='/')}&port={port}"
        else:
            self.url = f"postgresql://tqcli@127.0.0.1:{port}/postgres"
        self._owned = owned  # whether stop removes `base`
        self._pid = os.getpid()
        atexit.register(self.stop)

    def url_at(self, address: str) -> str:
        """The URL of the `postgres` database over TCP at `address` (one that `start(listen=...)` named)."""
        host = f"[{address}]" if ":" in address else address
        return f"postgresql://tqcli@{host}:{self.port}/postgres"

    def stop(self) -> None:
        """Stop the server and remove its folder; idempotent.

        SIGINT asks for a fast shutdown (open sessions are ended, then one
        checkpoint, cheap with fsync off); a server that does not stop in
        30 s gets SIGQUIT (immediate), then SIGKILL.
        """
        if os.getpid() != self._pid:  # a forked child inherited this object: the server is not its to stop
            return
        try:
            if self.process.poll() is None:
                for sig, wait in ((signal.SIGINT, 30), (signal.SIGQUIT, 10), (signal.SIGKILL, 10)):
                    try:
                        self.process.send_signal(sig)
                        self.process.wait(wait)
                        break
                    except subprocess.TimeoutExpired:
                        continue
                    except ProcessLookupError:
                        break
        finally:
            if self._owned:
                shutil.rmtree(self.base, ignore_errors=True)
            else:  # the caller's folder: remove only what start put there
                shutil.rmtree(self.base / "data", ignore_errors=True)
                for name in ("postgres.log", "owner.pid"):
                    (self.base / name).unlink(missing_ok=True)
            atexit.unregister(self.stop)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<Server {self.url} in {self.base}>"


def start(
    base: Path | None = None,
    *,
    listen: tuple[str, ...] | list[str] = ("127.0.0.1",),
    trust: tuple[str, ...] | list[str] = (),
    netns: str | None = None,
    settings: dict[str, str] | None = None,
) -> Server:
    """Make a fresh cluster and start it; returns once it accepts connections.

    `base` is a folder to put the cluster in (it must not hold one yet, and
    the user the server runs as must be able to enter it; stop removes what
    start put there); by default a new folder on /dev/shm or under /tmp
    (see _temp_root), removed by stop. Raises PostgresUnavailable, with the
    server's log, when PostgreSQL is missing or does not start.

    For servers that other hosts (network namespaces) reach: `listen` is
    the addresses to listen on (listen_addresses; all of them must exist
    when it starts), `trust` networks in CIDR form whose clients may log in
    as anyone without a password (pg_hba.conf `host all all NET trust`
    lines; loopback always may), and `netns` a network namespace
    (`ip netns`, root only) to run the server in: `listen` then names that
    namespace's addresses, and the Server's `url` is its Unix socket, which
    any network namespace reaches through the file system. `settings`
    override SETTINGS (say {"fsync": "on"} for a server that keeps data).
    """
    psycopg = _psycopg()
    initdb, postgres = _server_bins()
    user = _unprivileged_user()
    for root in TEMP_ROOTS:
        _sweep_stale(Path(root))
    owned = base is None
    if base is None:
        base = Path(tempfile.mkdtemp(prefix=PREFIX, dir=_temp_root()))
    else:
        base = Path(base).resolve()
        base.mkdir(parents=True, exist_ok=True)
    try:
        (base / "owner.pid").write_text(str(os.getpid()))
        if user:
            os.chown(base, user.pw_uid, user.pw_gid)
        env = _environment()
        data = base / "data"
        argv, extra = _as_user(user, [
            initdb, "-D", str(data), "-A", "trust", "-U", "tqcli", "--encoding", "UTF8",
            "--locale", "C.UTF-8", "--no-sync", "--no-instructions",
        ])
        done = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=base, **extra)
        if done.returncode != 0:
            raise PostgresUnavailable(f"initdb failed (exit {done.returncode}):\n{done.stdout}{done.stderr}")
        if trust:
            with open(data / "pg_hba.conf", "a") as hba:
                hba.writelines(f"host all all {network} trust\n" for network in trust)
        prefix = []
        if netns is not None:
            ip = shutil.which("ip") or shutil.which("ip", path="/usr/sbin:/sbin")
            if ip is None or (user is not None and shutil.which("setpriv") is None):
                raise PostgresUnavailable("start(netns=...) needs iproute2's `ip` and, as root, util-linux's setpriv")
            prefix = [ip, "netns", "exec", netns]  # ip execs what follows (no fork): the postmaster keeps the pid
        log = base / "postgres.log"
        for attempt in range(5):  # another process may take the free port before postgres binds it
            port = _free_port()
            chosen = {**SETTINGS, "listen_addresses": ",".join(listen), **(settings or {})}
            chosen.update(port=str(port), unix_socket_directories=str(base))
            command = [postgres, "-D", str(data)]
            for name, value in chosen.items():
                command += ["-c", f"{name}={value}"]
            argv, extra = _as_user(user, command)
            argv = prefix + argv
            offset = log.stat().st_size if log.exists() else 0
            with open(log, "ab") as out:
                process = subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=base,
                    start_new_session=True,  # a Ctrl-C at the terminal reaches pytest, which stops the server in order
                    **extra,
                )
            server = Server(base, port, process, log, owned, unix_socket=netns is not None)
            try:
                _wait_ready(psycopg, server, offset)
                return server
            except _PortTaken:
                server.process.wait()
                atexit.unregister(server.stop)
                continue
            except BaseException:
                server.stop()
                raise
        raise PostgresUnavailable(f"no free port found for postgres in 5 tries:\n{_log_tail(log)}")
    except BaseException:
        if owned:
            shutil.rmtree(base, ignore_errors=True)
        raise


class _PortTaken(Exception):
    pass


def _wait_ready(psycopg: Any, server: Server, offset: int, timeout: float = READY_TIMEOUT) -> None:
    """Connect until the server answers; `offset` is where this attempt's part of the log begins."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        code = server.process.poll()
        if code is not None:
            tail = _log_tail(server.log)
            with open(server.log, "rb") as log:
                log.seek(offset)
                this_attempt = log.read().decode(errors="replace")
            if "Address already in use" in this_attempt:
                raise _PortTaken(tail)
            raise PostgresUnavailable(f"postgres exited with {code} before accepting connections; its log:\n{tail}")
        if not _says_ready(server):  # else the port might be another program's, which a connection would hang on
            time.sleep(0.01)
            continue
        try:
            psycopg.connect(server.url, connect_timeout=5).close()
            return
        except psycopg.OperationalError as error:
            last = error
            time.sleep(0.02)
    raise PostgresUnavailable(
        f"postgres did not accept connections at {server.url} within {timeout:.0f} s (last error: {last}); its log:\n"
        f"{_log_tail(server.log)}"
    )


def _says_ready(server: Server) -> bool:
    """Whether the postmaster's postmaster.pid says it listens and is ready, as pg_ctl checks it."""
    try:
        lines = (server.base / "data" / "postmaster.pid").read_text().splitlines()
    except OSError:
        return False
    # line 1: the postmaster's pid; line 8: its status ("starting", "ready"...)
    return len(lines) >= 8 and lines[0].strip() == str(server.process.pid) and lines[7].strip() == "ready"


def database_url(url: str, name: str) -> str:
    """`url` (a postgresql:// URL or a key=value string) with its database replaced by `name`."""
    if re.match(r"postgres(ql)?://", url):
        parts = urllib.parse.urlsplit(url)
        return urllib.parse.urlunsplit(parts._replace(path="/" + urllib.parse.quote(name, safe="")))
    from psycopg.conninfo import make_conninfo

    return make_conninfo(url, dbname=name)


def create_database(admin_url: str, name: str, template: str | None = None) -> str:
    """Create database `name` (from `template`, else template1) and return its URL.

    The template must have no other connections while it is copied, as
    PostgreSQL requires. STRATEGY FILE_COPY: on PostgreSQL 15 the default,
    WAL_LOG, copies the template block by block through shared buffers and
    writes every block to WAL (~8 MB for an empty template1); FILE_COPY
    copies the files and logs one record, at the price of two checkpoints,
    which cost little here with fsync off. Measured on this module's server
    (median of 40 creates and drops on one open connection, /dev/shm):
    from template1, 8 ms with FILE_COPY against 14 ms with WAL_LOG; from a
    template of 12 indexed tables, 9 against 17; with another database
    taking inserts meanwhile, 10 against 16-19. On ext4 mounted with discard
    FILE_COPY was no slower either. Each of these functions also opens a
    connection of its own (~3 ms): a test's create and drop cost ~14 ms.
    """
    psycopg = _psycopg()
    from psycopg import sql

    statement = sql.SQL("CREATE DATABASE {} STRATEGY FILE_COPY").format(sql.Identifier(name))
    if template:
        statement = sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY").format(
            sql.Identifier(name), sql.Identifier(template)
        )
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(statement)
    return database_url(admin_url, name)


def drop_database(admin_url: str, name: str) -> None:
    """Drop database `name` if it exists, ending any connections still open to it (WITH (FORCE))."""
    psycopg = _psycopg()
    from psycopg import sql

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def main() -> int:
    """Start a server, print its URL, and stop it on Ctrl-C or SIGTERM."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # through the finally below, not a bare exit
    try:
        server = start()
    except PostgresUnavailable as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    try:
        print(server.url, flush=True)
        print(f"# TQCLI_TEST_POSTGRES={server.url} make test   (Ctrl-C stops it; files in {server.base})", file=sys.stderr, flush=True)
        code = server.process.wait()
        print(f"error: postgres exited with {code}:\n{_log_tail(server.log)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
