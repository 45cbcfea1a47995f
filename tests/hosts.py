"""Many hosts on one machine: network, PID and UTS namespaces joined to one database host by veth links.

A `Lab` makes a database namespace and N host namespaces, all its own
(names `tqlabPID.K-db`, `tqlabPID.K-h1`...), and a veth pair from each host
to the database namespace; no address, link or route is added to the
namespace the caller runs in:

    db namespace (PostgreSQL)                         host i
      lo: 127.0.0.1, 10.231.0.1/32  <- the server
      hI: 10.231.I.1/24  <----- veth ----->  eth0: 10.231.I.2/24
                                              route 10.231.0.1 via 10.231.I.1

The database namespace forwards nothing (a new namespace has
ip_forward 0), so hosts reach the server and nothing else, not each other.
`tests/pgserver.py` starts a server in the database namespace with
`start(netns=lab.db_netns, listen=[SERVER_ADDRESS], trust=[NETWORK])`; the
caller reaches it over its Unix socket (the file system is shared).

`Host.spawn(argv)` runs a command on a host, in a PID namespace of its own
(`ip netns exec NS unshare --pid --fork --mount-proc --uts`) under a small
init (this module's `init`): it sets the host's name, starts the command
and reaps whatever is left once it exits, so that, as on a real machine, a
killed worker's orphans live on (until they die of their own accord)
instead of being killed with the namespace. No process on one host sees
another host's processes, nor shares its hostname. `Process.pid` is the
command's pid as the caller's PID namespace numbers it, to signal it. Each
spawned command's PID namespace is held until the lab closes, so its
number is never handed to a later one (see `Process._hold_namespace`).

Everything a lab made goes away in `close` (also at exit, and by the next
lab after a run that was killed): every process left in its namespaces is
SIGKILLed (ids from `ip netns pids`), then its links and namespaces are
deleted. Root only; `Lab` raises LabUnavailable saying why when this
machine does not allow it.

    python -m tests.hosts init HOSTNAME PID_FILE -- COMMAND...   # the init, run by Host.spawn
"""

from __future__ import annotations

import atexit
import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests import pgserver

PREFIX = "tqlab"
NETWORK = "10.231.0.0/16"
SERVER_ADDRESS = "10.231.0.1"
MAX_HOSTS = 250
REPO = Path(__file__).resolve().parent.parent

_labs = itertools.count(1)


class LabUnavailable(RuntimeError):
    """This machine does not let us make network or PID namespaces (not root, no iproute2 or unshare...)."""


def _tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin:/bin")
    if found is None:
        raise LabUnavailable(f"`{name}` is not installed (iproute2 and util-linux are needed; scripts/ensure-tools installs them)")
    return found


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise LabUnavailable(f"`{' '.join(argv)}` failed (exit {done.returncode}): {done.stderr.strip() or done.stdout.strip()}")
    return done


def _netns_names() -> list[str]:
    try:
        return sorted(os.listdir("/run/netns"))
    except OSError:
        return []


def _kill_all_in(ip: str, netns: str) -> None:
    """SIGKILL every process in one of our namespaces, until none is left (a few rounds: some fork meanwhile)."""
    for _ in range(20):
        done = _run(ip, "netns", "pids", netns, check=False)
        pids = [int(word) for word in done.stdout.split() if word.isdigit() and int(word) != os.getpid()]
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)


def sweep_stale() -> list[str]:
    """Delete the namespaces of labs whose process is gone (a run killed before it could clean up); their names."""
    ip = _tool("ip")
    removed = []
    for name in _netns_names():
        if not name.startswith(PREFIX):
            continue
        owner = name[len(PREFIX):].split(".", 1)[0]
        if not owner.isdigit() or pgserver.alive(int(owner)):
            continue
        _kill_all_in(ip, name)
        _run(ip, "netns", "del", name, check=False)
        removed.append(name)
    return removed


