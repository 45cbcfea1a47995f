"""Routes: tasks — list (`status --json`), submit one or many, get one, cancel, bump."""

from __future__ import annotations

from typing import Any, Optional

from fastapi import APIRouter, Body, Depends, Path, Query, Request
from fastapi.responses import JSONResponse

from tqcli.core.spec import parse_json, spec_from_object
from tqcli.errors import InvalidInput
from tqcli.server import models
from tqcli.server.http_errors import error_responses
from tqcli.server.models import BumpRequest, CancelRequest, Status, Task, TaskObject, answer, body_invalid, raw_body
from tqcli.server.recent import recent_answer
from tqcli.server.sessions import Caller, caller

router = APIRouter(tags=["tasks"], route_class=models.ApiRoute)

TaskId = Path(..., ge=1, le=2**63 - 1, description="The task's id")

_TASK_SCHEMA = TaskObject.model_json_schema()
SUBMIT_BODY = {
    "requestBody": {
        "required": True,
        "description": "One task object (a line of `submit --from-file`), or a non-empty list of them: all or nothing.",
        "content": {
            "application/json": {
                "schema": {"anyOf": [_TASK_SCHEMA, {"type": "array", "items": _TASK_SCHEMA, "minItems": 1}]},
                "example": {"target": "myapp.jobs:resize", "payload": {"path": "a.png"}, "priority": 5},
            },
        },
    },
}
_TASK_OR_LIST = {"anyOf": [{"$ref": "#/components/schemas/Task"}, {"type": "array", "items": {"$ref": "#/components/schemas/Task"}}]}
SUBMIT_ANSWERS = {
    201: {"description": "Enqueued: the task (a list: the tasks, in request order) as `status ID --json`",
          "content": {"application/json": {"schema": _TASK_OR_LIST}}},
    200: {"description": "Every task's idempotency key was already used for the same work: the existing task(s)",
          "content": {"application/json": {"schema": _TASK_OR_LIST}}},
    **error_responses(400, 401, 403, 404, 409, 413, 415, 422, 429, 500, 503),
}


def _filter(value: Optional[str]) -> Optional[str]:
    """A query filter: an empty value is no filter (as an HTML form sends it)."""
    return value if value else None


@router.get("/api/v1/tasks", response_model=Status, responses=error_responses(400, 401, 403, 503))
def list_tasks(
    request: Request,
    who: Caller = Depends(caller),
    queue: Optional[str] = Query(None, description="Only this queue"),
    tenant: Optional[str] = Query(None, description="Only this tenant"),
    state: Optional[str] = Query(None, description="List only tasks in this state"),
    limit: int = Query(20, ge=0, le=1_000_000, description="How many of the newest tasks to list; 0 for all of them"),
) -> JSONResponse:
    """Counts per queue and state and the newest tasks: the `status --json` document (up to a second old)."""
    filters = {"queue": _filter(queue), "tenant": _filter(tenant), "state": _filter(state), "limit": limit}
    document = recent_answer(request, 
        (who.user, "tasks", *filters.items()), lambda: who.queue.status(**filters).to_json()
    )
    return answer(document)


def _specs(data: Any) -> tuple[list[Any], list[bool], list[str] | None, bool]:
    """The specs of a submit body, whether to encrypt each, their labels in errors, and whether the body was one object."""
    single = isinstance(data, dict)
    if single:
        items = [data]
    elif isinstance(data, list):
        items = data
        if not items:
            raise body_invalid("an empty list submits nothing: give one task object or a list of them")
    else:
        raise body_invalid("the body must be a task object or a list of them")
    labels = None if single else [f"body[{index}]" for index in range(len(items))]
    specs, flags = [], []
    for index, item in enumerate(items):
        try:
            spec, flag = spec_from_object(item)
        except InvalidInput as error:
            where = () if single else (f"body[{index}]",)
            raise body_invalid(f"{error.message}; nothing was submitted", where) from None
        specs.append(spec)
        flags.append(flag)
    return specs, flags, labels, single


@router.post("/api/v1/tasks", status_code=201, responses=SUBMIT_ANSWERS, openapi_extra=SUBMIT_BODY)
def submit(request: Request, body: bytes = Depends(raw_body), who: Caller = Depends(caller)) -> JSONResponse:
    """Submit one task or a list of them (one transaction: all or nothing); 201 with the task(s), 200 when they all existed."""
    if models.media_type(request) not in (*models.JSON_TYPES, ""):
        raise models.unsupported_media("send the task(s) as JSON: Content-Type: application/json")
    try:
        data = parse_json(body.decode("utf-8"), what="the request body")
    except UnicodeDecodeError:
        raise body_invalid("the body is not UTF-8 text") from None
    except InvalidInput as error:
        raise body_invalid(error.message) from None
    specs, flags, labels, single = _specs(data)
    results = who.queue.submit_specs(specs, where=labels, encrypt=flags)
    tasks = [who.queue.get(result.id).to_json() for result in results]
    status = 201 if any(result.created for result in results) else 200
    return answer(tasks[0] if single else tasks, status)


@router.get("/api/v1/tasks/{task_id}", response_model=Task, responses=error_responses(400, 401, 403, 404, 503))
def get_task(task_id: int = TaskId, who: Caller = Depends(caller)) -> JSONResponse:
    """One task with its attempts and why it waits: the `status ID --json` object."""
    return answer(who.queue.get(task_id).to_json())


@router.post(
    "/api/v1/tasks/{task_id}/cancel", response_model=list[Task],
    responses=error_responses(400, 401, 403, 404, 409, 413, 422, 500, 503),
)
def cancel(
    task_id: int = TaskId,
    who: Caller = Depends(caller),
    options: Optional[CancelRequest] = Body(None, description="Optional: cascade to its dependents, and why"),
) -> JSONResponse:
    """Cancel the task (with `cascade`, its dependents too); the tasks it changed, as they now are."""
    options = options or CancelRequest()
    changed = who.queue.cancel(task_id, cascade=options.cascade, reason=options.reason)
    return answer([who.queue.get(changed_id).to_json() for changed_id in changed])


@router.post(
    "/api/v1/tasks/{task_id}/bump", response_model=Task,
    responses=error_responses(400, 401, 403, 404, 409, 413, 422, 500, 503),
)
def bump(task_id: int = TaskId, who: Caller = Depends(caller), change: BumpRequest = Body(...)) -> JSONResponse:
    """Change a pending or blocked task's priority: `{"priority": P}` or `{"by": N}`; the task as it now is."""
    who.queue.bump(task_id, priority=change.priority, by=change.by)
    return answer(who.queue.get(task_id).to_json())

