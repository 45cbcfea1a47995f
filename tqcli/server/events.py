"""The audit entries' live feed: one poller per server process, fanned out to every client of `/api/v1/events`.

The poller reads the entries appended since its last read every
`POLL_EVERY` seconds (a short read on a pooled connection, on a thread),
encodes each as an SSE event once per form (whole, brief), and hands every
subscriber the form its grants allow (`tqcli.security.audit_feed.visible`).
Subscribers hold what they have not sent yet in a buffer of at most
`BUFFER_LIMIT` bytes; one that falls further behind is dropped (its stream
ends, and the browser's EventSource comes back with `Last-Event-ID`,
replayed from the database). A second task re-reads every subscriber's
token and grants every `RECHECK_EVERY` seconds, one read for all of them:
a revoked token, or a user left with no role, ends the stream; a changed
role changes what it receives from the next entry on.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable, TypeVar

import anyio
from fastapi import FastAPI

from tqcli.errors import TqcliError
from tqcli.security import audit_feed
from tqcli.security.rbac import Access
from tqcli.security.tokens import TokenService, Unauthenticated
from tqcli.security.verify import AuditEntry
from tqcli.server.lifecycle import Shutdown
from tqcli.server.sessions import ConnectionPool

log = logging.getLogger("tqcli.server")

POLL_EVERY = 0.5  # seconds between two reads of new entries
PAGE = 1000  # entries per read; a burst is read page after page without pausing
BUFFER_LIMIT = 2 * 1024 * 1024  # bytes a subscriber may have waiting before it is dropped as too slow
RECHECK_EVERY = 3.0  # seconds between two checks of every subscriber's token and grants
REPLAY_PAGE = 500  # entries per read when a client resumes with Last-Event-ID
HEARTBEAT = 15.0  # seconds of quiet before a comment line keeps proxies from closing the stream
RETRY_MS = 2000  # how soon an EventSource reconnects after the stream ends

_T = TypeVar("_T")


def encode(entry: AuditEntry, form: str) -> bytes:
    """One SSE event for `entry` in `form` ("whole" or "brief"): `id`, `event: audit`, and one line of JSON."""
    body = entry.to_json() if form == "whole" else audit_feed.brief(entry)
    data = json.dumps(body, separators=(",", ":"), ensure_ascii=False)  # json.dumps escapes newlines: always one line
    return f"id: {entry.seq}\nevent: audit\ndata: {data}\n\n".encode()


@dataclass(eq=False)
class Subscriber:
    """One open stream: who it is for, and the events waiting to be sent to it."""

    user: str
    secret: str
    access: Access
    pending: deque[tuple[int, bytes]] = field(default_factory=deque)
    size: int = 0
    closed: str | None = None  # why the stream ends, once it must
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def offer(self, seq: int, event: bytes) -> bool:
        """Queue one event; False (and the subscriber closed) when that would pass BUFFER_LIMIT."""
        if self.size + len(event) > BUFFER_LIMIT:
            self.close("too slow: the client fell too far behind; reconnect with Last-Event-ID")
            return False
        self.pending.append((seq, event))
        self.size += len(event)
        self.wake.set()
        return True

    def take(self) -> list[tuple[int, bytes]]:
        """Everything waiting, oldest first."""
        items = list(self.pending)
        self.pending.clear()
        self.size = 0
        self.wake.clear()
        return items

    def close(self, reason: str) -> None:
        """End the stream (the first reason stays) and wake it so it notices."""
        if self.closed is None:
            self.closed = reason
        self.pending.clear()
        self.size = 0
        self.wake.set()


class EventFeed:
    """The process's one poller and its subscribers (`app.state.events`)."""

    def __init__(self, pool: ConnectionPool, shutdown: Shutdown, *, poll_every: float = POLL_EVERY, recheck_every: float = RECHECK_EVERY) -> None:
        self.pool = pool
        self.shutdown = shutdown
        self.poll_every = poll_every
        self.recheck_every = recheck_every
        self.subscribers: set[Subscriber] = set()
        self.cursor = 0  # the newest seq the poller has handed out
        self.polls = 0  # reads of the audit chain the poller made (the same however many clients listen)
        self.dropped = 0  # subscribers dropped as too slow
        self._tasks: list[asyncio.Task[None]] = []
        self._ready = asyncio.Event()

    # -- lifetime ------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the poller and the re-checker."""
        self._tasks = [asyncio.create_task(self._poll_loop(), name="tqcli-events-poller"),
                       asyncio.create_task(self._recheck_loop(), name="tqcli-events-recheck")]

    async def stop(self) -> None:
        """End every stream, then the poller (which finishes a read it has begun)."""
        self._close_all("the server is stopping")
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass

    def stats(self) -> dict[str, int]:
        """The feed's counters: open streams, the poller's reads, the newest seq handed out, slow streams dropped."""
        return {"subscribers": len(self.subscribers), "polls": self.polls, "last_seq": self.cursor, "dropped": self.dropped}

    # -- subscribers ---------------------------------------------------------------------

    def subscribe(self, user: str, secret: str, access: Access) -> Subscriber:
        """A new subscriber, fed every entry the poller reads from now on (closed at once when the server is stopping)."""
        subscriber = Subscriber(user, secret, access)
        if self.shutdown.requested:
            subscriber.close("the server is stopping")
        else:
            self.subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        """Forget a subscriber whose stream ended (its buffer goes with it)."""
        self.subscribers.discard(subscriber)
        subscriber.close("ended")

    async def read(self, function: Callable[..., _T], *args: Any) -> _T:
        """Run `function(store, *args)` on a pooled connection on a thread: the event loop never waits on the database."""

        def on_connection() -> _T:
            with self.pool.store() as store:
                return function(store, *args)

        return await anyio.to_thread.run_sync(on_connection)

    async def wait_ready(self) -> None:
        """Until the poller has its starting cursor."""
        await self._ready.wait()

    # -- the poller ----------------------------------------------------------------------

    async def _poll_loop(self) -> None:
        failing = False
        while not self.shutdown.requested:
            try:
                if not self._ready.is_set():
                    self.cursor = await self.read(audit_feed.head_seq)
                    self._ready.set()
                elif not self.subscribers:
                    # Nobody listens: follow the head alone rather than read and decode every entry of a drain.
                    head = await self.read(audit_feed.head_seq)
                    self.polls += 1
                    if not self.subscribers:  # one who came meanwhile may still need the entries up to head
                        self.cursor = head
                else:
                    page = await self.read(audit_feed.read_after, self.cursor, PAGE)
                    self.polls += 1
                    self._deliver(page.entries)
                    self.cursor = page.cursor
                    if not page.caught_up:
                        continue  # a burst: read the next page at once
                failing = False
            except TqcliError as error:
                if not failing:
                    log.warning("event stream: cannot read the audit chain (%s); trying again", error.message)
                failing = True
            except Exception:  # noqa: BLE001 - a bug must not end every stream silently
                log.exception("event stream: the poller failed; trying again")
            if await self.shutdown.wait(self.poll_every):
                break
        self._close_all("the server is stopping")

    def _deliver(self, entries: list[AuditEntry]) -> None:
        if not entries or not self.subscribers:
            return
        for entry in entries:
            forms: dict[str, bytes] = {}
            for subscriber in list(self.subscribers):
                form = audit_feed.visible(entry, subscriber.access)
                if form is None:
                    continue
                event = forms.get(form)
                if event is None:
                    event = forms[form] = encode(entry, form)
                if not subscriber.offer(entry.seq, event):
                    self.subscribers.discard(subscriber)
                    self.dropped += 1

    # -- the re-checker ------------------------------------------------------------------

    async def _recheck_loop(self) -> None:
        while not await self.shutdown.wait(self.recheck_every):
            if not self.subscribers:
                continue
            secrets = {subscriber.secret for subscriber in self.subscribers}
            try:
                found = await anyio.to_thread.run_sync(self._recheck, secrets)
            except TqcliError:
                continue  # the database is busy or away: the grants read last stay until the next check
            except Exception:  # noqa: BLE001
                log.exception("event stream: re-reading the subscribers' grants failed")
                continue
            for subscriber in list(self.subscribers):
                if subscriber.secret not in found:
                    continue
                access = found[subscriber.secret]
                if access is None:
                    self.subscribers.discard(subscriber)
                    subscriber.close("the token was revoked or expired")
                elif not audit_feed.may_read_any(access):
                    self.subscribers.discard(subscriber)
                    subscriber.close(f"user {subscriber.user} holds no role any more")
                else:
                    subscriber.access = access

    def _recheck(self, secrets: set[str]) -> dict[str, Access | None]:
        """Each token's user's grants now (None for a token no longer valid), on one connection."""
        found: dict[str, Access | None] = {}
        with self.pool.store() as store:
            for secret in secrets:
                try:
                    token = TokenService(self.pool.context(store, "")).authenticate(secret)
                except Unauthenticated:
                    found[secret] = None
                    continue
                found[secret] = audit_feed.current_access(self.pool.context(store, token.user))
        return found

    def _close_all(self, reason: str) -> None:
        for subscriber in list(self.subscribers):
            subscriber.close(reason)
        self.subscribers.clear()


