"""Routes: the audit chain — entries (`audit log --json`, with its filters) and verify (`audit verify --json`)."""

from __future__ import annotations

from typing import Optional

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse

from tqcli.server import models
from tqcli.server.http_errors import error_responses
from tqcli.server.models import AuditEntry, VerifyReport, answer
from tqcli.server.sessions import Caller, caller

router = APIRouter(tags=["audit"], route_class=models.ApiRoute)


@router.get("/api/v1/audit", response_model=list[AuditEntry], responses=error_responses(400, 401, 403, 503))
def audit_log(
    who: Caller = Depends(caller),
    task: Optional[int] = Query(None, ge=1, le=2**63 - 1, description="Only entries about this task"),
    actor: Optional[str] = Query(None, description="Only entries by this identity"),
    action: Optional[str] = Query(None, description="Only this action, e.g. task.cancel"),
    since: Optional[str] = Query(None, description="Only entries at or after this ISO 8601 time"),
    limit: int = Query(100, ge=0, le=1_000_000, description="How many of the newest matching entries; 0 for all of them"),
) -> JSONResponse:
    """Audit entries in chain order: the `audit log --json` array."""
    entries = who.queue.audit.entries(
        task_id=task, actor=actor or None, action=action or None, since=since or None, limit=limit,
    )
    return answer([entry.to_json() for entry in entries])


@router.get("/api/v1/audit/verify", response_model=VerifyReport, responses=error_responses(401, 403, 500, 503))
def audit_verify(who: Caller = Depends(caller)) -> JSONResponse:
    """Recompute the whole chain: the `audit verify --json` report, 200 whether or not it is intact (500: no key file for keyed entries)."""
    # One process: a server's request thread does not fork helpers (the CLI spreads a long chain over its cores).
    return answer(who.queue.audit.verify(processes=1).to_json())
