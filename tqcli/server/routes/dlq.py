"""Routes: the dead-letter queue — list (`dlq list --json`) and replay (with a dry run)."""

from __future__ import annotations

from typing import Optional

from fastapi import APIRouter, Body, Depends, Query
from fastapi.responses import JSONResponse

from tqcli.server import models
from tqcli.server.http_errors import error_responses
from tqcli.server.models import ReplayRequest, Task, answer
from tqcli.server.sessions import Caller, caller

router = APIRouter(tags=["dlq"], route_class=models.ApiRoute)


@router.get("/api/v1/dlq", response_model=list[Task], responses=error_responses(400, 401, 403, 503))
def list_failed(
    who: Caller = Depends(caller),
    queue: Optional[str] = Query(None, description="Only this queue"),
    tenant: Optional[str] = Query(None, description="Only this tenant"),
) -> JSONResponse:
    """Failed tasks, the newest submitted first: the `dlq list --json` array."""
    tasks = who.queue.dlq.list(queue=queue or None, tenant=tenant or None)
    return answer([task.to_json() for task in tasks])


@router.post(
    "/api/v1/dlq/replay", response_model=list[Task],
    responses=error_responses(400, 401, 403, 404, 409, 413, 422, 429, 500, 503),
)
def replay(who: Caller = Depends(caller), request: ReplayRequest = Body(...)) -> JSONResponse:
    """Put failed tasks back to pending (`{"ids": [...]}` or `{"all": true}`); the tasks as they now are (`dry_run`: would be)."""
    tasks = who.queue.dlq.replay(
        request.ids, every=request.all, queue=request.queue or None, tenant=request.tenant or None, dry_run=request.dry_run,
        payload=request.payload, priority=request.priority, max_retries=request.max_retries, to_queue=request.to_queue,
    )
    return answer([task.to_json() for task in tasks])
