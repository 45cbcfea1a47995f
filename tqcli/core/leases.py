"""Keeping leases alive while attempts run, and noticing cancel requests.

A `LeaseKeeper` runs on its own thread with its own database connection,
so a worker's leases are renewed however long its tasks take and whatever
its main thread is doing. Every tick it also reads which of its tasks were
cancelled, or were taken over by another worker (its token no longer holds:
this worker was presumed dead), and tells the owner so the attempt stops.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

from tqcli.clock import Clock
from tqcli.errors import StorageError
from tqcli.store.sqlite import SqliteStore
from tqcli.units import US_PER_SECOND

CANCEL_POLL = 1.0


class LeaseKeeper:
    """Renews the leases of the tokens it holds; reports cancels and lost leases."""

    def __init__(
        self,
        store: SqliteStore,
        clock: Clock,
        lease_seconds: float,
        on_stop: Callable[[tuple[int, int], str], None],
        warn: Callable[[str], None] = lambda text: None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._lease = lease_seconds
        self._on_stop = on_stop
        self._warn = warn
        self._tokens: set[tuple[int, int]] = set()
        self._lock = threading.Lock()
        self._quit = threading.Event()
        self._thread: threading.Thread | None = None
        self._renew_every = max(0.05, lease_seconds / 3)
        self._tick = min(CANCEL_POLL, self._renew_every)

    def hold(self, token: tuple[int, int]) -> None:
        """Keep renewing the lease of `token` until `drop`."""
        with self._lock:
            self._tokens.add(token)
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="tqcli-leases", daemon=True)
            self._thread.start()

    def drop(self, token: tuple[int, int]) -> None:
        """Stop renewing `token` (its attempt ended)."""
        with self._lock:
            self._tokens.discard(token)

    def _loop(self) -> None:
        last_renewal = time.monotonic()
        while not self._quit.wait(self._tick):
            with self._lock:
                tokens = sorted(self._tokens)
            if not tokens:
                continue
            try:
                if time.monotonic() - last_renewal >= self._renew_every:
                    with self._store.write() as tx:
                        tx.renew_leases(tokens, self._clock.now() + int(self._lease * US_PER_SECOND))
                    last_renewal = time.monotonic()
                with self._store.read() as tx:
                    held = tx.held_tokens(tokens)
            except StorageError as exc:
                self._warn(f"could not renew leases: {exc.message}")
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

    def close(self) -> None:
        """Stop the thread and close its connection."""
        self._quit.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._store.close()
