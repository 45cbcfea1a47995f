"""The server's shutdown signal, for what would otherwise outlive it (event streams, log follows).

uvicorn stops taking connections on SIGTERM/SIGINT and then waits for open
ones to finish; a stream never finishes by itself, so each one also waits on
`Shutdown.event` and ends when it is set.
"""

from __future__ import annotations

import asyncio


class Shutdown:
    """Set once when the server starts to stop; `app.state.shutdown`."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self.event: asyncio.Event | None = None
        self._requested = False

    def bind(self) -> None:
        """Create the event on the running loop (at the app's startup)."""
        self._loop = asyncio.get_running_loop()
        self.event = asyncio.Event()
        if self._requested:
            self.event.set()

    def request(self) -> None:
        """Ask every stream to end (safe from a signal handler or another thread)."""
        self._requested = True
        if self._loop is not None and self.event is not None:
            self._loop.call_soon_threadsafe(self.event.set)

    @property
    def requested(self) -> bool:
        """Whether the server is stopping."""
        return self._requested

    async def wait(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for the shutdown; True when it came."""
        if self.event is None:
            await asyncio.sleep(timeout)
            return self._requested
        try:
            await asyncio.wait_for(self.event.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True
