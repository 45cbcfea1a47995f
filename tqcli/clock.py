"""Injectable time: the library asks a clock instead of the system, so tests move time."""

from __future__ import annotations

import time
from typing import Callable, Protocol


class Clock(Protocol):
    """Anything that tells the current wall time in microseconds since the epoch (UTC)."""

    def now(self) -> int:
        """Current time, microseconds since the Unix epoch, UTC."""
        ...


class SystemClock:
    """The real wall clock."""

    def now(self) -> int:
        """Current time, microseconds since the Unix epoch, UTC."""
        return time.time_ns() // 1000


class ServerClock:
    """The database server's wall clock: the local clock plus the offset measured to the server.

    Workers on many hosts judge one another's leases by the times they
    write, so on a shared database they must agree on the time whatever
    their own clocks say. `sync` measures the offset (one query, accurate
    to half its round trip); tqcli does so when it opens the database and
    on every worker poll.
    """

    def __init__(self, server_now: Callable[[], int]) -> None:
        self.offset = 0
        self.sync(server_now)

    def sync(self, server_now: Callable[[], int]) -> None:
        """Measure the offset again with `server_now` (the server's time in microseconds)."""
        before = time.time_ns() // 1000
        server = server_now()
        after = time.time_ns() // 1000
        self.offset = server - (before + after) // 2

    def now(self) -> int:
        """The server's current time, microseconds since the Unix epoch, UTC."""
        return time.time_ns() // 1000 + self.offset


class ManualClock:
    """A clock that only moves when told to; for tests and simulations."""

    def __init__(self, start_us: int = 1_780_000_000_000_000) -> None:
        self._now = start_us

    def now(self) -> int:
        """Current (manual) time in microseconds."""
        return self._now

    def advance(self, seconds: float) -> None:
        """Move the clock forward (or back, with a negative value) by `seconds`."""
        self._now += int(seconds * 1_000_000)

    def set(self, us: int) -> None:
        """Jump to an absolute time in microseconds."""
        self._now = us
