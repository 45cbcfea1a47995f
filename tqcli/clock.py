"""Injectable time: the library asks a clock instead of the system, so tests move time."""

from __future__ import annotations

import time
from typing import Protocol


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
