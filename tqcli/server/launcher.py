"""Run `tqcli serve`: listen, hand out a login token, serve until SIGTERM or SIGINT, then revoke it.

uvicorn runs the server loop. It re-raises the signal that stopped it once
it has shut down, to the handler that was there before; the no-op handlers
installed here receive it, so the command ends with exit 0 after cleaning up.
"""

from __future__ import annotations

import errno
import signal
import socket
import threading
from contextlib import contextmanager
from typing import Callable, Iterator, Sequence

import uvicorn

from tqcli.api import Queue
from tqcli.errors import InvalidInput, TqcliError
from tqcli.server.app import ServerSettings, create_app
from tqcli.server.lifecycle import Shutdown

LOGIN_LIFETIME = 3600.0  # a login token outlives a killed server by at most this long
RENEW_EVERY = 600.0
GRACEFUL_SHUTDOWN = 5  # seconds uvicorn waits for open requests before cancelling them
WILDCARDS = ("0.0.0.0", "::", "")


class _Server(uvicorn.Server):
    """uvicorn's server, telling the app's streams to end as soon as a stop signal arrives."""

    def __init__(self, config: uvicorn.Config, shutdown: Shutdown) -> None:
        super().__init__(config)
        self._shutdown = shutdown

    def handle_exit(self, sig: int, frame: object) -> None:  # noqa: D401 - uvicorn's hook
        self._shutdown.request()
        super().handle_exit(sig, frame)  # type: ignore[arg-type]


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on `host:port` (port 0: any free one); InvalidInput saying why it cannot be."""
    if not 0 <= port <= 65535:
        raise InvalidInput(f"--port {port} is not a port: give 1-65535, or 0 for any free one")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as error:
        raise InvalidInput(f"cannot listen on --host {host!r}: {error.strerror}; give an IP address or a name of this machine") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(512)
    except OSError as error:
        sock.close()
        if error.errno == errno.EADDRINUSE:
            raise InvalidInput(f"port {port} on {host} is in use: choose another --port (0 picks a free one)") from None
        if error.errno == errno.EADDRNOTAVAIL:
            raise InvalidInput(f"--host {host} is not an address of this machine: give one of its addresses, or 0.0.0.0") from None
        raise InvalidInput(f"cannot listen on {host}:{port}: {error.strerror}") from None
    return sock


def allowed_hosts(host: str, extra: Sequence[str]) -> frozenset[str]:
    """The `Host` names the server answers to: the one it listens on, this machine's names on a wildcard, and `extra`."""
    names = {host.strip("[]").lower(), *(name.lower() for name in extra)}
    if host in WILDCARDS:
        names |= {socket.gethostname().lower(), socket.getfqdn().lower()}
    return frozenset(name for name in names if name)


def base_url(host: str, port: int) -> str:
    """The address to print for a server on `host:port`."""
    name = socket.gethostname() if host in WILDCARDS else host
    return f"http://[{name}]:{port}" if ":" in name else f"http://{name}:{port}"


@contextmanager
def _signals_end_quietly() -> Iterator[None]:
    """While serving, SIGTERM and SIGINT only stop uvicorn (it captures them); afterwards they do nothing more."""
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class _LoginRenewal(threading.Thread):
    """Pushes the login token's expiry forward while the server runs, so it dies soon after a server that was killed."""

    def __init__(self, queue: Queue, token_id: int) -> None:
        super().__init__(name="tqcli-login-renewal", daemon=True)
        self._queue = queue
        self._token_id = token_id
        self._stopping = threading.Event()

    def run(self) -> None:
        while not self._stopping.wait(RENEW_EVERY):
            try:
                self._queue.tokens.extend(self._token_id, lifetime=LOGIN_LIFETIME)
            except TqcliError:
                pass  # the next renewal tries again; the token lasts LOGIN_LIFETIME from the last one

    def stop(self) -> None:
        self._stopping.set()
        self.join()


def serve(
    queue: Queue,
    *,
    host: str,
    port: int,
    public_metrics: bool = False,
    extra_hosts: Sequence[str] = (),
    announce: Callable[[str], None],
) -> None:
    """Serve `queue`'s database on `host:port` until SIGTERM/SIGINT; `announce` receives the login line."""
    sock = listen(host, port)
    try:
        login, secret = queue.tokens.create_login(lifetime=LOGIN_LIFETIME)
    except BaseException:
        sock.close()
        raise
    renewal = _LoginRenewal(queue, login.id)
    try:
        settings = ServerSettings(
            config=queue.config, allowed_hosts=allowed_hosts(host, extra_hosts), public_metrics=public_metrics, user=queue.actor,
        )
        app = create_app(settings)
        config = uvicorn.Config(
            app, log_level="warning", access_log=False, lifespan="on", timeout_graceful_shutdown=GRACEFUL_SHUTDOWN,
            server_header=False, proxy_headers=True,  # X-Forwarded-Proto is trusted from loopback only (uvicorn's default)
        )
        server = _Server(config, settings.shutdown)
        announce(
            f"serving {queue.location} at {base_url(host, sock.getsockname()[1])}/?token={secret} "
            "(the login token ends when serve stops; Ctrl-C stops it)"
        )
        renewal.start()
        with _signals_end_quietly():
            server.run(sockets=[sock])
    finally:
        if renewal.is_alive():
            renewal.stop()
        sock.close()
        queue.tokens.end_login(login.id)
