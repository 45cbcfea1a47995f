"""Routes: what the queue holds besides tasks — schedules, breakers, queues, tenants, workers — and `GET /api/v1/me`."""

from __future__ import annotations

from typing import Any, Union

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from tqcli.security.rbac import PERMISSIONS, Access
from tqcli.server import models
from tqcli.server.http_errors import error_responses
from tqcli.server.models import Breaker, Me, QueueInfo, Schedule, TenantInfo, Worker, answer
from tqcli.server.recent import recent_answer
from tqcli.server.sessions import Caller, caller
from tqcli.units import format_time

router = APIRouter(tags=["catalog"], route_class=models.ApiRoute)

READ_ERRORS = error_responses(400, 401, 403, 503)
SHOWN_PERMISSIONS = tuple(name for name in PERMISSIONS if name != "decrypt")  # read, submit, change_task, operate, audit, admin


def next_fires(schedule: Any, now: int, count: int) -> list[str]:
    """The schedule's next `count` fire times after `now` (none while it is paused), as ISO 8601 UTC."""
    if schedule.paused or count == 0:
        return []
    from tqcli.scheduler.cron import CronSchedule

    return [format_time(us) or "" for us in CronSchedule(schedule.cron, schedule.tz).next_after(now, count)]


@router.get("/api/v1/schedules", response_model=list[Schedule], responses=READ_ERRORS)
def list_schedules(
    who: Caller = Depends(caller),
    count: int = Query(5, ge=0, le=100, description="How many next fire times each schedule lists in `next_fires`"),
) -> JSONResponse:
    """Schedules by name: the `schedule list --json` array, each with its next fire times (`next_fires`)."""
    now = who.queue.clock.now()
    return answer([{**item.to_json(), "next_fires": next_fires(item, now, count)} for item in who.queue.schedules.list()])


@router.get("/api/v1/breakers", response_model=list[Breaker], responses=READ_ERRORS)
def list_breakers(who: Caller = Depends(caller)) -> JSONResponse:
    """Each circuit's state and failures: the `breaker list --json` array."""
    return answer([breaker.to_json() for breaker in who.queue.breakers.list()])


@router.get("/api/v1/queues", response_model=list[QueueInfo], responses=READ_ERRORS)
def list_queues(request: Request, who: Caller = Depends(caller)) -> JSONResponse:
    """Queues with their limits and counts: the `queue list --json` array (up to a second old)."""
    return answer(recent_answer(request, (who.user, "queues"), lambda: [info.to_dict() for info in who.queue.tenancy.queues()]))


@router.get("/api/v1/tenants", response_model=list[TenantInfo], responses=READ_ERRORS)
def list_tenants(request: Request, who: Caller = Depends(caller)) -> JSONResponse:
    """Tenants with their limits, weights and counts: the `tenant list --json` array (up to a second old)."""
    return answer(recent_answer(request, (who.user, "tenants"), lambda: [info.to_dict() for info in who.queue.tenancy.tenants()]))


@router.get("/api/v1/workers", response_model=list[Worker], responses=READ_ERRORS)
def list_workers(who: Caller = Depends(caller)) -> JSONResponse:
    """The worker runs seen in the last 24 hours: the `workers --json` array."""
    return answer([info.to_json() for info in who.queue.workers()])


def _may(access: Access, permission: str) -> bool:
    """Whether some grant (global or on a tenant) holds `permission`."""
    return access.tenants(permission) != frozenset()


def what_may(access: Access) -> dict[str, Union[bool, str]]:
    """The `may` object of `/api/v1/me`: each permission the page cares about, `"own"` for a submitter's own tasks."""
    may: dict[str, Union[bool, str]] = {name: _may(access, name) for name in SHOWN_PERMISSIONS}
    if not may["change_task"] and any(role == "submitter" for role, _ in access.grants):
        may["change_task"] = "own"
    return may


@router.get("/api/v1/me", response_model=Me, responses=error_responses(401, 503))
def me(who: Caller = Depends(caller)) -> JSONResponse:
    """Who the token stands for, its roles and what they allow (so a page can hide what it may not do)."""
    access = who.queue.roles.mine()
    roles = [{"role": role, "tenant": tenant or None} for role, tenant in access.grants]
    return answer({"user": who.user, "open": access.open, "roles": roles, "may": what_may(access)})

