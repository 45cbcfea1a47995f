"""What every request passes before it reaches a route: a known `Host`, and a body of bounded size.

Both are small ASGI middlewares, since neither uvicorn nor Starlette has the
option: a foreign `Host` is how a DNS-rebinding page reaches a server on
loopback, and a body read whole before its size is checked is memory any
client can take.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any, Awaitable, Callable, Iterable

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_BODY = 16 * 1024 * 1024


async def _refuse(send: Send, status: int, message: str, exit_code: int = 2) -> None:
    body = json.dumps({"error": message, "exit_code": exit_code}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), (b"connection", b"close")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def host_name(header: str) -> str:
    """The name in a `Host` header, without its port and brackets, lower case."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].partition("]")[0]
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def _is_ip_literal(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class HostCheck:
    """Refuse requests whose `Host` names neither an IP address, `localhost`, nor a name the server was told it answers to."""

    def __init__(self, app: App, allowed: Iterable[str]) -> None:
        self.app = app
        self.allowed = frozenset(name.lower() for name in allowed) | {"localhost"}

    def allows(self, name: str) -> bool:
        """Whether a request naming host `name` is answered (an IP literal cannot be rebound, so it always is)."""
        return name in self.allowed or _is_ip_literal(name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            header = next((value.decode("latin-1") for key, value in scope["headers"] if key == b"host"), "")
            name = host_name(header)
            if not self.allows(name):
                await _refuse(
                    send, 400,
                    f"Host {header!r} is not a name this server answers to (a guard against DNS rebinding): "
                    f"open it by IP address or localhost, or start tqcli serve with --allow-host {name or 'NAME'}",
                )
                return
        await self.app(scope, receive, send)


class BodyTooLarge(Exception):
    """The client sent more than the limit (raised from `receive`, answered 413 when nothing was sent yet)."""


class BodyLimit:
    """Refuse a request body over `limit` bytes, by its `Content-Length` before reading, or by counting as it streams."""

    def __init__(self, app: App, limit: int = MAX_BODY) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        message = f"the request body is over the limit of {self.limit // (1024 * 1024)} MiB: send less (split a bulk submit)"
        declared = next((value for key, value in scope["headers"] if key == b"content-length"), None)
        if declared is not None:
            try:
                too_large = int(declared) > self.limit
            except ValueError:
                await _refuse(send, 400, "the Content-Length header is not a number")
                return
            if too_large:
                await _refuse(send, 413, message)
                return
        seen = 0
        started = False

        async def counted_receive() -> dict[str, Any]:
            nonlocal seen
            event = await receive()
            if event["type"] == "http.request":
                seen += len(event.get("body", b""))
                if seen > self.limit:
                    raise BodyTooLarge()
            return event

        async def watched_send(event: dict[str, Any]) -> None:
            nonlocal started
            if event["type"] == "http.response.start":
                started = True
            await send(event)

        try:
            await self.app(scope, counted_receive, watched_send)
        except BodyTooLarge:
            if not started:
                await _refuse(send, 413, message)
