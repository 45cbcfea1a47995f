"""Routes: `GET /metrics` (the Prometheus text of `tqcli metrics`) and `GET /api/v1/throughput` (the dashboard's chart)."""

from __future__ import annotations

from typing import Optional

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from tqcli.config import login_name
from tqcli.observability.throughput import MAX_MINUTES, throughput
from tqcli.server import models
from tqcli.server.http_errors import error_responses
from tqcli.server.models import Throughput, answer
from tqcli.server.sessions import Caller, authenticated, caller, pool_of

router = APIRouter(tags=["metrics"], route_class=models.ApiRoute)

PROMETHEUS_TYPE = "text/plain; version=0.0.4; charset=utf-8"
ERROR_SCHEMA = {
    "type": "object", "required": ["error", "exit_code"],
    "properties": {"error": {"type": "string"}, "exit_code": {"type": "integer"}},
}
METRICS_ANSWERS = {
    200: {
        "description": "The Prometheus text exposition of `tqcli metrics` (version 0.0.4)",
        "content": {"text/plain": {"schema": {"type": "string"}}},
    },
    # Errors are JSON even here (the route's own type is text): described inline, not through error_responses.
    **{
        status: {"description": error_responses(status)[status]["description"], "content": {"application/json": {"schema": ERROR_SCHEMA}}}
        for status in (401, 403, 503)
    },
}


@router.get("/metrics", response_class=PlainTextResponse, responses=METRICS_ANSWERS)
def metrics(request: Request) -> Response:
    """Queue metrics for Prometheus, as `tqcli metrics` prints them; needs a token unless serve runs with --public-metrics."""
    from tqcli.observability.exposition import render

    settings = request.app.state.settings
    if settings.public_metrics:
        # Read as the user who started serve (it holds `operate`, so it sees every tenant).
        user = settings.user or login_name()
    else:
        user = authenticated(request).user
    with pool_of(request).queue_for(user) as queue:
        text = render(queue.metrics(), "prometheus")
    return Response(text, media_type=PROMETHEUS_TYPE)


@router.get("/api/v1/throughput", response_model=Throughput, responses=error_responses(400, 401, 403, 503))
def finished_per_minute(
    who: Caller = Depends(caller),
    minutes: int = Query(60, ge=1, le=MAX_MINUTES, description="How many minutes back, the current one included"),
    queue: Optional[str] = Query(None, description="Only this queue"),
    tenant: Optional[str] = Query(None, description="Only this tenant"),
) -> JSONResponse:
    """Tasks completed, failed and cancelled per minute, oldest first, every minute present."""
    document = throughput(who.queue.tasks, who.queue.clock.now(), minutes=minutes, queue=queue or None, tenant=tenant or None)
    return answer(document)