@dataclass
class Process:
    """A command running on a host under the host's init."""

    host: Host
    popen: subprocess.Popen
    pid_file: Path
    _pid: int | None = None
    _namespace_fd: int | None = None

    def pid(self, timeout: float = 20.0) -> int:
        """The command's pid in the caller's PID namespace (waits for the init to have started it)."""
        if self._pid is not None:
            return self._pid
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.host.name}: the command ended (exit {self.popen.returncode}) before its pid was known")
            try:
                inner = int(self.pid_file.read_text())
            except (OSError, ValueError):
                time.sleep(0.01)
                continue
            found = _outer_pid(self.popen.pid, inner)
            if found is not None:
                self._pid = found
                self._hold_namespace()
                return found
            time.sleep(0.01)
        raise RuntimeError(f"{self.host.name}: no pid for the command after {timeout:.0f} s")

    def _hold_namespace(self) -> None:
        """Keep the command's PID namespace from being freed until the lab closes, so no later host's has its number.

        The kernel hands a freed namespace's inode number to the next one
        made (within a fraction of a second), and tqcli names a lease's
        holder by boot id, PID namespace inode, pid and start time: a host
        started after a killed one could find the killed worker's
        namespace number its own, as two real hosts never would.
        """
        try:
            self._namespace_fd = os.open(f"/proc/{self._pid}/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            pass

    def release(self) -> None:
        """Let the command's PID namespace go (see `_hold_namespace`)."""
        if self._namespace_fd is not None:
            os.close(self._namespace_fd)
            self._namespace_fd = None

    def signal(self, sig: int) -> None:
        """Send `sig` to the command (not its init)."""
        try:
            os.kill(self.pid(), sig)
        except ProcessLookupError:
            pass

    def gone(self) -> bool:
        """Whether the command itself has exited (its init may still wait for what it left)."""
        try:
            with open(f"/proc/{self.pid()}/stat") as handle:
                return handle.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
        except (OSError, IndexError):
            return True

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the host's init (the command and everything it left); its exit status."""
        return self.popen.wait(timeout)

    def kill_host(self) -> None:
        """SIGKILL the whole PID namespace (its init), as pulling the plug would."""
        try:
            self.popen.kill()  # unshare --kill-child passes it on to the namespace's init
        except ProcessLookupError:
            pass


def _outer_pid(unshare_pid: int, inner: int) -> int | None:
    """The pid, as we number it, of process `inner` of the PID namespace `unshare_pid` made for its child."""
    try:
        namespace = os.readlink(f"/proc/{unshare_pid}/ns/pid_for_children")
    except OSError:
        return None
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{entry}/ns/pid") != namespace:
                continue
            with open(f"/proc/{entry}/status") as handle:
                for line in handle:
                    if line.startswith("NSpid:"):
                        if int(line.split()[-1]) == inner:
                            return int(entry)
                        break
        except (OSError, ValueError):
            continue
    return None


@dataclass
class Host:
    """One host of a lab: a network namespace with one link to the database namespace."""

    lab: Lab
    index: int
    netns: str
    name: str  # its hostname
    address: str  # its end of the link
    gateway: str  # the database namespace's end

    def command(self, argv: list[str], pid_file: Path) -> list[str]:
        """The argv that runs `argv` on this host, under its init, in a PID namespace of its own."""
        return [
            self.lab.ip, "netns", "exec", self.netns,
            # dies with the caller; --kill-child then takes the namespace's init, and so every process in it, along
            self.lab.setpriv, "--pdeathsig", "KILL", "--",
            self.lab.unshare, "--pid", "--fork", "--kill-child", "--mount-proc", "--uts",
            sys.executable, "-m", "tests.hosts", "init", self.name, str(pid_file), "--", *argv,
        ]

    def spawn(self, argv: list[str], *, env: dict[str, str], stdout=None, stderr=None, cwd: str | Path | None = None) -> Process:
        """Start `argv` on this host; stdout and stderr as for Popen (a file is best: nobody needs to drain it)."""
        pid_file = self.lab.scratch / f"{self.name}-{next(self.lab._spawns)}.pid"
        env = {**env, "PYTHONPATH": _pythonpath(env)}
        popen = subprocess.Popen(
            self.command(argv, pid_file), env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
        )
        process = Process(self, popen, pid_file)
        self.lab._processes.append(process)
        try:
            process.pid()  # and hold its PID namespace
        except RuntimeError:
            pass  # it ended at once: its wait() tells how
        return process

    def run(self, argv: list[str], *, env: dict[str, str], timeout: float = 60, cwd: str | Path | None = None, input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run `argv` on this host to the end; its output."""
        pid_file = self.lab.scratch / f"{self.name}-{next(self.lab._spawns)}.pid"
        env = {**env, "PYTHONPATH": _pythonpath(env)}
        return subprocess.run(
            self.command(argv, pid_file), env=env, cwd=cwd, input=input, capture_output=True, text=True, timeout=timeout,
        )


def _pythonpath(env: dict[str, str]) -> str:
    """The environment's PYTHONPATH with the checkout first, so the init (`-m tests.hosts`) imports."""
    parts = [str(REPO), *[part for part in env.get("PYTHONPATH", "").split(os.pathsep) if part and part != str(REPO)]]
    return os.pathsep.join(parts)


@dataclass
class Lab:
    """A database namespace and `hosts` host namespaces joined to it; see the module's docstring."""

    hosts_wanted: int
    scratch: Path  # a folder for the hosts' pid files
    hosts: list[Host] = field(default_factory=list)
    db_netns: str = ""
    _processes: list[Process] = field(default_factory=list)
    _made: list[str] = field(default_factory=list)
    _spawns: itertools.count = field(default_factory=itertools.count)

    def __post_init__(self) -> None:
        if not 1 <= self.hosts_wanted <= MAX_HOSTS:
            raise ValueError(f"a lab has 1-{MAX_HOSTS} hosts")
        if os.geteuid() != 0:
            raise LabUnavailable("making network namespaces needs root (ip netns add)")
        self.ip, self.unshare, self.setpriv = _tool("ip"), _tool("unshare"), _tool("setpriv")
        self.scratch = Path(self.scratch)
        self.scratch.mkdir(parents=True, exist_ok=True)
        self._pid = os.getpid()
        sweep_stale()
        stem = f"{PREFIX}{os.getpid()}.{next(_labs)}"
        atexit.register(self.close)
        try:
            self.db_netns = self._add_netns(f"{stem}-db")
            self._ns(self.db_netns, "link", "set", "lo", "up")
            self._ns(self.db_netns, "addr", "add", f"{SERVER_ADDRESS}/32", "dev", "lo")
            for index in range(1, self.hosts_wanted + 1):
                netns = self._add_netns(f"{stem}-h{index}")
                gateway, address = f"10.231.{index}.1", f"10.231.{index}.2"
                link = f"h{index}"
                _run(self.ip, "link", "add", "name", link, "netns", self.db_netns, "type", "veth", "peer", "name", "eth0", "netns", netns)
                self._ns(self.db_netns, "addr", "add", f"{gateway}/24", "dev", link)
                self._ns(self.db_netns, "link", "set", link, "up")
                self._ns(netns, "link", "set", "lo", "up")
                self._ns(netns, "addr", "add", f"{address}/24", "dev", "eth0")
                self._ns(netns, "link", "set", "eth0", "up")
                self._ns(netns, "route", "add", f"{SERVER_ADDRESS}/32", "via", gateway)
                self.hosts.append(Host(self, index, netns, f"tqhost{index}", address, gateway))
        except BaseException:
            self.close()
            raise

    def _add_netns(self, name: str) -> str:
        done = _run(self.ip, "netns", "add", name, check=False)
        if done.returncode != 0:
            raise LabUnavailable(f"`ip netns add {name}` failed (exit {done.returncode}): {done.stderr.strip()}")
        self._made.append(name)
        return name

    def _ns(self, netns: str, *args: str) -> None:
        _run(self.ip, "-n", netns, *args)

    def close(self) -> None:
        """Kill what runs in the lab's namespaces, delete its links and namespaces; idempotent."""
        if os.getpid() != self._pid:
            return
        atexit.unregister(self.close)
        for process in self._processes:
            if process.popen.poll() is None:
                process.kill_host()
        for process in self._processes:
            try:
                process.popen.wait(10)
            except subprocess.TimeoutExpired:
                pass
            process.release()
        for netns in reversed(self._made):
            _kill_all_in(self.ip, netns)
        if self.db_netns in self._made:
            for host in self.hosts:
                _run(self.ip, "-n", self.db_netns, "link", "del", f"h{host.index}", check=False)
        for netns in reversed(self._made):
            _run(self.ip, "netns", "del", netns, check=False)
        self._made.clear()

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def init(hostname: str, pid_file: str, argv: list[str]) -> int:
    """PID 1 of a host: name the host, start `argv`, pass on SIGTERM/SIGINT/SIGHUP, reap until nothing is left.

    Its exit status is the command's (128 + the signal that ended it).
    Orphans of the command (a killed worker's fence, say) are its children
    now; it waits for them as well, as a machine that stays up would keep
    them running.
    """
    socket.sethostname(hostname)
    child = os.posix_spawnp(argv[0], argv, os.environ)
    temporary = f"{pid_file}.tmp"
    with open(temporary, "w") as handle:
        handle.write(str(child))
    os.replace(temporary, pid_file)

    def forward(signum: int, _frame: object) -> None:
        try:
            os.kill(child, signum)
        except ProcessLookupError:
            pass

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, forward)
    status = 0
    while True:
        try:
            pid, wait_status = os.waitpid(-1, 0)
        except ChildProcessError:
            break
        if pid == child:
            code = os.waitstatus_to_exitcode(wait_status)
            status = code if code >= 0 else 128 - code
    return status


def main(argv: list[str]) -> int:
    if len(argv) >= 4 and argv[0] == "init" and argv[3] == "--" and len(argv) > 4:
        return init(argv[1], argv[2], argv[4:])
    print(__doc__.rsplit("\n\n", 1)[-1].strip(), file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
