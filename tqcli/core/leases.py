"""Keeping leases alive while attempts run, and noticing cancel requests.

A `LeaseKeeper` runs on its own thread with its own database connection,
so a worker's leases are renewed however long its tasks take and whatever
its main thread is doing. Every tick it also reads which of its tasks were
cancelled, or were taken over by another worker (its token no longer holds:
this worker was presumed dead), and tells the owner so the attempt stops.

Tokens are held per slot (a key). A slot's leases are renewed only while
the slot is healthy, and after each claim and each successful renewal the
keeper tells the fence (`tqcli.backends.fence`) the slot's new deadline,
measured from when that claim or renewal started. So an attempt whose
lease can no longer be renewed (a wedged slot, a stopped or busy worker, a
database that refuses writes) is ended before its lease expires.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Iterable, Sequence

from tqcli.backends.fence import Fence
from tqcli.clock import Clock
from tqcli.errors import StorageError
from tqcli.store.base import Store
from tqcli.units import US_PER_SECOND

CANCEL_POLL = 1.0
Token = tuple[int, int]


class LeaseKeeper:
    """Renews the leases of the tokens it holds; reports cancels and lost leases."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        lease_seconds: float,
        on_stop: Callable[[Token, str], None],
        warn: Callable[[str], None] = lambda text: None,
        *,
        fence: Fence | None = None,
        healthy: Callable[[str], bool] = lambda key: True,
        heartbeat: str | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._lease = lease_seconds
        self._on_stop = on_stop
        self._warn = warn
        self._fence = fence
        self._healthy = healthy
        self._heartbeat = heartbeat  # the worker run whose registry heartbeat each renewal refreshes
        self._tokens: dict[Token, str] = {}  # token -> the slot that runs it
        self._per_key: dict[str, int] = {}
        self._oldest: dict[str, float] = {}  # per slot: monotonic start of its oldest unrenewed claim or renewal
        self._lock = threading.Lock()
        self._quit = threading.Event()
        self._thread: threading.Thread | None = None
        self._renew_every = max(0.05, lease_seconds / 3)
        # Fine enough that a claim is renewed within lease/3 + a tick of being made: the
        # fence's deadline (lease - margin, the margin at most lease/3) leaves lease/4 of slack.
        self._tick = max(0.02, min(CANCEL_POLL, self._renew_every / 4))
        self.failure: BaseException | None = None  # what stopped the thread, if anything did

    def hold(self, tokens: Sequence[Token], key: str = "", *, since: float | None = None) -> None:
        """Keep renewing these tokens (run by slot `key`, claimed at monotonic `since`) until `drop`."""
        since = time.monotonic() if since is None else since
        with self._lock:
            for token in tokens:
                self._tokens[token] = key
            first = not self._per_key.get(key)
            self._per_key[key] = self._per_key.get(key, 0) + len(tokens)
            if first or since < self._oldest[key]:
                self._oldest[key] = since
                deadline_from = since
            else:
                deadline_from = None
        if self._fence is not None and deadline_from is not None:
            self._fence.hold_until(key, deadline_from)
        if self._thread is None:
            self._thread = threading.Thread(target=self._supervised, name="tqcli-leases", daemon=True)
            self._thread.start()

    def drop(self, token: Token) -> None:
        """Stop renewing `token` (its attempt ended)."""
        self.drop_all((token,))

    def drop_all(self, tokens: Iterable[Token]) -> None:
        """Stop renewing each of `tokens` (their attempts ended), taking the lock once."""
        idle = []
        with self._lock:
            for token in tokens:
                key = self._tokens.pop(token, None)
                if key is None:
                    continue
                self._per_key[key] -= 1
                if not self._per_key[key]:
                    del self._per_key[key]
                    del self._oldest[key]
                    idle.append(key)
        if self._fence is not None:
            for key in idle:
                self._fence.release(key)

    def valid_until(self) -> float:
        """Monotonic time until which every held lease surely holds (the fence's deadline for the oldest)."""
        margin = self._fence.margin if self._fence is not None else self._lease / 3
        with self._lock:
            oldest = min(self._oldest.values(), default=time.monotonic())
        return oldest + self._lease - margin

    def _supervised(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # the worker sees it and stops; the fence ends what ran
            self.failure = exc

    def _loop(self) -> None:
        while not self._quit.wait(self._tick):
            with self._lock:
                tokens = dict(self._tokens)
                oldest = min(self._oldest.values(), default=None)
            if not tokens:
                continue
            healthy_keys = {key for key in set(tokens.values()) if self._healthy(key)}
            try:
                if oldest is not None and time.monotonic() - oldest >= self._renew_every:  # measured from each claim
                    started = time.monotonic()
                    renewable = [token for token, key in tokens.items() if key in healthy_keys]
                    with self._store.write() as tx:
                        now = self._clock.now()
                        tx.renew_leases(renewable, now + int(self._lease * US_PER_SECOND))
                        if self._heartbeat is not None:
                            tx.worker_heartbeat(self._heartbeat, now)
                    self._renewed(healthy_keys, started)
                with self._store.read() as tx:
                    held = tx.held_tokens(list(tokens))
            except StorageError as exc:
                self._warn(f"warning: could not renew leases: {exc.message}")
                continue
            with self._lock:
                current = set(self._tokens)
            for token in tokens:
                if token not in current:
                    continue
                if token not in held:
                    self._on_stop(token, "lost")
                elif held[token]:
                    self._on_stop(token, "cancel")

    def _renewed(self, keys: set[str], started: float) -> None:
        """The leases of these slots now run from `started`: move their fence deadlines."""
        moved = []
        with self._lock:
            for key in keys:
                if key in self._oldest:
                    self._oldest[key] = started
                    moved.append(key)
        if self._fence is not None:
            for key in moved:
                self._fence.hold_until(key, started)

    def close(self) -> None:
        """Stop the thread, then close its connection (not while the thread may still use it)."""
        self._quit.set()
        if self._thread is not None:
            self._thread.join(timeout=self._store.busy_timeout + 5)
            if self._thread.is_alive():
                return  # stuck in the database: leave the connection to it (a daemon thread)
        self._store.close()
