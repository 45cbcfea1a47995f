"""A transaction's session is ended by the server when its process stops; a running one is kept alive.

A process stopped (SIGSTOP, Ctrl-Z, a frozen VM) in the middle of a write
keeps its locks, the audit chain's head among them, and every host's
changes would wait on it and fail busy. So each connection asks the server
to end a session that sits idle inside a transaction for longer than
`idle_limit` (`idle_in_transaction_session_timeout`): its change is rolled
back, its locks go, and those waiting get them before their own busy
timeout runs out. A stopped read loses its snapshot the same way.

A running process may sit between two statements of one transaction for
longer than that without being stopped: a bulk submit builds its rows in
Python between its id allocation and its COPY, a read may wait on a slow
pipe. While a transaction is open, the keeper thread sends its session a
`SELECT 1` every third of the limit, which resets the server's timer; a
stopped process stops its keeper too, so only a stopped (or wholly
starved) one is ended.
"""

from __future__ import annotations

import os
import threading
import time

import psycopg

# The least time a session may sit idle inside a transaction before the server ends it (s).
IDLE_FLOOR = 1.0


def idle_limit(busy_timeout: float) -> float:
    """How long a session may sit idle inside a transaction: half the busy timeout, at least a second."""
    return max(IDLE_FLOOR, busy_timeout / 2)


def session_options(busy_timeout: float) -> str:
    """The `options` of a tqcli connection: its lock wait and its idle limit inside a transaction, both in ms.

    A busy timeout of 0 is "do not wait", as on SQLite: PostgreSQL reads a
    `lock_timeout` of 0 as "wait forever", so the least is 1 ms.
    """
    return (
        f"-c lock_timeout={max(1, round(busy_timeout * 1000))} "
        f"-c idle_in_transaction_session_timeout={int(idle_limit(busy_timeout) * 1000)}"
    )


class _Keeper:
    """One daemon thread for the process: pings the sessions of open transactions so that a running process is not ended."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[int, tuple[psycopg.Connection, float, float]] = {}  # id -> (connection, every, next ping)
        self._thread: threading.Thread | None = None

    def opened(self, raw: psycopg.Connection, limit: float) -> None:
        """A transaction began on `raw`: keep its session alive while it stays open."""
        every = limit / 3
        with self._lock:
            self._open[id(raw)] = (raw, every, time.monotonic() + every)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="tqcli-pg-keeper", daemon=True)
                self._thread.start()

    def forget(self) -> None:
        """In a forked child: the parent's transactions and thread are not this process's."""
        self._lock = threading.Lock()
        self._open = {}
        self._thread = None

    def closed(self, raw: psycopg.Connection) -> None:
        """The transaction on `raw` committed or rolled back."""
        with self._lock:
            self._open.pop(id(raw), None)

    def _run(self) -> None:
        while True:
            time.sleep(IDLE_FLOOR / 3)
            now = time.monotonic()
            with self._lock:
                due = [(key, raw, every) for key, (raw, every, at) in self._open.items() if at <= now]
                for key, raw, every in due:
                    self._open[key] = (raw, every, now + every)
            for _, raw, _ in due:
                self._ping(raw)

    @staticmethod
    def _ping(raw: psycopg.Connection) -> None:
        # Waits for the connection's lock while a statement of the transaction runs; the transaction may end
        # meanwhile, and the ping then runs outside it (autocommit) or in the next one: a SELECT changes neither.
        try:
            if raw.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS:
                raw.execute("SELECT 1")
        except psycopg.Error:
            pass  # the transaction's own next statement meets the same fault and reports it


KEEPER = _Keeper()
os.register_at_fork(after_in_child=KEEPER.forget)
