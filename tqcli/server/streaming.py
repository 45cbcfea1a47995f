"""A long-lived HTTP answer (event stream, log follow) that frees what it holds as soon as it can.

Starlette's StreamingResponse notices a client that went away only when it
next writes (or not at all with some servers), and waits without bound on a
client that stops reading. This response watches for the disconnect while
the body waits for data, so the body's `finally` runs at once (a stream's
subscription is freed), and gives up on a client whose socket accepts
nothing for `SEND_TIMEOUT` seconds. The headers go out before the first
chunk is ready.
"""

from __future__ import annotations

from contextlib import aclosing
from typing import Any, AsyncIterator, Mapping

import anyio
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

SEND_TIMEOUT = 30.0  # seconds a client may leave a chunk unread before it is dropped
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}  # no proxy or browser cache holds a chunk back


class StreamResponse(Response):
    """A 200 whose body is `chunks`, sent as each one comes; ends at the body's end or the client's disconnect."""

    def __init__(self, chunks: AsyncIterator[bytes], *, media_type: str, headers: Mapping[str, str] | None = None) -> None:
        # Not Response.__init__: it would declare a Content-Length for an empty body.
        self.status_code = 200
        self.media_type = media_type
        self.background = None
        self.init_headers({**STREAM_HEADERS, **(headers or {})})
        self.chunks = chunks

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        complete = False
        async with anyio.create_task_group() as group:
            group.start_soon(_until_disconnect, receive, group.cancel_scope)
            async with aclosing(self.chunks) as chunks:
                async for chunk in chunks:
                    if not chunk:
                        continue
                    with anyio.move_on_after(SEND_TIMEOUT) as sending:
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    if sending.cancelled_caught:
                        break  # the client reads nothing: let it go rather than hold its stream
                else:
                    complete = True
            group.cancel_scope.cancel()
        if complete:
            await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _until_disconnect(receive: Receive, scope: Any) -> None:
    """Wait for the client to go away, then end the response (cancelling the body where it waits)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            scope.cancel()
            return
