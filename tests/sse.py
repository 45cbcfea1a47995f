"""A test reader of `/api/v1/events` (and of NDJSON streams): httpx streaming on a thread, events handed over through a queue."""

from __future__ import annotations

import json
import queue
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import httpx

END = object()


@dataclass
class Event:
    """One server-sent event."""

    id: int | None
    event: str
    data: Any


@dataclass
class Stream:
    """An open streaming answer read line by line on a thread; `next()` gives what it sent, `END` once it ended."""

    url: str
    headers: dict[str, str]
    params: dict[str, Any] = field(default_factory=dict)
    sse: bool = True
    status: int | None = None
    response_headers: httpx.Headers | None = None
    comments: list[str] = field(default_factory=list)
    error_body: str = ""
    _items: queue.Queue = field(default_factory=queue.Queue)
    _opened: threading.Event = field(default_factory=threading.Event)
    _ended: threading.Event = field(default_factory=threading.Event)
    _client: httpx.Client | None = None
    _socket: socket.socket | None = None

    def open(self, timeout: float = 10) -> "Stream":
        """Connect, and wait until the status and headers arrived."""
        self._client = httpx.Client(timeout=httpx.Timeout(10, read=None))
        threading.Thread(target=self._read, daemon=True).start()
        assert self._opened.wait(timeout), f"no answer headers from {self.url} within {timeout} s"
        return self

    def _read(self) -> None:
        assert self._client is not None
        try:
            with self._client.stream("GET", self.url, headers=self.headers, params=self.params) as response:
                self.status, self.response_headers = response.status_code, response.headers
                stream = response.extensions.get("network_stream")
                self._socket = stream.get_extra_info("socket") if stream is not None else None
                self._opened.set()
                if response.status_code != 200:
                    self.error_body = response.read().decode()
                    return
                for item in (self._events(response.iter_lines()) if self.sse else self._json_lines(response.iter_lines())):
                    self._items.put(item)
        except (httpx.HTTPError, RuntimeError, ValueError):
            pass  # closed from the test's side
        finally:
            self._opened.set()
            self._ended.set()
            self._items.put(END)

    def _events(self, lines: Iterator[str]) -> Iterator[Event]:
        fields: dict[str, str] = {}
        for line in lines:
            if line.startswith(":"):
                self.comments.append(line[1:].strip())
            elif line:
                name, _, value = line.partition(":")
                fields[name] = value[1:] if value.startswith(" ") else value
            elif "data" in fields:
                yield Event(int(fields["id"]) if "id" in fields else None, fields.get("event", "message"), json.loads(fields["data"]))
                fields = {}
            else:
                fields = {}

    @staticmethod
    def _json_lines(lines: Iterator[str]) -> Iterator[Any]:
        for line in lines:
            if line.strip():
                yield json.loads(line)

    def next(self, timeout: float = 10) -> Any:
        """The next event (or NDJSON object), or END when the stream ended; AssertionError when none came in time."""
        try:
            return self._items.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"nothing arrived from {self.url} within {timeout} s") from None

    def until(self, found: Callable[[Any], bool], timeout: float = 15) -> list[Any]:
        """Everything received up to and including the first item for which `found` is true."""
        deadline, seen = time.monotonic() + timeout, []
        while True:
            item = self.next(max(0.01, deadline - time.monotonic()))
            if item is END:
                raise AssertionError(f"the stream ended before the item looked for; it sent {seen}")
            seen.append(item)
            if found(item):
                return seen

    def quiet(self, seconds: float) -> list[Any]:
        """Everything received within `seconds` (END included if the stream ended)."""
        deadline, seen = time.monotonic() + seconds, []
        while (left := deadline - time.monotonic()) > 0:
            try:
                item = self._items.get(timeout=left)
            except queue.Empty:
                break
            seen.append(item)
            if item is END:
                break
        return seen

    def ended(self, timeout: float) -> bool:
        """Whether the stream ended within `timeout` seconds."""
        return self._ended.wait(timeout)

    def close(self) -> None:
        """Hang up (the server sees a disconnect); a read blocked on the socket returns at once."""
        if self._socket is not None and not self._ended.is_set():
            try:
                self._socket.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._client is not None:
            self._client.close()
        self._ended.wait(10)

    def __enter__(self) -> "Stream":
        return self.open() if self._client is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()


def events(server: Any, token: str | None = None, *, last_event_id: int | str | None = None, params: dict[str, Any] | None = None) -> Stream:
    """A reader of `server`'s `/api/v1/events` as `token`'s user (default: the login token), not yet opened."""
    headers = {"Authorization": f"Bearer {token or server.token}"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    return Stream(f"{server.url}/api/v1/events", headers, params or {})


def ndjson(server: Any, path: str, token: str | None = None, params: dict[str, Any] | None = None) -> Stream:
    """A reader of an NDJSON stream of `server`, not yet opened."""
    return Stream(f"{server.url}{path}", {"Authorization": f"Bearer {token or server.token}"}, params or {}, sse=False)
