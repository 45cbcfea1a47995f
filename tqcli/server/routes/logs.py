"""Routes: `GET /api/v1/tasks/{id}/logs`, what a task's attempt printed (as `logs --json`), or followed live as NDJSON.

`?follow=1` answers `application/x-ndjson`, one JSON object per line, each
with an `event`:

- `output`: what a poll found of one attempt, in the `logs --json` shape
  (`task`, `attempt`, `output`, `dropped_bytes`, `running`, `chunks`); an
  attempt's first line has all of it so far (cut to `tail` lines), later
  ones only what is new (sent when there is some, or `running` changed);
- `heartbeat`: nothing new for 15 s (proxies keep the stream open);
- `end`: the task is finished, the last line: `task`, `state`, `exit_code`
  (as `logs --follow` exits: 0 completed, 1 otherwise) and `error`;
- `error`: the follow cannot go on (`error`, `exit_code`, as an error answer).

A stream that stops without `end` or `error` was cut (the server stopping,
the connection lost): follow again. Errors found before the first line are
ordinary error answers (404 unknown task, 403 another tenant's, 500 exit 8
for a missing key). Each poll reads on a connection borrowed for that poll alone.
"""

from __future__ import annotations

import json
import time
from typing import Any, AsyncIterator, Optional

import anyio
from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from tqcli.core.logs import FOLLOW_POLL, AttemptOutput, LogFollow
from tqcli.errors import TqcliError
from tqcli.server.http_errors import error_responses
from tqcli.server.lifecycle import Shutdown
from tqcli.server.sessions import ConnectionPool, Identity, authenticated, pool_of
from tqcli.server.streaming import StreamResponse

router = APIRouter(tags=["tasks"])

HEARTBEAT = 15.0  # seconds of quiet before a heartbeat line


class LogChunk(BaseModel):
    """A piece of one stream, and how many bytes were dropped just before it."""

    stream: str
    text: str
    dropped_before: int


class TaskLogs(BaseModel):
    """What one attempt printed, as `tqcli logs ID --json` prints it."""

    task: int
    attempt: int
    output: str
    dropped_bytes: int
    running: bool
    chunks: list[LogChunk]


LOGS_DOC = {
    200: {
        "description": (
            "The `logs --json` document; with `follow=1`, `application/x-ndjson`: one object per line with `event` "
            "`output` (the document's fields for what is new), `heartbeat`, `error`, and last `end` (`state`, `exit_code`)."
        ),
        "content": {"application/x-ndjson": {"schema": {"type": "string"}}},
    },
    **error_responses(400, 401, 403, 404, 422, 500, 503),
}


def _line(body: dict[str, Any]) -> bytes:
    return (json.dumps(body, separators=(",", ":"), ensure_ascii=False) + "\n").encode()


def _output_line(part: AttemptOutput) -> bytes:
    return _line({"event": "output", **part.to_json()})


def _end_line(following: LogFollow) -> bytes:
    task = following.task
    assert task is not None
    state = task.state.value
    error = task.error.splitlines()[0] if task.error else None
    return _line({"event": "end", "task": task.id, "state": state, "exit_code": 0 if state == "completed" else 1, "error": error})


@router.get("/api/v1/tasks/{task_id}/logs", response_model=TaskLogs, responses=LOGS_DOC)
async def task_logs(
    request: Request,
    task_id: int = Path(ge=1, le=2**62),
    attempt: Optional[int] = Query(None, ge=1, le=2**31, description="Attempt N, counted from 1 over all the task's runs (default: the latest)."),
    tail: Optional[int] = Query(None, ge=0, le=2**31, description="Only the last N lines (of both streams together)."),
    follow: bool = Query(False, description="Stream NDJSON as the task prints, until it is finished."),
    who: Identity = Depends(authenticated),
) -> Any:
    """What an attempt of a task printed (as `logs --json`); with `follow=1`, its output live as NDJSON lines."""
    pool = pool_of(request)
    if not follow:

        def read() -> dict[str, Any]:
            with pool.queue_for(who.user) as queue:
                return queue.output.read(task_id, attempt=attempt, tail=tail).to_json()

        return JSONResponse(await anyio.to_thread.run_sync(read))
    following = LogFollow(task_id, attempt=attempt, tail=tail)
    first = await anyio.to_thread.run_sync(_poll, pool, who.user, following)  # errors here are ordinary error answers
    return StreamResponse(_follow(pool, request.app.state.shutdown, who.user, following, first), media_type="application/x-ndjson")


def _poll(pool: ConnectionPool, user: str, following: LogFollow) -> list[AttemptOutput]:
    with pool.queue_for(user) as queue:
        return queue.output.poll(following)


async def _follow(pool: ConnectionPool, shutdown: Shutdown, user: str, following: LogFollow, first: list[AttemptOutput]) -> AsyncIterator[bytes]:
    """The NDJSON body: the first poll's parts, then each poll's, until the task is finished (or the server stops)."""
    parts, quiet_since = first, time.monotonic()
    shown: tuple[int, bool, int] | None = None  # (attempt, running, dropped_bytes) of the last line sent
    while True:
        lines = []
        for part in parts:
            now = (part.attempt, part.running, part.dropped_bytes)
            if part.chunks or now != shown:  # a poll that found nothing new sends nothing
                lines.append(_output_line(part))
                shown = now
        if lines:
            yield b"".join(lines)
            quiet_since = time.monotonic()
        if following.finished:
            yield _end_line(following)
            return
        if await shutdown.wait(FOLLOW_POLL):
            return  # cut without `end`: the client follows again once the server is back
        if time.monotonic() - quiet_since >= HEARTBEAT:
            yield _line({"event": "heartbeat"})
            quiet_since = time.monotonic()
        try:
            parts = await anyio.to_thread.run_sync(_poll, pool, user, following)
        except TqcliError as error:
            yield _line({"event": "error", "error": error.message, "exit_code": error.exit_code})
            return