async def stream(feed: EventFeed, user: str, secret: str, access: Access, after: int) -> AsyncIterator[bytes]:
    """The body of one `/api/v1/events` answer: the entries after `after` that `access` may see, then live ones as they come.

    Replays from the database in pages first, without a subscription (a
    long replay fills no buffer); then subscribes and replays once more up
    to the head, so an entry appended meanwhile is neither missed nor sent
    twice (live entries at or below the last replayed seq are skipped).
    A comment goes out every HEARTBEAT seconds of quiet so proxies keep it open.
    """
    yield f"retry: {RETRY_MS}\n: tqcli audit events for {user}\n\n".encode()
    subscriber: Subscriber | None = None
    try:
        for subscribed in (False, True):
            if subscribed:
                subscriber = feed.subscribe(user, secret, access)
            while True:
                page = await feed.read(audit_feed.read_after, after, REPLAY_PAGE)
                current = subscriber.access if subscriber is not None else access
                shown = [encode(entry, form) for entry in page.entries if (form := audit_feed.visible(entry, current))]
                after = page.cursor
                if shown:
                    yield b"".join(shown)
                if page.caught_up:
                    break
        assert subscriber is not None
        quiet_since = time.monotonic()
        while subscriber.closed is None:
            if not subscriber.pending:
                try:
                    await asyncio.wait_for(subscriber.wake.wait(), max(0.0, quiet_since + HEARTBEAT - time.monotonic()))
                except asyncio.TimeoutError:
                    yield b": keep-alive\n\n"
                    quiet_since = time.monotonic()
                    continue
            fresh = [event for seq, event in subscriber.take() if seq > after]
            if fresh:
                yield b"".join(fresh)
                quiet_since = time.monotonic()
        yield f": closed: {subscriber.closed}\n\n".encode()
    except TqcliError as error:  # the database went away mid-replay: say so, and let the client reconnect
        yield f": closed: {' '.join(error.message.split())}\n\n".encode()
    finally:
        if subscriber is not None:
            feed.unsubscribe(subscriber)


def feed_of(app: FastAPI) -> EventFeed:
    """The app's feed."""
    return app.state.events  # type: ignore[no-any-return]


async def start(app: FastAPI) -> None:
    """Start the poller at the app's startup (`app.state.events`)."""
    feed = EventFeed(app.state.pool, app.state.shutdown)
    app.state.events = feed
    await feed.start()


async def stop(app: FastAPI) -> None:
    """Stop the poller and end every stream at shutdown."""
    feed = getattr(app.state, "events", None)
    if feed is not None:
        await feed.stop()
