"""Who is asking, and a database connection to answer them on.

Every request is authenticated by its token (the `Authorization: Bearer`
header, or the session cookie the login URL set) and answered by a
`tqcli.api.Queue` acting as the token's user, so the library checks it
exactly as it checks the CLI. Connections come from a small pool shared by
the request threads: opening one per request would cost more than most
requests, and SQLite's single writer needs no more than a few.
"""

from __future__ import annotations

import queue as queues
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

from fastapi import Request

from tqcli.api import Queue
from tqcli.clock import Clock, ServerClock, SystemClock
from tqcli.config import Config
from tqcli.core.context import Context
from tqcli.errors import StorageBusy, StorageError, TqcliError
from tqcli.security.tokens import TokenInfo, TokenService, Unauthenticated
from tqcli.store import open as open_store
from tqcli.store.base import Store

SESSION_COOKIE = "tqcli_session"
CSRF_HEADER = "X-Tqcli-Request"
POOL_SIZE = 8
POOL_WAIT = 30.0  # seconds a request waits for a free connection before it is answered 503
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class CrossSiteRefused(TqcliError):
    """A state-changing request carried the session cookie without the header a cross-site form cannot send."""

    exit_code = 4


class ConnectionPool:
    """Up to `size` open connections to the served database, lent one request at a time."""

    def __init__(self, config: Config, *, size: int = POOL_SIZE, clock: Clock | None = None) -> None:
        self.config = config
        self._idle: queues.LifoQueue[Store] = queues.LifoQueue()
        self._slots = queues.Queue[None](size)
        for _ in range(size):
            self._slots.put(None)
        self._clock = clock
        self._closed = False

    @contextmanager
    def store(self) -> Iterator[Store]:
        """A connection for the caller alone until the block ends; a connection that failed is closed, not lent again."""
        try:
            self._slots.get(timeout=POOL_WAIT)
        except queues.Empty:
            raise StorageBusy(f"the server's {POOL_SIZE} database connections stayed busy for {POOL_WAIT:g} s: try again") from None
        try:
            store = self._take()
        except BaseException:
            self._slots.put(None)
            raise
        healthy = False
        try:
            yield store
            healthy = True
        except TqcliError as error:
            healthy = not isinstance(error, StorageError)
            raise
        finally:
            if healthy and not self._closed:
                self._idle.put(store)
            else:
                store.close()
            self._slots.put(None)

    @contextmanager
    def queue_for(self, user: str) -> Iterator[Queue]:
        """A `Queue` acting as `user` on a borrowed connection."""
        with self.store() as store:
            yield Queue(self.context(store, user), self.config)

    def close(self) -> None:
        """Close every idle connection; connections still lent are closed when they come back."""
        self._closed = True
        while True:
            try:
                self._idle.get_nowait().close()
            except queues.Empty:
                return

    def _take(self) -> Store:
        try:
            return self._idle.get_nowait()
        except queues.Empty:
            config = self.config
            return open_store(config.db, create=False, busy_timeout=config.busy_timeout, synchronous=config.synchronous)

    def context(self, store: Store, user: str) -> Context:
        """The library's context acting as `user` on `store` (a connection from `store()`)."""
        clock = self._clock
        if clock is None:
            clock = SystemClock() if store.path is not None else ServerClock(store.server_time)
            if store.path is None:
                self._clock = clock  # measured once: every connection reaches the same server
        return Context(store=store, clock=clock, actor=user, key_file=self.config.key_file)


@dataclass(frozen=True)
class Identity:
    """The user a request's token stands for."""

    user: str
    token: TokenInfo
    via_cookie: bool


@dataclass(frozen=True)
class Caller(Identity):
    """An authenticated request and the `Queue` that answers it, acting as its user."""

    queue: Queue


def presented_token(request: Request) -> tuple[str, bool]:
    """The token the request carries and whether it came in the cookie; Unauthenticated when it carries none."""
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Unauthenticated("the Authorization header must be 'Bearer TOKEN' (create a token with 'tqcli token create USER')")
        return value.strip(), False
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        return cookie, True
    raise Unauthenticated(
        "no token: send 'Authorization: Bearer TOKEN' (create one with 'tqcli token create USER'), "
        "or open the login URL tqcli serve printed"
    )


def _check_origin(request: Request, via_cookie: bool) -> None:
    if via_cookie and request.method not in SAFE_METHODS and request.headers.get(CSRF_HEADER) != "1":
        raise CrossSiteRefused(
            f"a change made with the session cookie must send the header '{CSRF_HEADER}: 1' "
            "(the dashboard does; scripts should send 'Authorization: Bearer TOKEN' instead)"
        )


def pool_of(request: Request) -> ConnectionPool:
    """The connection pool of the server answering `request`."""
    return request.app.state.pool  # type: ignore[no-any-return]


def authenticate(pool: ConnectionPool, secret: str) -> TokenInfo:
    """The token `secret` stands for (Unauthenticated when it is unknown, expired or revoked)."""
    with pool.store() as store:
        return TokenService(pool.context(store, "")).authenticate(secret)


def authenticated(request: Request) -> Identity:
    """FastAPI dependency: who the request's token stands for (for streams, which borrow a connection per read)."""
    secret, via_cookie = presented_token(request)
    token = authenticate(pool_of(request), secret)
    _check_origin(request, via_cookie)
    return Identity(token.user, token, via_cookie)


def caller(request: Request) -> Iterator[Caller]:
    """FastAPI dependency: the authenticated caller, with a `Queue` acting as them on a connection lent for the request."""
    secret, via_cookie = presented_token(request)
    pool = pool_of(request)
    with pool.store() as store:
        token = TokenService(pool.context(store, "")).authenticate(secret)
        _check_origin(request, via_cookie)
        yield Caller(token.user, token, via_cookie, Queue(pool.context(store, token.user), pool.config))
