"""An executor's own stdout and stderr on pipes: what an attempt prints reaches the worker tagged with its attempt.

File descriptors 1 and 2 of the executor process are pipes for its whole
life, so whatever writes to them (a `print`, C code, a subprocess that
inherited them) is read by one thread, which sends each chunk to the
worker as an `output` frame naming its stream and the attempt running
then. Between attempts, what arrives goes to the worker's stderr, as
everything did before. `settled()` is held while an attempt's reply is
sent: Python's buffers are flushed and the pipes read dry first, so all
an attempt printed before it returned arrives before its reply, and
nothing of it after. A quiet attempt costs one `poll` call.
"""

from __future__ import annotations

import os
import select
import sys
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator

READ_SIZE = 1 << 16
STDOUT, STDERR = 1, 2


class OutputPipes:
    """Redirects fds 1 and 2 onto pipes and forwards what they carry (see the module docstring)."""

    def __init__(self, send: Callable[[dict[str, Any]], None], running: Callable[[], Any], fallback: Callable[[bytes], None]) -> None:
        self._send = send  # writes one frame to the worker
        self._running = running  # the token of the attempt running now, or None
        self._fallback = fallback  # where output between attempts goes
        self._lock = threading.Lock()
        self._streams: dict[int, int] = {}
        for fd, stream in ((1, STDOUT), (2, STDERR)):
            read_end, write_end = os.pipe()
            os.dup2(write_end, fd)
            os.close(write_end)
            os.set_blocking(read_end, False)
            self._streams[read_end] = stream
        self._ready = select.poll()  # for `settled`, on the main thread; the reader has its own
        for read_end in self._streams:
            self._ready.register(read_end, select.POLLIN)
        for handle in (sys.stdout, sys.stderr):
            try:  # a print reaches `logs --follow` as a line, not when 8 KiB have gathered
                handle.reconfigure(line_buffering=True)  # type: ignore[union-attr]
            except (AttributeError, ValueError):
                pass
        threading.Thread(target=self._pump, name="tqcli-output", daemon=True).start()

    def _pump(self) -> None:
        poller = select.poll()
        for read_end in self._streams:
            poller.register(read_end, select.POLLIN)
        while True:
            ready = poller.poll()
            with self._lock:
                self._forward([fd for fd, _ in ready])

    def _forward(self, ready: list[int]) -> None:
        """Read the ready pipes dry and send what they held (the lock is held)."""
        for read_end in ready:
            stream = self._streams.get(read_end)
            if stream is None:
                continue
            while True:
                try:
                    chunk = os.read(read_end, READ_SIZE)
                except BlockingIOError:
                    break
                if not chunk:
                    break
                token = self._running()
                if token is None:
                    self._fallback(chunk)
                else:
                    self._send({"output": chunk, "stream": stream, "of": token})
                if len(chunk) < READ_SIZE:
                    break

    @contextmanager
    def settled(self) -> Iterator[None]:
        """Hold the pipes still, read dry of what the attempt printed, while its reply is sent."""
        for handle in (sys.stdout, sys.stderr):
            try:
                if handle is not None:
                    handle.flush()
            except (OSError, ValueError):
                pass
        with self._lock:
            ready = self._ready.poll(0)
            if ready:
                self._forward([fd for fd, _ in ready])
            yield
