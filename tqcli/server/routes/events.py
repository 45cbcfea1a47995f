"""Routes: `GET /api/v1/events`, the audit chain's new entries as Server-Sent Events, and the feed's counters."""

from __future__ import annotations

import asyncio
from typing import Optional

import anyio
from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel

from tqcli.errors import InvalidInput, StorageBusy
from tqcli.security import audit_feed
from tqcli.security.rbac import Access
from tqcli.server import events
from tqcli.server.http_errors import error_responses
from tqcli.server.sessions import Identity, authenticated, pool_of, presented_token
from tqcli.server.streaming import StreamResponse

router = APIRouter(tags=["events"])

READY_WAIT = 10.0  # seconds a new stream waits for the poller's first read before it is answered 503

STREAM_DOC = {
    200: {
        "description": (
            "An endless `text/event-stream`: per new audit entry `id: SEQ`, `event: audit`, `data:` one line of JSON "
            "(the whole entry for roles holding `audit`, else `{seq, action, task_id, tenant}` for what the role may read); "
            "a comment every 15 s of quiet. It ends when the server stops, the token is revoked or the client is too slow "
            "(reconnect with `Last-Event-ID`)."
        ),
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    },
    **error_responses(400, 401, 403, 422, 503),
}


class FeedStats(BaseModel):
    """The event feed of this server process."""

    subscribers: int
    polls: int
    last_seq: int
    dropped: int


def _resume_point(request: Request, last_event_id: Optional[int]) -> Optional[int]:
    """The seq to replay after: the `Last-Event-ID` header (what a reconnecting EventSource sends), else the query's."""
    header = request.headers.get("last-event-id")
    if header is None or not header.strip():
        return last_event_id
    text = header.strip()
    if not text.isdigit() or len(text) > 18:
        raise InvalidInput(f"invalid Last-Event-ID {header!r}: give the seq of the last event received (a number), or leave it out")
    return int(text)


@router.get("/api/v1/events", status_code=200, response_class=StreamResponse, responses=STREAM_DOC)
async def event_stream(
    request: Request,
    who: Identity = Depends(authenticated),
    last_event_id: Optional[int] = Query(None, ge=0, le=2**62, description="Replay entries after this seq (the `Last-Event-ID` header wins)."),
) -> StreamResponse:
    """New audit entries as Server-Sent Events, filtered by the token's roles; resumable with `Last-Event-ID`."""
    resume = _resume_point(request, last_event_id)
    secret, _ = presented_token(request)
    feed = events.feed_of(request.app)
    try:
        await asyncio.wait_for(feed.wait_ready(), READY_WAIT)
    except asyncio.TimeoutError:
        raise StorageBusy("the event stream cannot read the database yet: try again in a few seconds") from None
    pool = pool_of(request)

    def opening() -> tuple[Access, int]:
        with pool.store() as store:
            access = audit_feed.reader_access(pool.context(store, who.user))
            head = audit_feed.head_seq(store)
            # An id past the head belongs to another chain (a database recreated): go on from the head, missing nothing new.
            return access, head if resume is None else min(resume, head)

    access, after = await anyio.to_thread.run_sync(opening)
    return StreamResponse(events.stream(feed, who.user, secret, access, after), media_type="text/event-stream")


@router.get("/api/v1/events/stats", response_model=FeedStats, responses=error_responses(401, 403, 503))
def event_stats(request: Request, who: Identity = Depends(authenticated)) -> FeedStats:
    """This server's event feed: open streams, reads of the audit chain so far (one poller for all), the newest seq sent, slow streams dropped."""
    pool = pool_of(request)
    with pool.store() as store:
        audit_feed.reader_access(pool.context(store, who.user), "see the event stream's counters")
    return FeedStats(**events.feed_of(request.app).stats())
